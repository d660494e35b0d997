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
            let valid =
                topic::valid_topic_filter(&f.filter) && topic::levels_within(&f.filter, self.cfg.max_topic_levels);
            let code = if !valid {
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
            if !topic::levels_within(filter, self.cfg.max_topic_levels) {
                reasons.push(reason::TOPIC_FILTER_INVALID);
                continue;
            }
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

    /// Remove a subscription from the trie, and the space or the group's cursor it leaves
    /// empty; true when it existed.
    pub(super) fn remove_subscription(&mut self, ns: &Namespace, id: SessionId, filter: &str) -> bool {
        let Some(space) = self.spaces.get_mut(ns) else { return false };
        let removal = match topic::parse_shared(filter) {
            Some((group, inner)) => {
                let share = format!("{group}\u{0}{inner}");
                let removal = space.subs.remove(inner, id, Some(&share));
                if removal.group_emptied {
                    space.cursors.remove(share.as_str());
                }
                removal
            }
            None => space.subs.remove(filter, id, None),
        };
        self.prune_space(ns);
        removal.existed
    }

    fn send_retained(&mut self, ns: &Namespace, id: SessionId, filter: &str, options: SubOptions, sub_id: Option<u32>) {
        let Some(space) = self.spaces.get(ns) else { return };
        let withheld = self.auth.filters_receive(ns);
        let mut found = Vec::new();
        space.retained.matching(filter, &mut found);
        found.extend(space.sys.iter().filter(|m| topic::matches(filter, &m.topic)));
        let matching: Vec<_> =
            found.into_iter().filter(|m| !withheld || self.auth.may_receive(ns, &m.topic)).map(Arc::clone).collect();
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
            if self.deliver(id, delivery) == super::publish::Delivered::Sent {
                self.count_sent(ns, 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use switchyard_storage::{NullStore, Snapshot, StoredSession};

    use super::*;
    use crate::Stats;
    use crate::auth::AnonymousAuth;
    use crate::config::BrokerConfig;
    use crate::message::Message;
    use crate::persist;
    use crate::session::{SessionRecord, store_key, subscription_entry};

    fn message(topic: &str, payload: &'static [u8]) -> Arc<Message> {
        Arc::new(Message {
            topic: Arc::from(topic),
            payload: Bytes::from_static(payload),
            qos: QoS::AtMostOnce,
            retain: true,
            expires_at_ms: None,
            properties: Default::default(),
        })
    }

    fn router(cfg: BrokerConfig) -> Router {
        let auth = Arc::new(AnonymousAuth { allow_anonymous: true, deny: vec![] });
        Router::new(
            Arc::new(cfg),
            auth,
            Arc::new(NullStore),
            Arc::new(crate::intake::NoData),
            Arc::new(Stats::default()),
        )
        .unwrap()
    }

    #[test]
    fn stored_filters_and_retained_topics_beyond_the_depth_limit_are_not_restored() {
        let mut router = router(BrokerConfig { max_topic_levels: 4, ..BrokerConfig::default() });
        let ns = Namespace::from_stored("t.example");
        let sub = SubRecord::new(SubOptions::default(), None);
        let subscriptions = [("a/b/c/d".to_owned(), sub), ("a/b/c/d/#".to_owned(), sub)].into();
        let record = SessionRecord {
            namespace: ns.as_str().to_owned(),
            client_id: "c".into(),
            owner: String::new(),
            protocol: 5,
            expiry: u32::MAX,
            subscriptions,
            offline_since_ms: None,
        };
        let stored = StoredSession {
            session: store_key(&ns, "c"),
            record: serde_json::to_vec(&record).unwrap().into(),
            messages: Vec::new(),
            entries: ["x/y", "x/y/z/w/v"]
                .map(|f| (subscription_entry(f), serde_json::to_vec(&sub).unwrap().into()))
                .to_vec(),
        };
        let retained =
            ["a/b/c/d", "a/b/c/d/e"].map(|t| (store_key(&ns, t), persist::encode_retained(&message(t, b"x")))).to_vec();
        router.restore(Snapshot { sessions: vec![stored], retained });

        let space = &router.spaces[&ns];
        let mut found = Vec::new();
        space.subs.matches("a/b/c/d", &mut found);
        assert_eq!(found.len(), 1, "only the shallow filter is in the tree");
        let session = router.sessions.values().next().unwrap();
        let mut kept: Vec<_> = session.subscriptions.keys().collect();
        kept.sort();
        assert_eq!(kept, ["a/b/c/d", "x/y"], "and in the session, from the record and from entries");
        assert_eq!(space.retained.len(), 1);
    }

    #[test]
    fn cursors_and_spaces_are_forgotten_once_emptied() {
        let mut router = router(BrokerConfig::default());
        let ns = Namespace::from_stored("t.example");
        let options = SubOptions::default();
        router.insert_subscription(&ns, 1, "$share/g/a", options, None);
        router.insert_subscription(&ns, 2, "$share/g/a", options, None);
        router.insert_subscription(&ns, 3, "b", options, None);
        router.route(&ns, &message("a", b"x"), None);
        assert_eq!(router.spaces[&ns].cursors.len(), 1);
        assert!(router.remove_subscription(&ns, 1, "$share/g/a"));
        assert_eq!(router.spaces[&ns].cursors.len(), 1, "a member is left");
        assert!(router.remove_subscription(&ns, 2, "$share/g/a"));
        assert!(router.spaces[&ns].cursors.is_empty(), "the group is gone, and its cursor");
        assert!(router.remove_subscription(&ns, 3, "b"));
        assert!(router.spaces.is_empty(), "no subscription and nothing retained: no space");

        router.accept(&ns, message("r", b"x"), None);
        assert!(router.spaces.contains_key(&ns), "a retained message keeps the space");
        router.accept(&ns, message("r", b""), None);
        assert!(router.spaces.is_empty());
    }
}
