//! Configuration: TOML file, then `SWITCHYARD_*` environment variables, then flags, parsed into
//! typed [`Settings`] before any port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use switchyard_broker::{BrokerConfig, DenyRule, QueueFullPolicy};
use switchyard_identity::{Domain, LimitRule, LimiterConfig};
use switchyard_pipeline::PipelineConfig;
use switchyard_transport::{ClientAuth, ClientCaFiles, TlsFiles};

/// A commented, complete configuration; `switchyard config example` prints it.
pub const EXAMPLE: &str = include_str!("example.toml");

#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Raw {
    server: RawServer,
    mqtt: RawMqtt,
    tls: Option<RawTls>,
    http: RawHttp,
    tenant: RawTenant,
    auth: RawAuth,
    pipeline: RawPipeline,
    forward: Vec<crate::forward::RawForward>,
    storage: crate::storage::RawStorage,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawServer {
    data_dir: PathBuf,
    key_file: Option<PathBuf>,
    log_format: String,
    shutdown_timeout_secs: u64,
    workers: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            data_dir: "./data".into(),
            key_file: None,
            log_format: "text".into(),
            shutdown_timeout_secs: 10,
            workers: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawMqtt {
    listen: String,
    tls_listen: String,
    allow_anonymous: bool,
    max_packet_size: u32,
    receive_maximum: u16,
    server_keep_alive: u16,
    max_inflight_messages: u16,
    max_queued_messages: usize,
    max_queued_bytes: usize,
    queue_full: String,
    backpressure_queue: usize,
    answer_backlog: usize,
    max_connections: usize,
    connect_timeout_secs: u64,
    topic_alias_maximum: u16,
    max_topic_levels: usize,
    max_retained_messages: usize,
    max_retained_bytes: usize,
    max_session_expiry: u32,
    max_sessions_per_identity: usize,
    anonymous_deny: Vec<RawDeny>,
}

impl Default for RawMqtt {
    fn default() -> Self {
        let core = BrokerConfig::default();
        RawMqtt {
            listen: "0.0.0.0:1883".into(),
            tls_listen: "0.0.0.0:8883".into(),
            allow_anonymous: false,
            max_packet_size: core.max_packet_size,
            receive_maximum: core.receive_maximum,
            server_keep_alive: core.server_keep_alive,
            max_inflight_messages: core.max_inflight_messages,
            max_queued_messages: core.max_queued_messages,
            max_queued_bytes: core.max_queued_bytes,
            queue_full: "disconnect".into(),
            backpressure_queue: core.backpressure_queue,
            answer_backlog: core.answer_backlog,
            max_connections: 100_000,
            connect_timeout_secs: 10,
            topic_alias_maximum: core.topic_alias_maximum,
            max_topic_levels: core.max_topic_levels,
            max_retained_messages: core.max_retained_messages,
            max_retained_bytes: core.max_retained_bytes,
            max_session_expiry: core.max_session_expiry,
            max_sessions_per_identity: core.max_sessions_per_identity,
            anonymous_deny: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawDeny {
    subscribe: Option<String>,
    publish: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    #[serde(default = "client_auth_off")]
    client_auth: String,
    #[serde(default)]
    client_ca: Vec<RawClientCa>,
}

fn client_auth_off() -> String {
    "off".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientCa {
    domain: String,
    ca: PathBuf,
    crl: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawHttp {
    listen: String,
    tls_listen: String,
    max_connections: usize,
    max_websockets: usize,
    max_streams: usize,
    allowed_origins: Vec<String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: "0.0.0.0:8080".into(),
            tls_listen: "0.0.0.0:8443".into(),
            max_connections: 10_000,
            max_websockets: 10_000,
            max_streams: switchyard_api::DEFAULT_MAX_STREAMS,
            allowed_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTenant {
    domain: String,
    key_rotation_grace_secs: u64,
}

impl Default for RawTenant {
    fn default() -> Self {
        RawTenant {
            domain: "localhost".into(),
            key_rotation_grace_secs: switchyard_identity::DEFAULT_ROTATION_GRACE.as_secs(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawAuth {
    max_failures_per_address: u32,
    max_failures_per_identity: u32,
    failure_window_secs: u64,
    lockout_secs: u64,
    max_tracked: usize,
}

impl Default for RawAuth {
    fn default() -> Self {
        let limits = LimiterConfig::default();
        RawAuth {
            max_failures_per_address: limits.per_address.max_failures,
            max_failures_per_identity: limits.per_identity.max_failures,
            failure_window_secs: limits.per_address.window.as_secs(),
            lockout_secs: limits.per_address.cooldown.as_secs(),
            max_tracked: limits.max_tracked,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawPipeline {
    message_cache: u32,
    idempotency_window: String,
    max_body: usize,
    max_messages_per_request: usize,
    max_depth: usize,
    max_metrics: usize,
    max_metric_name: usize,
    max_message_id: usize,
    retention: Option<String>,
    max_outbox_bytes: u64,
}

impl Default for RawPipeline {
    fn default() -> Self {
        let p = PipelineConfig::default();
        RawPipeline {
            message_cache: p.message_cache,
            idempotency_window: "24h".into(),
            max_body: switchyard_api::DEFAULT_MAX_BODY,
            max_messages_per_request: p.max_messages_per_request,
            max_depth: p.max_depth,
            max_metrics: p.max_metrics,
            max_metric_name: p.max_metric_name,
            max_message_id: p.max_message_id,
            retention: None,
            max_outbox_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Command-line values that override the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub mqtt_listen: Option<String>,
    pub http_listen: Option<String>,
}

/// Checked settings, ready to use.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// The server key file sealing tenants' master keys (keep it outside `data_dir`); *default*
    /// `switchyard.key` beside `data_dir`, so it does not depend on the working directory.
    pub key_file: PathBuf,
    pub json_logs: bool,
    pub shutdown_timeout: Duration,
    /// Runtime worker threads (connections and the router share them).
    pub workers: usize,
    pub mqtt_listen: SocketAddr,
    pub mqtt_tls_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub http_tls_listen: SocketAddr,
    /// Open HTTP and HTTPS connections at most (together); beyond, new ones are closed.
    pub http_max_connections: usize,
    /// Open data WebSockets at most (subscribe, publish, `/socket`); beyond, upgrades get 503.
    pub http_max_websockets: usize,
    /// Open SSE/NDJSON streams at most; beyond, 503.
    pub http_max_streams: usize,
    /// Web origins besides the server's own that browsers may send changes from (and CORS).
    pub allowed_origins: switchyard_api::AllowedOrigins,
    pub tls: Option<TlsFiles>,
    pub allow_anonymous: bool,
    pub anonymous_deny: Vec<DenyRule>,
    pub max_connections: usize,
    pub connect_timeout: Duration,
    pub broker: BrokerConfig,
    /// The tenant created on first start.
    pub tenant_domain: Domain,
    /// How long a previous master key stays valid after a rotation.
    pub rotation_grace: Duration,
    /// Failed-authentication limits.
    pub auth_limits: LimiterConfig,
    /// Intake limits and the message cache size.
    pub pipeline: PipelineConfig,
    /// How long a `messageId` is remembered per resource.
    pub idempotency_window: Duration,
    /// Bytes of an HTTP ingest request body.
    pub max_body: usize,
    /// Messages and points older than this (by timestamp) are deleted; `None` keeps them.
    pub retention: Option<Duration>,
    /// Bytes of a tenant's messages not yet with every forwarding sink beyond which its
    /// forwarded intake is refused (503 / 0x97).
    pub max_outbox_bytes: u64,
    /// The forwarding sinks (`[[forward]]`), in the order written.
    pub forward: Vec<crate::forward::SinkSettings>,
    /// Where the stores live (`[storage]`).
    pub storage: crate::storage::Backend,
}

impl Settings {
    /// Read `file` (if any), apply `env` (`SWITCHYARD_SECTION_KEY=value`) and `flags`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> anyhow::Result<Settings> {
        let mut table: toml::Table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("SWITCHYARD_") else { continue };
            let rest = rest.to_ascii_lowercase();
            let Some((section, key)) = rest.split_once('_') else { continue };
            if !["server", "mqtt", "tls", "http", "tenant", "auth", "pipeline", "storage"].contains(&section) {
                continue;
            }
            let entry = table.entry(section.to_owned()).or_insert_with(|| toml::Value::Table(Default::default()));
            let Some(section_table) = entry.as_table_mut() else { bail!("[{section}] is not a table") };
            section_table.insert(key.to_owned(), scalar(&value));
        }
        let mut raw: Raw = toml::Value::Table(table).try_into().context("invalid configuration")?;
        if let Some(dir) = &flags.data_dir {
            raw.server.data_dir.clone_from(dir);
        }
        if let Some(addr) = &flags.mqtt_listen {
            raw.mqtt.listen.clone_from(addr);
        }
        if let Some(addr) = &flags.http_listen {
            raw.http.listen.clone_from(addr);
        }
        Settings::check(raw)
    }

    fn check(raw: Raw) -> anyhow::Result<Settings> {
        let addr = |what: &str, s: &str| -> anyhow::Result<SocketAddr> {
            s.parse().with_context(|| format!("{what} = {s:?} is not an address like 0.0.0.0:1883"))
        };
        let m = &raw.mqtt;
        if m.max_packet_size < 64 {
            bail!("mqtt.max_packet_size must be at least 64 bytes");
        }
        if m.receive_maximum == 0 || m.max_inflight_messages == 0 {
            bail!("mqtt.receive_maximum and mqtt.max_inflight_messages must be at least 1");
        }
        if m.max_connections == 0 || m.answer_backlog == 0 {
            bail!("mqtt.max_connections and mqtt.answer_backlog must be at least 1");
        }
        if m.max_topic_levels == 0 {
            bail!("mqtt.max_topic_levels must be at least 1");
        }
        if m.max_sessions_per_identity == 0 {
            bail!("mqtt.max_sessions_per_identity must be at least 1");
        }
        let queue_full = match m.queue_full.as_str() {
            "disconnect" => QueueFullPolicy::DisconnectSubscriber,
            "refuse" => QueueFullPolicy::RefuseNew,
            other => bail!("mqtt.queue_full = {other:?}: expected \"disconnect\" or \"refuse\""),
        };
        let mut deny = Vec::new();
        for rule in &m.anonymous_deny {
            match (&rule.subscribe, &rule.publish) {
                (Some(f), None) => deny.push(DenyRule::Subscribe(f.clone())),
                (None, Some(f)) => deny.push(DenyRule::Publish(f.clone())),
                _ => bail!("each [[mqtt.anonymous_deny]] rule needs exactly one of subscribe or publish"),
            }
        }
        let broker = BrokerConfig {
            max_packet_size: m.max_packet_size,
            receive_maximum: m.receive_maximum,
            server_keep_alive: m.server_keep_alive,
            max_inflight_messages: m.max_inflight_messages,
            max_queued_messages: m.max_queued_messages,
            max_queued_bytes: m.max_queued_bytes,
            queue_full,
            backpressure_queue: m.backpressure_queue,
            answer_backlog: m.answer_backlog,
            topic_alias_maximum: m.topic_alias_maximum,
            max_topic_levels: m.max_topic_levels,
            max_retained_messages: m.max_retained_messages,
            max_retained_bytes: m.max_retained_bytes,
            max_session_expiry: m.max_session_expiry,
            max_sessions_per_identity: m.max_sessions_per_identity,
            ..BrokerConfig::default()
        };
        let tenant_domain = Domain::parse(&raw.tenant.domain.to_ascii_lowercase())
            .with_context(|| format!("tenant.domain = {:?} is not a valid domain", raw.tenant.domain))?;
        let a = &raw.auth;
        if a.max_failures_per_address == 0
            || a.max_failures_per_identity == 0
            || a.failure_window_secs == 0
            || a.max_tracked == 0
        {
            bail!(
                "auth.max_failures_per_address, auth.max_failures_per_identity, auth.failure_window_secs and \
                 auth.max_tracked must be at least 1"
            );
        }
        if raw.http.max_connections == 0 || raw.http.max_streams == 0 {
            bail!("http.max_connections and http.max_streams must be at least 1");
        }
        if raw.http.max_websockets == 0 {
            bail!("http.max_websockets must be at least 1");
        }
        let rule = |max_failures| LimitRule {
            max_failures,
            window: Duration::from_secs(a.failure_window_secs),
            cooldown: Duration::from_secs(a.lockout_secs),
        };
        let auth_limits = LimiterConfig {
            per_address: rule(a.max_failures_per_address),
            per_identity: rule(a.max_failures_per_identity),
            max_tracked: a.max_tracked,
        };
        let p = &raw.pipeline;
        let pipeline = PipelineConfig {
            message_cache: p.message_cache,
            max_messages_per_request: p.max_messages_per_request,
            max_depth: p.max_depth,
            max_metrics: p.max_metrics,
            max_metric_name: p.max_metric_name,
            max_message_id: p.max_message_id,
        };
        pipeline.validate()?;
        let idempotency_window = switchyard_pipeline::parse_duration(&p.idempotency_window)
            .map_err(|e| anyhow::anyhow!("pipeline.idempotency_window = {:?}: {e}", p.idempotency_window))?;
        let retention = (p.retention.as_deref())
            .map(|r| {
                switchyard_pipeline::parse_duration(r).map_err(|e| anyhow::anyhow!("pipeline.retention = {r:?}: {e}"))
            })
            .transpose()?;
        let storage = crate::storage::check(raw.storage)?;
        if retention.is_some() && matches!(storage, crate::storage::Backend::Postgres(_)) {
            bail!("pipeline.retention is not supported with storage.backend = \"postgres\" yet (ttl is)");
        }
        if p.max_body < 1024 {
            bail!("pipeline.max_body must be at least 1024 bytes");
        }
        let key_file = raw.server.key_file.unwrap_or_else(|| default_key_file(&raw.server.data_dir));
        let json_logs = match raw.server.log_format.as_str() {
            "json" => true,
            "text" => false,
            other => bail!("server.log_format = {other:?}: expected \"text\" or \"json\""),
        };
        Ok(Settings {
            data_dir: raw.server.data_dir,
            key_file,
            json_logs,
            shutdown_timeout: Duration::from_secs(raw.server.shutdown_timeout_secs),
            workers: match raw.server.workers {
                // One core is left to storage commits, the kernel's network work and the system.
                0 => std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
                n => n,
            },
            mqtt_listen: addr("mqtt.listen", &m.listen)?,
            mqtt_tls_listen: addr("mqtt.tls_listen", &m.tls_listen)?,
            http_listen: addr("http.listen", &raw.http.listen)?,
            http_tls_listen: addr("http.tls_listen", &raw.http.tls_listen)?,
            http_max_connections: raw.http.max_connections,
            http_max_websockets: raw.http.max_websockets,
            http_max_streams: raw.http.max_streams,
            allowed_origins: switchyard_api::AllowedOrigins::new(&raw.http.allowed_origins)
                .map_err(|e| anyhow::anyhow!("http.allowed_origins: {e}"))?,
            tls: raw.tls.map(tls_files).transpose()?,
            allow_anonymous: m.allow_anonymous,
            anonymous_deny: deny,
            max_connections: m.max_connections,
            connect_timeout: Duration::from_secs(m.connect_timeout_secs.max(1)),
            broker,
            tenant_domain,
            rotation_grace: Duration::from_secs(raw.tenant.key_rotation_grace_secs),
            auth_limits,
            pipeline,
            idempotency_window,
            max_body: raw.pipeline.max_body,
            retention,
            max_outbox_bytes: raw.pipeline.max_outbox_bytes,
            forward: crate::forward::check(raw.forward)?,
            storage,
        })
    }
}

/// `switchyard.key` in the directory that holds `data_dir`: beside the data, not inside it,
/// and found again whatever the working directory when `data_dir` is absolute.
fn default_key_file(data_dir: &Path) -> PathBuf {
    let parent = data_dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parent.join("switchyard.key")
}

/// The `[tls]` section: the server certificate, and the tenants' CAs for client certificates.
fn tls_files(raw: RawTls) -> anyhow::Result<TlsFiles> {
    let client_auth = match raw.client_auth.as_str() {
        "off" => ClientAuth::Off,
        "optional" => ClientAuth::Optional,
        "required" => ClientAuth::Required,
        other => bail!("tls.client_auth = {other:?}: expected \"off\", \"optional\" or \"required\""),
    };
    if client_auth != ClientAuth::Off && raw.client_ca.is_empty() {
        bail!("tls.client_auth = {:?} needs at least one [[tls.client_ca]]", raw.client_auth);
    }
    let client_cas = raw
        .client_ca
        .into_iter()
        .map(|c| {
            let domain = Domain::parse(&c.domain.to_ascii_lowercase())
                .with_context(|| format!("tls.client_ca domain = {:?} is not a valid domain", c.domain))?;
            Ok(ClientCaFiles { domain, ca: c.ca, crl: c.crl })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(TlsFiles { client_auth, client_cas, ..TlsFiles::new(raw.cert, raw.key) })
}

/// An environment value as TOML: booleans and integers typed, anything else a string.
fn scalar(value: &str) -> toml::Value {
    if let Ok(b) = value.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    toml::Value::String(value.to_owned())
}

#[cfg(test)]
mod tests;
