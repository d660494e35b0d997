//! Attaching connections to sessions (create, resume, take over, refuse), detaching them, session
//! expiry and will messages.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchyard_codec::{ConnAck, Packet, Protocol, Publish, reason};
use switchyard_storage::SessionOp;

use super::{Router, Timer};
use crate::auth::Namespace;
use crate::escaped::Escaped;
use crate::message::{ConnId, ConnectRequest, Message, WillAction};
use crate::outbox::{AckKind, Outgoing};
use crate::session::{Attached, Flow, Session, store_key};
use crate::subtree::SessionId;

impl Router {
    pub(super) fn connect(&mut self, req: ConnectRequest) {
        let ConnectRequest { conn, principal, connect, client_id, outbox, mut connack_properties, .. } = req;
        let protocol = connect.protocol;
        let key = (principal.namespace.clone(), client_id);

        if self.closing || self.storage_dead {
            let code = match protocol {
                Protocol::V5 => reason::SERVER_UNAVAILABLE,
                Protocol::V311 => reason::v311::SERVER_UNAVAILABLE,
            };
            // Straight to the outbox: with storage dead nothing held is ever released.
            outbox.push(Outgoing::Control(Box::new(Packet::ConnAck(ConnAck { code, ..ConnAck::default() }))));
            outbox.push(Outgoing::Close(reason::SERVER_UNAVAILABLE));
            return;
        }

        // Revoked after authentication (its tenant deleted meanwhile): the drop has already
        // swept this namespace, so it is refused here rather than let in behind it.
        if !self.auth.still_valid(&principal) {
            tracing::info!(namespace = key.0.as_str(), "credentials revoked since authentication; refused");
            let code = match protocol {
                Protocol::V5 => reason::NOT_AUTHORIZED,
                Protocol::V311 => reason::v311::NOT_AUTHORIZED,
            };
            self.send(&outbox, Outgoing::Control(Box::new(Packet::ConnAck(ConnAck { code, ..ConnAck::default() }))));
            self.send(&outbox, Outgoing::Close(reason::NOT_AUTHORIZED));
            return;
        }

        // A session belongs to the identity that created it.
        if let Some(id) = self.by_key.get(&self.sessions, &key.0, &key.1)
            && self.sessions[&id].owner != principal.owner
        {
            tracing::warn!(client_id = %Escaped(&connect.client_id), "client id in use by another identity; refused");
            let code = match protocol {
                Protocol::V5 => reason::CLIENT_IDENTIFIER_NOT_VALID,
                Protocol::V311 => reason::v311::IDENTIFIER_REJECTED,
            };
            self.send(&outbox, Outgoing::Control(Box::new(Packet::ConnAck(ConnAck { code, ..ConnAck::default() }))));
            self.send(&outbox, Outgoing::Close(reason::CLIENT_IDENTIFIER_NOT_VALID));
            return;
        }

        let requested_expiry = match protocol {
            Protocol::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
            Protocol::V311 if connect.clean_start => 0,
            Protocol::V311 => u32::MAX,
        };
        let expiry = requested_expiry.min(self.cfg.max_session_expiry);
        let existing = self.by_key.get(&self.sessions, &key.0, &key.1);
        let already_persistent = existing.is_some_and(|id| self.sessions[&id].persistent());
        if expiry > 0 && !already_persistent && self.over_session_cap(&key.0, &principal.owner) {
            tracing::warn!(
                namespace = key.0.as_str(),
                owner = %principal.owner.escape_debug(),
                "persistent sessions per identity at their limit; CONNECT refused"
            );
            let code = match protocol {
                Protocol::V5 => reason::QUOTA_EXCEEDED,
                Protocol::V311 => reason::v311::SERVER_UNAVAILABLE,
            };
            self.send(&outbox, Outgoing::Control(Box::new(Packet::ConnAck(ConnAck { code, ..ConnAck::default() }))));
            self.send(&outbox, Outgoing::Close(reason::QUOTA_EXCEEDED));
            return;
        }

        if let Some(id) = existing {
            // Closing the old connection may end its session (expiry 0): look again after.
            self.take_over(id);
        }
        let mut session_present = false;
        let id = match self.by_key.get(&self.sessions, &key.0, &key.1) {
            Some(id) if !connect.clean_start => {
                session_present = true;
                id
            }
            Some(id) => {
                // The old session ends here: its pending will goes out now.
                self.end_session(id);
                self.new_session(&key, &principal.owner)
            }
            None => self.new_session(&key, &principal.owner),
        };

        if protocol == Protocol::V5 && expiry != requested_expiry {
            connack_properties.session_expiry_interval = Some(expiry);
        }
        let window = req.client_receive_maximum.min(self.cfg.max_inflight_messages).max(1);
        self.set_expiry(id, expiry);
        self.cancel(Timer::Will(id));
        self.cancel(Timer::SessionExpiry(id));
        let session = self.sessions.get_mut(&id).expect("session just found or made");
        let was_persistent = session.stored;
        session.protocol = protocol;
        session.will = connect.will.clone().map(Box::new);
        session.offline_since_ms = 0;
        session.attached =
            Some(Attached { conn, outbox: Arc::clone(&outbox), window, max_packet_size: req.client_max_packet_size });
        if session.persistent() {
            self.dirty.insert(id);
        } else if was_persistent {
            let key = session.store_key();
            session.stored = false;
            self.ops.push(SessionOp::DeleteSession { session: key });
        }
        self.conns.insert(conn, id);
        self.stats.connections.fetch_add(1, Ordering::Relaxed);

        let connack = ConnAck { session_present, code: reason::SUCCESS, properties: connack_properties };
        self.send(&outbox, Outgoing::Control(Box::new(Packet::ConnAck(connack))));
        self.resend_inflight(id);
        self.fill_window(id);
    }

    fn new_session(&mut self, key: &(Namespace, Arc<str>), owner: &Arc<str>) -> SessionId {
        let id = self.next_session;
        self.next_session += 1;
        let session = Session::new(key.0.clone(), Arc::clone(&key.1), Arc::clone(owner));
        self.sessions.insert(id, Box::new(session));
        self.by_key.insert(&self.sessions, id);
        self.stats.sessions.store(self.sessions.len() as u64, Ordering::Relaxed);
        id
    }

    /// Whether `owner` already has `max_sessions_per_identity` persistent sessions in `ns`.
    /// Anonymous clients share one owner key and are not counted.
    fn over_session_cap(&self, ns: &Namespace, owner: &Arc<str>) -> bool {
        let key = (ns.clone(), Arc::clone(owner));
        !owner.is_empty() && self.persistent_owned.get(&key).is_some_and(|n| *n >= self.cfg.max_sessions_per_identity)
    }

    /// Count a session of `owner` becoming persistent (`add`) or ceasing to be.
    pub(super) fn count_persistent(&mut self, ns: &Namespace, owner: &Arc<str>, add: bool) {
        if owner.is_empty() {
            return;
        }
        let key = (ns.clone(), Arc::clone(owner));
        if add {
            *self.persistent_owned.entry(key).or_default() += 1;
        } else if let Some(n) = self.persistent_owned.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.persistent_owned.remove(&key);
            }
        }
    }

    /// Set a session's expiry interval, keeping the per-owner count of persistent sessions.
    fn set_expiry(&mut self, id: SessionId, expiry: u32) {
        let Some(session) = self.sessions.get_mut(&id) else { return };
        let was = session.persistent();
        session.expiry = expiry;
        if was != session.persistent() {
            let (ns, owner) = (session.namespace.clone(), Arc::clone(&session.owner));
            self.count_persistent(&ns, &owner, !was);
        }
    }

    /// Drop namespace `ns` (a deleted tenant): close its connections with DISCONNECT 0x98, and
    /// forget its sessions (wills discarded), subscriptions, queues, retained messages and timers,
    /// in memory and, in this batch, on disk.
    pub(super) fn drop_namespace(&mut self, ns: &Namespace) {
        let ids: Vec<SessionId> = self.sessions.iter().filter(|(_, s)| &s.namespace == ns).map(|(id, _)| *id).collect();
        tracing::info!(namespace = ns.as_str(), sessions = ids.len(), "dropping a namespace");
        for id in ids {
            let Some(session) = self.sessions.get_mut(&id) else { continue };
            session.will = None;
            if let Some(rare) = session.rare.as_mut() {
                rare.waiting_acks.clear();
            }
            if let Some(attached) = session.attached.clone() {
                self.send(&attached.outbox, Outgoing::Close(reason::ADMINISTRATIVE_ACTION));
                self.conns.remove(&attached.conn);
                self.stats.connections.fetch_sub(1, Ordering::Relaxed);
            }
            let Some(session) = self.sessions.remove(&id) else { continue };
            if session.persistent() {
                self.count_persistent(ns, &session.owner, false);
            }
            self.cancel(Timer::Will(id));
            self.cancel(Timer::SessionExpiry(id));
            self.dirty.remove(&id);
            self.by_key.remove(ns, &session.client_id, id);
        }
        self.spaces.remove(ns);
        self.ops.push(SessionOp::DeletePrefix { prefix: store_key(ns, "") });
        self.stats.sessions.store(self.sessions.len() as u64, Ordering::Relaxed);
    }

    /// Close every live connection of `owner` in `ns` (everyone in `ns` when `None`): a blocked
    /// device, a deleted API key, a disabled tenant. Sessions stay; wills go out.
    pub(super) fn kick(&mut self, ns: &Namespace, owner: Option<&str>) {
        let targets: Vec<(SessionId, Attached)> = self
            .sessions
            .iter()
            .filter(|(_, s)| &s.namespace == ns && owner.is_none_or(|o| &*s.owner == o))
            .filter_map(|(id, s)| s.attached.clone().map(|a| (*id, a)))
            .collect();
        for (id, attached) in targets {
            tracing::info!(namespace = ns.as_str(), "closing a connection by administrative action");
            self.send(&attached.outbox, Outgoing::Close(reason::ADMINISTRATIVE_ACTION));
            self.detach(attached.conn, id, WillAction::Publish);
        }
    }

    /// The server is shutting down: close every connection with DISCONNECT 0x8B (wills follow the
    /// ordinary rules, sessions stay for the next start) and refuse new ones from now on.
    pub(super) fn close_all(&mut self) {
        self.closing = true;
        let targets: Vec<(SessionId, Attached)> =
            self.sessions.iter().filter_map(|(id, s)| s.attached.clone().map(|a| (*id, a))).collect();
        tracing::info!(connections = targets.len(), "closing every connection: server shutting down");
        for (id, attached) in targets {
            self.send(&attached.outbox, Outgoing::Close(reason::SERVER_SHUTTING_DOWN));
            self.detach(attached.conn, id, WillAction::Publish);
        }
    }

    /// Close the connection currently attached to `id`, if any ("session taken over"). Its will
    /// follows the ordinary rules: published now, or later after its delay.
    fn take_over(&mut self, id: SessionId) {
        let Some(attached) = self.sessions.get(&id).and_then(|s| s.attached.clone()) else { return };
        self.send(&attached.outbox, Outgoing::Close(reason::SESSION_TAKEN_OVER));
        self.detach(attached.conn, id, WillAction::Publish);
    }

    /// Resend what was in flight when the session was last attached: PUBLISH with DUP set, or
    /// PUBREL for messages already received.
    fn resend_inflight(&mut self, id: SessionId) {
        let Some(session) = self.sessions.get_mut(&id) else { return };
        let Some(outbox) = session.attached.as_ref().map(|a| Arc::clone(&a.outbox)) else { return };
        let mut items = Vec::with_capacity(session.inflight.len());
        for held in &mut session.inflight {
            match held.flow {
                Flow::Released => items.push(Outgoing::Ack(AckKind::PubRel, held.delivery.packet_id, reason::SUCCESS)),
                _ => {
                    held.delivery.dup = true;
                    items.push(Outgoing::Publish(held.delivery.clone()));
                }
            }
        }
        for item in items {
            self.send(&outbox, item);
        }
    }

    pub(super) fn disconnected(&mut self, conn: ConnId, will: WillAction, session_expiry: Option<u32>) {
        let Some(id) = self.conns.get(&conn).copied() else { return };
        if let Some(expiry) = session_expiry {
            self.set_expiry(id, expiry.min(self.cfg.max_session_expiry));
        }
        self.detach(conn, id, will);
    }

    /// Detach `conn` from session `id`: the session ends, or waits offline for its expiry.
    pub(super) fn detach(&mut self, conn: ConnId, id: SessionId, will: WillAction) {
        self.conns.remove(&conn);
        let now = self.now;
        let Some(session) = self.sessions.get_mut(&id) else { return };
        if session.attached.as_ref().is_none_or(|a| a.conn != conn) {
            return;
        }
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
        session.attached = None;
        session.offline_since_ms = now;
        let expiry = session.expiry;
        if will == WillAction::Discard {
            session.will = None;
        }
        // Messages that were only queued for the live connection keep their place.
        for held in &mut session.inflight {
            held.delivery.dup = held.flow != Flow::Queued;
        }
        let delay = session.will.as_ref().map(|w| w.properties.will_delay_interval.unwrap_or(0));
        match delay {
            Some(delay) if delay > 0 && expiry > 0 => {
                let after = u64::from(delay.min(expiry)) * 1000;
                self.schedule(now + after, Timer::Will(id));
            }
            Some(_) => self.publish_will(id),
            None => {}
        }
        self.release_waiting(id, true);
        if expiry == 0 {
            self.end_session(id);
        } else {
            if expiry != u32::MAX {
                self.schedule(now + u64::from(expiry) * 1000, Timer::SessionExpiry(id));
            }
            self.dirty.insert(id);
        }
    }

    /// The session ends: its pending will is published, its subscriptions and storage removed.
    pub(super) fn end_session(&mut self, id: SessionId) {
        if self.sessions.get(&id).is_some_and(|s| s.will.is_some()) {
            self.publish_will(id);
        }
        self.release_waiting(id, true);
        let Some(session) = self.sessions.remove(&id) else { return };
        if let Some(attached) = &session.attached {
            self.conns.remove(&attached.conn);
        }
        if session.persistent() {
            self.count_persistent(&session.namespace, &session.owner, false);
        }
        self.cancel(Timer::Will(id));
        self.cancel(Timer::SessionExpiry(id));
        let ns = session.namespace.clone();
        for filter in session.subscriptions.keys() {
            self.remove_subscription(&ns, id, filter);
        }
        if session.stored {
            self.ops.push(SessionOp::DeleteSession { session: session.store_key() });
        }
        self.dirty.remove(&id);
        self.by_key.remove(&ns, &session.client_id, id);
        self.stats.sessions.store(self.sessions.len() as u64, Ordering::Relaxed);
    }

    /// Publish and forget the will of session `id`.
    pub(super) fn publish_will(&mut self, id: SessionId) {
        let Some(session) = self.sessions.get_mut(&id) else { return };
        let Some(will) = session.will.take() else { return };
        let ns = session.namespace.clone();
        let publish = Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic,
            packet_id: 0,
            payload: will.payload,
            properties: will.properties,
        };
        let message = Message::from_publish(publish, self.now);
        self.accept(&ns, Arc::new(message), None);
    }
}
