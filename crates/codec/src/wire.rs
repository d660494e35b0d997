//! The MQTT data representations (integers, variable byte integers, UTF-8 strings, binary data):
//! a [`Reader`] over one packet body that checks every rule of each field, and the matching writers.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{DecodeError, EncodeError, Protocol};

/// Largest value of a variable byte integer (four bytes of seven bits).
pub(crate) const MAX_VARINT: u32 = 268_435_455;

/// Reads a variable byte integer from the front of `bytes`: `Ok(None)` when more bytes are needed,
/// otherwise the value and how many bytes it took. Longer than 4 bytes, or not in its shortest form
/// ([MQTT-1.5.5-1]; applied under 3.1.1 too), is malformed.
pub(crate) fn read_varint(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value = 0u32;
    for (i, &byte) in bytes.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(DecodeError::MalformedPacket("variable byte integer not in its shortest form"));
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::MalformedPacket("variable byte integer longer than 4 bytes"))
    } else {
        Ok(None)
    }
}

/// Number of bytes the variable byte integer encoding of `value` takes.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `value` as a variable byte integer.
pub(crate) fn put_varint(out: &mut BytesMut, value: u32) -> Result<(), EncodeError> {
    if value > MAX_VARINT {
        return Err(EncodeError::VarIntTooLarge(value));
    }
    let mut rest = value;
    loop {
        let byte = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            out.put_u8(byte);
            return Ok(());
        }
        out.put_u8(byte | 0x80);
    }
}

/// Writes a two-byte length and `data` (a binary data field, or a string's bytes).
pub(crate) fn put_binary(out: &mut BytesMut, data: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(data.len()).map_err(|_| EncodeError::FieldTooLong(data.len()))?;
    out.put_u16(len);
    out.put_slice(data);
    Ok(())
}

/// Writes a UTF-8 encoded string.
pub(crate) fn put_str(out: &mut BytesMut, s: &str) -> Result<(), EncodeError> {
    put_binary(out, s.as_bytes())
}

/// Checks that `bytes` is a UTF-8 encoded string as `protocol` defines it: well-formed, no U+0000,
/// and under 5.0 none of the disallowed code points (controls and non-characters, section 1.5.4).
pub(crate) fn check_utf8(bytes: &[u8], protocol: Protocol) -> Result<&str, DecodeError> {
    let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::MalformedPacket("string is not well-formed UTF-8"))?;
    match protocol {
        Protocol::V311 => {
            if bytes.contains(&0) {
                return Err(DecodeError::MalformedPacket("string contains U+0000"));
            }
        }
        Protocol::V5 => {
            let clean = if s.is_ascii() {
                !bytes.iter().fold(false, |found, &b| found | (b < 0x20) | (b == 0x7f))
            } else {
                s.chars().all(|c| !disallowed(c))
            };
            if !clean {
                return Err(if bytes.contains(&0) {
                    DecodeError::MalformedPacket("string contains U+0000")
                } else {
                    DecodeError::MalformedPacket("string contains a disallowed code point")
                });
            }
        }
    }
    Ok(s)
}

/// The code points MQTT 5.0 lets a receiver treat as malformed: C0 and C1 controls, DEL and the
/// Unicode non-characters.
fn disallowed(c: char) -> bool {
    let cp = u32::from(c);
    cp <= 0x1f || (0x7f..=0x9f).contains(&cp) || (0xfdd0..=0xfdef).contains(&cp) || (cp & 0xfffe) == 0xfffe
}

/// A cursor over one packet body (or one property block). Every read checks that the field fits;
/// binary fields and payloads are zero-copy slices of the packet's buffer.
pub(crate) struct Reader {
    bytes: Bytes,
    protocol: Protocol,
}

impl Reader {
    pub(crate) fn new(bytes: Bytes, protocol: Protocol) -> Reader {
        Reader { bytes, protocol }
    }

    pub(crate) fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Switches the string rules once CONNECT has named its protocol level.
    pub(crate) fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = protocol;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.bytes.len() < n { Err(DecodeError::MalformedPacket(what)) } else { Ok(()) }
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(1, what)?;
        Ok(self.bytes.get_u8())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(2, what)?;
        Ok(self.bytes.get_u16())
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(4, what)?;
        Ok(self.bytes.get_u32())
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        match read_varint(&self.bytes)? {
            Some((value, len)) => {
                self.bytes.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::MalformedPacket(what)),
        }
    }

    /// The next `n` bytes, as a slice of the packet buffer.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, what)?;
        Ok(self.bytes.split_to(n))
    }

    /// A reader over the next `n` bytes (a property block), with the same string rules.
    pub(crate) fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader, DecodeError> {
        let bytes = self.take(n, what)?;
        Ok(Reader { bytes, protocol: self.protocol })
    }

    /// A binary data field: two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// A UTF-8 encoded string field, checked by the protocol's rules.
    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u16(what)?);
        self.need(len, what)?;
        let s = check_utf8(&self.bytes[..len], self.protocol)?.to_owned();
        self.bytes.advance(len);
        Ok(s)
    }

    /// Everything left (a PUBLISH payload, SUBACK reason codes).
    pub(crate) fn rest(self) -> Bytes {
        self.bytes
    }

    /// Refuses bytes left over after the packet's declared content.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::MalformedPacket("bytes after the end of the packet's content"))
        }
    }
}
