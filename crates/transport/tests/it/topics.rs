//! Topic depth and retained-message limits as clients meet them: too-deep names and filters are
//! refused like invalid ones, and a namespace at `max_retained_messages` retains nothing new
//! (at `max_retained_bytes`, nothing that would take it beyond).

use std::sync::atomic::Ordering;

use switchyard_broker::BrokerConfig;
use switchyard_codec::{Connect, Packet, Properties, Protocol, PubResp, Publish, QoS, Unsubscribe, Will, reason};

use crate::harness::{Client, TestBroker, connect_packet};

fn levels(n: usize) -> String {
    vec!["l"; n].join("/")
}

fn config() -> BrokerConfig {
    BrokerConfig { max_topic_levels: 8, ..BrokerConfig::default() }
}

#[tokio::test]
async fn a_publish_beyond_max_topic_levels_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), config()).await;
    let (mut sub, _) = Client::connect(broker.addr, Protocol::V5, "sub", true, Properties::default()).await;
    assert_eq!(sub.subscribe("#", QoS::AtMostOnce).await, [0]);
    let (mut ok, _) = Client::connect(broker.addr, Protocol::V5, "ok", true, Properties::default()).await;
    ok.publish(&levels(8), QoS::AtMostOnce, 0, b"{}").await;
    assert_eq!(sub.next_publish().await.expect("eight levels pass").topic, levels(8));

    let (mut v5, _) = Client::connect(broker.addr, Protocol::V5, "v5", true, Properties::default()).await;
    v5.publish(&levels(9), QoS::AtLeastOnce, 1, b"{}").await;
    assert_eq!(v5.closed_with().await, Some(reason::TOPIC_NAME_INVALID));
    let (mut v3, _) = Client::connect(broker.addr, Protocol::V311, "v3", true, Properties::default()).await;
    v3.publish(&levels(9), QoS::AtLeastOnce, 1, b"{}").await;
    assert_eq!(v3.closed_with().await, None, "3.1.1: closed without a packet");

    ok.publish("still/served", QoS::AtMostOnce, 0, b"{}").await;
    assert_eq!(sub.next_publish().await.expect("the broker still serves").topic, "still/served");
    broker.stop().await;
}

#[tokio::test]
async fn filters_beyond_max_topic_levels_are_refused_per_filter() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), config()).await;
    let (mut v5, _) = Client::connect(broker.addr, Protocol::V5, "v5", true, Properties::default()).await;
    assert_eq!(v5.subscribe(&levels(9), QoS::AtMostOnce).await, [reason::TOPIC_FILTER_INVALID]);
    assert_eq!(v5.subscribe(&format!("$share/g/{}", levels(8)), QoS::AtMostOnce).await, [0]);
    assert_eq!(v5.subscribe(&format!("{}/#", levels(8)), QoS::AtMostOnce).await, [reason::TOPIC_FILTER_INVALID]);
    let unsubscribe = Unsubscribe { packet_id: 2, filters: vec![levels(9)], properties: Properties::default() };
    v5.send(&Packet::Unsubscribe(unsubscribe)).await;
    match v5.recv().await {
        Some(Packet::UnsubAck(ack)) => assert_eq!(ack.reasons, [reason::TOPIC_FILTER_INVALID]),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    let (mut v3, _) = Client::connect(broker.addr, Protocol::V311, "v3", true, Properties::default()).await;
    assert_eq!(v3.subscribe(&levels(9), QoS::AtMostOnce).await, [reason::v311::SUBACK_FAILURE]);
    assert_eq!(v3.subscribe(&levels(8), QoS::AtLeastOnce).await, [1]);
    broker.stop().await;
}

#[tokio::test]
async fn a_will_beyond_max_topic_levels_is_refused_at_connect() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), config()).await;
    let mut client = Client::open(broker.addr, Protocol::V5).await;
    let mut packet = connect_packet(Protocol::V5, "w", true, Properties::default());
    if let Packet::Connect(c) = &mut packet {
        let connect: &mut Connect = c;
        let properties = Properties::default();
        connect.will = Some(Will {
            topic: levels(9),
            payload: Default::default(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties,
        });
    }
    client.send(&packet).await;
    match client.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, reason::TOPIC_NAME_INVALID),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    broker.stop().await;
}

async fn retain(client: &mut Client, topic: &str, packet_id: u16, payload: &'static [u8]) -> u8 {
    let publish = Publish {
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: topic.into(),
        packet_id,
        payload: bytes::Bytes::from_static(payload),
        ..Publish::default()
    };
    client.send(&Packet::Publish(publish)).await;
    match client.recv().await {
        Some(Packet::PubAck(PubResp { reason, .. })) => reason,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

async fn retained_topics(broker: &TestBroker, filter: &str) -> Vec<String> {
    let (mut sub, _) = Client::connect(broker.addr, Protocol::V5, "reader", true, Properties::default()).await;
    assert_eq!(sub.subscribe("end", QoS::AtMostOnce).await, [0]);
    assert_eq!(sub.subscribe(filter, QoS::AtMostOnce).await, [0]);
    // A plain message after the retained ones marks their end.
    let (mut marker, _) = Client::connect(broker.addr, Protocol::V5, "marker", true, Properties::default()).await;
    marker.publish("end", QoS::AtMostOnce, 0, b"{}").await;
    let mut topics = Vec::new();
    loop {
        let p = sub.next_publish().await.expect("the marker arrives");
        if p.topic == "end" {
            break;
        }
        topics.push(p.topic.to_string());
    }
    topics.sort();
    topics
}

#[tokio::test]
async fn a_namespace_at_max_retained_messages_retains_no_new_topic() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig { max_retained_messages: 2, ..BrokerConfig::default() };
    let broker = TestBroker::start(dir.path(), config).await;
    let (mut publisher, _) = Client::connect(broker.addr, Protocol::V5, "p", true, Properties::default()).await;
    assert_eq!(retain(&mut publisher, "r/a", 1, b"1").await, reason::NO_MATCHING_SUBSCRIBERS);
    assert_eq!(retain(&mut publisher, "r/b", 2, b"1").await, reason::NO_MATCHING_SUBSCRIBERS);
    assert_eq!(retain(&mut publisher, "r/c", 3, b"1").await, reason::QUOTA_EXCEEDED, "only retention, refused");
    assert_eq!(broker.broker.stats().retained_refused.load(Ordering::Relaxed), 1);
    assert_eq!(retained_topics(&broker, "#").await, ["r/a", "r/b"]);

    assert_eq!(retain(&mut publisher, "r/a", 4, b"2").await, reason::NO_MATCHING_SUBSCRIBERS, "replacing works");
    assert_eq!(retain(&mut publisher, "r/a", 5, b"").await, reason::NO_MATCHING_SUBSCRIBERS, "clearing works");
    assert_eq!(retain(&mut publisher, "r/c", 6, b"1").await, reason::NO_MATCHING_SUBSCRIBERS, "room again");
    assert_eq!(retained_topics(&broker, "r/+").await, ["r/b", "r/c"]);
    broker.stop().await;
}

#[tokio::test]
async fn a_namespace_at_max_retained_bytes_retains_nothing_larger() {
    let dir = tempfile::tempdir().unwrap();
    // Each message below costs its 3-byte topic and its payload.
    let config = BrokerConfig { max_retained_bytes: 20, ..BrokerConfig::default() };
    let broker = TestBroker::start(dir.path(), config).await;
    let (mut publisher, _) = Client::connect(broker.addr, Protocol::V5, "p", true, Properties::default()).await;
    assert_eq!(retain(&mut publisher, "r/a", 1, b"1234567").await, reason::NO_MATCHING_SUBSCRIBERS);
    assert_eq!(retain(&mut publisher, "r/b", 2, b"12345678").await, reason::QUOTA_EXCEEDED, "21 bytes, refused");
    assert_eq!(retain(&mut publisher, "r/b", 3, b"1234567").await, reason::NO_MATCHING_SUBSCRIBERS, "20 fit");
    assert_eq!(retain(&mut publisher, "r/a", 4, b"12345678").await, reason::QUOTA_EXCEEDED, "a larger replacement");
    assert_eq!(broker.broker.stats().retained_refused.load(Ordering::Relaxed), 2);
    assert_eq!(retain(&mut publisher, "r/a", 5, b"1").await, reason::NO_MATCHING_SUBSCRIBERS, "a smaller one");
    assert_eq!(retain(&mut publisher, "r/c", 6, b"123").await, reason::NO_MATCHING_SUBSCRIBERS, "room again");
    assert_eq!(retained_topics(&broker, "r/+").await, ["r/a", "r/b", "r/c"]);
    broker.stop().await;
}
