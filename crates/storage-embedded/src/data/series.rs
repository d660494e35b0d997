//! Series reads (scan, latest point, the series list), deletion of points, and sealing a
//! resource's head into its series' chunks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use fjall::{Keyspace, OwnedWriteBatch as WriteBatch, PersistMode, Slice};
use switchyard_series::chunk::Chunk;
use switchyard_storage::StorageError;
use switchyard_storage::data::{Block, Point, ResourceKey, SeriesInfo, TimeRange, Value};

use super::codec::{self, KIND_CHUNK, NEVER, backend};
use super::{CHUNK_MAX, EmbeddedDataStore, SEAL_POINTS, State};

/// A stored chunk: its key, the latest expiry of its points, the chunk.
struct StoredChunk {
    key: Slice,
    expiry: i64,
    chunk: Chunk,
}

fn chunk_error(e: switchyard_series::chunk::ChunkError) -> StorageError {
    codec::corrupt(&e.to_string())
}

fn decode_chunk(key: Slice, value: &[u8]) -> Result<StoredChunk, StorageError> {
    let expiry = codec::expiry_of(value)?;
    let chunk = Chunk::from_bytes(Bytes::copy_from_slice(&value[8..])).map_err(chunk_error)?;
    Ok(StoredChunk { key, expiry, chunk })
}

/// The chunk value: its expiry, then the chunk.
fn chunk_value(expiry: i64, chunk: &Chunk) -> Vec<u8> {
    [&codec::ts_bytes(expiry)[..], chunk.as_bytes()].concat()
}

/// The key range of a series' points (or chunk starts) in `range`.
fn point_bounds(series: &[u8], range: TimeRange) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let lower = Bound::Included(codec::with_ts(series, range.from.unwrap_or(i64::MIN)));
    let upper = match range.until {
        Some(until) => Bound::Excluded(codec::with_ts(series, until)),
        None => Bound::Included([series, &[0xff; 16][..]].concat()),
    };
    (lower, upper)
}

fn in_range(range: &TimeRange, ts: i64) -> bool {
    range.from.is_none_or(|from| ts >= from) && range.until.is_none_or(|until| ts < until)
}

impl EmbeddedDataStore {
    /// The chunks of `series` holding points in `range`, in time order (expired ones included).
    fn chunks_in(&self, series: &[u8], range: TimeRange) -> Result<Vec<StoredChunk>, StorageError> {
        let mut out = Vec::new();
        if let Some(from) = range.from {
            // The chunk starting before `from` may reach into the range.
            let before = self.chunks.range(codec::with_ts(series, i64::MIN)..codec::with_ts(series, from)).next_back();
            if let Some(guard) = before {
                let (key, value) = guard.into_inner().map_err(|e| backend("read chunks", e))?;
                let stored = decode_chunk(key, &value)?;
                if stored.chunk.span().map_err(chunk_error)?.1 >= from {
                    out.push(stored);
                }
            }
        }
        for guard in self.chunks.range(point_bounds(series, range)) {
            let (key, value) = guard.into_inner().map_err(|e| backend("read chunks", e))?;
            out.push(decode_chunk(key, &value)?);
        }
        Ok(out)
    }

    /// The head entries of `resource` in `range`, oldest first. `view` is [`head_view`]: no
    /// live entry is older than its floor, so the scan starts there (and none happens for an
    /// empty head) instead of walking the deletions that sealing left in the partitions, and
    /// only the partitions holding the resource's entries are read.
    fn head_in(
        &self,
        resource: &[u8],
        range: TimeRange,
        view: Option<&HeadView>,
    ) -> Result<Vec<HeadEntry>, StorageError> {
        let mut out = Vec::new();
        let Some(view) = view else { return Ok(out) };
        let range =
            TimeRange { from: Some(range.from.map_or(view.floor, |from| from.max(view.floor))), until: range.until };
        for (part, keyspace) in view.parts.iter().enumerate() {
            for guard in keyspace.range(point_bounds(resource, range)) {
                let (key, value) = guard.into_inner().map_err(|e| backend("read points", e))?;
                let ts = codec::ts_at(&key, resource.len())?;
                out.push(HeadEntry { part, key, ts, value });
            }
        }
        if view.parts.len() > 1 {
            out.sort_by(|a, b| a.key.cmp(&b.key));
        }
        Ok(out)
    }

    /// The unexpired head points of one metric in `range`, a timestamp written twice once.
    fn head_points(
        &self,
        resource: &[u8],
        metric: &str,
        range: TimeRange,
        now: i64,
    ) -> Result<Vec<Point>, StorageError> {
        let mut out: Vec<Point> = Vec::new();
        let view = head_view(&self.lock(), resource);
        for HeadEntry { ts, value, .. } in self.head_in(resource, range, view.as_ref())? {
            let (expiry, points) = codec::decode_head(&value)?;
            if expiry <= now {
                continue;
            }
            for (name, value) in points {
                if name == metric {
                    if out.last().is_some_and(|p| p.ts == ts) {
                        out.pop();
                    }
                    out.push(Point { ts, value });
                }
            }
        }
        Ok(out)
    }

    pub(super) fn scan_series(
        &self,
        resource: &[u8],
        metric: &str,
        series: &[u8],
        range: TimeRange,
        now: i64,
    ) -> Result<Vec<Block>, StorageError> {
        // The head first: a seal running meanwhile moves its points into chunks read after, so
        // they are read twice (the same values at the same timestamps) rather than missed.
        let raw = self.head_points(resource, metric, range, now)?;
        let mut blocks: Vec<Block> = (self.chunks_in(series, range)?.into_iter())
            .filter(|stored| stored.expiry > now)
            .map(|stored| Block::Sealed(stored.chunk))
            .collect();
        if !raw.is_empty() {
            blocks.push(Block::Raw(raw));
        }
        Ok(blocks)
    }

    /// The newest point of a series not expired at `now` (of a chunk: its last point).
    /// `view` as for [`Self::head_in`].
    fn latest(
        &self,
        resource: &[u8],
        metric: &str,
        series: &[u8],
        now: i64,
        view: Option<&HeadView>,
    ) -> Result<Option<Point>, StorageError> {
        let mut newest = None;
        for guard in self.chunks.prefix(series).rev() {
            let (key, value) = guard.into_inner().map_err(|e| backend("read chunks", e))?;
            let stored = decode_chunk(key, &value)?;
            if stored.expiry > now {
                newest = Some(stored.chunk.summary().map_err(chunk_error)?.last);
                break;
            }
        }
        let Some(view) = view else { return Ok(newest) };
        // The newest entry with the metric in each partition; the newest of those.
        let mut in_head: Option<(Slice, Point)> = None;
        for keyspace in &view.parts {
            for guard in keyspace.range(point_bounds(resource, TimeRange { from: Some(view.floor), until: None })).rev()
            {
                let (key, value) = guard.into_inner().map_err(|e| backend("read points", e))?;
                if in_head.as_ref().is_some_and(|(newer, _)| *newer > key) {
                    break;
                }
                let (expiry, points) = codec::decode_head(&value)?;
                let Some((_, value)) = points.into_iter().rfind(|(name, _)| *name == metric) else { continue };
                if expiry > now {
                    let ts = codec::ts_at(&key, resource.len())?;
                    in_head = Some((key, Point { ts, value }));
                    break;
                }
            }
        }
        if let Some((_, point)) = in_head
            && newest.as_ref().is_none_or(|n: &Point| point.ts >= n.ts)
        {
            newest = Some(point);
        }
        Ok(newest)
    }

    pub(super) fn list_series(&self, resource: &ResourceKey, now: i64) -> Result<Vec<SeriesInfo>, StorageError> {
        let prefix = codec::resource_prefix(resource)?;
        let mut out = Vec::new();
        let view = head_view(&self.lock(), &prefix);
        for guard in self.series.prefix(&prefix) {
            let key = guard.key().map_err(|e| backend("read series", e))?;
            let metric = codec::metric_of(&key, &prefix)?;
            if let Some(latest) = self.latest(&prefix, &metric, &key, now, view.as_ref())? {
                out.push(SeriesInfo { metric: metric.into(), latest });
            }
        }
        // Keys order names by length first.
        out.sort_by(|a, b| a.metric.cmp(&b.metric));
        Ok(out)
    }

    pub(super) fn remove_points(
        &self,
        resource: &ResourceKey,
        range: TimeRange,
        metrics: Option<&[String]>,
    ) -> Result<u64, StorageError> {
        self.remove_points_under(&codec::resource_prefix(resource)?, range, metrics)
    }

    /// Deletes the points in `range` of the named metrics (all when `None`) of the resource whose
    /// key prefix is `prefix`, in one durable batch.
    pub(super) fn remove_points_under(
        &self,
        prefix: &[u8],
        range: TimeRange,
        metrics: Option<&[String]>,
    ) -> Result<u64, StorageError> {
        let prefix = prefix.to_vec();
        let mut state = self.lock();
        let names: Vec<String> = match metrics {
            Some(names) => names.to_vec(),
            None => (self.series.prefix(&prefix).map(|guard| guard.key()))
                .map(|key| codec::metric_of(&key.map_err(|e| backend("read series", e))?, &prefix))
                .collect::<Result<_, _>>()?,
        };
        let chosen = |name: &str| metrics.is_none_or(|names| names.iter().any(|n| n == name));
        let mut writes = self.db.batch().durability(Some(PersistMode::SyncData));
        // A timestamp written twice (or over a sealed point) is one point: counted once.
        let mut in_head: HashMap<String, HashSet<i64>> = HashMap::new();
        let view = head_view(&state, &prefix);
        for HeadEntry { part, key, ts, value } in self.head_in(&prefix, range, view.as_ref())? {
            let head = &view.as_ref().expect("entries come from the view").parts[part];
            let (expiry, points) = codec::decode_head(&value)?;
            let before = points.len();
            let mut kept: Vec<(Arc<str>, Value)> = Vec::with_capacity(before);
            for (name, value) in points {
                if chosen(name) {
                    in_head.entry(name.to_owned()).or_default().insert(ts);
                } else {
                    kept.push((Arc::from(name), value));
                }
            }
            if kept.is_empty() {
                writes.remove(head, key);
            } else if kept.len() < before {
                let expires_at = (expiry != NEVER).then_some(expiry);
                writes.insert(head, key, codec::head_value(expires_at, &kept)?);
            }
        }
        let mut removed: u64 = in_head.values().map(|ts| ts.len() as u64).sum();
        let mut series = Vec::with_capacity(names.len());
        for name in &names {
            let key = codec::series_prefix(&prefix, name)?;
            for stored in self.chunks_in(&key, range)? {
                let points = stored.chunk.points().map_err(chunk_error)?;
                let before = points.len();
                let shadowed = in_head.get(name.as_str());
                let (gone, kept): (Vec<Point>, Vec<Point>) = points.into_iter().partition(|p| in_range(&range, p.ts));
                removed += gone.iter().filter(|p| !shadowed.is_some_and(|ts| ts.contains(&p.ts))).count() as u64;
                if kept.len() == before {
                    continue;
                }
                let new_key = kept.first().map(|p| codec::with_ts(&key, p.ts));
                if new_key.as_deref() != Some(stored.key.as_ref()) {
                    writes.remove(&self.chunks, stored.key.clone());
                }
                if let Some(new_key) = new_key {
                    if stored.expiry != NEVER {
                        writes.insert(&self.expiry, codec::expiry_key(stored.expiry, KIND_CHUNK, &new_key), Vec::new());
                    }
                    writes.insert(&self.chunks, new_key, chunk_value(stored.expiry, &Chunk::encode(&kept)));
                }
            }
            series.push(key);
        }
        if removed > 0 {
            writes.commit().map_err(|e| backend("delete points", e))?;
            self.forget_empty(&mut state, series.iter().map(Vec::as_slice))?;
        }
        Ok(removed)
    }

    /// Drops the series entries of `series` that hold no point any more.
    pub(super) fn forget_empty<'a>(
        &self,
        state: &mut State,
        series: impl Iterator<Item = &'a [u8]>,
    ) -> Result<(), StorageError> {
        let mut writes = self.db.batch();
        for series in series {
            if self.chunks.prefix(series).next().is_some() {
                continue;
            }
            let resource = &series[..codec::resource_len(series)?];
            let metric = codec::metric_of(series, resource)?;
            if self.latest(resource, &metric, series, i64::MIN, head_view(state, resource).as_ref())?.is_none() {
                writes.remove(&self.series, series.to_vec());
                state.series.remove(series);
            }
        }
        writes.commit().map_err(|e| backend("forget series", e))
    }

    /// Moves the head of `resource` into its series' chunks (see the module docs); points
    /// expired at `now` are dropped instead.
    pub(super) fn seal(&self, state: &mut State, resource: &[u8], now: i64) -> Result<(), StorageError> {
        let mut writes = self.db.batch();
        // Per metric: points by timestamp (the later write wins) and their latest expiry.
        let mut by_metric: BTreeMap<String, (BTreeMap<i64, Value>, i64)> = BTreeMap::new();
        let view = head_view(state, resource);
        for HeadEntry { part, key, ts, value } in self.head_in(resource, TimeRange::default(), view.as_ref())? {
            writes.remove(&view.as_ref().expect("entries come from the view").parts[part], key);
            let (expiry, points) = codec::decode_head(&value)?;
            if expiry <= now {
                continue;
            }
            for (name, value) in points {
                let entry = by_metric.entry(name.to_owned()).or_insert_with(|| (BTreeMap::new(), i64::MIN));
                entry.0.insert(ts, value);
                entry.1 = entry.1.max(expiry);
            }
        }
        for (metric, (points, expiry)) in by_metric {
            let series = codec::series_prefix(resource, &metric)?;
            let live: Vec<Point> = points.into_iter().map(|(ts, value)| Point { ts, value }).collect();
            self.seal_series(&mut writes, &series, live, expiry, now)?;
        }
        writes.commit().map_err(|e| backend("seal", e))?;
        state.clear_head(resource);
        Ok(())
    }

    /// Adds to `writes` the chunks of `series` with `live` (in time order, not empty) merged in.
    fn seal_series(
        &self,
        writes: &mut WriteBatch,
        series: &[u8],
        live: Vec<Point>,
        mut expiry: i64,
        now: i64,
    ) -> Result<(), StorageError> {
        let (Some(min), Some(max)) = (live.first().map(|p| p.ts), live.last().map(|p| p.ts)) else { return Ok(()) };
        let mut old = self.chunks_in(series, TimeRange { from: Some(min), until: max.checked_add(1) })?;
        // A small last chunk that the head follows grows instead of leaving many small
        // ones (it ends before the head: no other chunk lies between them).
        if let Some(guard) = self.chunks.prefix(series).next_back() {
            let (key, value) = guard.into_inner().map_err(|e| backend("read chunks", e))?;
            let last = decode_chunk(key, &value)?;
            let before_head = last.chunk.span().map_err(chunk_error)?.1 < min;
            if before_head && last.chunk.summary().map_err(chunk_error)?.count < SEAL_POINTS {
                old.insert(0, last);
            }
        }
        let mut merged: BTreeMap<i64, Value> = BTreeMap::new();
        for stored in &old {
            if stored.expiry > now {
                expiry = expiry.max(stored.expiry);
                merged.extend(stored.chunk.points().map_err(chunk_error)?.into_iter().map(|p| (p.ts, p.value)));
            }
        }
        merged.extend(live.into_iter().map(|p| (p.ts, p.value)));
        let points: Vec<Point> = merged.into_iter().map(|(ts, value)| Point { ts, value }).collect();
        let size = points.len().div_ceil(points.len().div_ceil(CHUNK_MAX));
        let mut new_keys = BTreeSet::new();
        for piece in points.chunks(size) {
            let key = codec::with_ts(series, piece[0].ts);
            if expiry != NEVER {
                writes.insert(&self.expiry, codec::expiry_key(expiry, KIND_CHUNK, &key), Vec::new());
            }
            writes.insert(&self.chunks, key.clone(), chunk_value(expiry, &Chunk::encode(piece)));
            new_keys.insert(key);
        }
        for stored in old {
            if !new_keys.contains(stored.key.as_ref()) {
                writes.remove(&self.chunks, stored.key);
            }
        }
        Ok(())
    }
}

/// A head entry: the index of its partition in the [`HeadView`], its key, timestamp, and the
/// value to decode with [`codec::decode_head`].
struct HeadEntry {
    part: usize,
    key: Slice,
    ts: i64,
    value: Slice,
}

/// Where the live head entries of a resource are: no older than `floor`, in `parts`.
pub(super) struct HeadView {
    floor: i64,
    parts: Vec<Keyspace>,
}

/// The [`HeadView`] of `resource` (`None`: it has no live entry), from the in-memory head
/// state: every entry written since the last seal is counted there with its timestamp and
/// partition, and a seal moves them all.
fn head_view(state: &State, resource: &[u8]) -> Option<HeadView> {
    let head = state.heads.get(resource).filter(|head| head.count > 0)?;
    let parts = head.parts.iter().filter_map(|n| state.partitions.get(*n).cloned()).collect();
    Some(HeadView { floor: head.oldest, parts })
}
