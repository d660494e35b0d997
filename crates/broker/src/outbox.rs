//! The per-connection outbox: the core pushes without ever waiting, the connection drains.
//!
//! It is bounded by construction: QoS 1/2 publishes enter only within the session's inflight
//! window, QoS 0 publishes beyond the byte budget push out the oldest QoS 0 publish (counted),
//! and control packets are answers to the client's own requests: the connection counts them
//! ([`Outbox::answers`]) and stops reading from a client that lets more than `answer_backlog`
//! of them pile up unread, so its requests stop producing more.
//!
//! It is also how the core watches an idle connection without the connection keeping a timer:
//! the connection stamps [`Outbox::heard`] whenever its client sends anything, the router's
//! periodic sweep flags outboxes whose client fell silent, and the connection, woken by its
//! outbox, finds the flag. So an idle connection waits on two things only: its socket and this.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use switchyard_codec::{Packet, PubResp, QoS};

use crate::message::Delivery;

/// Which QoS flow packet an [`Outgoing::Ack`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

/// Something the core asks a connection to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// PUBACK, PUBREC, PUBREL or PUBCOMP (the hot path, kept small): kind, packet id, reason.
    Ack(AckKind, u16, u8),
    /// Any other control packet: CONNACK, SUBACK, UNSUBACK.
    Control(Box<Packet>),
    /// An application message.
    Publish(Delivery),
    /// Close the connection; under 5.0 send DISCONNECT with this reason code first.
    Close(u8),
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Outgoing>,
    qos0_bytes: usize,
    /// Control packets (acknowledgements, CONNACK, SUBACK, UNSUBACK) among `items`.
    answers: u32,
    /// The connection task waiting for this outbox, woken by the next push or flag.
    waker: Option<Waker>,
    /// Set by the keep-alive sweep; taken by [`Outbox::take_silent`].
    silent: bool,
}

/// A bounded, non-blocking queue from the core to one connection.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    qos0_budget: u32,
    /// Items the core holds back for this outbox until their batch is durable.
    held: AtomicU32,
    /// When the client was last heard from, in [`ticks`] (compared wrapping).
    heard: AtomicU32,
    /// How long the client may stay silent, in ticks (0: no limit).
    silence: AtomicU32,
}

/// Milliseconds per keep-alive tick.
const TICK_MS: u128 = 10;

/// A monotonic clock in 10 ms ticks that wraps after 497 days; differences taken wrapping are
/// right for any silence shorter than half of that. Every outbox holds one, so it is 4 bytes.
pub fn ticks() -> u32 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    (EPOCH.get_or_init(Instant::now).elapsed().as_millis() / TICK_MS) as u32
}

impl Outbox {
    /// An outbox whose QoS 0 publishes may hold at most `qos0_budget` bytes ([`Message::cost`](crate::Message::cost)).
    pub fn new(qos0_budget: usize) -> Outbox {
        Outbox {
            state: Mutex::new(State::default()),
            qos0_budget: u32::try_from(qos0_budget).unwrap_or(u32::MAX),
            held: AtomicU32::new(0),
            heard: AtomicU32::new(ticks()),
            silence: AtomicU32::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue an item. Returns how many QoS 0 publishes were dropped to make room.
    pub fn push(&self, item: Outgoing) -> usize {
        let (dropped, waker) = self.queue(item);
        if let Some(waker) = waker {
            waker.wake();
        }
        dropped
    }

    /// [`Outbox::push`] without waking the connection: the waker it would have woken, if the
    /// connection is waiting, is put in `wake` for the caller to wake once it has queued
    /// everything it has for this connection, so the connection wakes once and writes it all
    /// together. A connection already woken (its waker taken) puts nothing there.
    pub fn push_quiet(&self, item: Outgoing, wake: &mut Vec<Waker>) -> usize {
        let (dropped, waker) = self.queue(item);
        wake.extend(waker);
        dropped
    }

    /// Queue an item; returns the QoS 0 publishes dropped and the waiting connection's waker.
    fn queue(&self, item: Outgoing) -> (usize, Option<Waker>) {
        let mut dropped = 0;
        let waker = {
            let mut state = self.lock();
            if let Outgoing::Publish(d) = &item
                && d.qos == QoS::AtMostOnce
            {
                state.qos0_bytes += d.message.cost();
                while state.qos0_bytes > self.qos0_budget as usize {
                    let Some(pos) = state.items.iter().position(is_qos0) else { break };
                    if let Some(Outgoing::Publish(old)) = state.items.remove(pos) {
                        state.qos0_bytes -= old.message.cost();
                        dropped += 1;
                    }
                }
                if state.qos0_bytes > self.qos0_budget as usize {
                    // The new message alone is over budget: it is the one dropped.
                    state.qos0_bytes -= d.message.cost();
                    return (dropped + 1, None);
                }
            }
            if matches!(item, Outgoing::Ack(..) | Outgoing::Control(_)) {
                state.answers = state.answers.saturating_add(1);
            }
            if state.items.capacity() == 0 {
                // A first item gets room for one: an idle connection keeps only its CONNACK's.
                state.items.reserve_exact(1);
            }
            state.items.push_back(item);
            state.waker.take()
        };
        (dropped, waker)
    }

    /// Count an item held back until its batch is durable; it arrives by [`Outbox::push_held`].
    pub fn hold(&self) {
        self.held.fetch_add(1, Ordering::AcqRel);
    }

    /// Queue an item that was held, ending its hold. Returns what [`Outbox::push`] returns.
    pub fn push_held(&self, item: Outgoing) -> usize {
        let dropped = self.push(item);
        self.held.fetch_sub(1, Ordering::AcqRel);
        dropped
    }

    /// True while held items are on their way: anything queued now must go behind them.
    pub fn has_held(&self) -> bool {
        self.held.load(Ordering::Acquire) > 0
    }

    /// Move everything queued into `into`, oldest first.
    pub fn drain(&self, into: &mut Vec<Outgoing>) {
        let mut state = self.lock();
        into.reserve_exact(state.items.len());
        into.extend(state.items.drain(..));
        state.qos0_bytes = 0;
        state.answers = 0;
    }

    /// Free the queue's buffer if nothing is waiting.
    pub fn release_if_empty(&self) {
        let mut state = self.lock();
        if state.items.is_empty() {
            state.items = VecDeque::new();
        }
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Control packets waiting (acknowledgements, CONNACK, SUBACK, UNSUBACK).
    pub fn answers(&self) -> usize {
        self.lock().answers as usize
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ready when the keep-alive sweep flagged the client as silent or, with `items`, when
    /// something is queued; otherwise the task is woken by the next push or flag. A connection
    /// that cannot take items now (its socket is backed up) still polls, with `items` false,
    /// so a silent client is noticed whatever it has not read. Polling holds no state of its own.
    pub fn poll_ready(&self, cx: &mut Context<'_>, items: bool) -> Poll<()> {
        let mut state = self.lock();
        if (items && !state.items.is_empty()) || state.silent {
            return Poll::Ready(());
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Set how long the client may stay silent (0: no limit), counting from now.
    pub fn set_keep_alive(&self, silence: Duration) {
        self.heard();
        let ticks = (silence.as_millis() / TICK_MS).try_into().unwrap_or(u32::MAX);
        self.silence.store(ticks, Ordering::Relaxed);
    }

    /// The client sent something.
    pub fn heard(&self) {
        self.heard.store(ticks(), Ordering::Relaxed);
    }

    fn silent_too_long(&self, now: u32) -> bool {
        let limit = self.silence.load(Ordering::Relaxed);
        limit != 0 && now.wrapping_sub(self.heard.load(Ordering::Relaxed)) > limit
    }

    /// The keep-alive sweep: flag and wake the connection if its client has been silent too
    /// long at `now` ([`ticks`]). True when flagged.
    pub fn check_keep_alive(&self, now: u32) -> bool {
        if !self.silent_too_long(now) {
            return false;
        }
        let waker = {
            let mut state = self.lock();
            state.silent = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Take the sweep's flag: true when it was set and the client is still silent now (a
    /// packet that arrived after the sweep looked clears it).
    pub fn take_silent(&self) -> bool {
        let flagged = std::mem::take(&mut self.lock().silent);
        flagged && self.silent_too_long(ticks())
    }
}

impl Outgoing {
    /// The packet for an [`Outgoing::Ack`] or [`Outgoing::Control`].
    pub fn control_packet(&self) -> Option<Packet> {
        match self {
            Outgoing::Ack(kind, packet_id, reason) => {
                let resp = PubResp { packet_id: *packet_id, reason: *reason, ..PubResp::default() };
                Some(match kind {
                    AckKind::PubAck => Packet::PubAck(resp),
                    AckKind::PubRec => Packet::PubRec(resp),
                    AckKind::PubRel => Packet::PubRel(resp),
                    AckKind::PubComp => Packet::PubComp(resp),
                })
            }
            Outgoing::Control(packet) => Some((**packet).clone()),
            Outgoing::Publish(_) | Outgoing::Close(_) => None,
        }
    }
}

fn is_qos0(item: &Outgoing) -> bool {
    matches!(item, Outgoing::Publish(d) if d.qos == QoS::AtMostOnce)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;
    use switchyard_codec::Properties;

    use super::*;
    use crate::message::Message;

    fn delivery(qos: QoS, size: usize) -> Outgoing {
        let message = Message {
            topic: Arc::from("t"),
            payload: Bytes::from(vec![0; size]),
            qos,
            retain: false,
            expires_at_ms: None,
            properties: Properties::default(),
        };
        Outgoing::Publish(Delivery {
            message: Arc::new(message),
            qos,
            retain: false,
            dup: false,
            packet_id: u16::from(qos != QoS::AtMostOnce),
            subscription_ids: vec![],
        })
    }

    #[test]
    fn qos0_over_budget_drops_oldest_qos0_only() {
        let outbox = Outbox::new(250);
        assert_eq!(outbox.push(delivery(QoS::AtMostOnce, 99)), 0);
        assert_eq!(outbox.push(delivery(QoS::AtLeastOnce, 99)), 0);
        assert_eq!(outbox.push(delivery(QoS::AtMostOnce, 99)), 0);
        // Third QoS 0 message exceeds 250 bytes: the first QoS 0 goes, the QoS 1 stays.
        assert_eq!(outbox.push(delivery(QoS::AtMostOnce, 99)), 1);
        let mut items = Vec::new();
        outbox.drain(&mut items);
        let qos: Vec<QoS> = items
            .iter()
            .map(|i| match i {
                Outgoing::Publish(d) => d.qos,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(qos, [QoS::AtLeastOnce, QoS::AtMostOnce, QoS::AtMostOnce]);
    }

    /// A waker that counts its wake-ups.
    struct Count(AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(count))
    }

    #[test]
    fn a_push_wakes_the_waiting_connection_once() {
        let outbox = Outbox::new(1000);
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert!(outbox.poll_ready(&mut cx, true).is_pending());
        outbox.push(delivery(QoS::AtLeastOnce, 10));
        outbox.push(delivery(QoS::AtLeastOnce, 10));
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the second push finds no waiter");
        assert!(outbox.poll_ready(&mut cx, true).is_ready());
        let mut items = Vec::new();
        outbox.drain(&mut items);
        assert_eq!(items.len(), 2);
        assert!(outbox.poll_ready(&mut cx, true).is_pending());
    }

    #[test]
    fn a_quiet_push_leaves_the_single_wake_up_to_the_caller() {
        let outbox = Outbox::new(1000);
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert!(outbox.poll_ready(&mut cx, true).is_pending());
        let mut wake = Vec::new();
        outbox.push_quiet(delivery(QoS::AtLeastOnce, 10), &mut wake);
        outbox.push_quiet(delivery(QoS::AtLeastOnce, 10), &mut wake);
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "nothing woken while the caller queues");
        assert_eq!(wake.len(), 1, "one wake-up for both items");
        wake.drain(..).for_each(Waker::wake);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(outbox.poll_ready(&mut cx, true).is_ready());
    }

    #[test]
    fn a_silent_client_is_flagged_and_a_late_packet_clears_the_flag() {
        let outbox = Outbox::new(1000);
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let far = ticks() + 6_000;
        assert!(!outbox.check_keep_alive(far), "no keep-alive, never silent");
        outbox.set_keep_alive(std::time::Duration::from_millis(1_500));
        assert!(!outbox.check_keep_alive(ticks()), "just heard");
        assert!(outbox.poll_ready(&mut cx, true).is_pending());
        assert!(outbox.check_keep_alive(far));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(outbox.poll_ready(&mut cx, true).is_ready());
        // The client spoke after the sweep looked: the flag is stale.
        outbox.heard();
        assert!(!outbox.take_silent());
        assert!(outbox.poll_ready(&mut cx, true).is_pending(), "the flag was taken");
    }

    #[test]
    fn the_flag_stands_while_the_client_stays_silent() {
        let outbox = Outbox::new(1000);
        outbox.set_keep_alive(std::time::Duration::from_millis(10));
        std::thread::sleep(std::time::Duration::from_millis(40));
        assert!(outbox.check_keep_alive(ticks()));
        assert!(outbox.take_silent());
    }

    #[test]
    fn silence_is_measured_across_the_clock_wrapping() {
        let outbox = Outbox::new(1000);
        outbox.silence.store(100, Ordering::Relaxed);
        outbox.heard.store(u32::MAX - 10, Ordering::Relaxed);
        assert!(!outbox.silent_too_long(50), "61 ticks after, across the wrap");
        assert!(outbox.silent_too_long(200), "211 ticks after");
    }

    #[test]
    fn control_packets_are_counted_until_drained() {
        let outbox = Outbox::new(1000);
        outbox.push(Outgoing::Ack(AckKind::PubAck, 1, 0));
        outbox.push(delivery(QoS::AtLeastOnce, 10));
        outbox.push(Outgoing::Control(Box::new(Packet::PingResp)));
        outbox.push(Outgoing::Close(0));
        assert_eq!(outbox.answers(), 2, "publishes and closes are not answers");
        outbox.drain(&mut Vec::new());
        assert_eq!(outbox.answers(), 0);
    }

    #[test]
    fn an_outbox_stays_small() {
        // Every connection keeps one: with its reference counts it fits a 112-byte heap chunk.
        assert!(size_of::<Outbox>() <= 88, "{}", size_of::<Outbox>());
    }

    #[test]
    fn oversized_qos0_is_itself_dropped() {
        let outbox = Outbox::new(10);
        assert_eq!(outbox.push(delivery(QoS::AtMostOnce, 50)), 1);
        assert!(outbox.is_empty());
    }
}
