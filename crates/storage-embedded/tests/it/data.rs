//! The data store: the shared conformance suite, then what is particular to the embedded one
//! (where its files live, sealing into chunks, expiry freeing space).

use std::sync::Arc;

use bytes::Bytes;
use switchyard_storage::conformance::data::{BASE, DataBackend, WINDOW_MS, points};
use switchyard_storage::data::{Block, DataStore, Ingest, ResourceKey, SeriesStore, TimeRange, Value};
use switchyard_storage_embedded::{DataConfig, EmbeddedDataStore};
use tempfile::TempDir;

struct Embedded;

fn config() -> DataConfig {
    DataConfig { idempotency_window_ms: WINDOW_MS, ..DataConfig::default() }
}

impl DataBackend for Embedded {
    type Store = EmbeddedDataStore;
    type Place = TempDir;

    fn place(&self) -> TempDir {
        tempfile::tempdir().expect("create temporary directory")
    }

    fn open(&self, place: &TempDir) -> EmbeddedDataStore {
        EmbeddedDataStore::open(place.path(), config()).expect("open data store")
    }
}

mod conformance {
    switchyard_storage::data_store_conformance!(super::Embedded);
}

fn resource() -> ResourceKey {
    ResourceKey { tenant: "t".into(), resource: "r".into() }
}

fn ingest(ts: i64, value: f64, expires_at: Option<i64>) -> Ingest {
    Ingest {
        resource: resource(),
        ts,
        message_id: None,
        body: Bytes::from_static(b"{}"),
        expires_at,
        keep: 10,
        points: vec![(Arc::from("x"), Value::Number(value))],
        channel: switchyard_storage::data::Channel::Events,
        forward: true,
    }
}

fn sealed_and_raw(store: &EmbeddedDataStore) -> (usize, usize) {
    let blocks = store.scan(&resource(), "x", TimeRange::default(), BASE).unwrap();
    let sealed = blocks.iter().filter(|b| matches!(b, Block::Sealed(_))).count();
    (sealed, blocks.len() - sealed)
}

#[test]
fn opens_its_own_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedDataStore::open(dir.path(), config()).unwrap();
    store.write(&[ingest(BASE, 1.0, None)], BASE).unwrap();
    assert!(dir.path().join("data").is_dir());
}

#[test]
fn maintain_seals_full_heads_and_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedDataStore::open(dir.path(), config()).unwrap();
    let batch: Vec<_> = (0..3_000).map(|i| ingest(BASE + i * 1000, i as f64 * 0.5, None)).collect();
    store.write(&batch, BASE).unwrap();
    assert_eq!(sealed_and_raw(&store), (0, 1));
    store.maintain(BASE).unwrap();
    assert_eq!(sealed_and_raw(&store), (1, 0), "3,000 points make one chunk");
    // A new point stays raw until it is an hour old, then starts a chunk (the last one is full);
    // the next one joins that small chunk.
    let later = BASE + 3_000_000;
    store.write(&[ingest(later, 1.0, None)], BASE).unwrap();
    store.maintain(later).unwrap();
    assert_eq!(sealed_and_raw(&store), (1, 1));
    store.maintain(later + 3_600_000).unwrap();
    assert_eq!(sealed_and_raw(&store), (2, 0));
    store.write(&[ingest(later + 60_000, 2.0, None)], BASE).unwrap();
    store.maintain(later + 60_000 + 3_600_000).unwrap();
    assert_eq!(sealed_and_raw(&store), (2, 0));
    assert_eq!(points(&store, &resource(), "x", TimeRange::default(), BASE).len(), 3_002);
}

#[test]
fn expiry_frees_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedDataStore::open(dir.path(), config()).unwrap();
    let expires = BASE + 10_000_000;
    for part in 0..20 {
        let batch: Vec<_> =
            (0..1_000).map(|i| ingest(BASE + (part * 1_000 + i) * 1000, i as f64, Some(expires))).collect();
        store.write(&batch, BASE).unwrap();
    }
    store.maintain(BASE).unwrap();
    store.compact().unwrap();
    let full = store.series_disk_space();
    assert!(full > 0);
    assert_eq!(sealed_and_raw(&store).0, 5, "20,000 points in chunks");
    store.maintain(expires).unwrap();
    store.compact().unwrap();
    assert!(store.series_disk_space() < full / 4, "{} of {full} bytes left", store.series_disk_space());
    assert!(points(&store, &resource(), "x", TimeRange::default(), BASE).is_empty());
    assert!(store.series(&resource(), BASE).unwrap().is_empty());
}

#[test]
fn names_too_long_for_a_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedDataStore::open(dir.path(), config()).unwrap();
    let mut long = ingest(BASE, 1.0, None);
    long.points = vec![(Arc::from("m".repeat(70_000)), Value::Number(1.0))];
    assert!(store.write(&[long], BASE).is_err());
    let mut long_id = ingest(BASE, 1.0, None);
    long_id.message_id = Some("i".repeat(70_000).into());
    store.write(&[long_id.clone()], BASE).unwrap();
    assert_eq!(store.write(&[long_id], BASE).unwrap(), [switchyard_storage::data::Written::Duplicate]);
}

#[test]
fn backfill_before_the_chunks_keeps_every_range_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedDataStore::open(dir.path(), config()).unwrap();
    let later = BASE + 100 * 3_600_000;
    let full: Vec<_> = (0..2_000).map(|i| ingest(BASE + 10_000 + i, 1.0, None)).collect();
    store.write(&full, BASE).unwrap();
    store.maintain(later).unwrap();
    let small: Vec<_> = (0..10).map(|i| ingest(BASE + 20_000 + i, 2.0, None)).collect();
    store.write(&small, BASE).unwrap();
    store.maintain(later).unwrap();
    // An old point arrives: sealing it must not make a chunk that spans the full one.
    store.write(&[ingest(BASE + 5_000, 3.0, None)], BASE).unwrap();
    store.maintain(later).unwrap();
    assert_eq!(sealed_and_raw(&store), (3, 0));
    let read = |from: i64, until: i64| {
        let range = TimeRange { from: Some(BASE + from), until: Some(BASE + until) };
        points(&store, &resource(), "x", range, BASE).len()
    };
    assert_eq!(read(20_000, 20_005), 5);
    assert_eq!(read(11_000, 11_500), 500);
    assert_eq!(read(0, 30_000), 2_011);
}

/// Random writes, deletions and maintenance, compared after every step with the reference store
/// (no TTL here: sealed points may outlive their own expiry by design).
#[test]
fn behaves_like_the_reference_store() {
    use switchyard_storage::MemoryDataStore;
    use switchyard_storage::data::MessageStore;

    let seed = std::cell::Cell::new(0x2545_F491_4F6C_DD1Du64);
    let next = |n: u64| {
        let mut s = seed.get();
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        seed.set(s);
        s % n
    };
    let dir = tempfile::tempdir().unwrap();
    let mut store = EmbeddedDataStore::open(dir.path(), config()).unwrap();
    let reference = MemoryDataStore::new(WINDOW_MS);
    let resources: Vec<ResourceKey> = ["a", "ab"]
        .iter()
        .flat_map(|t| ["r", "r2"].map(|r| ResourceKey { tenant: (*t).into(), resource: r.into() }))
        .collect();
    let metrics = ["x", "y", "x.y"];
    let mut now = BASE;
    for step in 0..60 {
        now += next(40_000) as i64;
        match next(10) {
            0..=5 => {
                let batch: Vec<Ingest> = (0..1 + next(300))
                    .map(|_| {
                        let resource = resources[next(4) as usize].clone();
                        let points = metrics
                            .iter()
                            .filter(|_| next(3) > 0)
                            .map(|m| {
                                let value = if next(20) == 0 {
                                    Value::Text("t".into())
                                } else {
                                    Value::Number(next(100) as f64 / 10.0)
                                };
                                (Arc::from(*m), value)
                            })
                            .collect();
                        Ingest {
                            resource,
                            ts: BASE + next(20_000) as i64,
                            message_id: (next(4) == 0).then(|| format!("id{}", next(30)).into()),
                            body: Bytes::from(format!("{{\"n\":{}}}", next(1000))),
                            expires_at: None,
                            keep: 5 + next(20) as u32,
                            points,
                            channel: switchyard_storage::data::Channel::Events,
                            forward: true,
                        }
                    })
                    .collect();
                // As the committer writes: unsynced, then synced (the reopening below drops the
                // store without anything else making it durable).
                let written = if next(2) == 0 {
                    store.write(&batch, now).unwrap()
                } else {
                    let written = store.write_unsynced(&batch, now).unwrap();
                    store.sync().unwrap();
                    written
                };
                assert_eq!(written, reference.write(&batch, now).unwrap(), "step {step}");
            }
            6 => {
                let resource = &resources[next(4) as usize];
                let from = BASE + next(20_000) as i64;
                let range = TimeRange { from: Some(from), until: Some(from + next(5_000) as i64) };
                let names = (next(2) == 0).then(|| vec![metrics[next(3) as usize].to_owned()]);
                let deleted = store.delete_points(resource, range, names.as_deref()).unwrap();
                assert_eq!(deleted, reference.delete_points(resource, range, names.as_deref()).unwrap(), "step {step}");
            }
            7 => {
                let resource = &resources[next(4) as usize];
                let from = BASE + next(20_000) as i64;
                let range = TimeRange { from: Some(from), until: Some(from + next(5_000) as i64) };
                assert_eq!(
                    store.delete_messages(resource, range).unwrap(),
                    reference.delete_messages(resource, range).unwrap()
                );
            }
            8 => {
                // Sometimes hours later, so that the embedded store seals everything.
                let at = now + next(2) as i64 * 4 * 3_600_000;
                store.maintain(at).unwrap();
                reference.maintain(at).unwrap();
            }
            _ => {
                drop(store);
                store = EmbeddedDataStore::open(dir.path(), config()).unwrap();
            }
        }
        for resource in &resources {
            let all = TimeRange::default();
            assert_eq!(
                store.messages(resource, all, 100, now).unwrap(),
                reference.messages(resource, all, 100, now).unwrap(),
                "step {step}"
            );
            assert_eq!(store.series(resource, now).unwrap(), reference.series(resource, now).unwrap(), "step {step}");
            for metric in metrics {
                assert_eq!(
                    points(&store, resource, metric, all, now),
                    points(&reference, resource, metric, all, now),
                    "step {step} {metric}"
                );
            }
        }
    }
}
