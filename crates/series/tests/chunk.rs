//! The chunk codec through its public interface: round trips of arbitrary points (any `f64` by
//! bits, text, unsorted and duplicate timestamps), summaries against a direct computation,
//! arbitrary bytes, and the size of a realistic 1 Hz mix.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use switchyard_series::chunk::{Chunk, Summary};
use switchyard_series::{Point, Value};

/// Points compared with numbers by bit pattern (NaN == NaN, -0.0 != 0.0).
fn key(points: &[Point]) -> Vec<(i64, Result<u64, Arc<str>>)> {
    points
        .iter()
        .map(|p| match &p.value {
            Value::Number(v) => (p.ts, Ok(v.to_bits())),
            Value::Text(t) => (p.ts, Err(t.clone())),
        })
        .collect()
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// The summary computed directly: numbers in timestamp order, m2 around sum / numbers.
fn direct(sorted: &[Point]) -> Summary {
    let nums: Vec<f64> = sorted
        .iter()
        .filter_map(|p| match p.value {
            Value::Number(v) => Some(v),
            Value::Text(_) => None,
        })
        .collect();
    let sum: f64 = nums.iter().sum();
    let mean = sum / nums.len() as f64;
    let non_nan = || nums.iter().copied().filter(|v| !v.is_nan());
    Summary {
        count: sorted.len() as u64,
        numbers: nums.len() as u64,
        sum,
        m2: nums.iter().map(|v| (v - mean).powi(2)).sum(),
        min: non_nan().reduce(f64::min).unwrap_or(f64::NAN),
        max: non_nan().reduce(f64::max).unwrap_or(f64::NAN),
        first: sorted[0].clone(),
        last: sorted[sorted.len() - 1].clone(),
    }
}

fn check_round_trip(points: &[Point]) {
    let chunk = Chunk::encode(points);
    let again = Chunk::from_bytes(chunk.as_bytes().clone()).expect("header");
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|p| p.ts);
    assert_eq!(key(&again.points().expect("points")), key(&sorted));
    let (s, d) = (again.summary().unwrap(), direct(&sorted));
    assert_eq!((s.count, s.numbers), (d.count, d.numbers));
    assert_eq!(key(&[s.first.clone(), s.last.clone()]), key(&[d.first.clone(), d.last.clone()]));
    for (got, want) in [(s.sum, d.sum), (s.m2, d.m2), (s.min, d.min), (s.max, d.max)] {
        assert!(same(got, want), "{s:?} != {d:?}");
    }
    assert_eq!(again.span().unwrap(), (d.first.ts, d.last.ts));
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => any::<u64>().prop_map(|b| Value::Number(f64::from_bits(b))),
        4 => (-100_000i64..100_000, 0u32..4).prop_map(|(m, k)| Value::Number(m as f64 / 10f64.powi(k as i32))),
        1 => prop::sample::select(vec![0.0, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.0])
            .prop_map(Value::Number),
        2 => "[a-z]{0,3}|\\PC{0,8}".prop_map(|s| Value::Text(Arc::from(s))),
    ]
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![any::<i64>(), -5i64..5, 1_700_000_000_000i64..1_700_000_010_000]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_points_round_trip(points in prop::collection::vec((timestamp(), value()), 1..300)) {
        let points: Vec<Point> = points.into_iter().map(|(ts, value)| Point { ts, value }).collect();
        check_round_trip(&points);
    }

    #[test]
    fn regular_series_round_trip(start in any::<i64>(), step in 0i64..100_000, len in 1usize..2000,
                                 scale in 0u32..10, seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let points: Vec<Point> = (0..len)
            .map(|i| Point {
                ts: start.wrapping_add(step.wrapping_mul(i as i64)),
                value: Value::Number((rng.next() % 2000) as f64 / 10f64.powi(scale as i32)),
            })
            .collect();
        check_round_trip(&points);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(chunk) = Chunk::from_bytes(Bytes::from(bytes)) {
            let _ = chunk.summary();
            let _ = chunk.span();
            let _ = chunk.points();
        }
    }

    #[test]
    fn corrupted_chunks_never_panic(points in prop::collection::vec((timestamp(), value()), 1..50),
                                    flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
                                    cut in any::<prop::sample::Index>()) {
        let points: Vec<Point> = points.into_iter().map(|(ts, value)| Point { ts, value }).collect();
        let mut bytes = Chunk::encode(&points).as_bytes().to_vec();
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        let truncated = bytes[..cut.index(bytes.len() + 1)].to_vec();
        for b in [bytes, truncated] {
            if let Ok(chunk) = Chunk::from_bytes(Bytes::from(b)) {
                let _ = chunk.summary();
                let _ = chunk.points();
            }
        }
    }
}

#[test]
fn duplicates_are_kept_in_given_order() {
    let p = |ts, v: f64| Point { ts, value: Value::Number(v) };
    let points = [p(5, 1.0), p(3, 2.0), p(5, 3.0), p(3, 4.0)];
    let chunk = Chunk::encode(&points);
    assert_eq!(chunk.points().unwrap(), vec![p(3, 2.0), p(3, 4.0), p(5, 1.0), p(5, 3.0)]);
    let s = chunk.summary().unwrap();
    assert_eq!((s.first, s.last), (p(3, 2.0), p(5, 3.0)));
}

#[test]
fn negative_zero_and_nan_payloads_survive() {
    let bits = [(-0.0f64).to_bits(), 0x7ff8_0000_0000_0001, 0xfff0_0000_0000_0001, 0];
    let points: Vec<Point> = bits
        .iter()
        .enumerate()
        .map(|(i, b)| Point { ts: i as i64, value: Value::Number(f64::from_bits(*b)) })
        .collect();
    check_round_trip(&points);
}

#[test]
fn text_only_and_mixed_chunks() {
    let t = |ts, s: &str| Point { ts, value: Value::Text(Arc::from(s)) };
    let n = |ts, v: f64| Point { ts, value: Value::Number(v) };
    check_round_trip(&[t(1, "on"), t(2, "off"), t(3, "on"), t(4, "")]);
    check_round_trip(&[t(1, "é"), n(2, 1.5), n(3, 2.5), t(4, "x"), n(5, 0.0)]);
    let s = Chunk::encode(&[t(1, "a"), t(2, "b")]).summary().unwrap();
    assert_eq!((s.numbers, s.sum, s.m2), (0, 0.0, 0.0));
    assert!(s.min.is_nan() && s.max.is_nan());
}

#[test]
fn header_is_checked_and_points_are_capped_by_length() {
    assert!(Chunk::from_bytes(Bytes::new()).is_err());
    assert!(Chunk::from_bytes(Bytes::from_static(&[2])).is_err());
    // Version 1 claiming 2^60 points in a few bytes.
    assert!(Chunk::from_bytes(Bytes::from_static(&[1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10])).is_err());
    let chunk = Chunk::encode(&[Point { ts: 1, value: Value::Number(1.0) }]);
    let mut long = chunk.as_bytes().to_vec();
    long.push(0);
    assert!(Chunk::from_bytes(Bytes::from(long)).unwrap().points().is_err());
}

/// A deterministic generator (splitmix64) for the generated mixes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Box-Muller.
    fn gauss(&mut self, sd: f64) -> f64 {
        let (u, v) = (self.unit().max(f64::MIN_POSITIVE), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos() * sd
    }
}

/// One hour at 1 Hz of a named kind of series, as devices report it.
fn series(kind: &str, rng: &mut Rng) -> Vec<Point> {
    let start = 1_764_900_000_000i64;
    let mut state = 0.0f64;
    (0..3600)
        .map(|i| {
            let value = match kind {
                // A temperature, one decimal, drifting slowly.
                "temperature" => {
                    state += (rng.unit() - 0.5) * 0.05;
                    (215.0 + (state * 10.0).round()) / 10.0
                }
                // Relative humidity, two decimals, noisy in the last digit or two.
                "humidity" => (4500.0 + (rng.unit() * 40.0).floor()) / 100.0,
                // A monotonic counter (bytes sent), growing by an irregular amount.
                "counter" => {
                    state += (rng.next() % 2000) as f64;
                    state
                }
                // A boolean that changes a few times an hour.
                "boolean" => {
                    if rng.next().is_multiple_of(600) {
                        state = 1.0 - state;
                    }
                    state
                }
                // A noisy three-decimal reading (a vibration sensor).
                "noisy" => ((rng.unit() - 0.5) * 2000.0).round() / 1000.0,
                // Full-precision Gaussian noise around zero (a vibration axis) and around a level
                // (a current): every mantissa bit used.
                "vibration" => rng.gauss(0.05),
                "current" => 4.2 + rng.gauss(0.1),
                // Full-precision noise: incompressible by construction.
                _ => rng.unit() * 100.0,
            };
            Point { ts: start + i * 1000, value: Value::Number(value) }
        })
        .collect()
}

#[test]
fn realistic_mix_costs_under_a_byte_and_a_half_per_point() {
    let mut rng = Rng(42);
    let mut total = (0usize, 0usize);
    for kind in ["temperature", "humidity", "counter", "boolean", "noisy"] {
        let points = series(kind, &mut rng);
        let bytes = Chunk::encode(&points).as_bytes().len();
        println!("{kind:>12}: {:.3} bytes/point", bytes as f64 / points.len() as f64);
        total = (total.0 + bytes, total.1 + points.len());
    }
    let mix = total.0 as f64 / total.1 as f64;
    println!("{:>12}: {mix:.3} bytes/point", "mix");
    let random = series("random", &mut rng);
    let random_bytes = Chunk::encode(&random).as_bytes().len() as f64 / random.len() as f64;
    println!("{:>12}: {random_bytes:.3} bytes/point (full-precision noise)", "random");
    for kind in ["vibration", "current"] {
        let points = series(kind, &mut rng);
        let bytes = Chunk::encode(&points).as_bytes().len() as f64 / points.len() as f64;
        println!("{kind:>12}: {bytes:.3} bytes/point (full-precision Gaussian noise)");
        assert!(bytes < 7.5, "{kind}: {bytes} bytes/point");
    }
    // Server receive times: 1 Hz with up to 20 ms of jitter, the temperature's values.
    let mut jittered = series("temperature", &mut rng);
    for p in &mut jittered {
        p.ts += (rng.next() % 20) as i64;
    }
    let jitter_bytes = Chunk::encode(&jittered).as_bytes().len() as f64 / jittered.len() as f64;
    println!("{:>12}: {jitter_bytes:.3} bytes/point (temperature, timestamps jittered by 0-19 ms)", "jittered");
    assert!(mix < 1.5, "{mix} bytes/point");
    assert!(random_bytes < 7.5, "{random_bytes} bytes/point");
}
