//! The value columns of a chunk: which points are text (the kind runs), the numbers, and the
//! strings.
//!
//! - Kinds: `u8` 0 = all numbers, 1 = all text, 2 = runs: a varint run count, then run lengths
//!   alternating number, text, number, ... (the first run may be empty).
//! - Numbers: `u8` 0 = decimal: `u8 k` (0–9), then the integers `v·10^k` as an integer sequence
//!   ([`super::ints`], order 0, 1 or 2, whichever packs smallest); chosen when every value `v`
//!   comes back bit-exact as `(round(v·10^k) as i64) as f64 / 10^k` with `|v·10^k| ≤ 2^53`.
//!   Otherwise the smaller of two lossless codings. `u8` 1 = XOR: Gorilla-style (first value
//!   in 64 bits; then per value `0` when equal to the previous, `10` + the meaningful bits when
//!   they fit the previous window, `11` + 5-bit leading zeros + 6-bit length − 1 + the bits
//!   otherwise). `u8` 2 = split, for noise that fills the
//!   mantissa: the signs and the 11-bit exponents as two integer sequences, then each 52-bit
//!   mantissa as is. NaN payloads, ±inf and -0.0 never take the decimal path, so they
//!   round-trip bit for bit.
//! - Text: a dictionary (varint count, then varint length + UTF-8 bytes per distinct string, in
//!   order of first use), then each text point's dictionary index as an integer sequence.

use std::collections::HashMap;
use std::sync::Arc;

use super::ChunkError;
use super::bits::{BitReader, BitWriter, Reader, corrupt, put_varint};
use super::ints;

const KINDS_NUMBERS: u8 = 0;
const KINDS_TEXT: u8 = 1;
const KINDS_RUNS: u8 = 2;
const NUM_DECIMAL: u8 = 0;
const NUM_XOR: u8 = 1;
const NUM_SPLIT: u8 = 2;
const MANTISSA_BITS: u32 = 52;
const MANTISSA: u64 = (1 << MANTISSA_BITS) - 1;
const MAX_SCALE: usize = 9;
const POW10: [f64; MAX_SCALE + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

/// Writes the kind runs of `is_text` (one flag per point).
pub(crate) fn encode_kinds(is_text: &[bool], out: &mut Vec<u8>) {
    if is_text.iter().all(|t| !t) {
        out.push(KINDS_NUMBERS);
        return;
    }
    if is_text.iter().all(|t| *t) {
        out.push(KINDS_TEXT);
        return;
    }
    let mut runs = Vec::new();
    let mut current = false;
    let mut len = 0u64;
    for &t in is_text {
        if t != current {
            runs.push(len);
            current = t;
            len = 0;
        }
        len += 1;
    }
    runs.push(len);
    out.push(KINDS_RUNS);
    put_varint(out, runs.len() as u64);
    for run in runs {
        put_varint(out, run);
    }
}

/// Reads the kind of each of `n` points (`true` = text).
pub(crate) fn decode_kinds(r: &mut Reader<'_>, n: usize) -> Result<Vec<bool>, ChunkError> {
    match r.u8()? {
        KINDS_NUMBERS => Ok(vec![false; n]),
        KINDS_TEXT => Ok(vec![true; n]),
        KINDS_RUNS => {
            let runs = r.bounded(n as u64 + 1, "kind run count")?;
            let mut kinds = Vec::with_capacity(n);
            let mut text = false;
            for _ in 0..runs {
                let len = r.bounded((n - kinds.len()) as u64, "kind run")?;
                kinds.resize(kinds.len() + len, text);
                text = !text;
            }
            if kinds.len() != n {
                return Err(corrupt("kind runs do not cover the points"));
            }
            Ok(kinds)
        }
        other => Err(ChunkError(format!("unknown kinds mode {other}"))),
    }
}

fn scaled(v: f64, k: usize) -> Option<i64> {
    let s = (v * POW10[k]).round();
    if s.is_nan() || s.abs() > MAX_EXACT {
        return None;
    }
    let m = s as i64;
    ((m as f64 / POW10[k]).to_bits() == v.to_bits()).then_some(m)
}

/// The smallest scale at which every value is an exact decimal, and the scaled integers. One
/// pass per scale tried: a value that needs a larger scale restarts the pass there.
fn decimal(values: &[f64]) -> Option<(u8, Vec<i64>)> {
    let mut ints = Vec::with_capacity(values.len());
    'scale: for k in 0..=MAX_SCALE {
        ints.clear();
        for &v in values {
            match scaled(v, k) {
                Some(m) => ints.push(m),
                None => continue 'scale,
            }
        }
        return Some((k as u8, ints));
    }
    None
}

pub(crate) fn encode_numbers(values: &[f64], out: &mut Vec<u8>) {
    if let Some((k, ints)) = decimal(values) {
        out.push(NUM_DECIMAL);
        out.push(k);
        ints::encode(&ints, &[0, 1, 2], out);
    } else {
        let (xor, split) = (xor_encode(values), split_encode(values));
        if split.len() < xor.len() {
            out.push(NUM_SPLIT);
            out.extend_from_slice(&split);
        } else {
            out.push(NUM_XOR);
            out.extend_from_slice(&xor);
        }
    }
}

pub(crate) fn decode_numbers(r: &mut Reader<'_>, n: usize) -> Result<Vec<f64>, ChunkError> {
    match r.u8()? {
        NUM_DECIMAL => {
            let k = usize::from(r.u8()?);
            let scale = *POW10.get(k).ok_or_else(|| corrupt("decimal scale over 9"))?;
            Ok(ints::decode(r, n)?.into_iter().map(|m| m as f64 / scale).collect())
        }
        NUM_XOR => {
            let mut bits = BitReader::new(r.rest());
            let values = xor_decode(&mut bits, n)?;
            r.skip(bits.bytes_used())?;
            Ok(values)
        }
        NUM_SPLIT => split_decode(r, n),
        other => Err(ChunkError(format!("unknown number mode {other}"))),
    }
}

/// Noise with a full mantissa: the signs and the 11-bit exponents as two integer sequences
/// (constant signs and nearby exponents cost little), then each 52-bit mantissa as it is.
fn split_encode(values: &[f64]) -> Vec<u8> {
    let signs: Vec<i64> = values.iter().map(|v| (v.to_bits() >> 63) as i64).collect();
    let exponents: Vec<i64> = values.iter().map(|v| ((v.to_bits() >> MANTISSA_BITS) & 0x7ff) as i64).collect();
    let mut out = Vec::new();
    ints::encode(&signs, &[0], &mut out);
    ints::encode(&exponents, &[0, 1], &mut out);
    let mut w = BitWriter::default();
    for v in values {
        w.write(v.to_bits() & MANTISSA, MANTISSA_BITS);
    }
    out.extend_from_slice(&w.finish());
    out
}

fn split_decode(r: &mut Reader<'_>, n: usize) -> Result<Vec<f64>, ChunkError> {
    let signs = ints::decode(r, n)?;
    let exponents = ints::decode(r, n)?;
    let mut bits = BitReader::new(r.rest());
    if n.saturating_mul(MANTISSA_BITS as usize) > bits.bits_left() {
        return Err(corrupt("mantissas truncated"));
    }
    let mut out = Vec::with_capacity(n);
    for (sign, exponent) in signs.into_iter().zip(exponents) {
        if !(0..=1).contains(&sign) || !(0..=0x7ff).contains(&exponent) {
            return Err(corrupt("sign over 1 bit or exponent over 11 bits"));
        }
        let head = (sign as u64) << 11 | exponent as u64;
        out.push(f64::from_bits(head << MANTISSA_BITS | bits.read(MANTISSA_BITS)?));
    }
    r.skip(bits.bytes_used())?;
    Ok(out)
}

fn xor_encode(values: &[f64]) -> Vec<u8> {
    let mut w = BitWriter::default();
    let Some((first, rest)) = values.split_first() else {
        return Vec::new();
    };
    let mut prev = first.to_bits();
    w.write(prev, 64);
    let mut window: Option<(u32, u32)> = None;
    for v in rest {
        let bits = v.to_bits();
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            w.write(0, 1);
            continue;
        }
        let lead = x.leading_zeros().min(31);
        let trail = x.trailing_zeros();
        match window {
            Some((l, t)) if lead >= l && trail >= t => {
                w.write(0b01, 2);
                w.write(x >> t, 64 - l - t);
            }
            _ => {
                let len = 64 - lead - trail;
                w.write(0b11, 2);
                w.write(u64::from(lead), 5);
                w.write(u64::from(len - 1), 6);
                w.write(x >> trail, len);
                window = Some((lead, trail));
            }
        }
    }
    w.finish()
}

fn xor_decode(r: &mut BitReader<'_>, n: usize) -> Result<Vec<f64>, ChunkError> {
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Ok(out);
    }
    let mut prev = r.read(64)?;
    out.push(f64::from_bits(prev));
    let mut window: Option<(u32, u32)> = None;
    while out.len() < n {
        if r.read(1)? == 1 {
            let (lead, len) = if r.read(1)? == 0 {
                let (l, t) = window.ok_or_else(|| corrupt("XOR window reused before set"))?;
                (l, 64 - l - t)
            } else {
                let lead = r.read(5)? as u32;
                let len = r.read(6)? as u32 + 1;
                if lead + len > 64 {
                    return Err(corrupt("XOR window past 64 bits"));
                }
                window = Some((lead, 64 - lead - len));
                (lead, len)
            };
            prev ^= r.read(len)? << (64 - lead - len);
        }
        out.push(f64::from_bits(prev));
    }
    Ok(out)
}

pub(crate) fn encode_text(texts: &[&Arc<str>], out: &mut Vec<u8>) {
    let mut index: HashMap<&str, i64> = HashMap::new();
    let mut dict: Vec<&str> = Vec::new();
    let ids: Vec<i64> = texts
        .iter()
        .map(|t| {
            *index.entry(t).or_insert_with(|| {
                dict.push(t);
                dict.len() as i64 - 1
            })
        })
        .collect();
    put_varint(out, dict.len() as u64);
    for s in dict {
        put_varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    ints::encode(&ids, &[0], out);
}

pub(crate) fn decode_text(r: &mut Reader<'_>, n: usize) -> Result<Vec<Arc<str>>, ChunkError> {
    let entries = r.bounded((r.remaining() as u64).min(n as u64), "dictionary size")?;
    let mut dict: Vec<Arc<str>> = Vec::with_capacity(entries);
    for _ in 0..entries {
        dict.push(string(r)?);
    }
    ints::decode(r, n)?
        .into_iter()
        .map(|id| {
            usize::try_from(id)
                .ok()
                .and_then(|id| dict.get(id).cloned())
                .ok_or_else(|| corrupt("dictionary index out of range"))
        })
        .collect()
}

/// A varint length and that many UTF-8 bytes.
pub(crate) fn string(r: &mut Reader<'_>) -> Result<Arc<str>, ChunkError> {
    let len = r.bounded(r.remaining() as u64, "string length")?;
    let bytes = r.bytes(len)?;
    std::str::from_utf8(bytes).map(Arc::from).map_err(|_| corrupt("string not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers_round_trip(values: &[f64]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_numbers(values, &mut out);
        let mut r = Reader::new(&out);
        let back = decode_numbers(&mut r, values.len()).unwrap();
        let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(values));
        assert_eq!(r.remaining(), 0);
        out
    }

    #[test]
    fn decimals_are_scaled() {
        assert_eq!(decimal(&[21.3, 21.25, -0.001]).map(|d| d.0), Some(3));
        assert_eq!(decimal(&[1.0, 0.0, 1.0]).map(|d| d.0), Some(0));
        assert_eq!(decimal(&[0.1 + 0.2]), None);
        assert_eq!(decimal(&[-0.0]), None);
        assert_eq!(decimal(&[f64::NAN]), None);
        assert_eq!(decimal(&[f64::INFINITY]), None);
        assert_eq!(decimal(&[1e300]), None);
        assert_eq!(numbers_round_trip(&[21.3, 21.3, 21.4])[0], NUM_DECIMAL);
    }

    #[test]
    fn special_floats_round_trip_by_xor() {
        let odd = [
            -0.0,
            0.0,
            f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            5e-324,
            -0.0,
            1.5,
        ];
        assert_eq!(numbers_round_trip(&odd)[0], NUM_XOR);
        numbers_round_trip(&[0.1 + 0.2; 3]);
    }

    #[test]
    fn full_mantissa_noise_is_split() {
        // Deterministic noise around a level, every mantissa bit used.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<f64> = (0..3600)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                4.0 + (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect();
        let out = numbers_round_trip(&noise);
        assert_eq!(out[0], NUM_SPLIT);
        assert!(out.len() < xor_encode(&noise).len());
        assert!((out.len() as f64 / 3600.0) < 7.0, "{} bytes", out.len());
        // Both special paths keep every bit, whichever is chosen.
        let odd = [-0.0, f64::NAN, f64::from_bits(0xfff0_0000_0000_0001), f64::NEG_INFINITY, 5e-324];
        let mut out = vec![NUM_SPLIT];
        out.extend(split_encode(&odd));
        let back = decode_numbers(&mut Reader::new(&out), odd.len()).unwrap();
        assert_eq!(back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), odd.map(f64::to_bits));
        // A sign over 1 bit, or an exponent over 11 bits, is refused.
        for (sign, exponent) in [(2, 0), (0, 2048), (-1, 0)] {
            let mut bad = vec![NUM_SPLIT];
            ints::encode(&[sign], &[0], &mut bad);
            ints::encode(&[exponent], &[0], &mut bad);
            bad.extend([0; 7]);
            assert!(decode_numbers(&mut Reader::new(&bad), 1).is_err());
        }
        // Gaussian-like noise around zero: signs flip, exponents wander.
        let around_zero: Vec<f64> = noise.iter().map(|v| (v - 4.0) * 0.1).collect();
        let out = numbers_round_trip(&around_zero);
        assert!((out.len() as f64 / 3600.0) < 7.5, "{} bytes", out.len());
    }

    #[test]
    fn kinds_round_trip() {
        for kinds in [vec![false; 3], vec![true; 2], vec![true, false, false, true], vec![false, true]] {
            let mut out = Vec::new();
            encode_kinds(&kinds, &mut out);
            assert_eq!(decode_kinds(&mut Reader::new(&out), kinds.len()).unwrap(), kinds);
        }
        // Runs that overshoot or fall short of the point count.
        assert!(decode_kinds(&mut Reader::new(&[2, 1, 5]), 4).is_err());
        assert!(decode_kinds(&mut Reader::new(&[2, 2, 1, 1]), 4).is_err());
    }

    #[test]
    fn bad_xor_streams_are_errors() {
        // First value, then `10` with no window set.
        let mut w = BitWriter::default();
        w.write(0, 64);
        w.write(0b01, 2);
        let bytes = w.finish();
        assert!(xor_decode(&mut BitReader::new(&bytes), 2).is_err());
        // `11`, lead 31, length 64: past 64 bits.
        let mut w = BitWriter::default();
        w.write(0, 64);
        w.write(0b11, 2);
        w.write(31, 5);
        w.write(63, 6);
        w.write(u64::MAX, 64);
        let bytes = w.finish();
        assert!(xor_decode(&mut BitReader::new(&bytes), 2).is_err());
    }
}
