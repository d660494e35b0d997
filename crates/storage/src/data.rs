//! The data the pipeline stores (SPEC §4): the message cache ([`MessageStore`]) and the metrics
//! ([`SeriesStore`]), written together through [`DataStore::write`] as one durable batch per
//! group commit, the same way broker state goes through [`SessionStore`](crate::SessionStore).
//!
//! Everything is keyed by [`ResourceKey`] (tenant, resource): no read crosses tenants. Calls
//! block; callers run them off the event loop (the committer thread writes; the HTTP API reads in
//! `spawn_blocking`). Signatures name no engine type, so a PostgreSQL backend fits behind them.
//!
//! [`MemoryDataStore`](crate::MemoryDataStore) is the reference; every backend runs
//! [`data_store_conformance!`](crate::data_store_conformance).

use std::sync::Arc;

use bytes::Bytes;
pub use switchyard_series::query::Block;
pub use switchyard_series::{Point, Value};

use crate::StorageError;

/// A resource of a tenant. Both parts were validated where they entered (domain, resource id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub tenant: Arc<str>,
    pub resource: Arc<str>,
}

/// One normalized message to store: its cache record and its metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingest {
    pub resource: ResourceKey,
    /// The message's `timestamp`, epoch ms.
    pub ts: i64,
    /// `messageId`, when the message has one: stored once per resource within the idempotency
    /// window, however often it arrives.
    pub message_id: Option<Arc<str>>,
    /// The normalized message (JSON object with `timestamp` and `resource`), as stored and served.
    pub body: Bytes,
    /// When the message and its points expire (`ttl`), epoch ms.
    pub expires_at: Option<i64>,
    /// How many messages the resource's cache keeps (its tenant's setting); a batch is trimmed
    /// to the `keep` of the resource's last message in it.
    pub keep: u32,
    /// Metrics extracted from the message (SPEC §4.3), at `ts`; always empty for commands.
    pub points: Vec<(Arc<str>, Value)>,
    /// Which stream of the resource the message belongs to: its events or its commands history.
    pub channel: Channel,
    /// Whether the forwarding sinks get the message (SPEC §6; `forward=false` opts out).
    pub forward: bool,
}

/// The two streams of a resource (SPEC §1): what it sends and what it is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Channel {
    #[default]
    Events,
    Commands,
}

impl Channel {
    /// The name used in topics, paths and forwarded records.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Events => "events",
            Channel::Commands => "commands",
        }
    }
}

impl ResourceKey {
    /// The key under which the message cache keeps `channel` of this resource: the resource
    /// itself for events, `{id}/commands` for its commands history (`/` is never in a resource
    /// id, so no resource's events share it). Stores file a record's cache entry under
    /// `record.resource.of_channel(record.channel)`; readers ask for the same key.
    pub fn of_channel(&self, channel: Channel) -> ResourceKey {
        match channel {
            Channel::Events => self.clone(),
            Channel::Commands => ResourceKey {
                tenant: Arc::clone(&self.tenant),
                resource: Arc::from(format!("{}/{}", self.resource, channel.as_str())),
            },
        }
    }
}

/// Whether [`DataStore::write`] stored a message or recognized it as a repeat of a `messageId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Stored with sequence number `seq`: unique in the store and increasing in write order, so
    /// a resource's messages are numbered in the order they were stored (not densely). Served
    /// as [`StoredMessage::seq`]; SSE streams use it as the event id.
    Stored {
        seq: u64,
    },
    Duplicate,
}

/// A stored message as served: newest first in lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub ts: i64,
    /// The sequence number [`DataStore::write`] gave it ([`Written::Stored`]).
    pub seq: u64,
    pub body: Bytes,
}

/// A time range in epoch ms: `from` inclusive, `until` exclusive; `None` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    pub from: Option<i64>,
    pub until: Option<i64>,
}

/// One metric of a resource with its newest point.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesInfo {
    pub metric: Arc<str>,
    pub latest: Point,
}

/// The message cache: per resource, the last `keep` messages by timestamp, TTL honoured.
pub trait MessageStore: Send + Sync + 'static {
    /// Messages in `range`, newest first, at most `limit`, none expired at `now`.
    fn messages(
        &self,
        resource: &ResourceKey,
        range: TimeRange,
        limit: usize,
        now: i64,
    ) -> Result<Vec<StoredMessage>, StorageError>;
    /// The message with the newest timestamp, unless expired at `now`.
    fn current(&self, resource: &ResourceKey, now: i64) -> Result<Option<StoredMessage>, StorageError>;
    /// Deletes the resource's messages in `range`; returns how many.
    fn delete_messages(&self, resource: &ResourceKey, range: TimeRange) -> Result<u64, StorageError>;
}

/// The metrics: one series per (resource, metric), points in time order; the same timestamp
/// written twice keeps the later value.
pub trait SeriesStore: Send + Sync + 'static {
    /// Every series of the resource with its newest point not expired at `now`, by name.
    fn series(&self, resource: &ResourceKey, now: i64) -> Result<Vec<SeriesInfo>, StorageError>;
    /// The blocks that hold the series' points in `range` (they may hold points outside it, and
    /// expired ones: the query engine filters by range, the store by expiry where it can).
    fn scan(
        &self,
        resource: &ResourceKey,
        metric: &str,
        range: TimeRange,
        now: i64,
    ) -> Result<Vec<Block>, StorageError>;
    /// Deletes points in `range` of the named metrics (every metric when `None`); returns how
    /// many points were deleted.
    fn delete_points(
        &self,
        resource: &ResourceKey,
        range: TimeRange,
        metrics: Option<&[String]>,
    ) -> Result<u64, StorageError>;
}

/// Both stores, written as one batch.
pub trait DataStore: MessageStore + SeriesStore {
    /// Stores `batch` in order, messages and points, durably before returning; a message whose
    /// `messageId` was stored for its resource within the idempotency window is not stored again.
    fn write(&self, batch: &[Ingest], now: i64) -> Result<Vec<Written>, StorageError>;
    /// Stores `batch` as [`write`](Self::write) does, but durably only once a later
    /// [`sync`](Self::sync) returns: the committer writes one commit while the previous one syncs.
    /// Until then readers may see it, and a crash may lose it (it was never acknowledged). A failed
    /// call stored nothing. Backends whose writes are durable when they return keep the default.
    fn write_unsynced(&self, batch: &[Ingest], now: i64) -> Result<Vec<Written>, StorageError> {
        self.write(batch, now)
    }
    /// Makes every [`write_unsynced`](Self::write_unsynced) that returned before this call
    /// durable. After a failure nothing new is known to be durable; calling again retries.
    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }
    /// Deletes everything of a tenant.
    fn drop_tenant(&self, tenant: &str) -> Result<(), StorageError>;
    /// Background work a backend needs (sealing chunks, expiring TTL and retention, freeing
    /// disk); called periodically from a thread of its own, never from the commit path.
    fn maintain(&self, now: i64) -> Result<(), StorageError>;
}
