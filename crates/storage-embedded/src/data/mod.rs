//! The pipeline's data (message cache and metrics, SPEC §4.2–4.4) in a fjall database under
//! `DIR/data/`, behind [`DataStore`].
//!
//! # Layout
//! Names are length-prefixed parts and timestamps order-preserving bytes ([`codec`]); `R` below is
//! `tenant ‖ resource`, `S` is `R ‖ metric`, `ts` 8 bytes. Keyspaces:
//! - `messages`: `R ‖ ts ‖ u64 arrival` → `expiry ‖ body`. The cache of a resource is one prefix
//!   in time order; [`DataStore::write`] trims it to the newest `keep`. The arrival number is the
//!   message's sequence number (`Written::Stored`); a resource's commands history is the cache of
//!   `ResourceKey::of_channel` (resource `{id}/commands`).
//! - `ids`: `R ‖ messageId` (its SHA-256 when over 1 KiB) → `now` of the write that stored it.
//! - `head.N` (time partitions, see the `head` module): `R ‖ ts ‖ u64 arrival` → `expiry ‖
//!   points` (each `u16 BE length ‖ metric ‖ value`): the points of one message not yet sealed,
//!   one entry per message (not per point: a message costs two keys, its cache entry and its
//!   points, however many metrics it has). A partition is dropped whole once all of it is sealed.
//! - `chunks`: `S ‖ first ts` → `max expiry ‖ chunk` ([`switchyard_series::chunk`]): sealed
//!   points, a series' chunks disjoint in time.
//! - `series`: `S` → empty: which series a resource has (the newest point is read from `head` and
//!   the last chunk when listed).
//! - `expiry`: `at ‖ kind ‖ key` → empty: when a message, a `messageId` or a chunk expires, so
//!   [`DataStore::maintain`] finds what to drop without reading everything.
//! - `meta`: `seq` → the next arrival number.
//! - `outbox`, `outbox_meta`: the forwarding outbox, appended in the same batch as the messages
//!   (layout in the `outbox` module).
//!
//! # Invariants
//! - A write is one atomic fjall batch, fdatasynced before [`DataStore::write`] returns: one
//!   sync per call, however many messages it holds. Writes are serialized by one lock.
//!   [`DataStore::write_unsynced`] commits the batch without the sync and [`DataStore::sync`]
//!   fdatasyncs the journal (everything committed before it), so the committer prepares and
//!   writes one commit while the previous one syncs. A failed sync poisons fjall's database:
//!   every later write and sync fails until a restart recovers from the journal.
//! - A point written later is in `head` or in a later chunk rewrite, so `scan` returns chunks then
//!   `head`, and the later block wins a shared timestamp.
//! - Sealing ([`DataStore::maintain`]) moves a resource's `head` into its series' chunks once
//!   it holds [`SEAL_POINTS`] messages, its oldest is [`SEAL_AGE_MS`] old or it has entries in a
//!   head partition that old, merging each series
//!   with the chunks it overlaps and with a last chunk still under [`SEAL_POINTS`] points that it
//!   follows; so a resource's `head`, which series reads filter by metric, stays bounded by what
//!   arrives between two maintenance runs plus [`SEAL_POINTS`] messages.
//! - TTL: expired messages and `head` points are never read, and are dropped by the first
//!   maintenance at or after their expiry (a head holding an expired point is sealed then).
//!   A chunk keeps the latest expiry of its points (points without TTL count as never): it is
//!   read until then and dropped at it, so a sealed point with a TTL can be served until the
//!   newest point of its chunk expires (the trait allows it; head points past their TTL are not
//!   sealed).
//! - A `messageId` is a duplicate while `now < stored_at + window`; deleting messages keeps their
//!   ids, dropping the tenant forgets them.
//!
//! In memory, each map bounded: per resource written since opening, the cache's size and where
//! its oldest entry may be (so trimming reads only what it deletes), at most
//! [`DataConfig::max_tracked_resources`]; per resource with unsealed points, its head's size,
//! oldest time and partitions (an entry leaves when its head is sealed, so the map holds the
//! resources written since about [`SEAL_AGE_MS`]); series keys known to be in `series` (so it is
//! written once per series), at most [`DataConfig::max_tracked_series`]. Beyond a cap, a tenth of
//! the entries is forgotten, in no particular order: a forgotten cache is counted again from disk
//! when next written, a forgotten series looked up in `series`. The write buffer (fjall's
//! memtables) is bounded by [`DataConfig::write_buffer_bytes`] (the `buffer` module), reads by
//! the block cache, [`DataConfig::cache_bytes`].
//!
//! Disk: maintenance drops sealed head partitions and compacts the other keyspaces when
//! deletions have doubled them (the `compact` module).

mod buffer;
mod codec;
mod compact;
mod head;
mod maintain;
mod messages;
mod outbox;
mod retention;
mod series;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use foldhash::{HashMap, HashSet};
use switchyard_storage::data::{
    Block, DataStore, Ingest, MessageStore, ResourceKey, SeriesInfo, SeriesStore, StoredMessage, TimeRange, Written,
};
use switchyard_storage::{DEFAULT_IDEMPOTENCY_WINDOW_MS, StorageError};

pub use buffer::WriteBuffer;
use codec::backend;
pub use head::HEAD_WINDOW_MS;

/// Directory of the data database inside the data directory.
pub const DIR_NAME: &str = "data";
/// A resource's head is sealed once it holds this many messages...
pub const SEAL_POINTS: u64 = 1024;
/// ...or its oldest point is this old.
pub const SEAL_AGE_MS: i64 = 3_600_000;
/// Largest chunk written: merged runs longer than this are split evenly.
pub const CHUNK_MAX: usize = 4096;

/// The default of [`DataConfig::write_buffer_bytes`].
pub const DEFAULT_WRITE_BUFFER_BYTES: u64 = 32 * 1024 * 1024;
/// The default of [`DataConfig::cache_bytes`].
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// How an [`EmbeddedDataStore`] is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataConfig {
    /// How long a `messageId` is remembered (SPEC §4.4; default 24 h).
    pub idempotency_window_ms: i64,
    /// fjall's block cache, bytes.
    pub cache_bytes: u64,
    /// Journal kept before the oldest writes are flushed to tables, bytes.
    pub journal_bytes: u64,
    /// Memtables (writes not yet in tables) before the largest are flushed, bytes; writes wait
    /// while twice this is unflushed (the `buffer` module).
    pub write_buffer_bytes: u64,
    /// Resources whose cache size is kept in memory.
    pub max_tracked_resources: usize,
    /// Series keys kept in memory.
    pub max_tracked_series: usize,
    /// Messages and points older than this (by their timestamp) are deleted by maintenance
    /// (see the `retention` module); `None` keeps them until their TTL, if any.
    pub retention_ms: Option<i64>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            idempotency_window_ms: DEFAULT_IDEMPOTENCY_WINDOW_MS,
            cache_bytes: DEFAULT_CACHE_BYTES,
            journal_bytes: 64 * 1024 * 1024,
            write_buffer_bytes: DEFAULT_WRITE_BUFFER_BYTES,
            max_tracked_resources: 1_000_000,
            max_tracked_series: 1_000_000,
            retention_ms: None,
        }
    }
}

/// Entries of the store's in-memory maps ([`EmbeddedDataStore::tracked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    /// Resources whose cache size is known.
    pub resources: usize,
    /// Resources with unsealed points.
    pub heads: usize,
    /// Series known to be stored.
    pub series: usize,
}

/// Messages and series in `DIR/data/`; see the [module docs](self).
pub struct EmbeddedDataStore {
    db: Database,
    messages: Keyspace,
    ids: Keyspace,
    chunks: Keyspace,
    series: Keyspace,
    expiry: Keyspace,
    meta: Keyspace,
    /// The forwarding outbox (`outbox`, `outbox_meta`; see the `outbox` module).
    outbox: outbox::Outbox,
    window_ms: i64,
    retention_ms: Option<i64>,
    write_buffer_bytes: u64,
    max_tracked_resources: usize,
    max_tracked_series: usize,
    /// Memtables the write-buffer bound sealed, until flushed.
    sealed: buffer::Sealed,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The next arrival number.
    seq: u64,
    /// By resource prefix; filled when a resource is written, capped (see the module docs).
    caches: HashMap<Vec<u8>, Cache>,
    /// By resource prefix: the resources with unsealed points.
    heads: HashMap<Vec<u8>, Head>,
    /// Series known to be stored (their keys in `series`), capped (see the module docs).
    series: HashSet<Vec<u8>>,
    /// The retention cut-off last applied.
    retained_until: Option<i64>,
    /// The head's keyspaces (see the `head` module).
    partitions: head::Partitions,
    /// Keyspace sizes after their last compaction (see the `compact` module).
    compacted: compact::Compacted,
}

/// A resource's message cache.
struct Cache {
    count: u64,
    /// No message of the resource sorts before this key (`None`: unknown).
    floor: Option<Vec<u8>>,
}

/// A resource's unsealed points.
struct Head {
    /// Messages with points in the head.
    count: u64,
    oldest: i64,
    /// The earliest expiry of its points ([`codec::NEVER`] if none has a TTL).
    expires: i64,
    /// The head partitions holding them.
    parts: BTreeSet<u64>,
}

impl Head {
    fn empty() -> Self {
        Head { count: 0, oldest: i64::MAX, expires: codec::NEVER, parts: BTreeSet::new() }
    }

    /// Counts a message whose points, at `ts`, expire at `expires`.
    fn add(&mut self, ts: i64, expires: i64) {
        self.count += 1;
        self.oldest = self.oldest.min(ts);
        self.expires = self.expires.min(expires);
    }
}

impl State {
    /// Counts a message of `resource` whose points, at `ts` in head partition `part`, expire at
    /// `expires`.
    fn add_head(&mut self, resource: &[u8], part: u64, ts: i64, expires: i64) {
        let head = match self.heads.get_mut(resource) {
            Some(head) => head,
            None => self.heads.entry(resource.to_vec()).or_insert_with(Head::empty),
        };
        if head.parts.insert(part) {
            self.partitions.enter(part);
        }
        head.add(ts, expires);
    }

    /// The head of `resource` is empty (sealed or deleted).
    fn clear_head(&mut self, resource: &[u8]) {
        if let Some(head) = self.heads.remove(resource) {
            self.partitions.leave(&head.parts);
        }
    }
}

impl State {
    /// Forgets entries of the capped maps beyond their caps (see the module docs).
    fn forget_beyond(&mut self, max_resources: usize, max_series: usize) {
        if self.caches.len() > max_resources {
            let mut keep = forgetting(self.caches.len(), max_resources);
            self.caches.retain(|_, _| keep());
        }
        if self.series.len() > max_series {
            let mut keep = forgetting(self.series.len(), max_series);
            self.series.retain(|_| keep());
        }
    }
}

/// A `retain` filter for a map of `len` entries capped at `max`: drops the first ones it sees
/// (in no particular order) until the map is a tenth under the cap.
fn forgetting(len: usize, max: usize) -> impl FnMut() -> bool {
    let mut forget = len.saturating_sub(max - max / 10);
    move || {
        if forget == 0 {
            return true;
        }
        forget -= 1;
        false
    }
}

impl EmbeddedDataStore {
    /// Opens (creating if needed) the database in `dir/data/`.
    pub fn open(dir: &Path, config: DataConfig) -> Result<Self, StorageError> {
        let path = dir.join(DIR_NAME);
        let db = Database::builder(&path)
            .worker_threads(1)
            .cache_size(config.cache_bytes)
            .manual_journal_persist(true)
            .max_journaling_size(config.journal_bytes)
            .open()
            .map_err(|e| backend(&format!("cannot open {}", path.display()), e))?;
        let keyspace = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(|e| backend(name, e));
        let store = EmbeddedDataStore {
            messages: keyspace("messages")?,
            ids: keyspace("ids")?,
            chunks: keyspace("chunks")?,
            series: keyspace("series")?,
            expiry: keyspace("expiry")?,
            meta: keyspace("meta")?,
            outbox: outbox::Outbox::open(&db)?,
            window_ms: config.idempotency_window_ms,
            retention_ms: config.retention_ms,
            write_buffer_bytes: config.write_buffer_bytes,
            max_tracked_resources: config.max_tracked_resources.max(1),
            max_tracked_series: config.max_tracked_series.max(1),
            sealed: buffer::Sealed::default(),
            state: Mutex::default(),
            db,
        };
        store.load_state()?;
        Ok(store)
    }

    /// Reads the arrival counter, the series and the size of their heads.
    fn load_state(&self) -> Result<(), StorageError> {
        let mut state = self.lock();
        state.partitions = head::Partitions::open(&self.db)?;
        if let Some(seq) = self.meta.get(b"seq").map_err(|e| backend("read seq", e))? {
            let seq: [u8; 8] = seq.as_ref().try_into().map_err(|_| codec::corrupt("seq"))?;
            state.seq = u64::from_be_bytes(seq);
        }
        for guard in self.series.iter().take(self.max_tracked_series) {
            let key = guard.key().map_err(|e| backend("read series", e))?;
            state.series.insert(key.to_vec());
        }
        let partitions: Vec<(u64, Keyspace)> = state.partitions.all().map(|(n, k)| (n, k.clone())).collect();
        for (part, keyspace) in partitions {
            for guard in keyspace.iter() {
                let (key, value) = guard.into_inner().map_err(|e| backend("read head", e))?;
                let resource = &key[..key.len().checked_sub(16).ok_or_else(|| codec::corrupt("head key"))?];
                let ts = codec::ts_at(&key, resource.len())?;
                state.add_head(resource, part, ts, codec::expiry_of(&value)?);
            }
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to the state is made after its batch committed, so it stays usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes on disk (journal and tables), for measurements.
    pub fn disk_space(&self) -> Result<u64, StorageError> {
        self.db.disk_space().map_err(|e| backend("disk space", e))
    }

    /// Bytes on disk by keyspace (the head's partitions together), then the journal's, for
    /// measurements.
    pub fn disk_usage(&self) -> Result<Vec<(&'static str, u64)>, StorageError> {
        let head = self.lock().partitions.all().map(|(_, k)| k.disk_space()).sum();
        let mut usage = vec![
            ("messages", self.messages.disk_space()),
            ("ids", self.ids.disk_space()),
            ("head", head),
            ("chunks", self.chunks.disk_space()),
            ("series", self.series.disk_space()),
            ("expiry", self.expiry.disk_space()),
            ("meta", self.meta.disk_space()),
        ];
        usage.push(("journal", self.db.journal_disk_space().map_err(|e| backend("journal size", e))?));
        Ok(usage)
    }

    /// Entries of the in-memory maps (see the module docs), for measurements and tests.
    pub fn tracked(&self) -> Tracked {
        let state = self.lock();
        Tracked { resources: state.caches.len(), heads: state.heads.len(), series: state.series.len() }
    }

    /// Bytes of sealed chunks and the series index on disk, for measurements.
    pub fn series_disk_space(&self) -> u64 {
        self.chunks.disk_space() + self.series.disk_space()
    }

    /// The keyspaces other than the head's, for compaction and dropping a tenant.
    fn keyspaces(&self) -> [(&'static str, &Keyspace); 6] {
        [
            ("messages", &self.messages),
            ("ids", &self.ids),
            ("chunks", &self.chunks),
            ("series", &self.series),
            ("expiry", &self.expiry),
            ("meta", &self.meta),
        ]
    }
}

impl std::fmt::Debug for EmbeddedDataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedDataStore").field("window_ms", &self.window_ms).finish_non_exhaustive()
    }
}

impl MessageStore for EmbeddedDataStore {
    fn messages(
        &self,
        resource: &ResourceKey,
        range: TimeRange,
        limit: usize,
        now: i64,
    ) -> Result<Vec<StoredMessage>, StorageError> {
        self.read_messages(resource, range, limit, now)
    }

    fn current(&self, resource: &ResourceKey, now: i64) -> Result<Option<StoredMessage>, StorageError> {
        Ok(self.read_messages(resource, TimeRange::default(), 1, now)?.pop())
    }

    fn delete_messages(&self, resource: &ResourceKey, range: TimeRange) -> Result<u64, StorageError> {
        self.remove_messages(resource, range)
    }
}

impl SeriesStore for EmbeddedDataStore {
    fn series(&self, resource: &ResourceKey, now: i64) -> Result<Vec<SeriesInfo>, StorageError> {
        self.list_series(resource, now)
    }

    fn scan(
        &self,
        resource: &ResourceKey,
        metric: &str,
        range: TimeRange,
        now: i64,
    ) -> Result<Vec<Block>, StorageError> {
        let resource = codec::resource_prefix(resource)?;
        let series = codec::series_prefix(&resource, metric)?;
        self.scan_series(&resource, metric, &series, range, now)
    }

    fn delete_points(
        &self,
        resource: &ResourceKey,
        range: TimeRange,
        metrics: Option<&[String]>,
    ) -> Result<u64, StorageError> {
        self.remove_points(resource, range, metrics)
    }
}

impl DataStore for EmbeddedDataStore {
    fn write(&self, batch: &[Ingest], now: i64) -> Result<Vec<Written>, StorageError> {
        let written = self.write_batch(batch, now, Some(PersistMode::SyncData))?;
        self.bound_write_buffer()?;
        Ok(written)
    }

    fn write_unsynced(&self, batch: &[Ingest], now: i64) -> Result<Vec<Written>, StorageError> {
        let written = self.write_batch(batch, now, None)?;
        self.bound_write_buffer()?;
        Ok(written)
    }

    fn sync(&self) -> Result<(), StorageError> {
        let covered = self.outbox.appended();
        self.db.persist(PersistMode::SyncData).map_err(|e| backend("sync", e))?;
        self.outbox.synced(covered);
        Ok(())
    }

    fn drop_tenant(&self, tenant: &str) -> Result<(), StorageError> {
        self.remove_tenant(tenant)
    }

    fn maintain(&self, now: i64) -> Result<(), StorageError> {
        self.run_maintenance(now)
    }
}
