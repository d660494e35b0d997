//! Feeds arbitrary bytes to the chunk decoder (header, summary, points: errors are fine, panics
//! are not; whatever decodes re-encodes to the same points), then builds points from the same
//! bytes and checks that they round-trip through a chunk bit for bit.

#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard_series::chunk::Chunk;
use switchyard_series::{Point, Value};

/// Numbers by bit pattern, so NaN payloads and -0.0 compare exactly.
fn key(points: &[Point]) -> Vec<(i64, Result<u64, Arc<str>>)> {
    points
        .iter()
        .map(|p| match &p.value {
            Value::Number(v) => (p.ts, Ok(v.to_bits())),
            Value::Text(t) => (p.ts, Err(t.clone())),
        })
        .collect()
}

/// Points from bytes, 11 per record: a timestamp step (i16, so duplicates and disorder are
/// common; an 0x7fff step jumps by a full i64 from the record), a kind byte, and a value.
fn points(data: &[u8]) -> Vec<Point> {
    let mut ts = 0i64;
    data.chunks_exact(11)
        .map(|r| {
            let step = i16::from_le_bytes([r[0], r[1]]);
            let bits = u64::from_le_bytes(r[3..11].try_into().expect("8 bytes"));
            ts = if step == i16::MAX { bits as i64 } else { ts.wrapping_add(i64::from(step)) };
            let value = match r[2] % 4 {
                0 => Value::Number(f64::from_bits(bits)),
                1 => Value::Number((bits as i32) as f64 / 10f64.powi(i32::from(r[2] >> 4))),
                2 => Value::Number(f64::from(r[3] & 1)),
                _ => Value::Text(Arc::from(String::from_utf8_lossy(&r[3..3 + usize::from(r[4] % 8)]))),
            };
            Point { ts, value }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(chunk) = Chunk::from_bytes(Bytes::copy_from_slice(data)) {
        let summary = chunk.summary();
        let _ = chunk.span();
        if let (Ok(summary), Ok(decoded)) = (summary, chunk.points()) {
            assert_eq!(summary.count as usize, decoded.len());
            let again = Chunk::encode(&decoded).points().expect("a re-encoded chunk decodes");
            assert_eq!(key(&again), key(&decoded));
        }
    }
    let built = points(data);
    if !built.is_empty() {
        let chunk = Chunk::encode(&built);
        let mut sorted = built.clone();
        sorted.sort_by_key(|p| p.ts);
        let back = Chunk::from_bytes(chunk.as_bytes().clone()).expect("header").points().expect("points");
        assert_eq!(key(&back), key(&sorted));
    }
});
