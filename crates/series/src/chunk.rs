//! The sealed chunk: a run of one series' points in time order, compressed, with a [`Summary`]
//! in its header so that aggregates other than quantiles never decode the points.
//!
//! Layout (version 1; varints are LEB128, `zz` is zigzag, `f64` is 8 bytes little-endian):
//!
//! ```text
//! header  u8 version = 1
//!         varint count (≥ 1)            zz-varint min_ts      varint max_ts − min_ts
//!         varint numbers                f64 sum  f64 m2  f64 min  f64 max
//!         value first                   value last            (u8 0 + f64 | u8 1 + string)
//! body    varint length of the timestamp section, then the timestamps as an integer sequence
//!         (delta-of-delta: see `ints`), the kind runs, the numbers, the strings (`values`)
//! ```
//!
//! The header alone gives [`Chunk::summary`] and [`Chunk::span`]. Decoding never panics, never
//! allocates more than a fixed multiple of the input length (a point costs at least 1/64 byte
//! per column, so `count ≤ 64 · len` is enforced) and always terminates.

use std::sync::Arc;

use bytes::Bytes;

use crate::{Point, Value};

mod bits;
mod ints;
mod values;

use bits::{Reader, corrupt, put_f64, put_varint, unzigzag, zigzag};

const VERSION: u8 = 1;
const VALUE_NUMBER: u8 = 0;
const VALUE_TEXT: u8 = 1;
/// A point costs at least 1/64 byte in each column, so no valid chunk claims more points.
const MAX_POINTS_PER_BYTE: u64 = ints::BLOCK as u64;

/// Why stored bytes are not a chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt chunk: {0}")]
pub struct ChunkError(pub String);

/// What a chunk holds, readable from its header alone. `min`, `max`, `sum`, `m2` cover the
/// numeric points only (`numbers` of them): `m2` is the sum of squared deviations from their mean
/// (Σ(x − sum/numbers)², computed in two passes), which merges stably across chunks where a sum
/// of squares would cancel catastrophically. `min`/`max` skip NaN (NaN only when every number
/// is NaN, or there are none). `first`/`last` are the points with the smallest and largest
/// timestamp (of equal ones, the first and last given), whatever their value.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub numbers: u64,
    pub sum: f64,
    pub m2: f64,
    pub min: f64,
    pub max: f64,
    pub first: Point,
    pub last: Point,
}

impl Summary {
    /// Summarizes points already in timestamp order (not empty).
    fn of(points: &[&Point]) -> Summary {
        let mut numbers = 0u64;
        let (mut sum, mut min, mut max) = (0.0, f64::NAN, f64::NAN);
        for p in points {
            if let Value::Number(v) = p.value {
                numbers += 1;
                sum += v;
                min = f64::min(min, v);
                max = f64::max(max, v);
            }
        }
        let mean = sum / numbers as f64;
        let m2 = points
            .iter()
            .filter_map(|p| match p.value {
                Value::Number(v) => Some((v - mean) * (v - mean)),
                Value::Text(_) => None,
            })
            .sum();
        Summary {
            count: points.len() as u64,
            numbers,
            sum,
            m2,
            min,
            max,
            first: (*points[0]).clone(),
            last: (*points[points.len() - 1]).clone(),
        }
    }
}

/// An encoded chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk(Bytes);

/// A chunk's points as columns: `kinds[i]` is true where point `i` is text; `numbers` and
/// `texts` hold the values of the numeric and text points, in order (exactly as many as the
/// kinds call for).
pub(crate) struct Columns {
    pub(crate) ts: Vec<i64>,
    pub(crate) kinds: Vec<bool>,
    pub(crate) numbers: Vec<f64>,
    pub(crate) texts: Vec<Arc<str>>,
}

impl Columns {
    /// Each point's timestamp and value.
    pub(crate) fn into_values(self) -> impl Iterator<Item = (i64, Value)> {
        let (mut numbers, mut texts) = (self.numbers.into_iter(), self.texts.into_iter());
        self.ts.into_iter().zip(self.kinds).map(move |(ts, text)| {
            let value = if text {
                Value::Text(texts.next().expect("one string per text point"))
            } else {
                Value::Number(numbers.next().expect("one number per numeric point"))
            };
            (ts, value)
        })
    }
}

/// The parsed header and where the body starts.
struct Header {
    summary: Summary,
    body: usize,
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Number(v) => {
            out.push(VALUE_NUMBER);
            put_f64(out, *v);
        }
        Value::Text(s) => {
            out.push(VALUE_TEXT);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn read_value(r: &mut Reader<'_>) -> Result<Value, ChunkError> {
    match r.u8()? {
        VALUE_NUMBER => Ok(Value::Number(r.f64()?)),
        VALUE_TEXT => Ok(Value::Text(values::string(r)?)),
        other => Err(ChunkError(format!("unknown value tag {other}"))),
    }
}

fn header(bytes: &[u8]) -> Result<Header, ChunkError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != VERSION {
        return Err(ChunkError(format!("unknown version {version}")));
    }
    let max_points = (bytes.len() as u64).saturating_mul(MAX_POINTS_PER_BYTE);
    let count = r.bounded(max_points, "point count")? as u64;
    if count == 0 {
        return Err(corrupt("no points"));
    }
    let min_ts = unzigzag(r.varint()?);
    let max_ts = min_ts.wrapping_add(r.varint()? as i64);
    if max_ts < min_ts {
        return Err(corrupt("span ends before it starts"));
    }
    let numbers = r.bounded(count, "number count")? as u64;
    let (sum, m2, min, max) = (r.f64()?, r.f64()?, r.f64()?, r.f64()?);
    let first = Point { ts: min_ts, value: read_value(&mut r)? };
    let last = Point { ts: max_ts, value: read_value(&mut r)? };
    let summary = Summary { count, numbers, sum, m2, min, max, first, last };
    Ok(Header { summary, body: bytes.len() - r.remaining() })
}

impl Chunk {
    /// Encodes `points` (any order; they are sorted by timestamp, stable, duplicates kept).
    /// Panics on an empty slice: a chunk holds at least one point.
    pub fn encode(points: &[Point]) -> Chunk {
        assert!(!points.is_empty(), "a chunk holds at least one point");
        let mut sorted: Vec<&Point> = points.iter().collect();
        sorted.sort_by_key(|p| p.ts);
        let s = Summary::of(&sorted);

        let mut out = vec![VERSION];
        put_varint(&mut out, s.count);
        put_varint(&mut out, zigzag(s.first.ts));
        put_varint(&mut out, s.last.ts.wrapping_sub(s.first.ts) as u64);
        put_varint(&mut out, s.numbers);
        for v in [s.sum, s.m2, s.min, s.max] {
            put_f64(&mut out, v);
        }
        put_value(&mut out, &s.first.value);
        put_value(&mut out, &s.last.value);

        let ts: Vec<i64> = sorted.iter().map(|p| p.ts).collect();
        let mut section = Vec::new();
        ints::encode(&ts, &[1, 2], &mut section);
        put_varint(&mut out, section.len() as u64);
        out.extend_from_slice(&section);

        let kinds: Vec<bool> = sorted.iter().map(|p| matches!(p.value, Value::Text(_))).collect();
        values::encode_kinds(&kinds, &mut out);
        let mut numbers = Vec::with_capacity(sorted.len());
        let mut texts = Vec::new();
        for p in &sorted {
            match &p.value {
                Value::Number(v) => numbers.push(*v),
                Value::Text(t) => texts.push(t),
            }
        }
        if !numbers.is_empty() {
            values::encode_numbers(&numbers, &mut out);
        }
        if !texts.is_empty() {
            values::encode_text(&texts, &mut out);
        }
        Chunk(Bytes::from(out))
    }

    /// Checks the header of stored bytes.
    pub fn from_bytes(bytes: Bytes) -> Result<Chunk, ChunkError> {
        header(&bytes)?;
        Ok(Chunk(bytes))
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The header's summary, without decoding the points.
    pub fn summary(&self) -> Result<Summary, ChunkError> {
        header(&self.0).map(|h| h.summary)
    }

    /// The smallest and largest timestamp, from the header.
    pub fn span(&self) -> Result<(i64, i64), ChunkError> {
        let mut r = Reader::new(&self.0);
        r.u8()?;
        r.varint()?;
        let min_ts = unzigzag(r.varint()?);
        Ok((min_ts, min_ts.wrapping_add(r.varint()? as i64)))
    }

    /// Decodes every point, in timestamp order.
    pub fn points(&self) -> Result<Vec<Point>, ChunkError> {
        Ok(self.decode()?.into_values().map(|(ts, value)| Point { ts, value }).collect())
    }

    /// Every point's timestamp and value, in timestamp order, as columns.
    pub(crate) fn decode(&self) -> Result<Columns, ChunkError> {
        let h = header(&self.0)?;
        let n = h.summary.count as usize;
        let mut r = Reader::new(&self.0[h.body..]);
        let len = r.bounded(r.remaining() as u64, "timestamp section length")?;
        let mut ts_reader = Reader::new(r.bytes(len)?);
        let ts = ints::decode(&mut ts_reader, n)?;
        if ts_reader.remaining() != 0 {
            return Err(corrupt("bytes left in the timestamp section"));
        }
        if ts.first() != Some(&h.summary.first.ts) || ts.last() != Some(&h.summary.last.ts) {
            return Err(corrupt("timestamps disagree with the header"));
        }
        if ts.windows(2).any(|w| w[1] < w[0]) {
            return Err(corrupt("timestamps out of order"));
        }
        let (kinds, numbers, texts) = Self::columns(&mut r, n, h.summary.numbers as usize)?;
        if r.remaining() != 0 {
            return Err(corrupt("trailing bytes"));
        }
        Ok(Columns { ts, kinds, numbers, texts })
    }

    /// The numeric values alone, in timestamp order (skips the timestamps and the text).
    pub(crate) fn numbers(&self) -> Result<Vec<f64>, ChunkError> {
        let h = header(&self.0)?;
        let mut r = Reader::new(&self.0[h.body..]);
        let len = r.bounded(r.remaining() as u64, "timestamp section length")?;
        r.skip(len)?;
        let n = h.summary.count as usize;
        let kinds = values::decode_kinds(&mut r, n)?;
        let numbers = kinds.iter().filter(|t| !**t).count();
        if numbers != h.summary.numbers as usize {
            return Err(corrupt("kinds disagree with the header"));
        }
        if numbers == 0 {
            return Ok(Vec::new());
        }
        values::decode_numbers(&mut r, numbers)
    }

    /// Kind flags, numbers and strings of `n` points, checked against the header's number count.
    fn columns(r: &mut Reader<'_>, n: usize, numbers: usize) -> Result<ValueColumns, ChunkError> {
        let kinds = values::decode_kinds(r, n)?;
        let texts = kinds.iter().filter(|t| **t).count();
        if n - texts != numbers {
            return Err(corrupt("kinds disagree with the header"));
        }
        let numbers = if numbers > 0 { values::decode_numbers(r, numbers)? } else { Vec::new() };
        let texts = if texts > 0 { values::decode_text(r, texts)? } else { Vec::new() };
        Ok((kinds, numbers, texts))
    }
}

type ValueColumns = (Vec<bool>, Vec<f64>, Vec<Arc<str>>);
