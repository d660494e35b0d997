//! SUBSCRIBE and UNSUBSCRIBE: per-filter reason codes, the trie, and retained messages sent on
//! subscribe according to retain handling.

use std::sync::Arc;

use switchyard_codec::{Packet, Protocol, QoS, SubAck, SubOptions, Subscribe, UnsubAck, Unsubscribe, reason, topic};

use super::Router;
use crate::auth::Namespace;
use crate::message::{ConnId, Delivery};
use crate::outbox::Outgoing;
use crate::session::SubRecord;
use crate::subtree::{Entry, SessionId};

impl Router {
    pub(super) fn subscribe(&mut self, conn: ConnId, subscribe: Subscribe, allowed: Vec<bool>) {
        let Some(id) = self.session_of(conn) else { return };
        let session = &self.sessions[&id];
        let ns = session.namespace.clone();
        let protocol = session.protocol;
        let Some(outbox) = session.attached.as_ref().map(|a| Arc::clone(&a.outbox)) else { return };
        let sub_id = subscribe.properties.subscription_identifiers.first().copied();
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained_for: Vec<(String, SubOptions)> = Vec::new();
        for (i, f) in subscribe.filters.iter().enumerate() {
            let code = if !topic::valid_topic_filter(&f.filter) {
                reason::TOPIC_FILTER_INVALID
            } else if !allowed.get(i).copied().unwrap_or(false) {
                // Tenants get the precise 5.0 code; the plain-MQTT namespace answers 0x80, which
                // every client (including those that only know 3.1.1's codes) understands.
                if ns == Namespace::anonymous() { reason::UNSPECIFIED_ERROR } else { reason::NOT_AUTHORIZED }
            } else {
                let existed = self.insert_subscription(&ns, id, &f.filter, f.options, sub_id);
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.subscriptions.insert(f.filter.clone(), SubRecord::new(f.options, sub_id));
                }
                self.store_subscription(id, &f.filter);
                let shared = topic::parse_shared(&f.filter).is_some();
                let send_retained = match f.options.retain_handling {
                    0 => true,
                    1 => !existed,
                    _ => false,
                };
                if send_retained && !shared {
                    retained_for.push((f.filter.clone(), f.options));
                }
                f.options.qos as u8
            };
            reasons.push(match protocol {
                Protocol::V5 => code,
                Protocol::V311 if code >= 0x80 => reason::v311::SUBACK_FAILURE,
                Protocol::V311 => code,
            });
        }
        let suback = SubAck { packet_id: subscribe.packet_id, reasons, properties: Default::default() };
        self.send(&outbox, Outgoing::Control(Box::new(Packet::SubAck(suback))));
        for (filter, options) in retained_for {
            self.send_retained(&ns, id, &filter, options, sub_id);
        }
    }

    pub(super) fn unsubscribe(&mut self, conn: ConnId, unsubscribe: Unsubscribe) {
        let Some(id) = self.session_of(conn) else { return };
        let session = &self.sessions[&id];
        let ns = session.namespace.clone();
        let protocol = session.protocol;
        let Some(outbox) = session.attached.as_ref().map(|a| Arc::clone(&a.outbox)) else { return };
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let existed = self.remove_subscription(&ns, id, filter);
            if let Some(session) = self.sessions.get_mut(&id) {
                session.subscriptions.remove(filter);
            }
            if existed {
                self.store_subscription(id, filter);
            }
            reasons.push(if existed { reason::SUCCESS } else { reason::NO_SUBSCRIPTION_EXISTED });
        }
        if protocol == Protocol::V311 {
            reasons.clear();
        }
        let unsuback = UnsubAck { packet_id: unsubscribe.packet_id, reasons, properties: Default::default() };
        self.send(&outbox, Outgoing::Control(Box::new(Packet::UnsubAck(unsuback))));
    }

    /// Add a subscription to the trie; true when it replaced an existing one.
    pub(super) fn insert_subscription(
        &mut self,
        ns: &Namespace,
        id: SessionId,
        filter: &str,
        options: SubOptions,
        subscription_id: Option<u32>,
    ) -> bool {
        let (path, share) = match topic::parse_shared(filter) {
            Some((group, inner)) => (inner, Some(Arc::from(format!("{group}\u{0}{inner}")))),
            None => (filter, None),
        };
        let entry = Entry { session: id, options, subscription_id, share };
        self.space(ns).subs.insert(path, entry)
    }

    /// Remove a subscription from the trie; true when it existed.
    pub(super) fn remove_subscription(&mut self, ns: &Namespace, id: SessionId, filter: &str) -> bool {
        let Some(space) = self.spaces.get_mut(ns) else { return false };
        match topic::parse_shared(filter) {
            Some((group, inner)) => space.subs.remove(inner, id, Some(&format!("{group}\u{0}{inner}"))),
            None => space.subs.remove(filter, id, None),
        }
    }

    fn send_retained(&mut self, ns: &Namespace, id: SessionId, filter: &str, options: SubOptions, sub_id: Option<u32>) {
        let Some(space) = self.spaces.get(ns) else { return };
        let withheld = self.auth.filters_receive(ns);
        let matching: Vec<_> = space
            .retained
            .iter()
            .filter(|(t, _)| topic::matches(filter, t) && (!withheld || self.auth.may_receive(ns, t)))
            .map(|(_, m)| Arc::clone(m))
            .collect();
        for message in matching {
            let qos: QoS = message.qos.min(options.qos);
            let delivery = Delivery {
                message,
                qos,
                retain: true,
                dup: false,
                packet_id: 0,
                subscription_ids: sub_id.into_iter().collect(),
            };
            let _ = self.deliver(id, delivery);
        }
    }
}
