//! Unit tests: known byte sequences both ways (`check`), one test per rule the decoder enforces
//! (`invalid_*`), what the encoder refuses or leaves out (`encode_rules`), property-based round
//! trips over generated packets (`roundtrip`, `strategy`), and the topic functions (`topic`).

mod check;
mod encode_rules;
mod invalid_connect;
mod invalid_header;
mod invalid_packets;
mod invalid_properties;
mod roundtrip;
mod strategy;
mod topic;

use bytes::BytesMut;

use crate::{DecodeError, Packet, Protocol, decode};

const V3: Option<Protocol> = Some(Protocol::V311);
const V5: Option<Protocol> = Some(Protocol::V5);

/// Concatenates byte fragments (arrays, vectors, slices) into one `Vec<u8>`.
macro_rules! cat {
    ($($part:expr),* $(,)?) => {
        [$(AsRef::<[u8]>::as_ref(&$part)),*].concat()
    };
}
use cat;

/// A whole packet: `first` byte, minimal remaining length, `body`.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A string field: two-byte length and the UTF-8 bytes.
fn s(value: &str) -> Vec<u8> {
    bin(value.as_bytes())
}

/// A binary data field: two-byte length and the bytes.
fn bin(value: &[u8]) -> Vec<u8> {
    let len = u16::try_from(value.len()).expect("short test field");
    cat![len.to_be_bytes(), value]
}

/// A 5.0 property block: variable length prefix and the given properties.
fn props(content: &[u8]) -> Vec<u8> {
    let framed = frame(0, content);
    framed[1..].to_vec()
}

/// Decodes `bytes`, which must hold exactly one complete packet (or fail).
fn decode_all(protocol: Option<Protocol>, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, protocol, usize::MAX)?.expect("a complete packet");
    assert!(buf.is_empty(), "bytes left after the packet: {buf:02x?}");
    Ok(packet)
}

/// The error decoding `bytes` must give.
fn err(protocol: Option<Protocol>, bytes: &[u8]) -> DecodeError {
    match decode_all(protocol, bytes) {
        Ok(packet) => panic!("{bytes:02x?} decoded to {packet:?}, expected an error"),
        Err(e) => e,
    }
}

fn malformed(protocol: Option<Protocol>, bytes: &[u8]) {
    assert!(
        matches!(err(protocol, bytes), DecodeError::MalformedPacket(_)),
        "{bytes:02x?} should be malformed under {protocol:?}, got {:?}",
        err(protocol, bytes)
    );
}

fn protocol_error(protocol: Option<Protocol>, bytes: &[u8]) {
    assert!(
        matches!(err(protocol, bytes), DecodeError::ProtocolError(_)),
        "{bytes:02x?} should be a protocol error under {protocol:?}, got {:?}",
        err(protocol, bytes)
    );
}
