//! Cost of one durable commit by batch size: batches of 1, 16 and 256 `PutMessage` ops of
//! 100 bytes. Per-element throughput shows what group commit buys.

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use switchyard_storage::{SessionOp, SessionStore};
use switchyard_storage_embedded::EmbeddedStore;

fn commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("create temporary directory");
    let store = EmbeddedStore::open(dir.path()).expect("open store");
    let record = Bytes::from(vec![0x5A; 100]);
    let mut group = c.benchmark_group("commit_put_message_100B");
    for batch in [1u64, 16, 256] {
        let session = format!("bench/batch-{batch}");
        let mut next_seq = 0u64;
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter_batched(
                || {
                    let ops: Vec<_> = (next_seq..next_seq + batch)
                        .map(|seq| SessionOp::PutMessage { session: session.clone(), seq, record: record.clone() })
                        .collect();
                    next_seq += batch;
                    ops
                },
                |ops| store.commit(&ops).expect("commit"),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, commit);
criterion_main!(benches);
