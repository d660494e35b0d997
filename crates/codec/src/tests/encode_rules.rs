//! Encoder behaviour beyond round trips: what cannot be represented (and leaves the buffer as
//! it was), and what MQTT 3.1.1 leaves out.

use bytes::{Bytes, BytesMut};

use crate::{
    Auth, Connect, Disconnect, EncodeError, Packet, Properties, Protocol, PubResp, Publish, QoS, SubOptions, Subscribe,
    SubscribeFilter, UnsubAck, encode, encoded_len,
};

fn encode_err(packet: &Packet, protocol: Protocol) -> EncodeError {
    let mut out = BytesMut::from(&b"kept"[..]);
    let error = encode(packet, protocol, &mut out).expect_err("not representable");
    assert_eq!(&out[..], b"kept", "nothing written on error");
    error
}

fn bytes_of(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out).expect("encodable");
    assert_eq!(out.len(), encoded_len(packet, protocol));
    out.to_vec()
}

fn publish(topic: String, payload: Bytes) -> Packet {
    Packet::Publish(Publish { topic, payload, ..Publish::default() })
}

#[test]
fn auth_has_no_v311_form() {
    assert_eq!(encode_err(&Packet::Auth(Auth::default()), Protocol::V311), EncodeError::NotInV311("AUTH"));
}

#[test]
fn v311_password_needs_a_user_name() {
    let connect = Connect {
        protocol: Protocol::V311,
        clean_start: true,
        keep_alive: 0,
        client_id: "c".into(),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"pw")),
        properties: Properties::default(),
    };
    let packet = Packet::Connect(Box::new(connect));
    assert_eq!(encode_err(&packet, Protocol::V311), EncodeError::NotInV311("password without user name"));
}

#[test]
fn string_longer_than_65535_bytes() {
    let packet = publish("t".repeat(65_536), Bytes::new());
    assert_eq!(encode_err(&packet, Protocol::V5), EncodeError::FieldTooLong(65_536));
    let packet = Packet::Disconnect(Disconnect {
        reason: 0,
        properties: Properties { reason_string: Some("r".repeat(70_000)), ..Properties::default() },
    });
    assert_eq!(encode_err(&packet, Protocol::V5), EncodeError::FieldTooLong(70_000));
    assert_eq!(bytes_of(&publish("t".repeat(65_535), Bytes::new()), Protocol::V311).len(), 1 + 3 + 2 + 65_535);
}

#[test]
fn subscription_identifier_over_the_varint_range() {
    let properties = Properties { subscription_identifiers: vec![268_435_456], ..Properties::default() };
    let packet = Packet::Publish(Publish { topic: "t".into(), properties, ..Publish::default() });
    assert_eq!(encode_err(&packet, Protocol::V5), EncodeError::VarIntTooLarge(268_435_456));
}

#[test]
fn remaining_length_over_268_435_455() {
    let payload = Bytes::from(vec![0u8; 268_435_455]);
    let packet = publish("t".into(), payload);
    assert_eq!(encode_err(&packet, Protocol::V311), EncodeError::PacketTooLarge(268_435_455 + 3));
}

#[test]
fn v311_leaves_out_what_is_5_0_only() {
    let reason = PubResp {
        packet_id: 1,
        reason: 0x10,
        properties: Properties { reason_string: Some("x".into()), ..Properties::default() },
    };
    assert_eq!(bytes_of(&Packet::PubAck(reason), Protocol::V311), [0x40, 2, 0, 1]);
    let unsuback = UnsubAck { packet_id: 1, reasons: vec![0x11], properties: Properties::default() };
    assert_eq!(bytes_of(&Packet::UnsubAck(unsuback), Protocol::V311), [0xB0, 2, 0, 1]);
    let disconnect = Disconnect { reason: 0x04, properties: Properties::default() };
    assert_eq!(bytes_of(&Packet::Disconnect(disconnect), Protocol::V311), [0xE0, 0]);
    let options = SubOptions { qos: QoS::AtLeastOnce, no_local: true, retain_as_published: true, retain_handling: 2 };
    let subscribe = Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter { filter: "a".into(), options }],
        properties: Properties { subscription_identifiers: vec![1], ..Properties::default() },
    };
    assert_eq!(bytes_of(&Packet::Subscribe(subscribe), Protocol::V311), [0x82, 6, 0, 1, 0, 1, b'a', 1]);
}

#[test]
fn short_forms_under_v5() {
    assert_eq!(bytes_of(&Packet::PubAck(PubResp::new(9)), Protocol::V5), [0x40, 2, 0, 9]);
    let reason_only = PubResp { reason: 0x10, ..PubResp::new(9) };
    assert_eq!(bytes_of(&Packet::PubAck(reason_only), Protocol::V5), [0x40, 3, 0, 9, 0x10]);
    assert_eq!(bytes_of(&Packet::Disconnect(Disconnect::default()), Protocol::V5), [0xE0, 0]);
    let auth = Auth { reason: 0x19, properties: Properties::default() };
    assert_eq!(bytes_of(&Packet::Auth(auth), Protocol::V5), [0xF0, 2, 0x19, 0]);
}

#[test]
fn connect_uses_its_own_protocol_level() {
    let connect = Connect {
        protocol: Protocol::V311,
        clean_start: true,
        keep_alive: 0,
        client_id: String::new(),
        will: None,
        username: None,
        password: None,
        properties: Properties { session_expiry_interval: Some(1), ..Properties::default() },
    };
    let packet = Packet::Connect(Box::new(connect));
    let expected = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 0];
    assert_eq!(bytes_of(&packet, Protocol::V5), expected);
}
