//! Packets to bytes: the exact size first ([`encoded_len`]), then one pass of writes into space
//! reserved for it. Under 3.1.1 everything 5.0-only (properties, most reason codes) is left out.

use bytes::{BufMut, BytesMut};

use crate::properties::{self, block_len, content_len};
use crate::wire::{MAX_VARINT, put_binary, put_str, put_varint, varint_len};
use crate::{
    ConnAck, Connect, EncodeError, Packet, Properties, Protocol, PubResp, Publish, QoS, SubAck, SubOptions, Subscribe,
    UnsubAck, Unsubscribe,
};

/// Exact number of bytes [`encode`] writes for `packet` (for a packet it accepts).
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    let remaining = remaining_len(packet, protocol);
    1 + varint_len(remaining) + remaining
}

/// A PUBLISH with borrowed fields, so one stored message can be written to many subscribers
/// without building a [`Publish`] for each.
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: &'a str,
    pub packet_id: u16,
    pub payload: &'a [u8],
    pub properties: &'a Properties,
}

impl<'a> From<&'a Publish> for PublishRef<'a> {
    fn from(p: &'a Publish) -> PublishRef<'a> {
        PublishRef {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            topic: &p.topic,
            packet_id: p.packet_id,
            payload: &p.payload,
            properties: &p.properties,
        }
    }
}

/// Append a PUBLISH for `protocol` to `out`: the same bytes [`encode`] writes for the
/// equivalent [`Packet::Publish`], with the same failures.
pub fn encode_publish(p: PublishRef<'_>, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    framed(out, publish_first_byte(p), publish_len(p, protocol), |out| write_publish(p, protocol, out))
}

/// Append the encoding of `packet` for `protocol` to `out`.
///
/// CONNECT is written in the protocol its `protocol` field names. Fails, writing nothing, only
/// for packets with no valid encoding: a remaining length over 268,435,455, a string or binary
/// field over 65,535 bytes, a subscription identifier over 268,435,455, and under 3.1.1 an AUTH or a
/// CONNECT with a password but no user name. Properties are written as set, whatever the packet
/// type allows; the reason codes and properties of 3.1.1 packets are dropped.
pub fn encode(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    check_representable(packet, protocol)?;
    framed(out, first_byte(packet), remaining_len(packet, protocol), |out| write_body(packet, protocol, out))
}

/// Fixed header, then `body` into space reserved for it; on failure nothing stays written.
fn framed(
    out: &mut BytesMut,
    first: u8,
    remaining: usize,
    body: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    if remaining > MAX_VARINT as usize {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    let start = out.len();
    out.reserve(1 + varint_len(remaining) + remaining);
    out.put_u8(first);
    let written = put_varint(out, remaining as u32).and_then(|()| body(out));
    if written.is_err() {
        out.truncate(start);
    }
    written
}

fn check_representable(packet: &Packet, protocol: Protocol) -> Result<(), EncodeError> {
    match packet {
        Packet::Auth(_) if protocol == Protocol::V311 => Err(EncodeError::NotInV311("AUTH")),
        Packet::Connect(c) if c.protocol == Protocol::V311 && c.password.is_some() && c.username.is_none() => {
            Err(EncodeError::NotInV311("password without user name"))
        }
        _ => Ok(()),
    }
}

fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => publish_first_byte(p.into()),
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

/// Size of a property block, length prefix included; nothing under 3.1.1.
fn props_len(p: &Properties, protocol: Protocol) -> usize {
    match protocol {
        Protocol::V311 => 0,
        Protocol::V5 => block_len(p),
    }
}

fn put_props(out: &mut BytesMut, p: &Properties, protocol: Protocol) -> Result<(), EncodeError> {
    match protocol {
        Protocol::V311 => Ok(()),
        Protocol::V5 => properties::write(out, p, content_len(p)),
    }
}

/// How the optional reason code and properties that end PUBACK..PUBCOMP, DISCONNECT and AUTH are
/// written: left out when they say "success, no properties" (and always under 3.1.1).
enum Tail {
    Omitted,
    ReasonOnly,
    /// Reason code and a property block of this content length.
    Full(usize),
}

impl Tail {
    fn new(reason: u8, props: &Properties, protocol: Protocol, reason_only: bool) -> Tail {
        if protocol == Protocol::V311 {
            return Tail::Omitted;
        }
        match (reason, content_len(props)) {
            (0, 0) => Tail::Omitted,
            (_, 0) if reason_only => Tail::ReasonOnly,
            (_, n) => Tail::Full(n),
        }
    }

    fn len(&self) -> usize {
        match *self {
            Tail::Omitted => 0,
            Tail::ReasonOnly => 1,
            Tail::Full(n) => 1 + varint_len(n) + n,
        }
    }

    fn put(&self, out: &mut BytesMut, reason: u8, props: &Properties) -> Result<(), EncodeError> {
        match *self {
            Tail::Omitted => Ok(()),
            Tail::ReasonOnly => {
                out.put_u8(reason);
                Ok(())
            }
            Tail::Full(n) => {
                out.put_u8(reason);
                properties::write(out, props, n)
            }
        }
    }
}

fn remaining_len(packet: &Packet, protocol: Protocol) -> usize {
    match packet {
        Packet::Connect(c) => connect_len(c),
        Packet::ConnAck(c) => 2 + props_len(&c.properties, protocol),
        Packet::Publish(p) => publish_len(p.into(), protocol),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            2 + Tail::new(r.reason, &r.properties, protocol, true).len()
        }
        Packet::Subscribe(s) => {
            let filters: usize = s.filters.iter().map(|f| 3 + f.filter.len()).sum();
            2 + props_len(&s.properties, protocol) + filters
        }
        Packet::SubAck(s) => 2 + props_len(&s.properties, protocol) + s.reasons.len(),
        Packet::Unsubscribe(u) => {
            let filters: usize = u.filters.iter().map(|f| 2 + f.len()).sum();
            2 + props_len(&u.properties, protocol) + filters
        }
        Packet::UnsubAck(u) => match protocol {
            Protocol::V311 => 2,
            Protocol::V5 => 2 + block_len(&u.properties) + u.reasons.len(),
        },
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => Tail::new(d.reason, &d.properties, protocol, true).len(),
        Packet::Auth(a) => Tail::new(a.reason, &a.properties, protocol, false).len(),
    }
}

fn connect_len(c: &Connect) -> usize {
    let p = c.protocol;
    let mut n = 10 + props_len(&c.properties, p) + 2 + c.client_id.len();
    if let Some(w) = &c.will {
        n += props_len(&w.properties, p) + 2 + w.topic.len() + 2 + w.payload.len();
    }
    if let Some(u) = &c.username {
        n += 2 + u.len();
    }
    if let Some(pw) = &c.password {
        n += 2 + pw.len();
    }
    n
}

fn write_body(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(c) => write_connect(c, out),
        Packet::ConnAck(c) => write_connack(c, protocol, out),
        Packet::Publish(p) => write_publish(p.into(), protocol, out),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            write_pub_resp(r, protocol, out)
        }
        Packet::Subscribe(s) => write_subscribe(s, protocol, out),
        Packet::SubAck(s) => write_suback(s, protocol, out),
        Packet::Unsubscribe(u) => write_unsubscribe(u, protocol, out),
        Packet::UnsubAck(u) => write_unsuback(u, protocol, out),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => Tail::new(d.reason, &d.properties, protocol, true).put(out, d.reason, &d.properties),
        Packet::Auth(a) => Tail::new(a.reason, &a.properties, protocol, false).put(out, a.reason, &a.properties),
    }
}

fn write_connect(c: &Connect, out: &mut BytesMut) -> Result<(), EncodeError> {
    let p = c.protocol;
    put_str(out, "MQTT")?;
    out.put_u8(match p {
        Protocol::V311 => 4,
        Protocol::V5 => 5,
    });
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3 | u8::from(w.retain) << 5;
    }
    flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    put_props(out, &c.properties, p)?;
    put_str(out, &c.client_id)?;
    if let Some(w) = &c.will {
        put_props(out, &w.properties, p)?;
        put_str(out, &w.topic)?;
        put_binary(out, &w.payload)?;
    }
    if let Some(u) = &c.username {
        put_str(out, u)?;
    }
    if let Some(pw) = &c.password {
        put_binary(out, pw)?;
    }
    Ok(())
}

fn write_connack(c: &ConnAck, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u8(u8::from(c.session_present));
    out.put_u8(c.code);
    put_props(out, &c.properties, protocol)
}

fn publish_first_byte(p: PublishRef<'_>) -> u8 {
    0x30 | u8::from(p.dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain)
}

fn publish_len(p: PublishRef<'_>, protocol: Protocol) -> usize {
    let id = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
    2 + p.topic.len() + id + props_len(p.properties, protocol) + p.payload.len()
}

fn write_publish(p: PublishRef<'_>, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    put_str(out, p.topic)?;
    if p.qos != QoS::AtMostOnce {
        out.put_u16(p.packet_id);
    }
    put_props(out, p.properties, protocol)?;
    out.put_slice(p.payload);
    Ok(())
}

fn write_pub_resp(r: &PubResp, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u16(r.packet_id);
    Tail::new(r.reason, &r.properties, protocol, true).put(out, r.reason, &r.properties)
}

fn options_byte(o: &SubOptions, protocol: Protocol) -> u8 {
    let qos = o.qos as u8;
    match protocol {
        Protocol::V311 => qos,
        Protocol::V5 => {
            qos | u8::from(o.no_local) << 2 | u8::from(o.retain_as_published) << 3 | (o.retain_handling & 0b11) << 4
        }
    }
}

fn write_subscribe(s: &Subscribe, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u16(s.packet_id);
    put_props(out, &s.properties, protocol)?;
    for f in &s.filters {
        put_str(out, &f.filter)?;
        out.put_u8(options_byte(&f.options, protocol));
    }
    Ok(())
}

fn write_suback(s: &SubAck, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u16(s.packet_id);
    put_props(out, &s.properties, protocol)?;
    out.put_slice(&s.reasons);
    Ok(())
}

fn write_unsubscribe(u: &Unsubscribe, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u16(u.packet_id);
    put_props(out, &u.properties, protocol)?;
    for f in &u.filters {
        put_str(out, f)?;
    }
    Ok(())
}

fn write_unsuback(u: &UnsubAck, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u16(u.packet_id);
    if protocol == Protocol::V5 {
        put_props(out, &u.properties, protocol)?;
        out.put_slice(&u.reasons);
    }
    Ok(())
}
