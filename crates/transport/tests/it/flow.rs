//! Flow control: a stalled subscriber stays within its bounds and never slows a healthy one;
//! receive maximum and keep-alive are enforced; acknowledgements that arrive together each count.

use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_broker::{BrokerConfig, QueueFullPolicy};
use switchyard_codec::{Packet, Properties, Protocol, QoS, reason};

use crate::harness::{Client, TestBroker};

const MESSAGES: u16 = 400;

fn small_queues(policy: QueueFullPolicy) -> BrokerConfig {
    BrokerConfig { max_inflight_messages: 4, max_queued_messages: 50, queue_full: policy, ..BrokerConfig::default() }
}

#[tokio::test]
async fn stalled_subscriber_is_bounded_and_does_not_delay_a_healthy_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), small_queues(QueueFullPolicy::RefuseNew)).await;
    // Stalled: subscribes at QoS 1 and then never reads or acknowledges anything.
    let (mut stalled, _) = Client::connect(broker.addr, Protocol::V5, "stalled", true, Properties::default()).await;
    assert_eq!(stalled.subscribe("load", QoS::AtLeastOnce).await, [1]);
    let (mut healthy, _) = Client::connect(broker.addr, Protocol::V5, "healthy", true, Properties::default()).await;
    assert_eq!(healthy.subscribe("load", QoS::AtLeastOnce).await, [1]);
    let (mut publisher, _) = Client::connect(broker.addr, Protocol::V311, "pub", true, Properties::default()).await;

    let receiver = tokio::spawn(async move {
        let mut got = 0;
        while got < MESSAGES {
            healthy.next_publish().await.expect("healthy subscriber keeps receiving");
            got += 1;
        }
        got
    });
    for i in 1..=MESSAGES {
        publisher.publish("load", QoS::AtLeastOnce, i, b"{\"v\":1}").await;
        match publisher.recv().await {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.packet_id, i),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    let got = tokio::time::timeout(Duration::from_secs(10), receiver).await.expect("no delay").unwrap();
    assert_eq!(got, MESSAGES);
    // The stalled session holds its window (4) plus its queue (50); the rest was refused.
    let refused = broker.broker.stats().queue_refused.load(Ordering::Relaxed);
    assert_eq!(refused, u64::from(MESSAGES) - 4 - 50);
    drop(stalled);
    broker.stop().await;
}

#[tokio::test]
async fn overflowing_subscriber_is_disconnected_with_quota_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), small_queues(QueueFullPolicy::DisconnectSubscriber)).await;
    let (mut stalled, _) = Client::connect(broker.addr, Protocol::V5, "stalled", true, Properties::default()).await;
    assert_eq!(stalled.subscribe("load", QoS::AtLeastOnce).await, [1]);
    // A healthy subscriber keeps up, so the publisher is not held back for the stalled one.
    let (mut healthy, _) = Client::connect(broker.addr, Protocol::V5, "healthy", true, Properties::default()).await;
    assert_eq!(healthy.subscribe("load", QoS::AtLeastOnce).await, [1]);
    let reader = tokio::spawn(async move { while healthy.next_publish().await.is_some() {} });
    let (mut publisher, _) = Client::connect(broker.addr, Protocol::V5, "pub", true, Properties::default()).await;
    for i in 1..=60 {
        publisher.publish("load", QoS::AtLeastOnce, i, b"{}").await;
        assert!(matches!(publisher.recv().await, Some(Packet::PubAck(_))));
    }
    // The stalled client reads only now: its window of messages, then DISCONNECT 0x97.
    assert_eq!(stalled.closed_with().await, Some(reason::QUOTA_EXCEEDED));
    broker.stop().await;
    reader.abort();
}

#[tokio::test]
async fn exceeding_receive_maximum_is_disconnect_0x93() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig { receive_maximum: 4, ..BrokerConfig::default() };
    let broker = TestBroker::start(dir.path(), config).await;
    let (mut client, ack) = Client::connect(broker.addr, Protocol::V5, "greedy", true, Properties::default()).await;
    assert_eq!(ack.properties.receive_maximum, Some(4));
    // Five QoS 1 publishes in one write: the fifth exceeds the window before any PUBACK.
    let mut bytes = Vec::new();
    for id in 1..=5u16 {
        let [hi, lo] = id.to_be_bytes();
        bytes.extend_from_slice(&[0x32, 0x06, 0x00, 0x01, b'q', hi, lo, 0x00]);
    }
    client.send_raw(&bytes).await;
    assert_eq!(client.closed_with().await, Some(reason::RECEIVE_MAXIMUM_EXCEEDED));
    broker.stop().await;
}

#[tokio::test]
async fn silent_client_is_dropped_after_one_and_a_half_keep_alives() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let mut client = Client::open(broker.addr, Protocol::V5).await;
    let connect = switchyard_codec::Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 1,
        client_id: "sleepy".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    client.send(&Packet::Connect(Box::new(connect))).await;
    let started = tokio::time::Instant::now();
    assert!(matches!(client.recv().await, Some(Packet::ConnAck(_))));
    assert_eq!(client.closed_with().await, Some(reason::KEEP_ALIVE_TIMEOUT));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1400), "closed too early: {waited:?}");
    broker.stop().await;
}

#[tokio::test]
async fn a_silent_client_that_stopped_reading_is_dropped_too() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), BrokerConfig::default()).await;
    let mut deaf = Client::open(broker.addr, Protocol::V5).await;
    let connect = switchyard_codec::Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 3,
        client_id: "deaf".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    deaf.send(&Packet::Connect(Box::new(connect))).await;
    assert!(matches!(deaf.recv().await, Some(Packet::ConnAck(_))));
    assert_eq!(deaf.subscribe("flood/#", QoS::AtMostOnce).await, [0]);
    // More than the socket buffers, our write buffer and its outbox hold: its connection is
    // backed up well before its 4.5 s of allowed silence are over, and it stays silent.
    let (mut flooder, _) = Client::connect(broker.addr, Protocol::V5, "flooder", true, Properties::default()).await;
    // Each message alone is over the write buffer's high-water mark.
    let payload = bytes::Bytes::from(vec![7u8; 100_000]);
    for _ in 0..360 {
        let publish =
            switchyard_codec::Publish { topic: "flood/x".into(), payload: payload.clone(), ..Default::default() };
        flooder.send(&Packet::Publish(publish)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Whatever it reads now, the server has given up on it: the stream ends.
    let mut read = 0usize;
    let mut sink = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), deaf.stream.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => read += n,
            Err(_) => panic!("still open after reading {read} bytes: the silent client was not dropped"),
        }
    }
    assert!(read > 1 << 20, "the connection was backed up ({read} bytes were waiting)");
    broker.stop().await;
}

#[tokio::test]
async fn server_keep_alive_caps_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig { server_keep_alive: 30, ..BrokerConfig::default() };
    let broker = TestBroker::start(dir.path(), config).await;
    let (_client, ack) = Client::connect(broker.addr, Protocol::V5, "ka", true, Properties::default()).await;
    assert_eq!(ack.properties.server_keep_alive, Some(30));
    broker.stop().await;
}

#[tokio::test]
async fn publisher_waits_for_a_lone_slow_subscriber_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig { max_inflight_messages: 4, backpressure_queue: 8, ..BrokerConfig::default() };
    let broker = TestBroker::start(dir.path(), config).await;
    let (mut slow, _) = Client::connect(broker.addr, Protocol::V5, "slow", true, Properties::default()).await;
    assert_eq!(slow.subscribe("bp", QoS::AtLeastOnce).await, [1]);
    let (mut publisher, _) = Client::connect(broker.addr, Protocol::V311, "pub", true, Properties::default()).await;
    for i in 1..=30u16 {
        publisher.publish("bp", QoS::AtLeastOnce, i, b"{}").await;
    }
    // 4 in flight and 7 queued are acknowledged; from the 8th queued message on, the only
    // subscriber is behind and the acknowledgements wait.
    let mut acked = 0;
    while let Some(Packet::PubAck(_)) = publisher.recv_within(Duration::from_millis(300)).await {
        acked += 1;
    }
    assert_eq!(acked, 11);
    // The subscriber catches up: every message arrives, every acknowledgement follows.
    for _ in 0..30 {
        slow.next_publish().await.expect("every message is delivered");
    }
    while acked < 30 {
        match publisher.recv().await {
            Some(Packet::PubAck(_)) => acked += 1,
            other => panic!("expected the held PUBACKs, got {other:?}"),
        }
    }
    assert_eq!(broker.broker.stats().queue_refused.load(Ordering::Relaxed), 0);
    broker.stop().await;
}

#[tokio::test]
async fn acknowledgements_sent_together_all_open_the_window() {
    const PAYLOADS: [&[u8]; 12] = [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9", b"10", b"11"];
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path(), small_queues(QueueFullPolicy::RefuseNew)).await;
    let (mut sub, _) = Client::connect(broker.addr, Protocol::V5, "sub", true, Properties::default()).await;
    assert_eq!(sub.subscribe("load", QoS::AtLeastOnce).await, [1]);
    let (mut publisher, _) = Client::connect(broker.addr, Protocol::V311, "pub", true, Properties::default()).await;
    for (i, payload) in (1..).zip(PAYLOADS) {
        publisher.publish("load", QoS::AtLeastOnce, i, payload).await;
        assert!(matches!(publisher.recv().await, Some(Packet::PubAck(ack)) if ack.packet_id == i));
    }
    let mut received = Vec::new();
    for _ in 0..3 {
        // A full window (4), then nothing until every one of them is acknowledged at once.
        let mut acks = bytes::BytesMut::new();
        for _ in 0..4 {
            let Some(Packet::Publish(p)) = sub.recv().await else { panic!("expected a PUBLISH") };
            received.push(p.payload);
            let ack = Packet::PubAck(switchyard_codec::PubResp::new(p.packet_id));
            switchyard_codec::encode(&ack, Protocol::V5, &mut acks).unwrap();
        }
        assert_eq!(sub.recv_within(Duration::from_millis(100)).await, None, "window exceeded");
        sub.send_raw(&acks).await;
    }
    assert_eq!(received, PAYLOADS);
    broker.stop().await;
}
