//! Series reads (scan, latest point, the series list), deletion of points, and sealing a series'
//! head into chunks.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use bytes::Bytes;
use fjall::{PersistMode, Slice};
use switchyard_series::chunk::Chunk;
use switchyard_storage::StorageError;
use switchyard_storage::data::{Block, Point, ResourceKey, SeriesInfo, TimeRange, Value};

use super::codec::{self, KIND_CHUNK, NEVER, backend};
use super::{CHUNK_MAX, EmbeddedDataStore, Head, SEAL_POINTS, State};

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
        None => Bound::Included(codec::with_ts(series, i64::MAX)),
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

    /// The head points of `series` in `range`: key, point, expiry.
    fn head_in(&self, series: &[u8], range: TimeRange) -> Result<Vec<(Slice, Point, i64)>, StorageError> {
        let mut out = Vec::new();
        for guard in self.head.range(point_bounds(series, range)) {
            let (key, value) = guard.into_inner().map_err(|e| backend("read points", e))?;
            let (point, expiry) = codec::decode_point(&key, &value)?;
            out.push((key, point, expiry));
        }
        Ok(out)
    }

    pub(super) fn scan_series(&self, series: &[u8], range: TimeRange, now: i64) -> Result<Vec<Block>, StorageError> {
        let mut blocks: Vec<Block> = (self.chunks_in(series, range)?.into_iter())
            .filter(|stored| stored.expiry > now)
            .map(|stored| Block::Sealed(stored.chunk))
            .collect();
        let raw: Vec<Point> = (self.head_in(series, range)?.into_iter())
            .filter(|(_, _, expiry)| *expiry > now)
            .map(|(_, point, _)| point)
            .collect();
        if !raw.is_empty() {
            blocks.push(Block::Raw(raw));
        }
        Ok(blocks)
    }

    /// The newest point of `series` not expired at `now` (of a chunk: its last point).
    fn latest(&self, series: &[u8], now: i64) -> Result<Option<Point>, StorageError> {
        let mut newest = None;
        for guard in self.chunks.prefix(series).rev() {
            let (key, value) = guard.into_inner().map_err(|e| backend("read chunks", e))?;
            let stored = decode_chunk(key, &value)?;
            if stored.expiry > now {
                newest = Some(stored.chunk.summary().map_err(chunk_error)?.last);
                break;
            }
        }
        for guard in self.head.prefix(series).rev() {
            let (key, value) = guard.into_inner().map_err(|e| backend("read points", e))?;
            let (point, expiry) = codec::decode_point(&key, &value)?;
            if expiry > now {
                if newest.as_ref().is_none_or(|n: &Point| point.ts >= n.ts) {
                    newest = Some(point);
                }
                break;
            }
        }
        Ok(newest)
    }

    pub(super) fn list_series(&self, resource: &ResourceKey, now: i64) -> Result<Vec<SeriesInfo>, StorageError> {
        let prefix = codec::resource_prefix(resource)?;
        let mut out = Vec::new();
        for guard in self.series.prefix(&prefix) {
            let key = guard.key().map_err(|e| backend("read series", e))?;
            if let Some(latest) = self.latest(&key, now)? {
                out.push(SeriesInfo { metric: codec::metric_of(&key, &prefix)?.into(), latest });
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
        let prefix = codec::resource_prefix(resource)?;
        let series: Vec<Vec<u8>> = match metrics {
            Some(names) => names.iter().map(|name| codec::series_prefix(&prefix, name)).collect::<Result<_, _>>()?,
            None => (self.series.prefix(&prefix).map(|guard| guard.key().map(|key| key.to_vec())))
                .collect::<Result<_, _>>()
                .map_err(|e| backend("read series", e))?,
        };
        self.remove_series_points(&series, range)
    }

    /// Deletes the points of `series` (keys in `series`) in `range`, in one durable batch.
    pub(super) fn remove_series_points(&self, series: &[Vec<u8>], range: TimeRange) -> Result<u64, StorageError> {
        let mut state = self.lock();
        let mut writes = self.db.batch().durability(Some(PersistMode::SyncData));
        let mut removed = 0;
        for series in series {
            for (key, _, _) in self.head_in(series, range)? {
                writes.remove(&self.head, key);
                removed += 1;
            }
            for stored in self.chunks_in(series, range)? {
                let points = stored.chunk.points().map_err(chunk_error)?;
                let before = points.len();
                let kept: Vec<Point> = points.into_iter().filter(|p| !in_range(&range, p.ts)).collect();
                removed += (before - kept.len()) as u64;
                if kept.len() == before {
                    continue;
                }
                let new_key = kept.first().map(|p| codec::with_ts(series, p.ts));
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
            if self.head.prefix(series).next().is_none() && self.chunks.prefix(series).next().is_none() {
                writes.remove(&self.series, series.to_vec());
                state.heads.remove(series);
            }
        }
        writes.commit().map_err(|e| backend("forget series", e))
    }

    /// Moves the head of `series` into chunks (see the module docs); head points expired at
    /// `now` are dropped instead.
    pub(super) fn seal(&self, state: &mut State, series: &[u8], now: i64) -> Result<(), StorageError> {
        let mut writes = self.db.batch();
        let head = self.head_in(series, TimeRange::default())?;
        let mut live = Vec::with_capacity(head.len());
        let mut expiry = i64::MIN;
        for (key, point, point_expiry) in head {
            writes.remove(&self.head, key);
            if point_expiry > now {
                expiry = expiry.max(point_expiry);
                live.push(point);
            }
        }
        if let (Some(min), Some(max)) = (live.iter().map(|p| p.ts).min(), live.iter().map(|p| p.ts).max()) {
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
        }
        writes.commit().map_err(|e| backend("seal", e))?;
        state.heads.insert(series.to_vec(), Head::empty());
        Ok(())
    }
}
