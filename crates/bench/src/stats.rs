//! Measurements: the latency histogram every client keeps (merged at the end, so clients never
//! share one), its summary, and what `/proc` says about the broker's process (resident memory,
//! CPU time over the measured phase).

use hdrhistogram::Histogram;
use serde::Serialize;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::BenchError;
use crate::flow::Clock;

/// Highest latency recorded, in nanoseconds; slower samples are clamped to it.
const MAX_NS: u64 = 60_000_000_000;

/// Latencies in nanoseconds, three significant digits.
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new_with_bounds(1, MAX_NS, 3).expect("static histogram bounds are valid"))
    }
}

impl Latency {
    /// Record one sample.
    pub fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.clamp(1, MAX_NS));
    }

    /// Add another client's samples.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Percentiles in microseconds; `None` without samples.
    pub fn summary(&self) -> Option<LatencySummary> {
        let h = &self.0;
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(LatencySummary {
            samples: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        })
    }
}

/// Percentiles of a latency distribution, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

/// Resident set size of a process in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Result<u64, BenchError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|source| BenchError::Proc {
        pid,
        file: "status",
        source,
    })?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| BenchError::Proc { pid, file: "status", source: std::io::ErrorKind::InvalidData.into() })
}

/// Kernel clock ticks per second (`USER_HZ`), fixed at 100 on Linux for every architecture we run on.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system) a process has used so far, in seconds (`/proc/PID/stat`).
pub fn cpu_seconds(pid: u32) -> Result<f64, BenchError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|source| BenchError::Proc {
        pid,
        file: "stat",
        source,
    })?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; `rest` starts at field 3.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => Ok((user + system) as f64 / TICKS_PER_SECOND),
        _ => Err(BenchError::Proc { pid, file: "stat", source: std::io::ErrorKind::InvalidData.into() }),
    }
}

/// The broker's use of the machine during the measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerUsage {
    /// CPU time over wall time, in percent of one core (200 = two cores busy).
    pub cpu_percent: f64,
    /// Resident memory at the end of the measured phase.
    pub rss_kib: u64,
    /// The load tool's own CPU use over the same time, to see whether it was the limit.
    pub load_tool_cpu_percent: f64,
}

/// Sample the broker's CPU time at the start and end of the measured phase.
pub async fn broker_usage(pid: u32, clock: Clock) -> Result<BrokerUsage, BenchError> {
    let me = std::process::id();
    tokio::time::sleep_until(clock.measure_from).await;
    let (cpu_from, own_from, from) = (cpu_seconds(pid)?, cpu_seconds(me)?, Instant::now());
    tokio::time::sleep_until(clock.end).await;
    let (cpu_to, own_to, to) = (cpu_seconds(pid)?, cpu_seconds(me)?, Instant::now());
    let wall = to.duration_since(from).as_secs_f64().max(1e-3);
    Ok(BrokerUsage {
        cpu_percent: (cpu_to - cpu_from) / wall * 100.0,
        rss_kib: rss_kib(pid)?,
        load_tool_cpu_percent: (own_to - own_from) / wall * 100.0,
    })
}

/// Start sampling the broker (when its pid is known) over the measured phase of `clock`.
pub fn watch_broker(pid: Option<u32>, clock: Clock) -> Option<JoinHandle<Result<BrokerUsage, BenchError>>> {
    pid.map(|pid| tokio::spawn(broker_usage(pid, clock)))
}

/// The sample started by [`watch_broker`]; a failed read becomes one more error line.
pub async fn broker_watched(
    watch: Option<JoinHandle<Result<BrokerUsage, BenchError>>>,
    errors: &mut Vec<String>,
) -> Result<Option<BrokerUsage>, BenchError> {
    let Some(watch) = watch else { return Ok(None) };
    match watch.await? {
        Ok(usage) => Ok(Some(usage)),
        Err(e) => {
            errors.push(crate::conns::error_chain(&e));
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for i in 1..=500u64 {
            a.record(i * 1000);
            b.record((i + 500) * 1000);
        }
        a.merge(&b);
        let s = a.summary().unwrap();
        assert_eq!(s.samples, 1000);
        assert!((s.p50_us - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() < 1.0, "{s:?}");
        assert!((s.max_us - 1000.0).abs() < 1.0, "{s:?}");
        assert!(Latency::default().summary().is_none());
    }

    #[test]
    fn reads_our_own_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
    }
}
