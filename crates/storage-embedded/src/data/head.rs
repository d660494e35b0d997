//! The `head` in time partitions: unsealed points go to the newest of a few keyspaces named
//! `head.N`, and a partition none of whose entries is unsealed any more is dropped whole, so the
//! points that sealing moved into chunks leave the disk at once (its files deleted) instead of
//! staying in tables, as values and deletion markers, until a compaction reaches them.
//!
//! Maintenance starts a new partition when the newest is [`HEAD_WINDOW_MS`] old, or when it
//! holds entries but none unsealed (everything written so far is in chunks). It seals every
//! resource with entries in a partition older than [`SEAL_AGE_MS`](super::SEAL_AGE_MS), so no
//! partition outlives about `HEAD_WINDOW_MS + SEAL_AGE_MS`: the head on disk is bounded by what
//! arrives in that time, not by what the store holds.
//!
//! Sealing still deletes the entries it moves (a resource writing again lands in the newest
//! partition beside its sealed entries, and reopening reads every partition): the deletion
//! markers go with their partition. A store made before partitions has one keyspace `head`;
//! it is read as partition 0 and dropped like the others.

use std::collections::{BTreeMap, BTreeSet};

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use switchyard_storage::StorageError;

use super::codec::backend;

/// A new partition is started once the newest is this old (by maintenance's clock).
pub const HEAD_WINDOW_MS: i64 = 600_000;
/// The name of a store's single head keyspace before partitions.
const LEGACY: &str = "head";
const PREFIX: &str = "head.";

/// One partition.
pub(super) struct Partition {
    pub(super) keyspace: Keyspace,
    /// When maintenance first saw it (`None`: not yet).
    created: Option<i64>,
    /// Resources with unsealed entries in it.
    resources: usize,
    /// Whether anything was written to it since it was opened.
    written: bool,
}

/// The head's partitions by number; writes go to the last (empty only before opening).
#[derive(Default)]
pub(super) struct Partitions {
    list: BTreeMap<u64, Partition>,
}

impl Partitions {
    /// Opens the partitions of `db`, creating the first if there is none.
    pub(super) fn open(db: &Database) -> Result<Self, StorageError> {
        let mut list = BTreeMap::new();
        for name in db.list_keyspace_names() {
            let name: &str = name.as_ref();
            let number = if name == LEGACY { Some(0) } else { name.strip_prefix(PREFIX).and_then(|n| n.parse().ok()) };
            if let Some(number) = number {
                let keyspace = db.keyspace(name, KeyspaceCreateOptions::default).map_err(|e| backend(name, e))?;
                list.insert(number, Partition { keyspace, created: None, resources: 0, written: true });
            }
        }
        let mut partitions = Partitions { list };
        if partitions.list.is_empty() {
            partitions.start(db, None)?;
        }
        Ok(partitions)
    }

    /// Starts a new newest partition.
    fn start(&mut self, db: &Database, now: Option<i64>) -> Result<(), StorageError> {
        let number = self.list.keys().next_back().map_or(1, |n| n + 1);
        let name = format!("{PREFIX}{number}");
        let keyspace = db.keyspace(&name, KeyspaceCreateOptions::default).map_err(|e| backend(&name, e))?;
        self.list.insert(number, Partition { keyspace, created: now, resources: 0, written: false });
        Ok(())
    }

    /// The newest partition's number and keyspace: where writes go.
    pub(super) fn current(&self) -> (u64, &Keyspace) {
        let (number, partition) = self.list.last_key_value().expect("there is always a partition");
        (*number, &partition.keyspace)
    }

    /// The partition numbered `number`.
    pub(super) fn get(&self, number: u64) -> Option<&Keyspace> {
        self.list.get(&number).map(|p| &p.keyspace)
    }

    /// Every partition, oldest first.
    pub(super) fn all(&self) -> impl Iterator<Item = (u64, &Keyspace)> {
        self.list.iter().map(|(n, p)| (*n, &p.keyspace))
    }

    /// A resource has its first unsealed entry in partition `number`.
    pub(super) fn enter(&mut self, number: u64) {
        if let Some(partition) = self.list.get_mut(&number) {
            partition.resources += 1;
            partition.written = true;
        }
    }

    /// A resource's entries in the partitions `numbers` are all sealed or deleted.
    pub(super) fn leave(&mut self, numbers: &BTreeSet<u64>) {
        for number in numbers {
            if let Some(partition) = self.list.get_mut(number) {
                partition.resources = partition.resources.saturating_sub(1);
            }
        }
    }

    /// The oldest partition started at or before `at` (by maintenance's clock), if any: a
    /// resource with entries there or earlier is due for sealing.
    pub(super) fn started_by(&self, at: i64) -> Option<u64> {
        self.list.iter().rev().find(|(_, p)| p.created.is_some_and(|c| c <= at)).map(|(n, _)| *n)
    }

    /// Maintenance's part: dates new partitions, starts a new one when the newest is old or
    /// fully sealed, and drops the older ones with nothing unsealed. Returns how many it dropped.
    pub(super) fn rotate(&mut self, db: &Database, now: i64) -> Result<usize, StorageError> {
        for partition in self.list.values_mut() {
            partition.created.get_or_insert(now);
        }
        let newest = self.list.last_key_value().map(|(_, p)| p).expect("there is always a partition");
        let old = newest.created.is_some_and(|c| c.saturating_add(HEAD_WINDOW_MS) <= now);
        let done = newest.resources == 0 && newest.written;
        if (old && newest.written) || done {
            self.start(db, Some(now))?;
        }
        let current = self.current().0;
        let empty: Vec<u64> =
            (self.list.iter()).filter(|(n, p)| **n != current && p.resources == 0).map(|(n, _)| *n).collect();
        for number in &empty {
            if let Some(partition) = self.list.remove(number) {
                db.delete_keyspace(partition.keyspace).map_err(|e| backend("drop head partition", e))?;
            }
        }
        Ok(empty.len())
    }
}
