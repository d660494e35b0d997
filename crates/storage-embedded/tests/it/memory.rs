//! What the embedded data store holds in memory: the write buffer (fjall's memtables) and the
//! in-memory maps stay under their bounds while many resources write, and what was flushed or
//! forgotten to make room stays readable.

use std::sync::Arc;

use bytes::Bytes;
use switchyard_storage::conformance::data::{BASE, WINDOW_MS, points};
use switchyard_storage::data::{Channel, DataStore, Ingest, MessageStore, ResourceKey, SeriesStore, TimeRange, Value};
use switchyard_storage_embedded::data::SEAL_AGE_MS;
use switchyard_storage_embedded::{DataConfig, EmbeddedDataStore};

const LIMIT: u64 = 1 << 20;
const RESOURCES: usize = 500;
const ROUNDS: usize = 40;

fn resource(n: usize) -> ResourceKey {
    ResourceKey { tenant: "t".into(), resource: format!("device-{n}").into() }
}

fn ingest(n: usize, round: usize) -> Ingest {
    let ts = BASE + round as i64 * 1000;
    Ingest {
        resource: resource(n),
        ts,
        message_id: None,
        body: Bytes::from(format!("{{\"n\":{n},\"round\":{round},\"pad\":\"{}\"}}", "x".repeat(200))),
        expires_at: None,
        keep: 100,
        points: (0..10).map(|m| (Arc::from(format!("m{m}")), Value::Number((round * 10 + m) as f64))).collect(),
        channel: Channel::Events,
        forward: true,
    }
}

#[test]
fn the_write_buffer_stays_under_its_bound_and_what_was_flushed_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let config = DataConfig { idempotency_window_ms: WINDOW_MS, write_buffer_bytes: LIMIT, ..DataConfig::default() };
    let store = EmbeddedDataStore::open(dir.path(), config).unwrap();
    // 20,000 messages of about 500 bytes with their points: several times the bound.
    for round in 0..ROUNDS {
        for chunk in (0..RESOURCES).collect::<Vec<_>>().chunks(100) {
            let batch: Vec<Ingest> = chunk.iter().map(|n| ingest(*n, round)).collect();
            store.write_unsynced(&batch, BASE).unwrap();
            let buffer = store.write_buffer();
            assert!(buffer.active <= LIMIT, "active memtables {buffer:?} over {LIMIT}");
            assert!(buffer.sealed <= LIMIT, "sealed memtables {buffer:?} over {LIMIT}");
        }
    }
    store.sync().unwrap();
    let now = BASE + ROUNDS as i64 * 1000;
    for n in [0, RESOURCES / 2, RESOURCES - 1] {
        let messages = store.messages(&resource(n), TimeRange::default(), 1000, now).unwrap();
        assert_eq!(messages.len(), ROUNDS, "resource {n}");
        let m3 = points(&store, &resource(n), "m3", TimeRange::default(), now);
        assert_eq!(m3.len(), ROUNDS, "resource {n}");
        assert_eq!(m3.last().unwrap().ts, now - 1000);
    }
}

#[test]
fn a_store_reopened_after_the_bound_flushed_has_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = DataConfig { idempotency_window_ms: WINDOW_MS, write_buffer_bytes: LIMIT, ..DataConfig::default() };
    {
        let store = EmbeddedDataStore::open(dir.path(), config).unwrap();
        for round in 0..ROUNDS / 4 {
            let batch: Vec<Ingest> = (0..RESOURCES).map(|n| ingest(n, round)).collect();
            store.write(&batch, BASE).unwrap();
        }
    }
    let store = EmbeddedDataStore::open(dir.path(), config).unwrap();
    let now = BASE + ROUNDS as i64 * 1000;
    for n in [0, RESOURCES - 1] {
        assert_eq!(store.messages(&resource(n), TimeRange::default(), 1000, now).unwrap().len(), ROUNDS / 4);
        assert_eq!(points(&store, &resource(n), "m9", TimeRange::default(), now).len(), ROUNDS / 4);
    }
}

#[test]
fn the_maps_stay_under_their_caps_and_forgotten_entries_are_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = DataConfig {
        idempotency_window_ms: WINDOW_MS,
        max_tracked_resources: 10,
        max_tracked_series: 25,
        ..DataConfig::default()
    };
    let store = EmbeddedDataStore::open(dir.path(), config).unwrap();
    for round in 0..3 {
        for n in 0..100 {
            let mut message = ingest(n, round);
            message.keep = 2;
            store.write(&[message], BASE).unwrap();
            let tracked = store.tracked();
            assert!(tracked.resources <= 10 && tracked.series <= 25, "{tracked:?}");
        }
    }
    let now = BASE + 10_000;
    for n in [0, 57, 99] {
        // Trimmed to `keep` although the cache's size was forgotten in between.
        let messages = store.messages(&resource(n), TimeRange::default(), 1000, now).unwrap();
        assert_eq!(messages.len(), 2, "resource {n}");
        let series = store.series(&resource(n), now).unwrap();
        assert_eq!(series.len(), 10, "resource {n}");
    }
}

#[test]
fn sealed_heads_leave_memory_and_their_points_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let config = DataConfig { idempotency_window_ms: WINDOW_MS, ..DataConfig::default() };
    let store = EmbeddedDataStore::open(dir.path(), config).unwrap();
    let batch: Vec<Ingest> = (0..50).map(|n| ingest(n, 0)).collect();
    store.write(&batch, BASE).unwrap();
    assert_eq!(store.tracked().heads, 50);
    // Idle for longer than a head is kept unsealed.
    let later = BASE + SEAL_AGE_MS + 1;
    store.maintain(later).unwrap();
    assert_eq!(store.tracked().heads, 0);
    for n in [0, 49] {
        let m7 = points(&store, &resource(n), "m7", TimeRange::default(), later);
        assert_eq!(m7.iter().map(|p| p.ts).collect::<Vec<_>>(), vec![BASE]);
    }
}
