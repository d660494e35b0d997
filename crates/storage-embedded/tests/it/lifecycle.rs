//! The data lifecycle of the embedded store: what TTL and retention remove is deleted from disk
//! by maintenance, not only hidden from reads. Reading with a `now` from before the expiry shows
//! what is still stored.

use std::sync::Arc;

use bytes::Bytes;
use switchyard_storage::conformance::data::{BASE, WINDOW_MS, points};
use switchyard_storage::data::{DataStore, Ingest, MessageStore, ResourceKey, SeriesStore, TimeRange, Value};
use switchyard_storage_embedded::{DataConfig, EmbeddedDataStore};

const HOUR: i64 = 3_600_000;

fn resource(tenant: &str) -> ResourceKey {
    ResourceKey { tenant: tenant.into(), resource: "r".into() }
}

fn ingest(tenant: &str, ts: i64, metric: &str, expires_at: Option<i64>) -> Ingest {
    Ingest {
        resource: resource(tenant),
        ts,
        message_id: None,
        body: Bytes::from(format!("{{\"ts\":{ts}}}")),
        expires_at,
        keep: 100_000,
        points: vec![(Arc::from(metric), Value::Number(ts as f64))],
        channel: switchyard_storage::data::Channel::Events,
        forward: true,
    }
}

fn open(dir: &std::path::Path, retention_ms: Option<i64>) -> EmbeddedDataStore {
    let config = DataConfig { idempotency_window_ms: WINDOW_MS, retention_ms, ..DataConfig::default() };
    EmbeddedDataStore::open(dir, config).unwrap()
}

fn message_times(store: &EmbeddedDataStore, tenant: &str, now: i64) -> Vec<i64> {
    let messages = store.messages(&resource(tenant), TimeRange::default(), usize::MAX, now).unwrap();
    messages.iter().rev().map(|m| m.ts).collect()
}

fn point_times(store: &EmbeddedDataStore, tenant: &str, metric: &str, now: i64) -> Vec<i64> {
    points(store, &resource(tenant), metric, TimeRange::default(), now).iter().map(|p| p.ts).collect()
}

#[test]
fn a_few_points_past_their_ttl_leave_the_disk_at_the_next_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let expires = BASE + 5_000;
    // Far fewer points than a seal takes, and young: only their TTL makes maintenance touch them.
    let batch: Vec<_> = (0..10).map(|i| ingest("t", BASE + i, "x", Some(expires))).collect();
    store.write(&batch, BASE).unwrap();
    store.write(&[ingest("t", BASE + 20, "y", None)], BASE).unwrap();
    store.maintain(BASE + 1_000).unwrap();
    assert_eq!(point_times(&store, "t", "x", BASE + 1_000).len(), 10, "not expired yet");

    store.maintain(expires).unwrap();
    assert!(point_times(&store, "t", "x", BASE).is_empty(), "deleted, not only hidden");
    assert_eq!(message_times(&store, "t", BASE), [BASE + 20]);
    assert_eq!(point_times(&store, "t", "y", BASE), [BASE + 20], "data without a TTL stays");
    let listed: Vec<_> = store.series(&resource("t"), BASE).unwrap().into_iter().map(|s| s.metric).collect();
    assert_eq!(listed, [Arc::from("y")]);

    // The same after reopening: the head's expiry is read back from disk.
    store.write(&[ingest("t", BASE + 30, "x", Some(expires + 1_000))], BASE).unwrap();
    drop(store);
    let store = open(dir.path(), None);
    store.maintain(expires + 1_000).unwrap();
    assert!(point_times(&store, "t", "x", BASE).is_empty());
}

#[test]
fn retention_deletes_messages_and_points_older_than_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Some(HOUR));
    // Three hours, one reading every 5 s, for two tenants: enough to seal chunks first.
    let times: Vec<i64> = (0..3 * 720).map(|i| BASE + i * 5_000).collect();
    for tenant in ["a", "b"] {
        for part in times.chunks(500) {
            let batch: Vec<_> = part.iter().map(|&ts| ingest(tenant, ts, "x", None)).collect();
            store.write(&batch, BASE).unwrap();
        }
    }
    store.maintain(BASE).unwrap();
    assert_eq!(point_times(&store, "a", "x", BASE), times, "nothing is older than an hour yet");

    let now = BASE + 3 * HOUR;
    store.maintain(now).unwrap();
    let kept: Vec<i64> = times.iter().copied().filter(|&ts| ts >= now - HOUR).collect();
    assert!(!kept.is_empty() && kept.len() < times.len());
    for tenant in ["a", "b"] {
        // Read as of BASE: what is left on disk, whatever a read at `now` would filter.
        assert_eq!(point_times(&store, tenant, "x", BASE), kept, "{tenant}");
        assert_eq!(message_times(&store, tenant, BASE), kept, "{tenant}");
    }

    // Without retention nothing is deleted by age.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    let batch: Vec<_> = times.iter().map(|&ts| ingest("a", ts, "x", None)).collect();
    store.write(&batch, BASE).unwrap();
    store.maintain(now + 100 * HOUR).unwrap();
    assert_eq!(point_times(&store, "a", "x", BASE), times);
    assert_eq!(message_times(&store, "a", BASE).len(), times.len());
}

#[test]
fn retention_frees_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Some(HOUR));
    for part in 0..20 {
        let batch: Vec<_> = (0..1_000).map(|i| ingest("t", BASE + (part * 1_000 + i) * 1_000, "x", None)).collect();
        store.write(&batch, BASE).unwrap();
    }
    store.maintain(BASE).unwrap();
    store.compact().unwrap();
    let full = store.series_disk_space();
    store.maintain(BASE + 100 * HOUR).unwrap();
    store.compact().unwrap();
    assert!(store.series_disk_space() < full / 4, "{} of {full} bytes left", store.series_disk_space());
    assert!(store.series(&resource("t"), BASE).unwrap().is_empty());
}
