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
