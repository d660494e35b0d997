//! A deliberately small MQTT client on our codec: one TCP stream, one input and one output
//! buffer, no background task. The scenario loops drive it directly, so a read, the decoding of
//! everything that arrived and one write of every answer form a single step, and the load tool
//! stays cheap enough to share two cores with the broker it measures.
//!
//! Publishing does not build a packet per message: [`PublishTemplate`] encodes one PUBLISH with
//! the codec and then patches the packet identifier and the timestamp in a copy of its bytes.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchyard_codec::{
    Connect, DecodeError, Disconnect, EncodeError, Packet, Properties, Protocol, PubResp, Publish, QoS, SubOptions,
    Subscribe, SubscribeFilter,
};
use switchyard_identity::{Domain, MasterKey, ResourceId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::BenchError;

/// How long setup steps (CONNACK, SUBACK) may take before the run is abandoned.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest packet accepted from the broker: the protocol's own limit.
const MAX_PACKET: usize = 268_435_460;
/// Filters sent in one SUBSCRIBE.
const FILTERS_PER_SUBSCRIBE: usize = 100;
/// Free space kept in the input buffer before each read.
const READ_SPACE: usize = 64 * 1024;

/// What every CONNECT of a run presents.
#[derive(Clone)]
pub enum Credentials {
    /// A fixed user name and password; `{i}` in either is replaced by the client's index, so
    /// per-client credentials can be generated from one pattern.
    Password { username: String, password: Option<String> },
    /// Devices of a tenant (SPEC §2.2): user name `{domain}/{client id}`, password the device key
    /// derived from the tenant's master key for that resource id.
    DeviceKey { domain: Domain, master: MasterKey },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { username, .. } => {
                f.debug_struct("Password").field("username", username).finish_non_exhaustive()
            }
            Credentials::DeviceKey { domain, .. } => {
                f.debug_struct("DeviceKey").field("domain", domain).finish_non_exhaustive()
            }
        }
    }
}

impl Credentials {
    /// How clients authenticate, for the report.
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::Password { .. } => "password",
            Credentials::DeviceKey { .. } => "device-key",
        }
    }

    /// User name and password of client `index`, whose client identifier is `client_id`.
    fn for_client(&self, index: usize, client_id: &str) -> Result<(String, Option<Bytes>), BenchError> {
        match self {
            Credentials::Password { username, password } => {
                let index = index.to_string();
                let username = username.replace("{i}", &index);
                let password = password.as_ref().map(|p| Bytes::from(p.replace("{i}", &index)));
                Ok((username, password))
            }
            Credentials::DeviceKey { domain, master } => {
                let resource = ResourceId::parse(client_id)
                    .map_err(|e| BenchError::Options(format!("client id {client_id:?} is no resource id: {e}")))?;
                let key = master.derive_device_key(&resource).expose_base64();
                Ok((format!("{domain}/{client_id}"), Some(Bytes::from(key))))
            }
        }
    }
}

/// What goes into one CONNECT.
#[derive(Debug, Clone)]
pub struct Session<'a> {
    pub client_id: String,
    /// Keep the session (clean start off) with this expiry in seconds (ignored by 3.1.1, where
    /// the session simply stays).
    pub persistent: Option<u32>,
    pub keep_alive: u16,
    pub credentials: Option<&'a Credentials>,
    /// Index substituted for `{i}` in password credentials.
    pub index: usize,
}

/// One connection to the broker.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    input: BytesMut,
    output: BytesMut,
    protocol: Protocol,
    addr: SocketAddr,
    client_id: String,
    persistent: bool,
    /// The server's receive maximum (5.0 CONNACK; 65535 when absent, and always under 3.1.1).
    receive_maximum: u16,
}

impl Conn {
    /// Open a TCP connection, send CONNECT and wait for a successful CONNACK.
    /// The whole handshake, TCP included, must finish within [`SETUP_TIMEOUT`].
    pub async fn connect(addr: SocketAddr, protocol: Protocol, session: &Session<'_>) -> Result<Conn, BenchError> {
        tokio::time::timeout(SETUP_TIMEOUT, Conn::handshake(addr, protocol, session))
            .await
            .map_err(|_| BenchError::Timeout(SETUP_TIMEOUT, "CONNECT"))?
    }

    async fn handshake(addr: SocketAddr, protocol: Protocol, session: &Session<'_>) -> Result<Conn, BenchError> {
        let stream = TcpStream::connect(addr).await.map_err(|e| BenchError::io("connecting to the broker", e))?;
        stream.set_nodelay(true).map_err(|e| BenchError::io("setting TCP_NODELAY", e))?;
        let mut conn = Conn {
            stream,
            input: BytesMut::with_capacity(4096),
            output: BytesMut::with_capacity(4096),
            protocol,
            addr,
            client_id: session.client_id.clone(),
            persistent: session.persistent.is_some(),
            receive_maximum: u16::MAX,
        };
        let (username, password) = match session.credentials {
            Some(c) => {
                let (u, p) = c.for_client(session.index, &session.client_id)?;
                (Some(u), p)
            }
            None => (None, None),
        };
        let mut properties = Properties::default();
        if protocol == Protocol::V5 {
            properties.session_expiry_interval = session.persistent;
        }
        let connect = Connect {
            protocol,
            clean_start: session.persistent.is_none(),
            keep_alive: session.keep_alive,
            client_id: session.client_id.clone(),
            will: None,
            username,
            password,
            properties,
        };
        conn.queue(&Packet::Connect(Box::new(connect)))?;
        conn.flush().await.map_err(|e| BenchError::io("sending CONNECT", e))?;
        match conn.expect(SETUP_TIMEOUT, "CONNECT").await? {
            Packet::ConnAck(ack) if ack.code == 0 => {
                conn.receive_maximum = ack.properties.receive_maximum.unwrap_or(u16::MAX);
                Ok(conn)
            }
            Packet::ConnAck(ack) => Err(BenchError::Refused(ack.code)),
            _ => Err(BenchError::Unexpected("CONNECT")),
        }
    }

    /// QoS 1/2 publishes the server accepts unacknowledged: a 5.0 server's receive maximum;
    /// 3.1.1 has none, and the server slows the client instead.
    pub fn receive_maximum(&self) -> u16 {
        self.receive_maximum
    }

    /// Subscribe to every filter at `qos`, in batches, and check every SUBACK.
    pub async fn subscribe(&mut self, filters: &[String], qos: QoS) -> Result<(), BenchError> {
        for (batch, chunk) in filters.chunks(FILTERS_PER_SUBSCRIBE).enumerate() {
            let packet_id = u16::try_from(batch % usize::from(u16::MAX) + 1).unwrap_or(1);
            let options = SubOptions { qos, ..SubOptions::default() };
            let filters = chunk.iter().map(|f| SubscribeFilter { filter: f.clone(), options }).collect();
            self.queue(&Packet::Subscribe(Subscribe { packet_id, filters, properties: Properties::default() }))?;
            self.flush().await.map_err(|e| BenchError::io("sending SUBSCRIBE", e))?;
            let Packet::SubAck(ack) = self.expect(SETUP_TIMEOUT, "SUBSCRIBE").await? else {
                return Err(BenchError::Unexpected("SUBSCRIBE"));
            };
            if let Some((filter, &code)) = chunk.iter().zip(&ack.reasons).find(|(_, code)| **code >= 0x80) {
                return Err(BenchError::SubscribeRefused { filter: filter.clone(), code });
            }
        }
        Ok(())
    }

    /// Read the next packet, waiting at most `within`.
    pub async fn expect(&mut self, within: Duration, what: &'static str) -> Result<Packet, BenchError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(packet) = self.next_packet()? {
                return Ok(packet);
            }
            match tokio::time::timeout_at(deadline, self.read_more()).await {
                Err(_) => return Err(BenchError::Timeout(within, what)),
                Ok(Ok(0)) => return Err(BenchError::Closed(what)),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(BenchError::io("reading from the broker", e)),
            }
        }
    }

    /// Read whatever the socket has into the input buffer; `Ok(0)` means the broker closed.
    /// Cancel-safe, so it can sit in a `select!`.
    pub async fn read_more(&mut self) -> std::io::Result<usize> {
        if self.input.capacity() - self.input.len() < READ_SPACE / 4 {
            self.input.reserve(READ_SPACE);
        }
        self.stream.read_buf(&mut self.input).await
    }

    /// The next complete packet already read, if any.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, DecodeError> {
        switchyard_codec::decode(&mut self.input, Some(self.protocol), MAX_PACKET)
    }

    /// Encode a packet into the output buffer (sent by the next [`Conn::flush`]).
    pub fn queue(&mut self, packet: &Packet) -> Result<(), EncodeError> {
        switchyard_codec::encode(packet, self.protocol, &mut self.output)
    }

    /// The output buffer, for [`PublishTemplate::write`].
    pub fn output(&mut self) -> &mut BytesMut {
        &mut self.output
    }

    /// True when something is waiting in the output buffer.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Write the output buffer to the socket.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output).await?;
            self.output.clear();
        }
        Ok(())
    }

    /// Send PINGREQ and wait for PINGRESP; false when the connection is gone or silent.
    pub async fn ping(&mut self, within: Duration) -> bool {
        if self.queue(&Packet::PingReq).is_err() || self.flush().await.is_err() {
            return false;
        }
        loop {
            match self.expect(within, "PINGREQ").await {
                Ok(Packet::PingResp) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// Send DISCONNECT and wait (briefly) for the broker to close, so the broker side holds the
    /// TIME_WAIT and fast reconnect loops do not run out of local ports. A persistent session is
    /// discarded, so benchmark runs leave nothing behind: 5.0 sets its expiry to zero, 3.1.1
    /// connects once more with a clean session.
    pub async fn close(mut self) {
        let mut disconnect = Disconnect::default();
        let discard = self.persistent;
        if discard && self.protocol == Protocol::V5 {
            disconnect.properties.session_expiry_interval = Some(0);
        }
        self.output.clear();
        if self.queue(&Packet::Disconnect(disconnect)).is_err() || self.flush().await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let mut sink = [0u8; 4096];
            while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        if discard && self.protocol == Protocol::V311 {
            let clean = Session {
                client_id: self.client_id.clone(),
                persistent: None,
                keep_alive: 10,
                credentials: None,
                index: 0,
            };
            if let Ok(conn) = Box::pin(Conn::connect(self.addr, self.protocol, &clean)).await {
                Box::pin(conn.close()).await;
            }
        }
    }
}

/// A PUBLISH encoded once; each message is a copy with its packet identifier and timestamp set.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    bytes: Bytes,
    id_at: Option<usize>,
    stamp_at: usize,
}

/// Bytes at the start of every payload: the publish time in nanoseconds since the run's origin.
pub const STAMP_LEN: usize = 8;

impl PublishTemplate {
    /// Encode a PUBLISH of `payload_len` bytes (at least [`STAMP_LEN`]) to `topic`.
    pub fn new(topic: &str, qos: QoS, payload_len: usize, protocol: Protocol) -> Result<PublishTemplate, EncodeError> {
        let payload_len = payload_len.max(STAMP_LEN);
        let publish = Publish {
            qos,
            topic: topic.to_owned(),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
            payload: Bytes::from(vec![b'x'; payload_len]),
            ..Publish::default()
        };
        let mut out = BytesMut::new();
        switchyard_codec::encode(&Packet::Publish(publish), protocol, &mut out)?;
        let stamp_at = out.len() - payload_len;
        // Between the packet identifier and the payload: an empty property block (one byte) in 5.0.
        let properties = if protocol == Protocol::V5 { 1 } else { 0 };
        let id_at = (qos != QoS::AtMostOnce).then(|| stamp_at - properties - 2);
        Ok(PublishTemplate { bytes: out.freeze(), id_at, stamp_at })
    }

    /// Append one message to `out`.
    pub fn write(&self, out: &mut BytesMut, packet_id: u16, stamp_ns: u64) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        if let Some(at) = self.id_at {
            out[start + at..start + at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        let at = start + self.stamp_at;
        out[at..at + STAMP_LEN].copy_from_slice(&stamp_ns.to_be_bytes());
    }
}

/// Success acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP), encoded once per connection;
/// each answer is a copy with its packet identifier set.
#[derive(Debug, Clone)]
pub struct Acks {
    encoded: [Bytes; 4],
}

/// Which acknowledgement [`Acks::write`] appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// PUBACK.
    Ack = 0,
    /// PUBREC.
    Rec = 1,
    /// PUBREL.
    Rel = 2,
    /// PUBCOMP.
    Comp = 3,
}

/// Where the packet identifier sits in a success acknowledgement: after the packet type and the
/// one-byte remaining length.
const ACK_ID_AT: usize = 2;

impl Acks {
    /// Encode the four acknowledgements in `protocol`.
    pub fn new(protocol: Protocol) -> Result<Acks, EncodeError> {
        let one = |packet: fn(PubResp) -> Packet| -> Result<Bytes, EncodeError> {
            let mut out = BytesMut::new();
            switchyard_codec::encode(&packet(PubResp::new(1)), protocol, &mut out)?;
            Ok(out.freeze())
        };
        Ok(Acks { encoded: [one(Packet::PubAck)?, one(Packet::PubRec)?, one(Packet::PubRel)?, one(Packet::PubComp)?] })
    }

    /// Append one acknowledgement of `packet_id` to `out`.
    pub fn write(&self, out: &mut BytesMut, ack: AckKind, packet_id: u16) {
        let start = out.len();
        out.extend_from_slice(&self.encoded[ack as usize]);
        out[start + ACK_ID_AT..start + ACK_ID_AT + 2].copy_from_slice(&packet_id.to_be_bytes());
    }
}

/// The publish time carried by a payload, if it is long enough to carry one.
pub fn stamp(payload: &[u8]) -> Option<u64> {
    let bytes: [u8; STAMP_LEN] = payload.get(..STAMP_LEN)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Packet identifiers in use by one publisher. Taking one never returns an identifier still
/// waiting for its acknowledgement; the caller keeps fewer than 65,535 in flight.
#[derive(Debug)]
pub struct PacketIds {
    used: Vec<u64>,
    next: u16,
    in_use: usize,
}

impl Default for PacketIds {
    fn default() -> Self {
        PacketIds { used: vec![0; 1024], next: 1, in_use: 0 }
    }
}

impl PacketIds {
    /// A free identifier, now marked in use.
    pub fn take(&mut self) -> u16 {
        debug_assert!(self.in_use < usize::from(u16::MAX));
        loop {
            let id = self.next;
            self.next = if id == u16::MAX { 1 } else { id + 1 };
            let (word, bit) = (usize::from(id) / 64, id % 64);
            if self.used[word] & (1 << bit) == 0 {
                self.used[word] |= 1 << bit;
                self.in_use += 1;
                return id;
            }
        }
    }

    /// Free `id`; false when it was not in use (a duplicate or unknown acknowledgement).
    pub fn release(&mut self, id: u16) -> bool {
        let (word, bit) = (usize::from(id) / 64, id % 64);
        let was = self.used[word] & (1 << bit) != 0;
        self.used[word] &= !(1 << bit);
        if was {
            self.in_use -= 1;
        }
        was
    }

    /// Identifiers waiting for an acknowledgement.
    pub fn in_use(&self) -> usize {
        self.in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(protocol: Protocol, qos: QoS, payload: usize) {
        let template = PublishTemplate::new("bench/a/b", qos, payload, protocol).unwrap();
        let mut out = BytesMut::new();
        template.write(&mut out, 4242, 0x0102_0304_0506_0708);
        template.write(&mut out, 7, 99);
        let first = switchyard_codec::decode(&mut out, Some(protocol), MAX_PACKET).unwrap().unwrap();
        let second = switchyard_codec::decode(&mut out, Some(protocol), MAX_PACKET).unwrap().unwrap();
        for (packet, id, ts) in [(first, 4242, 0x0102_0304_0506_0708), (second, 7, 99)] {
            let Packet::Publish(p) = packet else { panic!("not a PUBLISH") };
            assert_eq!(p.topic, "bench/a/b");
            assert_eq!(p.qos, qos);
            assert_eq!(p.packet_id, if qos == QoS::AtMostOnce { 0 } else { id });
            assert_eq!(p.payload.len(), payload.max(STAMP_LEN));
            assert_eq!(stamp(&p.payload), Some(ts));
        }
        assert!(out.is_empty());
    }

    #[test]
    fn templates_patch_the_right_bytes() {
        for protocol in [Protocol::V311, Protocol::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for payload in [0, 8, 100, 200_000] {
                    check(protocol, qos, payload);
                }
            }
        }
    }

    #[test]
    fn acks_patch_the_identifier() {
        for protocol in [Protocol::V311, Protocol::V5] {
            let acks = Acks::new(protocol).unwrap();
            let mut out = BytesMut::new();
            for (ack, id) in [(AckKind::Ack, 513), (AckKind::Rec, 2), (AckKind::Rel, 65535), (AckKind::Comp, 9)] {
                acks.write(&mut out, ack, id);
            }
            let mut next = || switchyard_codec::decode(&mut out, Some(protocol), MAX_PACKET).unwrap().unwrap();
            assert_eq!(next(), Packet::PubAck(PubResp::new(513)));
            assert_eq!(next(), Packet::PubRec(PubResp::new(2)));
            assert_eq!(next(), Packet::PubRel(PubResp::new(65535)));
            assert_eq!(next(), Packet::PubComp(PubResp::new(9)));
        }
    }

    #[test]
    fn packet_ids_skip_those_in_flight() {
        let mut ids = PacketIds::default();
        let held = ids.take();
        assert_eq!(held, 1);
        for _ in 0..u16::MAX - 1 {
            let id = ids.take();
            assert!(ids.release(id));
        }
        // Wrapped around: 1 is still in flight, so 2 comes next.
        assert_eq!(ids.take(), 2);
        assert!(ids.release(held));
        assert!(!ids.release(held));
        assert_eq!(ids.in_use(), 1);
    }

    #[test]
    fn credentials_substitute_the_index() {
        let c = Credentials::Password { username: "dev-{i}".into(), password: Some("key-{i}".into()) };
        assert_eq!(c.for_client(7, "x").unwrap(), ("dev-7".into(), Some(Bytes::from("key-7"))));
        assert!(!format!("{c:?}").contains("key"));
    }

    #[test]
    fn device_credentials_derive_the_key_of_the_client_id() {
        let master = MasterKey::generate().unwrap();
        let expected = master.derive_device_key(&ResourceId::parse("sb1p0").unwrap()).expose_base64();
        let c = Credentials::DeviceKey { domain: Domain::parse("a.example").unwrap(), master };
        assert_eq!(c.for_client(0, "sb1p0").unwrap(), ("a.example/sb1p0".into(), Some(Bytes::from(expected))));
        assert!(c.for_client(0, "no/slash").is_err());
        assert!(!format!("{c:?}").contains("master"));
    }
}
