//! The write path (messages, their ids and points in one batch, the cache trimmed to `keep`) and
//! the message cache's reads and deletions.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use fjall::{OwnedWriteBatch as WriteBatch, PersistMode};
use foldhash::HashSet;
use switchyard_storage::StorageError;
use switchyard_storage::data::{Ingest, ResourceKey, StoredMessage, TimeRange, Written};

use super::codec::{self, KIND_ID, KIND_MESSAGE, NEVER, backend};
use super::{Cache, EmbeddedDataStore, State};

/// The messages a batch adds to one resource, before trimming.
struct Pending {
    keep: u32,
    /// Key → (value, expiry).
    messages: BTreeMap<Vec<u8>, (Vec<u8>, Option<i64>)>,
}

/// The key range of a resource's messages in `range`.
fn message_bounds(resource: &[u8], range: TimeRange) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let lower = match range.from {
        Some(from) => Bound::Included(codec::with_ts(resource, from)),
        None => Bound::Included(resource.to_vec()),
    };
    let upper = match range.until {
        Some(until) => Bound::Excluded(codec::with_ts(resource, until)),
        None => Bound::Included([resource, &[0xff; 16][..]].concat()),
    };
    (lower, upper)
}

/// The arrival number of a message key (`R ‖ ts ‖ seq`) whose resource prefix is `at` long.
fn seq_at(key: &[u8], at: usize) -> Result<u64, StorageError> {
    let bytes: [u8; 8] =
        key.get(at + 8..at + 16).and_then(|b| b.try_into().ok()).ok_or_else(|| codec::corrupt("message key"))?;
    Ok(u64::from_be_bytes(bytes))
}

impl EmbeddedDataStore {
    /// Stores `batch` in one atomic fjall batch, synced as `durability` says.
    pub(super) fn write_batch(
        &self,
        batch: &[Ingest],
        now: i64,
        durability: Option<PersistMode>,
    ) -> Result<Vec<Written>, StorageError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut state = self.lock();
        let mut writes = self.db.batch().durability(durability);
        let mut written = Vec::with_capacity(batch.len());
        let mut ids = HashSet::default();
        let mut pending: BTreeMap<Vec<u8>, Pending> = BTreeMap::new();
        let mut heads: Vec<(Vec<u8>, i64, i64)> = Vec::new();
        let mut new_series = HashSet::default();
        let mut series = Vec::new();
        let mut seq = state.seq;
        let (part, head) = state.partitions.current();
        let head = head.clone();
        for ingest in batch {
            // A command goes to its resource's commands history, a cache of its own.
            let resource = codec::resource_prefix(&ingest.resource.of_channel(ingest.channel))?;
            if let Some(id) = &ingest.message_id {
                let key = codec::id_key(&resource, id);
                if ids.contains(&key) || self.id_is_live(&key, now)? {
                    written.push(Written::Duplicate);
                    continue;
                }
                writes.insert(&self.ids, key.clone(), now.to_be_bytes().to_vec());
                let until = now.saturating_add(self.window_ms);
                writes.insert(&self.expiry, codec::expiry_key(until, KIND_ID, &key), Vec::new());
                ids.insert(key);
            }
            seq += 1;
            let mut value = Vec::with_capacity(8 + ingest.body.len());
            value.extend_from_slice(&codec::expiry_bytes(ingest.expires_at));
            value.extend_from_slice(&ingest.body);
            let key = codec::message_key(&resource, ingest.ts, seq);
            if !ingest.points.is_empty() {
                for (metric, _) in &ingest.points {
                    codec::series_prefix_into(&mut series, &resource, metric)?;
                    if !state.series.contains(&series) && !new_series.contains(&series) {
                        // Not known in memory: new, or forgotten beyond the cap.
                        if !self.series.contains_key(&series).map_err(|e| backend("read series", e))? {
                            writes.insert(&self.series, series.clone(), Vec::new());
                        }
                        new_series.insert(series.clone());
                    }
                }
                writes.insert(&head, key.clone(), codec::head_value(ingest.expires_at, &ingest.points)?);
                heads.push((resource.clone(), ingest.ts, ingest.expires_at.unwrap_or(NEVER)));
            }
            let cache =
                pending.entry(resource).or_insert_with(|| Pending { keep: ingest.keep, messages: BTreeMap::new() });
            cache.keep = ingest.keep;
            cache.messages.insert(key, (value, ingest.expires_at));
            written.push(Written::Stored { seq });
        }
        let mut caches = Vec::with_capacity(pending.len());
        for (resource, adds) in pending {
            let cache = self.trim(&state, &mut writes, &resource, adds)?;
            caches.push((resource, cache));
        }
        writes.insert(&self.meta, b"seq".to_vec(), seq.to_be_bytes().to_vec());
        let forwarded = self.outbox.stage(&mut writes, batch, &written, now);
        writes.commit().map_err(|e| backend("write", e))?;
        forwarded.applied(durability.is_some());
        state.seq = seq;
        state.caches.extend(caches);
        state.series.extend(new_series);
        for (resource, ts, expires) in heads {
            state.add_head(&resource, part, ts, expires);
        }
        state.forget_beyond(self.max_tracked_resources, self.max_tracked_series);
        Ok(written)
    }

    /// Whether `key` in `ids` was stored within the window before `now`.
    fn id_is_live(&self, key: &[u8], now: i64) -> Result<bool, StorageError> {
        let Some(stored) = self.ids.get(key).map_err(|e| backend("read message id", e))? else { return Ok(false) };
        let stored: [u8; 8] = stored.as_ref().try_into().map_err(|_| codec::corrupt("message id"))?;
        Ok(now < i64::from_be_bytes(stored).saturating_add(self.window_ms))
    }

    /// Adds `adds` to `writes`, deleting (or not writing) the oldest messages beyond `keep`.
    /// Returns the cache's state once `writes` is committed.
    fn trim(
        &self,
        state: &State,
        writes: &mut WriteBatch,
        resource: &[u8],
        adds: Pending,
    ) -> Result<Cache, StorageError> {
        let (stored, floor) = match state.caches.get(resource) {
            Some(cache) => (cache.count, cache.floor.clone()),
            None => (self.messages.prefix(resource).count() as u64, None),
        };
        let total = stored + adds.messages.len() as u64;
        let excess = total.saturating_sub(u64::from(adds.keep));
        let start = floor.clone().unwrap_or_else(|| resource.to_vec());
        let end = [resource, &[0xff; 16][..]].concat();
        let mut disk = self.messages.range(start..=end).map(|guard| guard.key()).peekable();
        let mut adds = adds.messages.into_iter().peekable();
        let mut last_removed = None;
        let mut removed = 0;
        while removed < excess {
            let from_disk = match (disk.peek(), adds.peek()) {
                (Some(Ok(on_disk)), Some((added, _))) => on_disk.as_ref() < added.as_slice(),
                (Some(_), _) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if from_disk {
                if let Some(key) = disk.next() {
                    let key = key.map_err(|e| backend("read messages", e))?;
                    last_removed = Some(key.to_vec());
                    writes.remove(&self.messages, key);
                }
            } else {
                adds.next();
            }
            removed += 1;
        }
        let mut floor = last_removed.or(floor);
        for (key, (value, expires_at)) in adds {
            if floor.as_ref().is_some_and(|f| key < *f) {
                floor = Some(key.clone());
            }
            if let Some(at) = expires_at.filter(|at| *at != NEVER) {
                writes.insert(&self.expiry, codec::expiry_key(at, KIND_MESSAGE, &key), Vec::new());
            }
            writes.insert(&self.messages, key, value);
        }
        Ok(Cache { count: total - removed, floor })
    }

    pub(super) fn read_messages(
        &self,
        resource: &ResourceKey,
        range: TimeRange,
        limit: usize,
        now: i64,
    ) -> Result<Vec<StoredMessage>, StorageError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let prefix = codec::resource_prefix(resource)?;
        for guard in self.messages.range(message_bounds(&prefix, range)).rev() {
            let (key, value) = guard.into_inner().map_err(|e| backend("read messages", e))?;
            if codec::expiry_of(&value)? <= now {
                continue;
            }
            let ts = codec::ts_at(&key, prefix.len())?;
            out.push(StoredMessage { ts, seq: seq_at(&key, prefix.len())?, body: Bytes::copy_from_slice(&value[8..]) });
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    pub(super) fn remove_messages(&self, resource: &ResourceKey, range: TimeRange) -> Result<u64, StorageError> {
        self.remove_messages_under(&codec::resource_prefix(resource)?, range)
    }

    /// Deletes the messages in `range` of the resource whose key prefix is `prefix`.
    pub(super) fn remove_messages_under(&self, prefix: &[u8], range: TimeRange) -> Result<u64, StorageError> {
        let mut state = self.lock();
        let mut writes = self.db.batch().durability(Some(PersistMode::SyncData));
        let mut removed = 0;
        for guard in self.messages.range(message_bounds(prefix, range)) {
            writes.remove(&self.messages, guard.key().map_err(|e| backend("read messages", e))?);
            removed += 1;
        }
        if removed > 0 {
            writes.commit().map_err(|e| backend("delete messages", e))?;
            state.caches.remove(prefix);
        }
        Ok(removed)
    }
}
