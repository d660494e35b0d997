//! The query engine against an independent, direct computation: every point resolved, filtered,
//! bucketed and aggregated the slow way (sorted vectors for quantiles, two-pass variance), over
//! data that crosses bucket edges and chunk boundaries, with overlapping blocks and duplicates.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use switchyard_series::chunk::Chunk;
use switchyard_series::query::{Aggregate, Block, Cell, Grouping, Order, Query, QueryError, Row, run};
use switchyard_series::{Point, Value};

const ALL: [Aggregate; 11] = [
    Aggregate::Min,
    Aggregate::Max,
    Aggregate::Mean,
    Aggregate::Median,
    Aggregate::Sum,
    Aggregate::Count,
    Aggregate::First,
    Aggregate::Last,
    Aggregate::Std,
    Aggregate::Percentile(95.0),
    Aggregate::Percentile(0.0),
];

fn num(ts: i64, v: f64) -> Point {
    Point { ts, value: Value::Number(v) }
}

fn text(ts: i64, s: &str) -> Point {
    Point { ts, value: Value::Text(Arc::from(s)) }
}

fn query(from: i64, until: i64, aggregates: &[Aggregate], grouping: Grouping) -> Query {
    Query { from, until, aggregates: aggregates.to_vec(), grouping, order: Order::Asc, limit: None }
}

/// The resolved points: at each timestamp only the latest block's points, in block order.
fn resolve(blocks: &[(bool, Vec<Point>)], from: i64, until: i64) -> Vec<Point> {
    let mut all: Vec<(i64, usize, usize, Point)> = Vec::new();
    for (b, (_, points)) in blocks.iter().enumerate() {
        let mut sorted = points.clone();
        sorted.sort_by_key(|p| p.ts);
        for (i, p) in sorted.into_iter().enumerate() {
            all.push((p.ts, b, i, p));
        }
    }
    let newest = |ts: i64, all: &[(i64, usize, usize, Point)]| all.iter().filter(|e| e.0 == ts).map(|e| e.1).max();
    let mut kept: Vec<(i64, usize, usize, Point)> =
        all.iter().filter(|e| Some(e.1) == newest(e.0, &all)).cloned().collect();
    kept.retain(|e| e.0 >= from && e.0 < until);
    kept.sort_by_key(|e| (e.0, e.1, e.2));
    kept.into_iter().map(|e| e.3).collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

fn direct_cells(points: &[Point], aggregates: &[Aggregate]) -> Vec<Cell> {
    let nums: Vec<f64> =
        points.iter().filter_map(|p| if let Value::Number(v) = p.value { Some(v) } else { None }).collect();
    let mut sorted = nums.clone();
    sorted.sort_by(f64::total_cmp);
    let n = nums.len() as f64;
    let sum: f64 = nums.iter().sum();
    let mean = sum / n;
    let cell = |v: &Value| match v {
        Value::Number(x) => Cell::Number(*x),
        Value::Text(t) => Cell::Text(t.clone()),
    };
    let numeric = |v: f64| if nums.is_empty() { Cell::Null } else { Cell::Number(v) };
    aggregates
        .iter()
        .map(|a| match a {
            Aggregate::Count => Cell::Number(points.len() as f64),
            Aggregate::First => cell(&points[0].value),
            Aggregate::Last => cell(&points[points.len() - 1].value),
            Aggregate::Min => numeric(sorted.first().copied().unwrap_or(0.0)),
            Aggregate::Max => numeric(sorted.last().copied().unwrap_or(0.0)),
            Aggregate::Sum => numeric(sum),
            Aggregate::Mean => numeric(mean),
            Aggregate::Std if nums.len() < 2 => Cell::Null,
            Aggregate::Std => Cell::Number((nums.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()),
            Aggregate::Median => numeric(if nums.is_empty() { 0.0 } else { percentile(&sorted, 50.0) }),
            Aggregate::Percentile(p) => numeric(if nums.is_empty() { 0.0 } else { percentile(&sorted, *p) }),
        })
        .collect()
}

fn direct(blocks: &[(bool, Vec<Point>)], q: &Query) -> Vec<Row> {
    let points = resolve(blocks, q.from, q.until);
    let mut rows: Vec<Row> = if q.aggregates.is_empty() {
        points
            .iter()
            .map(|p| Row {
                ts: p.ts,
                cells: vec![match &p.value {
                    Value::Number(v) => Cell::Number(*v),
                    Value::Text(t) => Cell::Text(t.clone()),
                }],
            })
            .collect()
    } else {
        let width = match q.grouping {
            Grouping::None => None,
            Grouping::Every { ms } => Some(ms),
            Grouping::Auto => panic!("the reference takes explicit widths"),
        };
        let start = |ts: i64| width.map_or(q.from, |w| ts.div_euclid(w) * w);
        let mut rows = Vec::new();
        let mut i = 0;
        while i < points.len() {
            let s = start(points[i].ts);
            let mut j = i;
            while j < points.len() && start(points[j].ts) == s {
                j += 1;
            }
            rows.push(Row { ts: s, cells: direct_cells(&points[i..j], &q.aggregates) });
            i = j;
        }
        rows
    };
    if q.order == Order::Desc {
        rows.reverse();
    }
    if let Some(limit) = q.limit {
        rows.truncate(limit);
    }
    rows
}

fn close(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::Number(x), Cell::Number(y)) => {
            x.to_bits() == y.to_bits() || (x - y).abs() <= 1e-9 * (1.0 + x.abs().max(y.abs()))
        }
        _ => a == b,
    }
}

fn blocks_of(spec: &[(bool, Vec<Point>)]) -> Vec<Block> {
    spec.iter()
        .map(|(sealed, points)| if *sealed { Block::Sealed(Chunk::encode(points)) } else { Block::Raw(points.clone()) })
        .collect()
}

fn check(spec: &[(bool, Vec<Point>)], q: &Query) {
    let got = run(q, blocks_of(spec)).expect("query runs");
    let want = direct(spec, q);
    let same = got.len() == want.len()
        && got.iter().zip(&want).all(|(g, w)| {
            g.ts == w.ts && g.cells.len() == w.cells.len() && g.cells.iter().zip(&w.cells).all(|(a, b)| close(a, b))
        });
    assert!(same, "query {q:?}\n got {got:?}\nwant {want:?}");
}

fn point() -> impl Strategy<Value = Point> {
    (
        -20i64..220,
        prop_oneof![
            8 => (-1000i64..1000).prop_map(|m| Value::Number(m as f64 / 10.0)),
            1 => prop::sample::select(vec!["on", "off"]).prop_map(|s| Value::Text(Arc::from(s))),
        ],
    )
        .prop_map(|(ts, value)| Point { ts, value })
}

fn blocks() -> impl Strategy<Value = Vec<(bool, Vec<Point>)>> {
    prop::collection::vec((any::<bool>(), prop::collection::vec(point(), 1..40)), 0..6)
}

fn aggregates() -> impl Strategy<Value = Vec<Aggregate>> {
    prop_oneof![
        1 => Just(Vec::new()),
        3 => prop::sample::subsequence(ALL.to_vec(), 1..=ALL.len()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn matches_the_direct_computation(spec in blocks(), from in -30i64..100, len in 0i64..300,
                                      aggregates in aggregates(), width in prop::option::of(1i64..80),
                                      desc in any::<bool>(), limit in prop::option::of(0usize..10)) {
        let mut q = query(from, from + len, &aggregates, width.map_or(Grouping::None, |ms| Grouping::Every { ms }));
        q.order = if desc { Order::Desc } else { Order::Asc };
        q.limit = limit;
        check(&spec, &q);
    }

    /// Disjoint, sealed, bucket-aligned chunks: the summary path.
    #[test]
    fn disjoint_chunks_match(values in prop::collection::vec(-1000i64..1000, 1..400), per_chunk in 1usize..60,
                             width in 1i64..100, quantile in any::<bool>()) {
        let points: Vec<Point> = values.iter().enumerate().map(|(i, m)| num(i as i64 * 3, *m as f64 / 100.0)).collect();
        let spec: Vec<(bool, Vec<Point>)> = points.chunks(per_chunk).map(|c| (true, c.to_vec())).collect();
        let aggs: &[Aggregate] = if quantile { &ALL } else { &ALL[..3] };
        check(&spec, &query(0, 3 * values.len() as i64, aggs, Grouping::Every { ms: width }));
        check(&spec, &query(0, 3 * values.len() as i64, aggs, Grouping::None));
    }
}

#[test]
fn later_blocks_replace_points_at_the_same_timestamp() {
    let spec = vec![
        (true, vec![num(1, 1.0), num(2, 2.0), num(2, 2.5), num(3, 3.0)]),
        (false, vec![num(2, 20.0), num(4, 40.0)]),
        (true, vec![num(10, 100.0)]),
    ];
    let rows = run(&query(0, 100, &[], Grouping::None), blocks_of(&spec)).unwrap();
    let got: Vec<(i64, Cell)> = rows.into_iter().map(|r| (r.ts, r.cells[0].clone())).collect();
    let want = [(1, 1.0), (2, 20.0), (3, 3.0), (4, 40.0), (10, 100.0)];
    assert_eq!(got, want.map(|(t, v)| (t, Cell::Number(v))));
    check(&spec, &query(0, 100, &ALL, Grouping::Every { ms: 2 }));
    // Duplicates within one block are all kept.
    let rows = run(&query(0, 100, &[Aggregate::Count], Grouping::None), blocks_of(&spec[..1])).unwrap();
    assert_eq!(rows, vec![Row { ts: 0, cells: vec![Cell::Number(4.0)] }]);
}

#[test]
fn buckets_align_to_the_epoch_and_skip_empty_ones() {
    let hour = 3_600_000;
    let spec = vec![(true, vec![num(-1, 1.0), num(0, 2.0), num(hour - 1, 3.0), num(3 * hour, 4.0)])];
    let q = query(-hour, 4 * hour, &[Aggregate::Sum, Aggregate::Count], "1h".parse().unwrap());
    let rows = run(&q, blocks_of(&spec)).unwrap();
    let ts: Vec<i64> = rows.iter().map(|r| r.ts).collect();
    assert_eq!(ts, [-hour, 0, 3 * hour]);
    assert_eq!(rows[1].cells, [Cell::Number(5.0), Cell::Number(2.0)]);
    check(&spec, &q);
}

#[test]
fn text_is_counted_and_firsts_but_never_averaged() {
    let spec = vec![(false, vec![text(1, "boot"), num(2, 4.0), text(3, "idle")])];
    let q = query(
        0,
        10,
        &[Aggregate::Count, Aggregate::First, Aggregate::Last, Aggregate::Mean, Aggregate::Std],
        Grouping::None,
    );
    let rows = run(&q, blocks_of(&spec)).unwrap();
    assert_eq!(
        rows[0].cells,
        [
            Cell::Number(3.0),
            Cell::Text(Arc::from("boot")),
            Cell::Text(Arc::from("idle")),
            Cell::Number(4.0),
            Cell::Null
        ]
    );
    let only_text = vec![(true, vec![text(1, "a")])];
    let rows = run(
        &query(0, 10, &[Aggregate::Min, Aggregate::Median, Aggregate::Count], Grouping::None),
        blocks_of(&only_text),
    )
    .unwrap();
    assert_eq!(rows[0].cells, [Cell::Null, Cell::Null, Cell::Number(1.0)]);
}

#[test]
fn whole_chunks_in_one_bucket_are_answered_from_the_summary() {
    let points: Vec<Point> = (0..100).map(|i| num(i, i as f64 * 0.5)).collect();
    let mut bytes = Chunk::encode(&points).as_bytes().to_vec();
    // Break the body, not the header.
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    bytes.push(0);
    let broken = Chunk::from_bytes(Bytes::from(bytes)).unwrap();
    let blocks = || vec![Block::Sealed(broken.clone())];
    let rows = run(&query(0, 100, &[Aggregate::Sum, Aggregate::Count], Grouping::None), blocks()).unwrap();
    assert_eq!(rows[0].cells, [Cell::Number(2475.0), Cell::Number(100.0)]);
    // Within one 50 s bucket: still the summary.
    assert!(run(&query(0, 100, &[Aggregate::Sum], "50s".parse().unwrap()), blocks()).is_ok());
    // Split across buckets, cut by the range, or asked for raw points: it must decode, and fails.
    assert!(matches!(
        run(&query(0, 100, &[Aggregate::Sum], Grouping::Every { ms: 50 }), blocks()),
        Err(QueryError::Chunk(_))
    ));
    assert!(matches!(run(&query(0, 100, &[], Grouping::None), blocks()), Err(QueryError::Chunk(_))));
    assert!(matches!(run(&query(0, 99, &[Aggregate::Sum], Grouping::None), blocks()), Err(QueryError::Chunk(_))));
}

#[test]
fn auto_grouping_and_large_offsets() {
    let base = 1_764_900_000_000i64;
    let points: Vec<Point> = (0..7200).map(|i| num(base + i * 1000, 1e6 + (i % 10) as f64 * 0.1)).collect();
    let spec: Vec<(bool, Vec<Point>)> = points.chunks(1000).map(|c| (true, c.to_vec())).collect();
    let q = query(base, base + 7_200_000, &ALL, Grouping::Auto);
    let rows = run(&q, blocks_of(&spec)).unwrap();
    // Two hours: 30 s buckets (1 s, 5 s and 10 s would give over 500).
    assert_eq!(rows.len(), 240);
    assert!(rows.iter().all(|r| r.ts % 30_000 == 0));
    check(&spec, &query(base, base + 7_200_000, &ALL, Grouping::Every { ms: 30_000 }));
    check(&spec, &query(base, base + 7_200_000, &ALL, Grouping::None));
    // The same points raw, and in chunks that straddle buckets: folded point by point, in batches.
    let raw = vec![(false, points.clone())];
    check(&raw, &query(base, base + 7_200_000, &ALL, Grouping::None));
    check(&raw, &query(base + 1, base + 7_200_000, &ALL, Grouping::Every { ms: 3_600_000 }));
    let straddling: Vec<(bool, Vec<Point>)> = points.chunks(1500).map(|c| (true, c.to_vec())).collect();
    check(&straddling, &query(base, base + 7_200_000, &ALL, Grouping::Every { ms: 1_800_000 }));
}

#[test]
fn grouping_and_aggregates_parse() {
    let ok = [
        ("none", Grouping::None),
        ("auto", Grouping::Auto),
        ("1s", Grouping::Every { ms: 1000 }),
        ("15m", Grouping::Every { ms: 900_000 }),
        ("2h", Grouping::Every { ms: 7_200_000 }),
        ("1d", Grouping::Every { ms: 86_400_000 }),
        ("1w", Grouping::Every { ms: 604_800_000 }),
        ("36500d", Grouping::Every { ms: 3_153_600_000_000 }),
    ];
    for (s, g) in ok {
        assert_eq!(s.parse::<Grouping>().unwrap(), g, "{s}");
    }
    for bad in ["", "0s", "s", "-1h", "1.5h", "1y", "36501d", "99999999999999999999w", "1 h", "h1"] {
        assert!(bad.parse::<Grouping>().is_err(), "{bad}");
    }
    let names = ["min", "max", "mean", "median", "sum", "count", "first", "last", "std", "percentile(95)"];
    let parsed: Vec<Aggregate> = names.iter().map(|n| n.parse().unwrap()).collect();
    assert_eq!(parsed[..], ALL[..10]);
    assert_eq!("percentile(99.9)".parse::<Aggregate>().unwrap(), Aggregate::Percentile(99.9));
    for bad in ["avg", "percentile(101)", "percentile(-1)", "percentile()", "percentile(NaN)", "percentile(5", "MIN"] {
        assert!(bad.parse::<Aggregate>().is_err(), "{bad}");
    }
    assert_eq!("desc".parse::<Order>().unwrap(), Order::Desc);
    assert!("up".parse::<Order>().is_err());
}

#[test]
fn invalid_queries_are_refused() {
    let bad = [
        query(10, 0, &[], Grouping::None),
        query(0, 10, &[Aggregate::Percentile(100.5)], Grouping::None),
        query(0, 10, &[Aggregate::Percentile(f64::NAN)], Grouping::None),
        query(0, 10, &[Aggregate::Sum], Grouping::Every { ms: 0 }),
    ];
    for q in bad {
        assert!(matches!(run(&q, Vec::new()), Err(QueryError::Invalid(_))), "{q:?}");
    }
    assert_eq!(run(&query(5, 5, &ALL, Grouping::None), blocks_of(&[(true, vec![num(5, 1.0)])])).unwrap(), vec![]);
}

#[test]
fn extreme_timestamps_do_not_overflow() {
    let spec = vec![(true, vec![num(i64::MIN, 1.0), num(i64::MAX - 1, 2.0)]), (false, vec![num(i64::MIN, 3.0)])];
    check(&spec, &query(i64::MIN, i64::MAX, &ALL, Grouping::None));
    let rows = run(&query(i64::MIN, i64::MAX, &[Aggregate::Count], Grouping::Auto), blocks_of(&spec)).unwrap();
    assert_eq!(rows.len(), 2);
    let rows = run(&query(i64::MIN, i64::MAX, &[Aggregate::Count], "1w".parse().unwrap()), blocks_of(&spec)).unwrap();
    assert_eq!(rows.len(), 2);
    // The first bucket would start before i64::MIN (MIN mod 1000 = 192): it is cut, not merged.
    let edge = vec![(true, vec![num(i64::MIN, 1.0), num(i64::MIN + 700, 1.0), num(i64::MIN + 900, 1.0)])];
    let rows = run(&query(i64::MIN, 0, &[Aggregate::Count], Grouping::Every { ms: 1000 }), blocks_of(&edge)).unwrap();
    let got: Vec<(i64, Cell)> = rows.into_iter().map(|r| (r.ts, r.cells[0].clone())).collect();
    assert_eq!(got, [(i64::MIN, Cell::Number(2.0)), (i64::MIN + 808, Cell::Number(1.0))]);
}

#[test]
fn raw_points_with_a_limit_decode_only_what_they_return() {
    let good = Chunk::encode(&[num(1, 1.0), num(2, 2.0), num(3, 3.0)]);
    let mut bytes = Chunk::encode(&[num(10, 10.0), num(11, 11.0)]).as_bytes().to_vec();
    bytes.push(0); // trailing byte: the header reads, the points do not
    let broken = Chunk::from_bytes(Bytes::from(bytes)).unwrap();
    let blocks = || vec![Block::Sealed(good.clone()), Block::Sealed(broken.clone())];
    let mut q = query(0, 100, &[], Grouping::None);
    q.limit = Some(2);
    let rows = run(&q, blocks()).unwrap();
    assert_eq!(rows.iter().map(|r| r.ts).collect::<Vec<_>>(), [1, 2]);
    q.order = Order::Desc;
    assert!(matches!(run(&q, blocks()), Err(QueryError::Chunk(_))));
    q.until = 10;
    let rows = run(&q, blocks()).unwrap();
    assert_eq!(rows.iter().map(|r| r.ts).collect::<Vec<_>>(), [3, 2]);
}
