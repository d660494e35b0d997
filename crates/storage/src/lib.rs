//! Storage traits the core sees, never a concrete database. Each backend implements them and runs
//! the same [`conformance`] suite, so every backend behaves the same to the broker.
//!
//! The broker's durable state is a small set of records it serializes itself: persistent
//! sessions, the messages queued or in flight for them, their named entries (subscriptions,
//! received QoS 2 packet ids), and retained messages. Writes arrive as
//! one batch per group commit; a backend makes the whole batch durable, or none of it, before
//! [`SessionStore::commit`] returns.
//!
//! The identity registry (tenants, devices, API keys) is stored through a second trait,
//! [`RegistryStore`] ([`registry`]), with its own conformance checks.
//!
//! The pipeline's data (message cache and metrics) goes through [`DataStore`] ([`data`]), with
//! [`MemoryDataStore`] as its reference and [`conformance::data`] as its suite. The forwarding
//! outbox the same write appends to is [`OutboxStore`] ([`forward`]), checked by
//! [`conformance::forward`].
//!
//! [`MemoryStore`] keeps state in memory: it is the reference the suite is checked against, and a
//! stand-in for a real backend in broker tests (its clones share data, as a reopened file would).

use bytes::Bytes;

pub mod conformance;
pub mod data;
mod data_memory;
pub mod forward;
mod forward_memory;
mod memory;
pub mod registry;

pub use data::{Channel, DataStore, Ingest, MessageStore, ResourceKey, SeriesStore};
pub use data_memory::{DEFAULT_IDEMPOTENCY_WINDOW_MS, MemoryDataStore};
pub use forward::{OutboxRecord, OutboxStore};
pub use forward_memory::MemoryOutbox;
pub use memory::MemoryStore;
pub use registry::{RegistryError, RegistryOp, RegistryStore, Table};

/// Why a storage call failed. The broker treats every variant as "not stored".
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage backend failed: {0}")]
    Backend(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

/// One change to durable broker state. Keys are opaque to the backend: the broker builds them so
/// that each carries its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOp {
    /// Create or replace a session record.
    PutSession { session: String, record: Bytes },
    /// Remove a session record and every message and entry stored under it.
    DeleteSession { session: String },
    /// Create or replace the message at `seq` of a session's queue.
    PutMessage { session: String, seq: u64, record: Bytes },
    /// Store a message at a `seq` this session has never used (the caller guarantees nothing
    /// is stored there). Otherwise [`SessionOp::PutMessage`]; but a `DeleteMessage` of the same
    /// `seq` in the same commit lets a backend write neither: a message acknowledged before
    /// its commit never reaches the disk.
    AddMessage { session: String, seq: u64, record: Bytes },
    /// Remove one message of a session's queue (absent is not an error).
    DeleteMessage { session: String, seq: u64 },
    /// Create or replace the retained message of a topic.
    PutRetained { topic: String, record: Bytes },
    /// Remove the retained message of a topic (absent is not an error).
    DeleteRetained { topic: String },
    /// Create or replace the entry `name` of a session: a small record of its own, so a change
    /// to one part of a session (one subscription, one received QoS 2 packet id) writes only it.
    PutEntry { session: String, name: String, record: Bytes },
    /// Remove one entry of a session (absent is not an error).
    DeleteEntry { session: String, name: String },
    /// Remove every session (with its messages and entries) and every retained message whose
    /// key starts with `prefix`, as stored before this op; later ops of the batch still apply.
    /// The broker's keys carry their namespace first, so this drops one namespace.
    DeletePrefix { prefix: String },
}

/// A stored session with its messages in ascending `seq` order and its entries by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub session: String,
    pub record: Bytes,
    pub messages: Vec<(u64, Bytes)>,
    pub entries: Vec<(String, Bytes)>,
}

/// Everything stored, as read back at start-up. Sessions sorted by key, retained by topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub sessions: Vec<StoredSession>,
    pub retained: Vec<(String, Bytes)>,
}

/// Durable broker state: persistent sessions, their queued messages, retained messages.
///
/// Calls block; the broker runs them off its event loop. Implementations must be safe to call
/// from several threads, but the broker commits from one writer at a time.
pub trait SessionStore: Send + Sync + 'static {
    /// Apply `ops` in order, atomically, and make them durable before returning.
    fn commit(&self, ops: &[SessionOp]) -> Result<(), StorageError>;
    /// Read back everything stored.
    fn load(&self) -> Result<Snapshot, StorageError>;
}

/// A store that keeps nothing: for tests and for brokers configured without persistence.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullStore;

impl SessionStore for NullStore {
    fn commit(&self, _ops: &[SessionOp]) -> Result<(), StorageError> {
        Ok(())
    }
    fn load(&self) -> Result<Snapshot, StorageError> {
        Ok(Snapshot::default())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::{NullStore, SessionOp, SessionStore, Snapshot};

    #[test]
    fn null_store_accepts_everything_and_keeps_nothing() {
        let store = NullStore;
        let ops = [
            SessionOp::PutSession { session: "s".into(), record: Bytes::from_static(b"r") },
            SessionOp::PutMessage { session: "s".into(), seq: 1, record: Bytes::from_static(b"m") },
            SessionOp::PutRetained { topic: "t".into(), record: Bytes::from_static(b"r") },
        ];
        store.commit(&ops).unwrap();
        store.commit(&[]).unwrap();
        assert_eq!(store.load().unwrap(), Snapshot::default());
    }
}
