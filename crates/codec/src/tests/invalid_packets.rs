//! Rules of the variable header and payload of every packet other than CONNECT: packet
//! identifiers, UTF-8 strings, topic names, subscriptions, reason codes.

use super::{V3, V5, cat, decode_all, err, frame, malformed, props, protocol_error, s};
use crate::{DecodeError, Packet, topic};

#[test]
fn packet_identifier_zero() {
    for protocol in [V3, V5] {
        protocol_error(protocol, &frame(0x32, &cat![s("t"), [0, 0], [0]]));
        protocol_error(protocol, &[0x40, 2, 0, 0]);
        protocol_error(protocol, &[0x50, 2, 0, 0]);
        protocol_error(protocol, &[0x62, 2, 0, 0]);
        protocol_error(protocol, &[0x70, 2, 0, 0]);
        protocol_error(protocol, &[0x90, 4, 0, 0, 0, 0]);
        protocol_error(protocol, &[0xB0, 3, 0, 0, 0]);
    }
    protocol_error(V3, &frame(0x82, &cat![[0, 0], s("a"), [0]]));
    protocol_error(V5, &frame(0x82, &cat![[0, 0, 0], s("a"), [0]]));
    protocol_error(V3, &frame(0xA2, &cat![[0, 0], s("a")]));
    protocol_error(V5, &frame(0xA2, &cat![[0, 0, 0], s("a")]));
}

#[test]
fn invalid_utf8() {
    for bad in [&[0xC3, 0x28][..], &[0xED, 0xA0, 0x80], &[0xFF], &[b'a', 0xE2, 0x82]] {
        let topic = cat![(bad.len() as u16).to_be_bytes(), bad];
        malformed(V3, &frame(0x30, &topic));
        malformed(V5, &frame(0x30, &cat![topic, [0]]));
    }
}

#[test]
fn null_character() {
    malformed(V3, &frame(0x30, &s("a\0b")));
    malformed(V5, &frame(0x30, &cat![s("a\0b"), [0]]));
    malformed(V3, &frame(0x82, &cat![[0, 1], s("a\0"), [0]]));
}

#[test]
fn disallowed_code_points_under_v5() {
    for text in ["a\u{1}", "\u{1f}", "\u{7f}", "\u{85}", "\u{9f}", "\u{fdd0}", "\u{fffe}", "\u{1ffff}"] {
        malformed(V5, &frame(0x30, &cat![s(text), [0]]));
        let user_property = props(&cat![[0x26], s("k"), s(text)]);
        malformed(V5, &frame(0x30, &cat![s("t"), user_property]));
        assert!(decode_all(V3, &frame(0x30, &s(text))).is_ok(), "{text:?} is fine in 3.1.1");
    }
    assert!(decode_all(V5, &frame(0x30, &cat![s("\u{a0}é€😀\u{fffd}"), [0]])).is_ok());
}

#[test]
fn publish_topic_with_wildcards() {
    for topic in ["a/+", "+", "a/#", "#", "a+b"] {
        assert_eq!(err(V3, &frame(0x30, &s(topic))), DecodeError::TopicNameInvalid);
        assert_eq!(err(V5, &frame(0x30, &cat![s(topic), [0]])), DecodeError::TopicNameInvalid);
    }
}

#[test]
fn empty_publish_topic() {
    assert_eq!(err(V3, &frame(0x30, &s(""))), DecodeError::TopicNameInvalid);
    assert_eq!(
        err(V5, &frame(0x30, &cat![s(""), [0]])),
        DecodeError::ProtocolError("empty topic name without topic alias")
    );
}

#[test]
fn subscribe_without_filters() {
    protocol_error(V3, &[0x82, 2, 0, 1]);
    protocol_error(V5, &[0x82, 3, 0, 1, 0]);
}

#[test]
fn subscription_qos_3() {
    malformed(V3, &frame(0x82, &cat![[0, 1], s("a"), [3]]));
    malformed(V5, &frame(0x82, &cat![[0, 1, 0], s("a"), [3]]));
}

#[test]
fn subscription_reserved_bits_v5() {
    malformed(V5, &frame(0x82, &cat![[0, 1, 0], s("a"), [0x40]]));
    malformed(V5, &frame(0x82, &cat![[0, 1, 0], s("a"), [0x81]]));
}

#[test]
fn subscription_upper_bits_v311() {
    for options in [0x04, 0x08, 0x10, 0x20, 0x41, 0x80] {
        malformed(V3, &frame(0x82, &cat![[0, 1], s("a"), [options]]));
    }
}

#[test]
fn retain_handling_3() {
    protocol_error(V5, &frame(0x82, &cat![[0, 1, 0], s("a"), [0x30]]));
}

#[test]
fn no_local_on_shared_subscription() {
    protocol_error(V5, &frame(0x82, &cat![[0, 1, 0], s("$share/g/a"), [0x04]]));
    assert!(decode_all(V5, &frame(0x82, &cat![[0, 1, 0], s("$share/g/a"), [0x01]])).is_ok());
}

#[test]
fn invalid_subscribe_filters_are_left_to_the_broker() {
    for filter in ["a/#/b", "a+", "", "$share//a", "$share/g"] {
        for (protocol, header) in [(V3, &[0, 1][..]), (V5, &[0, 1, 0])] {
            let bytes = frame(0x82, &cat![header, s(filter), [1]]);
            let Ok(Packet::Subscribe(sub)) = decode_all(protocol, &bytes) else {
                panic!("{filter:?} should be returned to the broker");
            };
            assert!(!topic::valid_topic_filter(&sub.filters[0].filter));
        }
    }
}

#[test]
fn unsubscribe_without_filters() {
    protocol_error(V3, &[0xA2, 2, 0, 1]);
    protocol_error(V5, &[0xA2, 3, 0, 1, 0]);
}

#[test]
fn invalid_unsubscribe_filters() {
    for filter in ["a/#/b", "+a", ""] {
        let v311 = frame(0xA2, &cat![[0, 1], s("ok"), s(filter)]);
        assert_eq!(err(V3, &v311), DecodeError::TopicFilterInvalid);
        let v5 = frame(0xA2, &cat![[0, 1, 0], s(filter)]);
        assert!(matches!(decode_all(V5, &v5), Ok(Packet::Unsubscribe(_))), "answered by UNSUBACK 0x8F");
    }
}

#[test]
fn reason_codes_outside_the_packets_list() {
    malformed(V5, &[0x40, 3, 0, 1, 0x05]);
    malformed(V5, &[0x50, 3, 0, 1, 0x92]);
    malformed(V5, &[0x62, 3, 0, 1, 0x10]);
    malformed(V5, &[0x70, 3, 0, 1, 0x80]);
    malformed(V3, &[0x90, 3, 0, 1, 0x03]);
    malformed(V3, &[0x90, 3, 0, 1, 0x8F]);
    malformed(V5, &[0x90, 4, 0, 1, 0, 0x05]);
    malformed(V5, &[0xB0, 4, 0, 1, 0, 0x01]);
    malformed(V5, &[0xE0, 1, 0x01]);
    malformed(V5, &[0xE0, 1, 0x84]);
    malformed(V5, &frame(0xF0, &cat![[0x01], props(&cat![[0x15], s("m")])]));
    malformed(V5, &[0x20, 3, 0, 0x01, 0]);
    malformed(V5, &[0x20, 3, 0, 0x8E, 0]);
}

#[test]
fn connack_reserved_flags() {
    malformed(V3, &[0x20, 2, 0x02, 0]);
    malformed(V5, &[0x20, 3, 0x80, 0, 0]);
}

#[test]
fn connack_session_present_with_error_code() {
    protocol_error(V3, &[0x20, 2, 1, 5]);
    protocol_error(V5, &[0x20, 3, 1, 0x80, 0]);
}

#[test]
fn auth_without_authentication_method() {
    protocol_error(V5, &[0xF0, 0]);
    protocol_error(V5, &[0xF0, 2, 0x18, 0]);
    protocol_error(V5, &frame(0xF0, &cat![[0x18], props(&cat![[0x1F], s("why")])]));
}
