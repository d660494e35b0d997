//! Integer sequences (timestamps, scaled decimals, dictionary indexes): delta-transformed
//! `order` times (0–2), the first `order` terms written as zigzag varints ("seeds"), the
//! residuals zigzagged and bit-packed in blocks of [`BLOCK`] values, each block whichever is
//! smaller of
//! - dense: a 7-bit code `w` (0–64), then every residual in `w` bits; a block of zero residuals
//!   (a regular interval under order 2, an unchanged value under order 1) costs 7 bits;
//! - sparse: a 7-bit code `65 + w` (`w` ≤ 62), a 6-bit count − 1 of non-zero residuals, then per
//!   non-zero residual its 6-bit position in the block and its `w` bits (a value that changes
//!   now and then).
//!
//! Layout: `u8 order`, `order.min(n)` seed varints, then the bit stream (byte-padded at its end).
//! All arithmetic wraps, so any `i64` sequence round-trips exactly.

use super::ChunkError;
use super::bits::{BitReader, BitWriter, Reader, corrupt, put_varint, unzigzag, zigzag};

/// Residuals per bit-packed block.
pub(crate) const BLOCK: usize = 64;
const WIDTH_BITS: u32 = 7;
const MAX_ORDER: u8 = 2;

fn transform(seq: &[i64], order: u8) -> Vec<i64> {
    let mut t = seq.to_vec();
    for pass in 1..=usize::from(order) {
        for j in (pass..t.len()).rev() {
            t[j] = t[j].wrapping_sub(t[j - 1]);
        }
    }
    t
}

fn width(v: u64) -> u32 {
    64 - v.leading_zeros()
}

const SPARSE: u32 = 65;
const POSITION_BITS: u32 = 6;

/// How a block is written: dense at a width, or sparse with a width and its non-zero count.
#[derive(Clone, Copy)]
enum Plan {
    Dense(u32),
    Sparse(u32, usize),
}

/// The cheaper plan for `block` and its size in bits.
fn plan(block: &[i64]) -> (Plan, u64) {
    let w = width(block.iter().map(|v| zigzag(*v)).fold(0, u64::max));
    let dense = u64::from(WIDTH_BITS) + block.len() as u64 * u64::from(w);
    let nonzero = block.iter().filter(|v| **v != 0).count();
    let sparse = u64::from(WIDTH_BITS + POSITION_BITS) + nonzero as u64 * u64::from(POSITION_BITS + w);
    if nonzero > 0 && w + SPARSE <= 127 && sparse < dense {
        (Plan::Sparse(w, nonzero), sparse)
    } else {
        (Plan::Dense(w), dense)
    }
}

/// Bits the residuals of `t` (after `order` seeds) take when packed.
fn packed_bits(t: &[i64], order: u8) -> u64 {
    let skip = usize::from(order).min(t.len());
    t[skip..].chunks(BLOCK).map(|block| plan(block).1).sum()
}

/// Encodes `seq` with whichever of `orders` packs smallest.
pub(crate) fn encode(seq: &[i64], orders: &[u8], out: &mut Vec<u8>) {
    let (order, t) = orders
        .iter()
        .map(|&o| (o, transform(seq, o)))
        .min_by_key(|(o, t)| packed_bits(t, *o))
        .expect("at least one order");
    out.push(order);
    let skip = usize::from(order).min(t.len());
    for seed in &t[..skip] {
        put_varint(out, zigzag(*seed));
    }
    let mut bits = BitWriter::default();
    for block in t[skip..].chunks(BLOCK) {
        match plan(block).0 {
            Plan::Dense(w) => {
                bits.write(u64::from(w), WIDTH_BITS);
                for v in block {
                    bits.write(zigzag(*v), w);
                }
            }
            Plan::Sparse(w, nonzero) => {
                bits.write(u64::from(SPARSE + w), WIDTH_BITS);
                bits.write(nonzero as u64 - 1, POSITION_BITS);
                for (i, v) in block.iter().enumerate().filter(|(_, v)| **v != 0) {
                    bits.write(i as u64, POSITION_BITS);
                    bits.write(zigzag(*v), w);
                }
            }
        }
    }
    out.extend_from_slice(&bits.finish());
}

/// Decodes `n` values. The caller has bounded `n` by the input length.
pub(crate) fn decode(r: &mut Reader<'_>, n: usize) -> Result<Vec<i64>, ChunkError> {
    let order = r.u8()?;
    if order > MAX_ORDER {
        return Err(ChunkError(format!("unknown integer order {order}")));
    }
    let skip = usize::from(order).min(n);
    let mut t = Vec::with_capacity(n);
    for _ in 0..skip {
        t.push(unzigzag(r.varint()?));
    }
    let mut bits = BitReader::new(r.rest());
    while t.len() < n {
        let code = bits.read(WIDTH_BITS)? as u32;
        let len = BLOCK.min(n - t.len());
        if code < SPARSE {
            let w = code;
            if w > 64 {
                return Err(corrupt("block width over 64 bits"));
            }
            if (w as usize) * len > bits.bits_left() {
                return Err(corrupt("bit stream truncated"));
            }
            if w == 0 {
                t.resize(t.len() + len, 0);
            } else {
                for _ in 0..len {
                    t.push(unzigzag(bits.read(w)?));
                }
            }
        } else {
            let w = code - SPARSE;
            let nonzero = bits.read(POSITION_BITS)? as usize + 1;
            let start = t.len();
            t.resize(start + len, 0);
            for _ in 0..nonzero {
                let at = bits.read(POSITION_BITS)? as usize;
                if at >= len {
                    return Err(corrupt("sparse position past the block"));
                }
                t[start + at] = unzigzag(bits.read(w)?);
            }
        }
    }
    let used = bits.bytes_used();
    r.skip(used)?;
    for pass in (1..=usize::from(order)).rev() {
        for j in pass..t.len() {
            t[j] = t[j].wrapping_add(t[j - 1]);
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(seq: &[i64]) -> usize {
        let mut out = Vec::new();
        encode(seq, &[0, 1, 2], &mut out);
        let mut r = Reader::new(&out);
        assert_eq!(decode(&mut r, seq.len()).unwrap(), seq);
        assert_eq!(r.remaining(), 0);
        out.len()
    }

    #[test]
    fn regular_sequences_cost_next_to_nothing() {
        let ts: Vec<i64> = (0..3600).map(|i| 1_700_000_000_000 + i * 1000).collect();
        let len = round_trip(&ts);
        assert!(len < 80, "{len} bytes for 3600 regular timestamps");
        let constant = vec![7i64; 3600];
        assert!(round_trip(&constant) < 60);
    }

    #[test]
    fn sparse_blocks_round_trip_and_pay_off() {
        // A value that steps now and then: order 1 leaves a few non-zero residuals per block.
        let steps: Vec<i64> = (0..3600).map(|i| 215 + (i / 97) % 3 - (i / 301) % 2).collect();
        let len = round_trip(&steps);
        assert!(len < 200, "{len} bytes for 3600 mostly unchanged values");
        // Every count of non-zero residuals in a block, at several widths, at any position.
        for nonzero in 0..=64usize {
            for big in [1i64, -3, 1 << 40, i64::MIN] {
                let seq: Vec<i64> = (0..64).map(|i| if (i * 7) % 64 < nonzero { big } else { 0 }).collect();
                let mut out = Vec::new();
                encode(&seq, &[0], &mut out);
                assert_eq!(decode(&mut Reader::new(&out), 64).unwrap(), seq);
            }
        }
    }

    #[test]
    fn extremes_round_trip() {
        round_trip(&[]);
        round_trip(&[i64::MIN]);
        round_trip(&[i64::MIN, i64::MAX, i64::MIN, 0, -1, i64::MAX]);
        let wild: Vec<i64> = (0..200).map(|i: i64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15u64 as i64)).collect();
        round_trip(&wild);
    }

    #[test]
    fn truncated_or_bad_input_is_an_error() {
        let mut out = Vec::new();
        encode(&[1, 5, 9, 200, -3], &[1], &mut out);
        for cut in 0..out.len() {
            assert!(decode(&mut Reader::new(&out[..cut]), 5).is_err(), "cut at {cut}");
        }
        assert!(decode(&mut Reader::new(&[3]), 1).is_err());
        assert!(decode(&mut Reader::new(&[0, 0x7f]), 1).is_err());
        // Sparse, width 0, one non-zero residual at position 63 of a 2-value block.
        let mut w = BitWriter::default();
        w.write(u64::from(SPARSE), WIDTH_BITS);
        w.write(0, POSITION_BITS);
        w.write(63, POSITION_BITS);
        let mut bytes = vec![0];
        bytes.extend(w.finish());
        assert!(decode(&mut Reader::new(&bytes), 2).is_err());
    }
}
