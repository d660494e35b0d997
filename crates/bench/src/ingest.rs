//! The `ingest` runner: N devices, each authenticated with its own derived key, publish JSON
//! events of ten metrics ([`crate::events`]) to `{domain}/resources/{id}/events` at QoS 1.
//!
//! A broker with the data pipeline acknowledges an event only once the message and its points
//! are on disk, so every PUBACK counted here is a durable write: the headline figures are the
//! events and points acknowledged per second in the measured phase, and the PUBACK latency
//! (publish written to PUBACK read, per packet identifier). A device keeps at most `--inflight`
//! events unacknowledged (under 5.0 also at most the server's receive maximum), and paces itself
//! to its share of `--rate` with an offset, so 10,000 devices at 1 Hz spread their events over
//! the second instead of sending them in one burst.
//!
//! With `--broker-pid`, the broker's resident memory is sampled every second from before the
//! first connection to the end (peak, end, and the whole timeline), which is how memory at
//! 10,000 devices is watched. With `--http-port` and `--api-key`, the run ends by asking the
//! HTTP API how many points of one metric the first device has stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use switchyard_codec::{Packet, Protocol};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{Conn, Session};
use crate::conns::{Ctx, connect_many, error_chain};
use crate::error::BenchError;
use crate::events::{self, METRICS, STEP_MS, Sensor};
use crate::flow::Clock;
use crate::progress::Progress;
use crate::report::Measured;
use crate::stats::{self, Latency, LatencySummary};
use crate::verify::{self, Verified};

/// Events written by one device in one go.
const BATCH: u64 = 64;
/// Longest wait for outstanding acknowledgements once publishing stops.
const ACK_DRAIN: Duration = Duration::from_secs(10);
/// Interval of the broker memory samples.
const RSS_EVERY: Duration = Duration::from_secs(1);

/// Who publishes: `devices` devices of the tenant `domain`.
#[derive(Debug, Clone)]
pub struct IngestPlan {
    pub devices: usize,
    pub domain: String,
}

/// What the ingest scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct IngestStats {
    pub devices: usize,
    /// Device `i`'s client id and resource id is this prefix followed by `i`.
    pub device_prefix: String,
    pub metrics_per_message: u64,
    /// Events published over the whole run.
    pub published: u64,
    /// Events acknowledged with success over the whole run (each one durable).
    pub acked: u64,
    /// Events acknowledged per second in the measured phase: the headline figure.
    pub messages_per_s: f64,
    /// Points acknowledged per second in the measured phase (events × metrics).
    pub points_per_s: f64,
    /// Events the broker refused (PUBACK reason 0x80 or above, 5.0).
    pub refused: u64,
    /// Events still unacknowledged when the run ended.
    pub unacked: u64,
    /// Devices whose connection ended before the run did.
    pub dropped_devices: usize,
    /// Publish to PUBACK, for acknowledgements received in the measured phase.
    pub puback_latency: Option<LatencySummary>,
    /// The broker's resident memory over the run, with `--broker-pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_memory: Option<MemoryTimeline>,
    /// The stored-points check, with `--http-port` and `--api-key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
}

/// The broker's resident memory, sampled every second.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryTimeline {
    /// Before the first device connected.
    pub rss_kib_before: u64,
    /// Once every device was connected, before publishing.
    pub rss_kib_connected: u64,
    pub rss_kib_peak: u64,
    /// Once publishing stopped and the acknowledgements were in.
    pub rss_kib_end: u64,
    /// `[seconds since publishing started (negative while connecting), KiB]`.
    pub samples: Vec<(f64, u64)>,
}

#[derive(Debug, Default)]
struct DeviceOutcome {
    sent: u64,
    acked: u64,
    acked_measured: u64,
    last_measured: Option<Instant>,
    refused: u64,
    unacked: u64,
    latency: Latency,
    error: Option<String>,
}

/// Run the ingest scenario.
pub async fn run(plan: IngestPlan, ctx: &Arc<Ctx>, progress: &Progress) -> Result<Measured<IngestStats>, BenchError> {
    let o = &ctx.options;
    let n = plan.devices;
    let sampler = o.broker_pid.map(|pid| RssSampler::start(pid, Instant::now())).transpose()?;
    progress.connecting(n as u64);
    let conns = connect_many(0..n, ctx, progress, |i, ctx| async move {
        let o = &ctx.options;
        let session = Session {
            client_id: device_id(&ctx, i),
            persistent: None,
            keep_alive: o.keep_alive(),
            credentials: o.credentials.as_ref(),
            index: i,
        };
        Conn::connect(o.target, o.protocol, &session).await
    })
    .await?;
    let connected = o.broker_pid.map(stats::rss_kib).transpose()?;

    let start_ms = wall_clock_ms();
    let clock = Clock::start(o);
    let watch = stats::watch_broker(o.broker_pid, clock);
    let acked = Arc::new(AtomicU64::new(0));
    let ticker = progress.follow_count(clock, Arc::clone(&acked), "acked");
    let per_device = o.rate.map(|total| total as f64 / n as f64);
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let window = usize::from(o.inflight.min(conn.receive_maximum()));
            // Spread the devices' first events over one period.
            let phase = per_device.map_or(Duration::ZERO, |r| Duration::from_secs_f64(i as f64 / n as f64 / r));
            let device = Device {
                topic: format!("{}/resources/{}/events", plan.domain, device_id(ctx, i)).into_bytes(),
                conn,
                sensor: Sensor::new(i),
                protocol: o.protocol,
                window,
                rate: per_device,
                phase,
                limit: o.count.unwrap_or(u64::MAX),
                start_ms,
            };
            tokio::spawn(device.run(clock, Arc::clone(&acked)))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await?);
    }
    ticker.abort();
    progress.set_message("checking");

    let last = outcomes.iter().filter_map(|d| d.last_measured).max().unwrap_or(clock.end);
    let measured = last.min(clock.end).duration_since(clock.measure_from).as_secs_f64().max(1e-3);
    let mut latency = Latency::default();
    for d in &outcomes {
        latency.merge(&d.latency);
    }
    let acked_measured: u64 = outcomes.iter().map(|d| d.acked_measured).sum();
    let mut errors: Vec<String> =
        outcomes.iter().filter_map(|d| d.error.as_ref().map(|e| format!("device: {e}"))).collect();
    let broker_memory = match (sampler, connected) {
        (Some(sampler), Some(connected)) => Some(sampler.finish(connected, clock).await?),
        _ => None,
    };
    let verified = match (&o.http, outcomes.first()) {
        (Some(http), Some(first)) => {
            let check = verify::Check {
                resource: device_id(ctx, 0),
                metric: events::CHECKED_METRIC,
                from_ms: start_ms,
                until_ms: start_ms + first.sent as i64 * STEP_MS,
                acknowledged: first.acked,
            };
            match verify::count_points(http, &check).await {
                Ok(v) => {
                    if v.stored < v.acknowledged {
                        errors.push(format!(
                            "verification: only {} of {} acknowledged points stored",
                            v.stored, v.acknowledged
                        ));
                    }
                    Some(v)
                }
                Err(e) => {
                    errors.push(format!("verification: {}", error_chain(&e)));
                    None
                }
            }
        }
        _ => None,
    };
    let stats = IngestStats {
        devices: n,
        device_prefix: format!("{}d", ctx.names.clients),
        metrics_per_message: METRICS,
        published: outcomes.iter().map(|d| d.sent).sum(),
        acked: outcomes.iter().map(|d| d.acked).sum(),
        messages_per_s: acked_measured as f64 / measured,
        points_per_s: (acked_measured * METRICS) as f64 / measured,
        refused: outcomes.iter().map(|d| d.refused).sum(),
        unacked: outcomes.iter().map(|d| d.unacked).sum(),
        dropped_devices: errors.iter().filter(|e| e.starts_with("device: ")).count(),
        puback_latency: latency.summary(),
        broker_memory,
        verified,
    };
    let broker = stats::broker_watched(watch, &mut errors).await?;
    Ok(Measured { stats, errors, broker })
}

/// Client id, and resource id, of device `i`.
fn device_id(ctx: &Ctx, i: usize) -> String {
    ctx.names.client('d', i)
}

fn wall_clock_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    // Whole seconds, so the events of a run sit on 1 Hz ticks.
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX / 2) * 1000
}

/// One publishing device and its flow-control state.
struct Device {
    conn: Conn,
    topic: Vec<u8>,
    sensor: Sensor,
    protocol: Protocol,
    /// Most events unacknowledged at once.
    window: usize,
    /// Events per second for this device, `None` for unlimited.
    rate: Option<f64>,
    /// Offset of this device's schedule.
    phase: Duration,
    limit: u64,
    /// Timestamp of the device's first event.
    start_ms: i64,
}

/// Packet identifiers in flight and when each was written, in nanoseconds on the run's clock.
#[derive(Debug, Default)]
struct InFlight {
    sent_at: HashMap<u16, u64>,
    next: u16,
}

impl InFlight {
    /// A free identifier, now in flight since `ns`; the caller keeps fewer than 65,535 in flight.
    fn take(&mut self, ns: u64) -> u16 {
        loop {
            self.next = self.next.checked_add(1).unwrap_or(1);
            if let std::collections::hash_map::Entry::Vacant(slot) = self.sent_at.entry(self.next) {
                slot.insert(ns);
                return self.next;
            }
        }
    }
}

impl Device {
    async fn run(mut self, clock: Clock, acked: Arc<AtomicU64>) -> DeviceOutcome {
        let mut out = DeviceOutcome::default();
        let mut flight = InFlight::default();
        let origin = clock.origin + self.phase;
        while out.sent < self.limit && Instant::now() < clock.end {
            let open = flight.sent_at.len() < self.window;
            tokio::select! {
                biased;
                read = self.conn.read_more() => {
                    if let Err(e) = self.on_read(read, &mut flight, &mut out, clock, &acked).await {
                        out.error = Some(e);
                        break;
                    }
                }
                () = pace(self.rate, origin, out.sent), if open => {
                    let now = Instant::now();
                    let due = match self.rate {
                        Some(rate) => (now.saturating_duration_since(origin).as_secs_f64() * rate) as u64 + 1,
                        None => u64::MAX,
                    };
                    let room = (self.window - flight.sent_at.len()) as u64;
                    let n = BATCH.min(room).min(due.saturating_sub(out.sent)).min(self.limit - out.sent);
                    let ns = clock.ns(now);
                    for _ in 0..n {
                        let id = flight.take(ns);
                        let ts = self.start_ms + out.sent as i64 * STEP_MS;
                        let payload = self.sensor.event(ts);
                        events::write_publish(self.conn.output(), self.protocol, &self.topic, id, payload.as_bytes());
                        out.sent += 1;
                    }
                    if let Err(e) = self.conn.flush().await {
                        out.error = Some(format!("write failed: {e}"));
                        break;
                    }
                }
                () = tokio::time::sleep_until(clock.end) => {}
            }
        }
        let deadline = Instant::now() + ACK_DRAIN;
        while out.error.is_none() && !flight.sent_at.is_empty() {
            let Ok(read) = tokio::time::timeout_at(deadline, self.conn.read_more()).await else { break };
            if let Err(e) = self.on_read(read, &mut flight, &mut out, clock, &acked).await {
                out.error = Some(e);
            }
        }
        out.unacked = flight.sent_at.len() as u64;
        self.conn.close().await;
        out
    }

    /// Handle what a read brought: each PUBACK frees its identifier and is timed.
    async fn on_read(
        &mut self,
        read: std::io::Result<usize>,
        flight: &mut InFlight,
        out: &mut DeviceOutcome,
        clock: Clock,
        acked: &AtomicU64,
    ) -> Result<(), String> {
        match read {
            Ok(0) => return Err("connection closed by the broker".into()),
            Err(e) => return Err(format!("read failed: {e}")),
            Ok(_) => {}
        }
        let now = Instant::now();
        let (now_ns, measuring) = (clock.ns(now), clock.measuring(now));
        let mut batch = 0;
        loop {
            match self.conn.next_packet() {
                Ok(Some(Packet::PubAck(r))) => {
                    let Some(sent) = flight.sent_at.remove(&r.packet_id) else { continue };
                    if r.reason >= 0x80 {
                        out.refused += 1;
                        continue;
                    }
                    batch += 1;
                    if measuring {
                        out.acked_measured += 1;
                        out.last_measured = Some(now);
                        out.latency.record(now_ns.saturating_sub(sent));
                    }
                }
                Ok(Some(Packet::Disconnect(d))) => {
                    return Err(format!("DISCONNECT from the broker, reason {:#04x}", d.reason));
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(format!("invalid packet from the broker: {e}")),
            }
        }
        out.acked += batch;
        acked.fetch_add(batch, Ordering::Relaxed);
        Ok(())
    }
}

/// Ready when the next event is due: at once without a rate, else `origin + sent / rate`.
async fn pace(rate: Option<f64>, origin: Instant, sent: u64) {
    if let Some(rate) = rate {
        tokio::time::sleep_until(origin + Duration::from_secs_f64(sent as f64 / rate)).await;
    }
}

/// The broker's resident memory, read every [`RSS_EVERY`] by a task of its own.
struct RssSampler {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<Vec<(Instant, u64)>, BenchError>>,
    pid: u32,
    before: u64,
}

impl RssSampler {
    fn start(pid: u32, now: Instant) -> Result<RssSampler, BenchError> {
        let before = stats::rss_kib(pid)?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut samples = vec![(now, before)];
            let mut every = tokio::time::interval(RSS_EVERY);
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    at = every.tick() => samples.push((at, stats::rss_kib(pid)?)),
                }
            }
            Ok(samples)
        });
        Ok(RssSampler { stop, task, pid, before })
    }

    /// Stop sampling, take the end sample and sum up; times are relative to publishing's start.
    async fn finish(self, connected: u64, clock: Clock) -> Result<MemoryTimeline, BenchError> {
        self.stop.cancel();
        let mut samples = self.task.await??;
        let end = stats::rss_kib(self.pid)?;
        samples.push((Instant::now(), end));
        let relative = |at: Instant| {
            let (a, b) = (at.max(clock.origin), at.min(clock.origin));
            a.duration_since(clock.origin).as_secs_f64() - clock.origin.duration_since(b).as_secs_f64()
        };
        Ok(MemoryTimeline {
            rss_kib_before: self.before,
            rss_kib_connected: connected,
            rss_kib_peak: samples.iter().map(|s| s.1).max().unwrap_or(end).max(connected),
            rss_kib_end: end,
            samples: samples.into_iter().map(|(at, kib)| ((relative(at) * 10.0).round() / 10.0, kib)).collect(),
        })
    }
}

/// The readable lines of an ingest report.
pub fn write_text(f: &mut std::fmt::Formatter<'_>, s: &IngestStats) -> std::fmt::Result {
    writeln!(
        f,
        "  {:<14} {:.0} messages/s  {:.0} points/s  ({} of {} acknowledged over the run, {} devices)",
        "durable acks", s.messages_per_s, s.points_per_s, s.acked, s.published, s.devices
    )?;
    match &s.puback_latency {
        Some(l) => writeln!(
            f,
            "  {:<14} p50 {:.0} µs  p99 {:.0} µs  p99.9 {:.0} µs  max {:.0} µs  ({} samples)",
            "PUBACK after", l.p50_us, l.p99_us, l.p999_us, l.max_us, l.samples
        )?,
        None => writeln!(f, "  {:<14} no samples", "PUBACK after")?,
    }
    writeln!(
        f,
        "  {:<14} refused {}  unacknowledged {}  dropped devices {}",
        "losses", s.refused, s.unacked, s.dropped_devices
    )?;
    if let Some(m) = &s.broker_memory {
        writeln!(
            f,
            "  {:<14} RSS before {} KiB  connected {} KiB  peak {} KiB  end {} KiB",
            "broker memory", m.rss_kib_before, m.rss_kib_connected, m.rss_kib_peak, m.rss_kib_end
        )?;
    }
    if let Some(v) = &s.verified {
        writeln!(
            f,
            "  {:<14} {} {}: {} points stored of {} acknowledged",
            "stored", v.resource, v.metric, v.stored, v.acknowledged
        )?;
    }
    Ok(())
}
