//! The forwarding outbox (SPEC §6): every stored message that is forwarded gets a record here,
//! written by [`DataStore::write`](crate::DataStore::write) in the same durable batch as the
//! message, so a message and its record are stored together or not at all. Forwarders read it
//! from a per-sink cursor and move the cursor once a sink has the records.
//!
//! - Records are numbered by a sequence per store that never goes back, across restarts too: a
//!   record's [`OutboxRecord::id`] is unique per stored message, so a receiver can drop
//!   duplicates (delivery is at least once).
//! - A store appends only while at least one sink is registered ([`OutboxStore::set_sinks`]);
//!   the set of sinks is durable, so records written before the forwarders start are kept.
//! - A record stays while a sink has not acknowledged it; once every sink has, it is kept until
//!   [`OutboxStore::trim`] drops it (the window in which a sink can be replayed).
//! - [`OutboxStore::pending_bytes`] is what a tenant's unacknowledged records weigh; the intake
//!   compares it with the tenant's bound (`max_outbox_bytes`) before accepting more.
//!
//! Calls block, like the rest of the storage traits; signatures name no engine type. Every
//! backend runs [`outbox_conformance!`](crate::outbox_conformance).

use std::sync::Arc;

use bytes::Bytes;

use crate::StorageError;
use crate::data::Channel;

/// What one record costs against its tenant's bound, beyond its body and names.
pub const RECORD_OVERHEAD: u64 = 32;

/// One record of the outbox: a stored message on its way to the sinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Position in the outbox; also what [`OutboxRecord::id`] is made of.
    pub seq: u64,
    /// When the message was stored (the `now` of its write), epoch ms: what lag and replay use.
    pub at: i64,
    pub tenant: Arc<str>,
    pub resource: Arc<str>,
    pub channel: Channel,
    /// The normalized message as stored.
    pub body: Bytes,
}

impl OutboxRecord {
    /// The record's `id` as forwarded: its sequence, zero-padded so ids sort as numbers do.
    pub fn id(&self) -> String {
        format!("{:020}", self.seq)
    }

    /// What the record weighs against its tenant's bound.
    pub fn size(&self) -> u64 {
        (self.body.len() + self.tenant.len() + self.resource.len()) as u64 + RECORD_OVERHEAD
    }
}

/// The outbox of a data store; see the [module docs](self).
pub trait OutboxStore: Send + Sync + 'static {
    /// Makes `sinks` the sinks that read the outbox, durably. A sink new to the store starts
    /// after the last record appended so far; sinks not named are forgotten. With no sink, writes
    /// append nothing.
    fn set_sinks(&self, sinks: &[&str]) -> Result<(), StorageError>;
    /// The registered sinks and their cursors, by name.
    fn sinks(&self) -> Result<Vec<(String, u64)>, StorageError>;
    /// Up to `limit` records after `after`, in sequence order; only records that are durable
    /// (a record lost in a crash would give its sequence, its forwarded `id`, to another).
    fn read(&self, after: u64, limit: usize) -> Result<Vec<OutboxRecord>, StorageError>;
    /// The sequence of the last record the sink acknowledged (`None`: no such sink).
    fn cursor(&self, sink: &str) -> Result<Option<u64>, StorageError>;
    /// Durably sets the sink's cursor to `seq` (every record up to it acknowledged).
    fn acknowledge(&self, sink: &str, seq: u64) -> Result<(), StorageError>;
    /// Durably moves the sink's cursor to just before the first record stored at or after `from`
    /// (epoch ms) still in the outbox, or to the last record if none is; returns the cursor.
    fn rewind(&self, sink: &str, from: i64) -> Result<u64, StorageError>;
    /// Drops the records every sink has acknowledged that were stored before `before` (epoch
    /// ms); returns how many.
    fn trim(&self, before: i64) -> Result<u64, StorageError>;
    /// The sequence of the last durable record ever appended (0: none).
    fn last(&self) -> u64;
    /// Bytes ([`OutboxRecord::size`]) of the tenant's records some sink has not acknowledged.
    fn pending_bytes(&self, tenant: &str) -> u64;
}

/// A sink name as the stores keep it: 1 to 64 bytes of ASCII letters, digits, `-` and `_`.
pub fn valid_sink_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
