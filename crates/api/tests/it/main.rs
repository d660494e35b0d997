//! The HTTP front door on real sockets (127.0.0.1, clients from chosen loopback addresses):
//! failed-authentication limits per source address, and the connection cap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use switchyard_api::{ApiState, HttpLimits};
use switchyard_broker::{Broker, BrokerConfig};
use switchyard_hub::{Hub, HubConfig, Registry, system_clock};
use switchyard_identity::{AdminToken, Domain, KeyFile};
use switchyard_storage::{MemoryStore, NullStore};
use switchyard_transport::ListenerLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const WAIT: Duration = Duration::from_secs(5);

struct Running {
    addr: SocketAddr,
    limits: HttpLimits,
    admin_token: String,
    /// `Basic` credentials of the `localhost` tenant's first API key.
    api_key: (String, String),
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(max_connections: usize) -> Running {
    let registry = Registry::open(Arc::new(MemoryStore::default()), KeyFile::generate().unwrap(), system_clock(), 100)
        .expect("registry opens");
    let dir = tempfile::tempdir().unwrap();
    let path = registry.bootstrap(dir.path(), &Domain::parse("localhost").unwrap()).unwrap().unwrap();
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let text = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
    let hub = Hub::new(Arc::new(registry), HubConfig::default());
    let stop = CancellationToken::new();
    let (broker, _router) =
        Broker::start(BrokerConfig::default(), Arc::new(NullStore), hub.clone(), stop.clone()).expect("broker starts");
    let tasks = TaskTracker::new();
    let app = switchyard_api::router(ApiState {
        broker,
        limits: ListenerLimits { connect_timeout: WAIT, connections: Arc::new(Semaphore::new(100)) },
        shutdown: stop.clone(),
        tasks: tasks.clone(),
        hub,
        metrics: None,
        ingest: switchyard_api::IngestConfig::default(),
        ws: switchyard_api::WsLimits::default(),
        streams: Default::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = HttpLimits::new(WAIT, max_connections);
    tokio::spawn(switchyard_api::serve(listener, None, app, limits.clone(), tasks, stop.clone()));
    Running {
        addr,
        limits,
        admin_token: text(&file["admin_token"]),
        api_key: (text(&file["tenant"]["api_key"]), text(&file["tenant"]["api_secret"])),
        stop,
        _dir: dir,
    }
}

/// A TCP connection to `addr` from the loopback address `source`.
async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Status code and headers (names lowercased) of one response; reads until the server
/// closes (`Connection: close`) or, with `keep_open`, just the head of a bodiless reply.
async fn exchange(stream: &mut TcpStream, path: &str, authorization: &str, keep_open: bool) -> (u16, Vec<String>) {
    let connection = if keep_open { "keep-alive" } else { "close" };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: {authorization}\r\nConnection: {connection}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("response in time").unwrap();
        response.extend_from_slice(&buf[..n]);
        let head_done = response.windows(4).any(|w| w == b"\r\n\r\n");
        if n == 0 || (keep_open && head_done) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, lines.map(str::to_ascii_lowercase).collect())
}

async fn get(source: &str, addr: SocketAddr, path: &str, authorization: &str) -> (u16, Vec<String>) {
    exchange(&mut connect_from(source, addr).await, path, authorization, false).await
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
}

#[tokio::test]
async fn failures_from_one_address_never_lock_the_admin_or_an_application_out_of_another() {
    let s = start(100).await;
    let wrong_admin = format!("Bearer {}", AdminToken::generate().unwrap().expose_base64());
    let admin = format!("Bearer {}", s.admin_token);
    let (key, secret) = &s.api_key;
    let wrong_app = basic(key, &AdminToken::generate().unwrap().expose_base64());
    let app = basic(key, secret);
    let (a, b) = ("127.0.0.1", "127.0.0.2");
    for i in 0..50 {
        let (status, _) = get(a, s.addr, "/admin/tenants", &wrong_admin).await;
        assert!(status == 401 || status == 429, "attempt {i}: {status}");
        let (status, _) = get(a, s.addr, "/devices", &wrong_app).await;
        assert!(status == 401 || status == 429, "attempt {i}: {status}");
    }
    assert_eq!(get(b, s.addr, "/admin/tenants", &admin).await.0, 200);
    assert_eq!(get(b, s.addr, "/devices", &app).await.0, 200);
    for path in ["/admin/tenants", "/devices"] {
        let auth = if path == "/devices" { &app } else { &admin };
        let (status, headers) = get(a, s.addr, path, auth).await;
        assert_eq!(status, 429, "{path}");
        let retry_after = headers.iter().find_map(|h| h.strip_prefix("retry-after: ")).expect("Retry-After");
        assert!(retry_after.parse::<u64>().unwrap() >= 1, "{retry_after}");
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_until_one_ends() {
    let s = start(1).await;
    let admin = format!("Bearer {}", s.admin_token);
    let mut first = connect_from("127.0.0.1", s.addr).await;
    assert_eq!(exchange(&mut first, "/admin/tenants", &admin, true).await.0, 200);
    // The first connection is open and served: a second is closed without an answer.
    let mut second = connect_from("127.0.0.1", s.addr).await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, second.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // When the first ends its permit returns, and a new connection is served.
    drop(first);
    drop(s.limits.connections.acquire().await.unwrap());
    assert_eq!(get("127.0.0.1", s.addr, "/health", &admin).await.0, 200);
}
