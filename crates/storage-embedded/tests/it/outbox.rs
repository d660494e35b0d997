//! The forwarding outbox: the shared conformance suite on the embedded store, which keeps the
//! outbox in the same database as the messages.

use switchyard_storage::conformance::data::{DataBackend, WINDOW_MS};
use switchyard_storage_embedded::{DataConfig, EmbeddedDataStore};
use tempfile::TempDir;

struct Embedded;

impl DataBackend for Embedded {
    type Store = EmbeddedDataStore;
    type Place = TempDir;

    fn place(&self) -> TempDir {
        tempfile::tempdir().expect("create temporary directory")
    }

    fn open(&self, place: &TempDir) -> EmbeddedDataStore {
        let config = DataConfig { idempotency_window_ms: WINDOW_MS, ..DataConfig::default() };
        EmbeddedDataStore::open(place.path(), config).expect("open data store")
    }
}

mod conformance {
    switchyard_storage::outbox_conformance!(super::Embedded);
}

/// A forwarded event of tenant `t`, resource `r`.
fn event(n: i64) -> switchyard_storage::data::Ingest {
    use switchyard_storage::data::{Channel, Ingest, ResourceKey};
    Ingest {
        resource: ResourceKey { tenant: "t".into(), resource: "r".into() },
        ts: n,
        message_id: None,
        body: bytes::Bytes::from(format!("{{\"n\":{n}}}")),
        expires_at: None,
        keep: 100,
        points: Vec::new(),
        channel: Channel::Events,
        forward: true,
    }
}

/// A record's sequence is its forwarded `id`: one a crash could still take back (and give to
/// another record after the restart) must not reach a sink, so sinks see a write once it synced.
#[test]
fn sinks_read_only_what_a_sync_made_durable() {
    use switchyard_storage::data::DataStore;
    use switchyard_storage::forward::OutboxStore;
    let place = Embedded.place();
    let store = Embedded.open(&place);
    store.set_sinks(&["hook"]).unwrap();
    store.write_unsynced(&[event(1), event(2)], 10).unwrap();
    assert_eq!(store.last(), 0, "nothing durable yet");
    assert!(store.read(0, 10).unwrap().is_empty(), "an unsynced record is not read");
    store.acknowledge("hook", 2).unwrap();
    assert_eq!(store.cursor("hook").unwrap(), Some(0), "a cursor never passes what is durable");
    store.sync().unwrap();
    assert_eq!(store.last(), 2);
    assert_eq!(store.read(0, 10).unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    store.write_unsynced(&[event(3)], 10).unwrap();
    store.write(&[event(4)], 10).unwrap();
    assert_eq!(store.last(), 4, "a synced write makes what came before it durable too");
    assert_eq!(store.read(2, 10).unwrap().len(), 2);
}
