//! Messages as the core routes them, and the events and deliveries that cross its boundary.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use switchyard_codec::{Connect, Properties, Publish, QoS, Subscribe, Unsubscribe};
use switchyard_storage::Ingest;
use switchyard_storage::data::Written;
use tokio::sync::oneshot;

use crate::auth::{Namespace, Principal};
use crate::outbox::Outbox;

/// Identifies one network (or in-process) connection for its lifetime.
pub type ConnId = u64;

/// An application message once accepted: immutable and shared by every delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Absolute expiry (ms since the Unix epoch), from the 5.0 message expiry interval.
    pub expires_at_ms: Option<u64>,
    /// Properties forwarded to subscribers: payload format, content type, response topic,
    /// correlation data and user properties. Never aliases, expiry or subscription ids.
    pub properties: Properties,
}

impl Message {
    /// Build from an incoming PUBLISH (topic already resolved from any alias), at `now_ms`.
    pub fn from_publish(publish: Publish, now_ms: u64) -> Message {
        let props = publish.properties;
        let expires_at_ms = props.message_expiry_interval.map(|s| now_ms + u64::from(s) * 1000);
        let properties = Properties {
            payload_format_indicator: props.payload_format_indicator,
            content_type: props.content_type,
            response_topic: props.response_topic,
            correlation_data: props.correlation_data,
            user_properties: props.user_properties,
            ..Properties::default()
        };
        Message {
            topic: Arc::from(publish.topic),
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            expires_at_ms,
            properties,
        }
    }

    /// True when the message has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// Bytes this message costs in a queue: topic, payload and its properties as encoded, so
    /// user properties count against the byte budgets like the payload does.
    pub fn cost(&self) -> usize {
        self.topic.len() + self.payload.len() + properties_len(&self.properties)
    }

    /// The PUBLISH carrying this message to a subscriber, with the remaining expiry interval.
    pub fn to_publish(&self, delivery: &Delivery, now_ms: u64) -> Publish {
        let mut properties = self.properties.clone();
        if let Some(at) = self.expires_at_ms {
            let remaining = at.saturating_sub(now_ms).div_ceil(1000);
            properties.message_expiry_interval = Some(u32::try_from(remaining).unwrap_or(u32::MAX));
        }
        properties.subscription_identifiers.clone_from(&delivery.subscription_ids);
        Publish {
            dup: delivery.dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: self.topic.to_string(),
            packet_id: delivery.packet_id,
            payload: self.payload.clone(),
            properties,
        }
    }
}

/// Encoded size of the properties a [`Message`] keeps (identifier, length prefixes, content).
fn properties_len(p: &Properties) -> usize {
    let string = |s: &Option<String>| s.as_ref().map_or(0, |s| 3 + s.len());
    p.payload_format_indicator.map_or(0, |_| 2)
        + string(&p.content_type)
        + string(&p.response_topic)
        + p.correlation_data.as_ref().map_or(0, |d| 3 + d.len())
        + p.user_properties.iter().map(|(k, v)| 5 + k.len() + v.len()).sum::<usize>()
}

/// One message on its way to one session, at the QoS and with the flags that session gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    /// 0 for QoS 0.
    pub packet_id: u16,
    pub subscription_ids: Vec<u32>,
}

/// How a connection ended, as far as its will message is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WillAction {
    /// Normal DISCONNECT: the will is discarded.
    Discard,
    /// Network loss, protocol error, keep-alive timeout, or DISCONNECT 0x04: the will is sent.
    Publish,
}

/// A connection asking to attach to its session.
#[derive(Debug)]
pub struct ConnectRequest {
    pub conn: ConnId,
    pub principal: Principal,
    /// The CONNECT as received, with `client_id` already assigned when it was empty.
    pub connect: Box<Connect>,
    /// `connect.client_id`, shared with the connection and the session.
    pub client_id: Arc<str>,
    /// Where the core sends this connection's packets.
    pub outbox: Arc<Outbox>,
    /// CONNACK properties the connection negotiated (limits, assigned client id, keep-alive);
    /// the core adds the session part.
    pub connack_properties: Properties,
    /// The client's receive maximum (5.0; 65535 when absent).
    pub client_receive_maximum: u16,
    /// The client's maximum packet size (5.0; unlimited when absent).
    pub client_max_packet_size: u32,
}

/// The closed vocabulary into the core: every connection, of every protocol, speaks only this.
#[derive(Debug)]
pub enum Event {
    Connect(Box<ConnectRequest>),
    /// An authorized PUBLISH with its topic resolved (boxed: keeps every event small), and the
    /// pipeline data it carries ([`Intake::Store`](crate::Intake::Store)), stored in the commit
    /// that acknowledges it. Empty (no allocation) for everything else.
    Publish {
        conn: ConnId,
        publish: Box<Publish>,
        data: Vec<Ingest>,
    },
    /// A PUBLISH the pipeline refused ([`Intake::Refuse`](crate::Intake::Refuse)): acknowledged
    /// in order with `reason` under 5.0, as a success under 3.1.1 (which has no negative
    /// acknowledgement), routed nowhere. QoS 0 refusals never reach the core.
    Refused {
        conn: ConnId,
        qos: QoS,
        packet_id: u16,
        reason: u8,
        /// The problem, sent to a 5.0 client as the acknowledgement's reason string.
        detail: String,
    },
    /// Data from outside MQTT (HTTP, WebSocket): see [`Broker::ingest`](crate::Broker::ingest).
    Ingest(Box<IngestRequest>),
    /// PUBACKs that arrived together, in order (one event per read, not per packet).
    PubAck {
        conn: ConnId,
        packet_ids: Vec<u16>,
    },
    PubRec {
        conn: ConnId,
        packet_id: u16,
    },
    PubRel {
        conn: ConnId,
        packet_id: u16,
    },
    PubComp {
        conn: ConnId,
        packet_id: u16,
    },
    /// `allowed[i]` is the authorization decision for `subscribe.filters[i]`.
    Subscribe {
        conn: ConnId,
        subscribe: Box<Subscribe>,
        allowed: Vec<bool>,
    },
    Unsubscribe {
        conn: ConnId,
        unsubscribe: Box<Unsubscribe>,
    },
    /// The connection is gone. `session_expiry` is a 5.0 DISCONNECT's new expiry interval.
    Disconnected {
        conn: ConnId,
        will: WillAction,
        session_expiry: Option<u32>,
    },
    /// Close the live connections of `owner` in `namespace` (all of them when `None`).
    Kick {
        namespace: Namespace,
        owner: Option<Arc<str>>,
    },
    /// A namespace is gone (its tenant was deleted): close its connections and delete its
    /// sessions, subscriptions, queues and retained messages; `done` is told once that is durable.
    DropNamespace {
        namespace: Namespace,
        done: tokio::sync::oneshot::Sender<()>,
    },
    /// Server shutdown: close every connection, refuse new ones.
    CloseAll,
}

/// Normalized data from outside MQTT, delivered live and stored in one commit.
#[derive(Debug)]
pub struct IngestRequest {
    pub namespace: Namespace,
    /// Messages for the subscribers of `namespace`, each a topic and its payload, routed in
    /// order as QoS 1 messages from no session, not retained.
    pub live: Vec<(Arc<str>, Bytes)>,
    /// When the live messages expire (epoch ms, from the request's `ttl`): sent as the 5.0
    /// message expiry interval, and dropped from offline sessions' queues once past.
    pub expires_at_ms: Option<u64>,
    pub data: Vec<Ingest>,
    /// Told, once `data` is durable, what was stored (one answer per record, in order);
    /// dropped unanswered if it never will be.
    pub reply: oneshot::Sender<Vec<Written>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use switchyard_codec::{Packet, Protocol};

    use super::*;

    #[test]
    fn cost_counts_topic_payload_and_properties_as_encoded() {
        let bare = Publish { topic: "t/1".into(), payload: Bytes::from_static(b"12345"), ..Publish::default() };
        let bare = Message::from_publish(bare, 0);
        assert_eq!(bare.cost(), 3 + 5);
        let properties = Properties {
            payload_format_indicator: Some(1),
            content_type: Some("json".into()),
            response_topic: Some("r".into()),
            correlation_data: Some(Bytes::from_static(b"cd")),
            user_properties: vec![("k".repeat(1000), "v".repeat(64_000)); 4],
            ..Properties::default()
        };
        let publish = Publish {
            topic: "t/1".into(),
            payload: Bytes::from_static(b"12345"),
            properties: properties.clone(),
            ..Publish::default()
        };
        let heavy = Message::from_publish(publish, 0);
        let encoded = |properties| {
            let p = Publish {
                topic: "t/1".into(),
                payload: Bytes::from_static(b"12345"),
                properties,
                ..Publish::default()
            };
            switchyard_codec::encoded_len(&Packet::Publish(p), Protocol::V5)
        };
        // Exactly what the properties add on the wire (their length prefix aside).
        let on_the_wire = encoded(properties) - encoded(Properties::default());
        assert!(heavy.cost() > 260_000, "user properties are not free");
        assert!(on_the_wire.abs_diff(heavy.cost() - bare.cost()) <= 4, "{on_the_wire} vs {}", heavy.cost());
    }
}
