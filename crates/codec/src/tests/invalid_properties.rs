//! MQTT 5.0 property rules: identifiers, where each property may appear, duplicates, values.

use super::{V5, bin, cat, decode_all, err, frame, malformed, props, protocol_error, s};
use crate::{DecodeError, Packet};

fn publish(properties: &[u8]) -> Vec<u8> {
    frame(0x30, &cat![s("t"), props(properties)])
}

fn connect(properties: &[u8]) -> Vec<u8> {
    frame(0x10, &cat![s("MQTT"), [5, 0x02, 0, 60], props(properties), s("c")])
}

fn connack(properties: &[u8]) -> Vec<u8> {
    frame(0x20, &cat![[0, 0], props(properties)])
}

fn subscribe(properties: &[u8]) -> Vec<u8> {
    frame(0x82, &cat![[0, 1], props(properties), s("a"), [0]])
}

#[test]
fn unknown_property_identifier() {
    for id in [0x00, 0x04, 0x0A, 0x14, 0x2B, 0x7F, 0x80] {
        malformed(V5, &publish(&[id, 0]));
    }
}

#[test]
fn property_not_allowed_in_the_packet() {
    malformed(V5, &publish(&[0x11, 0, 0, 0, 1]));
    malformed(None, &connect(&[0x23, 0, 1]));
    malformed(None, &connect(&[0x18, 0, 0, 0, 1]));
    malformed(V5, &connack(&[0x17, 1]));
    malformed(V5, &subscribe(&[0x1F, 0, 0]));
    malformed(V5, &frame(0xA2, &cat![[0, 1], props(&[0x0B, 1]), s("a")]));
    malformed(V5, &frame(0x40, &cat![[0, 1, 0], props(&[0x11, 0, 0, 0, 1])]));
    malformed(V5, &frame(0xE0, &cat![[0], props(&[0x21, 0, 1])]));
    let will_with_topic_alias = cat![props(&[0x23, 0, 1]), s("w"), bin(b"x")];
    let bytes = frame(0x10, &cat![s("MQTT"), [5, 0x06, 0, 60], [0], s("c"), will_with_topic_alias]);
    malformed(None, &bytes);
}

#[test]
fn duplicated_property() {
    protocol_error(V5, &publish(&cat![[0x03], s("a"), [0x03], s("b")]));
    protocol_error(V5, &publish(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1]));
    protocol_error(None, &connect(&[0x21, 0, 1, 0x21, 0, 1]));
    protocol_error(V5, &connack(&[0x24, 0, 0x24, 0]));
    protocol_error(V5, &subscribe(&[0x0B, 1, 0x0B, 2]));
}

#[test]
fn repeatable_properties() {
    let users = publish(&cat![[0x26], s("k"), s("1"), [0x26], s("k"), s("2")]);
    let Ok(Packet::Publish(p)) = decode_all(V5, &users) else { panic!("user properties repeat") };
    assert_eq!(p.properties.user_properties, [("k".into(), "1".into()), ("k".into(), "2".into())]);
    let ids = publish(&[0x0B, 1, 0x0B, 2]);
    let Ok(Packet::Publish(p)) = decode_all(V5, &ids) else { panic!("PUBLISH subscription ids repeat") };
    assert_eq!(p.properties.subscription_identifiers, [1, 2]);
}

#[test]
fn subscription_identifier_0() {
    protocol_error(V5, &subscribe(&[0x0B, 0]));
    protocol_error(V5, &publish(&[0x0B, 0]));
}

#[test]
fn subscription_identifier_not_in_shortest_form() {
    malformed(V5, &subscribe(&[0x0B, 0x81, 0x00]));
}

#[test]
fn receive_maximum_0() {
    protocol_error(None, &connect(&[0x21, 0, 0]));
    protocol_error(V5, &connack(&[0x21, 0, 0]));
}

#[test]
fn maximum_packet_size_0() {
    protocol_error(None, &connect(&[0x27, 0, 0, 0, 0]));
    protocol_error(V5, &connack(&[0x27, 0, 0, 0, 0]));
}

#[test]
fn topic_alias_0() {
    protocol_error(V5, &publish(&[0x23, 0, 0]));
}

#[test]
fn one_byte_flags_other_than_0_or_1() {
    protocol_error(V5, &publish(&[0x01, 2]));
    protocol_error(None, &connect(&[0x17, 2]));
    protocol_error(None, &connect(&[0x19, 2]));
    protocol_error(V5, &connack(&[0x24, 2]));
    protocol_error(V5, &connack(&[0x25, 2]));
    protocol_error(V5, &connack(&[0x28, 2]));
    protocol_error(V5, &connack(&[0x29, 2]));
    protocol_error(V5, &connack(&[0x2A, 2]));
    assert!(decode_all(V5, &connack(&[0x24, 1, 0x25, 0, 0x28, 1, 0x29, 0, 0x2A, 1])).is_ok());
}

#[test]
fn property_length_exceeding_the_remaining_length() {
    malformed(V5, &frame(0x30, &cat![s("t"), [5, 0x01, 1]]));
    malformed(V5, &frame(0xE0, &[0, 3, 0x11]));
    malformed(V5, &frame(0x20, &[0, 0, 0x80]));
}

#[test]
fn property_value_running_past_its_block() {
    malformed(V5, &frame(0x30, &cat![s("t"), [2, 0x02, 0], [0, 0, 1]]));
    malformed(V5, &frame(0x30, &cat![s("t"), [3, 0x26, 0, 5], b"abcdefgh"]));
}

#[test]
fn authentication_data_without_method() {
    protocol_error(None, &connect(&cat![[0x16], bin(b"x")]));
    protocol_error(V5, &connack(&cat![[0x16], bin(b"x")]));
}

#[test]
fn response_topic_must_be_a_topic_name() {
    for topic in ["a/#", "+", ""] {
        protocol_error(V5, &publish(&cat![[0x08], s(topic)]));
    }
    let Ok(Packet::Publish(p)) = decode_all(V5, &publish(&cat![[0x08], s("reply/to")])) else {
        panic!("a valid response topic");
    };
    assert_eq!(p.properties.response_topic.as_deref(), Some("reply/to"));
}

#[test]
fn properties_are_not_read_under_v311() {
    let bytes = frame(0x30, &cat![s("t"), [0x03, 0x26, 0, 0]]);
    let Ok(Packet::Publish(p)) = decode_all(super::V3, &bytes) else { panic!("a PUBLISH") };
    assert_eq!(&p.payload[..], &[0x03, 0x26, 0, 0]);
    assert_eq!(
        err(super::V3, &[0x40, 3, 0, 1, 0x10]),
        DecodeError::MalformedPacket("bytes after the end of the packet's content")
    );
}
