//! The JetStream sink against real NATS servers: the shared one of `SWITCHYARD_TEST_NATS_URL`
//! (`scripts/nats.sh start DIR`), each test with its own stream and subjects, and, for the
//! restart test, a `nats-server` this test starts and stops itself. Without either the tests
//! fail, never pass silently.

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use switchyard_forward::{Forwarder, JetStreamConfig, JetStreamSink, NatsAuth, Outcome, RunConfig, Sink, SinkKind};
use switchyard_storage::data::{Channel, DataStore, Ingest, ResourceKey};
use switchyard_storage::{MemoryDataStore, OutboxRecord, OutboxStore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn shared_url() -> String {
    std::env::var("SWITCHYARD_TEST_NATS_URL").unwrap_or_else(|_| {
        panic!(
            "SWITCHYARD_TEST_NATS_URL is not set: these tests need a nats-server with JetStream; start one with \
             `eval \"$(bash scripts/nats.sh start /tmp/nats)\"` (scripts/test.sh does)"
        )
    })
}

/// A stream name and subject prefix no other test uses.
pub fn unique() -> (String, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    (format!("T{pid}_{n}"), format!("it{pid}.n{n}"))
}

pub fn sink_config(url: &str, stream: &str, prefix: &str, create_stream: bool) -> JetStreamConfig {
    JetStreamConfig {
        url: url.to_string(),
        auth: NatsAuth::None,
        ca_file: None,
        subject_prefix: prefix.to_string(),
        stream: stream.to_string(),
        create_stream,
        max_in_flight: 16,
        timeout: Duration::from_secs(2),
    }
}

fn run_config() -> RunConfig {
    RunConfig {
        lanes: 3,
        batch_records: 20,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        poll: Duration::from_millis(10),
        ..RunConfig::default()
    }
}

fn ingest(resource: &str, n: usize) -> Ingest {
    Ingest {
        resource: ResourceKey { tenant: "acme.example".into(), resource: resource.into() },
        ts: 1_700_000_000_000 + n as i64,
        message_id: None,
        body: Bytes::from(format!("{{\"n\":{n}}}")),
        expires_at: None,
        keep: 100_000,
        points: Vec::new(),
        channel: Channel::Events,
        forward: true,
    }
}

/// Writes `rounds` records for each of `resources` (numbered from `from`).
pub fn write(store: &MemoryDataStore, resources: &[&str], from: usize, rounds: usize) {
    for n in from..from + rounds {
        let batch: Vec<Ingest> = resources.iter().map(|r| ingest(r, n)).collect();
        store.write(&batch, 1_700_000_000_000).unwrap();
    }
}

pub fn start(store: &MemoryDataStore, sink: JetStreamSink, shutdown: &CancellationToken) -> TaskTracker {
    let tasks = TaskTracker::new();
    let outbox: Arc<dyn OutboxStore> = Arc::new(store.clone());
    let sinks = vec![("js".to_string(), SinkKind::JetStream(Box::new(sink)))];
    Forwarder::start(outbox, sinks, run_config(), &tasks, shutdown.clone()).unwrap();
    tasks
}

pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..6_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not reached within 60 s");
}

/// One message of the stream: subject, `Nats-Msg-Id`, and the record it carries.
struct Stored {
    subject: String,
    msg_id: String,
    record: serde_json::Value,
}

/// Every message of `stream`, in stream order.
async fn read_stream(url: &str, stream: &str) -> Vec<Stored> {
    let client = async_nats::connect(url).await.expect("connect to read the stream");
    let context = jetstream::new(client);
    let stream = context.get_stream(stream).await.expect("the stream exists");
    let info = stream.get_info().await.unwrap();
    let mut out = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let message = stream.get_raw_message(seq).await.unwrap();
        out.push(Stored {
            subject: message.subject.to_string(),
            msg_id: message.headers.get("Nats-Msg-Id").expect("Nats-Msg-Id is set").to_string(),
            record: serde_json::from_slice(&message.payload).unwrap(),
        });
    }
    out
}

/// Checks every record is there exactly once, its header matches its body, and each resource's
/// ids increase; answers how many records each resource has.
fn check_once_in_order(stored: &[Stored], prefix: &str, expected: usize) -> HashMap<String, usize> {
    let mut last: HashMap<String, String> = HashMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for message in stored {
        let id = message.record["id"].as_str().unwrap().to_string();
        assert_eq!(message.msg_id, id, "Nats-Msg-Id is the record id");
        let resource = message.record["resource"].as_str().unwrap().to_string();
        assert_eq!(message.subject, format!("{prefix}.acme%2Eexample.{resource}.events"));
        assert_eq!(message.record["domain"], "acme.example");
        assert_eq!(message.record["channel"], "events");
        if let Some(previous) = last.insert(resource.clone(), id.clone()) {
            assert!(id > previous, "{resource}: {id} after {previous}");
        }
        *counts.entry(resource).or_default() += 1;
    }
    assert_eq!(stored.len(), expected, "every record exactly once");
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_in_order_per_resource_with_their_ids() {
    let url = shared_url();
    let (stream, prefix) = unique();
    let store = MemoryDataStore::default();
    let shutdown = CancellationToken::new();
    let tasks = start(&store, JetStreamSink::new(sink_config(&url, &stream, &prefix, true)).unwrap(), &shutdown);
    let resources = ["a", "b", "c", "d", "e"];
    write(&store, &resources, 0, 60);
    until("cursor at 300", || store.cursor("js").unwrap() == Some(300)).await;
    let stored = read_stream(&url, &stream).await;
    let counts = check_once_in_order(&stored, &prefix, 300);
    assert!(resources.iter().all(|r| counts[*r] == 60));
    assert_eq!(stored[0].record["message"], serde_json::json!({"n": 0}));
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_is_dropped_by_the_stream() {
    let url = shared_url();
    let (stream, prefix) = unique();
    let sink = JetStreamSink::new(sink_config(&url, &stream, &prefix, true)).unwrap();
    let records: Vec<OutboxRecord> = (1..=10)
        .map(|seq| OutboxRecord {
            seq,
            at: 0,
            tenant: "acme.example".into(),
            resource: "r".into(),
            channel: Channel::Events,
            body: Bytes::from_static(b"{\"n\":1}"),
        })
        .collect();
    assert_eq!(sink.deliver(&records).await, Outcome::Delivered);
    assert_eq!(sink.deliver(&records[3..]).await, Outcome::Delivered, "a resend is acknowledged");
    let stored = read_stream(&url, &stream).await;
    check_once_in_order(&stored, &prefix, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_waits_for_the_stream_to_acknowledge() {
    let url = shared_url();
    let (stream, prefix) = unique();
    let store = MemoryDataStore::default();
    let shutdown = CancellationToken::new();
    // No stream takes these subjects yet, and the sink may not create one: nothing is acknowledged.
    let tasks = start(&store, JetStreamSink::new(sink_config(&url, &stream, &prefix, false)).unwrap(), &shutdown);
    write(&store, &["a", "b"], 0, 25);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(store.cursor("js").unwrap(), Some(0), "nothing acknowledged, the cursor stays");
    let context = jetstream::new(async_nats::connect(&url).await.unwrap());
    context
        .create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    until("cursor at 50", || store.cursor("js").unwrap() == Some(50)).await;
    check_once_in_order(&read_stream(&url, &stream).await, &prefix, 50);
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
}

/// A `nats-server` with JetStream a test owns: killed when dropped.
pub struct OwnServer {
    child: Child,
}

impl OwnServer {
    pub fn start(port: u16, store: &Path) -> OwnServer {
        Self::start_with(port, store, &[])
    }

    /// Started with `extra` arguments after the usual ones.
    pub fn start_with(port: u16, store: &Path, extra: &[&str]) -> OwnServer {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run nats-server ({e}): install the Debian package nats-server (scripts/nats.sh does)")
            });
        // Owned from here: a panic below kills and reaps it.
        let server = OwnServer { child };
        for _ in 0..500 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("nats-server did not listen on port {port}");
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_resumes_after_the_server_restarts_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("nats://127.0.0.1:{port}");
    let server = OwnServer::start(port, dir.path());
    let (stream, prefix) = unique();
    let store = MemoryDataStore::default();
    let shutdown = CancellationToken::new();
    let tasks = start(&store, JetStreamSink::new(sink_config(&url, &stream, &prefix, true)).unwrap(), &shutdown);
    let resources = ["a", "b", "c", "d"];
    write(&store, &resources, 0, 25);
    until("cursor at 100", || store.cursor("js").unwrap() == Some(100)).await;

    server.stop();
    write(&store, &resources, 25, 25);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(store.cursor("js").unwrap(), Some(100), "nothing acknowledged while the server is down");

    let _server = OwnServer::start(port, dir.path());
    write(&store, &resources, 50, 25);
    until("cursor at 300", || store.cursor("js").unwrap() == Some(300)).await;
    let counts = check_once_in_order(&read_stream(&url, &stream).await, &prefix, 300);
    assert!(resources.iter().all(|r| counts[*r] == 75));
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
}
