//! The result of one run: a [`Report`] that serializes to one JSON object (`--json`, for
//! scripts) or prints as a few readable lines.

use std::fmt;

use serde::Serialize;
use switchyard_codec::Protocol;

use crate::bridge::BridgeStats;
use crate::conns::{ConnectStats, IdleStats};
use crate::flow::FlowStats;
use crate::ingest::IngestStats;
use crate::options::Options;
use crate::stats::{BrokerUsage, LatencySummary};

/// Error lines kept in a report; more are summarized by a count.
const MAX_ERRORS: usize = 20;

/// What a runner hands back: its figures, the clients' errors and the broker's usage.
#[derive(Debug)]
pub struct Measured<T> {
    pub stats: T,
    pub errors: Vec<String>,
    pub broker: Option<BrokerUsage>,
}

/// The figures of one scenario run, one of `flow`, `idle`, `connect`, `ingest` or `bridge` set.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub scenario: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub target: String,
    pub protocol: &'static str,
    pub qos: u8,
    pub payload_bytes: usize,
    pub clients: usize,
    /// Requested total publish rate; `None` means as fast as flow control allows.
    pub rate: Option<u64>,
    pub inflight: u16,
    /// Closed-loop bound on messages not yet delivered; `None`: open loop.
    pub backlog: Option<u64>,
    pub persistent: bool,
    /// How clients authenticated: `none`, `password` or `device-key`.
    pub auth: &'static str,
    pub warmup_s: f64,
    pub duration_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<FlowStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerUsage>,
    /// Distinct client errors with their counts.
    pub errors: Vec<String>,
}

/// The measured part of a report.
#[derive(Debug)]
pub enum Figures {
    Flow(Measured<FlowStats>),
    Idle(IdleStats),
    Connect(Measured<ConnectStats>),
    Ingest(Measured<IngestStats>),
    Bridge(Measured<BridgeStats>),
}

impl Report {
    /// Assemble the report of a run of `o`.
    pub fn new(o: &Options, figures: Figures) -> Report {
        let (mut flow, mut idle, mut connect, mut broker, mut errors) = (None, None, None, None, Vec::new());
        let (mut ingest, mut bridge) = (None, None);
        match figures {
            Figures::Flow(m) => (flow, broker, errors) = (Some(m.stats), m.broker, m.errors),
            Figures::Idle(stats) => idle = Some(stats),
            Figures::Connect(m) => (connect, broker, errors) = (Some(m.stats), m.broker, m.errors),
            Figures::Ingest(m) => (ingest, broker, errors) = (Some(m.stats), m.broker, m.errors),
            Figures::Bridge(m) => (bridge, broker, errors) = (Some(m.stats), m.broker, m.errors),
        }
        Report {
            tool: "switchyard-bench",
            version: env!("CARGO_PKG_VERSION"),
            scenario: o.scenario.name,
            label: o.label.clone(),
            target: o.target.to_string(),
            protocol: match o.protocol {
                Protocol::V311 => "3.1.1",
                Protocol::V5 => "5.0",
            },
            qos: o.qos as u8,
            payload_bytes: o.payload,
            clients: o.clients,
            rate: o.rate,
            inflight: o.inflight,
            backlog: o.backlog,
            persistent: o.persistent.is_some(),
            auth: o.credentials.as_ref().map_or("none", |c| c.kind()),
            warmup_s: o.warmup.as_secs_f64(),
            duration_s: o.duration.as_secs_f64(),
            flow,
            idle,
            connect,
            ingest,
            bridge,
            broker,
            errors: tally(errors),
        }
    }
}

/// Identical lines merged, each with its count.
fn tally(mut errors: Vec<String>) -> Vec<String> {
    errors.sort();
    let mut out: Vec<String> = Vec::new();
    let mut iter = errors.into_iter().peekable();
    while let Some(line) = iter.next() {
        let mut n = 1;
        while iter.peek() == Some(&line) {
            iter.next();
            n += 1;
        }
        out.push(if n > 1 { format!("{line} (x{n})") } else { line });
    }
    if out.len() > MAX_ERRORS {
        let more = out.len() - MAX_ERRORS;
        out.truncate(MAX_ERRORS);
        out.push(format!("... and {more} more"));
    }
    out
}

fn latency_line(f: &mut fmt::Formatter<'_>, what: &str, l: &Option<LatencySummary>) -> fmt::Result {
    match l {
        Some(l) => writeln!(
            f,
            "  {what:<14} p50 {:.0} µs  p99 {:.0} µs  p99.9 {:.0} µs  max {:.0} µs  ({} samples)",
            l.p50_us, l.p99_us, l.p999_us, l.max_us, l.samples
        ),
        None => writeln!(f, "  {what:<14} no samples"),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self.rate.map_or_else(|| "unlimited".to_string(), |r| format!("{r} msg/s"));
        let mut backlog = self.backlog.map_or_else(|| "open loop".to_string(), |b| format!("backlog {b}"));
        let mut payload = format!("{} B payload", self.payload_bytes);
        if let Some(s) = &self.ingest {
            // Devices publish generated events and wait for no subscriber.
            (payload, backlog) = (format!("events of {} metrics", s.metrics_per_message), "durable acks".into());
        }
        if self.bridge.is_some() {
            // Small JSON messages on an open-loop schedule.
            (payload, backlog) = ("JSON messages".into(), "open loop".into());
        }
        writeln!(
            f,
            "{}  MQTT {} at {}  QoS {}  {}  N={}  rate {}  inflight {}  {}{}{}",
            self.scenario,
            self.protocol,
            self.target,
            self.qos,
            payload,
            self.clients,
            rate,
            self.inflight,
            backlog,
            if self.persistent { "  persistent sessions" } else { "" },
            self.label.as_ref().map(|l| format!("  [{l}]")).unwrap_or_default(),
        )?;
        if let Some(s) = &self.flow {
            writeln!(f, "  {:<14} {} publishers -> {} subscribers", "clients", s.publishers, s.subscribers)?;
            writeln!(f, "  {:<14} {:.0}/s  ({} over the run)", "deliveries", s.delivered_per_s, s.delivered)?;
            writeln!(f, "  {:<14} {:.0}/s  ({} over the run)", "publishes", s.published_per_s, s.published)?;
            latency_line(f, "latency", &s.latency)?;
            writeln!(
                f,
                "  {:<14} lost {} of {}  refused {}  unacknowledged {}  dropped clients {}",
                "losses", s.lost, s.expected, s.refused, s.unacked, s.dropped_clients
            )?;
        }
        if let Some(s) = &self.idle {
            writeln!(
                f,
                "  {:<14} {} in {:.2} s ({:.0}/s), {} alive at the end",
                "connections", s.connections, s.connect_s, s.connects_per_s, s.alive_at_end
            )?;
            if let (Some(b), Some(a), Some(per)) =
                (s.broker_rss_kib_before, s.broker_rss_kib_after, s.broker_bytes_per_connection)
            {
                writeln!(f, "  {:<14} {b} KiB -> {a} KiB: {per:.0} bytes per connection", "broker RSS")?;
            }
        }
        if let Some(s) = &self.connect {
            writeln!(
                f,
                "  {:<14} {:.0}/s with {} workers  ({} over the run, {} failed)",
                "connects", s.connects_per_s, s.workers, s.connects, s.failures
            )?;
            latency_line(f, "CONNACK after", &s.latency)?;
        }
        if let Some(s) = &self.ingest {
            crate::ingest::write_text(f, s)?;
        }
        if let Some(s) = &self.bridge {
            crate::bridge::write_text(f, s)?;
        }
        if let Some(b) = &self.broker {
            writeln!(
                f,
                "  {:<14} CPU {:.0}% of one core, RSS {} KiB  (load tool CPU {:.0}%)",
                "broker", b.cpu_percent, b.rss_kib, b.load_tool_cpu_percent
            )?;
        }
        for e in &self.errors {
            writeln!(f, "  error: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_and_capped() {
        let lines = vec!["b".to_string(), "a".to_string(), "b".to_string()];
        assert_eq!(tally(lines), vec!["a".to_string(), "b (x2)".to_string()]);
        let many: Vec<String> = (0..30).map(|i| format!("e{i:02}")).collect();
        let out = tally(many);
        assert_eq!(out.len(), MAX_ERRORS + 1);
        assert_eq!(out.last().unwrap(), "... and 10 more");
    }
}
