//! Connection scenarios and the parallel connect they share with message scenarios:
//! `idle` (connect N clients, weigh them in the broker's resident memory, check they are still
//! alive at the end) and `connect-rate` (workers connecting, waiting for CONNACK and
//! disconnecting in a loop).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Conn, Session};
use crate::error::BenchError;
use crate::flow::Clock;
use crate::options::Options;
use crate::progress::Progress;
use crate::report::Measured;
use crate::scenario::Names;
use crate::stats::{self, Latency, LatencySummary};

/// Connection handshakes in progress at once during setup.
const CONNECT_CONCURRENCY: usize = 64;
/// How long an idle client may take to answer the final PINGREQ.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed connect in `connect-rate`, so a refusing broker is not hammered.
const FAILURE_PAUSE: Duration = Duration::from_millis(10);

/// What every client task of a run shares.
#[derive(Debug)]
pub struct Ctx {
    pub options: Options,
    pub names: Names,
}

/// Run `connect` for every item, at most [`CONNECT_CONCURRENCY`] at a time; the results come
/// back in the order of the items. The first failure ends the setup.
pub async fn connect_many<I, T, F, Fut>(
    items: I,
    ctx: &Arc<Ctx>,
    progress: &Progress,
    connect: F,
) -> Result<Vec<T>, BenchError>
where
    I: IntoIterator,
    I::Item: Send + 'static,
    F: Fn(I::Item, Arc<Ctx>) -> Fut,
    Fut: Future<Output = Result<T, BenchError>> + Send + 'static,
    T: Send + 'static,
{
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let job = connect(item, Arc::clone(ctx));
        let gate = Arc::clone(&gate);
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            job.await.map(|t| (index, t))
        });
    }
    let mut done = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        done.push(joined??);
        progress.inc();
    }
    done.sort_unstable_by_key(|(index, _)| *index);
    Ok(done.into_iter().map(|(_, t)| t).collect())
}

/// What the idle scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct IdleStats {
    pub connections: usize,
    /// Seconds to open every connection (CONNACK received).
    pub connect_s: f64,
    pub connects_per_s: f64,
    /// Connections that still answered a PINGREQ at the end.
    pub alive_at_end: usize,
    pub broker_rss_kib_before: Option<u64>,
    pub broker_rss_kib_after: Option<u64>,
    /// Growth of the broker's resident memory divided by the connections.
    pub broker_bytes_per_connection: Option<f64>,
}

/// Open `n` connections, weigh them, hold them for the measured phase, check they survived.
pub async fn idle(n: usize, ctx: &Arc<Ctx>, progress: &Progress) -> Result<IdleStats, BenchError> {
    let o = &ctx.options;
    let before = o.broker_pid.map(stats::rss_kib).transpose()?;
    progress.connecting(n as u64);
    let started = Instant::now();
    let conns = connect_many(0..n, ctx, progress, |i, ctx| async move {
        let o = &ctx.options;
        let session = Session {
            client_id: ctx.names.client('i', i),
            persistent: None,
            keep_alive: o.keep_alive(),
            credentials: o.credentials.as_ref(),
            index: i,
        };
        Conn::connect(o.target, o.protocol, &session).await
    })
    .await?;
    let connect_s = started.elapsed().as_secs_f64();
    // The warm-up lets the broker settle before it is weighed; the measured phase is the hold.
    let clock = Clock::start(o);
    let ticker = progress.follow_time(clock);
    tokio::time::sleep_until(clock.measure_from).await;
    let after = o.broker_pid.map(stats::rss_kib).transpose()?;
    tokio::time::sleep_until(clock.end).await;
    ticker.abort();
    progress.set_message("checking");
    let mut checks = JoinSet::new();
    for mut conn in conns {
        checks.spawn(async move {
            let alive = conn.ping(PING_TIMEOUT).await;
            conn.close().await;
            alive
        });
    }
    let mut alive_at_end = 0;
    while let Some(alive) = checks.join_next().await {
        alive_at_end += usize::from(alive?);
    }
    let per_connection = match (before, after) {
        (Some(b), Some(a)) => Some((a as f64 - b as f64) * 1024.0 / n as f64),
        _ => None,
    };
    Ok(IdleStats {
        connections: n,
        connect_s,
        connects_per_s: n as f64 / connect_s.max(1e-9),
        alive_at_end,
        broker_rss_kib_before: before,
        broker_rss_kib_after: after,
        broker_bytes_per_connection: per_connection,
    })
}

/// What the connect-rate scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectStats {
    pub workers: usize,
    /// Complete connect → CONNACK → DISCONNECT cycles over the whole run.
    pub connects: u64,
    /// Cycles per second in the measured phase.
    pub connects_per_s: f64,
    /// Connects that failed (refused, reset, timed out).
    pub failures: u64,
    /// TCP connect to CONNACK, for cycles in the measured phase.
    pub latency: Option<LatencySummary>,
}

#[derive(Debug, Default)]
struct WorkerOutcome {
    connects: u64,
    measured: u64,
    failures: u64,
    latency: Latency,
    last_error: Option<String>,
}

/// `workers` loops of connect, CONNACK, DISCONNECT until the end of the measured phase.
pub async fn connect_rate(
    workers: usize,
    ctx: &Arc<Ctx>,
    progress: &Progress,
) -> Result<Measured<ConnectStats>, BenchError> {
    let clock = Clock::start(&ctx.options);
    let watch = stats::watch_broker(ctx.options.broker_pid, clock);
    let counter = Arc::new(AtomicU64::new(0));
    let ticker = progress.follow_count(clock, Arc::clone(&counter), "connects");
    let mut tasks = JoinSet::new();
    for w in 0..workers {
        tasks.spawn(worker(w, workers, Arc::clone(ctx), clock, Arc::clone(&counter)));
    }
    let mut outcomes = Vec::with_capacity(workers);
    while let Some(outcome) = tasks.join_next().await {
        outcomes.push(outcome?);
    }
    ticker.abort();
    let mut latency = Latency::default();
    for w in &outcomes {
        latency.merge(&w.latency);
    }
    let stats = ConnectStats {
        workers,
        connects: outcomes.iter().map(|w| w.connects).sum(),
        connects_per_s: outcomes.iter().map(|w| w.measured).sum::<u64>() as f64 / ctx.options.duration.as_secs_f64(),
        failures: outcomes.iter().map(|w| w.failures).sum(),
        latency: latency.summary(),
    };
    let mut errors = outcomes.into_iter().filter_map(|w| w.last_error.map(|e| format!("connect: {e}"))).collect();
    let broker = stats::broker_watched(watch, &mut errors).await?;
    Ok(Measured { stats, errors, broker })
}

async fn worker(w: usize, workers: usize, ctx: Arc<Ctx>, clock: Clock, counter: Arc<AtomicU64>) -> WorkerOutcome {
    let o = &ctx.options;
    let limit = o.count.unwrap_or(u64::MAX);
    let mut out = WorkerOutcome::default();
    let mut k = 0usize;
    while out.connects < limit && Instant::now() < clock.end {
        let index = k * workers + w;
        k += 1;
        let session = Session {
            client_id: ctx.names.client('c', index),
            persistent: None,
            keep_alive: o.keep_alive(),
            credentials: o.credentials.as_ref(),
            index,
        };
        let started = Instant::now();
        match Conn::connect(o.target, o.protocol, &session).await {
            Ok(conn) => {
                let done = Instant::now();
                if clock.measuring(done) {
                    out.measured += 1;
                    out.latency.record(u64::try_from(done.duration_since(started).as_nanos()).unwrap_or(u64::MAX));
                }
                conn.close().await;
                out.connects += 1;
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                out.failures += 1;
                out.last_error = Some(error_chain(&e));
                tokio::time::sleep(FAILURE_PAUSE).await;
            }
        }
    }
    out
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
