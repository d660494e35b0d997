//! The data store: the shared conformance suite on PostgreSQL.

use switchyard_storage::conformance::data::{DataBackend, WINDOW_MS};
use switchyard_storage_postgres::PgDataStore;

use super::Place;

pub struct PgData;

impl DataBackend for PgData {
    type Store = PgDataStore;
    type Place = Place;

    fn place(&self) -> Place {
        Place::fresh()
    }

    fn open(&self, place: &Place) -> PgDataStore {
        PgDataStore::open(&place.config, WINDOW_MS).unwrap_or_else(|e| panic!("open PostgreSQL data store: {e}"))
    }
}

mod conformance {
    switchyard_storage::data_store_conformance!(super::PgData);
}
