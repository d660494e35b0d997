//! A session: its subscriptions, its outbound QoS 1/2 state (inflight window and queue), its
//! inbound QoS 2 packet ids, and its will. Owned by the router alone.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchyard_codec::{Protocol, QoS, SubOptions, Will};

use crate::auth::Namespace;
use crate::message::{ConnId, Delivery};
use crate::outbox::Outbox;

/// A session's subscription as stored: the options and identifier it was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubRecord {
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    pub id: Option<u32>,
}

impl SubRecord {
    pub fn new(options: SubOptions, id: Option<u32>) -> SubRecord {
        SubRecord {
            qos: options.qos as u8,
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
            retain_handling: options.retain_handling,
            id,
        }
    }

    pub fn options(&self) -> SubOptions {
        SubOptions {
            qos: QoS::from_u8(self.qos).unwrap_or_default(),
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            retain_handling: self.retain_handling,
        }
    }
}

/// The connection a session is attached to, with the limits that client announced.
#[derive(Debug, Clone)]
pub struct Attached {
    pub conn: ConnId,
    pub outbox: Arc<Outbox>,
    /// Effective inflight window: the client's receive maximum capped by ours.
    pub window: u16,
    pub max_packet_size: u32,
}

/// Where an outbound QoS 1/2 message is in its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Waiting beyond the inflight window; no packet id yet.
    Queued,
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent,
    /// PUBREC received and PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// One outbound QoS 1/2 message held by a session.
#[derive(Debug, Clone)]
pub struct Held {
    pub delivery: Delivery,
    pub flow: Flow,
    /// What the message counts against the session's queue byte budget ([`Message::cost`](crate::Message::cost)),
    /// computed once: a message deep in a queue is not read again to count it out.
    pub cost: u32,
    /// Storage key, for a persistent session.
    pub seq: Option<u64>,
}

impl Held {
    /// `delivery` in `flow`, not stored yet.
    pub fn new(delivery: Delivery, flow: Flow) -> Held {
        let cost = u32::try_from(delivery.message.cost()).unwrap_or(u32::MAX);
        Held { delivery, flow, cost, seq: None }
    }
}

/// Session state owned by the router.
#[derive(Debug)]
pub struct Session {
    pub namespace: Namespace,
    pub client_id: Arc<str>,
    pub owner: Arc<str>,
    pub protocol: Protocol,
    /// Session expiry interval in seconds; `u32::MAX` never expires, 0 ends with the connection.
    pub expiry: u32,
    pub subscriptions: BTreeMap<String, SubRecord>,
    pub attached: Option<Attached>,
    /// Sent and not yet completed, in send order.
    pub inflight: VecDeque<Held>,
    /// Waiting beyond the window, in arrival order.
    pub queue: VecDeque<Held>,
    pub queued_bytes: usize,
    pub next_packet_id: u16,
    /// Boxed: most sessions have none, and a will is large.
    pub will: Option<Box<Will>>,
    pub next_seq: u64,
    /// When the session went offline (ms since the epoch; 0 while attached), for expiry across
    /// restarts.
    pub offline_since_ms: u64,
    /// True once the session record has been written to storage.
    pub stored: bool,
    /// What few sessions ever need, made on first use.
    pub rare: Option<Box<Rare>>,
}

/// The parts of a session that only QoS 2 publishers and slow subscribers use.
#[derive(Debug, Default)]
pub struct Rare {
    /// Inbound QoS 2 packet ids whose PUBREL has not arrived yet.
    pub incoming_qos2: HashSet<u16>,
    /// Publishers' acknowledgements held back while this session is behind (back-pressure).
    pub waiting_acks: Vec<(Arc<Outbox>, crate::outbox::Outgoing)>,
}

impl Session {
    pub fn new(namespace: Namespace, client_id: Arc<str>, owner: Arc<str>) -> Session {
        Session {
            namespace,
            client_id,
            owner,
            protocol: Protocol::V5,
            expiry: 0,
            subscriptions: BTreeMap::new(),
            attached: None,
            inflight: VecDeque::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            next_packet_id: 1,
            will: None,
            next_seq: 0,
            offline_since_ms: 0,
            stored: false,
            rare: None,
        }
    }

    /// Sessions outliving their connection are stored.
    pub fn persistent(&self) -> bool {
        self.expiry > 0
    }

    /// The storage key: namespace and client id.
    pub fn store_key(&self) -> String {
        store_key(&self.namespace, &self.client_id)
    }

    /// A packet id not used by any inflight message.
    pub fn allocate_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight.iter().any(|h| h.delivery.packet_id == id) {
                return id;
            }
        }
    }

    /// Room left in the inflight window (0 when offline).
    pub fn window_room(&self) -> usize {
        self.attached.as_ref().map_or(0, |a| usize::from(a.window).saturating_sub(self.inflight.len()))
    }

    /// The rare parts, made if need be.
    pub fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_default()
    }

    pub fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}

/// Storage key of a session (or of a retained topic): the namespace, length-prefixed so no
/// client id or topic can make two keys collide, then the name.
pub fn store_key(namespace: &Namespace, name: &str) -> String {
    use std::fmt::Write;
    // Built per stored operation, so in one allocation.
    let ns = namespace.as_str();
    let mut key = String::with_capacity(ns.len() + name.len() + 8);
    let _ = write!(key, "{}", ns.len());
    key.push(':');
    key.push_str(ns);
    key.push('/');
    key.push_str(name);
    key
}

/// The namespace and name of a key made by [`store_key`].
pub fn split_key(key: &str) -> Option<(Namespace, &str)> {
    let (len, rest) = key.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let ns = rest.get(..len)?;
    let name = rest.get(len..)?.strip_prefix('/')?;
    Some((Namespace::from_stored(ns), name))
}

/// Name of the stored entry recording that a QoS 2 PUBLISH with `packet_id` was received and
/// its PUBREL has not arrived: written with the message, deleted at PUBREL, so a resend after a
/// restart is recognised and not routed again.
pub fn received_entry(packet_id: u16) -> String {
    format!("r/{packet_id}")
}

/// The packet id of an entry named by [`received_entry`].
pub fn received_packet_id(name: &str) -> Option<u16> {
    name.strip_prefix("r/")?.parse().ok()
}

/// Name of the stored entry holding the subscription to `filter`: each subscription is its own
/// entry, so a SUBSCRIBE writes only what it changed.
pub fn subscription_entry(filter: &str) -> String {
    format!("s/{filter}")
}

/// The filter of an entry named by [`subscription_entry`].
pub fn subscription_filter(name: &str) -> Option<&str> {
    name.strip_prefix("s/")
}

/// The stored form of a session (messages and entries are stored apart, one record each).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub namespace: String,
    pub client_id: String,
    pub owner: String,
    pub protocol: u8,
    pub expiry: u32,
    /// Subscriptions as earlier versions stored them, inside the record; read, never written
    /// (they are entries now, moved there when such a record is loaded).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subscriptions: BTreeMap<String, SubRecord>,
    pub offline_since_ms: Option<u64>,
}

impl SessionRecord {
    pub fn of(session: &Session) -> SessionRecord {
        SessionRecord {
            namespace: session.namespace.as_str().to_owned(),
            client_id: session.client_id.to_string(),
            owner: session.owner.to_string(),
            protocol: match session.protocol {
                Protocol::V311 => 4,
                Protocol::V5 => 5,
            },
            expiry: session.expiry,
            subscriptions: BTreeMap::new(),
            offline_since_ms: (session.offline_since_ms != 0).then_some(session.offline_since_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_message_keeps_its_cost_within_one_cache_line() {
        let message = crate::Message {
            topic: Arc::from("a/b"),
            payload: bytes::Bytes::from_static(b"12345"),
            qos: QoS::AtLeastOnce,
            retain: false,
            expires_at_ms: None,
            properties: switchyard_codec::Properties::default(),
        };
        let delivery = Delivery {
            message: Arc::new(message),
            qos: QoS::AtLeastOnce,
            retain: false,
            dup: false,
            packet_id: 0,
            subscription_ids: Vec::new(),
        };
        let held = Held::new(delivery, Flow::Queued);
        assert_eq!(held.cost as usize, held.delivery.message.cost());
        // Sessions queue thousands of these: the cached cost fits in what was padding.
        assert!(size_of::<Held>() <= 64, "{}", size_of::<Held>());
    }

    #[test]
    fn store_keys_cannot_collide_and_split_back() {
        let cases = [("", "a/b"), ("x", "y"), ("a.com", "1:b/c"), ("a.com/1:b", "c"), ("é", "ü/")];
        let mut keys = std::collections::HashSet::new();
        for (ns, name) in cases {
            let key = store_key(&Namespace::from_stored(ns), name);
            assert!(keys.insert(key.clone()), "{key} collides");
            let (back_ns, back_name) = split_key(&key).unwrap();
            assert_eq!((back_ns.as_str(), back_name), (ns, name));
        }
        assert!(split_key("junk").is_none());
        assert!(split_key("9:short").is_none());
    }
}
