//! One metric, 7 days at 1 Hz (604,800 points) in sealed one-hour chunks of 3,600 points: 168
//! hourly buckets with all ten aggregates (exact median and percentile decode every chunk's
//! numbers) and without quantiles (summaries only); and chunk encode/decode throughput.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchyard_series::chunk::Chunk;
use switchyard_series::query::{Aggregate, Block, Grouping, Order, Query, run};
use switchyard_series::{Point, Value};

const START: i64 = 1_764_547_200_000; // a UTC midnight
const HOUR: i64 = 3_600_000;

/// A temperature with one decimal, drifting (a deterministic walk).
fn points(hours: i64) -> Vec<Point> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut t = 215i64;
    (0..hours * 3600)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(10) {
                t += if x & 0x100 == 0 { 1 } else { -1 };
            }
            Point { ts: START + i * 1000, value: Value::Number(t as f64 / 10.0) }
        })
        .collect()
}

fn query(c: &mut Criterion) {
    let chunks: Vec<Chunk> = points(168).chunks(3600).map(Chunk::encode).collect();
    let bytes: usize = chunks.iter().map(|c| c.as_bytes().len()).sum();
    eprintln!("7 days at 1 Hz: {bytes} bytes in 168 chunks, {:.3} bytes/point", bytes as f64 / 604_800.0);
    let blocks = || chunks.iter().cloned().map(Block::Sealed).collect::<Vec<_>>();
    let q = |aggregates: Vec<Aggregate>| Query {
        from: START,
        until: START + 168 * HOUR,
        aggregates,
        grouping: Grouping::Every { ms: HOUR },
        order: Order::Asc,
        limit: None,
    };
    let all: Vec<Aggregate> = "min,max,mean,median,sum,count,first,last,std,percentile(95)"
        .split(',')
        .map(|a| a.parse().expect("aggregate"))
        .collect();
    let plain: Vec<Aggregate> =
        all.iter().copied().filter(|a| !matches!(a, Aggregate::Median | Aggregate::Percentile(_))).collect();
    let (all, plain) = (q(all), q(plain));
    // `auto` over 7 days picks 30 min buckets: every one-hour chunk spans two, so all decode.
    let auto = Query { grouping: Grouping::Auto, ..plain.clone() };
    assert_eq!(run(&all, blocks()).expect("query").len(), 168);

    let mut g = c.benchmark_group("query_7d_1hz_168_buckets");
    g.throughput(Throughput::Elements(604_800));
    g.bench_function("all_ten_aggregates", |b| b.iter(|| run(black_box(&all), blocks())));
    g.bench_function("without_quantiles", |b| b.iter(|| run(black_box(&plain), blocks())));
    g.bench_function("auto_30m_without_quantiles", |b| b.iter(|| run(black_box(&auto), blocks())));
    g.finish();
}

fn codec(c: &mut Criterion) {
    let hour = points(1);
    let chunk = Chunk::encode(&hour);
    let mut g = c.benchmark_group("chunk_3600_points");
    g.throughput(Throughput::Elements(3600));
    g.bench_function("encode", |b| b.iter(|| Chunk::encode(black_box(&hour))));
    g.bench_function("decode", |b| b.iter(|| black_box(&chunk).points()));
    g.finish();
}

criterion_group!(benches, query, codec);
criterion_main!(benches);
