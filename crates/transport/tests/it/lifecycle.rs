//! Sessions across restarts, session takeover, and graceful shutdown.

use switchyard_broker::BrokerConfig;
use switchyard_codec::{Packet, Properties, Protocol, QoS, reason};

use crate::harness::{Client, TestBroker};

fn persistent() -> Properties {
    Properties { session_expiry_interval: Some(3600), ..Properties::default() }
}

#[tokio::test]
async fn queued_messages_and_retained_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let (mut sub, ack) = Client::connect(broker.addr, Protocol::V5, "keeper", true, persistent()).await;
    assert!(!ack.session_present);
    assert_eq!(sub.subscribe("cmd/#", QoS::AtLeastOnce).await, [1]);
    sub.send(&Packet::Disconnect(Default::default())).await;
    drop(sub);

    let (mut publisher, _) = Client::connect(broker.addr, Protocol::V311, "pub", true, Properties::default()).await;
    for (i, topic) in ["cmd/1", "cmd/2", "cmd/3"].into_iter().enumerate() {
        publisher.publish(topic, QoS::AtLeastOnce, i as u16 + 1, b"{}").await;
        assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
    }
    let retained = switchyard_codec::Publish {
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "state/x".into(),
        packet_id: 9,
        payload: bytes::Bytes::from_static(b"kept"),
        ..Default::default()
    };
    publisher.send(&Packet::Publish(retained)).await;
    assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
    drop(publisher);
    broker.stop().await;

    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let (mut sub, ack) = Client::connect(broker.addr, Protocol::V5, "keeper", false, persistent()).await;
    assert!(ack.session_present, "session restored from disk");
    let mut topics = Vec::new();
    for _ in 0..3 {
        topics.push(sub.next_publish().await.expect("queued message after restart").topic);
    }
    assert_eq!(topics, ["cmd/1", "cmd/2", "cmd/3"]);
    let (mut late, _) = Client::connect(broker.addr, Protocol::V311, "late", true, Properties::default()).await;
    assert_eq!(late.subscribe("state/#", QoS::AtLeastOnce).await, [1]);
    let p = late.next_publish().await.expect("retained message after restart");
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"kept");
    broker.stop().await;
}

#[tokio::test]
async fn unacknowledged_message_is_resent_with_dup_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let (mut sub, _) = Client::connect(broker.addr, Protocol::V311, "resume", false, Properties::default()).await;
    assert_eq!(sub.subscribe("t", QoS::AtLeastOnce).await, [1]);
    let (mut publisher, _) = Client::connect(broker.addr, Protocol::V311, "pub", true, Properties::default()).await;
    publisher.publish("t", QoS::AtLeastOnce, 1, b"once").await;
    let first = match sub.recv().await {
        Some(Packet::Publish(p)) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    assert!(!first.dup);
    drop(sub); // no PUBACK
    let (mut sub, ack) = Client::connect(broker.addr, Protocol::V311, "resume", false, Properties::default()).await;
    assert!(ack.session_present);
    let again = sub.next_publish().await.expect("resent");
    assert!(again.dup);
    assert_eq!(again.packet_id, first.packet_id);
    broker.stop().await;
}

#[tokio::test]
async fn takeover_disconnects_the_old_connection_with_0x8e() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let (mut first, _) = Client::connect(broker.addr, Protocol::V5, "same", true, Properties::default()).await;
    let (_second, ack) = Client::connect(broker.addr, Protocol::V5, "same", true, Properties::default()).await;
    assert_eq!(ack.code, 0);
    assert_eq!(first.closed_with().await, Some(reason::SESSION_TAKEN_OVER));
    broker.stop().await;
}

#[tokio::test]
async fn resuming_takeover_of_a_clean_session_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let (mut first, _) = Client::connect(broker.addr, Protocol::V311, "same", true, Properties::default()).await;
    let (mut second, ack) = Client::connect(broker.addr, Protocol::V311, "same", false, Properties::default()).await;
    assert_eq!(ack.code, 0);
    assert!(!ack.session_present, "the clean session ended with its connection");
    assert_eq!(first.closed_with().await, None);
    // The broker is still serving.
    assert_eq!(second.subscribe("x", QoS::AtMostOnce).await, [0]);
    broker.stop().await;
}

#[tokio::test]
async fn shutdown_tells_clients_and_finishes_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let (mut client, _) = Client::connect(broker.addr, Protocol::V5, "bye", true, Properties::default()).await;
    let stopping = tokio::spawn(broker.stop());
    assert_eq!(client.closed_with().await, Some(reason::SERVER_SHUTTING_DOWN));
    stopping.await.unwrap();
}

#[tokio::test]
async fn closing_every_connection_refuses_late_ones_and_keeps_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let persistent = Properties { session_expiry_interval: Some(300), ..Properties::default() };
    let (mut v5, _) = Client::connect(broker.addr, Protocol::V5, "stays", false, persistent).await;
    let (mut v311, _) = Client::connect(broker.addr, Protocol::V311, "old", true, Properties::default()).await;
    broker.broker.close_all().await.unwrap();
    assert_eq!(v5.closed_with().await, Some(reason::SERVER_SHUTTING_DOWN));
    assert_eq!(v311.closed_with().await, None, "3.1.1 has no DISCONNECT from the server");
    // The core still runs, but takes no one new.
    let (_, ack) = Client::connect(broker.addr, Protocol::V5, "late", true, Properties::default()).await;
    assert_eq!(ack.code, reason::SERVER_UNAVAILABLE);
    let (_, ack) = Client::connect(broker.addr, Protocol::V311, "late", true, Properties::default()).await;
    assert_eq!(ack.code, reason::v311::SERVER_UNAVAILABLE);
    broker.stop().await;

    // The persistent session was kept for the next start.
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let persistent = Properties { session_expiry_interval: Some(300), ..Properties::default() };
    let (_, ack) = Client::connect(broker.addr, Protocol::V5, "stays", false, persistent).await;
    assert!(ack.session_present);
    broker.stop().await;
}

#[tokio::test]
async fn a_sent_but_unacknowledged_message_comes_again_after_a_restart_and_an_acknowledged_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let (mut sub, _) = Client::connect(broker.addr, Protocol::V5, "slow", true, persistent()).await;
    assert_eq!(sub.subscribe("job/#", QoS::AtLeastOnce).await, [1]);
    let (mut publisher, _) = Client::connect(broker.addr, Protocol::V311, "pub", true, Properties::default()).await;
    for (i, topic) in ["job/1", "job/2"].into_iter().enumerate() {
        publisher.publish(topic, QoS::AtLeastOnce, i as u16 + 1, b"{}").await;
        assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
    }
    // Both go straight in flight; only the first is acknowledged.
    let first = sub.next_publish_unacked().await.expect("first delivery");
    let second = sub.next_publish_unacked().await.expect("second delivery");
    assert_eq!((first.topic.as_str(), second.topic.as_str()), ("job/1", "job/2"));
    let ack = switchyard_codec::PubResp { packet_id: first.packet_id, ..Default::default() };
    sub.send(&Packet::PubAck(ack)).await;
    // The acknowledgement is applied before the graceful stop closes the connection.
    publisher.publish("other", QoS::AtLeastOnce, 3, b"{}").await;
    assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
    drop(publisher);
    broker.stop().await;
    drop(sub);

    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let (mut sub, ack) = Client::connect(broker.addr, Protocol::V5, "slow", false, persistent()).await;
    assert!(ack.session_present);
    let again = sub.next_publish_unacked().await.expect("the unacknowledged message again");
    assert_eq!(again.topic, "job/2");
    assert_eq!(&again.payload[..], b"{}");
    let ack = switchyard_codec::PubResp { packet_id: again.packet_id, ..Default::default() };
    sub.send(&Packet::PubAck(ack)).await;
    assert!(sub.recv_within(std::time::Duration::from_millis(300)).await.is_none(), "nothing else");
    sub.send(&Packet::Disconnect(Default::default())).await;
    drop(sub);
    broker.stop().await;

    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let (mut sub, ack) = Client::connect(broker.addr, Protocol::V5, "slow", false, persistent()).await;
    assert!(ack.session_present);
    assert!(sub.recv_within(std::time::Duration::from_millis(300)).await.is_none(), "acknowledged: gone for good");
    broker.stop().await;
}
