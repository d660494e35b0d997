//! MQTT 5.0 properties: which packet may carry which ([`Context`]), reading a property block with
//! every rule the specification sets on it, and writing one.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{Reader, put_binary, put_str, put_varint, varint_len};
use crate::{DecodeError, EncodeError, Properties, topic};

/// Property identifiers (section 2.2.2.2).
pub(crate) mod id {
    pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub(crate) const CONTENT_TYPE: u8 = 0x03;
    pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
    pub(crate) const CORRELATION_DATA: u8 = 0x09;
    pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
    pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
    pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
    pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
    pub(crate) const REASON_STRING: u8 = 0x1F;
    pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
    pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub(crate) const TOPIC_ALIAS: u8 = 0x23;
    pub(crate) const MAXIMUM_QOS: u8 = 0x24;
    pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
    pub(crate) const USER_PROPERTY: u8 = 0x26;
    pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

use id::*;

/// The property block being read: each allows its own set of properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Connect,
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    PubResp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

const fn bits(ids: &[u8]) -> u64 {
    let mut mask = 0;
    let mut i = 0;
    while i < ids.len() {
        mask |= 1 << ids[i];
        i += 1;
    }
    mask
}

const CONNECT: u64 = bits(&[
    SESSION_EXPIRY_INTERVAL,
    AUTHENTICATION_METHOD,
    AUTHENTICATION_DATA,
    REQUEST_PROBLEM_INFORMATION,
    REQUEST_RESPONSE_INFORMATION,
    RECEIVE_MAXIMUM,
    TOPIC_ALIAS_MAXIMUM,
    USER_PROPERTY,
    MAXIMUM_PACKET_SIZE,
]);
const WILL: u64 = bits(&[
    PAYLOAD_FORMAT_INDICATOR,
    MESSAGE_EXPIRY_INTERVAL,
    CONTENT_TYPE,
    RESPONSE_TOPIC,
    CORRELATION_DATA,
    WILL_DELAY_INTERVAL,
    USER_PROPERTY,
]);
const CONNACK: u64 = bits(&[
    SESSION_EXPIRY_INTERVAL,
    ASSIGNED_CLIENT_IDENTIFIER,
    SERVER_KEEP_ALIVE,
    AUTHENTICATION_METHOD,
    AUTHENTICATION_DATA,
    RESPONSE_INFORMATION,
    SERVER_REFERENCE,
    REASON_STRING,
    RECEIVE_MAXIMUM,
    TOPIC_ALIAS_MAXIMUM,
    MAXIMUM_QOS,
    RETAIN_AVAILABLE,
    USER_PROPERTY,
    MAXIMUM_PACKET_SIZE,
    WILDCARD_SUBSCRIPTION_AVAILABLE,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    SHARED_SUBSCRIPTION_AVAILABLE,
]);
const PUBLISH: u64 = bits(&[
    PAYLOAD_FORMAT_INDICATOR,
    MESSAGE_EXPIRY_INTERVAL,
    CONTENT_TYPE,
    RESPONSE_TOPIC,
    CORRELATION_DATA,
    SUBSCRIPTION_IDENTIFIER,
    TOPIC_ALIAS,
    USER_PROPERTY,
]);
const ACK: u64 = bits(&[REASON_STRING, USER_PROPERTY]);
const SUBSCRIBE: u64 = bits(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]);
const UNSUBSCRIBE: u64 = bits(&[USER_PROPERTY]);
const DISCONNECT: u64 = bits(&[SESSION_EXPIRY_INTERVAL, SERVER_REFERENCE, REASON_STRING, USER_PROPERTY]);
const AUTH: u64 = bits(&[AUTHENTICATION_METHOD, AUTHENTICATION_DATA, REASON_STRING, USER_PROPERTY]);
const KNOWN: u64 = CONNECT | WILL | CONNACK | PUBLISH | ACK | SUBSCRIBE | DISCONNECT | AUTH;

impl Context {
    /// Bit `id` is set for every property identifier this block may carry.
    pub(crate) fn allowed(self) -> u64 {
        match self {
            Context::Connect => CONNECT,
            Context::Will => WILL,
            Context::ConnAck => CONNACK,
            Context::Publish => PUBLISH,
            Context::PubResp | Context::SubAck | Context::UnsubAck => ACK,
            Context::Subscribe => SUBSCRIBE,
            Context::Unsubscribe => UNSUBSCRIBE,
            Context::Disconnect => DISCONNECT,
            Context::Auth => AUTH,
        }
    }
}

/// Reads a property length and the block it announces.
pub(crate) fn read(r: &mut Reader, context: Context) -> Result<Properties, DecodeError> {
    let len = r.varint("truncated property length")?;
    let mut props = Properties::default();
    if len == 0 {
        return Ok(props);
    }
    let mut block = r.sub(len as usize, "property length exceeds the remaining length")?;
    let allowed = context.allowed();
    let mut seen = 0u64;
    while !block.is_empty() {
        let id = block.u8("truncated property identifier")?;
        let bit = if id < 64 { 1u64 << id } else { 0 };
        if bit & KNOWN == 0 {
            return Err(DecodeError::MalformedPacket("unknown property identifier"));
        }
        if bit & allowed == 0 {
            return Err(DecodeError::MalformedPacket("property not allowed in this packet"));
        }
        let repeatable = id == USER_PROPERTY || (id == SUBSCRIPTION_IDENTIFIER && context == Context::Publish);
        if seen & bit != 0 && !repeatable {
            return Err(DecodeError::ProtocolError("property included more than once"));
        }
        seen |= bit;
        read_one(&mut block, id, &mut props)?;
    }
    if props.authentication_data.is_some() && props.authentication_method.is_none() {
        return Err(DecodeError::ProtocolError("authentication data without authentication method"));
    }
    Ok(props)
}

const TRUNCATED: &str = "truncated property value";

fn flag(r: &mut Reader, error: &'static str) -> Result<Option<u8>, DecodeError> {
    match r.u8(TRUNCATED)? {
        v @ (0 | 1) => Ok(Some(v)),
        _ => Err(DecodeError::ProtocolError(error)),
    }
}

fn non_zero_u16(r: &mut Reader, error: &'static str) -> Result<Option<u16>, DecodeError> {
    match r.u16(TRUNCATED)? {
        0 => Err(DecodeError::ProtocolError(error)),
        v => Ok(Some(v)),
    }
}

fn read_one(r: &mut Reader, id: u8, p: &mut Properties) -> Result<(), DecodeError> {
    match id {
        PAYLOAD_FORMAT_INDICATOR => p.payload_format_indicator = flag(r, "payload format indicator other than 0 or 1")?,
        MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(r.u32(TRUNCATED)?),
        CONTENT_TYPE => p.content_type = Some(r.string(TRUNCATED)?),
        RESPONSE_TOPIC => {
            let topic = r.string(TRUNCATED)?;
            if !topic::valid_topic_name(&topic) {
                return Err(DecodeError::ProtocolError("response topic is not a valid topic name"));
            }
            p.response_topic = Some(topic);
        }
        CORRELATION_DATA => p.correlation_data = Some(r.binary(TRUNCATED)?),
        SUBSCRIPTION_IDENTIFIER => match r.varint(TRUNCATED)? {
            0 => return Err(DecodeError::ProtocolError("subscription identifier 0")),
            v => p.subscription_identifiers.push(v),
        },
        SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(r.u32(TRUNCATED)?),
        ASSIGNED_CLIENT_IDENTIFIER => p.assigned_client_identifier = Some(r.string(TRUNCATED)?),
        SERVER_KEEP_ALIVE => p.server_keep_alive = Some(r.u16(TRUNCATED)?),
        AUTHENTICATION_METHOD => p.authentication_method = Some(r.string(TRUNCATED)?),
        AUTHENTICATION_DATA => p.authentication_data = Some(r.binary(TRUNCATED)?),
        REQUEST_PROBLEM_INFORMATION => {
            p.request_problem_information = flag(r, "request problem information other than 0 or 1")?
        }
        WILL_DELAY_INTERVAL => p.will_delay_interval = Some(r.u32(TRUNCATED)?),
        REQUEST_RESPONSE_INFORMATION => {
            p.request_response_information = flag(r, "request response information other than 0 or 1")?
        }
        RESPONSE_INFORMATION => p.response_information = Some(r.string(TRUNCATED)?),
        SERVER_REFERENCE => p.server_reference = Some(r.string(TRUNCATED)?),
        REASON_STRING => p.reason_string = Some(r.string(TRUNCATED)?),
        RECEIVE_MAXIMUM => p.receive_maximum = non_zero_u16(r, "receive maximum 0")?,
        TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(r.u16(TRUNCATED)?),
        TOPIC_ALIAS => p.topic_alias = non_zero_u16(r, "topic alias 0")?,
        MAXIMUM_QOS => p.maximum_qos = flag(r, "maximum QoS other than 0 or 1")?,
        RETAIN_AVAILABLE => p.retain_available = flag(r, "retain available other than 0 or 1")?,
        USER_PROPERTY => {
            let key = r.string(TRUNCATED)?;
            let value = r.string(TRUNCATED)?;
            p.user_properties.push((key, value));
        }
        MAXIMUM_PACKET_SIZE => match r.u32(TRUNCATED)? {
            0 => return Err(DecodeError::ProtocolError("maximum packet size 0")),
            v => p.maximum_packet_size = Some(v),
        },
        WILDCARD_SUBSCRIPTION_AVAILABLE => {
            p.wildcard_subscription_available = flag(r, "wildcard subscription available other than 0 or 1")?
        }
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            p.subscription_identifier_available = flag(r, "subscription identifier available other than 0 or 1")?
        }
        SHARED_SUBSCRIPTION_AVAILABLE => {
            p.shared_subscription_available = flag(r, "shared subscription available other than 0 or 1")?
        }
        _ => return Err(DecodeError::MalformedPacket("unknown property identifier")),
    }
    Ok(())
}

fn opt<T>(value: &Option<T>, size: impl Fn(&T) -> usize) -> usize {
    value.as_ref().map_or(0, |v| 1 + size(v))
}

/// Length of the block's content, without its length prefix (0 when no property is set).
pub(crate) fn content_len(p: &Properties) -> usize {
    let byte = |_: &u8| 1;
    let two = |_: &u16| 2;
    let four = |_: &u32| 4;
    let string = |s: &String| 2 + s.len();
    let binary = |b: &Bytes| 2 + b.len();
    opt(&p.payload_format_indicator, byte)
        + opt(&p.message_expiry_interval, four)
        + opt(&p.content_type, string)
        + opt(&p.response_topic, string)
        + opt(&p.correlation_data, binary)
        + p.subscription_identifiers.iter().map(|&v| 1 + varint_len(v as usize)).sum::<usize>()
        + opt(&p.session_expiry_interval, four)
        + opt(&p.assigned_client_identifier, string)
        + opt(&p.server_keep_alive, two)
        + opt(&p.authentication_method, string)
        + opt(&p.authentication_data, binary)
        + opt(&p.request_problem_information, byte)
        + opt(&p.will_delay_interval, four)
        + opt(&p.request_response_information, byte)
        + opt(&p.response_information, string)
        + opt(&p.server_reference, string)
        + opt(&p.reason_string, string)
        + opt(&p.receive_maximum, two)
        + opt(&p.topic_alias_maximum, two)
        + opt(&p.topic_alias, two)
        + opt(&p.maximum_qos, byte)
        + opt(&p.retain_available, byte)
        + p.user_properties.iter().map(|(k, v)| 5 + k.len() + v.len()).sum::<usize>()
        + opt(&p.maximum_packet_size, four)
        + opt(&p.wildcard_subscription_available, byte)
        + opt(&p.subscription_identifier_available, byte)
        + opt(&p.shared_subscription_available, byte)
}

/// Length of the whole block: the property length and the content.
pub(crate) fn block_len(p: &Properties) -> usize {
    let n = content_len(p);
    varint_len(n) + n
}

fn put_byte(out: &mut BytesMut, id: u8, value: Option<u8>) {
    if let Some(v) = value {
        out.put_u8(id);
        out.put_u8(v);
    }
}

fn put_two(out: &mut BytesMut, id: u8, value: Option<u16>) {
    if let Some(v) = value {
        out.put_u8(id);
        out.put_u16(v);
    }
}

fn put_four(out: &mut BytesMut, id: u8, value: Option<u32>) {
    if let Some(v) = value {
        out.put_u8(id);
        out.put_u32(v);
    }
}

fn put_string(out: &mut BytesMut, id: u8, value: &Option<String>) -> Result<(), EncodeError> {
    if let Some(v) = value {
        out.put_u8(id);
        put_str(out, v)?;
    }
    Ok(())
}

fn put_data(out: &mut BytesMut, id: u8, value: &Option<Bytes>) -> Result<(), EncodeError> {
    if let Some(v) = value {
        out.put_u8(id);
        put_binary(out, v)?;
    }
    Ok(())
}

/// Writes the property length (`content_len`, from [`content_len`]) and every property that is
/// set, in identifier order.
pub(crate) fn write(out: &mut BytesMut, p: &Properties, content_len: usize) -> Result<(), EncodeError> {
    put_varint(out, u32::try_from(content_len).unwrap_or(u32::MAX))?;
    if content_len == 0 {
        return Ok(());
    }
    put_byte(out, PAYLOAD_FORMAT_INDICATOR, p.payload_format_indicator);
    put_four(out, MESSAGE_EXPIRY_INTERVAL, p.message_expiry_interval);
    put_string(out, CONTENT_TYPE, &p.content_type)?;
    put_string(out, RESPONSE_TOPIC, &p.response_topic)?;
    put_data(out, CORRELATION_DATA, &p.correlation_data)?;
    for &v in &p.subscription_identifiers {
        out.put_u8(SUBSCRIPTION_IDENTIFIER);
        put_varint(out, v)?;
    }
    put_four(out, SESSION_EXPIRY_INTERVAL, p.session_expiry_interval);
    put_string(out, ASSIGNED_CLIENT_IDENTIFIER, &p.assigned_client_identifier)?;
    put_two(out, SERVER_KEEP_ALIVE, p.server_keep_alive);
    put_string(out, AUTHENTICATION_METHOD, &p.authentication_method)?;
    put_data(out, AUTHENTICATION_DATA, &p.authentication_data)?;
    put_byte(out, REQUEST_PROBLEM_INFORMATION, p.request_problem_information);
    put_four(out, WILL_DELAY_INTERVAL, p.will_delay_interval);
    put_byte(out, REQUEST_RESPONSE_INFORMATION, p.request_response_information);
    put_string(out, RESPONSE_INFORMATION, &p.response_information)?;
    put_string(out, SERVER_REFERENCE, &p.server_reference)?;
    put_string(out, REASON_STRING, &p.reason_string)?;
    put_two(out, RECEIVE_MAXIMUM, p.receive_maximum);
    put_two(out, TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum);
    put_two(out, TOPIC_ALIAS, p.topic_alias);
    put_byte(out, MAXIMUM_QOS, p.maximum_qos);
    put_byte(out, RETAIN_AVAILABLE, p.retain_available);
    for (key, value) in &p.user_properties {
        out.put_u8(USER_PROPERTY);
        put_str(out, key)?;
        put_str(out, value)?;
    }
    put_four(out, MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
    put_byte(out, WILDCARD_SUBSCRIPTION_AVAILABLE, p.wildcard_subscription_available);
    put_byte(out, SUBSCRIPTION_IDENTIFIER_AVAILABLE, p.subscription_identifier_available);
    put_byte(out, SHARED_SUBSCRIPTION_AVAILABLE, p.shared_subscription_available);
    Ok(())
}
