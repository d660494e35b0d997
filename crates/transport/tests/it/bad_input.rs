//! Every class of malformed input closes that connection with the right 5.0 reason code, and the
//! broker keeps serving everyone else.

use switchyard_broker::BrokerConfig;
use switchyard_codec::{Properties, Protocol, QoS, reason};

use crate::harness::{Client, TestBroker, connect_packet};

/// (name, bytes sent after a successful 5.0 CONNECT, expected DISCONNECT reason)
fn cases() -> Vec<(&'static str, Vec<u8>, u8)> {
    vec![
        ("remaining length over four bytes", vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], reason::MALFORMED_PACKET),
        (
            "SUBSCRIBE with reserved flags 0000",
            vec![0x80, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x00],
            reason::MALFORMED_PACKET,
        ),
        ("PUBREL with reserved flags 0000", vec![0x60, 0x02, 0x00, 0x01], reason::MALFORMED_PACKET),
        ("topic with invalid UTF-8", vec![0x30, 0x05, 0x00, 0x02, 0xC3, 0x28, 0x00], reason::MALFORMED_PACKET),
        ("topic with U+0000", vec![0x30, 0x05, 0x00, 0x02, b'a', 0x00, 0x00], reason::MALFORMED_PACKET),
        ("wildcard in a PUBLISH topic", vec![0x30, 0x05, 0x00, 0x02, b'a', b'#', 0x00], reason::TOPIC_NAME_INVALID),
        ("QoS 3 PUBLISH", vec![0x36, 0x06, 0x00, 0x01, b'a', 0x00, 0x01, 0x00], reason::MALFORMED_PACKET),
        (
            "QoS 1 PUBLISH with packet id 0",
            vec![0x32, 0x06, 0x00, 0x01, b'a', 0x00, 0x00, 0x00],
            reason::PROTOCOL_ERROR,
        ),
        ("SUBSCRIBE with no filter", vec![0x82, 0x03, 0x00, 0x01, 0x00], reason::PROTOCOL_ERROR),
        ("unknown property", vec![0x30, 0x06, 0x00, 0x01, b'a', 0x02, 0x7F, 0x00], reason::MALFORMED_PACKET),
        ("packet type 0", vec![0x00, 0x00], reason::MALFORMED_PACKET),
        ("packet larger than max_packet_size", vec![0x30, 0xD0, 0x0F], reason::PACKET_TOO_LARGE),
    ]
}

#[tokio::test]
async fn each_malformed_packet_closes_only_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig { max_packet_size: 1024, ..BrokerConfig::default() };
    let broker = TestBroker::start(dir.path(), config).await;
    // A bystander subscribed throughout must keep receiving.
    let (mut bystander, _) = Client::connect(broker.addr, Protocol::V5, "bystander", true, Properties::default()).await;
    assert_eq!(bystander.subscribe("alive", QoS::AtLeastOnce).await, [1]);
    let (mut publisher, _) = Client::connect(broker.addr, Protocol::V5, "publisher", true, Properties::default()).await;

    for (i, (name, bytes, expected)) in cases().into_iter().enumerate() {
        let (mut bad, _) = Client::connect(broker.addr, Protocol::V5, "bad", true, Properties::default()).await;
        bad.send_raw(&bytes).await;
        let got = bad.closed_with().await;
        assert_eq!(got, Some(expected), "{name}: expected DISCONNECT {expected:#04x}, got {got:x?}");

        publisher.publish("alive", QoS::AtLeastOnce, i as u16 + 1, b"{}").await;
        let p = bystander.next_publish().await.unwrap_or_else(|| panic!("bystander starved after {name}"));
        assert_eq!(p.topic, "alive");
    }
    broker.stop().await;
}

#[tokio::test]
async fn second_connect_is_a_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let (mut client, ack) = Client::connect(broker.addr, Protocol::V5, "twice", true, Properties::default()).await;
    assert_eq!(ack.code, 0);
    client.send(&connect_packet(Protocol::V5, "twice", true, Properties::default())).await;
    assert_eq!(client.closed_with().await, Some(reason::PROTOCOL_ERROR));
    broker.stop().await;
}

#[tokio::test]
async fn unsupported_protocol_level_gets_connack_0x01() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let mut client = Client::open(broker.addr, Protocol::V311).await;
    // CONNECT, protocol name MQTT, level 9, clean session, keep-alive 60, client id "x".
    client.send_raw(&[0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x09, 0x02, 0x00, 0x3C, 0x00, 0x01, b'x']).await;
    match client.recv().await {
        Some(switchyard_codec::Packet::ConnAck(ack)) => {
            assert_eq!(ack.code, reason::v311::UNACCEPTABLE_PROTOCOL_VERSION)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(client.recv().await.is_none(), "connection closed after the refusal");
    broker.stop().await;
}

#[tokio::test]
async fn first_packet_other_than_connect_closes_silently() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let mut client = Client::open(broker.addr, Protocol::V311).await;
    client.send_raw(&[0xC0, 0x00]).await; // PINGREQ before CONNECT
    assert!(client.recv().await.is_none());
    broker.stop().await;
}
