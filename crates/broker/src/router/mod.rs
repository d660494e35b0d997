//! The router: the one owner of broker state. It takes [`Event`]s in batches, applies them,
//! group-commits what must be durable, and only then releases the packets that acknowledge it.
//!
//! It never waits on a connection: everything it sends goes through non-blocking outboxes. It
//! runs as a task beside the connections, so handing it an event is a task switch rather than a
//! thread wake-up; storage commits run on the committer's thread, never on the runtime.

mod commit;
mod connect;
mod data;
#[cfg(test)]
mod data_tests;
mod index;
#[cfg(test)]
mod lifetime_tests;
mod publish;
mod subscribe;
mod sys;

use std::collections::BTreeSet;

// Fast, per-process-seeded hashing for the router's hot lookups (every ack and delivery).
use foldhash::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Waker;
use std::time::Duration;

use switchyard_codec::{QoS, reason};
use switchyard_storage::data::Written;
use switchyard_storage::{DataStore, Ingest, SessionOp, SessionStore, Snapshot};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::Stats;
use crate::auth::{Authenticator, Namespace};
use crate::config::BrokerConfig;
use crate::escaped::Escaped;
use crate::message::{ConnId, Event, Message, now_ms};
use crate::outbox::{Outbox, Outgoing};
use crate::persist;
use crate::retained::Retained;
use crate::session::{
    Session, SessionRecord, SubRecord, received_packet_id, split_key, store_key, subscription_entry,
    subscription_filter,
};
use crate::subtree::{SessionId, SubTree};

/// Events taken from the queue per batch (and so per group commit at most).
const BATCH: usize = 512;
/// How often a slice of the sessions is checked for clients silent beyond their keep-alive.
const KEEP_ALIVE_SWEEP_MS: u64 = 100;
/// Sessions checked per sweep. Up to this many, each is checked every sweep (the 1.5 ×
/// keep-alive rule holds within 100 ms); beyond, a full pass takes proportionally longer
/// (a million sessions: 5 s), so one sweep never holds the router for more than ~2 ms.
const KEEP_ALIVE_SWEEP_SESSIONS: usize = 20_000;

/// Subscriptions, retained messages and figures of one namespace. It exists while it holds a
/// subscription or a retained message; then it is removed, figures and cursors with it.
#[derive(Debug, Default)]
pub(crate) struct Space {
    pub subs: SubTree,
    pub retained: Retained,
    /// The latest `$SYS` figures: broker-owned, never stored, outside `max_retained_messages`.
    pub sys: Vec<Arc<Message>>,
    /// Round-robin position of each share group (`group\u{0}filter`) that has members.
    pub cursors: HashMap<Arc<str>, usize>,
    /// PUBLISH packets received from, and sent to, this namespace's clients.
    pub received: u64,
    pub sent: u64,
}

impl Space {
    fn is_idle(&self) -> bool {
        self.subs.is_empty() && self.retained.is_empty()
    }
}

/// [`Router::send`] on the batch's `held` packets and `wake` list alone, for callers that keep a
/// session borrowed. Returns how many QoS 0 publishes the outbox dropped to make room.
fn send_to(
    held: &mut Vec<(Arc<Outbox>, Outgoing)>,
    wake: &mut Vec<Waker>,
    outbox: &Arc<Outbox>,
    item: Outgoing,
) -> usize {
    if matches!(&item, Outgoing::Publish(d) if d.qos != QoS::ExactlyOnce) && !outbox.has_held() {
        return outbox.push_quiet(item, wake);
    }
    outbox.hold();
    held.push((Arc::clone(outbox), item));
    0
}

/// A timer; at most one of each is pending (scheduling it again moves it), so the timers are
/// bounded by the sessions that have one, however often clients reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
    SessionExpiry(SessionId),
    Will(SessionId),
    Sys,
    KeepAlive,
}

pub(crate) use commit::StorageHealth;
pub use commit::StorageStatus;

pub(crate) struct Router {
    cfg: Arc<BrokerConfig>,
    auth: Arc<dyn Authenticator>,
    committer: commit::Committer,
    stats: Arc<Stats>,
    sessions: HashMap<SessionId, Box<Session>>,
    by_key: index::SessionIndex,
    conns: HashMap<ConnId, SessionId>,
    spaces: HashMap<Namespace, Space>,
    next_session: SessionId,
    /// Pending timers by due time, and the due time of each.
    timers: BTreeSet<(u64, Timer)>,
    timer_due: HashMap<Timer, u64>,
    /// Persistent sessions per owner, for `max_sessions_per_identity` (anonymous ones uncounted).
    persistent_owned: HashMap<(Namespace, Arc<str>), usize>,
    /// Store operations of the current batch.
    ops: Vec<SessionOp>,
    /// Pipeline data of the current batch, in arrival order.
    data: Vec<Ingest>,
    /// Tenants whose data the current batch deletes.
    drop_tenants: Vec<Arc<str>>,
    /// Told what became of their part of `data` once the batch is durable.
    replies: Vec<(std::ops::Range<usize>, oneshot::Sender<Vec<Written>>)>,
    /// Sessions whose record must be rewritten at the end of the batch.
    dirty: HashSet<SessionId>,
    /// Packets held until the batch is durable, in order.
    held: Vec<(Arc<Outbox>, Outgoing)>,
    /// Connections given something by the current batch, woken once it is handled: one
    /// wake-up (and one socket write) per connection per batch, not one per message.
    wake: Vec<Waker>,
    /// Told once the batch is durable.
    done: Vec<oneshot::Sender<()>>,
    started_ms: u64,
    /// The clock, read once per batch.
    now: u64,
    /// Set once every connection was told the server is shutting down: new ones are refused.
    closing: bool,
    /// Set once the committer thread is found dead: every connection closed, new ones refused.
    storage_dead: bool,
    /// Where the next keep-alive sweep starts, in the sessions' iteration order.
    sweep_from: usize,
}

impl Router {
    pub fn new(
        cfg: Arc<BrokerConfig>,
        auth: Arc<dyn Authenticator>,
        store: Arc<dyn SessionStore>,
        data: Arc<dyn DataStore>,
        stats: Arc<Stats>,
    ) -> std::io::Result<Router> {
        let committer = commit::Committer::start(store, data, Arc::clone(&stats))?;
        Ok(Router {
            cfg,
            auth,
            committer,
            stats,
            sessions: HashMap::default(),
            by_key: index::SessionIndex::default(),
            conns: HashMap::default(),
            spaces: HashMap::default(),
            next_session: 1,
            timers: BTreeSet::new(),
            timer_due: HashMap::default(),
            persistent_owned: HashMap::default(),
            ops: Vec::new(),
            data: Vec::new(),
            drop_tenants: Vec::new(),
            replies: Vec::new(),
            dirty: HashSet::default(),
            held: Vec::new(),
            wake: Vec::new(),
            done: Vec::new(),
            started_ms: now_ms(),
            now: now_ms(),
            closing: false,
            storage_dead: false,
            sweep_from: 0,
        })
    }

    pub fn storage_health(&self) -> &Arc<StorageHealth> {
        self.committer.health()
    }

    pub fn listeners(&self) -> &Arc<crate::listen::Listeners> {
        self.committer.listeners()
    }

    /// Rebuild state from storage: offline sessions with their queues, and retained messages.
    pub fn restore(&mut self, snapshot: Snapshot) {
        let now = now_ms();
        for (key, record) in snapshot.retained {
            let Some((ns, topic)) = split_key(&key) else { continue };
            if !switchyard_codec::topic::levels_within(topic, self.cfg.max_topic_levels) {
                tracing::warn!(namespace = ns.as_str(), "skipping a stored retained topic beyond max_topic_levels");
                continue;
            }
            match persist::decode_retained(&record) {
                Ok(message) if !message.expired(now) => {
                    self.space(&ns).retained.insert(topic, Arc::new(message));
                }
                Ok(_) => self.ops.push(SessionOp::DeleteRetained { topic: key }),
                Err(e) => tracing::warn!(error = %e, "skipping unreadable retained message"),
            }
        }
        for stored in snapshot.sessions {
            let record: SessionRecord = match serde_json::from_slice(&stored.record) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping unreadable session record");
                    continue;
                }
            };
            let id = self.restore_session(record, now);
            for (seq, bytes) in stored.messages {
                match persist::decode_held(seq, &bytes) {
                    Ok(held) => self.restore_held(id, held),
                    Err(e) => tracing::warn!(error = %e, "skipping unreadable queued message"),
                }
            }
            for (name, record) in stored.entries {
                self.restore_entry(id, &name, &record);
            }
        }
        self.stats.sessions.store(self.sessions.len() as u64, Ordering::Relaxed);
    }

    /// The event loop: until shutdown, or until every sender is gone.
    pub async fn run(mut self, mut events: mpsc::Receiver<Event>, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        self.schedule(now_ms() + self.cfg.sys_interval_ms.max(100), Timer::Sys);
        self.schedule(now_ms() + KEEP_ALIVE_SWEEP_MS, Timer::KeepAlive);
        loop {
            let sleep = self.next_timer().map(|at| at.saturating_sub(now_ms()));
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                n = events.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    self.now = now_ms();
                    for event in batch.drain(..) {
                        self.handle(event);
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(sleep.unwrap_or(3_600_000))), if sleep.is_some() => {}
            }
            self.fire_timers();
            self.finish_batch().await;
        }
        self.committer.stop_retrying();
        // Whatever is already queued is handled before the drain.
        while let Ok(event) = events.try_recv() {
            self.handle(event);
        }
        self.shutdown();
        self.finish_batch().await;
        self.committer.finish().await;
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Connect(req) => self.connect(*req),
            Event::Publish { conn, publish, data } => self.publish(conn, *publish, data),
            Event::Refused { conn, qos, packet_id, reason, detail } => {
                self.refused(conn, qos, packet_id, reason, detail);
            }
            Event::Ingest(request) => self.ingest(*request),
            Event::PubAck { conn, packet_ids } => self.puback(conn, &packet_ids),
            Event::PubRec { conn, packet_id } => self.pubrec(conn, packet_id),
            Event::PubRel { conn, packet_id } => self.pubrel(conn, packet_id),
            Event::PubComp { conn, packet_id } => self.pubcomp(conn, packet_id),
            Event::Subscribe { conn, subscribe, allowed } => self.subscribe(conn, *subscribe, allowed),
            Event::Unsubscribe { conn, unsubscribe } => self.unsubscribe(conn, *unsubscribe),
            Event::Disconnected { conn, will, session_expiry } => self.disconnected(conn, will, session_expiry),
            Event::Kick { namespace, owner } => self.kick(&namespace, owner.as_deref()),
            Event::DropNamespace { namespace, done } => {
                self.drop_namespace(&namespace);
                if namespace != Namespace::anonymous() {
                    self.drop_tenants.push(Arc::from(namespace.as_str()));
                }
                self.done.push(done);
            }
            Event::CloseAll => self.close_all(),
        }
    }

    /// Write dirty session records and hand the batch to the committer, which releases the
    /// held packets once the batch is durable (at once when there is nothing to store).
    async fn finish_batch(&mut self) {
        for waker in self.wake.drain(..) {
            waker.wake();
        }
        for id in std::mem::take(&mut self.dirty) {
            if let Some(session) = self.sessions.get_mut(&id)
                && session.persistent()
            {
                let record = serde_json::to_vec(&SessionRecord::of(session)).unwrap_or_default();
                self.ops.push(SessionOp::PutSession { session: session.store_key(), record: record.into() });
                session.stored = true;
            }
        }
        if self.committer.health().is_dead() {
            self.storage_died();
            return;
        }
        if self.ops.is_empty()
            && self.held.is_empty()
            && self.done.is_empty()
            && self.data.is_empty()
            && self.drop_tenants.is_empty()
            && self.replies.is_empty()
        {
            return;
        }
        let batch = commit::Batch {
            ops: std::mem::take(&mut self.ops),
            data: std::mem::take(&mut self.data),
            drop_tenants: std::mem::take(&mut self.drop_tenants),
            held: std::mem::take(&mut self.held),
            done: std::mem::take(&mut self.done),
            replies: std::mem::take(&mut self.replies),
        };
        self.committer.submit(batch).await;
    }

    /// The committer thread is gone, so nothing can be made durable or acknowledged: close
    /// every connection (DISCONNECT 0x80) and refuse new ones (see `connect`) until a restart.
    /// Sessions stay in memory as they are; what was acknowledged is on disk.
    fn storage_died(&mut self) {
        self.ops.clear();
        self.held.clear();
        self.done.clear();
        self.data.clear();
        self.drop_tenants.clear();
        self.replies.clear();
        if self.storage_dead {
            return;
        }
        self.storage_dead = true;
        let attached: Vec<(SessionId, ConnId, Arc<Outbox>)> = self
            .sessions
            .iter()
            .filter_map(|(id, s)| s.attached.as_ref().map(|a| (*id, a.conn, Arc::clone(&a.outbox))))
            .collect();
        tracing::error!(connections = attached.len(), "storage is gone: closing every connection");
        for (id, conn, outbox) in attached {
            outbox.push(Outgoing::Close(reason::UNSPECIFIED_ERROR));
            self.detach(conn, id, crate::message::WillAction::Discard);
        }
        self.ops.clear();
        self.held.clear();
    }

    /// Hold `item` for `outbox` until the batch is durable. A QoS 0/1 delivery is not an
    /// acknowledgement and goes out at once unless something for that connection is held
    /// (order per connection is kept): if the batch is then lost, its publisher was not
    /// acknowledged and resends, which QoS 1 allows. QoS 2 deliveries wait, so a resend can
    /// never deliver a message twice.
    fn send(&mut self, outbox: &Arc<Outbox>, item: Outgoing) {
        let dropped = send_to(&mut self.held, &mut self.wake, outbox, item);
        if dropped > 0 {
            self.stats.qos0_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    fn space(&mut self, ns: &Namespace) -> &mut Space {
        self.spaces.entry(ns.clone()).or_default()
    }

    /// Forget `ns`'s space once it holds no subscription and no retained message.
    fn prune_space(&mut self, ns: &Namespace) {
        if self.spaces.get(ns).is_some_and(Space::is_idle) {
            self.spaces.remove(ns);
        }
    }

    fn session_of(&self, conn: ConnId) -> Option<SessionId> {
        self.conns.get(&conn).copied()
    }

    /// Set `timer` to fire at `at_ms`, moving it if it is already pending.
    fn schedule(&mut self, at_ms: u64, timer: Timer) {
        if let Some(old) = self.timer_due.insert(timer, at_ms) {
            self.timers.remove(&(old, timer));
        }
        self.timers.insert((at_ms, timer));
    }

    fn cancel(&mut self, timer: Timer) {
        if let Some(old) = self.timer_due.remove(&timer) {
            self.timers.remove(&(old, timer));
        }
    }

    fn next_timer(&self) -> Option<u64> {
        self.timers.first().map(|(at, _)| *at)
    }

    fn fire_timers(&mut self) {
        self.now = now_ms();
        let now = self.now;
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.timer_due.remove(&timer);
            // Session timers are cancelled when their session is attached again or ends.
            match timer {
                Timer::SessionExpiry(id) => {
                    if self.sessions.get(&id).is_some_and(|s| s.attached.is_none()) {
                        self.end_session(id);
                    }
                }
                Timer::Will(id) => self.publish_will(id),
                Timer::Sys => self.publish_sys(),
                Timer::KeepAlive => {
                    self.sweep_keep_alive();
                    self.schedule(now + KEEP_ALIVE_SWEEP_MS, Timer::KeepAlive);
                }
            }
        }
    }

    fn restore_session(&mut self, mut record: SessionRecord, now: u64) -> SessionId {
        let id = self.next_session;
        self.next_session += 1;
        let ns = Namespace::from_stored(&record.namespace);
        let client_id: Arc<str> = Arc::from(record.client_id.as_str());
        let mut session = Session::new(ns.clone(), Arc::clone(&client_id), Arc::from(record.owner.as_str()));
        session.protocol =
            if record.protocol == 4 { switchyard_codec::Protocol::V311 } else { switchyard_codec::Protocol::V5 };
        session.expiry = record.expiry;
        session.stored = true;
        let since = record.offline_since_ms.unwrap_or(now);
        session.offline_since_ms = since;
        record.subscriptions.retain(|filter, _| {
            let within = switchyard_codec::topic::levels_within(filter, self.cfg.max_topic_levels);
            if !within {
                tracing::warn!(client_id = %Escaped(&client_id), "dropping a stored subscription beyond max_topic_levels");
            }
            within
        });
        // Subscriptions inside the record (an earlier version's layout) move to entries.
        for (filter, sub) in &record.subscriptions {
            self.insert_subscription(&ns, id, filter, sub.options(), sub.id);
            let record = serde_json::to_vec(sub).unwrap_or_default().into();
            self.ops.push(SessionOp::PutEntry {
                session: session.store_key(),
                name: subscription_entry(filter),
                record,
            });
        }
        if !record.subscriptions.is_empty() {
            self.dirty.insert(id);
        }
        session.subscriptions = record.subscriptions;
        if session.expiry != u32::MAX {
            self.schedule(since + u64::from(session.expiry) * 1000, Timer::SessionExpiry(id));
        }
        self.count_persistent(&ns, &session.owner, true);
        self.sessions.insert(id, Box::new(session));
        self.by_key.insert(&self.sessions, id);
        id
    }

    /// Rebuild one stored entry of session `id`: a subscription or a received QoS 2 packet id.
    fn restore_entry(&mut self, id: SessionId, name: &str, record: &[u8]) {
        let Some(session) = self.sessions.get_mut(&id) else { return };
        if let Some(packet_id) = received_packet_id(name) {
            session.rare().incoming_qos2.insert(packet_id);
            return;
        }
        let sub = subscription_filter(name).zip(serde_json::from_slice::<SubRecord>(record).ok());
        let Some((filter, sub)) = sub else {
            tracing::warn!(entry = %name.escape_debug(), "skipping unreadable session entry");
            return;
        };
        if !switchyard_codec::topic::levels_within(filter, self.cfg.max_topic_levels) {
            tracing::warn!(client_id = %Escaped(&session.client_id), "dropping a stored subscription beyond max_topic_levels");
            let op = SessionOp::DeleteEntry { session: session.store_key(), name: name.to_owned() };
            self.ops.push(op);
            return;
        }
        session.subscriptions.insert(filter.to_owned(), sub);
        let ns = session.namespace.clone();
        self.insert_subscription(&ns, id, filter, sub.options(), sub.id);
    }

    /// Store session `id`'s subscription to `filter` as it now is (deleted if gone): the one
    /// entry a SUBSCRIBE or UNSUBSCRIBE changes, not the whole session.
    pub(super) fn store_subscription(&mut self, id: SessionId, filter: &str) {
        let Some(session) = self.sessions.get(&id) else { return };
        if !session.persistent() {
            return;
        }
        let (key, name) = (session.store_key(), subscription_entry(filter));
        self.ops.push(match session.subscriptions.get(filter) {
            Some(sub) => {
                let record = serde_json::to_vec(sub).unwrap_or_default().into();
                SessionOp::PutEntry { session: key, name, record }
            }
            None => SessionOp::DeleteEntry { session: key, name },
        });
    }

    fn restore_held(&mut self, id: SessionId, held: crate::session::Held) {
        let Some(session) = self.sessions.get_mut(&id) else { return };
        if let Some(seq) = held.seq {
            session.next_seq = session.next_seq.max(seq);
        }
        if held.flow == crate::session::Flow::Queued {
            session.queued_bytes += held.cost as usize;
            session.queue.push_back(held);
        } else {
            session.inflight.push_back(held);
        }
    }

    /// Flag the connections of the next slice of sessions whose client has been silent beyond
    /// its keep-alive; each closes itself when it sees the flag. So no connection keeps a timer
    /// of its own. Sessions added or removed meanwhile may shift the slices: a session missed
    /// by one pass is checked by the next.
    fn sweep_keep_alive(&mut self) {
        if self.sweep_from >= self.sessions.len() {
            self.sweep_from = 0;
        }
        let now = crate::outbox::ticks();
        let slice = self.sessions.values().skip(self.sweep_from).take(KEEP_ALIVE_SWEEP_SESSIONS);
        let mut swept = 0;
        for session in slice {
            swept += 1;
            if let Some(attached) = &session.attached {
                attached.outbox.check_keep_alive(now);
            }
        }
        self.sweep_from += swept;
    }

    /// Server shutdown: wills that are due now are published, every client is told, and
    /// every persistent session is written with the time it went offline.
    fn shutdown(&mut self) {
        self.now = now_ms();
        let now = self.now;
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            let Some(session) = self.sessions.get_mut(&id) else { continue };
            let Some(attached) = session.attached.take() else { continue };
            attached.outbox.push(Outgoing::Close(reason::SERVER_SHUTTING_DOWN));
            session.offline_since_ms = now;
            let immediate = session.will.as_ref().is_some_and(|w| w.properties.will_delay_interval.unwrap_or(0) == 0);
            if immediate {
                self.publish_will(id);
            }
            self.dirty.insert(id);
        }
    }

    /// Key used to store a retained message.
    fn retained_key(ns: &Namespace, topic: &str) -> String {
        store_key(ns, topic)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchyard_storage::NullStore;

    use super::*;
    use crate::auth::AnonymousAuth;
    use crate::intake::NoData;
    use crate::session::Attached;

    #[test]
    fn keep_alive_sweeps_cover_every_session_in_slices() {
        let auth = Arc::new(AnonymousAuth { allow_anonymous: true, deny: vec![] });
        let mut router =
            Router::new(Arc::new(BrokerConfig::default()), auth, Arc::new(NullStore), Arc::new(NoData), Arc::default())
                .unwrap();
        let count = KEEP_ALIVE_SWEEP_SESSIONS * 2 + 500;
        let mut outboxes = Vec::new();
        for n in 0..count as u64 {
            let outbox = Arc::new(Outbox::new(1024));
            outbox.set_keep_alive(Duration::from_millis(10));
            let mut session = Session::new(Namespace::anonymous(), Arc::from(n.to_string()), Arc::from(""));
            session.attached = Some(Attached { conn: n, outbox: Arc::clone(&outbox), window: 1, max_packet_size: 1 });
            router.sessions.insert(n, Box::new(session));
            outboxes.push(outbox);
        }
        std::thread::sleep(Duration::from_millis(40));
        let flagged = |outboxes: &[Arc<Outbox>]| outboxes.iter().filter(|o| o.take_silent()).count();
        router.sweep_keep_alive();
        assert_eq!(flagged(&outboxes), KEEP_ALIVE_SWEEP_SESSIONS, "one slice per sweep");
        router.sweep_keep_alive();
        router.sweep_keep_alive();
        assert_eq!(flagged(&outboxes), count - KEEP_ALIVE_SWEEP_SESSIONS, "the rest in the next two");
        router.sweep_keep_alive();
        assert_eq!(flagged(&outboxes), KEEP_ALIVE_SWEEP_SESSIONS, "and round again");
    }
}
