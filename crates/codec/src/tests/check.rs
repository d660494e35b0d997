//! Known byte sequences, both ways: `check` decodes the bytes to the packet and encodes the
//! packet back to the same bytes; `check_decode` covers accepted non-canonical forms.

use bytes::{Bytes, BytesMut};

use super::{V3, V5, bin, cat, decode_all, frame, props, s};
use crate::{
    Auth, ConnAck, Connect, Disconnect, Packet, Properties, Protocol, PubResp, Publish, QoS, SubAck, SubOptions,
    Subscribe, SubscribeFilter, UnsubAck, Unsubscribe, Will, decode, encode, encoded_len,
};

fn check(protocol: Protocol, bytes: &[u8], packet: Packet) {
    let from = if matches!(packet, Packet::Connect(_)) { None } else { Some(protocol) };
    assert_eq!(decode_all(from, bytes), Ok(packet.clone()), "decoding {bytes:02x?}");
    let mut out = BytesMut::new();
    encode(&packet, protocol, &mut out).expect("encodable");
    assert_eq!(&out[..], bytes, "encoding {packet:?}");
    assert_eq!(encoded_len(&packet, protocol), bytes.len());
}

fn check_decode(protocol: Protocol, bytes: &[u8], packet: Packet) {
    assert_eq!(decode_all(Some(protocol), bytes), Ok(packet), "decoding {bytes:02x?}");
}

fn connect(protocol: Protocol, client_id: &str) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

fn user(key: &str, value: &str) -> Properties {
    Properties { user_properties: vec![(key.into(), value.into())], ..Properties::default() }
}

#[test]
fn connect_v311() {
    let bytes = frame(0x10, &cat![s("MQTT"), [4, 0x02, 0, 60], s("c1")]);
    check(Protocol::V311, &bytes, Packet::Connect(Box::new(connect(Protocol::V311, "c1"))));

    let full = Connect {
        clean_start: false,
        keep_alive: 10,
        will: Some(Will {
            topic: "w/t".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"pw")),
        ..connect(Protocol::V311, "dev")
    };
    let bytes = frame(0x10, &cat![s("MQTT"), [4, 0xEC, 0, 10], s("dev"), s("w/t"), bin(b"bye"), s("user"), bin(b"pw")]);
    check(Protocol::V311, &bytes, Packet::Connect(Box::new(full)));
}

#[test]
fn connect_v5() {
    let packet = Connect {
        keep_alive: 30,
        will: Some(Will {
            topic: "gone".into(),
            payload: Bytes::new(),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: Properties { will_delay_interval: Some(5), ..Properties::default() },
        }),
        password: Some(Bytes::from_static(b"token")),
        properties: Properties {
            session_expiry_interval: Some(60),
            receive_maximum: Some(10),
            user_properties: vec![("k".into(), "v".into())],
            ..Properties::default()
        },
        ..connect(Protocol::V5, "")
    };
    let connect_props = props(&cat![[0x11, 0, 0, 0, 60], [0x21, 0, 10], [0x26], s("k"), s("v")]);
    let will_props = props(&[0x18, 0, 0, 0, 5]);
    let bytes = frame(
        0x10,
        &cat![s("MQTT"), [5, 0x56, 0, 30], connect_props, s(""), will_props, s("gone"), bin(b""), bin(b"token"),],
    );
    check(Protocol::V5, &bytes, Packet::Connect(Box::new(packet)));
}

#[test]
fn connect_is_read_by_its_own_level() {
    let bytes = frame(0x10, &cat![s("MQTT"), [5, 0x02, 0, 60], [0], s("c")]);
    let expected = Packet::Connect(Box::new(connect(Protocol::V5, "c")));
    for protocol in [None, V3, V5] {
        assert_eq!(decode_all(protocol, &bytes), Ok(expected.clone()));
    }
}

#[test]
fn connack() {
    let present = ConnAck { session_present: true, code: 0, properties: Properties::default() };
    check(Protocol::V311, &[0x20, 2, 1, 0], Packet::ConnAck(present.clone()));
    check(Protocol::V311, &[0x20, 2, 0, 5], Packet::ConnAck(ConnAck { code: 5, ..ConnAck::default() }));
    check(Protocol::V5, &[0x20, 3, 1, 0, 0], Packet::ConnAck(present));
    let with_props = ConnAck {
        session_present: false,
        code: 0x87,
        properties: Properties {
            assigned_client_identifier: Some("auto-1".into()),
            maximum_qos: Some(1),
            ..Properties::default()
        },
    };
    let bytes = frame(0x20, &cat![[0, 0x87], props(&cat![[0x12], s("auto-1"), [0x24, 1]])]);
    check(Protocol::V5, &bytes, Packet::ConnAck(with_props));
}

#[test]
fn publish() {
    let qos0 = Publish { topic: "a/b".into(), payload: Bytes::from_static(b"hi"), ..Publish::default() };
    check(Protocol::V311, &frame(0x30, &cat![s("a/b"), b"hi"]), Packet::Publish(qos0.clone()));
    check(Protocol::V5, &frame(0x30, &cat![s("a/b"), [0], b"hi"]), Packet::Publish(qos0));

    let qos1 = Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "a".into(),
        packet_id: 7,
        payload: Bytes::new(),
        properties: Properties::default(),
    };
    check(Protocol::V311, &frame(0x3B, &cat![s("a"), [0, 7]]), Packet::Publish(qos1));

    let qos2 = Publish {
        qos: QoS::ExactlyOnce,
        topic: "t".into(),
        packet_id: 1,
        payload: Bytes::from_static(b"{}"),
        properties: Properties {
            payload_format_indicator: Some(1),
            subscription_identifiers: vec![129, 3],
            topic_alias: Some(3),
            ..Properties::default()
        },
        ..Publish::default()
    };
    let bytes = frame(0x34, &cat![s("t"), [0, 1], props(&[0x01, 1, 0x0B, 0x81, 0x01, 0x0B, 3, 0x23, 0, 3]), b"{}"]);
    check(Protocol::V5, &bytes, Packet::Publish(qos2));

    let aliased =
        Publish { properties: Properties { topic_alias: Some(1), ..Properties::default() }, ..Publish::default() };
    check(Protocol::V5, &frame(0x30, &cat![s(""), props(&[0x23, 0, 1])]), Packet::Publish(aliased));
}

#[test]
fn pub_responses() {
    check(Protocol::V311, &[0x40, 2, 0, 1], Packet::PubAck(PubResp::new(1)));
    check(Protocol::V311, &[0x50, 2, 0x12, 0x34], Packet::PubRec(PubResp::new(0x1234)));
    check(Protocol::V311, &[0x62, 2, 0, 1], Packet::PubRel(PubResp::new(1)));
    check(Protocol::V311, &[0x70, 2, 0, 1], Packet::PubComp(PubResp::new(1)));
    check(Protocol::V5, &[0x40, 2, 0, 1], Packet::PubAck(PubResp::new(1)));
    let not_found = PubResp { reason: 0x92, ..PubResp::new(1) };
    check(Protocol::V5, &[0x62, 3, 0, 1, 0x92], Packet::PubRel(not_found.clone()));
    let explained =
        PubResp { properties: Properties { reason_string: Some("no".into()), ..Properties::default() }, ..not_found };
    let bytes = frame(0x70, &cat![[0, 1, 0x92], props(&cat![[0x1F], s("no")])]);
    check(Protocol::V5, &bytes, Packet::PubComp(explained));
}

#[test]
fn pub_response_long_forms_of_success() {
    check_decode(Protocol::V5, &[0x40, 3, 0, 1, 0], Packet::PubAck(PubResp::new(1)));
    check_decode(Protocol::V5, &[0x50, 4, 0, 1, 0, 0], Packet::PubRec(PubResp::new(1)));
}

#[test]
fn subscribe() {
    let v311 = Subscribe {
        packet_id: 10,
        filters: vec![
            SubscribeFilter {
                filter: "a/+".into(),
                options: SubOptions { qos: QoS::AtLeastOnce, ..SubOptions::default() },
            },
            SubscribeFilter {
                filter: "#".into(),
                options: SubOptions { qos: QoS::ExactlyOnce, ..SubOptions::default() },
            },
        ],
        properties: Properties::default(),
    };
    let bytes = frame(0x82, &cat![[0, 10], s("a/+"), [1], s("#"), [2]]);
    check(Protocol::V311, &bytes, Packet::Subscribe(v311));

    let v5 = Subscribe {
        packet_id: 10,
        filters: vec![SubscribeFilter {
            filter: "a/#".into(),
            options: SubOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: 2,
            },
        }],
        properties: Properties { subscription_identifiers: vec![5], ..Properties::default() },
    };
    let bytes = frame(0x82, &cat![[0, 10], props(&[0x0B, 5]), s("a/#"), [0x2D]]);
    check(Protocol::V5, &bytes, Packet::Subscribe(v5));
}

#[test]
fn suback() {
    let v311 = SubAck { packet_id: 10, reasons: vec![1, 0x80], properties: Properties::default() };
    check(Protocol::V311, &[0x90, 4, 0, 10, 1, 0x80], Packet::SubAck(v311));
    let v5 = SubAck { packet_id: 10, reasons: vec![0x8F, 2], properties: user("a", "b") };
    let bytes = frame(0x90, &cat![[0, 10], props(&cat![[0x26], s("a"), s("b")]), [0x8F, 2]]);
    check(Protocol::V5, &bytes, Packet::SubAck(v5));
}

#[test]
fn unsubscribe() {
    let packet =
        Unsubscribe { packet_id: 3, filters: vec!["a/#".into(), "b".into()], properties: Properties::default() };
    check(Protocol::V311, &frame(0xA2, &cat![[0, 3], s("a/#"), s("b")]), Packet::Unsubscribe(packet.clone()));
    check(Protocol::V5, &frame(0xA2, &cat![[0, 3, 0], s("a/#"), s("b")]), Packet::Unsubscribe(packet));
}

#[test]
fn unsuback() {
    let v311 = UnsubAck { packet_id: 3, reasons: Vec::new(), properties: Properties::default() };
    check(Protocol::V311, &[0xB0, 2, 0, 3], Packet::UnsubAck(v311));
    let v5 = UnsubAck { packet_id: 3, reasons: vec![0, 0x11], properties: Properties::default() };
    check(Protocol::V5, &[0xB0, 5, 0, 3, 0, 0, 0x11], Packet::UnsubAck(v5));
}

#[test]
fn ping() {
    for protocol in [Protocol::V311, Protocol::V5] {
        check(protocol, &[0xC0, 0], Packet::PingReq);
        check(protocol, &[0xD0, 0], Packet::PingResp);
    }
}

#[test]
fn disconnect() {
    check(Protocol::V311, &[0xE0, 0], Packet::Disconnect(Disconnect::default()));
    check(Protocol::V5, &[0xE0, 0], Packet::Disconnect(Disconnect::default()));
    let with_will = Disconnect { reason: 0x04, properties: Properties::default() };
    check(Protocol::V5, &[0xE0, 1, 0x04], Packet::Disconnect(with_will));
    let expiry =
        Disconnect { reason: 0, properties: Properties { session_expiry_interval: Some(0), ..Properties::default() } };
    check(Protocol::V5, &[0xE0, 7, 0, 5, 0x11, 0, 0, 0, 0], Packet::Disconnect(expiry));
    check_decode(Protocol::V5, &[0xE0, 1, 0], Packet::Disconnect(Disconnect::default()));
    check_decode(Protocol::V5, &[0xE0, 2, 0, 0], Packet::Disconnect(Disconnect::default()));
}

#[test]
fn auth() {
    let packet = Auth {
        reason: 0x18,
        properties: Properties {
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::from_static(b"x")),
            ..Properties::default()
        },
    };
    let bytes = frame(0xF0, &cat![[0x18], props(&cat![[0x15], s("SCRAM"), [0x16], bin(b"x")])]);
    check(Protocol::V5, &bytes, Packet::Auth(packet));
}

#[test]
fn properties_in_any_order() {
    let bytes = frame(0x20, &cat![[0, 0], props(&[0x24, 0, 0x13, 0, 30])]);
    let expected = ConnAck {
        properties: Properties { maximum_qos: Some(0), server_keep_alive: Some(30), ..Properties::default() },
        ..ConnAck::default()
    };
    check_decode(Protocol::V5, &bytes, Packet::ConnAck(expected));
}

#[test]
fn consumes_one_packet_at_a_time() {
    let mut buf = BytesMut::from(&cat![[0x40, 2, 0, 1], [0xC0, 0], [0xD0]][..]);
    assert_eq!(decode(&mut buf, V3, 1024), Ok(Some(Packet::PubAck(PubResp::new(1)))));
    assert_eq!(decode(&mut buf, V3, 1024), Ok(Some(Packet::PingReq)));
    assert_eq!(decode(&mut buf, V3, 1024), Ok(None));
    assert_eq!(&buf[..], &[0xD0]);
}

#[test]
fn incomplete_input_is_left_untouched() {
    for bytes in [&[][..], &[0x30], &[0x30, 0xff, 0xff, 0x7f], &[0x30, 5, 0, 1, b'a']] {
        let mut buf = BytesMut::from(bytes);
        let capacity = buf.capacity();
        assert_eq!(decode(&mut buf, V5, usize::MAX), Ok(None), "{bytes:02x?}");
        assert_eq!(&buf[..], bytes);
        assert_eq!(buf.capacity(), capacity);
    }
}

#[test]
fn payload_shares_the_input_buffer() {
    let mut buf = BytesMut::from(&frame(0x30, &cat![s("t"), [0; 100]])[..]);
    let start = buf.as_ptr() as usize;
    let Ok(Some(Packet::Publish(publish))) = decode(&mut buf, V3, usize::MAX) else {
        panic!("a PUBLISH");
    };
    assert_eq!(publish.payload.as_ptr() as usize, start + 5);
}

#[test]
fn packet_of_exactly_max_size() {
    let bytes = frame(0x30, &cat![s("t"), [0; 10]]);
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(matches!(decode(&mut buf, V3, bytes.len()), Ok(Some(Packet::Publish(_)))));
}
