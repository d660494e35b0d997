//! The command line (`switchyard bench SCENARIO ...`) and the typed options it becomes. Every
//! check happens here, before a connection is opened: the target must be loopback, the run is
//! bounded in time (and optionally in count), and numbers that cannot work are refused.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser};
use switchyard_codec::{Protocol, QoS};
use switchyard_identity::{Domain, MasterKey};

use crate::client::{Credentials, STAMP_LEN};
use crate::error::BenchError;
use crate::scenario::{self, BridgePath, ScenarioSpec};
use crate::verify::HttpTarget;

/// Longest measured phase accepted, so a run always ends by itself.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most connections one run opens.
const MAX_CLIENTS: usize = 100_000;

/// Load generator for MQTT brokers, with end-to-end latency (publish time in the payload).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Scenario to run.
    #[arg(value_parser = scenario_names())]
    pub scenario: String,
    /// Broker host (loopback only).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker MQTT port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// MQTT protocol: 3 (3.1.1) or 5 (5.0).
    #[arg(long, default_value = "5", value_parser = ["3", "5"])]
    pub protocol: String,
    /// QoS of publishes and subscriptions.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload size in bytes (at least 8: the first 8 carry the publish time).
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// The scenario's N: publishers (fan-in, many-topics), subscribers (fan-out), pairs (p2p),
    /// group members (shared), connections (idle), concurrent connectors (connect-rate).
    #[arg(short = 'n', long)]
    pub clients: Option<usize>,
    /// Publishers feeding a shared subscription.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Distinct topics for many-topics.
    #[arg(long, default_value_t = 1000)]
    pub topics: usize,
    /// Total publish rate in messages per second over all publishers; 0 = as fast as flow control allows.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// QoS 1/2 publishes each publisher may have unacknowledged (default 32; 100 for ingest, like
    /// a typical device client library; 128 for bridge, where it is also the number of HTTP
    /// connections, one request in flight each); under 5.0 at most the server's receive maximum.
    /// 3.1.1 has none: `--protocol 3 --inflight 100` is a typical device client.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=65000))]
    pub inflight: Option<u16>,
    /// Closed loop: publishers wait while this many messages are published but not yet received
    /// by every subscriber; 0 = open loop (only --inflight and TCP hold publishers back, and an
    /// overloaded broker must queue, drop or disconnect).
    #[arg(long, default_value_t = 1000)]
    pub backlog: u64,
    /// Stop each publisher (or connector) after this many messages (connections), even before --duration.
    #[arg(long)]
    pub count: Option<u64>,
    /// Measured phase in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Subscribers keep their session (clean start off, session expiry set); discarded at the end.
    #[arg(long)]
    pub persistent: bool,
    /// Session expiry in seconds for --persistent (5.0).
    #[arg(long, default_value_t = 300)]
    pub session_expiry: u32,
    /// User name for every CONNECT (`{i}` is replaced by the client's index).
    #[arg(long)]
    pub username: Option<String>,
    /// Password for every CONNECT (`{i}` is replaced by the client's index).
    #[arg(
        long,
        requires = "username",
        env = "SWITCHYARD_BENCH_PASSWORD",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub password: Option<String>,
    /// Authenticate every client as a device of --tenant, with the device key derived from the
    /// master key in this file (43 characters of base64url) for its client id.
    #[arg(long, conflicts_with = "username", requires = "tenant")]
    pub master_key_file: Option<PathBuf>,
    /// The tenant's domain for --master-key-file.
    #[arg(long)]
    pub tenant: Option<String>,
    /// First topic level(s) of every topic used; with application credentials, the tenant's
    /// domain (e.g. `localhost/bench`).
    #[arg(long, default_value = "bench")]
    pub topic_prefix: String,
    /// bridge: which way messages cross. http-mqtt: commands POSTed over HTTP (--inflight
    /// keep-alive connections) to devices subscribed over MQTT; mqtt-sse / mqtt-ws: devices
    /// publishing events at QoS 1, followed over Server-Sent Events / WebSockets.
    #[arg(long, value_enum)]
    pub path: Option<BridgePath>,
    /// The broker's HTTP port (with --api-key): bridge sends or listens there; ingest counts one
    /// device's stored points there at the end.
    #[arg(long, requires = "api_key")]
    pub http_port: Option<u16>,
    /// An application key of --tenant as `apiKey:apiSecret`, for --http-port.
    #[arg(
        long,
        requires = "http_port",
        env = "SWITCHYARD_BENCH_API_KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub api_key: Option<String>,
    /// The broker's process id: its resident memory and CPU time are reported.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Free-form label copied into the report (e.g. the broker's name).
    #[arg(long)]
    pub label: Option<String>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

fn scenario_names() -> PossibleValuesParser {
    PossibleValuesParser::new(scenario::SCENARIOS.iter().map(|s| PossibleValue::new(s.name).help(s.about)))
}

/// Checked options of one run.
#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: &'static ScenarioSpec,
    pub target: SocketAddr,
    pub protocol: Protocol,
    pub qos: QoS,
    pub payload: usize,
    pub clients: usize,
    pub publishers: usize,
    pub topics: usize,
    /// Total messages per second, `None` for unlimited.
    pub rate: Option<u64>,
    pub inflight: u16,
    /// Messages published and not yet delivered everywhere before publishers wait; `None`: open loop.
    pub backlog: Option<u64>,
    pub count: Option<u64>,
    pub duration: Duration,
    pub warmup: Duration,
    /// Session expiry of persistent subscribers.
    pub persistent: Option<u32>,
    pub credentials: Option<Credentials>,
    /// First level(s) of every topic.
    pub topic_prefix: String,
    /// The HTTP API: the ingest check, the application side of a bridge.
    pub http: Option<HttpTarget>,
    /// The bridge's direction.
    pub path: Option<BridgePath>,
    pub broker_pid: Option<u32>,
    pub label: Option<String>,
    pub json: bool,
}

impl Options {
    /// Check the command line and resolve the target.
    pub fn from_args(args: Args) -> Result<Options, BenchError> {
        let scenario = scenario::find(&args.scenario)
            .ok_or_else(|| BenchError::Options(format!("unknown scenario {:?}", args.scenario)))?;
        let target = resolve(&args.host, args.port)?;
        let protocol = if args.protocol == "3" { Protocol::V311 } else { Protocol::V5 };
        let qos = QoS::from_u8(args.qos).ok_or_else(|| BenchError::Options("--qos must be 0, 1 or 2".into()))?;
        let seconds = |name: &str, v: f64, min: f64| {
            if !(min..=MAX_DURATION.as_secs_f64()).contains(&v) {
                return Err(BenchError::Options(format!(
                    "--{name} must be between {min} and {} seconds",
                    MAX_DURATION.as_secs()
                )));
            }
            Ok(Duration::from_secs_f64(v))
        };
        let duration = seconds("duration", args.duration, 0.1)?;
        let warmup = seconds("warmup", args.warmup, 0.0)?;
        let clients = args.clients.unwrap_or(scenario.default_clients);
        for (name, value) in [("clients", clients), ("publishers", args.publishers), ("topics", args.topics)] {
            if !(1..=MAX_CLIENTS).contains(&value) {
                return Err(BenchError::Options(format!("--{name} must be between 1 and {MAX_CLIENTS}")));
            }
        }
        if args.payload < STAMP_LEN || args.payload > 16 * 1024 * 1024 {
            return Err(BenchError::Options(format!("--payload must be between {STAMP_LEN} bytes and 16 MiB")));
        }
        if args.topic_prefix.is_empty() || args.topic_prefix.contains(['+', '#']) || args.topic_prefix.ends_with('/') {
            return Err(BenchError::Options(
                "--topic-prefix must be a topic name without wildcards or a trailing /".into(),
            ));
        }
        let credentials = match (args.master_key_file, args.tenant, args.username) {
            (Some(file), Some(tenant), _) => Some(device_keys(&file, &tenant)?),
            (None, Some(_), _) => return Err(BenchError::Options("--tenant needs --master-key-file".into())),
            (None, None, Some(username)) => Some(Credentials::Password { username, password: args.password }),
            _ => None,
        };
        let http = match (args.http_port, args.api_key) {
            (Some(port), Some(api_key)) if api_key.contains(':') => {
                Some(HttpTarget { addr: SocketAddr::new(target.ip(), port), api_key })
            }
            (Some(_), Some(_)) => return Err(BenchError::Options("--api-key must be apiKey:apiSecret".into())),
            _ => None,
        };
        if args.count == Some(0) {
            return Err(BenchError::Options("--count must be at least 1".into()));
        }
        Ok(Options {
            scenario,
            target,
            protocol,
            qos,
            payload: args.payload,
            clients,
            publishers: args.publishers,
            topics: args.topics,
            rate: (args.rate > 0).then_some(args.rate),
            inflight: args.inflight.unwrap_or(scenario.default_inflight()),
            backlog: (args.backlog > 0).then_some(args.backlog),
            count: args.count,
            duration,
            warmup,
            persistent: args.persistent.then_some(args.session_expiry),
            credentials,
            topic_prefix: args.topic_prefix,
            http,
            path: args.path,
            broker_pid: args.broker_pid,
            label: args.label,
            json: args.json,
        })
    }

    /// Keep-alive to ask for: long enough that no client has to ping during the run.
    pub fn keep_alive(&self) -> u16 {
        let run = (self.warmup + self.duration).as_secs() + 60;
        u16::try_from(run).unwrap_or(u16::MAX)
    }
}

/// Device credentials: the tenant's domain and the master key read from `file`.
fn device_keys(file: &Path, tenant: &str) -> Result<Credentials, BenchError> {
    let domain = Domain::parse(tenant).map_err(|e| BenchError::Options(format!("--tenant {tenant:?}: {e}")))?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| BenchError::Options(format!("cannot read {}: {e}", file.display())))?;
    let master = MasterKey::from_base64(text.trim()).map_err(|_| {
        BenchError::Options(format!("{} must hold a master key: 43 characters of base64url", file.display()))
    })?;
    Ok(Credentials::DeviceKey { domain, master })
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, BenchError> {
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|source| BenchError::Resolve { host: host.to_owned(), source })?
        .next()
        .ok_or_else(|| BenchError::Resolve { host: host.to_owned(), source: std::io::ErrorKind::NotFound.into() })?;
    if !addr.ip().is_loopback() {
        return Err(BenchError::NotLoopback(addr.ip()));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(line: &str) -> Result<Options, BenchError> {
        let cli = Cli::try_parse_from(line.split_whitespace()).map_err(|e| BenchError::Options(e.to_string()))?;
        Options::from_args(cli.args)
    }

    #[test]
    fn defaults_come_from_the_scenario() {
        let o = parse("bench fan-in").unwrap();
        assert_eq!(o.clients, 20);
        assert_eq!(o.qos, QoS::AtLeastOnce);
        assert_eq!(o.protocol, Protocol::V5);
        assert!(o.rate.is_none());
        let o = parse("bench fan-out --protocol 3 -n 7 --qos 0 --rate 1000").unwrap();
        assert_eq!((o.clients, o.qos, o.protocol, o.rate), (7, QoS::AtMostOnce, Protocol::V311, Some(1000)));
    }

    #[test]
    fn secrets_may_start_with_a_hyphen() {
        // Generated key ids and secrets are base64url: `-` is as likely a first character as any.
        let o = parse("bench fan-in --username u --password -uX9").unwrap();
        assert!(matches!(o.credentials, Some(Credentials::Password { password: Some(ref p), .. }) if p == "-uX9"));
        let o = parse("bench bridge --http-port 8080 --api-key -k1:-s2").unwrap();
        assert_eq!(o.http.map(|h| h.api_key), Some("-k1:-s2".to_string()));
    }

    #[test]
    fn refuses_what_cannot_work() {
        for line in [
            "bench nosuch",
            "bench fan-in --host 192.0.2.1",
            "bench fan-in --payload 4",
            "bench fan-in --duration 0",
            "bench fan-in --duration 100000",
            "bench fan-in -n 0",
            "bench fan-in --qos 3",
            "bench fan-in --count 0",
            "bench fan-in --password x",
            "bench fan-in --tenant a.example",
            "bench fan-in --master-key-file /nonexistent --tenant a.example",
            "bench fan-in --topic-prefix a/+",
        ] {
            assert!(parse(line).is_err(), "{line} was accepted");
        }
    }
}
