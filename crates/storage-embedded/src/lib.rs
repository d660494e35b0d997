//! Embedded storage backend: broker state in one [redb](https://docs.rs/redb) file inside the
//! data directory, so a single binary persists without any service beside it.
//!
//! The file holds three tables:
//! - `sessions`: session key → record;
//! - `messages`: (session key, seq) → record. Keys order by session, then by `seq` as an integer,
//!   so one session's messages are one contiguous range: loading them in order and deleting them
//!   with their session are range operations, never scans of other sessions' messages;
//! - `retained`: topic → record.
//!
//! Each [`SessionStore::commit`] is one write transaction with immediate durability: when it
//! returns, the whole batch is on disk (fsynced); if it fails or the process dies first, none of it
//! is. redb admits one write transaction at a time, so concurrent commits queue up.
//!
//! The same file holds the identity registry (module `registry`): four more tables, `registry_tenants`,
//! `registry_devices`, `registry_apikeys` and `registry_meta`, behind
//! [`RegistryStore`](switchyard_storage::RegistryStore).
//!
//! redb locks the file: a second [`EmbeddedStore::open`] of the same directory, from this process
//! or another, fails with [`StorageError::Backend`] instead of sharing it.

mod registry;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use switchyard_storage::{SessionOp, SessionStore, Snapshot, StorageError, StoredSession};

/// Name of the database file inside the directory given to [`EmbeddedStore::open`].
pub const FILE_NAME: &str = "broker.redb";

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");

/// Broker state in `DIR/broker.redb`; see the [crate docs](crate).
pub struct EmbeddedStore {
    pub(crate) db: Database,
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
        Ok(Self { db, path })
    }

    /// The database file: `DIR/broker.redb`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `ops` inside `txn`; the caller commits or, on error, drops (aborts) it.
    fn apply(txn: &redb::WriteTransaction, ops: &[SessionOp]) -> Result<(), redb::Error> {
        let mut sessions = txn.open_table(SESSIONS)?;
        let mut messages = txn.open_table(MESSAGES)?;
        let mut retained = txn.open_table(RETAINED)?;
        for op in ops {
            match op {
                SessionOp::PutSession { session, record } => {
                    sessions.insert(session.as_str(), record.as_ref())?;
                }
                SessionOp::DeleteSession { session } => {
                    sessions.remove(session.as_str())?;
                    let key = session.as_str();
                    messages.retain_in((key, 0)..=(key, u64::MAX), |_, _| false)?;
                }
                SessionOp::PutMessage { session, seq, record } => {
                    messages.insert((session.as_str(), *seq), record.as_ref())?;
                }
                SessionOp::DeleteMessage { session, seq } => {
                    messages.remove((session.as_str(), *seq))?;
                }
                SessionOp::PutRetained { topic, record } => {
                    retained.insert(topic.as_str(), record.as_ref())?;
                }
                SessionOp::DeleteRetained { topic } => {
                    retained.remove(topic.as_str())?;
                }
            }
        }
        Ok(())
    }

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
        let mut txn = self.db.begin_write().map_err(|e| map_error("begin write", e))?;
        // The default already, but a PUBACK depends on it: say so.
        txn.set_durability(Durability::Immediate).map_err(|e| StorageError::Backend(format!("set durability: {e}")))?;
        Self::apply(&txn, ops).map_err(|e| map_error("write batch", e))?;
        txn.commit().map_err(|e| map_error("commit", e))
    }

    fn load(&self) -> Result<Snapshot, StorageError> {
        self.read().map_err(|e| map_error("load", e))
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
