//! Deleting a tenant deletes what the broker keeps for it: a tenant created again under the
//! same domain finds no session, no queued command and no retained message, in memory or after
//! a restart; its stored data (messages and metrics) is gone when the deletion answers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchyard_broker::{Broker, BrokerConfig, DataPath, NoData, NoIntake, RouterTask};
use switchyard_codec::{
    Connect, Disconnect, Packet, Properties, Protocol, Publish, QoS, SubOptions, Subscribe, SubscribeFilter,
};
use switchyard_hub::{Hub, HubConfig, Registry};
use switchyard_identity::{Domain, Provisioned, ResourceId};
use switchyard_storage::data::{Ingest, MessageStore, ResourceKey, TimeRange};
use switchyard_storage::{DataStore, MemoryDataStore, MemoryStore};
use switchyard_storage_embedded::EmbeddedStore;
use switchyard_transport::ListenerLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{TestClock, registry_on};

const WAIT: Duration = Duration::from_secs(5);
const COMMANDS: &str = "a.example/resources/dev/commands";

/// A broker on embedded storage in `dir`, authenticating through a hub over `registry`.
struct Running {
    addr: SocketAddr,
    hub: Arc<Hub>,
    broker: Broker,
    listener_stop: CancellationToken,
    router_stop: CancellationToken,
    tasks: TaskTracker,
    router: RouterTask,
}

impl Running {
    async fn start(dir: &Path, registry: &Arc<Registry>) -> Running {
        Running::start_with(dir, registry, Arc::new(NoData)).await
    }

    async fn start_with(dir: &Path, registry: &Arc<Registry>, data: Arc<dyn DataStore>) -> Running {
        let hub = Hub::new(Arc::clone(registry), HubConfig::default());
        let store = EmbeddedStore::open(dir).expect("store opens");
        let router_stop = CancellationToken::new();
        let data = DataPath { intake: Arc::new(NoIntake), store: data };
        let config = BrokerConfig::default();
        let (broker, router) =
            Broker::start_with_data(config, Arc::new(store), hub.clone(), data, router_stop.clone()).unwrap();
        hub.attach(broker.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ListenerLimits { connect_timeout: WAIT, connections: Arc::new(Semaphore::new(100)) };
        let (listener_stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        let serve = switchyard_transport::run_listener(
            listener,
            None,
            broker.clone(),
            limits,
            tasks.clone(),
            listener_stop.clone(),
        );
        tokio::spawn(serve);
        Running { addr, hub, broker, listener_stop, router_stop, tasks, router }
    }

    async fn stop(self) {
        self.listener_stop.cancel();
        self.broker.close_all().await.unwrap();
        self.tasks.close();
        tokio::time::timeout(WAIT, self.tasks.wait()).await.expect("connections drain");
        self.router_stop.cancel();
        assert!(tokio::time::timeout(WAIT, self.router.join()).await.expect("router flushes"));
    }
}

struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    /// A 5.0 client with a persistent session (1 h); the CONNACK's session-present flag.
    async fn connect(addr: SocketAddr, id: &str, user: &str, pass: &str, clean: bool) -> (Client, bool) {
        let mut client = Client { stream: TcpStream::connect(addr).await.unwrap(), buf: BytesMut::new() };
        let connect = Connect {
            protocol: Protocol::V5,
            clean_start: clean,
            keep_alive: 60,
            client_id: id.into(),
            will: None,
            username: Some(user.into()),
            password: Some(Bytes::copy_from_slice(pass.as_bytes())),
            properties: Properties { session_expiry_interval: Some(3600), ..Properties::default() },
        };
        client.send(&Packet::Connect(Box::new(connect))).await;
        match client.recv(WAIT).await {
            Some(Packet::ConnAck(ack)) if ack.code == 0 => (client, ack.session_present),
            other => panic!("expected a successful CONNACK, got {other:?}"),
        }
    }

    async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        switchyard_codec::encode(packet, Protocol::V5, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(p) = switchyard_codec::decode(&mut self.buf, Some(Protocol::V5), usize::MAX).unwrap() {
                return Some(p);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    async fn subscribe(&mut self, filter: &str) {
        let options = SubOptions { qos: QoS::AtLeastOnce, ..SubOptions::default() };
        let filters = vec![SubscribeFilter { filter: filter.into(), options }];
        self.send(&Packet::Subscribe(Subscribe { packet_id: 1, filters, properties: Properties::default() })).await;
        match self.recv(WAIT).await {
            Some(Packet::SubAck(ack)) => assert_eq!(ack.reasons, [1]),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Leave, keeping the session (or ending it with `expiry` 0).
    async fn leave(mut self, expiry: Option<u32>) {
        let properties = Properties { session_expiry_interval: expiry, ..Properties::default() };
        self.send(&Packet::Disconnect(Disconnect { reason: 0, properties })).await;
        while self.recv(WAIT).await.is_some() {}
    }
}

fn device_key(p: &Provisioned) -> String {
    p.master_key.derive_device_key(&ResourceId::parse("dev").unwrap()).expose_base64()
}

/// The device's session, a queued command and a retained message, all in tenant `a.example`.
async fn leave_state_behind(b: &Running, p: &Provisioned) {
    let (device, _) = Client::connect(b.addr, "dev", "a.example/dev", &device_key(p), true).await;
    let mut device = device;
    device.subscribe(COMMANDS).await;
    device.leave(None).await;
    let app_user = format!("a.example/apikey/{}", p.api_key.id);
    let (mut app, _) = Client::connect(b.addr, "app", &app_user, &p.api_secret.expose_base64(), true).await;
    let command = Publish {
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: COMMANDS.into(),
        packet_id: 1,
        payload: Bytes::from_static(b"reboot"),
        ..Publish::default()
    };
    app.send(&Packet::Publish(command)).await;
    assert!(matches!(app.recv(WAIT).await, Some(Packet::PubAck(_))));
    app.leave(Some(0)).await;
}

/// The device of a tenant created again finds nothing: no session, no command, no retained.
async fn nothing_inherited(b: &Running, p: &Provisioned) {
    let (mut device, present) = Client::connect(b.addr, "dev", "a.example/dev", &device_key(p), false).await;
    assert!(!present, "no session inherited");
    device.subscribe(COMMANDS).await;
    let got = device.recv(Duration::from_millis(300)).await;
    assert!(got.is_none(), "no queued command or retained message inherited, got {got:?}");
    device.leave(Some(0)).await;
}

#[tokio::test]
async fn a_tenant_created_again_inherits_nothing_in_memory_or_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let registry = Arc::new(registry_on(
        Arc::new(MemoryStore::default()),
        switchyard_identity::KeyFile::generate().unwrap(),
        &clock,
    ));
    let domain = Domain::parse("a.example").unwrap();

    let b = Running::start(dir.path(), &registry).await;
    let p = registry.create_tenant(domain.clone()).unwrap();
    leave_state_behind(&b, &p).await;
    b.hub.delete_tenant(&domain).await.unwrap();
    let p = registry.create_tenant(domain.clone()).unwrap();
    nothing_inherited(&b, &p).await;

    // Deleted durably: a restart brings none of it back.
    leave_state_behind(&b, &p).await;
    b.hub.delete_tenant(&domain).await.unwrap();
    b.stop().await;
    let b = Running::start(dir.path(), &registry).await;
    let p = registry.create_tenant(domain.clone()).unwrap();
    nothing_inherited(&b, &p).await;
    b.stop().await;
}

#[tokio::test]
async fn deleting_a_tenant_deletes_its_data_before_answering() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let registry = Arc::new(registry_on(
        Arc::new(MemoryStore::default()),
        switchyard_identity::KeyFile::generate().unwrap(),
        &clock,
    ));
    let (a, b) = (Domain::parse("a.example").unwrap(), Domain::parse("b.example").unwrap());
    registry.create_tenant(a.clone()).unwrap();
    registry.create_tenant(b.clone()).unwrap();
    let data = Arc::new(MemoryDataStore::default());
    let running = Running::start_with(dir.path(), &registry, data.clone()).await;
    let key = |tenant: &Domain| ResourceKey { tenant: tenant.as_str().into(), resource: "dev".into() };
    let record = |tenant: &Domain| Ingest {
        resource: key(tenant),
        ts: 1_000,
        message_id: None,
        body: Bytes::from_static(b"{}"),
        expires_at: None,
        keep: 10,
        points: Vec::new(),
        channel: switchyard_storage::data::Channel::Events,
        forward: true,
    };
    data.write(&[record(&a), record(&b)], 1_000).unwrap();
    running.hub.delete_tenant(&a).await.unwrap();
    let left = |tenant: &Domain| data.messages(&key(tenant), TimeRange::default(), 10, 1_000).unwrap().len();
    assert_eq!((left(&a), left(&b)), (0, 1), "the deleted tenant's data only");
    running.stop().await;
}
