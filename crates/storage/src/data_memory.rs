//! An in-memory [`DataStore`]: the reference the [data conformance
//! suite](crate::conformance::data) is checked against, and a stand-in for a real backend in
//! pipeline and API tests. Clones share their data, as a reopened file would.
//!
//! What it pins down where the traits leave room:
//! - a `messageId` is remembered per resource from the `now` of the write that stored it for
//!   [`DEFAULT_IDEMPOTENCY_WINDOW_MS`] (or the window given to [`MemoryDataStore::new`]): a repeat
//!   with `now < stored_at + window` is a [`Written::Duplicate`], stores nothing (no points
//!   either), and does not extend the window. Deleting messages does not forget their ids;
//!   dropping the tenant does;
//! - the cache keeps the newest `keep` messages by timestamp, ties broken by arrival (the later
//!   one is newer), counting messages whose TTL has passed until they are removed; a batch is
//!   trimmed once, to the `keep` of the resource's last message in it;
//! - a command is kept under [`ResourceKey::of_channel`] (its own cache, `keep` and
//!   `messageId`s); sequence numbers count stored messages (1, 2, ... across all resources), so
//!   a resource's are increasing but not dense;
//! - a point or message is expired at `now` when `expires_at <= now`;
//! - [`SeriesStore::scan`] returns one [`Block::Raw`] with the range's unexpired points.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::StorageError;
use crate::data::{
    Block, DataStore, Ingest, MessageStore, Point, ResourceKey, SeriesInfo, SeriesStore, StoredMessage, TimeRange,
    Value, Written,
};
use crate::forward::OutboxStore;
use crate::forward_memory::MemoryOutbox;

/// How long a `messageId` is remembered unless told otherwise: 24 h (SPEC §4.4).
pub const DEFAULT_IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// Messages and series kept in memory; clones are handles to the same data.
#[derive(Debug, Clone)]
pub struct MemoryDataStore {
    state: Arc<Mutex<State>>,
    window_ms: i64,
    /// The forwarding outbox, appended to by `write`.
    outbox: MemoryOutbox,
}

impl Default for MemoryDataStore {
    fn default() -> Self {
        Self::new(DEFAULT_IDEMPOTENCY_WINDOW_MS)
    }
}

#[derive(Debug, Default)]
struct State {
    resources: BTreeMap<ResourceKey, Resource>,
    /// Arrival order of messages, for ties on timestamp.
    seq: u64,
}

#[derive(Debug, Default)]
struct Resource {
    /// By (timestamp, arrival).
    messages: BTreeMap<(i64, u64), Stored>,
    /// `messageId` → `now` of the write that stored it.
    ids: HashMap<Arc<str>, i64>,
    /// Metric → timestamp → (value, expiry).
    series: BTreeMap<Arc<str>, Points>,
}

/// One series: timestamp → (value, expiry).
type Points = BTreeMap<i64, (Value, Option<i64>)>;

#[derive(Debug)]
struct Stored {
    body: Bytes,
    expires_at: Option<i64>,
}

fn live(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_none_or(|at| at > now)
}

fn in_range(range: &TimeRange, ts: i64) -> bool {
    range.from.is_none_or(|from| ts >= from) && range.until.is_none_or(|until| ts < until)
}

impl MemoryDataStore {
    /// An empty store remembering `messageId`s for `idempotency_window_ms`.
    pub fn new(idempotency_window_ms: i64) -> Self {
        Self { state: Arc::default(), window_ms: idempotency_window_ms, outbox: MemoryOutbox::default() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves maps that are still consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MessageStore for MemoryDataStore {
    fn messages(
        &self,
        resource: &ResourceKey,
        range: TimeRange,
        limit: usize,
        now: i64,
    ) -> Result<Vec<StoredMessage>, StorageError> {
        let state = self.lock();
        let Some(res) = state.resources.get(resource) else { return Ok(Vec::new()) };
        Ok(res
            .messages
            .iter()
            .rev()
            .filter(|((ts, _), m)| in_range(&range, *ts) && live(m.expires_at, now))
            .take(limit)
            .map(|((ts, seq), m)| StoredMessage { ts: *ts, seq: *seq, body: m.body.clone() })
            .collect())
    }

    fn current(&self, resource: &ResourceKey, now: i64) -> Result<Option<StoredMessage>, StorageError> {
        Ok(self.messages(resource, TimeRange::default(), 1, now)?.pop())
    }

    fn delete_messages(&self, resource: &ResourceKey, range: TimeRange) -> Result<u64, StorageError> {
        let mut state = self.lock();
        let Some(res) = state.resources.get_mut(resource) else { return Ok(0) };
        let before = res.messages.len();
        res.messages.retain(|(ts, _), _| !in_range(&range, *ts));
        Ok((before - res.messages.len()) as u64)
    }
}

impl SeriesStore for MemoryDataStore {
    fn series(&self, resource: &ResourceKey, now: i64) -> Result<Vec<SeriesInfo>, StorageError> {
        let state = self.lock();
        let Some(res) = state.resources.get(resource) else { return Ok(Vec::new()) };
        Ok(res
            .series
            .iter()
            .filter_map(|(metric, points)| {
                let (ts, (value, _)) = points.iter().rev().find(|(_, (_, exp))| live(*exp, now))?;
                Some(SeriesInfo { metric: metric.clone(), latest: Point { ts: *ts, value: value.clone() } })
            })
            .collect())
    }

    fn scan(
        &self,
        resource: &ResourceKey,
        metric: &str,
        range: TimeRange,
        now: i64,
    ) -> Result<Vec<Block>, StorageError> {
        let state = self.lock();
        let Some(points) = state.resources.get(resource).and_then(|res| res.series.get(metric)) else {
            return Ok(Vec::new());
        };
        let raw: Vec<Point> = points
            .iter()
            .filter(|(ts, (_, exp))| in_range(&range, **ts) && live(*exp, now))
            .map(|(ts, (value, _))| Point { ts: *ts, value: value.clone() })
            .collect();
        Ok(if raw.is_empty() { Vec::new() } else { vec![Block::Raw(raw)] })
    }

    fn delete_points(
        &self,
        resource: &ResourceKey,
        range: TimeRange,
        metrics: Option<&[String]>,
    ) -> Result<u64, StorageError> {
        let mut state = self.lock();
        let Some(res) = state.resources.get_mut(resource) else { return Ok(0) };
        let mut deleted = 0;
        for (metric, points) in res.series.iter_mut() {
            if metrics.is_some_and(|names| !names.iter().any(|n| **n == **metric)) {
                continue;
            }
            let before = points.len();
            points.retain(|ts, _| !in_range(&range, *ts));
            deleted += (before - points.len()) as u64;
        }
        res.series.retain(|_, points| !points.is_empty());
        Ok(deleted)
    }
}

impl DataStore for MemoryDataStore {
    fn write(&self, batch: &[Ingest], now: i64) -> Result<Vec<Written>, StorageError> {
        let mut state = self.lock();
        let mut written = Vec::with_capacity(batch.len());
        let mut keeps = BTreeMap::new();
        for ingest in batch {
            let key = ingest.resource.of_channel(ingest.channel);
            let res = state.resources.entry(key.clone()).or_default();
            if let Some(id) = &ingest.message_id {
                if res.ids.get(id).is_some_and(|stored_at| now < stored_at.saturating_add(self.window_ms)) {
                    written.push(Written::Duplicate);
                    continue;
                }
                res.ids.insert(id.clone(), now);
            }
            state.seq += 1;
            let seq = state.seq;
            let res = state.resources.entry(key.clone()).or_default();
            res.messages.insert((ingest.ts, seq), Stored { body: ingest.body.clone(), expires_at: ingest.expires_at });
            keeps.insert(key, ingest.keep);
            for (metric, value) in &ingest.points {
                res.series.entry(metric.clone()).or_default().insert(ingest.ts, (value.clone(), ingest.expires_at));
            }
            written.push(Written::Stored { seq });
        }
        for (resource, keep) in keeps {
            if let Some(res) = state.resources.get_mut(&resource) {
                while res.messages.len() > keep as usize {
                    res.messages.pop_first();
                }
            }
        }
        drop(state);
        self.outbox.append(batch, &written, now);
        Ok(written)
    }

    fn drop_tenant(&self, tenant: &str) -> Result<(), StorageError> {
        self.lock().resources.retain(|key, _| &*key.tenant != tenant);
        Ok(())
    }

    fn maintain(&self, now: i64) -> Result<(), StorageError> {
        let mut state = self.lock();
        let window = self.window_ms;
        for res in state.resources.values_mut() {
            res.messages.retain(|_, m| live(m.expires_at, now));
            res.ids.retain(|_, stored_at| now < stored_at.saturating_add(window));
            for points in res.series.values_mut() {
                points.retain(|_, (_, exp)| live(*exp, now));
            }
            res.series.retain(|_, points| !points.is_empty());
        }
        state.resources.retain(|_, res| !(res.messages.is_empty() && res.ids.is_empty() && res.series.is_empty()));
        Ok(())
    }
}

/// The forwarding outbox ([`MemoryOutbox`]), written by [`DataStore::write`].
impl OutboxStore for MemoryDataStore {
    fn set_sinks(&self, sinks: &[&str]) -> Result<(), StorageError> {
        self.outbox.set_sinks(sinks)
    }
    fn sinks(&self) -> Result<Vec<(String, u64)>, StorageError> {
        self.outbox.sinks()
    }
    fn read(&self, after: u64, limit: usize) -> Result<Vec<crate::forward::OutboxRecord>, StorageError> {
        self.outbox.read(after, limit)
    }
    fn cursor(&self, sink: &str) -> Result<Option<u64>, StorageError> {
        self.outbox.cursor(sink)
    }
    fn acknowledge(&self, sink: &str, seq: u64) -> Result<(), StorageError> {
        self.outbox.acknowledge(sink, seq)
    }
    fn rewind(&self, sink: &str, from: i64) -> Result<u64, StorageError> {
        self.outbox.rewind(sink, from)
    }
    fn trim(&self, before: i64) -> Result<u64, StorageError> {
        self.outbox.trim(before)
    }
    fn last(&self) -> u64 {
        self.outbox.last()
    }
    fn pending_bytes(&self, tenant: &str) -> u64 {
        self.outbox.pending_bytes(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryDataStore;
    use crate::conformance::data::{DataBackend, WINDOW_MS};

    /// Each place is a fresh store; "reopening" is taking another handle to it.
    struct Memory;

    impl DataBackend for Memory {
        type Store = MemoryDataStore;
        type Place = MemoryDataStore;

        fn place(&self) -> MemoryDataStore {
            MemoryDataStore::new(WINDOW_MS)
        }

        fn open(&self, place: &MemoryDataStore) -> MemoryDataStore {
            place.clone()
        }
    }

    crate::data_store_conformance!(Memory);

    mod outbox {
        crate::outbox_conformance!(super::Memory);
    }
}
