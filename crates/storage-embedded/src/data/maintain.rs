//! Maintenance (expiry, retention, sealing) and dropping a tenant: the work that touches many keys, done in
//! bounded batches so that writes interleave with it.

use std::collections::BTreeSet;

use fjall::{Keyspace, PersistMode};
use switchyard_storage::StorageError;

use super::codec::{self, KIND_CHUNK, KIND_ID, KIND_MESSAGE, backend};
use super::{EmbeddedDataStore, Head, SEAL_AGE_MS, SEAL_POINTS};

/// Most keys one maintenance or drop batch touches before the lock is released.
const BATCH_KEYS: usize = 10_000;

impl EmbeddedDataStore {
    pub(super) fn run_maintenance(&self, now: i64) -> Result<(), StorageError> {
        while self.expire_some(now)? {}
        self.apply_retention(now)?;
        let due: Vec<Vec<u8>> = {
            let state = self.lock();
            let old = now.saturating_sub(SEAL_AGE_MS);
            // Entries in a partition this old keep it from being dropped.
            let old_part = state.partitions.started_by(old);
            let in_old_part = |head: &Head| old_part.is_some_and(|o| head.parts.first().is_some_and(|p| *p <= o));
            (state.heads.iter())
                .filter(|(_, head)| {
                    head.count >= SEAL_POINTS
                        || (head.count > 0 && (head.oldest <= old || head.expires <= now || in_old_part(head)))
                })
                .map(|(resource, _)| resource.clone())
                .collect()
        };
        for resource in due {
            let mut state = self.lock();
            self.seal(&mut state, &resource, now)?;
        }
        // Sealed points are on disk before the partitions they came from go.
        self.db.persist(PersistMode::SyncData).map_err(|e| backend("persist", e))?;
        self.lock().partitions.rotate(&self.db, now)?;
        self.compact_garbage()?;
        self.flush_when_idle()?;
        if tracing::enabled!(tracing::Level::DEBUG) {
            let usage = self.disk_usage()?;
            let usage: Vec<String> = usage.iter().map(|(name, bytes)| format!("{name}:{bytes}")).collect();
            tracing::debug!(bytes = %usage.join(" "), "data store on disk");
            let (buffer, tracked) = (self.write_buffer(), self.tracked());
            tracing::debug!(
                memtables_active = buffer.active,
                memtables_sealed = buffer.sealed,
                resources = tracked.resources,
                heads = tracked.heads,
                series = tracked.series,
                "data store in memory"
            );
        }
        Ok(())
    }

    /// Drops up to [`BATCH_KEYS`] things whose expiry is at or before `now`; true if there may
    /// be more.
    fn expire_some(&self, now: i64) -> Result<bool, StorageError> {
        let mut state = self.lock();
        let mut writes = self.db.batch();
        let mut emptied = BTreeSet::new();
        let mut seen = 0;
        let end = codec::ts_bytes(now.saturating_add(1)).to_vec();
        for guard in self.expiry.range(..end) {
            let key = guard.key().map_err(|e| backend("read expiry", e))?;
            let (kind, target) =
                key.get(8..).and_then(<[u8]>::split_first).ok_or_else(|| codec::corrupt("expiry key"))?;
            match *kind {
                KIND_MESSAGE => {
                    writes.remove(&self.messages, target.to_vec());
                    // The cache is counted again when next written.
                    state.caches.remove(&target[..target.len().saturating_sub(16)]);
                }
                KIND_ID => {
                    let stored = self.ids.get(target).map_err(|e| backend("read message id", e))?;
                    let stored_at = stored.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok()).map(i64::from_be_bytes);
                    // An id stored again since has a later expiry entry of its own.
                    if stored_at.is_some_and(|at| at.saturating_add(self.window_ms) <= now) {
                        writes.remove(&self.ids, target.to_vec());
                    }
                }
                KIND_CHUNK => {
                    let stored = self.chunks.get(target).map_err(|e| backend("read chunk", e))?;
                    // A chunk rewritten since may expire later.
                    if let Some(value) = stored
                        && codec::expiry_of(&value)? <= now
                    {
                        writes.remove(&self.chunks, target.to_vec());
                        emptied.insert(target[..target.len().saturating_sub(8)].to_vec());
                    }
                }
                _ => return Err(codec::corrupt("expiry kind")),
            }
            writes.remove(&self.expiry, key);
            seen += 1;
            if seen == BATCH_KEYS {
                break;
            }
        }
        if seen == 0 {
            return Ok(false);
        }
        writes.commit().map_err(|e| backend("expire", e))?;
        self.forget_empty(&mut state, emptied.iter().map(Vec::as_slice))?;
        Ok(seen == BATCH_KEYS)
    }

    pub(super) fn remove_tenant(&self, tenant: &str) -> Result<(), StorageError> {
        let prefix = codec::tenant_prefix(tenant)?;
        let mut state = self.lock();
        let parts: Vec<Keyspace> = state.partitions.all().map(|(_, k)| k.clone()).collect();
        let all = [&self.messages, &self.ids, &self.chunks, &self.series].into_iter().chain(&parts);
        for keyspace in all {
            let mut writes = self.db.batch();
            for guard in keyspace.prefix(&prefix) {
                writes.remove(keyspace, guard.key().map_err(|e| backend("read tenant", e))?);
                if writes.len() >= BATCH_KEYS {
                    let full = std::mem::replace(&mut writes, self.db.batch());
                    full.commit().map_err(|e| backend("drop tenant", e))?;
                }
            }
            writes.commit().map_err(|e| backend("drop tenant", e))?;
        }
        // Entries of `expiry` left behind find nothing, or something written since whose own
        // expiry they check.
        self.db.persist(PersistMode::SyncData).map_err(|e| backend("persist", e))?;
        state.caches.retain(|key, _| !key.starts_with(&prefix));
        let gone: Vec<Vec<u8>> = state.heads.keys().filter(|key| key.starts_with(&prefix)).cloned().collect();
        for resource in gone {
            state.clear_head(&resource);
            state.heads.remove(&resource);
        }
        state.series.retain(|key| !key.starts_with(&prefix));
        Ok(())
    }
}
