//! Packets from different connections that reach the broker together are handled in the order
//! they arrived: a SUBSCRIBE sent just before another client's PUBLISH catches that PUBLISH.

use std::sync::mpsc;

use switchyard_broker::BrokerConfig;
use switchyard_codec::{Packet, Properties, Protocol, Publish, QoS, SubOptions, Subscribe, SubscribeFilter, reason};

use crate::harness::{Client, TestBroker};

/// The server's runtime with its single worker held busy until `go` is sent, so that packets
/// written meanwhile are all waiting when it next looks at the sockets: they arrive together.
fn hold_the_worker(rt: &tokio::runtime::Runtime) -> mpsc::Sender<()> {
    let (started_tx, started) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    rt.spawn(async move {
        started_tx.send(()).unwrap();
        // Blocking on purpose: this is the worker the broker would run on.
        let _ = go_rx.recv();
    });
    started.recv().unwrap();
    go
}

#[test]
fn a_subscribe_that_arrives_just_before_a_publish_receives_it() {
    let rt = switchyard_transport::runtime(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = rt.block_on(TestBroker::start(dir.path(), BrokerConfig::default()));
    // Rounds on fresh topics, each with the two packets arriving together.
    for round in 0..3u16 {
        let topic = format!("order/{round}");
        let (mut publisher, mut subscriber) = rt.block_on(async {
            let (p, _) = Client::connect(broker.addr, Protocol::V5, "publisher", true, Properties::default()).await;
            let (s, _) = Client::connect(broker.addr, Protocol::V5, "subscriber", true, Properties::default()).await;
            (p, s)
        });
        let go = hold_the_worker(&rt);
        // Written from this thread while the worker is busy: the SUBSCRIBE first, the PUBLISH
        // right after it, on another connection.
        rt.block_on(async {
            let filter = SubscribeFilter {
                filter: topic.clone(),
                options: SubOptions { qos: QoS::ExactlyOnce, no_local: true, ..SubOptions::default() },
            };
            let sub = Subscribe { packet_id: 1, filters: vec![filter], properties: Properties::default() };
            subscriber.send(&Packet::Subscribe(sub)).await;
            let publish = Publish {
                qos: QoS::AtLeastOnce,
                topic: topic.clone(),
                packet_id: 1,
                payload: bytes::Bytes::from_static(b"request"),
                ..Publish::default()
            };
            publisher.send(&Packet::Publish(publish)).await;
        });
        go.send(()).unwrap();
        rt.block_on(async {
            match publisher.recv().await {
                Some(Packet::PubAck(ack)) => {
                    assert_eq!(ack.reason, reason::SUCCESS, "round {round}: no subscriber yet")
                }
                other => panic!("expected PUBACK, got {other:?}"),
            }
            assert!(matches!(subscriber.recv().await, Some(Packet::SubAck(_))));
            let got = subscriber.next_publish().await.expect("the message published after the SUBSCRIBE");
            assert_eq!((got.topic.as_str(), &got.payload[..]), (topic.as_str(), &b"request"[..]));
        });
        drop((publisher, subscriber));
    }
    rt.block_on(broker.stop());
}
