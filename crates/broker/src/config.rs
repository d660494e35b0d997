//! Broker limits and their overflow policies, already parsed and checked by the caller.

/// What happens when a subscriber's queue of QoS 1/2 messages is full.
///
/// QoS 0 messages are always dropped oldest-first when a queue is over its byte budget; QoS 1
/// and 2 messages are never dropped silently: the policy below is applied and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueFullPolicy {
    /// A connected subscriber that cannot keep up is disconnected (5.0: DISCONNECT 0x97 Quota
    /// exceeded) and keeps its session; for an offline session the new message is refused for
    /// that session. A 5.0 publisher whose message no subscriber could take gets PUBACK 0x97.
    #[default]
    DisconnectSubscriber,
    /// The new message is refused for that session (counted and logged); the subscriber stays.
    RefuseNew,
}

/// Limits of the broker core. Every bound is here, with its policy.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Largest packet accepted from a client, in bytes (also advertised in CONNACK, 5.0).
    pub max_packet_size: u32,
    /// QoS 1/2 publishes a client may have unacknowledged towards us (advertised, 5.0).
    pub receive_maximum: u16,
    /// 0: honour the client's keep-alive; N: cap it at N seconds (advertised, 5.0).
    pub server_keep_alive: u16,
    /// Per session: QoS 1/2 messages sent and not yet acknowledged.
    pub max_inflight_messages: u16,
    /// Per session: messages waiting beyond the inflight window.
    pub max_queued_messages: usize,
    /// Per session: bytes waiting beyond the inflight window (topic, payload and properties).
    pub max_queued_bytes: usize,
    /// Policy when a session's queue is full of QoS 1/2 messages.
    pub queue_full: QueueFullPolicy,
    /// Back-pressure: when every connected subscriber a QoS 1/2 message goes to has at least
    /// this many messages queued, the publisher's acknowledgement waits until one of them drains
    /// to half of it, so publishers slow to their consumers' pace instead of overflowing them.
    /// A message with at least one subscriber keeping up is acknowledged at once, so a stalled
    /// subscriber never slows the others.
    pub backpressure_queue: usize,
    /// Levels a topic name or filter may have; deeper ones are refused as invalid (PUBLISH:
    /// 5.0 DISCONNECT 0x90, 3.1.1 close; SUBSCRIBE: 0x8F / 3.1.1 0x80; will: CONNACK 0x90).
    pub max_topic_levels: usize,
    /// Per namespace: topics holding a retained message. Beyond it a retained message for a new
    /// topic is routed but not retained (counted, logged); a 5.0 publisher whose message reached
    /// no subscriber then gets 0x97 Quota exceeded. Replacing or clearing a retained topic always
    /// works. Broker `$SYS` figures are outside the limit; stored ones are all restored at start.
    pub max_retained_messages: usize,
    /// Per namespace: what its retained messages may cost together (topic, payload and
    /// properties, as [`Message::cost`](crate::Message) counts them). A retained message that
    /// would take the namespace beyond it is routed but not retained, as above; replacing a
    /// message with a smaller one and clearing always work.
    pub max_retained_bytes: usize,
    /// Answers to a client's own requests (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, PINGRESP)
    /// that may wait unwritten while it does not read them; beyond, the connection stops
    /// reading from that client until it catches up, so it cannot make us buffer without end.
    pub answer_backlog: usize,
    /// Topic aliases a client may set towards us (advertised, 5.0).
    pub topic_alias_maximum: u16,
    /// Longest session expiry granted, in seconds; 3.1.1 persistent sessions (which ask for
    /// no expiry) get this one.
    pub max_session_expiry: u32,
    /// Persistent sessions one identity (a device, an API key) may hold per namespace; a CONNECT
    /// that would create one more is refused (5.0: 0x97 Quota exceeded, 3.1.1: 3 Server
    /// unavailable). Anonymous clients share one owner and are not counted.
    pub max_sessions_per_identity: usize,
    /// Events the router buffers from connections before senders wait.
    pub event_queue: usize,
    /// How often `$SYS` figures are published, in milliseconds.
    pub sys_interval_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_packet_size: 262_144,
            receive_maximum: 32,
            server_keep_alive: 0,
            max_inflight_messages: 32,
            max_queued_messages: 10_000,
            max_queued_bytes: 16 * 1024 * 1024,
            queue_full: QueueFullPolicy::default(),
            backpressure_queue: 1000,
            max_topic_levels: switchyard_codec::topic::DEFAULT_MAX_LEVELS,
            max_retained_messages: 100_000,
            max_retained_bytes: 64 * 1024 * 1024,
            answer_backlog: 1024,
            topic_alias_maximum: 64,
            max_session_expiry: 604_800,
            max_sessions_per_identity: 100,
            event_queue: 4096,
            sys_interval_ms: 10_000,
        }
    }
}
