//! Integration tests of the PostgreSQL store against a real server: the four shared conformance
//! suites, then what is particular to it (reopening, migrations run twice and concurrently, a
//! failed batch leaving nothing, calls from `spawn_blocking`, errors that hide the password).
//!
//! They need `SWITCHYARD_TEST_PG_URL`; start a throwaway server with
//! `source <(bash scripts/postgres.sh start /tmp/pgtest)`. Each place is a fresh schema with a
//! random name, dropped when the place is.

mod data;
mod outbox;
mod points;
mod store;

use switchyard_storage::conformance::Backend;
use switchyard_storage::conformance::registry::RegistryBackend;
use switchyard_storage_postgres::{PgConfig, PgStore};

/// The server under test, or a failure that says how to start one.
pub fn url() -> String {
    match std::env::var("SWITCHYARD_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "SWITCHYARD_TEST_PG_URL is not set: these tests need PostgreSQL. Run \
             `source <(bash scripts/postgres.sh start /tmp/pgtest)` from the repository root, then the tests again"
        ),
    }
}

/// A schema of its own, dropped (with everything in it) when this is.
pub struct Place {
    pub config: PgConfig,
}

impl Place {
    pub fn fresh() -> Place {
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        Place { config: PgConfig { schema: Some(schema), pool_size: 4, ..PgConfig::new(url()) } }
    }

    pub fn schema(&self) -> &str {
        self.config.schema.as_deref().expect("a test schema")
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema());
        let _ = admin(&sql);
    }
}

/// Runs `sql` on a connection of its own (outside any store), for set-up and inspection.
pub fn admin(sql: &str) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client.simple_query("SET client_min_messages = warning").await?;
        client.query(sql, &[]).await
    })
}

pub struct Pg;

impl Backend for Pg {
    type Store = PgStore;
    type Place = Place;

    fn place(&self) -> Place {
        Place::fresh()
    }

    fn open(&self, place: &Place) -> PgStore {
        PgStore::open(&place.config).unwrap_or_else(|e| panic!("open PostgreSQL store: {e}"))
    }
}

impl RegistryBackend for Pg {
    type Store = PgStore;
    type Place = Place;

    fn place(&self) -> Place {
        Place::fresh()
    }

    fn open(&self, place: &Place) -> PgStore {
        PgStore::open(&place.config).unwrap_or_else(|e| panic!("open PostgreSQL store: {e}"))
    }
}

mod conformance {
    switchyard_storage::session_store_conformance!(super::Pg);
}

mod registry_conformance {
    switchyard_storage::registry_store_conformance!(super::Pg);
}
