//! The scenario table. A scenario is a name, a line of help, the default for its N and a
//! function that turns the options into a [`Workload`]: plain data that a runner executes.
//! Message scenarios differ only in who subscribes to what and who publishes where, so they all
//! produce a [`FlowPlan`]; a new kind of load (HTTP ingest, queries) adds a `Workload` variant
//! and its runner, and its rows here.

pub use crate::bridge::{BridgePath, BridgePlan};
use crate::client::Credentials;
use crate::error::BenchError;
pub use crate::ingest::IngestPlan;
use crate::options::Options;

/// One row of the table.
#[derive(Debug)]
pub struct ScenarioSpec {
    pub name: &'static str,
    pub about: &'static str,
    /// The scenario's N when `--clients` is not given.
    pub default_clients: usize,
    pub plan: fn(&Options, &Names) -> Result<Workload, BenchError>,
}

/// What a runner executes.
#[derive(Debug, Clone)]
pub enum Workload {
    /// Publishers and subscribers exchanging timestamped messages.
    Flow(FlowPlan),
    /// Connections that connect and then stay idle, to weigh them in broker memory.
    Idle { connections: usize },
    /// Connect, CONNACK, DISCONNECT in a loop, by this many concurrent workers.
    ConnectRate { workers: usize },
    /// Devices publishing events of ten metrics to their events topics, stored by the pipeline.
    Ingest(IngestPlan),
    /// Messages crossing from HTTP to MQTT or from MQTT to SSE/WebSocket, with their latency.
    Bridge(BridgePlan),
}

impl ScenarioSpec {
    /// `--inflight` when not given: what a typical device client library keeps for ingest; for
    /// a bridge, enough HTTP requests in flight for 10k msg/s when each answer waits for a
    /// durable commit of several milliseconds.
    pub fn default_inflight(&self) -> u16 {
        match self.name {
            "ingest" => 100,
            "bridge" => 128,
            _ => 32,
        }
    }
}

/// Who subscribes to what, and who publishes where.
#[derive(Debug, Clone)]
pub struct FlowPlan {
    /// The filters of each subscriber.
    pub subscribers: Vec<Vec<String>>,
    /// The topics of each publisher, used in turn.
    pub publishers: Vec<Vec<String>>,
    /// Deliveries expected for each message published.
    pub copies: u64,
}

/// Unique names for one run, so runs never see each other's messages or sessions.
#[derive(Debug, Clone)]
pub struct Names {
    /// Prefix of every topic, e.g. `bench/3fa9c1` (`--topic-prefix` and the run).
    pub topics: String,
    /// Prefix of every client identifier, e.g. `sb3fa9c1`.
    pub clients: String,
}

impl Names {
    /// Names derived from the clock and the process id; topics start with `topic_prefix`.
    pub fn unique(topic_prefix: &str) -> Names {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or_default();
        let run = (nanos ^ std::process::id().rotate_left(16)) & 0x00ff_ffff;
        Names { topics: format!("{topic_prefix}/{run:06x}"), clients: format!("sb{run:06x}") }
    }

    /// Client identifier of a role's `i`-th client (`p` publisher, `s` subscriber, ...).
    pub fn client(&self, role: char, i: usize) -> String {
        format!("{}{role}{i}", self.clients)
    }
}

/// Every scenario, in the order `--help` lists them.
pub static SCENARIOS: &[ScenarioSpec] = &[
    ScenarioSpec {
        name: "fan-in",
        about: "N publishers -> 1 subscriber (wildcard)",
        default_clients: 20,
        plan: fan_in,
    },
    ScenarioSpec {
        name: "fan-out",
        about: "1 publisher -> N subscribers of one topic",
        default_clients: 100,
        plan: fan_out,
    },
    ScenarioSpec { name: "p2p", about: "N publisher/subscriber pairs, one topic each", default_clients: 10, plan: p2p },
    ScenarioSpec {
        name: "shared",
        about: "--publishers -> shared subscription ($share/bench/...) with N members",
        default_clients: 10,
        plan: shared,
    },
    ScenarioSpec {
        name: "many-topics",
        about: "N publishers over --topics topics -> 1 subscriber of every topic",
        default_clients: 10,
        plan: many_topics,
    },
    ScenarioSpec {
        name: "idle",
        about: "N idle connections; broker memory per connection (--broker-pid)",
        default_clients: 1000,
        plan: |o, _| Ok(Workload::Idle { connections: o.clients }),
    },
    ScenarioSpec {
        name: "connect-rate",
        about: "N workers connecting and disconnecting; connections per second",
        default_clients: 8,
        plan: |o, _| Ok(Workload::ConnectRate { workers: o.clients }),
    },
    ScenarioSpec {
        name: "ingest",
        about: "N devices (--master-key-file, --tenant) publishing 10-metric events at QoS 1; durable acks/s",
        default_clients: 100,
        plan: ingest,
    },
    ScenarioSpec {
        name: "bridge",
        about: "--path http-mqtt|mqtt-sse|mqtt-ws across protocols for N devices (--master-key-file, --tenant, \
                --http-port, --api-key); end-to-end latency",
        default_clients: 10,
        plan: bridge,
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static ScenarioSpec> {
    SCENARIOS.iter().find(|s| s.name == name)
}

fn ingest(o: &Options, _: &Names) -> Result<Workload, BenchError> {
    if o.qos != switchyard_codec::QoS::AtLeastOnce {
        return Err(BenchError::Options("ingest publishes at QoS 1: every acknowledgement is a durable write".into()));
    }
    match &o.credentials {
        Some(Credentials::DeviceKey { domain, .. }) => {
            Ok(Workload::Ingest(IngestPlan { devices: o.clients, domain: domain.to_string() }))
        }
        _ => Err(BenchError::Options(
            "ingest needs --master-key-file and --tenant: each device publishes to its own events topic".into(),
        )),
    }
}

fn bridge(o: &Options, _: &Names) -> Result<Workload, BenchError> {
    let Some(path) = o.path else {
        return Err(BenchError::Options("bridge needs --path: http-mqtt, mqtt-sse or mqtt-ws".into()));
    };
    let (Some(Credentials::DeviceKey { domain, .. }), Some(http)) = (&o.credentials, &o.http) else {
        return Err(BenchError::Options(
            "bridge needs --master-key-file and --tenant (the devices) and --http-port and --api-key (the application)"
                .into(),
        ));
    };
    if o.qos != switchyard_codec::QoS::AtLeastOnce {
        return Err(BenchError::Options("bridge runs at QoS 1: devices publish and receive commands at QoS 1".into()));
    }
    Ok(Workload::Bridge(BridgePlan { path, devices: o.clients, domain: domain.to_string(), http: http.clone() }))
}

fn fan_in(o: &Options, n: &Names) -> Result<Workload, BenchError> {
    Ok(Workload::Flow(FlowPlan {
        subscribers: vec![vec![format!("{}/in/+", n.topics)]],
        publishers: (0..o.clients).map(|i| vec![format!("{}/in/{i}", n.topics)]).collect(),
        copies: 1,
    }))
}

fn fan_out(o: &Options, n: &Names) -> Result<Workload, BenchError> {
    let topic = format!("{}/out", n.topics);
    Ok(Workload::Flow(FlowPlan {
        subscribers: vec![vec![topic.clone()]; o.clients],
        publishers: vec![vec![topic]],
        copies: o.clients as u64,
    }))
}

fn p2p(o: &Options, n: &Names) -> Result<Workload, BenchError> {
    let topics: Vec<Vec<String>> = (0..o.clients).map(|i| vec![format!("{}/p2p/{i}", n.topics)]).collect();
    Ok(Workload::Flow(FlowPlan { subscribers: topics.clone(), publishers: topics, copies: 1 }))
}

fn shared(o: &Options, n: &Names) -> Result<Workload, BenchError> {
    let topic = format!("{}/shared", n.topics);
    Ok(Workload::Flow(FlowPlan {
        subscribers: vec![vec![format!("$share/bench/{topic}")]; o.clients],
        publishers: vec![vec![topic]; o.publishers],
        copies: 1,
    }))
}

fn many_topics(o: &Options, n: &Names) -> Result<Workload, BenchError> {
    if o.topics < o.clients {
        return Err(BenchError::Options("many-topics needs --topics at least as large as --clients".into()));
    }
    let topic = |k: usize| format!("{}/t/{}/{k}", n.topics, k % 16);
    let publishers = (0..o.clients).map(|i| (i..o.topics).step_by(o.clients).map(topic).collect()).collect();
    Ok(Workload::Flow(FlowPlan { subscribers: vec![(0..o.topics).map(topic).collect()], publishers, copies: 1 }))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::options::Args;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn plan(line: &str) -> FlowPlan {
        let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
        let options = Options::from_args(cli.args).unwrap();
        let names = Names { topics: "bench/r".into(), clients: "sbr".into() };
        match (options.scenario.plan)(&options, &names).unwrap() {
            Workload::Flow(plan) => plan,
            other => panic!("not a flow: {other:?}"),
        }
    }

    #[test]
    fn flows_have_the_promised_shape() {
        let p = plan("b fan-in -n 3");
        assert_eq!(p.subscribers, vec![vec!["bench/r/in/+".to_string()]]);
        assert_eq!(p.publishers.len(), 3);
        let p = plan("b fan-out -n 4");
        assert_eq!((p.subscribers.len(), p.publishers.len(), p.copies), (4, 1, 4));
        let p = plan("b shared -n 5 --publishers 2");
        assert_eq!(p.subscribers[0], vec!["$share/bench/bench/r/shared".to_string()]);
        assert_eq!((p.subscribers.len(), p.publishers.len(), p.copies), (5, 2, 1));
        let p = plan("b many-topics -n 3 --topics 10");
        assert_eq!(p.subscribers[0].len(), 10);
        let mut published: Vec<&String> = p.publishers.iter().flatten().collect();
        published.sort();
        let mut subscribed: Vec<&String> = p.subscribers[0].iter().collect();
        subscribed.sort();
        assert_eq!(published, subscribed);
    }

    #[test]
    fn ingest_needs_device_keys() {
        let cli = Cli::try_parse_from("b ingest -n 2 --username u".split_whitespace()).unwrap();
        let options = Options::from_args(cli.args).unwrap();
        assert_eq!(options.inflight, 100);
        let names = Names { topics: "bench/r".into(), clients: "sbr".into() };
        assert!(matches!((options.scenario.plan)(&options, &names), Err(BenchError::Options(_))));
    }

    #[test]
    fn bridges_need_a_path_devices_and_an_application() {
        let names = Names { topics: "bench/r".into(), clients: "sbr".into() };
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("master.key");
        std::fs::write(&key, "A".repeat(43)).unwrap();
        let key = key.display();
        for (line, ok) in [
            (format!("b bridge --path mqtt-sse --master-key-file {key} --tenant a.example"), false),
            (format!("b bridge --master-key-file {key} --tenant a.example --http-port 1 --api-key k:s"), false),
            (
                format!(
                    "b bridge --path http-mqtt --qos 0 --master-key-file {key} --tenant a.example --http-port 1 --api-key k:s"
                ),
                false,
            ),
            (
                format!(
                    "b bridge --path mqtt-ws --master-key-file {key} --tenant a.example --http-port 1 --api-key k:s"
                ),
                true,
            ),
        ] {
            let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
            let options = Options::from_args(cli.args).unwrap();
            let plan = (options.scenario.plan)(&options, &names);
            assert_eq!(plan.is_ok(), ok, "{line}");
        }
    }

    #[test]
    fn names_are_short_and_distinct() {
        let n = Names::unique("bench");
        assert!(n.topics.starts_with("bench/"));
        assert!(n.client('p', 99_999).len() <= 23);
        assert_ne!(n.client('p', 1), n.client('s', 1));
    }
}
