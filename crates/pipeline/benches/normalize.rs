//! Intake cost per message: one event of ten metrics (numbers, a boolean, a string, a nested
//! object) as MQTT sends it, and a batch of 100 such events as an HTTP request.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchyard_identity::{Domain, ResourceId};
use switchyard_pipeline::{Options, Pipeline, PipelineConfig};

fn event(i: u32) -> String {
    format!(
        r#"{{"temp":21.{d},"humidity":48.{d},"pressure":1013.{d},"count":{i},"on":true,"state":"ok","battery":3.7,"rssi":-71,"sensors":{{"a":0.{d},"b":1.{d}}}}}"#,
        d = i % 10
    )
}

fn benches(c: &mut Criterion) {
    let pipeline = Pipeline::new(PipelineConfig::default());
    let tenant = Domain::parse("app.example.com").unwrap();
    let resource = ResourceId::parse("sensor-0042").unwrap();
    let one = event(7);
    let batch = format!("[{}]", (0..100).map(event).collect::<Vec<_>>().join(","));

    let mut group = c.benchmark_group("normalize");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_event_10_metrics", |b| {
        b.iter(|| pipeline.http(&tenant, Some(&resource), black_box(one.as_bytes()), Options::default(), 1).unwrap())
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("batch_of_100", |b| {
        b.iter(|| pipeline.http(&tenant, Some(&resource), black_box(batch.as_bytes()), Options::default(), 1).unwrap())
    });
    group.finish();
}

criterion_group!(normalize, benches);
criterion_main!(normalize);
