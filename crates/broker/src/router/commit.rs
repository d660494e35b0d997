//! The committer: two threads that make the router's batches durable and only then release the
//! packets each batch held back, in batch order. The router keeps routing while a commit is in
//! flight; batches that queue up meanwhile are merged into the next commit (group commit).
//!
//! The commit is pipelined: the first stage (`switchyard-commit`) writes a commit's data
//! ([`DataStore::write_unsynced`]) and passes it to the second (`switchyard-sync`), which syncs
//! ([`DataStore::sync`], once for every commit waiting) and only then releases them, in order;
//! meanwhile the first stage writes the next commit. A commit with session ops or tenant drops
//! syncs the data written so far itself before them, so they never reach the disk ahead of it.
//!
//! Order per connection is kept: once any batch is with the committer, every later batch goes
//! through it too, even one with nothing to store.
//!
//! Once a commit is durable, the records it stored go to the live listeners
//! ([`Listeners::publish`], never waiting for one), then the batches' packets are released.
//!
//! A commit has three steps, each durable before the next: the pipeline data
//! ([`DataStore::write`]), the data of deleted tenants ([`DataStore::drop_tenant`]), then the
//! session ops. Data goes first so that a QoS 2 packet id is never recorded as received (and a
//! resend never routed again) for a message whose data is not on disk.
//!
//! Failure policy: nothing is acknowledged that is not on disk, and memory never stays ahead of
//! it. A failed step is retried, the same ops in the same order, with back-off up to
//! [`RETRY_MAX`], until it succeeds; a step that succeeded is not repeated, and a failed data
//! write stored nothing (backends write a batch atomically), so retrying never stores a message
//! twice. Meanwhile every acknowledgement waits (publishers slow down
//! as their windows fill, then the router waits for the committer) and [`StorageHealth`] says
//! storage is failing. If either thread dies, the router closes every connection and refuses new
//! ones (see `Router::storage_died`). At shutdown a failing commit is given up: its
//! publishers were never acknowledged and resend to the next start.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver as SyncReceiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_storage::data::Written;
use switchyard_storage::{DataStore, Ingest, SessionOp, SessionStore, StorageError};
use tokio::sync::mpsc::{Receiver, Sender, error::TrySendError};
use tokio::sync::oneshot;

use crate::Stats;
use crate::listen::Listeners;
use crate::message::now_ms;
use crate::outbox::{Outbox, Outgoing};

/// Batches the committer may hold before the router waits for it.
const QUEUED_BATCHES: usize = 64;
/// Commits written and waiting for their sync before the first stage waits for the second.
const QUEUED_COMMITS: usize = 2;
/// First wait before a failed commit is retried; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// One router batch: what to store, what to send once it is stored, and who waits for it.
#[derive(Default)]
pub(super) struct Batch {
    pub ops: Vec<SessionOp>,
    /// Pipeline data, in the order it arrived.
    pub data: Vec<Ingest>,
    /// Tenants whose data is deleted (their namespace was dropped in this batch).
    pub drop_tenants: Vec<Arc<str>>,
    pub held: Vec<(Arc<Outbox>, Outgoing)>,
    /// Told once the batch is durable; dropped unanswered if it never will be.
    pub done: Vec<oneshot::Sender<()>>,
    /// Told what became of `data[range]` once durable; dropped unanswered if it never will be.
    pub replies: Vec<(Range<usize>, oneshot::Sender<Vec<Written>>)>,
}

impl Batch {
    /// Nothing to make durable: its packets can go out at once if nothing is in flight.
    fn stores_nothing(&self) -> bool {
        self.ops.is_empty() && self.data.is_empty() && self.drop_tenants.is_empty()
    }
}

/// Whether storage keeps up, as `/health` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageStatus {
    Ok,
    /// Commits fail and are being retried; acknowledgements wait.
    Failing {
        since_ms: u64,
        error: String,
    },
    /// The committer thread is gone: the broker closed every connection and refuses new ones.
    Dead,
}

const OK: u8 = 0;
const FAILING: u8 = 1;
const DEAD: u8 = 2;

/// The committer's state, shared with every [`Broker`](crate::Broker) handle.
#[derive(Debug, Default)]
pub struct StorageHealth {
    state: AtomicU8,
    since_ms: AtomicU64,
    error: Mutex<String>,
}

impl StorageHealth {
    pub fn status(&self) -> StorageStatus {
        match self.state.load(Ordering::Acquire) {
            OK => StorageStatus::Ok,
            FAILING => StorageStatus::Failing {
                since_ms: self.since_ms.load(Ordering::Relaxed),
                error: self.error.lock().map(|e| e.clone()).unwrap_or_default(),
            },
            _ => StorageStatus::Dead,
        }
    }

    pub fn is_dead(&self) -> bool {
        self.state.load(Ordering::Acquire) == DEAD
    }

    fn failing(&self, error: String) {
        if let Ok(mut e) = self.error.lock() {
            *e = error;
        }
        if self.state.compare_exchange(OK, FAILING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    fn recovered(&self) {
        let _ = self.state.compare_exchange(FAILING, OK, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Marks the health dead when the committer thread unwinds.
struct DeathWatch(Arc<StorageHealth>);

impl Drop for DeathWatch {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.0.is_dead() {
            self.0.state.store(DEAD, Ordering::Release);
            tracing::error!("storage committer died: closing every connection and refusing new ones");
        }
    }
}

/// The router's end of the committer.
pub(super) struct Committer {
    tx: Option<Sender<Batch>>,
    pending: Arc<AtomicUsize>,
    stats: Arc<Stats>,
    health: Arc<StorageHealth>,
    stopping: Arc<AtomicBool>,
    listeners: Arc<Listeners>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    pub fn start(
        store: Arc<dyn SessionStore>,
        data: Arc<dyn DataStore>,
        stats: Arc<Stats>,
    ) -> std::io::Result<Committer> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(QUEUED_BATCHES);
        let pending = Arc::new(AtomicUsize::new(0));
        let health = Arc::new(StorageHealth::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let listeners = Arc::new(Listeners::default());
        let shared = Shared {
            pending: Arc::clone(&pending),
            stats: Arc::clone(&stats),
            health: Arc::clone(&health),
            stopping: Arc::clone(&stopping),
            listeners: Arc::clone(&listeners),
        };
        let (commits, written) = std::sync::mpsc::sync_channel(QUEUED_COMMITS);
        let syncer = {
            let (data, shared) = (Arc::clone(&data), shared.clone());
            std::thread::Builder::new().name("switchyard-sync".into()).spawn(move || {
                let _watch = DeathWatch(Arc::clone(&shared.health));
                sync_and_release(&*data, &written, &shared);
            })?
        };
        let thread = std::thread::Builder::new().name("switchyard-commit".into()).spawn(move || {
            let _watch = DeathWatch(Arc::clone(&shared.health));
            run(&*store, &*data, &mut rx, &commits, &shared);
            // The second stage releases what is left, then ends.
            drop(commits);
            if syncer.join().is_err() {
                tracing::error!("sync stage of the committer panicked");
            }
        })?;
        Ok(Committer { tx: Some(tx), pending, stats, health, stopping, listeners, thread: Some(thread) })
    }

    pub fn health(&self) -> &Arc<StorageHealth> {
        &self.health
    }

    /// The live listeners this committer feeds after each commit.
    pub fn listeners(&self) -> &Arc<Listeners> {
        &self.listeners
    }

    /// Hand a batch over; with nothing to store and nothing in flight, release it at once.
    /// Once the committer is dead nothing is released: the router is closing every connection.
    pub async fn submit(&self, batch: Batch) {
        if self.health.is_dead() {
            return;
        }
        if batch.stores_nothing() && self.pending.load(Ordering::Acquire) == 0 {
            release(batch, &[], &self.stats);
            return;
        }
        let Some(tx) = &self.tx else { return };
        self.pending.fetch_add(1, Ordering::AcqRel);
        let batch = match tx.try_send(batch) {
            Ok(()) => return,
            Err(TrySendError::Full(batch)) => batch,
            Err(TrySendError::Closed(_)) => return,
        };
        // Storage is behind by a whole queue of batches: the router waits for it.
        let _ = tx.send(batch).await;
    }

    /// The server is stopping: a failing commit is no longer retried, so the final flush cannot
    /// wait behind it for ever.
    pub fn stop_retrying(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Flush everything handed over and stop the thread.
    pub async fn finish(&mut self) {
        self.stop_retrying();
        self.tx.take();
        let Some(thread) = self.thread.take() else { return };
        let joined = tokio::task::spawn_blocking(move || thread.join().is_ok()).await;
        if !matches!(joined, Ok(true)) {
            tracing::error!("committer thread panicked");
        }
    }
}

/// What the committer's threads share with the router.
#[derive(Clone)]
struct Shared {
    pending: Arc<AtomicUsize>,
    stats: Arc<Stats>,
    health: Arc<StorageHealth>,
    stopping: Arc<AtomicBool>,
    listeners: Arc<Listeners>,
}

/// A commit written by the first stage, on its way to the second.
struct Commit {
    batches: Vec<Batch>,
    /// Where each batch's data starts in `records`.
    offsets: Vec<usize>,
    records: Vec<Ingest>,
    drops: Vec<Arc<str>>,
    /// What each record became; `None` when the server is stopping and the commit was given up.
    written: Option<Vec<Written>>,
    /// Its data is written but not yet known to be durable.
    unsynced: bool,
}

/// The first stage: merges the batches waiting, writes their data unsynced (syncing first only
/// when session ops or tenant drops follow it) and passes the commit on, in order.
fn run(
    store: &dyn SessionStore,
    data: &dyn DataStore,
    rx: &mut Receiver<Batch>,
    commits: &SyncSender<Commit>,
    shared: &Shared,
) {
    // Data written unsynced since this stage last synced itself.
    let mut dirty = false;
    while let Some(first) = rx.blocking_recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        let ops: Vec<SessionOp> = batches.iter_mut().flat_map(|b| std::mem::take(&mut b.ops)).collect();
        let mut records: Vec<Ingest> = Vec::new();
        let mut drops: Vec<Arc<str>> = Vec::new();
        // Each batch's replies shift to where its data sits in the merged write.
        let mut offsets = Vec::with_capacity(batches.len());
        for batch in &mut batches {
            offsets.push(records.len());
            records.append(&mut batch.data);
            drops.append(&mut batch.drop_tenants);
        }
        // Dropped before the batches if a commit panics: the state reads dead before anyone
        // waiting on a batch hears it is lost.
        let _watch = DeathWatch(Arc::clone(&shared.health));
        let written = write_until_stored(store, data, &ops, &records, &drops, &mut dirty, shared);
        let unsynced = dirty && !records.is_empty();
        let commit = Commit { batches, offsets, records, drops, written, unsynced };
        if commits.send(commit).is_err() {
            return;
        }
    }
}

/// The second stage: syncs everything the first stage wrote (one sync for all the commits
/// waiting), then feeds the listeners and releases each commit's batches, in commit order.
fn sync_and_release(data: &dyn DataStore, commits: &SyncReceiver<Commit>, shared: &Shared) {
    while let Ok(first) = commits.recv() {
        let mut ready = vec![first];
        ready.extend(commits.try_iter());
        let _watch = DeathWatch(Arc::clone(&shared.health));
        let size = ready.iter().map(|c| c.records.len()).sum();
        let synced = !ready.iter().any(|c| c.unsynced) || retry(shared, size, || data.sync()).is_some();
        for commit in ready {
            let written = commit.written.filter(|_| synced);
            if let Some(written) = &written {
                shared.listeners.publish(&commit.records, written);
                commit.drops.iter().for_each(|tenant| shared.listeners.close_tenant(tenant));
            }
            for (batch, offset) in commit.batches.into_iter().zip(commit.offsets) {
                match &written {
                    Some(written) => release(batch, written.get(offset..).unwrap_or_default(), &shared.stats),
                    None => drop(batch),
                }
                shared.pending.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    shared.listeners.close_all();
}

/// Store `records` unsynced, then, syncing them first, drop `drops`' data and commit `ops`,
/// each step retried with back-off while it fails and never repeated once it succeeded.
/// `dirty` says whether data written unsynced may not be durable yet. What each record became,
/// or `None` only when the server is stopping.
fn write_until_stored(
    store: &dyn SessionStore,
    data: &dyn DataStore,
    ops: &[SessionOp],
    records: &[Ingest],
    drops: &[Arc<str>],
    dirty: &mut bool,
    shared: &Shared,
) -> Option<Vec<Written>> {
    let size = ops.len() + records.len();
    let mut written = Vec::new();
    if !records.is_empty() {
        written = retry(shared, size, || data.write_unsynced(records, now_ms() as i64))?;
        *dirty = true;
    }
    if drops.is_empty() && ops.is_empty() {
        return Some(written);
    }
    // Nothing after the data may reach the disk before it (and every earlier commit's data).
    if *dirty {
        retry(shared, size, || data.sync())?;
        *dirty = false;
    }
    for tenant in drops {
        retry(shared, size, || data.drop_tenant(tenant))?;
    }
    if !ops.is_empty() {
        retry(shared, size, || store.commit(ops))?;
    }
    Some(written)
}

/// Run `step` until it succeeds, with back-off; `None` when it fails while the server is stopping.
fn retry<T>(shared: &Shared, size: usize, mut step: impl FnMut() -> Result<T, StorageError>) -> Option<T> {
    let mut wait = RETRY_FIRST;
    let mut attempts = 0u64;
    loop {
        let error = match step() {
            Ok(value) => {
                if attempts > 0 {
                    tracing::info!(attempts, ops = size, "storage commit succeeded after failing");
                    shared.health.recovered();
                }
                return Some(value);
            }
            Err(e) => e.to_string(),
        };
        attempts += 1;
        shared.stats.storage_errors.fetch_add(1, Ordering::Relaxed);
        if shared.stopping.load(Ordering::Acquire) {
            tracing::error!(error, ops = size, "storage commit failed at shutdown; not stored, not acknowledged");
            return None;
        }
        // Logged at the first failure and then at each doubling, not at every retry.
        if attempts.is_power_of_two() {
            tracing::error!(error, attempts, ops = size, "storage commit failed; retrying, acknowledgements wait");
        }
        shared.health.failing(error);
        std::thread::sleep(wait);
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// Push held packets to their outboxes and tell who waited; `written` is what became of the
/// batch's data, from its first record on.
fn release(batch: Batch, written: &[Written], stats: &Stats) {
    for (outbox, item) in batch.held {
        let dropped = outbox.push_held(item);
        if dropped > 0 {
            stats.qos0_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }
    for done in batch.done {
        let _ = done.send(());
    }
    for (range, reply) in batch.replies {
        let _ = reply.send(written.get(range).map(<[Written]>::to_vec).unwrap_or_default());
    }
}
