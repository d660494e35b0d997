//! Giving back the disk that deletions and rewrites hold: maintenance's compactions and the
//! journal's release when idle.
//!
//! fjall removes a deleted or overwritten value only when a compaction merges it with what
//! replaced it, and a deletion marker only at the last level, so a keyspace where most writes
//! are later deleted (the message cache, trimmed to its newest `keep` per resource; the
//! `messageId`s and expiry entries, dropped when they expire; chunks rewritten as they grow)
//! can hold many times its live data until the background compactions happen to reach it.
//! Maintenance therefore compacts a keyspace fully once its size on disk is twice what it was
//! after its last full compaction (and at least [`MIN_GARBAGE`]): what it rewrites is at most
//! twice what was written since, so the extra work is bounded by the writes, and a keyspace
//! holds at most about twice its live data. The head is not compacted: its partitions are
//! dropped whole (the `head` module).
//!
//! The journal holds every write until each keyspace has flushed its memtable past it (up to
//! [`DataConfig::journal_bytes`](super::DataConfig)). When nothing was written since the last
//! maintenance, maintenance flushes the memtables, so the journal files fjall has closed are
//! deleted and what the memtables held reaches the tables these compactions work on. The file
//! being written stays until fjall closes it at 64 MB: a store at rest keeps up to that much
//! journal, whatever the data's size.

use std::collections::HashMap;

use switchyard_storage::StorageError;

use super::EmbeddedDataStore;
use super::codec::backend;

/// A keyspace smaller than this on disk is left to fjall's own compactions.
pub const MIN_GARBAGE: u64 = 1 << 20;

/// What maintenance remembers between runs.
#[derive(Default)]
pub(super) struct Compacted {
    /// Bytes on disk of each keyspace after its last full compaction.
    sizes: HashMap<&'static str, u64>,
    /// The arrival counter at the last maintenance, and whether the memtables were flushed at
    /// it.
    seen: Option<(u64, bool)>,
}

impl EmbeddedDataStore {
    /// Fully compacts every keyspace grown to twice its size after its last full compaction.
    pub(super) fn compact_garbage(&self) -> Result<(), StorageError> {
        for (name, keyspace) in self.keyspaces() {
            let size = keyspace.disk_space();
            let base = self.lock().compacted.sizes.get(name).copied().unwrap_or(0);
            if size < MIN_GARBAGE || size < base.saturating_mul(2) {
                continue;
            }
            // Without the state lock: writes go on meanwhile.
            keyspace.major_compact().map_err(|e| backend("compact", e))?;
            let after = keyspace.disk_space();
            self.lock().compacted.sizes.insert(name, after);
        }
        Ok(())
    }

    /// Flushes every memtable, then lets the journal drop its closed files, when nothing was
    /// written since the last maintenance (once per idle period).
    pub(super) fn flush_when_idle(&self) -> Result<(), StorageError> {
        let seq = self.lock().seq;
        let seen = self.lock().compacted.seen;
        let flushed = match seen {
            Some((last, flushed)) if last == seq => {
                if !flushed {
                    self.flush()?;
                }
                true
            }
            _ => false,
        };
        self.lock().compacted.seen = Some((seq, flushed));
        Ok(())
    }

    /// Writes every memtable to tables, then deletes the journal files no longer needed.
    fn flush(&self) -> Result<(), StorageError> {
        let parts: Vec<fjall::Keyspace> = self.lock().partitions.all().map(|(_, k)| k.clone()).collect();
        for keyspace in self.keyspaces().into_iter().map(|(_, k)| k).chain(&parts) {
            keyspace.rotate_memtable_and_wait().map_err(|e| backend("flush", e))?;
        }
        // A rotation deletes the journals whose writes every keyspace has flushed.
        let state = self.lock();
        self.meta.insert(b"seq", state.seq.to_be_bytes()).map_err(|e| backend("write seq", e))?;
        self.meta.rotate_memtable_and_wait().map_err(|e| backend("flush", e))?;
        Ok(())
    }

    /// Rewrites every table into one run, dropping what deletions left behind (blocks; for
    /// measurements and tests: maintenance compacts on its own, see the module docs).
    pub fn compact(&self) -> Result<(), StorageError> {
        let parts: Vec<fjall::Keyspace> = self.lock().partitions.all().map(|(_, k)| k.clone()).collect();
        for keyspace in self.keyspaces().into_iter().map(|(_, k)| k).chain(&parts) {
            keyspace.rotate_memtable_and_wait().map_err(|e| backend("flush", e))?;
        }
        for (name, keyspace) in self.keyspaces() {
            keyspace.major_compact().map_err(|e| backend("compact", e))?;
            let after = keyspace.disk_space();
            self.lock().compacted.sizes.insert(name, after);
        }
        for keyspace in &parts {
            keyspace.major_compact().map_err(|e| backend("compact", e))?;
        }
        self.flush()
    }
}
