//! Bytes to packets: the fixed header (checked as soon as it has arrived, before the body), then
//! each packet's variable header and payload, with every rule that one packet's bytes can break.

use bytes::{Buf, BytesMut};

use crate::properties::{self, Context};
use crate::wire::{Reader, read_varint};
use crate::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, Packet, Properties, Protocol, PubResp, Publish, QoS, SubAck,
    SubOptions, Subscribe, SubscribeFilter, UnsubAck, Unsubscribe, Will, topic,
};

/// Valid reason codes per packet (the "MUST use one of the ... Reason Codes" rules).
pub(crate) mod codes {
    pub(crate) const CONNACK: &[u8] = &[
        0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A,
        0x9B, 0x9C, 0x9D, 0x9F,
    ];
    pub(crate) const PUBACK: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
    pub(crate) const PUBREL: &[u8] = &[0x00, 0x92];
    pub(crate) const SUBACK: &[u8] = &[0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2];
    pub(crate) const SUBACK_V311: &[u8] = &[0x00, 0x01, 0x02, 0x80];
    pub(crate) const UNSUBACK: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
    pub(crate) const DISCONNECT: &[u8] = &[
        0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    ];
    pub(crate) const AUTH: &[u8] = &[0x00, 0x18, 0x19];
}

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;
const AUTH: u8 = 15;

/// Decode one packet from the front of `buf`.
///
/// `Ok(None)`: the packet is incomplete; `buf` is untouched and nothing was allocated. On success the
/// packet's bytes are consumed from `buf`; payloads and binary fields share its memory.
///
/// `protocol` is `None` until CONNECT has been read: the first packet must then be CONNECT (anything
/// else is a [`DecodeError::ProtocolError`]). CONNECT is always read by its own protocol level,
/// whatever `protocol` says. `max_packet_size` bounds the whole packet, fixed header included, and
/// is enforced as soon as the fixed header is complete.
///
/// After an error the connection must be closed (sending first, under 5.0, a DISCONNECT or CONNACK
/// with [`DecodeError::reason_code`]); the offending packet's bytes may have been consumed.
pub fn decode(
    buf: &mut BytesMut,
    protocol: Option<Protocol>,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let body_protocol = check_first_byte(first, protocol)?;
    let Some((remaining, len_bytes)) = read_varint(&buf[1..])? else {
        return Ok(None);
    };
    let size = 1 + len_bytes + remaining as usize;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge { size, max: max_packet_size });
    }
    if buf.len() < size {
        return Ok(None);
    }
    let mut body = buf.split_to(size).freeze();
    body.advance(1 + len_bytes);
    let packet = match body_protocol {
        None => Packet::Connect(Box::new(read_connect(Reader::new(body, Protocol::V5))?)),
        Some(protocol) => read_packet(first, Reader::new(body, protocol))?,
    };
    Ok(Some(packet))
}

/// Checks the packet type and its fixed-header flags. Returns the protocol to read the body with,
/// `None` for CONNECT (read by the level it carries).
fn check_first_byte(first: u8, protocol: Option<Protocol>) -> Result<Option<Protocol>, DecodeError> {
    const RESERVED_FLAGS: DecodeError = DecodeError::MalformedPacket("reserved fixed header flags");
    let kind = first >> 4;
    let flags = first & 0x0f;
    if kind == 0 {
        return Err(DecodeError::MalformedPacket("reserved packet type 0"));
    }
    if kind == CONNECT {
        return if flags == 0 { Ok(None) } else { Err(RESERVED_FLAGS) };
    }
    let Some(protocol) = protocol else {
        return Err(DecodeError::ProtocolError("the first packet must be CONNECT"));
    };
    let expected_flags = match kind {
        PUBLISH => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::MalformedPacket("PUBLISH with QoS 3"));
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(match protocol {
                    Protocol::V311 => DecodeError::MalformedPacket("DUP set on a QoS 0 PUBLISH"),
                    Protocol::V5 => DecodeError::ProtocolError("DUP set on a QoS 0 PUBLISH"),
                });
            }
            flags
        }
        AUTH if protocol == Protocol::V311 => {
            return Err(DecodeError::MalformedPacket("AUTH is not an MQTT 3.1.1 packet"));
        }
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => 0b0010,
        _ => 0,
    };
    if flags == expected_flags { Ok(Some(protocol)) } else { Err(RESERVED_FLAGS) }
}

fn read_packet(first: u8, mut r: Reader) -> Result<Packet, DecodeError> {
    let packet = match first >> 4 {
        CONNACK => Packet::ConnAck(read_connack(&mut r)?),
        PUBLISH => return read_publish(first, r).map(Packet::Publish),
        PUBACK => Packet::PubAck(read_pub_resp(&mut r, codes::PUBACK)?),
        PUBREC => Packet::PubRec(read_pub_resp(&mut r, codes::PUBACK)?),
        PUBREL => Packet::PubRel(read_pub_resp(&mut r, codes::PUBREL)?),
        PUBCOMP => Packet::PubComp(read_pub_resp(&mut r, codes::PUBREL)?),
        SUBSCRIBE => Packet::Subscribe(read_subscribe(&mut r)?),
        SUBACK => return read_suback(r).map(Packet::SubAck),
        UNSUBSCRIBE => Packet::Unsubscribe(read_unsubscribe(&mut r)?),
        UNSUBACK => return read_unsuback(r).map(Packet::UnsubAck),
        PINGREQ => Packet::PingReq,
        PINGRESP => Packet::PingResp,
        DISCONNECT => Packet::Disconnect(read_disconnect(&mut r)?),
        // AUTH, the one type left: 0 and CONNECT never get here.
        _ => Packet::Auth(read_auth(&mut r)?),
    };
    r.finish()?;
    Ok(packet)
}

/// Properties under 5.0, none under 3.1.1.
fn read_properties(r: &mut Reader, context: Context) -> Result<Properties, DecodeError> {
    match r.protocol() {
        Protocol::V311 => Ok(Properties::default()),
        Protocol::V5 => properties::read(r, context),
    }
}

fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16("truncated packet identifier")? {
        0 => Err(DecodeError::ProtocolError("packet identifier 0")),
        id => Ok(id),
    }
}

fn check_reason(code: u8, valid: &[u8]) -> Result<u8, DecodeError> {
    if valid.contains(&code) {
        Ok(code)
    } else {
        Err(DecodeError::MalformedPacket("reason code not valid for this packet"))
    }
}

fn read_connect(mut r: Reader) -> Result<Connect, DecodeError> {
    let name_len = r.u16("truncated protocol name")?;
    let name = r.take(usize::from(name_len), "truncated protocol name")?;
    let level = r.u8("truncated protocol level")?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => Protocol::V311,
        (b"MQTT", 5) => Protocol::V5,
        (b"MQTT" | b"MQIsdp", _) => return Err(DecodeError::UnsupportedProtocolVersion(level)),
        _ => return Err(DecodeError::MalformedPacket("protocol name is not MQTT")),
    };
    r.set_protocol(protocol);
    let flags = r.u8("truncated connect flags")?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::MalformedPacket("reserved connect flag set"));
    }
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    let Some(will_qos) = QoS::from_u8(will_qos) else {
        return Err(DecodeError::MalformedPacket("will QoS 3"));
    };
    if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(DecodeError::MalformedPacket("will QoS or retain set without the will flag"));
    }
    if protocol == Protocol::V311 && has_password && !has_username {
        return Err(DecodeError::MalformedPacket("password without user name"));
    }
    let keep_alive = r.u16("truncated keep alive")?;
    let properties = read_properties(&mut r, Context::Connect)?;
    let client_id = r.string("truncated client identifier")?;
    let will = if will_flag {
        let properties = read_properties(&mut r, Context::Will)?;
        let topic = r.string("truncated will topic")?;
        if !topic::valid_topic_name(&topic) {
            return Err(DecodeError::TopicNameInvalid);
        }
        let payload = r.binary("truncated will payload")?;
        Some(Will { topic, payload, qos: will_qos, retain: will_retain, properties })
    } else {
        None
    };
    let username = if has_username { Some(r.string("truncated user name")?) } else { None };
    let password = if has_password { Some(r.binary("truncated password")?) } else { None };
    r.finish()?;
    Ok(Connect {
        protocol,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn read_connack(r: &mut Reader) -> Result<ConnAck, DecodeError> {
    let flags = r.u8("truncated CONNACK flags")?;
    if flags & 0xfe != 0 {
        return Err(DecodeError::MalformedPacket("reserved CONNACK flags set"));
    }
    let session_present = flags & 0x01 != 0;
    let code = r.u8("truncated CONNACK code")?;
    if r.protocol() == Protocol::V5 {
        check_reason(code, codes::CONNACK)?;
    }
    if session_present && code != 0 {
        return Err(DecodeError::ProtocolError("session present with a non-zero CONNACK code"));
    }
    let properties = read_properties(r, Context::ConnAck)?;
    Ok(ConnAck { session_present, code, properties })
}

fn read_publish(first: u8, mut r: Reader) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((first >> 1) & 0b11).ok_or(DecodeError::MalformedPacket("PUBLISH with QoS 3"))?;
    let topic = r.string("truncated topic name")?;
    let packet_id = if qos == QoS::AtMostOnce { 0 } else { packet_id(&mut r)? };
    let properties = read_properties(&mut r, Context::Publish)?;
    if topic.is_empty() {
        match r.protocol() {
            Protocol::V311 => return Err(DecodeError::TopicNameInvalid),
            Protocol::V5 if properties.topic_alias.is_none() => {
                return Err(DecodeError::ProtocolError("empty topic name without topic alias"));
            }
            Protocol::V5 => {}
        }
    } else if !topic::valid_topic_name(&topic) {
        return Err(DecodeError::TopicNameInvalid);
    }
    Ok(Publish {
        dup: first & 0b1000 != 0,
        qos,
        retain: first & 0b0001 != 0,
        topic,
        packet_id,
        payload: r.rest(),
        properties,
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP. Under 5.0 the reason code and properties may be omitted.
fn read_pub_resp(r: &mut Reader, valid: &[u8]) -> Result<PubResp, DecodeError> {
    let packet_id = packet_id(r)?;
    let (reason, properties) = read_short_form_tail(r, valid, Context::PubResp)?;
    Ok(PubResp { packet_id, reason, properties })
}

/// The optional reason code and properties that end PUBACK..PUBCOMP, DISCONNECT and AUTH under
/// 5.0 (absent: success, no properties). Nothing under 3.1.1.
fn read_short_form_tail(r: &mut Reader, valid: &[u8], context: Context) -> Result<(u8, Properties), DecodeError> {
    if r.protocol() == Protocol::V311 || r.is_empty() {
        return Ok((0, Properties::default()));
    }
    let reason = check_reason(r.u8("truncated reason code")?, valid)?;
    let properties = if r.is_empty() { Properties::default() } else { properties::read(r, context)? };
    Ok((reason, properties))
}

fn read_options(byte: u8, protocol: Protocol) -> Result<SubOptions, DecodeError> {
    let reserved = match protocol {
        Protocol::V311 => 0b1111_1100,
        Protocol::V5 => 0b1100_0000,
    };
    if byte & reserved != 0 {
        return Err(DecodeError::MalformedPacket("reserved subscription option bits set"));
    }
    let qos = QoS::from_u8(byte & 0b11).ok_or(DecodeError::MalformedPacket("subscription with QoS 3"))?;
    let retain_handling = (byte >> 4) & 0b11;
    if retain_handling == 3 {
        return Err(DecodeError::ProtocolError("retain handling 3"));
    }
    Ok(SubOptions { qos, no_local: byte & 0b0100 != 0, retain_as_published: byte & 0b1000 != 0, retain_handling })
}

/// SUBSCRIBE. Topic filter syntax is not checked here: the broker answers an invalid filter in
/// its SUBACK (0x8F under 5.0, 0x80 under 3.1.1) using [`topic::valid_topic_filter`].
fn read_subscribe(r: &mut Reader) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = read_properties(r, Context::Subscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("truncated topic filter")?;
        let options = read_options(r.u8("truncated subscription options")?, r.protocol())?;
        if options.no_local && topic::parse_shared(&filter).is_some() {
            return Err(DecodeError::ProtocolError("no local set on a shared subscription"));
        }
        filters.push(SubscribeFilter { filter, options });
    }
    if filters.is_empty() {
        return Err(DecodeError::ProtocolError("SUBSCRIBE without topic filters"));
    }
    Ok(Subscribe { packet_id, filters, properties })
}

fn read_suback(mut r: Reader) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(&mut r)?;
    let properties = read_properties(&mut r, Context::SubAck)?;
    let valid = match r.protocol() {
        Protocol::V311 => codes::SUBACK_V311,
        Protocol::V5 => codes::SUBACK,
    };
    let reasons = r.rest();
    for &code in &reasons {
        check_reason(code, valid)?;
    }
    Ok(SubAck { packet_id, reasons: reasons.to_vec(), properties })
}

/// UNSUBSCRIBE. Under 3.1.1 (no per-filter answer) an invalid filter is a decode error; under
/// 5.0 the broker answers it with UNSUBACK 0x8F.
fn read_unsubscribe(r: &mut Reader) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = read_properties(r, Context::Unsubscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("truncated topic filter")?;
        if r.protocol() == Protocol::V311 && !topic::valid_topic_filter(&filter) {
            return Err(DecodeError::TopicFilterInvalid);
        }
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(DecodeError::ProtocolError("UNSUBSCRIBE without topic filters"));
    }
    Ok(Unsubscribe { packet_id, filters, properties })
}

fn read_unsuback(mut r: Reader) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(&mut r)?;
    if r.protocol() == Protocol::V311 {
        r.finish()?;
        return Ok(UnsubAck { packet_id, reasons: Vec::new(), properties: Properties::default() });
    }
    let properties = properties::read(&mut r, Context::UnsubAck)?;
    let reasons = r.rest();
    for &code in &reasons {
        check_reason(code, codes::UNSUBACK)?;
    }
    Ok(UnsubAck { packet_id, reasons: reasons.to_vec(), properties })
}

fn read_disconnect(r: &mut Reader) -> Result<Disconnect, DecodeError> {
    let (reason, properties) = read_short_form_tail(r, codes::DISCONNECT, Context::Disconnect)?;
    Ok(Disconnect { reason, properties })
}

/// AUTH (5.0 only; refused under 3.1.1 from its fixed header). The authentication method is
/// mandatory (section 3.15.2.2.2), so the zero-length form is a protocol error in practice.
fn read_auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let (reason, properties) = read_short_form_tail(r, codes::AUTH, Context::Auth)?;
    if properties.authentication_method.is_none() {
        return Err(DecodeError::ProtocolError("AUTH without authentication method"));
    }
    Ok(Auth { reason, properties })
}
