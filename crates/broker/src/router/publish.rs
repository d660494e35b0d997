//! Accepting a PUBLISH, routing it to matching sessions (once per session at the highest
//! granted QoS, one member per shared group), the outbound window, and the QoS 1/2 flows.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchyard_codec::{Packet, Protocol, Publish, QoS, reason};
use switchyard_storage::{Ingest, SessionOp};

use super::{Router, send_to};
use crate::auth::Namespace;
use crate::config::QueueFullPolicy;
use crate::escaped::Escaped;
use crate::message::{ConnId, Delivery, Message, WillAction};
use crate::outbox::{AckKind, Outgoing};
use crate::persist;
use crate::session::{Flow, Held, received_entry};
use crate::subtree::SessionId;

/// How a message fared with its subscribers.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Routed {
    pub matched: usize,
    pub refused: usize,
    /// Set when every connected QoS 1/2 subscriber it went to is behind: one of them.
    pub all_behind: Option<SessionId>,
    /// It asked to be retained under a new topic beyond `max_retained_messages`, or beyond
    /// `max_retained_bytes`.
    pub retain_refused: bool,
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivered {
    /// Handed to the connection's outbox (counted by the caller, once per batch of deliveries).
    Sent,
    /// Dropped by rule (QoS 0 offline, expired, too large): nothing to wait for.
    Done,
    /// Queued for a connected session; `behind` when its queue is over the back-pressure mark.
    Queued { behind: bool },
    /// Queued for an offline session.
    Stored,
    /// The session's queue was full.
    Refused,
}

impl Router {
    /// A PUBLISH from a connection, with the pipeline `data` it carries: stored in this batch's
    /// commit, so the acknowledgement (held until then) means the data is on disk.
    pub(super) fn publish(&mut self, conn: ConnId, publish: Publish, data: Vec<Ingest>) {
        let Some(id) = self.session_of(conn) else { return };
        let session = &self.sessions[&id];
        let ns = session.namespace.clone();
        let protocol = session.protocol;
        let Some(outbox) = session.attached.as_ref().map(|a| Arc::clone(&a.outbox)) else { return };
        let (qos, packet_id) = (publish.qos, publish.packet_id);
        if qos == QoS::ExactlyOnce && session.rare.as_ref().is_some_and(|r| r.incoming_qos2.contains(&packet_id)) {
            // A resend of a message already accepted: acknowledge again, route (and store) nothing.
            self.send(&outbox, Outgoing::Ack(AckKind::PubRec, packet_id, reason::SUCCESS));
            return;
        }
        self.stats.messages_received.fetch_add(1, Ordering::Relaxed);
        if let Some(space) = self.spaces.get_mut(&ns) {
            space.received += 1;
        }
        let stores = !data.is_empty();
        self.data.extend(data);
        let message = Arc::new(Message::from_publish(publish, self.now));
        let routed = self.accept(&ns, message, Some(id));
        if qos == QoS::AtMostOnce {
            return;
        }
        let code = match protocol {
            Protocol::V311 => reason::SUCCESS,
            // Stored: accepted, whoever listens.
            Protocol::V5 if stores => reason::SUCCESS,
            // Retention was all it could have had, and it was refused.
            Protocol::V5 if routed.matched == 0 && routed.retain_refused => reason::QUOTA_EXCEEDED,
            Protocol::V5 if routed.matched == 0 => reason::NO_MATCHING_SUBSCRIBERS,
            Protocol::V5 if routed.refused == routed.matched => reason::QUOTA_EXCEEDED,
            Protocol::V5 => reason::SUCCESS,
        };
        let ack = if qos == QoS::AtLeastOnce {
            Outgoing::Ack(AckKind::PubAck, packet_id, code)
        } else {
            if code < 0x80
                && let Some(session) = self.sessions.get_mut(&id)
            {
                session.rare().incoming_qos2.insert(packet_id);
                // In the message's commit: a resend after a restart is recognised, not routed.
                if session.persistent() {
                    let (session, name) = (session.store_key(), received_entry(packet_id));
                    self.ops.push(SessionOp::PutEntry { session, name, record: Default::default() });
                }
            }
            Outgoing::Ack(AckKind::PubRec, packet_id, code)
        };
        match routed.all_behind.and_then(|behind| self.sessions.get_mut(&behind)) {
            Some(slow) => slow.rare().waiting_acks.push((outbox, ack)),
            None => self.send(&outbox, ack),
        }
    }

    /// Store a retained message (or clear it) and route `message` to its subscribers.
    pub(super) fn accept(&mut self, ns: &Namespace, message: Arc<Message>, origin: Option<SessionId>) -> Routed {
        let retain_refused = message.retain && !self.retain(ns, &message);
        Routed { retain_refused, ..self.route(ns, &message, origin) }
    }

    /// Apply a retained message: clear the topic (empty payload) or retain it, within the
    /// namespace's limit. False when refused by the limit.
    fn retain(&mut self, ns: &Namespace, message: &Arc<Message>) -> bool {
        let key = Self::retained_key(ns, &message.topic);
        if message.payload.is_empty() {
            if let Some(space) = self.spaces.get_mut(ns)
                && space.retained.remove(&message.topic).is_some()
            {
                self.ops.push(SessionOp::DeleteRetained { topic: key });
                self.prune_space(ns);
            }
            return true;
        }
        let (limit, byte_limit) = (self.cfg.max_retained_messages, self.cfg.max_retained_bytes);
        let space = self.space(ns);
        let replaced = space.retained.cost_of(&message.topic);
        let full = replaced.is_none() && space.retained.len() >= limit;
        let (cost, before) = (message.cost(), replaced.unwrap_or(0));
        let too_big = cost > before && space.retained.bytes() - before + cost > byte_limit;
        if full || too_big {
            self.stats.retained_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                namespace = ns.as_str(),
                limit,
                byte_limit,
                "max_retained_messages or max_retained_bytes reached; message not retained"
            );
            self.prune_space(ns);
            return false;
        }
        space.retained.insert(&message.topic, Arc::clone(message));
        self.ops.push(SessionOp::PutRetained { topic: key, record: persist::encode_retained(message) });
        true
    }

    pub(super) fn route(&mut self, ns: &Namespace, message: &Arc<Message>, origin: Option<SessionId>) -> Routed {
        if self.auth.filters_receive(ns) && !self.auth.may_receive(ns, &message.topic) {
            return Routed::default();
        }
        let Some(space) = self.spaces.get_mut(ns) else { return Routed::default() };
        let mut entries = Vec::new();
        space.subs.matches(&message.topic, &mut entries);
        if entries.is_empty() {
            return Routed::default();
        }
        entries.sort_by(|a, b| (&a.share, a.session).cmp(&(&b.share, b.session)));
        let mut targets: Vec<Delivery> = Vec::new();
        let mut target_sessions: Vec<SessionId> = Vec::new();
        let mut i = 0;
        while i < entries.len() {
            let entry = entries[i];
            if let Some(share) = &entry.share {
                // One member of the group: round robin, preferring members online now.
                let group: Vec<_> = entries[i..].iter().take_while(|e| e.share.as_ref() == Some(share)).collect();
                i += group.len();
                let cursor = space.cursors.entry(Arc::clone(share)).or_insert(0);
                let online: Vec<_> = group
                    .iter()
                    .filter(|e| self.sessions.get(&e.session).is_some_and(|s| s.attached.is_some()))
                    .collect();
                let pick =
                    if online.is_empty() { group[*cursor % group.len()] } else { online[*cursor % online.len()] };
                *cursor = cursor.wrapping_add(1);
                targets.push(Delivery {
                    message: Arc::clone(message),
                    qos: message.qos.min(pick.options.qos),
                    retain: pick.options.retain_as_published && message.retain,
                    dup: false,
                    packet_id: 0,
                    subscription_ids: pick.subscription_id.into_iter().collect(),
                });
                target_sessions.push(pick.session);
                continue;
            }
            // Every plain subscription of one session: one delivery at the highest QoS,
            // carrying every matching subscription identifier.
            let session = entry.session;
            let mut delivery: Option<Delivery> = None;
            while i < entries.len() && entries[i].share.is_none() && entries[i].session == session {
                let e = entries[i];
                i += 1;
                if e.options.no_local && origin == Some(session) {
                    continue;
                }
                let d = delivery.get_or_insert_with(|| Delivery {
                    message: Arc::clone(message),
                    qos: QoS::AtMostOnce,
                    retain: false,
                    dup: false,
                    packet_id: 0,
                    subscription_ids: Vec::new(),
                });
                d.qos = d.qos.max(message.qos.min(e.options.qos));
                d.retain |= e.options.retain_as_published && message.retain;
                d.subscription_ids.extend(e.subscription_id);
            }
            if let Some(d) = delivery {
                targets.push(d);
                target_sessions.push(session);
            }
        }
        let mut routed = Routed { matched: targets.len(), ..Routed::default() };
        let mut keeping_up = false;
        let mut sent = 0;
        for (session, delivery) in target_sessions.into_iter().zip(targets) {
            match self.deliver(session, delivery) {
                Delivered::Refused => routed.refused += 1,
                Delivered::Queued { behind: true } => {
                    routed.all_behind.get_or_insert(session);
                }
                Delivered::Sent => {
                    sent += 1;
                    keeping_up = true;
                }
                Delivered::Queued { behind: false } | Delivered::Done => keeping_up = true,
                Delivered::Stored => {}
            }
        }
        self.count_sent(ns, sent);
        if keeping_up {
            routed.all_behind = None;
        }
        routed
    }

    /// Hand one delivery to a session.
    pub(super) fn deliver(&mut self, id: SessionId, delivery: Delivery) -> Delivered {
        let now = self.now;
        let Some(session) = self.sessions.get_mut(&id) else { return Delivered::Done };
        if delivery.message.expired(now) {
            return Delivered::Done;
        }
        if let Some(attached) = &session.attached
            && attached.max_packet_size < u32::MAX
        {
            let publish = delivery.message.to_publish(&delivery, now);
            let size = switchyard_codec::encoded_len(&Packet::Publish(publish), session.protocol);
            if size > attached.max_packet_size as usize {
                // Larger than the client accepts: discarded as if delivered (MQTT 5.0 3.1.2.25).
                self.stats.oversized_dropped.fetch_add(1, Ordering::Relaxed);
                return Delivered::Done;
            }
        }
        if delivery.qos == QoS::AtMostOnce {
            // QoS 0 goes to live connections only; the outbox budget bounds it.
            let Some(attached) = &session.attached else { return Delivered::Done };
            let dropped = send_to(&mut self.held, &mut self.wake, &attached.outbox, Outgoing::Publish(delivery));
            self.count_dropped(dropped);
            return Delivered::Sent;
        }
        if session.queue.is_empty() && session.window_room() > 0 {
            let held = Held::new(delivery, Flow::Queued);
            return if self.send_held(id, held) { Delivered::Sent } else { Delivered::Done };
        }
        let mut held = Held::new(delivery, Flow::Queued);
        if session.queue.len() >= self.cfg.max_queued_messages
            || session.queued_bytes + held.cost as usize > self.cfg.max_queued_bytes
        {
            self.stats.queue_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client_id = %Escaped(&session.client_id), "session queue full; message refused for it");
            if self.cfg.queue_full == QueueFullPolicy::DisconnectSubscriber
                && let Some(attached) = session.attached.clone()
            {
                tracing::warn!(client_id = %Escaped(&session.client_id), "subscriber cannot keep up; disconnecting it");
                self.send(&attached.outbox, Outgoing::Close(reason::QUOTA_EXCEEDED));
                self.disconnected(attached.conn, WillAction::Publish, None);
            }
            return Delivered::Refused;
        }
        if session.persistent() {
            let seq = session.next_seq();
            held.seq = Some(seq);
            self.ops.push(SessionOp::AddMessage {
                session: session.store_key(),
                seq,
                record: persist::encode_held(&held),
            });
        }
        session.queued_bytes += held.cost as usize;
        session.queue.push_back(held);
        if session.attached.is_none() {
            return Delivered::Stored;
        }
        Delivered::Queued { behind: session.queue.len() >= self.backpressure_mark() }
    }

    /// Queue length from which a session counts as behind.
    fn backpressure_mark(&self) -> usize {
        self.cfg.backpressure_queue.min(self.cfg.max_queued_messages / 2).max(1)
    }

    /// Release the acknowledgements held for a session once it has caught up (or gone).
    pub(super) fn release_waiting(&mut self, id: SessionId, all: bool) {
        let mark = self.backpressure_mark();
        let Some(session) = self.sessions.get_mut(&id) else { return };
        if session.rare.as_ref().is_none_or(|r| r.waiting_acks.is_empty()) || (!all && session.queue.len() > mark / 2) {
            return;
        }
        for (outbox, ack) in std::mem::take(&mut session.rare().waiting_acks) {
            self.send(&outbox, ack);
        }
    }

    /// Put a message in flight: allocate its packet id, store it, send it. True when sent; the
    /// caller counts what it sent ([`Router::count_sent`]).
    fn send_held(&mut self, id: SessionId, mut held: Held) -> bool {
        let Some(session) = self.sessions.get_mut(&id) else { return false };
        if session.attached.is_none() {
            return false;
        }
        let now = self.now;
        if held.delivery.message.expired(now) {
            if let Some(seq) = held.seq {
                self.ops.push(SessionOp::DeleteMessage { session: session.store_key(), seq });
            }
            return false;
        }
        // A QoS 1 message is stored once, as queued (here unless it already was): after a
        // restart it is sent again with a new packet id, which a QoS 1 receiver cannot tell
        // from a resend (it treats every PUBLISH as new). A QoS 2 message is stored again in
        // flight, because its packet id is what makes the exchange exactly-once.
        if session.persistent() && held.seq.is_none() && held.delivery.qos == QoS::AtLeastOnce {
            let seq = session.next_seq();
            held.seq = Some(seq);
            let record = persist::encode_held(&held);
            self.ops.push(SessionOp::AddMessage { session: session.store_key(), seq, record });
        }
        held.delivery.packet_id = session.allocate_packet_id();
        held.flow = Flow::Sent;
        if session.persistent() && held.delivery.qos == QoS::ExactlyOnce {
            let (session_key, record) = (session.store_key(), persist::encode_held(&held));
            self.ops.push(match held.seq {
                Some(seq) => SessionOp::PutMessage { session: session_key, seq, record },
                None => {
                    let seq = session.next_seq();
                    held.seq = Some(seq);
                    SessionOp::AddMessage { session: session_key, seq, record }
                }
            });
        }
        let delivery = held.delivery.clone();
        session.inflight.push_back(held);
        // Not `self.send`: the session stays borrowed, so its outbox needs no clone per delivery.
        let Some(attached) = &session.attached else { return false };
        let dropped = send_to(&mut self.held, &mut self.wake, &attached.outbox, Outgoing::Publish(delivery));
        self.count_dropped(dropped);
        true
    }

    /// Count `sent` deliveries to namespace `ns`: once per routed message or refilled window,
    /// not per delivery (a namespace lookup each).
    pub(super) fn count_sent(&mut self, ns: &Namespace, sent: u64) {
        if sent == 0 {
            return;
        }
        self.stats.messages_sent.fetch_add(sent, Ordering::Relaxed);
        if let Some(space) = self.spaces.get_mut(ns) {
            space.sent += sent;
        }
    }

    fn count_dropped(&self, dropped: usize) {
        if dropped > 0 {
            self.stats.qos0_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    /// Move queued messages into the inflight window while there is room.
    pub(super) fn fill_window(&mut self, id: SessionId) {
        let mut sent = 0;
        loop {
            let Some(session) = self.sessions.get_mut(&id) else { return };
            if session.window_room() == 0 {
                break;
            }
            let Some(held) = session.queue.pop_front() else { break };
            session.queued_bytes -= held.cost as usize;
            sent += u64::from(self.send_held(id, held));
        }
        if sent > 0
            && let Some(ns) = self.sessions.get(&id).map(|s| s.namespace.clone())
        {
            self.count_sent(&ns, sent);
        }
        self.release_waiting(id, false);
    }

    /// Remove the inflight message `packet_id` if it is in `flow`; returns it.
    fn complete(&mut self, id: SessionId, packet_id: u16, flow: Flow, qos: QoS) -> Option<Held> {
        let session = self.sessions.get_mut(&id)?;
        let pos = session
            .inflight
            .iter()
            .position(|h| h.delivery.packet_id == packet_id && h.flow == flow && h.delivery.qos == qos)?;
        let held = session.inflight.remove(pos)?;
        if let Some(seq) = held.seq {
            self.ops.push(SessionOp::DeleteMessage { session: session.store_key(), seq });
        }
        Some(held)
    }

    pub(super) fn puback(&mut self, conn: ConnId, packet_ids: &[u16]) {
        let Some(id) = self.session_of(conn) else { return };
        let mut freed = false;
        for &packet_id in packet_ids {
            freed |= self.complete(id, packet_id, Flow::Sent, QoS::AtLeastOnce).is_some();
        }
        if freed {
            self.fill_window(id);
        }
    }

    pub(super) fn pubrec(&mut self, conn: ConnId, packet_id: u16) {
        let Some(id) = self.session_of(conn) else { return };
        let Some(session) = self.sessions.get_mut(&id) else { return };
        let Some(outbox) = session.attached.as_ref().map(|a| Arc::clone(&a.outbox)) else { return };
        let found = session
            .inflight
            .iter_mut()
            .find(|h| h.delivery.packet_id == packet_id && h.delivery.qos == QoS::ExactlyOnce);
        let code = match found {
            Some(held) => {
                held.flow = Flow::Released;
                if let Some(seq) = held.seq {
                    let record = persist::encode_held(held);
                    self.ops.push(SessionOp::PutMessage { session: session.store_key(), seq, record });
                }
                reason::SUCCESS
            }
            None => reason::PACKET_IDENTIFIER_NOT_FOUND,
        };
        let code = if session.protocol == Protocol::V5 { code } else { reason::SUCCESS };
        self.send(&outbox, Outgoing::Ack(AckKind::PubRel, packet_id, code));
    }

    pub(super) fn pubcomp(&mut self, conn: ConnId, packet_id: u16) {
        let Some(id) = self.session_of(conn) else { return };
        if self.complete(id, packet_id, Flow::Released, QoS::ExactlyOnce).is_some() {
            self.fill_window(id);
        }
    }

    pub(super) fn pubrel(&mut self, conn: ConnId, packet_id: u16) {
        let Some(id) = self.session_of(conn) else { return };
        let Some(session) = self.sessions.get_mut(&id) else { return };
        let Some(outbox) = session.attached.as_ref().map(|a| Arc::clone(&a.outbox)) else { return };
        let known = session.rare.as_mut().is_some_and(|r| r.incoming_qos2.remove(&packet_id));
        if known && session.persistent() {
            let (session, name) = (session.store_key(), received_entry(packet_id));
            self.ops.push(SessionOp::DeleteEntry { session, name });
        }
        let code = if known || session.protocol == Protocol::V311 {
            reason::SUCCESS
        } else {
            reason::PACKET_IDENTIFIER_NOT_FOUND
        };
        self.send(&outbox, Outgoing::Ack(AckKind::PubComp, packet_id, code));
    }
}
