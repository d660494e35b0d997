//! Embedded storage backend: everything in the data directory, so a single binary persists
//! without any service beside it.
//!
//! - `DIR/sessions/` (module `sessions`, fjall): persistent sessions, their queued messages and
//!   retained messages. Each [`SessionStore::commit`] is one atomic batch, appended to the journal
//!   and fdatasynced before it returns; if it fails or the process dies first, none of it counts.
//! - `DIR/data/` (module [`data`], fjall): the pipeline's message cache and metrics, behind
//!   [`DataStore`](switchyard_storage::DataStore), opened on its own with
//!   [`EmbeddedDataStore::open`].
//! - `DIR/broker.redb` ([redb](https://docs.rs/redb)): the identity registry (module `registry`):
//!   tables `registry_tenants`, `registry_devices`, `registry_apikeys` and `registry_meta`, behind
//!   [`RegistryStore`](switchyard_storage::RegistryStore). Earlier versions kept broker state here
//!   too (`sessions`, `messages`, `retained`); [`EmbeddedStore::open`] moves such state into
//!   `DIR/sessions/` once and empties those tables.
//!
//! redb locks its file: a second [`EmbeddedStore::open`] of the same directory, from this process
//! or another, fails with [`StorageError::Backend`] instead of sharing it.

pub mod data;
mod registry;
mod sessions;

use std::path::{Path, PathBuf};

use bytes::Bytes;
pub use data::{DataConfig, EmbeddedDataStore};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use switchyard_storage::{SessionOp, SessionStore, Snapshot, StorageError, StoredSession};

/// Name of the database file inside the directory given to [`EmbeddedStore::open`].
pub const FILE_NAME: &str = "broker.redb";

// Broker state as earlier versions stored it, read once to migrate.
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");

/// Broker state and registry in one data directory; see the [crate docs](crate).
pub struct EmbeddedStore {
    pub(crate) db: Database,
    sessions: sessions::SessionDb,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens the store in directory `dir`, creating the directory (and its parents) and the
    /// database file [`FILE_NAME`] in it if they do not exist.
    ///
    /// Fails if another handle, in this process or another, has the store open.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Backend(format!("cannot create data directory {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StorageError::Backend(format!(
                "{} is already open: another broker, or another handle in this one, holds it",
                path.display()
            )),
            e => map_error(&format!("cannot open {}", path.display()), e),
        })?;
        create_tables(&db).map_err(|e| map_error("create tables", e))?;
        let sessions = sessions::SessionDb::open(dir)?;
        let store = Self { db, sessions, path };
        store.migrate()?;
        Ok(store)
    }

    /// Moves broker state an earlier version kept in the redb file into the session database.
    fn migrate(&self) -> Result<(), StorageError> {
        let old = self.read().map_err(|e| map_error("read old broker state", e))?;
        if old.sessions.is_empty() && old.retained.is_empty() {
            return Ok(());
        }
        if self.sessions.is_empty()? {
            let mut ops = Vec::new();
            for stored in old.sessions {
                for (seq, record) in stored.messages {
                    ops.push(SessionOp::PutMessage { session: stored.session.clone(), seq, record });
                }
                ops.push(SessionOp::PutSession { session: stored.session, record: stored.record });
            }
            for (topic, record) in old.retained {
                ops.push(SessionOp::PutRetained { topic, record });
            }
            self.sessions.commit(&ops)?;
        }
        let clear = || -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            txn.open_table(SESSIONS)?.retain(|_, _| false)?;
            txn.open_table(MESSAGES)?.retain(|_, _| false)?;
            txn.open_table(RETAINED)?.retain(|_, _| false)?;
            txn.commit()?;
            Ok(())
        };
        clear().map_err(|e| map_error("clear old broker state", e))
    }

    /// The registry's database file: `DIR/broker.redb`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Broker state in the layout of earlier versions (migration only).
    fn read(&self) -> Result<Snapshot, redb::Error> {
        let txn = self.db.begin_read()?;
        let sessions_table = txn.open_table(SESSIONS)?;
        let messages_table = txn.open_table(MESSAGES)?;
        let mut sessions = Vec::new();
        for entry in sessions_table.iter()? {
            let (key, record) = entry?;
            let key = key.value();
            let mut messages = Vec::new();
            for entry in messages_table.range((key, 0)..=(key, u64::MAX))? {
                let (seq_key, message) = entry?;
                messages.push((seq_key.value().1, Bytes::copy_from_slice(message.value())));
            }
            sessions.push(StoredSession {
                session: key.to_owned(),
                record: Bytes::copy_from_slice(record.value()),
                messages,
                entries: Vec::new(),
            });
        }
        let mut retained = Vec::new();
        for entry in txn.open_table(RETAINED)?.iter()? {
            let (topic, record) = entry?;
            retained.push((topic.value().to_owned(), Bytes::copy_from_slice(record.value())));
        }
        Ok(Snapshot { sessions, retained })
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SessionStore for EmbeddedStore {
    fn commit(&self, ops: &[SessionOp]) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.sessions.commit(ops)
    }

    fn load(&self) -> Result<Snapshot, StorageError> {
        self.sessions.load()
    }
}

/// Creates the tables up front, so that reads never meet a missing one.
fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(SESSIONS)?;
    txn.open_table(MESSAGES)?;
    txn.open_table(RETAINED)?;
    registry::create_tables(&txn)?;
    txn.commit()?;
    Ok(())
}

/// Sorts a redb failure into the two kinds the broker knows.
pub(crate) fn map_error(context: &str, e: impl Into<redb::Error>) -> StorageError {
    match e.into() {
        redb::Error::Corrupted(detail) => StorageError::Corrupt(format!("{context}: {detail}")),
        e => StorageError::Backend(format!("{context}: {e}")),
    }
}
