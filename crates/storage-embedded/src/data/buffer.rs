//! The bound on the write buffer: fjall's memtables, the writes not yet in tables.
//!
//! fjall seals a keyspace's memtable (and flushes it to a table in the background) only once
//! that memtable reaches its own size limit (64 MiB), and fjall 3.1 applies no database-wide
//! write-buffer limit; with a dozen keyspaces written together, the memtables held hundreds of
//! MB during ingest (BENCHMARKS.md, issue #9). So after every write
//! [`EmbeddedDataStore::bound_write_buffer`] seals the largest active memtables once together
//! they exceed [`DataConfig::write_buffer_bytes`](super::DataConfig), down to half of it, and
//! then waits while the memtables it sealed and fjall has not flushed yet exceed the limit:
//! writes slow to the flushes, and active and sealed memtables together stay under about twice
//! the limit. Sealing changes no durability: what a memtable holds is in the journal already.
//! A keyspace's sealed memtables count until all of them are flushed, so the wait errs long.
//! `Keyspace::rotate_memtable`, `sealed_memtable_count` and `id` are fjall's hidden API (not
//! covered by its semver): a fjall upgrade checks them, and `tests/it/memory.rs` fails if the
//! bound stops holding.

use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use fjall::{AbstractTree, Keyspace};
use switchyard_storage::StorageError;

use super::EmbeddedDataStore;
use super::codec::backend;

/// How often a write waiting for flushes looks again.
const FLUSH_POLL: Duration = Duration::from_millis(2);
/// Longest a write waits for flushes: a flush that fails leaves its memtable sealed, and the
/// writes go on (their own failure, if fjall is poisoned, reports it).
const FLUSH_WAIT_MAX: Duration = Duration::from_secs(10);

/// The memtables sealed by the bound and not yet flushed: each keyspace with the bytes sealed.
#[derive(Default)]
pub(super) struct Sealed(Mutex<Vec<(Keyspace, u64)>>);

/// The write buffer's size, for measurements and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBuffer {
    /// Bytes in the active memtables (what the next writes add to).
    pub active: u64,
    /// Bytes in memtables sealed by the bound and not yet flushed.
    pub sealed: u64,
}

impl Sealed {
    /// Forgets the keyspaces whose sealed memtables are all flushed (or that were dropped);
    /// returns the bytes still waiting.
    fn waiting(&self, live: &[Keyspace]) -> u64 {
        let mut sealed = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sealed.retain(|(k, _)| k.sealed_memtable_count() > 0 && live.iter().any(|l| l.id() == k.id()));
        sealed.iter().map(|(_, bytes)| bytes).sum()
    }

    fn add(&self, keyspace: &Keyspace, bytes: u64) {
        let mut sealed = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match sealed.iter_mut().find(|(k, _)| k.id() == keyspace.id()) {
            Some((_, total)) => *total += bytes,
            None => sealed.push((keyspace.clone(), bytes)),
        }
    }
}

impl EmbeddedDataStore {
    /// Every keyspace the store writes, the head's partitions included.
    fn all_keyspaces(&self) -> Vec<Keyspace> {
        let mut all: Vec<Keyspace> = self.keyspaces().into_iter().map(|(_, k)| k.clone()).collect();
        all.extend(self.outbox.keyspaces().into_iter().cloned());
        all.extend(self.lock().partitions.all().map(|(_, k)| k.clone()));
        all
    }

    /// Seals the largest memtables once the active ones exceed the limit, then waits for
    /// flushes while what it sealed exceeds the limit (see the module docs).
    pub(super) fn bound_write_buffer(&self) -> Result<(), StorageError> {
        let limit = self.write_buffer_bytes;
        let keyspaces = self.all_keyspaces();
        let mut sizes: Vec<(u64, &Keyspace)> = keyspaces.iter().map(|k| (k.tree.active_memtable().size(), k)).collect();
        let mut active: u64 = sizes.iter().map(|(size, _)| size).sum();
        if active > limit {
            sizes.sort_unstable_by_key(|(size, _)| std::cmp::Reverse(*size));
            for (size, keyspace) in sizes {
                if active <= limit / 2 {
                    break;
                }
                if keyspace.rotate_memtable().map_err(|e| backend("seal memtable", e))? {
                    self.sealed.add(keyspace, size);
                }
                active -= size;
            }
        }
        let started = Instant::now();
        while self.sealed.waiting(&keyspaces) > limit {
            if started.elapsed() >= FLUSH_WAIT_MAX {
                tracing::warn!(limit, "data store: memtables not flushed in time, writing on");
                break;
            }
            thread::sleep(FLUSH_POLL);
        }
        Ok(())
    }

    /// The write buffer's size now (for measurements and tests).
    pub fn write_buffer(&self) -> WriteBuffer {
        let keyspaces = self.all_keyspaces();
        let active = keyspaces.iter().map(|k| k.tree.active_memtable().size()).sum();
        WriteBuffer { active, sealed: self.sealed.waiting(&keyspaces) }
    }
}
