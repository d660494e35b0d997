//! Byte and bit primitives of the chunk format: LEB128 varints, zigzag, little-endian `f64`s and
//! an LSB-first bit stream. Readers never panic and never read past their slice: running out of
//! input, or an over-long varint, is a [`ChunkError`].

use super::ChunkError;

pub(crate) fn corrupt(what: &str) -> ChunkError {
    ChunkError(what.to_string())
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

/// A cursor over bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ChunkError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| corrupt("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ChunkError> {
        if n > self.remaining() {
            return Err(corrupt("truncated"));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), ChunkError> {
        self.bytes(n).map(|_| ())
    }

    pub(crate) fn varint(&mut self) -> Result<u64, ChunkError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(corrupt("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("varint longer than 10 bytes"))
    }

    /// A varint that must not exceed `max` (a count or a length).
    pub(crate) fn bounded(&mut self, max: u64, what: &str) -> Result<usize, ChunkError> {
        let v = self.varint()?;
        if v > max {
            return Err(ChunkError(format!("{what} {v} exceeds {max}")));
        }
        usize::try_from(v).map_err(|_| corrupt(what))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, ChunkError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_bits(u64::from_le_bytes(a)))
    }
}

/// Writes values of 0–64 bits, least significant bit first.
#[derive(Default)]
pub(crate) struct BitWriter {
    out: Vec<u8>,
    acc: u128,
    nbits: u32,
}

impl BitWriter {
    pub(crate) fn write(&mut self, value: u64, width: u32) {
        debug_assert!(width <= 64);
        if width == 0 {
            return;
        }
        let value = if width == 64 { value } else { value & ((1u64 << width) - 1) };
        self.acc |= u128::from(value) << self.nbits;
        self.nbits += width;
        while self.nbits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.nbits -= 8;
        }
    }

    /// The bytes, the last one padded with zero bits.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.nbits > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// Reads what a [`BitWriter`] wrote.
pub(crate) struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> BitReader<'a> {
        BitReader { buf, pos: 0 }
    }

    /// Bytes touched so far (the last one possibly in part).
    pub(crate) fn bytes_used(&self) -> usize {
        self.pos.div_ceil(8)
    }

    pub(crate) fn bits_left(&self) -> usize {
        self.buf.len() * 8 - self.pos
    }

    #[inline]
    pub(crate) fn read(&mut self, width: u32) -> Result<u64, ChunkError> {
        if width == 0 {
            return Ok(0);
        }
        if width > 64 || width as usize > self.bits_left() {
            return Err(corrupt("bit stream truncated"));
        }
        let first = self.pos / 8;
        let shift = (self.pos % 8) as u32;
        let at = self.pos;
        self.pos += width as usize;
        let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
        // Away from the end, one 8-byte load holds any 56 bits at any shift.
        if width <= 56
            && let Some(window) = self.buf.get(first..first + 8)
        {
            let v = u64::from_le_bytes(window.try_into().expect("8 bytes"));
            return Ok((v >> shift) & mask);
        }
        let last = (at + width as usize - 1) / 8;
        let mut acc = 0u128;
        for (i, b) in self.buf[first..=last].iter().enumerate() {
            acc |= u128::from(*b) << (8 * i);
        }
        Ok(((acc >> shift) as u64) & mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_extremes() {
        for v in [0, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn varints_round_trip_and_reject_overflow() {
        let mut out = Vec::new();
        for v in [0, 127, 128, u64::MAX] {
            put_varint(&mut out, v);
        }
        let mut r = Reader::new(&out);
        for v in [0, 127, 128, u64::MAX] {
            assert_eq!(r.varint().unwrap(), v);
        }
        assert!(r.varint().is_err());
        assert!(Reader::new(&[0xff; 10]).varint().is_err());
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
    }

    #[test]
    fn bits_round_trip_at_every_width() {
        let mut w = BitWriter::default();
        for width in 0..=64u32 {
            w.write(u64::MAX, width);
            w.write(0x5555_5555_5555_5555, width);
        }
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        for width in 0..=64u32 {
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            assert_eq!(r.read(width).unwrap(), mask);
            assert_eq!(r.read(width).unwrap(), 0x5555_5555_5555_5555 & mask);
        }
        assert_eq!(r.bytes_used(), bytes.len());
        assert!(r.read(9).is_err());
    }
}
