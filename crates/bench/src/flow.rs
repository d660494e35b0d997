//! The runner of message scenarios ([`FlowPlan`]): connect every subscriber, then every
//! publisher; publish until the end of the measured phase; let the deliveries drain; add up.
//!
//! Timeline, all on one monotonic clock shared by every client of the process:
//! `origin` (publishing starts) → `origin + warmup` (measuring starts) → `+ duration` (publishing
//! stops) → drain (until every expected delivery arrived, nothing arrived for a second, or ten
//! seconds passed). A delivery is counted in the rate, and its latency recorded, when it is
//! received inside the measured phase; its latency is receive time minus the publish time in the
//! first 8 bytes of its payload.
//!
//! Flow control: a QoS 1/2 publisher never has more than `--inflight` publishes unacknowledged
//! (nor, under 5.0, more than the server's receive maximum);
//! a QoS 0 publisher is held back by TCP alone. A `--rate` spreads messages evenly in time. With
//! `--backlog N` the run is closed-loop: publishers wait while N messages or more are published
//! but not yet received by every subscriber, which measures what a broker sustains rather than
//! how it sheds an overload.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use switchyard_codec::{Packet, QoS};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{AckKind, Acks, Conn, PacketIds, PublishTemplate, Session, stamp};
use crate::conns::{Ctx, connect_many};
use crate::error::BenchError;
use crate::options::Options;
use crate::progress::Progress;
use crate::report::Measured;
use crate::scenario::FlowPlan;
use crate::stats::{self, Latency, LatencySummary};

/// Messages written by one publisher in one go.
const BATCH: u64 = 128;
/// Longest wait for outstanding acknowledgements once publishing stops.
const ACK_DRAIN: Duration = Duration::from_secs(5);
/// Longest a publisher held back by the backlog waits before looking again.
const BACKLOG_RECHECK: Duration = Duration::from_millis(2);
/// A full backlog with no delivery for this long is written off as lost.
const STALL: Duration = Duration::from_millis(100);
/// Drain of deliveries: stop when nothing arrived for this long...
const QUIET: Duration = Duration::from_secs(1);
/// ... or after this long in any case.
const MAX_DRAIN: Duration = Duration::from_secs(10);

/// The instants every client measures against.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub origin: Instant,
    pub measure_from: Instant,
    pub end: Instant,
}

impl Clock {
    /// A clock whose publishing starts now.
    pub fn start(o: &Options) -> Clock {
        let origin = Instant::now();
        Clock { origin, measure_from: origin + o.warmup, end: origin + o.warmup + o.duration }
    }

    /// Nanoseconds from `origin` to `at`.
    pub fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// True inside the measured phase.
    pub fn measuring(&self, at: Instant) -> bool {
        at >= self.measure_from && at <= self.end
    }
}

/// Counters the progress bar reads while the run goes on.
#[derive(Debug, Default)]
pub struct Live {
    pub delivered: AtomicU64,
    pub published: AtomicU64,
    /// Signalled by subscribers after each batch, for publishers held back by `--backlog`.
    caught_up: Notify,
    /// Outstanding deliveries given up as lost by the backlog accounting (see [`Live::write_off`]).
    written_off: AtomicU64,
}

impl Live {
    /// Deliveries published and neither received nor written off.
    fn outstanding(&self, copies: u64) -> u64 {
        let published = self.published.load(Ordering::Relaxed).saturating_mul(copies);
        let settled = self.delivered.load(Ordering::Relaxed) + self.written_off.load(Ordering::Relaxed);
        published.saturating_sub(settled)
    }

    /// Nothing arrived for [`STALL`] although deliveries are outstanding: a broker that drops
    /// messages (a full queue, an overload) would otherwise keep the backlog full for good, so
    /// what is outstanding is written off once (they still count as lost in the report).
    fn write_off(&self, copies: u64) {
        let written = self.written_off.load(Ordering::Relaxed);
        let published = self.published.load(Ordering::Relaxed).saturating_mul(copies);
        let gone = published.saturating_sub(self.delivered.load(Ordering::Relaxed) + written);
        // Only one waiting publisher writes off a given stall.
        let _ = self.written_off.compare_exchange(written, written + gone, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// What a message scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct FlowStats {
    pub publishers: usize,
    pub subscribers: usize,
    /// Publishes sent over the whole run.
    pub published: u64,
    /// Publishes sent per second in the measured phase (which ends early when `--count` stops
    /// the publishers first).
    pub published_per_s: f64,
    /// Deliveries received over the whole run, drain included.
    pub delivered: u64,
    /// Deliveries received per second in the measured phase: the headline figure.
    pub delivered_per_s: f64,
    /// Deliveries the subscriptions call for (published × copies).
    pub expected: u64,
    /// Expected deliveries that never arrived (QoS 0 may lose; QoS 1/2 should not).
    pub lost: u64,
    /// Publishes the broker refused (reason code 0x80 or above, 5.0).
    pub refused: u64,
    /// QoS 1/2 publishes still unacknowledged when the run ended.
    pub unacked: u64,
    /// Clients whose connection ended before the run did.
    pub dropped_clients: usize,
    /// End-to-end latency of the deliveries received in the measured phase.
    pub latency: Option<LatencySummary>,
}

#[derive(Debug, Default)]
struct PubOutcome {
    sent: u64,
    sent_measured: u64,
    refused: u64,
    unacked: u64,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct SubOutcome {
    received: u64,
    received_measured: u64,
    /// When the last delivery of the measured phase arrived.
    last_measured: Option<Instant>,
    latency: Latency,
    error: Option<String>,
}

/// Run one message scenario; returns its figures and the clients' errors.
pub async fn run(plan: FlowPlan, ctx: &Arc<Ctx>, progress: &Progress) -> Result<Measured<FlowStats>, BenchError> {
    let o = &ctx.options;
    let (subscriber_count, publisher_count) = (plan.subscribers.len(), plan.publishers.len());
    progress.connecting((subscriber_count + publisher_count) as u64);
    let subscribers =
        connect_many(plan.subscribers.into_iter().enumerate(), ctx, progress, |(i, filters), ctx| async move {
            let o = &ctx.options;
            let session = Session {
                client_id: ctx.names.client('s', i),
                persistent: o.persistent,
                keep_alive: o.keep_alive(),
                credentials: o.credentials.as_ref(),
                index: i,
            };
            let mut conn = Conn::connect(o.target, o.protocol, &session).await?;
            conn.subscribe(&filters, o.qos).await?;
            Ok(conn)
        })
        .await?;
    let templates = plan
        .publishers
        .iter()
        .map(|topics| topics.iter().map(|t| PublishTemplate::new(t, o.qos, o.payload, o.protocol)).collect())
        .collect::<Result<Vec<Vec<_>>, _>>()?;
    let publishers = connect_many(0..publisher_count, ctx, progress, |i, ctx| async move {
        let o = &ctx.options;
        let session = Session {
            client_id: ctx.names.client('p', i),
            persistent: None,
            keep_alive: o.keep_alive(),
            credentials: o.credentials.as_ref(),
            index: subscriber_count + i,
        };
        Conn::connect(o.target, o.protocol, &session).await
    })
    .await?;

    let clock = Clock::start(o);
    let watch = stats::watch_broker(o.broker_pid, clock);
    let live = Arc::new(Live::default());
    let stop = CancellationToken::new();
    let ticker = progress.follow_flow(clock, Arc::clone(&live));
    let acks = Acks::new(o.protocol)?;
    let subs: Vec<_> = subscribers
        .into_iter()
        .map(|conn| tokio::spawn(subscriber(conn, clock, acks.clone(), Arc::clone(&live), stop.clone())))
        .collect();
    let rate = o.rate.map(|total| total as f64 / publisher_count as f64);
    let pubs: Vec<_> = publishers
        .into_iter()
        .zip(templates)
        .map(|(conn, templates)| {
            let window = match o.qos {
                QoS::AtMostOnce => usize::MAX,
                _ => usize::from(o.inflight.min(conn.receive_maximum())),
            };
            let publisher = Publisher {
                conn,
                templates,
                acks: acks.clone(),
                qos: o.qos,
                window,
                limit: o.count.unwrap_or(u64::MAX),
                rate,
                backlog: o.backlog.map(|b| b.saturating_mul(plan.copies)),
                copies: plan.copies,
            };
            tokio::spawn(publisher.run(clock, Arc::clone(&live)))
        })
        .collect();

    let mut pub_outcomes = Vec::with_capacity(pubs.len());
    for handle in pubs {
        pub_outcomes.push(handle.await?);
    }
    let published: u64 = pub_outcomes.iter().map(|p| p.sent).sum();
    let expected = published * plan.copies;
    progress.set_message("draining");
    drain(&live, expected).await;
    stop.cancel();
    let mut sub_outcomes = Vec::with_capacity(subs.len());
    for handle in subs {
        sub_outcomes.push(handle.await?);
    }
    ticker.abort();

    // The measured phase ends early when --count stops the publishers before --duration.
    let last = sub_outcomes.iter().filter_map(|s| s.last_measured).max().unwrap_or(clock.end);
    let measured = last.min(clock.end).duration_since(clock.measure_from).as_secs_f64().max(1e-3);
    let mut latency = Latency::default();
    for s in &sub_outcomes {
        latency.merge(&s.latency);
    }
    let delivered: u64 = sub_outcomes.iter().map(|s| s.received).sum();
    let mut errors: Vec<String> = pub_outcomes
        .iter()
        .filter_map(|p| p.error.as_ref().map(|e| format!("publisher: {e}")))
        .chain(sub_outcomes.iter().filter_map(|s| s.error.as_ref().map(|e| format!("subscriber: {e}"))))
        .collect();
    let stats = FlowStats {
        publishers: publisher_count,
        subscribers: subscriber_count,
        published,
        published_per_s: pub_outcomes.iter().map(|p| p.sent_measured).sum::<u64>() as f64 / measured,
        delivered,
        delivered_per_s: sub_outcomes.iter().map(|s| s.received_measured).sum::<u64>() as f64 / measured,
        expected,
        lost: expected.saturating_sub(delivered),
        refused: pub_outcomes.iter().map(|p| p.refused).sum(),
        unacked: pub_outcomes.iter().map(|p| p.unacked).sum(),
        dropped_clients: errors.len(),
        latency: latency.summary(),
    };
    let broker = stats::broker_watched(watch, &mut errors).await?;
    Ok(Measured { stats, errors, broker })
}

/// Wait until every expected delivery arrived, or nothing arrives any more.
async fn drain(live: &Live, expected: u64) {
    let started = Instant::now();
    let mut last = live.delivered.load(Ordering::Relaxed);
    let mut last_change = started;
    loop {
        let now = Instant::now();
        let delivered = live.delivered.load(Ordering::Relaxed);
        if delivered >= expected || now - started > MAX_DRAIN {
            return;
        }
        if delivered != last {
            (last, last_change) = (delivered, now);
        } else if now - last_change > QUIET {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Receive, acknowledge and time deliveries until stopped.
async fn subscriber(mut conn: Conn, clock: Clock, acks: Acks, live: Arc<Live>, stop: CancellationToken) -> SubOutcome {
    let mut out = SubOutcome::default();
    'run: loop {
        let read = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            read = conn.read_more() => read,
        };
        match read {
            Ok(0) => {
                out.error = Some("connection closed by the broker".into());
                break;
            }
            Err(e) => {
                out.error = Some(format!("read failed: {e}"));
                break;
            }
            Ok(_) => {}
        }
        let now = Instant::now();
        let (now_ns, measuring) = (clock.ns(now), clock.measuring(now));
        let mut batch = 0;
        loop {
            match conn.next_packet() {
                Ok(Some(Packet::Publish(p))) => {
                    batch += 1;
                    if measuring {
                        out.received_measured += 1;
                        out.last_measured = Some(now);
                        if let Some(sent) = stamp(&p.payload) {
                            out.latency.record(now_ns.saturating_sub(sent));
                        }
                    }
                    match p.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => acks.write(conn.output(), AckKind::Ack, p.packet_id),
                        QoS::ExactlyOnce => acks.write(conn.output(), AckKind::Rec, p.packet_id),
                    }
                }
                Ok(Some(Packet::PubRel(r))) => acks.write(conn.output(), AckKind::Comp, r.packet_id),
                Ok(Some(Packet::Disconnect(d))) => {
                    out.error = Some(format!("DISCONNECT from the broker, reason {:#04x}", d.reason));
                    break 'run;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(format!("invalid packet from the broker: {e}"));
                    break 'run;
                }
            }
        }
        out.received += batch;
        if batch > 0 {
            live.delivered.fetch_add(batch, Ordering::Relaxed);
            live.caught_up.notify_waiters();
        }
        if let Err(e) = conn.flush().await {
            out.error = Some(format!("write failed: {e}"));
            break;
        }
    }
    conn.close().await;
    out
}

/// One publishing client and its flow-control state.
struct Publisher {
    conn: Conn,
    templates: Vec<PublishTemplate>,
    acks: Acks,
    qos: QoS,
    /// Most publishes unacknowledged at once (`usize::MAX` at QoS 0).
    window: usize,
    /// Most publishes in the whole run.
    limit: u64,
    /// Messages per second for this publisher, `None` for unlimited.
    rate: Option<f64>,
    /// Most deliveries outstanding over all publishers (published × copies − delivered).
    backlog: Option<u64>,
    /// Deliveries per message.
    copies: u64,
}

impl Publisher {
    async fn run(mut self, clock: Clock, live: Arc<Live>) -> PubOutcome {
        let mut out = PubOutcome::default();
        let mut ids = PacketIds::default();
        let mut next_topic = 0;
        // Deliveries seen when this publisher last found the backlog full, and since when.
        let mut stalled: Option<(u64, Instant)> = None;
        while out.sent < self.limit && Instant::now() < clock.end {
            let room = self.backlog_room(&live);
            let open = ids.in_use() < self.window && room > 0;
            tokio::select! {
                biased;
                read = self.conn.read_more() => {
                    if let Err(e) = self.on_read(read, &mut ids, &mut out).await {
                        out.error = Some(e);
                        break;
                    }
                }
                () = pace(self.rate, clock.origin, out.sent), if open => {
                    let now = Instant::now();
                    let due = match self.rate {
                        Some(rate) => (now.duration_since(clock.origin).as_secs_f64() * rate) as u64 + 1,
                        None => u64::MAX,
                    };
                    let window = (self.window - ids.in_use()) as u64;
                    let n = BATCH.min(window).min(room).min(due.saturating_sub(out.sent)).min(self.limit - out.sent);
                    let stamp_ns = clock.ns(now);
                    for _ in 0..n {
                        let id = if self.qos == QoS::AtMostOnce { 0 } else { ids.take() };
                        self.templates[next_topic].write(self.conn.output(), id, stamp_ns);
                        next_topic = (next_topic + 1) % self.templates.len();
                    }
                    out.sent += n;
                    if clock.measuring(now) {
                        out.sent_measured += n;
                    }
                    live.published.fetch_add(n, Ordering::Relaxed);
                    if let Err(e) = self.conn.flush().await {
                        out.error = Some(format!("write failed: {e}"));
                        break;
                    }
                }
                _ = tokio::time::timeout(BACKLOG_RECHECK, live.caught_up.notified()), if room == 0 => {
                    let delivered = live.delivered.load(Ordering::Relaxed);
                    match stalled {
                        Some((seen, since)) if seen == delivered => {
                            if since.elapsed() >= STALL {
                                live.write_off(self.copies);
                                stalled = None;
                            }
                        }
                        _ => stalled = Some((delivered, Instant::now())),
                    }
                }
                () = tokio::time::sleep_until(clock.end) => {}
            }
        }
        // Publishing is over: collect the acknowledgements still owed.
        let deadline = Instant::now() + ACK_DRAIN;
        while out.error.is_none() && ids.in_use() > 0 {
            let Ok(read) = tokio::time::timeout_at(deadline, self.conn.read_more()).await else { break };
            if let Err(e) = self.on_read(read, &mut ids, &mut out).await {
                out.error = Some(e);
            }
        }
        out.unacked = ids.in_use() as u64;
        self.conn.close().await;
        out
    }

    /// Messages this publisher may still send before the backlog bound is reached.
    fn backlog_room(&self, live: &Live) -> u64 {
        let Some(max) = self.backlog else { return u64::MAX };
        max.saturating_sub(live.outstanding(self.copies)) / self.copies
    }

    /// Handle what a read brought: acknowledgements free window slots; PUBREC gets its PUBREL.
    async fn on_read(
        &mut self,
        read: std::io::Result<usize>,
        ids: &mut PacketIds,
        out: &mut PubOutcome,
    ) -> Result<(), String> {
        match read {
            Ok(0) => return Err("connection closed by the broker".into()),
            Err(e) => return Err(format!("read failed: {e}")),
            Ok(_) => {}
        }
        loop {
            match self.conn.next_packet() {
                Ok(Some(Packet::PubAck(r) | Packet::PubComp(r))) => {
                    if ids.release(r.packet_id) && r.reason >= 0x80 {
                        out.refused += 1;
                    }
                }
                Ok(Some(Packet::PubRec(r))) if r.reason >= 0x80 => {
                    if ids.release(r.packet_id) {
                        out.refused += 1;
                    }
                }
                Ok(Some(Packet::PubRec(r))) => self.acks.write(self.conn.output(), AckKind::Rel, r.packet_id),
                Ok(Some(Packet::Disconnect(d))) => {
                    return Err(format!("DISCONNECT from the broker, reason {:#04x}", d.reason));
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(format!("invalid packet from the broker: {e}")),
            }
        }
        if self.conn.has_output() {
            self.conn.flush().await.map_err(|e| format!("write failed: {e}"))?;
        }
        Ok(())
    }
}

/// Ready when the next message is due: at once without a rate, else `origin + sent / rate`.
async fn pace(rate: Option<f64>, origin: Instant, sent: u64) {
    if let Some(rate) = rate {
        tokio::time::sleep_until(origin + Duration::from_secs_f64(sent as f64 / rate)).await;
    }
}
