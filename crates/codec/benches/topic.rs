//! Wildcard matching cost: exact, `+` and `#` filters against a typical device topic, and the
//! early exits (first-level mismatch, `$` topics).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard_codec::topic::{matches, valid_topic_filter};

const TOPIC: &str = "app.example.com/resources/sensor-0042/events";

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("matches");
    let cases = [
        ("exact", "app.example.com/resources/sensor-0042/events"),
        ("plus", "app.example.com/resources/+/events"),
        ("hash", "app.example.com/#"),
        ("miss_first_level", "other.example.com/resources/+/events"),
        ("miss_last_level", "app.example.com/resources/sensor-0042/commands"),
    ];
    for (name, filter) in cases {
        group.bench_function(name, |b| b.iter(|| matches(black_box(filter), black_box(TOPIC))));
    }
    group.bench_function("dollar_topic", |b| b.iter(|| matches(black_box("#"), black_box("$SYS/broker/clients"))));
    group.finish();
    c.bench_function("valid_topic_filter", |b| {
        b.iter(|| valid_topic_filter(black_box("$share/g/app.example.com/resources/+/events")))
    });
}

criterion_group!(topic, benches);
criterion_main!(topic);
