//! The committer: a thread that makes the router's batches durable and only then releases the
//! packets each batch held back, in batch order. The router keeps routing while a commit is in
//! flight; batches that queue up meanwhile are merged into the next commit (group commit).
//!
//! Order per connection is kept: once any batch is with the committer, every later batch goes
//! through it too, even one with nothing to store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchyard_codec::reason;
use switchyard_storage::{SessionOp, SessionStore};
use tokio::sync::mpsc::{Receiver, Sender, error::TrySendError};

use crate::Stats;
use crate::outbox::{AckKind, Outbox, Outgoing};

/// Batches the committer may hold before the router waits for it.
const QUEUED_BATCHES: usize = 64;

/// One router batch: what to store, and what to send once it is stored.
pub(super) struct Batch {
    pub ops: Vec<SessionOp>,
    pub held: Vec<(Arc<Outbox>, Outgoing)>,
}

/// The router's end of the committer.
pub(super) struct Committer {
    tx: Option<Sender<Batch>>,
    pending: Arc<AtomicUsize>,
    stats: Arc<Stats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    pub fn start(store: Arc<dyn SessionStore>, stats: Arc<Stats>) -> std::io::Result<Committer> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(QUEUED_BATCHES);
        let pending = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (pending, stats) = (Arc::clone(&pending), Arc::clone(&stats));
            std::thread::Builder::new()
                .name("switchyard-commit".into())
                .spawn(move || run(&*store, &mut rx, &pending, &stats))?
        };
        Ok(Committer { tx: Some(tx), pending, stats, thread: Some(thread) })
    }

    /// Hand a batch over; with nothing to store and nothing in flight, release it at once.
    pub async fn submit(&self, batch: Batch) {
        if batch.ops.is_empty() && self.pending.load(Ordering::Acquire) == 0 {
            release(batch.held, false, &self.stats);
            return;
        }
        let Some(tx) = &self.tx else { return };
        self.pending.fetch_add(1, Ordering::AcqRel);
        let batch = match tx.try_send(batch) {
            Ok(()) => return,
            Err(TrySendError::Full(batch)) => batch,
            Err(TrySendError::Closed(batch)) => {
                release(batch.held, true, &self.stats);
                return;
            }
        };
        // Storage is behind by a whole queue of batches: the router waits for it.
        if let Err(e) = tx.send(batch).await {
            release(e.0.held, true, &self.stats);
        }
    }

    /// Flush everything handed over and stop the thread.
    pub async fn finish(&mut self) {
        self.tx.take();
        let Some(thread) = self.thread.take() else { return };
        let joined = tokio::task::spawn_blocking(move || thread.join().is_ok()).await;
        if !matches!(joined, Ok(true)) {
            tracing::error!("committer thread panicked");
        }
    }
}

fn run(store: &dyn SessionStore, rx: &mut Receiver<Batch>, pending: &AtomicUsize, stats: &Stats) {
    while let Some(first) = rx.blocking_recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        let ops: Vec<SessionOp> = batches.iter_mut().flat_map(|b| std::mem::take(&mut b.ops)).collect();
        let failed = !ops.is_empty()
            && match store.commit(&ops) {
                Ok(()) => false,
                Err(e) => {
                    tracing::error!(error = %e, ops = ops.len(), "storage commit failed; acknowledgements withheld");
                    stats.storage_errors.fetch_add(1, Ordering::Relaxed);
                    true
                }
            };
        for batch in batches {
            release(batch.held, failed, stats);
            pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Push held packets to their outboxes. After a failed commit no acknowledgement goes out:
/// the connections that waited for one are closed, and their clients resend.
fn release(held: Vec<(Arc<Outbox>, Outgoing)>, failed: bool, stats: &Stats) {
    for (outbox, item) in held {
        if failed && is_ack(&item) {
            outbox.push_held(Outgoing::Close(reason::UNSPECIFIED_ERROR));
            continue;
        }
        let dropped = outbox.push_held(item);
        if dropped > 0 {
            stats.qos0_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }
}

fn is_ack(item: &Outgoing) -> bool {
    use switchyard_codec::Packet;
    match item {
        Outgoing::Ack(kind, ..) => matches!(kind, AckKind::PubAck | AckKind::PubRec),
        Outgoing::Control(packet) => matches!(**packet, Packet::ConnAck(_) | Packet::SubAck(_)),
        Outgoing::Publish(_) | Outgoing::Close(_) => false,
    }
}
