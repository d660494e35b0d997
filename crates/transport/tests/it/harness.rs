//! An in-process broker on 127.0.0.1:0 with embedded storage, and a raw MQTT client built on our
//! codec, so tests can send exact bytes and read exact packets.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use switchyard_broker::{AnonymousAuth, Authenticator, Broker, BrokerConfig, DataPath, DenyRule, RouterTask};
use switchyard_codec::{
    ConnAck, Connect, Packet, Properties, Protocol, PubResp, Publish, QoS, SubOptions, Subscribe, SubscribeFilter,
};
use switchyard_storage::SessionStore;
use switchyard_storage_embedded::EmbeddedStore;
use switchyard_transport::ListenerLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestBroker {
    pub addr: SocketAddr,
    pub broker: Broker,
    shutdown: CancellationToken,
    router_stop: CancellationToken,
    tasks: TaskTracker,
    router: Option<RouterTask>,
}

impl TestBroker {
    pub async fn start(dir: &Path, config: BrokerConfig) -> TestBroker {
        let auth = AnonymousAuth { allow_anonymous: true, deny: vec![DenyRule::Subscribe("test/nosubscribe".into())] };
        TestBroker::start_with(dir, config, Arc::new(auth)).await
    }

    pub async fn start_with(dir: &Path, config: BrokerConfig, auth: Arc<dyn Authenticator>) -> TestBroker {
        let store = EmbeddedStore::open(dir).expect("store opens");
        TestBroker::start_on(Arc::new(store), config, auth).await
    }

    pub async fn start_on(
        store: Arc<dyn SessionStore>,
        config: BrokerConfig,
        auth: Arc<dyn Authenticator>,
    ) -> TestBroker {
        TestBroker::start_with_data(store, config, auth, DataPath::default()).await
    }

    /// A broker with a data pipeline.
    pub async fn start_with_data(
        store: Arc<dyn SessionStore>,
        config: BrokerConfig,
        auth: Arc<dyn Authenticator>,
        data: DataPath,
    ) -> TestBroker {
        let router_stop = CancellationToken::new();
        let (broker, router) =
            Broker::start_with_data(config, store, auth, data, router_stop.clone()).expect("broker starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let limits =
            ListenerLimits { connect_timeout: Duration::from_secs(5), connections: Arc::new(Semaphore::new(1000)) };
        tokio::spawn(switchyard_transport::run_listener(
            listener,
            None,
            broker.clone(),
            limits,
            tasks.clone(),
            shutdown.clone(),
        ));
        TestBroker { addr, broker, shutdown, router_stop, tasks, router: Some(router) }
    }

    /// Graceful stop: connections first, then the core's final flush.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.broker.close_all().await.expect("the core is running");
        self.tasks.close();
        tokio::time::timeout(WAIT, self.tasks.wait()).await.expect("connections drain in time");
        self.router_stop.cancel();
        let router = self.router.take().unwrap();
        assert!(tokio::time::timeout(WAIT, router.join()).await.expect("router flushes in time"));
    }
}

pub struct Client {
    pub stream: TcpStream,
    buf: BytesMut,
    pub protocol: Protocol,
}

pub fn connect_packet(protocol: Protocol, client_id: &str, clean_start: bool, properties: Properties) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol,
        clean_start,
        keep_alive: 60,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties,
    }))
}

impl Client {
    pub async fn open(addr: SocketAddr, protocol: Protocol) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream, buf: BytesMut::new(), protocol }
    }

    /// Connect and return the CONNACK.
    pub async fn connect(
        addr: SocketAddr,
        protocol: Protocol,
        id: &str,
        clean: bool,
        props: Properties,
    ) -> (Client, ConnAck) {
        let mut client = Client::open(addr, protocol).await;
        client.send(&connect_packet(protocol, id, clean, props)).await;
        match client.recv().await {
            Some(Packet::ConnAck(ack)) => (client, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connect with a username (for authenticators that look at it).
    pub async fn connect_as(addr: SocketAddr, protocol: Protocol, id: &str, username: &str) -> (Client, ConnAck) {
        let mut client = Client::open(addr, protocol).await;
        let mut packet = connect_packet(protocol, id, true, Properties::default());
        if let Packet::Connect(c) = &mut packet {
            c.username = Some(username.into());
        }
        client.send(&packet).await;
        match client.recv().await {
            Some(Packet::ConnAck(ack)) => (client, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        switchyard_codec::encode(packet, self.protocol, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next packet, or None when the connection closes or nothing comes within WAIT.
    pub async fn recv(&mut self) -> Option<Packet> {
        self.recv_within(WAIT).await
    }

    pub async fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(p) = switchyard_codec::decode(&mut self.buf, Some(self.protocol), usize::MAX).unwrap() {
                return Some(p);
            }
            self.buf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// True when nothing arrives for `wait` and the connection stays open.
    pub async fn silent_for(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        tokio::time::timeout(wait, self.stream.read_buf(&mut self.buf)).await.is_err()
    }

    /// Read until the server closes; returns the DISCONNECT reason if one came first.
    pub async fn closed_with(&mut self) -> Option<u8> {
        let mut reason = None;
        while let Some(p) = self.recv().await {
            if let Packet::Disconnect(d) = p {
                reason = Some(d.reason);
            }
        }
        reason
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<u8> {
        let options = SubOptions { qos, ..SubOptions::default() };
        let sub = Subscribe {
            packet_id: 1,
            filters: vec![SubscribeFilter { filter: filter.into(), options }],
            properties: Properties::default(),
        };
        self.send(&Packet::Subscribe(sub)).await;
        match self.recv().await {
            Some(Packet::SubAck(ack)) => ack.reasons,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub async fn publish(&mut self, topic: &str, qos: QoS, packet_id: u16, payload: &'static [u8]) {
        let publish = Publish {
            qos,
            topic: topic.into(),
            packet_id,
            payload: bytes::Bytes::from_static(payload),
            ..Publish::default()
        };
        self.send(&Packet::Publish(publish)).await;
    }

    /// Receive one PUBLISH, acknowledging it at QoS 1.
    /// The next PUBLISH, not acknowledged.
    pub async fn next_publish_unacked(&mut self) -> Option<Publish> {
        loop {
            match self.recv().await? {
                Packet::Publish(p) => return Some(p),
                Packet::PubAck(_) | Packet::PingResp => continue,
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    }

    /// The next PUBLISH, acknowledged when it is QoS 1.
    pub async fn next_publish(&mut self) -> Option<Publish> {
        loop {
            match self.recv().await? {
                Packet::Publish(p) => {
                    if p.qos == QoS::AtLeastOnce {
                        self.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
                    }
                    return Some(p);
                }
                Packet::PubAck(_) | Packet::PingResp => continue,
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    }
}
