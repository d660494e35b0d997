//! Smoke runs of every scenario against a real broker started in this process (plain MQTT, the
//! HTTP API, and one tenant authenticated by the Device Hub): about a second each, with tiny numbers. They
//! check that messages flow and that the report is well-formed JSON, never how fast anything
//! is: speed is not a test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use switchyard_api::{ApiState, HttpLimits};
use switchyard_bench::{Args, Options};
use switchyard_broker::{AnonymousAuth, Broker, BrokerConfig, DataPath, RouterTask};
use switchyard_hub::{DEFAULT_DEVICE_CACHE, Hub, HubConfig, Registry, system_clock};
use switchyard_identity::{Domain, KeyFile};
use switchyard_pipeline::{Pipeline, PipelineConfig};
use switchyard_storage::MemoryStore;
use switchyard_storage::data::{ResourceKey, SeriesStore};
use switchyard_storage_embedded::{DataConfig, EmbeddedDataStore, EmbeddedStore};
use switchyard_transport::ListenerLimits;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest a broker may take to drain and flush when a test ends.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The one tenant of the test broker.
const TENANT: &str = "a.example";

/// The broker in-process on 127.0.0.1:0: plain MQTT for anonymous clients, the HTTP API, and
/// the tenant [`TENANT`], whose master key is in `master.key` and whose API key is
/// `app_username` / `app_password` (`api_key` over HTTP); embedded storage in a temporary
/// directory, and the data pipeline on the tenant's events topics.
struct TestBroker {
    addr: SocketAddr,
    http_addr: SocketAddr,
    api_key: String,
    data: Arc<EmbeddedDataStore>,
    master_key_file: String,
    app_username: String,
    app_password: String,
    shutdown: CancellationToken,
    router_stop: CancellationToken,
    tasks: TaskTracker,
    router: RouterTask,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    async fn start() -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).expect("store opens");
        let registry = Registry::open(
            Arc::new(MemoryStore::default()),
            KeyFile::generate().unwrap(),
            system_clock(),
            DEFAULT_DEVICE_CACHE,
        )
        .expect("registry opens");
        let tenant = registry.create_tenant(Domain::parse(TENANT).unwrap()).expect("tenant created");
        let master_key_file = dir.path().join("master.key");
        std::fs::write(&master_key_file, tenant.master_key.expose_base64()).unwrap();
        let anonymous = AnonymousAuth { allow_anonymous: true, deny: Vec::new() };
        let hub = Hub::new(Arc::new(registry), HubConfig { anonymous, ..HubConfig::default() });
        let router_stop = CancellationToken::new();
        let data = Arc::new(EmbeddedDataStore::open(dir.path(), DataConfig::default()).expect("data store opens"));
        let data_path = DataPath { intake: Arc::new(Pipeline::new(PipelineConfig::default())), store: data.clone() };
        let (broker, router) = Broker::start_with_data(
            BrokerConfig::default(),
            Arc::new(store),
            hub.clone(),
            data_path,
            router_stop.clone(),
        )
        .unwrap();
        hub.attach(broker.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, tasks) = (CancellationToken::new(), TaskTracker::new());
        let limits =
            ListenerLimits { connect_timeout: Duration::from_secs(5), connections: Arc::new(Semaphore::new(1000)) };
        let app = switchyard_api::router(ApiState {
            broker: broker.clone(),
            limits: limits.clone(),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            hub,
            metrics: None,
            ingest: switchyard_api::IngestConfig::default(),
            ws: switchyard_api::WsLimits::default(),
            streams: Default::default(),
        });
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let http_limits = HttpLimits::new(Duration::from_secs(5), 1000);
        tokio::spawn(switchyard_api::serve(http, None, app, http_limits, tasks.clone(), shutdown.clone()));
        tokio::spawn(switchyard_transport::run_listener(
            listener,
            None,
            broker,
            limits,
            tasks.clone(),
            shutdown.clone(),
        ));
        TestBroker {
            addr,
            http_addr,
            api_key: format!("{}:{}", tenant.api_key.id.as_str(), tenant.api_secret.expose_base64()),
            data,
            master_key_file: master_key_file.display().to_string(),
            app_username: format!("{TENANT}/apikey/{}", tenant.api_key.id.as_str()),
            app_password: tenant.api_secret.expose_base64(),
            shutdown,
            router_stop,
            tasks,
            router,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(STOP_WAIT, self.tasks.wait()).await.expect("connections drain");
        self.router_stop.cancel();
        assert!(tokio::time::timeout(STOP_WAIT, self.router.join()).await.expect("router stops"));
    }
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

/// Run `switchyard bench <line>` against a fresh broker and return its report as parsed JSON.
/// In `line`, `{master_key_file}`, `{app_username}`, `{app_password}`, `{http_port}` and
/// `{api_key}` stand for the tenant's and the broker's. Secrets may start with `-`
/// (base64url), which the options take as values.
async fn bench(line: &str) -> Value {
    let broker = TestBroker::start().await;
    let json = bench_on(&broker, line).await;
    broker.stop().await;
    json
}

/// [`bench`] against a broker the caller started (and stops).
async fn bench_on(broker: &TestBroker, line: &str) -> Value {
    let line = line
        .replace("{master_key_file}", &broker.master_key_file)
        .replace("{app_username}", &broker.app_username)
        .replace("{app_password}", &broker.app_password)
        .replace("{http_port}", &broker.http_addr.port().to_string())
        .replace("{api_key}", &broker.api_key);
    let command = format!("bench {line} --port {} --warmup 0.2 --duration 1 --json", broker.addr.port());
    let args = Cli::try_parse_from(command.split_whitespace()).expect("valid command line").args;
    let options = Options::from_args(args).expect("valid options");
    let report = switchyard_bench::run_scenario(options, false).await.expect("the scenario runs");
    let text = serde_json::to_string_pretty(&report).unwrap();
    let json: Value = serde_json::from_str(&text).expect("the report is valid JSON");
    assert_eq!(json["tool"], "switchyard-bench");
    assert_eq!(json["scenario"], line.split_whitespace().next().unwrap());
    assert!(json["errors"].is_array(), "{json}");
    json
}

fn delivered(json: &Value) -> u64 {
    json["flow"]["delivered"].as_u64().unwrap_or_else(|| panic!("no flow.delivered in {json}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_qos1_delivers() {
    let json = bench("fan-in -n 3 --qos 1").await;
    assert!(delivered(&json) > 0, "{json}");
    assert!(json["flow"]["latency"]["p99_us"].is_number(), "{json}");
}

/// A 3.1.1 publisher with 100 in flight, beyond the broker's receive maximum (32): slowed,
/// never disconnected; and a 5.0 publisher asking for as many keeps to the receive maximum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_100_is_slowed_not_disconnected_in_both_protocols() {
    for line in ["fan-in -n 3 --qos 1 --protocol 3 --inflight 100", "fan-out -n 3 --qos 1 --inflight 100"] {
        let json = bench(line).await;
        assert!(delivered(&json) > 0, "{json}");
        assert_eq!(json["errors"], serde_json::json!([]), "{line}: {json}");
        assert_eq!(json["flow"]["lost"], 0, "{line}: {json}");
        assert_eq!(json["flow"]["dropped_clients"], 0, "{line}: {json}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_qos2_delivers() {
    let json = bench("fan-out -n 3 --qos 2 --protocol 3").await;
    assert!(delivered(&json) > 0, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_qos0_at_a_fixed_rate_delivers() {
    let json = bench("p2p -n 2 --qos 0 --rate 500 --payload 64").await;
    assert!(delivered(&json) > 0, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_delivers() {
    let json = bench("shared -n 3 --publishers 2").await;
    assert!(delivered(&json) > 0, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_topics_delivers() {
    let json = bench("many-topics -n 2 --topics 50 --count 200").await;
    assert!(delivered(&json) > 0, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_sessions_deliver_in_both_protocols() {
    for protocol in ["3", "5"] {
        let json = bench(&format!("fan-in -n 2 --persistent --protocol {protocol}")).await;
        assert!(delivered(&json) > 0, "{json}");
        assert_eq!(json["persistent"], true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_weighed() {
    let pid = std::process::id();
    let json = bench(&format!("idle -n 20 --broker-pid {pid}")).await;
    assert_eq!(json["idle"]["connections"], 20, "{json}");
    assert!(json["idle"]["alive_at_end"].as_u64().unwrap() > 0, "{json}");
    assert!(json["idle"]["broker_bytes_per_connection"].is_number(), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_rate_with_credentials_connects() {
    let json = bench("connect-rate -n 2 --username dev-{i} --password key-{i}").await;
    assert!(json["connect"]["connects"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["auth"], "password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_authenticate_with_derived_keys() {
    let json = bench("connect-rate -n 2 --master-key-file {master_key_file} --tenant a.example").await;
    assert!(json["connect"]["connects"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["connect"]["failures"], 0, "{json}");
    assert_eq!(json["auth"], "device-key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_publishes_under_its_tenant() {
    let json =
        bench("fan-in -n 2 --username {app_username} --password {app_password} --topic-prefix a.example/bench").await;
    assert!(delivered(&json) > 0, "{json}");
}

/// Devices publish 10-metric events through the pipeline: every acknowledged event is stored,
/// with its ten metrics, and the broker's memory is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_events_are_stored() {
    let broker = TestBroker::start().await;
    let pid = std::process::id();
    let json = bench_on(
        &broker,
        &format!("ingest -n 3 --master-key-file {{master_key_file}} --tenant {TENANT} --broker-pid {pid}"),
    )
    .await;
    let ingest = &json["ingest"];
    assert!(ingest["acked"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(ingest["refused"], 0, "{json}");
    assert_eq!(ingest["dropped_devices"], 0, "{json}");
    assert_eq!(ingest["metrics_per_message"], 10, "{json}");
    assert!(ingest["puback_latency"]["p99_us"].is_number(), "{json}");
    assert!(ingest["broker_memory"]["rss_kib_peak"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["inflight"], 100, "{json}");
    // Stored: the first device's resource has the ten series of its events.
    let now = i64::MAX / 4;
    let mut stored = 0;
    for i in 0..3 {
        let resource = format!("{}{i}", ingest["device_prefix"].as_str().unwrap());
        let key = ResourceKey { tenant: TENANT.into(), resource: resource.as_str().into() };
        let series = broker.data.series(&key, now).unwrap();
        if !series.is_empty() {
            assert_eq!(series.len(), 10, "{resource}: {series:?}");
            stored += 1;
        }
    }
    assert_eq!(stored, 3, "{json}");
    broker.stop().await;
}

/// Messages that cross protocols arrive, every one, and are timed: commands POSTed over HTTP at
/// devices subscribed over MQTT, and events devices publish over MQTT at listeners on SSE and on
/// WebSockets.
async fn bridge(path: &str) {
    let line = format!(
        "bridge --path {path} -n 3 --rate 300 --inflight 4 --master-key-file {{master_key_file}} --tenant {TENANT} \
         --http-port {{http_port}} --api-key {{api_key}}"
    );
    let json = bench(&line).await;
    let b = &json["bridge"];
    assert_eq!(b["path"], path, "{json}");
    assert!(b["received"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(b["accepted"], b["sent"], "{json}");
    assert_eq!(b["lost"], 0, "{json}");
    assert_eq!(b["dropped"], 0, "{json}");
    assert_eq!(json["errors"], serde_json::json!([]), "{json}");
    assert!(b["latency"]["p99_us"].is_number(), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_http_to_mqtt_delivers() {
    bridge("http-mqtt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_mqtt_to_sse_delivers() {
    bridge("mqtt-sse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_mqtt_to_websocket_delivers() {
    bridge("mqtt-ws").await;
}
