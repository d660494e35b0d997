//! Proptest strategies: every packet type, valid for the protocol it is generated for, with
//! 5.0 properties drawn from those each packet allows.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;

use crate::decode::codes;
use crate::properties::{Context, id};
use crate::wire::MAX_VARINT;
use crate::{
    Auth, ConnAck, Connect, Disconnect, Packet, Properties, Protocol, PubResp, Publish, QoS, SubAck, SubOptions,
    Subscribe, SubscribeFilter, UnsubAck, Unsubscribe, Will, topic,
};

/// Any packet valid under `protocol`.
pub(super) fn packet(protocol: Protocol) -> BoxedStrategy<Packet> {
    let mut arms = vec![
        connect(protocol).prop_map(|c| Packet::Connect(Box::new(c))).boxed(),
        connack(protocol).prop_map(Packet::ConnAck).boxed(),
        publish(protocol).prop_map(Packet::Publish).boxed(),
        pub_resp(protocol, codes::PUBACK).prop_map(Packet::PubAck).boxed(),
        pub_resp(protocol, codes::PUBACK).prop_map(Packet::PubRec).boxed(),
        pub_resp(protocol, codes::PUBREL).prop_map(Packet::PubRel).boxed(),
        pub_resp(protocol, codes::PUBREL).prop_map(Packet::PubComp).boxed(),
        subscribe(protocol).prop_map(Packet::Subscribe).boxed(),
        suback(protocol).prop_map(Packet::SubAck).boxed(),
        unsubscribe(protocol).prop_map(Packet::Unsubscribe).boxed(),
        unsuback(protocol).prop_map(Packet::UnsubAck).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(protocol).prop_map(Packet::Disconnect).boxed(),
    ];
    if protocol == Protocol::V5 {
        arms.push(auth().prop_map(Packet::Auth).boxed());
    }
    Union::new(arms).boxed()
}

/// Strings valid under both protocols, multi-byte characters included.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _/.é€😀-]{0,8}"
}

fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9é$]{1,4}(/[a-z0-9]{0,4}){0,3}"
}

/// A syntactically valid topic filter, sometimes shared.
fn valid_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof!["[a-z]{1,3}", Just("+".to_string()), Just(String::new())];
    (vec(level, 1..4), any::<bool>(), option::of("[a-z]{1,3}")).prop_map(|(levels, hash, group)| {
        let mut filter = levels.join("/");
        if filter.is_empty() {
            filter.push('+');
        }
        if hash {
            filter.push_str("/#");
        }
        match group {
            Some(group) => format!("$share/{group}/{filter}"),
            None => filter,
        }
    })
}

/// Any filter string: SUBSCRIBE (both protocols) and 5.0 UNSUBSCRIBE carry invalid ones too.
fn any_filter() -> impl Strategy<Value = String> {
    prop_oneof![valid_filter(), text(), "[a-z+#/]{0,6}"]
}

fn data() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    select(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][..])
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    option::of(0..=1u8)
}

/// Properties for `context`: none under 3.1.1; under 5.0 often none, otherwise a random subset
/// of those the context allows.
fn properties(protocol: Protocol, context: Context) -> BoxedStrategy<Properties> {
    if protocol == Protocol::V311 {
        return Just(Properties::default()).boxed();
    }
    let publish_like = (
        flag(),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic_name()),
        option::of(data()),
        vec(1..=MAX_VARINT, 0..3),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(any::<u16>()),
    );
    let connect_like = (
        option::of(text()),
        option::of(data()),
        flag(),
        option::of(any::<u32>()),
        flag(),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(1..=u16::MAX),
    );
    let connack_like = (
        option::of(any::<u16>()),
        option::of(1..=u16::MAX),
        flag(),
        flag(),
        vec((text(), text()), 0..3),
        option::of(1..=u32::MAX),
        flag(),
        flag(),
        flag(),
    );
    let full = (publish_like, connect_like, connack_like).prop_map(move |(a, b, c)| {
        let p = Properties {
            payload_format_indicator: a.0,
            message_expiry_interval: a.1,
            content_type: a.2,
            response_topic: a.3,
            correlation_data: a.4,
            subscription_identifiers: a.5,
            session_expiry_interval: a.6,
            assigned_client_identifier: a.7,
            server_keep_alive: a.8,
            authentication_method: b.0,
            authentication_data: b.1,
            request_problem_information: b.2,
            will_delay_interval: b.3,
            request_response_information: b.4,
            response_information: b.5,
            server_reference: b.6,
            reason_string: b.7,
            receive_maximum: b.8,
            topic_alias_maximum: c.0,
            topic_alias: c.1,
            maximum_qos: c.2,
            retain_available: c.3,
            user_properties: c.4,
            maximum_packet_size: c.5,
            wildcard_subscription_available: c.6,
            subscription_identifier_available: c.7,
            shared_subscription_available: c.8,
        };
        restrict(p, context)
    });
    let none = Just(restrict(Properties::default(), context));
    prop_oneof![1 => none, 2 => full].boxed()
}

/// Clears what `context` does not allow, and adds what it requires.
fn restrict(mut p: Properties, context: Context) -> Properties {
    let allowed = context.allowed();
    let keep = |id: u8| allowed & (1 << id) != 0;
    macro_rules! clear {
        ($($field:ident: $id:ident),* $(,)?) => {
            $(if !keep(id::$id) { p.$field = None; })*
        };
    }
    clear!(
        payload_format_indicator: PAYLOAD_FORMAT_INDICATOR,
        message_expiry_interval: MESSAGE_EXPIRY_INTERVAL,
        content_type: CONTENT_TYPE,
        response_topic: RESPONSE_TOPIC,
        correlation_data: CORRELATION_DATA,
        session_expiry_interval: SESSION_EXPIRY_INTERVAL,
        assigned_client_identifier: ASSIGNED_CLIENT_IDENTIFIER,
        server_keep_alive: SERVER_KEEP_ALIVE,
        authentication_method: AUTHENTICATION_METHOD,
        authentication_data: AUTHENTICATION_DATA,
        request_problem_information: REQUEST_PROBLEM_INFORMATION,
        will_delay_interval: WILL_DELAY_INTERVAL,
        request_response_information: REQUEST_RESPONSE_INFORMATION,
        response_information: RESPONSE_INFORMATION,
        server_reference: SERVER_REFERENCE,
        reason_string: REASON_STRING,
        receive_maximum: RECEIVE_MAXIMUM,
        topic_alias_maximum: TOPIC_ALIAS_MAXIMUM,
        topic_alias: TOPIC_ALIAS,
        maximum_qos: MAXIMUM_QOS,
        retain_available: RETAIN_AVAILABLE,
        maximum_packet_size: MAXIMUM_PACKET_SIZE,
        wildcard_subscription_available: WILDCARD_SUBSCRIPTION_AVAILABLE,
        subscription_identifier_available: SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        shared_subscription_available: SHARED_SUBSCRIPTION_AVAILABLE,
    );
    match context {
        Context::Publish => {}
        Context::Subscribe => p.subscription_identifiers.truncate(1),
        _ => p.subscription_identifiers.clear(),
    }
    let needs_method = context == Context::Auth || p.authentication_data.is_some();
    if needs_method && p.authentication_method.is_none() {
        p.authentication_method = Some("SCRAM-SHA-256".into());
    }
    p
}

fn will(protocol: Protocol) -> impl Strategy<Value = Will> {
    (topic_name(), data(), qos(), any::<bool>(), properties(protocol, Context::Will))
        .prop_map(|(topic, payload, qos, retain, properties)| Will { topic, payload, qos, retain, properties })
}

fn connect(protocol: Protocol) -> impl Strategy<Value = Connect> {
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        option::of(will(protocol)),
        option::of(text()),
        option::of(data()),
        properties(protocol, Context::Connect),
    )
        .prop_map(move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
            let password = password.filter(|_| protocol == Protocol::V5 || username.is_some());
            Connect { protocol, clean_start, keep_alive, client_id, will, username, password, properties }
        })
}

fn connack(protocol: Protocol) -> impl Strategy<Value = ConnAck> {
    let code = match protocol {
        Protocol::V311 => (0..=5u8).boxed(),
        Protocol::V5 => select(codes::CONNACK).boxed(),
    };
    (any::<bool>(), code, properties(protocol, Context::ConnAck)).prop_map(|(present, code, properties)| ConnAck {
        session_present: present && code == 0,
        code,
        properties,
    })
}

fn publish(protocol: Protocol) -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        packet_id(),
        data(),
        properties(protocol, Context::Publish),
    )
        .prop_map(|(qos, dup, retain, topic, aliased, id, payload, properties)| {
            let at_most_once = qos == QoS::AtMostOnce;
            let topic = if aliased && properties.topic_alias.is_some() { String::new() } else { topic };
            Publish {
                dup: dup && !at_most_once,
                qos,
                retain,
                topic,
                packet_id: if at_most_once { 0 } else { id },
                payload,
                properties,
            }
        })
}

fn pub_resp(protocol: Protocol, valid: &'static [u8]) -> impl Strategy<Value = PubResp> {
    (packet_id(), select(valid), properties(protocol, Context::PubResp)).prop_map(
        move |(packet_id, reason, properties)| PubResp {
            packet_id,
            reason: if protocol == Protocol::V311 { 0 } else { reason },
            properties,
        },
    )
}

fn options(protocol: Protocol) -> impl Strategy<Value = SubOptions> {
    (qos(), any::<bool>(), any::<bool>(), 0..=2u8).prop_map(move |(qos, no_local, rap, handling)| match protocol {
        Protocol::V311 => SubOptions { qos, ..SubOptions::default() },
        Protocol::V5 => SubOptions { qos, no_local, retain_as_published: rap, retain_handling: handling },
    })
}

fn subscribe(protocol: Protocol) -> impl Strategy<Value = Subscribe> {
    let filter = (any_filter(), options(protocol)).prop_map(|(filter, mut options)| {
        options.no_local &= topic::parse_shared(&filter).is_none();
        SubscribeFilter { filter, options }
    });
    (packet_id(), vec(filter, 1..4), properties(protocol, Context::Subscribe))
        .prop_map(|(packet_id, filters, properties)| Subscribe { packet_id, filters, properties })
}

fn suback(protocol: Protocol) -> impl Strategy<Value = SubAck> {
    let valid = match protocol {
        Protocol::V311 => codes::SUBACK_V311,
        Protocol::V5 => codes::SUBACK,
    };
    (packet_id(), vec(select(valid), 0..4), properties(protocol, Context::SubAck))
        .prop_map(|(packet_id, reasons, properties)| SubAck { packet_id, reasons, properties })
}

fn unsubscribe(protocol: Protocol) -> impl Strategy<Value = Unsubscribe> {
    let filter = match protocol {
        Protocol::V311 => valid_filter().boxed(),
        Protocol::V5 => any_filter().boxed(),
    };
    (packet_id(), vec(filter, 1..4), properties(protocol, Context::Unsubscribe))
        .prop_map(|(packet_id, filters, properties)| Unsubscribe { packet_id, filters, properties })
}

fn unsuback(protocol: Protocol) -> impl Strategy<Value = UnsubAck> {
    (packet_id(), vec(select(codes::UNSUBACK), 0..4), properties(protocol, Context::UnsubAck)).prop_map(
        move |(packet_id, reasons, properties)| UnsubAck {
            packet_id,
            reasons: if protocol == Protocol::V311 { Vec::new() } else { reasons },
            properties,
        },
    )
}

fn disconnect(protocol: Protocol) -> impl Strategy<Value = Disconnect> {
    (select(codes::DISCONNECT), properties(protocol, Context::Disconnect)).prop_map(move |(reason, properties)| {
        Disconnect { reason: if protocol == Protocol::V311 { 0 } else { reason }, properties }
    })
}

fn auth() -> impl Strategy<Value = Auth> {
    (select(codes::AUTH), properties(Protocol::V5, Context::Auth))
        .prop_map(|(reason, properties)| Auth { reason, properties })
}
