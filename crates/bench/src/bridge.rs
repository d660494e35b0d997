//! The `bridge` runner: messages that cross from one protocol to another through the broker,
//! with their end-to-end latency (`--path`):
//!
//! - `http-mqtt`: an application POSTs commands (`POST /resources/{id}/commands`, keep-alive
//!   HTTP/1.1, `--inflight` connections with one request each in flight; each answer waits for
//!   the durable commit, so 10k msg/s takes about a hundred in flight) to N devices, each
//!   subscribed over MQTT to its own `{domain}/resources/{id}/commands` (delivered at QoS 1).
//! - `mqtt-sse`: N devices publish events at QoS 1 to `{domain}/resources/{id}/events`; the
//!   application follows each device's `GET /resources/{id}/events` as Server-Sent Events.
//! - `mqtt-ws`: the same devices; the application follows each device's
//!   `/resources/{id}/events/subscribe` WebSocket.
//!
//! Both ends run in this process on one clock; see [`crate::bridge_ends`] for the open-loop
//! schedule and how latency is measured from the time each message was due. Every receiver is
//! listening before the first message is sent. When publishing stops, the run waits until every
//! accepted message arrived, nothing arrived for a second, or ten seconds passed; what is still
//! missing then is lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use switchyard_codec::QoS;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bridge_ends::{self, Live, Publisher, Received, Schedule, Sent};
use crate::client::{Acks, Conn, Session};
use crate::conns::{Ctx, connect_many};
use crate::error::BenchError;
use crate::flow::Clock;
use crate::http::{self, HttpConn};
use crate::progress::Progress;
use crate::report::Measured;
use crate::stats::{self, Latency, LatencySummary};
use crate::verify::HttpTarget;

/// Drain: stop when nothing arrived for this long...
const QUIET: Duration = Duration::from_secs(1);
/// ... or after this long in any case.
const MAX_DRAIN: Duration = Duration::from_secs(10);

/// Which way messages cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BridgePath {
    /// HTTP POST of commands -> devices subscribed over MQTT.
    HttpMqtt,
    /// Devices publishing events over MQTT -> Server-Sent Events streams.
    MqttSse,
    /// Devices publishing events over MQTT -> WebSocket subscribers.
    MqttWs,
}

/// Who sends and who listens: `devices` devices of the tenant `domain`, and the HTTP API.
#[derive(Debug, Clone)]
pub struct BridgePlan {
    pub path: BridgePath,
    pub devices: usize,
    pub domain: String,
    pub http: HttpTarget,
}

/// What a bridge run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BridgeStats {
    pub path: BridgePath,
    /// How messages are sent.
    pub sender: &'static str,
    /// How they are received.
    pub receiver: &'static str,
    pub devices: usize,
    /// Sending connections: HTTP connections (one request in flight each) or publishing devices.
    pub senders: usize,
    /// Device `i`'s client id and resource id is this prefix followed by `i`.
    pub device_prefix: String,
    /// Messages sent over the whole run.
    pub sent: u64,
    /// Messages sent per second in the measured phase: the offered rate, or less when the senders
    /// fall behind the schedule (every HTTP connection waiting for its answer).
    pub sent_per_s: f64,
    /// Messages the broker took in (HTTP 2xx, or a successful PUBACK).
    pub accepted: u64,
    /// Messages the broker refused (another HTTP status, or a PUBACK reason of 0x80 or above).
    pub refused: u64,
    /// Messages sent and never answered.
    pub unanswered: u64,
    /// Messages received over the whole run, drain included.
    pub received: u64,
    /// Messages received per second in the measured phase: the headline figure.
    pub received_per_s: f64,
    /// Accepted messages that never arrived (0 expected).
    pub lost: u64,
    /// Messages the streams reported skipping for a slow reader (included in `lost`).
    pub missed: u64,
    /// Connections, sending or receiving, that ended before the run did.
    pub dropped: usize,
    /// Receive time − due time, for messages due in the measured phase.
    pub latency: Option<LatencySummary>,
}

impl BridgePath {
    fn ends(self) -> (&'static str, &'static str) {
        match self {
            BridgePath::HttpMqtt => {
                ("HTTP POST /resources/{id}/commands", "MQTT subscriber of {domain}/resources/{id}/commands (QoS 1)")
            }
            BridgePath::MqttSse => {
                ("MQTT QoS 1 publish to {domain}/resources/{id}/events", "SSE GET /resources/{id}/events")
            }
            BridgePath::MqttWs => {
                ("MQTT QoS 1 publish to {domain}/resources/{id}/events", "WebSocket /resources/{id}/events/subscribe")
            }
        }
    }
}

/// Run the bridge scenario.
pub async fn run(plan: BridgePlan, ctx: &Arc<Ctx>, progress: &Progress) -> Result<Measured<BridgeStats>, BenchError> {
    let o = &ctx.options;
    let n = plan.devices;
    progress.connecting(n as u64);
    let subscribe = plan.path == BridgePath::HttpMqtt;
    let domain = plan.domain.clone();
    let devices = connect_many(0..n, ctx, progress, move |i, ctx| {
        let commands = format!("{domain}/resources/{}/commands", device_id(&ctx, i));
        async move {
            let o = &ctx.options;
            let session = Session {
                client_id: device_id(&ctx, i),
                persistent: None,
                keep_alive: o.keep_alive(),
                credentials: o.credentials.as_ref(),
                index: i,
            };
            let mut conn = Conn::connect(o.target, o.protocol, &session).await?;
            if subscribe {
                conn.subscribe(&[commands], QoS::AtLeastOnce).await?;
            }
            Ok(conn)
        }
    })
    .await?;

    let live = Arc::new(Live::default());
    let stop = CancellationToken::new();
    let (receivers, senders, clock) = match plan.path {
        BridgePath::HttpMqtt => {
            let mut http = Vec::with_capacity(usize::from(o.inflight));
            for _ in 0..o.inflight {
                http.push(HttpConn::connect(&plan.http).await?);
            }
            let acks = Acks::new(o.protocol)?;
            let clock = Clock::start(o);
            let receivers = spawn_all(devices, |conn| {
                bridge_ends::mqtt_receiver(conn, acks.clone(), clock, Arc::clone(&live), stop.clone())
            });
            let limit = o.count.map_or(u64::MAX, |c| c.saturating_mul(n as u64));
            let schedule = Arc::new(Schedule::new(o.rate, limit));
            let paths: Arc<[String]> =
                (0..n).map(|i| format!("/resources/{}/commands", device_id(ctx, i))).collect::<Vec<_>>().into();
            let senders = spawn_all(http, |conn| {
                bridge_ends::http_sender(conn, Arc::clone(&schedule), Arc::clone(&paths), clock)
            });
            (receivers, senders, clock)
        }
        BridgePath::MqttSse | BridgePath::MqttWs => {
            let mut receivers = Vec::with_capacity(n);
            for i in 0..n {
                let id = device_id(ctx, i);
                receivers.push(if plan.path == BridgePath::MqttSse {
                    Listener::Sse(
                        http::open_stream(&plan.http, &format!("/resources/{id}/events"), "text/event-stream").await?,
                    )
                } else {
                    Listener::Ws(Box::new(
                        http::open_websocket(&plan.http, &format!("/resources/{id}/events/subscribe")).await?,
                    ))
                });
            }
            let clock = Clock::start(o);
            let receivers = spawn_all(receivers, |listener| {
                let (live, stop) = (Arc::clone(&live), stop.clone());
                async move {
                    match listener {
                        Listener::Sse(open) => bridge_ends::sse_receiver(open, clock, live, stop).await,
                        Listener::Ws(socket) => bridge_ends::ws_receiver(*socket, clock, live, stop).await,
                    }
                }
            });
            let per_device = o.rate.map(|total| total as f64 / n as f64);
            let mut i = 0;
            let senders = spawn_all(devices, |conn| {
                let phase = per_device.map_or(Duration::ZERO, |r| Duration::from_secs_f64(i as f64 / n as f64 / r));
                let publisher = Publisher {
                    window: usize::from(o.inflight.min(conn.receive_maximum())),
                    topic: format!("{}/resources/{}/events", plan.domain, device_id(ctx, i)).into_bytes(),
                    conn,
                    protocol: o.protocol,
                    rate: per_device,
                    phase,
                    limit: o.count.unwrap_or(u64::MAX),
                };
                i += 1;
                publisher.run(clock)
            });
            (receivers, senders, clock)
        }
    };
    let watch = stats::watch_broker(o.broker_pid, clock);
    let ticker = progress.follow_count(clock, Arc::clone(&live.received), "received");
    let senders_n = senders.len();
    let mut sent = Vec::with_capacity(senders_n);
    for task in senders {
        sent.push(task.await?);
    }
    progress.set_message("draining");
    let accepted: u64 = sent.iter().map(|s| s.accepted).sum();
    drain(&live, accepted).await;
    stop.cancel();
    let mut received = Vec::with_capacity(receivers.len());
    for task in receivers {
        received.push(task.await?);
    }
    ticker.abort();
    let stats = sum_up(&plan, ctx, clock, senders_n, &sent, &received);
    let mut errors: Vec<String> = sent
        .iter()
        .filter_map(|s| s.error.as_ref().map(|e| format!("sender: {e}")))
        .chain(received.iter().filter_map(|r| r.error.as_ref().map(|e| format!("receiver: {e}"))))
        .collect();
    if let Some(status) = sent.iter().find_map(|s| s.last_refusal) {
        errors.push(format!("refused: status or reason {status}"));
    }
    let broker = stats::broker_watched(watch, &mut errors).await?;
    Ok(Measured { stats, errors, broker })
}

/// A listening end of `mqtt-sse` or `mqtt-ws`, open before the clock starts.
enum Listener {
    Sse(http::OpenStream),
    Ws(Box<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>>),
}

/// Spawn `task` for every item.
fn spawn_all<T, F, Fut, R>(items: Vec<T>, mut task: F) -> Vec<JoinHandle<R>>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    items.into_iter().map(|item| tokio::spawn(task(item))).collect()
}

/// Wait until `expected` messages arrived, nothing arrived for [`QUIET`], or [`MAX_DRAIN`] passed.
async fn drain(live: &Live, expected: u64) {
    let deadline = Instant::now() + MAX_DRAIN;
    loop {
        let arrived = live.arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        if live.received.load(Ordering::Relaxed) >= expected {
            return;
        }
        let quiet = (Instant::now() + QUIET).min(deadline);
        if tokio::time::timeout_at(quiet, arrived).await.is_err() {
            return;
        }
    }
}

/// The figures of a run from what every sender and receiver reported.
fn sum_up(
    plan: &BridgePlan,
    ctx: &Ctx,
    clock: Clock,
    senders: usize,
    sent: &[Sent],
    received: &[Received],
) -> BridgeStats {
    let seconds = clock.end.duration_since(clock.measure_from).as_secs_f64().max(1e-3);
    let mut latency = Latency::default();
    for r in received {
        latency.merge(&r.latency);
    }
    let accepted: u64 = sent.iter().map(|s| s.accepted).sum();
    let got: u64 = received.iter().map(|r| r.received).sum();
    let (sender, receiver) = plan.path.ends();
    BridgeStats {
        path: plan.path,
        sender,
        receiver,
        devices: plan.devices,
        senders,
        device_prefix: format!("{}d", ctx.names.clients),
        sent: sent.iter().map(|s| s.sent).sum(),
        sent_per_s: sent.iter().map(|s| s.sent_measured).sum::<u64>() as f64 / seconds,
        accepted,
        refused: sent.iter().map(|s| s.refused).sum(),
        unanswered: sent.iter().map(|s| s.unanswered).sum(),
        received: got,
        received_per_s: received.iter().map(|r| r.received_measured).sum::<u64>() as f64 / seconds,
        lost: accepted.saturating_sub(got),
        missed: received.iter().map(|r| r.missed).sum(),
        dropped: sent.iter().filter(|s| s.error.is_some()).count()
            + received.iter().filter(|r| r.error.is_some()).count(),
        latency: latency.summary(),
    }
}

/// Client id, and resource id, of device `i`.
fn device_id(ctx: &Ctx, i: usize) -> String {
    ctx.names.client('d', i)
}

/// The readable lines of a bridge report.
pub fn write_text(f: &mut std::fmt::Formatter<'_>, s: &BridgeStats) -> std::fmt::Result {
    writeln!(f, "  {:<14} {} -> {}", "path", s.sender, s.receiver)?;
    writeln!(f, "  {:<14} {} devices, {} sending connections", "clients", s.devices, s.senders)?;
    writeln!(f, "  {:<14} {:.0}/s  ({} over the run, {} accepted)", "sent", s.sent_per_s, s.sent, s.accepted)?;
    writeln!(f, "  {:<14} {:.0}/s  ({} over the run)", "received", s.received_per_s, s.received)?;
    match &s.latency {
        Some(l) => writeln!(
            f,
            "  {:<14} p50 {:.0} µs  p99 {:.0} µs  p99.9 {:.0} µs  max {:.0} µs  ({} samples)",
            "latency", l.p50_us, l.p99_us, l.p999_us, l.max_us, l.samples
        )?,
        None => writeln!(f, "  {:<14} no samples", "latency")?,
    }
    writeln!(
        f,
        "  {:<14} lost {} of {} accepted (skipped by streams {})  refused {}  unanswered {}  dropped connections {}",
        "losses", s.lost, s.accepted, s.missed, s.refused, s.unanswered, s.dropped
    )
}
