//! The PostgreSQL storage backend: every storage trait of `switchyard_storage` on one database,
//! so several `switchyard` nodes can share broker state, the registry, the message cache, the
//! metrics and the forwarding outbox (SPEC §7, scale-out).
//!
//! - [`PgStore`] is the broker's [`SessionStore`](switchyard_storage::SessionStore) and the
//!   Device Hub's [`RegistryStore`](switchyard_storage::RegistryStore);
//! - [`PgDataStore`] is the pipeline's [`DataStore`](switchyard_storage::DataStore) and the
//!   forwarders' [`OutboxStore`](switchyard_storage::OutboxStore).
//!
//! Every commit and every data write is one transaction. The traits block: each store owns a
//! small tokio runtime (one worker, which drives the connections of a `deadpool-postgres` pool)
//! and runs each call with `Runtime::block_on` on the caller's thread. Call them from plain
//! threads or `tokio::task::spawn_blocking`, **never from an async task** (tokio refuses to block
//! a runtime thread and panics).
//!
//! Tables live in one schema ([`PgConfig::schema`]), created with its tables at open by
//! versioned migrations (module `schema`, up to [`LATEST_VERSION`]). Keys are `bytea`, so
//! ordering is byte order whatever the database's collation, and U+0000 in data keys is stored
//! as it is. All SQL is in `schema` (tables) and `sql` (statements), parameterised throughout.
//!
//! Metric points are stored as point groups (module `points`): one row per stored message, its
//! metric names and values as arrays, so a batch inserts one row per message rather than one
//! per point; a repeated timestamp is resolved when reading (the row written last wins). Not yet
//! done: time partitions dropped whole (`maintain` deletes expired rows) and sealed chunks (a
//! scan returns the range's points as one [`Block::Raw`](switchyard_storage::data::Block::Raw)).

mod config;
mod data;
mod db;
mod outbox;
mod points;
mod registry;
mod schema;
mod session;
mod sql;
mod tls;

pub use config::{PgConfig, PgError};
pub use data::PgDataStore;
pub use schema::LATEST_VERSION;
pub use session::PgStore;
