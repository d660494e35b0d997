//! The two ends of a `bridge` run: senders (HTTP POSTs on keep-alive connections, or devices
//! publishing over MQTT) and receivers (devices subscribed over MQTT, Server-Sent Events
//! streams, WebSockets).
//!
//! Every message is a small JSON object `{"bench_due_ns":N}`: N is the time the schedule
//! (open loop, `--rate`) set for it, in nanoseconds on the run's clock. Senders never wait for
//! a receiver, and a message sent late is still stamped with the time it was due, so the latency
//! a receiver records (receive time − due time) includes the wait of messages queued behind a
//! slow one: no coordinated omission. Both ends live in this process and share one clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Buf;
use futures_util::StreamExt;
use switchyard_codec::{Packet, Protocol, QoS};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::client::{AckKind, Acks, Conn, PacketIds};
use crate::events;
use crate::flow::Clock;
use crate::http::{HttpConn, OpenStream};
use crate::stats::Latency;

/// The field of every message that carries its due time.
const STAMP_FIELD: &str = "\"bench_due_ns\":";
/// Messages one device writes in one go.
const BATCH: u64 = 64;
/// Longest wait for outstanding acknowledgements once publishing stops.
const ACK_DRAIN: Duration = Duration::from_secs(5);

/// The body of the message due at `due_ns`.
fn body(due_ns: u64) -> String {
    format!("{{{STAMP_FIELD}{due_ns}}}")
}

/// The number that follows `field` in `text`.
fn number_after(text: &[u8], field: &str) -> Option<f64> {
    let at = text.windows(field.len()).position(|w| w == field.as_bytes())? + field.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit() || b"+-.eE".contains(b)).count();
    std::str::from_utf8(&text[at..at + digits]).ok()?.parse().ok()
}

/// Counters the runner and the progress bar read while the run goes on.
#[derive(Debug, Default)]
pub struct Live {
    pub received: Arc<AtomicU64>,
    /// Signalled by receivers after each batch, for the drain.
    pub arrived: Notify,
}

/// What one sender did.
#[derive(Debug, Default)]
pub struct Sent {
    pub sent: u64,
    /// Taken in: a 2xx answer, or a successful PUBACK.
    pub accepted: u64,
    /// Sent in the measured phase.
    pub sent_measured: u64,
    /// Refused: another HTTP status, or a PUBACK reason of 0x80 or above.
    pub refused: u64,
    /// Sent and never answered.
    pub unanswered: u64,
    pub last_refusal: Option<u16>,
    pub error: Option<String>,
}

/// What one receiver got.
#[derive(Debug, Default)]
pub struct Received {
    pub received: u64,
    /// Received in the measured phase.
    pub received_measured: u64,
    /// Messages a stream said it had to skip (a slow reader's gap).
    pub missed: u64,
    /// Receive time − due time, for messages due in the measured phase.
    pub latency: Latency,
    pub error: Option<String>,
}

impl Received {
    /// Count one message and time it by the stamp in `text`.
    fn message(&mut self, text: &[u8], clock: Clock, now: Instant) {
        self.received += 1;
        if clock.measuring(now) {
            self.received_measured += 1;
        }
        if let Some(due) = number_after(text, STAMP_FIELD).map(|ns| ns as u64) {
            let (from, end) = (clock.ns(clock.measure_from), clock.ns(clock.end));
            if (from..end).contains(&due) {
                self.latency.record(clock.ns(now).saturating_sub(due));
            }
        }
    }
}

/// The shared open-loop schedule of HTTP senders: message `k` is due at `origin + k / rate`.
#[derive(Debug)]
pub struct Schedule {
    next: AtomicU64,
    rate: Option<f64>,
    limit: u64,
}

impl Schedule {
    pub fn new(rate: Option<u64>, limit: u64) -> Schedule {
        Schedule { next: AtomicU64::new(0), rate: rate.map(|r| r as f64), limit }
    }

    /// The next message and when it is due; `None` once the schedule is over.
    fn take(&self, clock: Clock) -> Option<(u64, Instant)> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let due = match self.rate {
            Some(rate) => clock.origin + Duration::from_secs_f64(k as f64 / rate),
            None => Instant::now(),
        };
        (k < self.limit && due < clock.end).then_some((k, due))
    }
}

/// POST the messages of `schedule` on one connection, in turn to each path of `paths`.
pub async fn http_sender(mut conn: HttpConn, schedule: Arc<Schedule>, paths: Arc<[String]>, clock: Clock) -> Sent {
    let mut out = Sent::default();
    while let Some((k, due)) = schedule.take(clock) {
        tokio::time::sleep_until(due).await;
        let path = &paths[(k % paths.len() as u64) as usize];
        out.sent += 1;
        // Counted when actually sent: behind schedule, that is later than due.
        if clock.measuring(Instant::now()) {
            out.sent_measured += 1;
        }
        match conn.post(path, body(clock.ns(due)).as_bytes()).await {
            Ok(status) if (200..300).contains(&status) => out.accepted += 1,
            Ok(status) => {
                out.refused += 1;
                out.last_refusal = Some(status);
            }
            Err(e) => {
                out.unanswered += 1;
                out.error = Some(format!("HTTP: {e}"));
                break;
            }
        }
    }
    out
}

/// One device publishing its share of the rate at QoS 1 to its events topic.
#[derive(Debug)]
pub struct Publisher {
    pub conn: Conn,
    pub topic: Vec<u8>,
    pub protocol: Protocol,
    /// Most messages unacknowledged at once.
    pub window: usize,
    /// Messages per second of this device, `None` for unlimited.
    pub rate: Option<f64>,
    /// Offset of this device's schedule, so devices do not publish in step.
    pub phase: Duration,
    pub limit: u64,
}

impl Publisher {
    pub async fn run(mut self, clock: Clock) -> Sent {
        let mut out = Sent::default();
        let mut ids = PacketIds::default();
        let origin = clock.origin + self.phase;
        let rate = self.rate;
        let due = move |j: u64| match rate {
            Some(rate) => origin + Duration::from_secs_f64(j as f64 / rate),
            None => Instant::now(),
        };
        let mut done = false;
        while !done && out.sent < self.limit && Instant::now() < clock.end {
            let open = ids.in_use() < self.window;
            tokio::select! {
                biased;
                read = self.conn.read_more() => {
                    if let Err(e) = self.on_read(read, &mut ids, &mut out) {
                        out.error = Some(e);
                        break;
                    }
                }
                () = tokio::time::sleep_until(due(out.sent)), if open => {
                    let now = Instant::now();
                    let room = (self.window - ids.in_use()) as u64;
                    for _ in 0..BATCH.min(room).min(self.limit - out.sent) {
                        let at = due(out.sent);
                        if at > now || at >= clock.end {
                            done = at >= clock.end;
                            break;
                        }
                        let payload = body(clock.ns(at));
                        events::write_publish(self.conn.output(), self.protocol, &self.topic, ids.take(), payload.as_bytes());
                        out.sent += 1;
                        if clock.measuring(at) {
                            out.sent_measured += 1;
                        }
                    }
                    if let Err(e) = self.conn.flush().await {
                        out.error = Some(format!("MQTT write failed: {e}"));
                        break;
                    }
                }
                () = tokio::time::sleep_until(clock.end) => {}
            }
        }
        let deadline = Instant::now() + ACK_DRAIN;
        while out.error.is_none() && ids.in_use() > 0 {
            let Ok(read) = tokio::time::timeout_at(deadline, self.conn.read_more()).await else { break };
            if let Err(e) = self.on_read(read, &mut ids, &mut out) {
                out.error = Some(e);
            }
        }
        out.unanswered = ids.in_use() as u64;
        self.conn.close().await;
        out
    }

    fn on_read(&mut self, read: std::io::Result<usize>, ids: &mut PacketIds, out: &mut Sent) -> Result<(), String> {
        match read {
            Ok(0) => return Err("MQTT connection closed by the broker".into()),
            Err(e) => return Err(format!("MQTT read failed: {e}")),
            Ok(_) => {}
        }
        loop {
            match self.conn.next_packet() {
                Ok(Some(Packet::PubAck(r))) => {
                    if !ids.release(r.packet_id) {
                        continue;
                    }
                    if r.reason >= 0x80 {
                        out.refused += 1;
                        out.last_refusal = Some(u16::from(r.reason));
                    } else {
                        out.accepted += 1;
                    }
                }
                Ok(Some(Packet::Disconnect(d))) => return Err(format!("DISCONNECT, reason {:#04x}", d.reason)),
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("invalid packet from the broker: {e}")),
            }
        }
    }
}

/// Receive on a subscribed MQTT connection until `stop`, acknowledging what needs it.
pub async fn mqtt_receiver(
    mut conn: Conn,
    acks: Acks,
    clock: Clock,
    live: Arc<Live>,
    stop: CancellationToken,
) -> Received {
    let mut out = Received::default();
    loop {
        let read = tokio::select! {
            () = stop.cancelled() => break,
            read = conn.read_more() => read,
        };
        match read {
            Ok(0) => out.error = Some("MQTT connection closed by the broker".into()),
            Err(e) => out.error = Some(format!("MQTT read failed: {e}")),
            Ok(_) => {}
        }
        if out.error.is_some() {
            break;
        }
        let now = Instant::now();
        let before = out.received;
        loop {
            match conn.next_packet() {
                Ok(Some(Packet::Publish(p))) => {
                    out.message(&p.payload, clock, now);
                    match p.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => acks.write(conn.output(), AckKind::Ack, p.packet_id),
                        QoS::ExactlyOnce => acks.write(conn.output(), AckKind::Rec, p.packet_id),
                    }
                }
                Ok(Some(Packet::PubRel(r))) => acks.write(conn.output(), AckKind::Comp, r.packet_id),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(format!("invalid packet from the broker: {e}"));
                    break;
                }
            }
        }
        arrived(&live, out.received - before);
        if let Err(e) = conn.flush().await {
            out.error = Some(format!("MQTT write failed: {e}"));
        }
        if out.error.is_some() {
            break;
        }
    }
    conn.close().await;
    out
}

/// Read a Server-Sent Events stream until `stop`: each `data:` event is a message; an
/// `event: gap` says how many the server had to skip.
pub async fn sse_receiver(open: OpenStream, clock: Clock, live: Arc<Live>, stop: CancellationToken) -> Received {
    let OpenStream { mut stream, mut input } = open;
    let mut out = Received::default();
    loop {
        let now = Instant::now();
        let before = out.received;
        while let Some(end) = input.windows(2).position(|w| w == b"\n\n") {
            let event = &input[..end];
            if event.starts_with(b"event: gap") {
                out.missed += number_after(event, "\"missed\":").unwrap_or(0.0) as u64;
            } else if !event.starts_with(b":") {
                out.message(event, clock, now);
            }
            input.advance(end + 2);
        }
        arrived(&live, out.received - before);
        input.reserve(4096);
        tokio::select! {
            () = stop.cancelled() => break,
            read = stream.read_buf(&mut input) => match read {
                Ok(0) => { out.error = Some("the stream ended".into()); break }
                Err(e) => { out.error = Some(format!("stream read failed: {e}")); break }
                Ok(_) => {}
            },
        }
    }
    out
}

/// Read a subscribe WebSocket until `stop`: each `message` frame is a message; a `missed`
/// frame says how many the server had to skip.
pub async fn ws_receiver(
    mut socket: WebSocketStream<TcpStream>,
    clock: Clock,
    live: Arc<Live>,
    stop: CancellationToken,
) -> Received {
    let mut out = Received::default();
    loop {
        let frame = tokio::select! {
            () = stop.cancelled() => break,
            frame = socket.next() => frame,
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => {
                out.error = Some("the WebSocket closed".into());
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                out.error = Some(format!("WebSocket read failed: {e}"));
                break;
            }
        };
        let text = text.as_bytes();
        if text.starts_with(br#"{"type":"missed""#) {
            out.missed += number_after(text, "\"count\":").unwrap_or(0.0) as u64;
        } else {
            out.message(text, clock, Instant::now());
            arrived(&live, 1);
        }
    }
    let _ = socket.close(None).await;
    out
}

fn arrived(live: &Live, n: u64) {
    if n > 0 {
        live.received.fetch_add(n, Ordering::Relaxed);
        live.arrived.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_found_in_what_the_server_sends() {
        let b = body(123_456_789);
        assert_eq!(number_after(b.as_bytes(), STAMP_FIELD), Some(123_456_789.0));
        let sse = b"id: 7\ndata: {\"bench_due_ns\":42,\"resource\":\"d1\",\"timestamp\":1}";
        assert_eq!(number_after(sse, STAMP_FIELD), Some(42.0));
        let ws = br#"{"type":"message","seq":3,"message":{"bench_due_ns":1.5e3}}"#;
        assert_eq!(number_after(ws, STAMP_FIELD), Some(1500.0));
        assert_eq!(number_after(b"{\"missed\":12}", "\"missed\":"), Some(12.0));
        assert_eq!(number_after(b"{}", STAMP_FIELD), None);
    }
}
