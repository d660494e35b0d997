//! CONNECT rules: protocol name and level, connect flags, will topic.

use super::{V3, V5, bin, cat, decode_all, err, frame, malformed, s};
use crate::{DecodeError, Packet};

/// A CONNECT with the given protocol level, connect flags and payload after the client id "c".
fn connect(level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let properties: &[u8] = if level == 5 { &[0] } else { &[] };
    frame(0x10, &cat![s("MQTT"), [level, flags, 0, 60], properties, s("c"), rest])
}

#[test]
fn protocol_name_must_be_mqtt() {
    let bytes = frame(0x10, &cat![s("MQTX"), [4, 0x02, 0, 60], s("c")]);
    assert_eq!(err(None, &bytes), DecodeError::MalformedPacket("protocol name is not MQTT"));
}

#[test]
fn unsupported_protocol_levels() {
    let mqtt31 = frame(0x10, &cat![s("MQIsdp"), [3, 0x02, 0, 60], s("c")]);
    assert_eq!(err(None, &mqtt31), DecodeError::UnsupportedProtocolVersion(3));
    for level in [0, 3, 6, 255] {
        let bytes = frame(0x10, &cat![s("MQTT"), [level, 0x02, 0, 60], s("c")]);
        assert_eq!(err(None, &bytes), DecodeError::UnsupportedProtocolVersion(level));
        assert_eq!(err(V5, &bytes), DecodeError::UnsupportedProtocolVersion(level));
    }
    assert_eq!(DecodeError::UnsupportedProtocolVersion(3).reason_code(), 0x84);
}

#[test]
fn reserved_connect_flag() {
    malformed(None, &connect(4, 0x03, &[]));
    malformed(None, &connect(5, 0x01, &[]));
}

#[test]
fn will_qos_3() {
    let will = cat![s("w"), bin(b"x")];
    malformed(None, &connect(4, 0x1C, &will));
    malformed(None, &connect(5, 0x1C, &cat![[0], will]));
}

#[test]
fn will_qos_or_retain_without_will_flag() {
    for level in [4, 5] {
        malformed(None, &connect(level, 0x08, &[]));
        malformed(None, &connect(level, 0x10, &[]));
        malformed(None, &connect(level, 0x20, &[]));
    }
}

#[test]
fn password_without_user_name() {
    malformed(None, &connect(4, 0x42, &bin(b"pw")));
    let Ok(Packet::Connect(c)) = decode_all(None, &connect(5, 0x42, &bin(b"pw"))) else {
        panic!("5.0 allows a password without a user name");
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
}

#[test]
fn will_topic_must_be_a_topic_name() {
    for topic in ["a/+", "#", ""] {
        let will = cat![s(topic), bin(b"x")];
        assert_eq!(err(None, &connect(4, 0x06, &will)), DecodeError::TopicNameInvalid);
        assert_eq!(err(None, &connect(5, 0x06, &cat![[0], will])), DecodeError::TopicNameInvalid);
    }
}

#[test]
fn flags_announce_missing_fields() {
    malformed(None, &connect(4, 0x06, &[]));
    malformed(None, &connect(4, 0x82, &[]));
    malformed(None, &connect(4, 0xC2, &s("user")));
    malformed(V3, &frame(0x10, &cat![s("MQTT"), [4, 0x02, 0]]));
}

#[test]
fn client_id_strings_are_checked() {
    let bytes = frame(0x10, &cat![s("MQTT"), [4, 0x02, 0, 60], [0, 2, 0xC3, 0x28]]);
    malformed(None, &bytes);
    let control = frame(0x10, &cat![s("MQTT"), [5, 0x02, 0, 60, 0], s("a\u{7}")]);
    malformed(None, &control);
    let v311 = frame(0x10, &cat![s("MQTT"), [4, 0x02, 0, 60], s("a\u{7}")]);
    assert!(decode_all(None, &v311).is_ok(), "3.1.1 only forbids U+0000");
}
