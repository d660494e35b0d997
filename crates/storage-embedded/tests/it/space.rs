//! What the embedded data store leaves on disk with maintenance alone (no explicit compaction):
//! sealed head partitions dropped whole, what trimming the message cache deleted compacted away;
//! and unsealed points kept across partitions and reopening.

use std::sync::Arc;

use bytes::Bytes;
use switchyard_storage::conformance::data::{BASE, WINDOW_MS, points};
use switchyard_storage::data::{Block, DataStore, Ingest, MessageStore, ResourceKey, SeriesStore, TimeRange, Value};
use switchyard_storage_embedded::data::{HEAD_WINDOW_MS, SEAL_AGE_MS};
use switchyard_storage_embedded::{DataConfig, EmbeddedDataStore};

fn resource(n: usize) -> ResourceKey {
    ResourceKey { tenant: "t".into(), resource: format!("r{n}").into() }
}

/// A message of resource `n` at `ts` with ten points and a body of `body` bytes that compress
/// badly.
fn ingest(n: usize, ts: i64, body: usize, keep: u32) -> Ingest {
    let mut x = (ts as u64) ^ ((n as u64) << 40) ^ 0x9E37_79B9_7F4A_7C15;
    let body: String = (0..body)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    Ingest {
        resource: resource(n),
        ts,
        message_id: None,
        body: Bytes::from(body),
        expires_at: None,
        keep,
        points: (0..10).map(|m| (Arc::from(format!("m{m}")), Value::Number((ts / 1000 + m) as f64))).collect(),
        channel: switchyard_storage::data::Channel::Events,
        forward: true,
    }
}

fn open(dir: &std::path::Path) -> EmbeddedDataStore {
    EmbeddedDataStore::open(dir, DataConfig { idempotency_window_ms: WINDOW_MS, ..DataConfig::default() }).unwrap()
}

fn usage(store: &EmbeddedDataStore, name: &str) -> u64 {
    store.disk_usage().unwrap().into_iter().find(|(n, _)| *n == name).unwrap().1
}

fn sealed_and_raw(store: &EmbeddedDataStore, n: usize, now: i64) -> (usize, usize) {
    let blocks = store.scan(&resource(n), "m0", TimeRange::default(), now).unwrap();
    let sealed = blocks.iter().filter(|b| matches!(b, Block::Sealed(_))).count();
    (sealed, blocks.len() - sealed)
}

#[test]
fn sealing_drops_the_head_from_disk_without_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 20 resources × 1,000 messages: under the sealing count, recent at `BASE`.
    for second in 0..1_000 {
        let batch: Vec<_> = (0..20).map(|n| ingest(n, BASE + second * 1000, 0, 10)).collect();
        store.write(&batch, BASE).unwrap();
    }
    store.maintain(BASE).unwrap();
    assert_eq!(usage(&store, "head"), 0, "still in memory");
    store.maintain(BASE).unwrap(); // idle since the last run: the memtables are flushed
    let head = usage(&store, "head");
    assert!(head > 100_000, "{head} bytes of head in tables");
    assert_eq!(sealed_and_raw(&store, 3, BASE), (0, 1));

    store.maintain(BASE + SEAL_AGE_MS + 1_000_000).unwrap();
    assert_eq!(usage(&store, "head"), 0, "the sealed partition is dropped");
    assert_eq!(sealed_and_raw(&store, 3, BASE), (1, 0));
    assert_eq!(points(&store, &resource(3), "m9", TimeRange::default(), BASE).len(), 1_000);
    drop(store);

    let store = open(dir.path());
    assert_eq!(usage(&store, "head"), 0);
    assert_eq!(sealed_and_raw(&store, 3, BASE), (1, 0));
    assert_eq!(points(&store, &resource(19), "m9", TimeRange::default(), BASE).len(), 1_000);
}

#[test]
fn unsealed_points_in_several_partitions_are_read_deleted_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = BASE;
    store.write(&[ingest(0, BASE, 0, 10), ingest(1, BASE, 0, 10)], now).unwrap();
    store.maintain(now).unwrap();
    // A new partition: resource 0's first point stays in the old one.
    let now = now + HEAD_WINDOW_MS;
    store.maintain(now).unwrap();
    store.write(&[ingest(0, BASE + 2000, 0, 10), ingest(0, BASE + 1000, 0, 10)], now).unwrap();
    let times = |store: &EmbeddedDataStore, metric: &str| -> Vec<i64> {
        points(store, &resource(0), metric, TimeRange::default(), now).iter().map(|p| p.ts).collect()
    };
    assert_eq!(times(&store, "m4"), [BASE, BASE + 1000, BASE + 2000]);
    let latest = store.series(&resource(0), now).unwrap();
    assert_eq!(latest.len(), 10);
    assert!(latest.iter().all(|s| s.latest.ts == BASE + 2000), "{latest:?}");

    // Deleting across both partitions.
    let range = TimeRange { from: None, until: Some(BASE + 1500) };
    assert_eq!(store.delete_points(&resource(0), range, Some(&["m4".to_owned()])).unwrap(), 2);
    assert_eq!(times(&store, "m4"), [BASE + 2000]);
    drop(store);

    let store = open(dir.path());
    assert_eq!(times(&store, "m4"), [BASE + 2000]);
    assert_eq!(times(&store, "m5"), [BASE, BASE + 1000, BASE + 2000]);
    assert_eq!(sealed_and_raw(&store, 0, now), (0, 1));
    // Partitions older than the sealing age get their resources sealed, then go.
    let later = now + SEAL_AGE_MS + 2 * HEAD_WINDOW_MS;
    store.maintain(later).unwrap();
    assert_eq!(sealed_and_raw(&store, 0, now), (1, 0));
    assert_eq!(sealed_and_raw(&store, 1, now), (1, 0));
    assert_eq!(times(&store, "m4"), [BASE + 2000]);
    assert_eq!(times(&store, "m5"), [BASE, BASE + 1000, BASE + 2000]);
    assert_eq!(store.messages(&resource(0), TimeRange::default(), 10, now).unwrap().len(), 3);
}

#[test]
fn maintenance_compacts_what_trimming_the_cache_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 12 rounds of 10 messages of 400 bytes to each of 200 resources with a cache of 10, each
    // flushed to tables before the next round deletes it: about 10 MB written, 800 KB kept.
    for round in 0..12 {
        let writes: Vec<_> =
            (0..2_000).map(|i| ingest(i % 200, BASE + (round * 10 + i as i64 / 200) * 1000, 400, 10)).collect();
        store.write(&writes, BASE).unwrap();
        store.maintain(BASE).unwrap();
        store.maintain(BASE).unwrap(); // idle since the last run: flushed to tables
    }
    let messages = usage(&store, "messages");
    // Without these compactions: up to 3.6 MB (four flushes before fjall merges them).
    assert!(messages < 3_000_000, "{messages} bytes of messages");
    assert_eq!(store.messages(&resource(7), TimeRange::default(), 100, BASE).unwrap().len(), 10);
    assert_eq!(points(&store, &resource(7), "m0", TimeRange::default(), BASE).len(), 120);
}
