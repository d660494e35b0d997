//! One connection, whatever carries it (TCP, TLS, WebSocket): a single task that reads and
//! decodes packets, enforces per-connection rules (keep-alive, topic aliases, receive maximum,
//! authorization), turns packets into core events, and writes what the core queues for it.
//! Reading and writing proceed together, so a client blocked on its own writes never deadlocks
//! with us. Reading pauses in two cases only: a 3.1.1 client's receive window is full
//! ([`crate::inflow`]), or more answers to a client's own requests wait unwritten than
//! `answer_backlog` allows (it is not reading them, so its requests wait too).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use switchyard_broker::{Broker, Escaped, Event, Intake, Outbox, Outgoing, WillAction, now_ms};
use switchyard_codec::{Disconnect, Packet, Properties, Protocol, Publish, QoS, reason, topic};
use switchyard_identity::ClientCertificate;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::handshake::{self, Accepted, Refused};
use crate::inflow::Inflow;
use puback::{BARE_PUBACK_LEN, bare_puback};
use read::{linger, poll_read};

mod puback;
mod read;
#[cfg(test)]
mod size_tests;
mod write;

/// Bytes queued for the socket before we stop taking more from the outbox.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Write buffers smaller than this are freed once written.
const MIN_KEPT_WRITE: usize = 256;
/// Smallest and largest socket read.
const MIN_READ: usize = 64;
const MAX_READ: usize = 64 * 1024;
/// A PINGREQ as both versions encode it (flags zero, nothing after the fixed header).
const PINGREQ: [u8; 2] = [0xC0, 0x00];
/// How long a closed connection keeps reading what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// How long a closing connection may take to flush its last packets.
const CLOSE_FLUSH: Duration = Duration::from_secs(5);

/// Why the loop ended, and what the core must do about the will.
struct Ending {
    will: WillAction,
    session_expiry: Option<u32>,
    /// 5.0 DISCONNECT reason to send before closing, if any.
    disconnect: Option<u8>,
    why: &'static str,
}

impl Ending {
    fn error(code: u8, why: &'static str) -> Ending {
        Ending { will: WillAction::Publish, session_expiry: None, disconnect: Some(code), why }
    }

    /// The connection broke: nothing can be sent, the will is published.
    fn lost(why: &'static str) -> Ending {
        Ending { will: WillAction::Publish, session_expiry: None, disconnect: None, why }
    }
}

/// Serve one MQTT connection until it ends. Every transport calls this after its own handshake.
pub fn serve<S>(
    stream: S,
    peer: Option<SocketAddr>,
    broker: Broker,
    connect_timeout: Duration,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    serve_holding(stream, peer, None, broker, connect_timeout, shutdown, ())
}

/// [`serve`], holding `guard` (a connection-limit permit) until the connection ends.
///
/// An idle connection is mostly this future, so it is kept small: not an `async fn`, whose
/// arguments its future would hold twice; and what only the CONNECT phase or the close needs
/// lives in boxes that exist only meanwhile.
pub(crate) fn serve_holding<S, G>(
    stream: S,
    peer: Option<SocketAddr>,
    cert: Option<Box<ClientCertificate>>,
    broker: Broker,
    connect_timeout: Duration,
    shutdown: CancellationToken,
    guard: G,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    G: Send,
{
    let phase = Box::pin(connect(stream, broker, peer, cert, connect_timeout, shutdown));
    async move {
        let _guard = &guard;
        let Some((mut conn, mut io)) = phase.await else { return };
        let ending = conn.run(&mut io.stream, &mut io.rbuf).await;
        Box::pin(conn.finish(&mut io.stream, ending)).await;
    }
}

/// The stream, and what was read from it but not yet decoded.
struct Io<S> {
    stream: S,
    rbuf: BytesMut,
}

/// Read CONNECT and have the core accept it within `timeout`; on refusal, answer and close.
/// Shutdown abandons a connection still here; once accepted, the core closes it
/// ([`Broker::close_all`]).
async fn connect<S>(
    stream: S,
    broker: Broker,
    peer: Option<SocketAddr>,
    cert: Option<Box<ClientCertificate>>,
    timeout: Duration,
    shutdown: CancellationToken,
) -> Option<(Connection, Io<S>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut io = Io { stream, rbuf: BytesMut::new() };
    let conn = broker.next_conn_id();
    let max_in = broker.config().max_packet_size as usize;
    let outbox = Arc::new(Outbox::new(broker.config().max_queued_bytes));
    let phase = async {
        let connect = handshake::read_connect(&mut io.stream, &mut io.rbuf, max_in).await?;
        handshake::accept(&broker, conn, connect, peer, cert.as_deref(), &outbox).await
    };
    let result = tokio::select! {
        result = tokio::time::timeout(timeout, phase) => result,
        () = shutdown.cancelled() => return None,
    };
    let accepted = match result {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(Refused::ConnAck(protocol, code))) => {
            let mut out = BytesMut::new();
            if switchyard_codec::encode(&handshake::refusal_connack(code), protocol, &mut out).is_ok() {
                let _ = tokio::time::timeout(CLOSE_FLUSH, io.stream.write_all(&out)).await;
            }
            let _ = io.stream.shutdown().await;
            linger(&mut io.stream).await;
            return None;
        }
        Ok(Err(Refused::Close(why))) => {
            tracing::debug!(?peer, why, "connection closed during CONNECT");
            return None;
        }
        Err(_) => {
            tracing::debug!(?peer, "no CONNECT within the connect timeout");
            return None;
        }
    };
    tracing::debug!(client_id = %Escaped(&accepted.client_id), ?peer, "client connected");
    outbox.set_keep_alive(Duration::from_millis(u64::from(accepted.keep_alive) * 1500));
    let conn = Connection {
        broker,
        conn,
        accepted,
        outbox,
        rare: None,
        wbuf: BytesMut::new(),
        pending: Vec::new(),
        closing: None,
    };
    Some((conn, io))
}

/// What woke the connection loop.
enum Wake {
    Wrote(io::Result<usize>),
    Outbox,
    Read(io::Result<usize>),
}

struct Connection {
    broker: Broker,
    conn: u64,
    accepted: Accepted,
    outbox: Arc<Outbox>,
    /// What publishers and 5.0 alias users need, made on first use.
    rare: Option<Box<Rare>>,
    wbuf: BytesMut,
    pending: Vec<Outgoing>,
    /// Set when the core asked us to close (after flushing what precedes it).
    closing: Option<Box<Ending>>,
}

/// The parts of a connection an idle subscriber never uses.
#[derive(Default)]
struct Rare {
    /// Topic aliases (5.0), each way.
    inbound: BTreeMap<u16, String>,
    outbound: BTreeMap<String, u16>,
    /// Inbound QoS 1/2 publishes not yet acknowledged, and what waits for them (3.1.1).
    inflow: Inflow,
    /// PINGRESPs owed while the write buffer is over its high-water mark.
    owed_pings: usize,
}

impl Connection {
    fn protocol(&self) -> Protocol {
        self.accepted.protocol
    }

    /// True while the 3.1.1 receive window holds enough that we stop reading.
    fn window_paused(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| r.inflow.reading_paused())
    }

    /// True when the client's silence is ours: we stopped reading while waiting for our own
    /// acknowledgements, not for the client to read what we wrote.
    fn silence_is_ours(&self) -> bool {
        self.window_paused() && self.wbuf.len() < WRITE_HIGH_WATER
    }

    /// True while more answers to the client's own requests wait unwritten than allowed. Only
    /// looked at when the write buffer is backed up: otherwise the outbox is drained at once.
    fn answers_backed_up(&self) -> bool {
        self.wbuf.len() >= WRITE_HIGH_WATER
            && self.outbox.answers() + self.rare.as_ref().map_or(0, |r| r.owed_pings)
                >= self.broker.config().answer_backlog
    }

    /// True when `packet` must wait behind a full 3.1.1 receive window.
    fn must_hold(&self, packet: &Packet) -> bool {
        self.protocol() == Protocol::V311
            && self.rare.as_ref().is_some_and(|r| r.inflow.must_hold(packet, self.broker.config().receive_maximum))
    }

    /// Hand the core what the window held, as far as acknowledgements made room.
    async fn release_held(&mut self) -> Result<(), Ending> {
        let max = self.broker.config().receive_maximum;
        let mut released = false;
        while let Some(packet) = self.rare.as_mut().and_then(|r| r.inflow.release(max)) {
            released = true;
            self.handle(packet).await?;
        }
        if released {
            // The client was not silent: we were not listening.
            self.outbox.heard();
        }
        Ok(())
    }

    /// Answer a PINGREQ: a PINGRESP, or one owed while the write buffer is over its high-water
    /// mark.
    fn ping(&mut self) {
        if self.wbuf.len() < WRITE_HIGH_WATER {
            let _ = switchyard_codec::encode(&Packet::PingResp, self.protocol(), &mut self.wbuf);
        } else {
            self.rare.get_or_insert_default().owed_pings += 1;
        }
    }

    /// Answer the PINGREQs at the start of `rbuf` in place, unless they must wait behind held
    /// packets.
    fn answer_pings(&mut self, rbuf: &mut BytesMut) {
        while rbuf.starts_with(&PINGREQ) && !self.must_hold(&Packet::PingReq) {
            rbuf.advance(PINGREQ.len());
            self.ping();
        }
    }

    /// Write the PINGRESPs owed, now that the write buffer has room.
    fn pay_pings(&mut self) {
        let Some(rare) = &mut self.rare else { return };
        while rare.owed_pings > 0 && self.wbuf.len() < WRITE_HIGH_WATER {
            rare.owed_pings -= 1;
            let _ = switchyard_codec::encode(&Packet::PingResp, self.accepted.protocol, &mut self.wbuf);
        }
    }

    /// Not an `async fn`, whose future would hold the arguments twice (24 bytes more in every
    /// idle connection's task).
    #[expect(clippy::manual_async_fn, reason = "keeps the connection future small")]
    fn run<'a, S>(&'a mut self, stream: &'a mut S, rbuf: &'a mut BytesMut) -> impl Future<Output = Ending> + 'a
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        async move {
            // Packets the client sent together with CONNECT (boxed only when there are some: the
            // box is freed at once, and an idle connection's set-up allocates as little as it can).
            if !rbuf.is_empty()
                && let Err(ending) = Box::pin(self.decode_all(rbuf)).await
            {
                return ending;
            }
            if rbuf.is_empty() {
                *rbuf = BytesMut::new();
            }
            // Read size adapts: it doubles while reads fill the buffer and the buffer is released
            // whenever it is empty and reads are small, so an idle connection holds almost nothing:
            // without a buffer, the next small read goes through the stack.
            let mut read_size = MIN_READ;
            loop {
                // Close once everything before the close is written (the write buffer first: taking
                // the ending while packets wait would forget it).
                if self.wbuf.is_empty()
                    && let Some(ending) = self.closing.take()
                {
                    return *ending;
                }
                let unbuffered = rbuf.capacity() == 0 && read_size == MIN_READ;
                if !unbuffered && rbuf.capacity() - rbuf.len() < read_size / 2 {
                    rbuf.reserve(read_size);
                }
                let spare = if unbuffered { MIN_READ } else { rbuf.capacity() - rbuf.len() };
                // Wait for the first of, in this order: the outbox (its items unless the write
                // buffer is full or we are closing; its keep-alive flag always), a write (when there
                // is something to write), a read (unless closing). The outbox comes first so that
                // everything queued is encoded before the buffer is written: one socket write
                // carries all of it, up to the high-water mark. One stream serves both directions,
                // unsplit; an unbuffered read goes through the stack. Nothing else is waited on:
                // shutdown and keep-alive reach us through the outbox, so an idle connection keeps
                // no timer or signal future.
                let take = self.wbuf.len() < WRITE_HIGH_WATER && self.closing.is_none();
                let woke = {
                    let write = !self.wbuf.is_empty();
                    let read = self.closing.is_none() && !self.window_paused() && !self.answers_backed_up();
                    let (wbuf, outbox, stream, rbuf) = (&self.wbuf, &*self.outbox, &mut *stream, &mut *rbuf);
                    std::future::poll_fn(move |cx| {
                        if outbox.poll_ready(cx, take).is_ready() {
                            return Poll::Ready(Wake::Outbox);
                        }
                        if write && let Poll::Ready(written) = Pin::new(&mut *stream).poll_write(cx, wbuf) {
                            return Poll::Ready(Wake::Wrote(written));
                        }
                        if read && let Poll::Ready(read) = poll_read(stream, rbuf, unbuffered, cx) {
                            return Poll::Ready(Wake::Read(read));
                        }
                        Poll::Pending
                    })
                    .await
                };
                match woke {
                    Wake::Wrote(Ok(0) | Err(_)) => {
                        return Ending::lost("write failed");
                    }
                    Wake::Wrote(Ok(n)) => {
                        self.wbuf.advance(n);
                        self.pay_pings();
                        if self.wbuf.is_empty() {
                            let _ = stream.flush().await;
                            // Reclaim the written space, so capacity is the buffer's size; keep
                            // a mid-sized buffer for the next burst, free a huge one and a tiny
                            // one (an idle connection's last CONNACK or PINGRESP).
                            self.wbuf.reserve(1);
                            if !(MIN_KEPT_WRITE..=MAX_READ).contains(&self.wbuf.capacity()) {
                                self.wbuf = BytesMut::new();
                            }
                        }
                    }
                    Wake::Outbox => {
                        if self.outbox.take_silent() {
                            if !self.silence_is_ours() {
                                return Ending::error(reason::KEEP_ALIVE_TIMEOUT, "keep-alive timeout");
                            }
                            // We stopped reading, not the client speaking: that time is ours.
                            self.outbox.heard();
                        }
                        if take {
                            self.drain_outbox();
                            if self.rare.as_ref().is_some_and(|r| r.inflow.has_held())
                                && let Err(ending) = Box::pin(self.release_held()).await
                            {
                                return ending;
                            }
                        }
                    }
                    Wake::Read(Ok(0) | Err(_)) => {
                        return Ending::lost("connection lost");
                    }
                    Wake::Read(Ok(n)) => {
                        self.outbox.heard();
                        read_size = if n >= spare {
                            (read_size * 2).min(MAX_READ)
                        } else if n < read_size / 4 {
                            (read_size / 2).max(MIN_READ)
                        } else {
                            read_size
                        };
                        // An idle client's keep-alive PINGREQs are answered here; anything else is
                        // decoded in a box: the packet-handling state is not kept in an idle
                        // connection, and a ping allocates nothing.
                        self.answer_pings(rbuf);
                        if !rbuf.is_empty()
                            && let Err(ending) = Box::pin(self.decode_all(rbuf)).await
                        {
                            return ending;
                        }
                        if rbuf.is_empty() && read_size == MIN_READ {
                            *rbuf = BytesMut::new();
                        }
                    }
                }
            }
        }
    }

    /// Decode and handle every complete packet in `rbuf`. Consecutive PUBACKs go to the core
    /// as one event.
    async fn decode_all(&mut self, rbuf: &mut BytesMut) -> Result<(), Ending> {
        let max_in = self.broker.config().max_packet_size as usize;
        let mut acks = Vec::new();
        loop {
            // A subscriber's PUBACKs are most of what it sends: a bare one is read in place.
            if let Some(packet_id) = bare_puback(rbuf) {
                rbuf.advance(BARE_PUBACK_LEN);
                acks.push(packet_id);
                continue;
            }
            let before = rbuf.len();
            match switchyard_codec::decode(rbuf, Some(self.protocol()), max_in) {
                Ok(Some(packet)) if self.must_hold(&packet) => {
                    let size = before - rbuf.len();
                    self.rare.get_or_insert_default().inflow.hold(packet, size);
                }
                Ok(Some(Packet::PubAck(r))) => acks.push(r.packet_id),
                Ok(Some(packet)) => {
                    self.flush_acks(&mut acks).await?;
                    self.handle(packet).await?;
                }
                Ok(None) => return self.flush_acks(&mut acks).await,
                Err(e) => {
                    tracing::info!(client_id = %Escaped(&self.accepted.client_id), error = %e, "bad packet; closing");
                    // The acknowledgements before the bad packet still count.
                    self.flush_acks(&mut acks).await?;
                    return Err(Ending::error(e.reason_code(), "bad packet"));
                }
            }
        }
    }

    async fn flush_acks(&self, acks: &mut Vec<u16>) -> Result<(), Ending> {
        if acks.is_empty() {
            return Ok(());
        }
        let packet_ids = std::mem::take(acks);
        self.to_core(Event::PubAck { conn: self.conn, packet_ids }).await
    }

    async fn to_core(&self, event: Event) -> Result<(), Ending> {
        self.broker.send(event).await.map_err(|_| Ending::error(reason::SERVER_SHUTTING_DOWN, "core gone"))
    }

    async fn handle(&mut self, packet: Packet) -> Result<(), Ending> {
        let conn = self.conn;
        match packet {
            Packet::Publish(publish) => self.inbound_publish(publish).await,
            Packet::PubAck(r) => self.to_core(Event::PubAck { conn, packet_ids: vec![r.packet_id] }).await,
            Packet::PubRec(r) => self.to_core(Event::PubRec { conn, packet_id: r.packet_id }).await,
            Packet::PubRel(r) => self.to_core(Event::PubRel { conn, packet_id: r.packet_id }).await,
            Packet::PubComp(r) => self.to_core(Event::PubComp { conn, packet_id: r.packet_id }).await,
            Packet::Subscribe(subscribe) => {
                let mut allowed = Vec::with_capacity(subscribe.filters.len());
                for f in &subscribe.filters {
                    let shared = topic::parse_shared(&f.filter);
                    if shared.is_some() && f.options.no_local && self.protocol() == Protocol::V5 {
                        return Err(Ending::error(reason::PROTOCOL_ERROR, "no-local on a shared subscription"));
                    }
                    allowed.push(self.broker.auth().may_subscribe(&self.accepted.principal, &f.filter));
                }
                self.to_core(Event::Subscribe { conn, subscribe: Box::new(subscribe), allowed }).await
            }
            Packet::Unsubscribe(unsubscribe) => {
                self.to_core(Event::Unsubscribe { conn, unsubscribe: Box::new(unsubscribe) }).await
            }
            Packet::PingReq => {
                self.ping();
                Ok(())
            }
            Packet::Disconnect(d) => {
                let expiry = d.properties.session_expiry_interval;
                if expiry.is_some_and(|e| e > 0) && self.accepted.zero_expiry {
                    return Err(Ending::error(reason::PROTOCOL_ERROR, "session expiry raised at DISCONNECT"));
                }
                let will =
                    if d.reason == reason::DISCONNECT_WITH_WILL { WillAction::Publish } else { WillAction::Discard };
                Err(Ending { will, session_expiry: expiry, disconnect: None, why: "client disconnected" })
            }
            Packet::Connect(_) => Err(Ending::error(reason::PROTOCOL_ERROR, "second CONNECT")),
            Packet::Auth(_) => Err(Ending::error(reason::PROTOCOL_ERROR, "AUTH without an authentication method")),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Err(Ending::error(reason::PROTOCOL_ERROR, "server-only packet from a client"))
            }
        }
    }

    async fn inbound_publish(&mut self, mut publish: Publish) -> Result<(), Ending> {
        if !publish.properties.subscription_identifiers.is_empty() {
            return Err(Ending::error(reason::PROTOCOL_ERROR, "subscription identifier in a client PUBLISH"));
        }
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias > self.broker.config().topic_alias_maximum {
                return Err(Ending::error(reason::TOPIC_ALIAS_INVALID, "topic alias out of range"));
            }
            if publish.topic.is_empty() {
                match self.rare.as_ref().and_then(|a| a.inbound.get(&alias)) {
                    Some(name) => publish.topic.clone_from(name),
                    None => return Err(Ending::error(reason::PROTOCOL_ERROR, "unknown topic alias")),
                }
            } else {
                self.rare.get_or_insert_default().inbound.insert(alias, publish.topic.clone());
            }
        }
        let max_levels = self.broker.config().max_topic_levels;
        if !topic::valid_topic_name(&publish.topic) || !topic::levels_within(&publish.topic, max_levels) {
            return Err(Ending::error(reason::TOPIC_NAME_INVALID, "invalid topic name"));
        }
        // A 3.1.1 publish never exceeds the window here: it was held until there was room.
        if publish.qos != QoS::AtMostOnce
            && !self.rare.get_or_insert_default().inflow.admit(publish.packet_id, self.broker.config().receive_maximum)
        {
            return Err(Ending::error(reason::RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded"));
        }
        let sys = publish.topic == "$SYS" || publish.topic.starts_with("$SYS/");
        if sys || !self.broker.auth().may_publish(&self.accepted.principal, &publish.topic) {
            tracing::info!(client_id = %Escaped(&self.accepted.client_id), topic = %Escaped(&publish.topic), "publish not authorized; closing");
            return Err(Ending::error(reason::NOT_AUTHORIZED, "publish not authorized"));
        }
        // The pipeline: data is validated and normalized here, in the connection's task, and
        // stored by the core in the commit that acknowledges it.
        let principal = &self.accepted.principal;
        let data = match self.broker.intake().intake(principal, &publish.topic, &publish.payload, now_ms()) {
            Intake::Pass => Vec::new(),
            Intake::Store { payload, data } => {
                publish.payload = payload;
                data
            }
            Intake::Refuse { reason, detail } => {
                self.broker.stats().data_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    client_id = %Escaped(&self.accepted.client_id),
                    topic = %Escaped(&publish.topic),
                    detail = %Escaped(&detail),
                    "invalid data refused",
                );
                if publish.qos == QoS::AtMostOnce {
                    return Ok(());
                }
                let (qos, packet_id) = (publish.qos, publish.packet_id);
                return self.to_core(Event::Refused { conn: self.conn, qos, packet_id, reason, detail }).await;
            }
        };
        self.to_core(Event::Publish { conn: self.conn, publish: Box::new(publish), data }).await
    }

    /// Tell the core, send the final DISCONNECT (5.0) and flush, within a deadline.
    async fn finish<S>(&mut self, stream: &mut S, ending: Ending)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tracing::debug!(client_id = %Escaped(&self.accepted.client_id), why = ending.why, "connection ending");
        let _ = self
            .broker
            .send(Event::Disconnected { conn: self.conn, will: ending.will, session_expiry: ending.session_expiry })
            .await;
        if let Some(code) = ending.disconnect
            && self.protocol() == Protocol::V5
        {
            let properties = Properties { reason_string: Some(ending.why.to_owned()), ..Properties::default() };
            let packet = Packet::Disconnect(Disconnect { reason: code, properties });
            let _ = switchyard_codec::encode(&packet, Protocol::V5, &mut self.wbuf);
        }
        let flush = async {
            stream.write_all(&self.wbuf).await?;
            stream.shutdown().await
        };
        let _ = tokio::time::timeout(CLOSE_FLUSH, flush).await;
        linger(stream).await;
    }
}
