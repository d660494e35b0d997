//! Why a packet could not be read ([`DecodeError`], with the MQTT 5.0 reason code to answer it)
//! or written ([`EncodeError`]).

use crate::reason;

/// A packet that breaks a rule of the protocol. After any of these the connection must be closed:
/// the bytes of the offending packet may already have been taken from the buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes do not follow the packet grammar (bad flags, truncated field, invalid UTF-8, ...).
    #[error("malformed packet: {0}")]
    MalformedPacket(&'static str),
    /// The packet is well formed but breaks a protocol rule (duplicate property, packet id 0, ...).
    #[error("protocol error: {0}")]
    ProtocolError(&'static str),
    /// The fixed header announces a packet (fixed header included) larger than allowed.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: usize },
    /// CONNECT asks for a protocol level other than 4 (3.1.1) or 5 (5.0), or for MQTT 3.1 ("MQIsdp").
    #[error("unsupported protocol version {0}")]
    UnsupportedProtocolVersion(u8),
    /// A PUBLISH or will topic name that is empty or contains a wildcard.
    #[error("invalid topic name")]
    TopicNameInvalid,
    /// An UNSUBSCRIBE topic filter with invalid wildcards under 3.1.1 (which has no per-filter
    /// answer). SUBSCRIBE, and UNSUBSCRIBE under 5.0, are returned for the broker to answer per filter.
    #[error("invalid topic filter")]
    TopicFilterInvalid,
}

impl DecodeError {
    /// The MQTT 5.0 reason code for the CONNACK or DISCONNECT that reports this error.
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::MalformedPacket(_) => reason::MALFORMED_PACKET,
            DecodeError::ProtocolError(_) => reason::PROTOCOL_ERROR,
            DecodeError::PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocolVersion(_) => reason::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicNameInvalid => reason::TOPIC_NAME_INVALID,
            DecodeError::TopicFilterInvalid => reason::TOPIC_FILTER_INVALID,
        }
    }
}

/// A packet that has no valid encoding in the requested protocol. Nothing is written when encoding fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The remaining length would exceed 268,435,455 bytes.
    #[error("remaining length of {0} bytes exceeds 268435455")]
    PacketTooLarge(usize),
    /// A string or binary field is longer than 65,535 bytes.
    #[error("field of {0} bytes exceeds 65535")]
    FieldTooLong(usize),
    /// A variable byte integer property (subscription identifier) exceeds 268,435,455.
    #[error("value {0} does not fit a variable byte integer")]
    VarIntTooLarge(u32),
    /// The packet has no MQTT 3.1.1 form (AUTH, or a password without a user name).
    #[error("not representable in MQTT 3.1.1: {0}")]
    NotInV311(&'static str),
}
