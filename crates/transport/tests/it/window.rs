//! Per-connection bounds set by the client's behaviour: a 3.1.1 publisher with more QoS 1
//! messages in flight than the receive maximum is slowed, not disconnected; a client that
//! never reads its answers (PINGRESP, SUBACK) cannot make the connection buffer without end.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Outgoing};
use switchyard_broker::{AnonymousAuth, Broker, BrokerConfig};
use switchyard_codec::{Packet, Properties, Protocol, QoS, SubOptions, Subscribe, SubscribeFilter};
use switchyard_storage::MemoryStore;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::harness::{Client, TestBroker, connect_packet};

const MESSAGES: usize = 2_000;

/// rumqttc at its defaults (3.1.1, 100 messages in flight) against the default receive maximum
/// (32). The only subscriber reads nothing until the publisher has its whole window of 100 out,
/// so every acknowledgement beyond the back-pressure mark waits and the window really fills.
#[tokio::test]
async fn rumqttc_with_100_in_flight_is_slowed_not_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig { max_inflight_messages: 4, backpressure_queue: 8, ..BrokerConfig::default() };
    assert!(config.receive_maximum < 100);
    let broker = TestBroker::start(dir.path(), config).await;
    let (mut subscriber, _) = Client::connect(broker.addr, Protocol::V311, "sub", true, Properties::default()).await;
    assert_eq!(subscriber.subscribe("window/load", QoS::AtLeastOnce).await, [1]);

    let options = MqttOptions::new("rumqttc-pub", broker.addr.ip().to_string(), broker.addr.port());
    assert_eq!(options.inflight(), 100, "rumqttc's default window");
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    tokio::spawn(async move {
        for i in 0..MESSAGES {
            let payload = i.to_string();
            client.publish("window/load", rumqttc::QoS::AtLeastOnce, false, payload).await.unwrap();
        }
    });
    let (window_full, mut full) = watch::channel(false);
    let publisher = tokio::spawn(async move {
        let (mut sent, mut acked) = (0, 0);
        while acked < MESSAGES {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Publish(_))) => sent += 1,
                Ok(Event::Incoming(Incoming::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("publisher lost after {acked} acknowledgements, {sent} sent: {e}"),
            }
            if sent - acked >= 100 {
                window_full.send_replace(true);
            }
        }
        acked
    });
    full.wait_for(|full| *full).await.expect("the publisher fills its window of 100");
    for i in 0..MESSAGES {
        let publish = subscriber.next_publish().await.expect("every message arrives");
        assert_eq!(publish.payload, i.to_string().as_bytes(), "in order");
    }
    assert_eq!(publisher.await.unwrap(), MESSAGES);
    broker.stop().await;
}

/// A rumqttc client (3.1.1, 100 in flight) subscribed to its own publishes: while its window is
/// full, its PUBACKs for what it receives overtake its held publishes, so its queue drains and
/// the acknowledgements it waits for are released; nothing deadlocks.
#[tokio::test]
async fn a_slowed_client_subscribed_to_itself_keeps_flowing() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig { max_inflight_messages: 4, backpressure_queue: 8, ..BrokerConfig::default() };
    let broker = TestBroker::start(dir.path(), config).await;
    let options = MqttOptions::new("rumqttc-echo", broker.addr.ip().to_string(), broker.addr.port());
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client.subscribe("window/echo", rumqttc::QoS::AtLeastOnce).await.unwrap();
    tokio::spawn(async move {
        for i in 0..MESSAGES {
            client.publish("window/echo", rumqttc::QoS::AtLeastOnce, false, i.to_string()).await.unwrap();
        }
    });
    let flow = async {
        let (mut acked, mut received) = (0, 0);
        while acked < MESSAGES || received < MESSAGES {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::PubAck(_))) => acked += 1,
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    assert_eq!(p.payload, received.to_string().as_bytes(), "in order");
                    received += 1;
                }
                Ok(_) => {}
                Err(e) => panic!("lost after {acked} acknowledgements and {received} messages: {e}"),
            }
        }
    };
    // A guard against a deadlock hanging the suite, not a measure of speed.
    tokio::time::timeout(Duration::from_secs(120), flow).await.expect("no deadlock");
    broker.stop().await;
}

/// A 3.1.1 publisher slowed for longer than its keep-alive allows is not dropped as silent: its
/// PINGREQ waits unread behind held publishes, and that silence is ours. Every PUBACK follows
/// once the only subscriber catches up.
#[tokio::test]
async fn a_slowed_publisher_is_not_silent() {
    const MESSAGES: u16 = 200;
    let dir = tempfile::tempdir().unwrap();
    let config =
        BrokerConfig { receive_maximum: 4, max_inflight_messages: 4, backpressure_queue: 8, ..BrokerConfig::default() };
    let broker = TestBroker::start(dir.path(), config).await;
    let (mut subscriber, _) = Client::connect(broker.addr, Protocol::V311, "sub", true, Properties::default()).await;
    assert_eq!(subscriber.subscribe("slowed", QoS::AtLeastOnce).await, [1]);
    let mut publisher = Client::open(broker.addr, Protocol::V311).await;
    let mut connect = connect_packet(Protocol::V311, "slowed-pub", true, Properties::default());
    if let Packet::Connect(c) = &mut connect {
        c.keep_alive = 1;
    }
    publisher.send(&connect).await;
    assert!(matches!(publisher.recv().await, Some(Packet::ConnAck(_))));
    // Far more than the hold limit: reading stops with the PINGREQ still in the socket.
    for id in 1..=MESSAGES {
        publisher.publish("slowed", QoS::AtLeastOnce, id, &[7; 1024]).await;
    }
    publisher.send(&Packet::PingReq).await;
    // Longer than 1.5 × the keep-alive, and the keep-alive sweep, before anything drains.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let reader = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            subscriber.next_publish().await.expect("every message arrives");
        }
    });
    let mut acked = 0;
    while acked < MESSAGES {
        match publisher.recv().await {
            Some(Packet::PubAck(_)) => acked += 1,
            Some(Packet::PingResp) => {}
            other => panic!("after {acked} PUBACKs: {other:?}"),
        }
    }
    reader.await.unwrap();
    broker.stop().await;
}

/// A stream whose client sends `script` as fast as it is read and never reads anything.
struct Deaf {
    script: Vec<u8>,
    read: Arc<AtomicUsize>,
}

impl AsyncRead for Deaf {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let at = self.read.load(Ordering::SeqCst);
        let n = buf.remaining().min(self.script.len() - at);
        if n == 0 {
            // All sent; the client stays connected.
            return Poll::Pending;
        }
        buf.put_slice(&self.script[at..at + n]);
        self.read.fetch_add(n, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Deaf {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Serve a client that sends CONNECT, then `packet` `times` times as fast as it is read, and
/// never reads. Returns how much of that the connection took in, and the whole, once it stopped
/// taking more: the reads are always ready, so the runtime is idle (and the paused clock moves
/// on) only once the connection no longer reads, or has read it all.
async fn flood(packet: &Packet, times: usize) -> (usize, usize) {
    let config = BrokerConfig { answer_backlog: 64, ..BrokerConfig::default() };
    let auth = AnonymousAuth { allow_anonymous: true, deny: vec![] };
    let router_stop = CancellationToken::new();
    let (broker, router) =
        Broker::start(config, Arc::new(MemoryStore::default()), Arc::new(auth), router_stop.clone()).unwrap();
    let mut script = BytesMut::new();
    let connect = connect_packet(Protocol::V311, "deaf", true, Properties::default());
    switchyard_codec::encode(&connect, Protocol::V311, &mut script).unwrap();
    for _ in 0..times {
        switchyard_codec::encode(packet, Protocol::V311, &mut script).unwrap();
    }
    let read = Arc::new(AtomicUsize::new(0));
    let deaf = Deaf { script: script.to_vec(), read: Arc::clone(&read) };
    let conn = tokio::spawn(switchyard_transport::serve(
        deaf,
        None,
        broker.clone(),
        Duration::from_secs(5),
        CancellationToken::new(),
    ));
    // The core answers from its own thread too (commits): wait until reading stands still
    // across a whole idle second.
    let mut last = usize::MAX;
    while read.load(Ordering::SeqCst) != last {
        last = read.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(!conn.is_finished(), "slowed, not closed");
    conn.abort();
    router_stop.cancel();
    drop(router);
    (last, script.len())
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_its_pingresps_is_no_longer_read() {
    let (read, sent) = flood(&Packet::PingReq, 200_000).await;
    // PINGREQs answered into the 64 KiB write buffer, the 64 allowed to wait, one read more.
    assert!(read < 2 * (64 * 1024 / 2 + 64) + 64 * 1024, "read {read} of {sent} bytes");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_its_subacks_is_no_longer_read() {
    let options = SubOptions { qos: QoS::AtLeastOnce, ..SubOptions::default() };
    let filters = vec![SubscribeFilter { filter: "flood/+".into(), options }];
    let subscribe = Packet::Subscribe(Subscribe { packet_id: 1, filters, properties: Properties::default() });
    // About 1.3 MB, thirty thousand more SUBSCRIBEs than the core ever has in hand.
    let (read, sent) = flood(&subscribe, 100_000).await;
    assert!(read < sent / 2, "read {read} of {sent} bytes");
}
