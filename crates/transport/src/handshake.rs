//! The CONNECT phase of a connection: read CONNECT under the connect timeout, assign a client id,
//! authenticate, negotiate limits, and hand the session request to the core.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use switchyard_broker::auth::ConnectCredentials;
use switchyard_broker::{Broker, ConnectRequest, Escaped, Outbox, Principal};
use switchyard_codec::{ConnAck, Connect, DecodeError, Packet, Properties, Protocol, reason, topic};
use switchyard_identity::ClientCertificate;
use tokio::io::{AsyncRead, AsyncReadExt};

/// What the connection learned from a successful CONNECT.
#[derive(Debug)]
pub struct Accepted {
    pub protocol: Protocol,
    /// Behind a pointer: every idle connection carries it.
    pub principal: Arc<Principal>,
    pub client_id: Arc<str>,
    /// Effective keep-alive in seconds (0: none).
    pub keep_alive: u16,
    /// Topic aliases the client accepts from us (5.0).
    pub client_alias_max: u16,
    /// Whether the session expiry at CONNECT was zero (5.0 forbids raising it at DISCONNECT).
    pub zero_expiry: bool,
}

/// How the CONNECT phase failed.
#[derive(Debug)]
pub enum Refused {
    /// Reply with this CONNACK, then close.
    ConnAck(Protocol, u8),
    /// Close without a reply (unreadable input, timeout, peer gone).
    Close(&'static str),
}

/// Read the first packet; it must be CONNECT.
pub async fn read_connect<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max_packet_size: usize,
) -> Result<Box<Connect>, Refused> {
    loop {
        match switchyard_codec::decode(buf, None, max_packet_size) {
            Ok(Some(Packet::Connect(connect))) => return Ok(connect),
            Ok(Some(_)) => return Err(Refused::Close("first packet is not CONNECT")),
            Ok(None) => {}
            Err(DecodeError::UnsupportedProtocolVersion(_)) => {
                return Err(Refused::ConnAck(Protocol::V311, reason::v311::UNACCEPTABLE_PROTOCOL_VERSION));
            }
            Err(_) => return Err(Refused::Close("malformed CONNECT")),
        }
        buf.reserve(256);
        match reader.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(Refused::Close("closed before CONNECT")),
            Ok(_) => {}
        }
    }
}

/// Authenticate and negotiate; on success the core has been asked to attach the session.
pub async fn accept(
    broker: &Broker,
    conn: u64,
    mut connect: Box<Connect>,
    peer: Option<SocketAddr>,
    client_cert: Option<&ClientCertificate>,
    outbox: &Arc<Outbox>,
) -> Result<Accepted, Refused> {
    let cfg = broker.config();
    let protocol = connect.protocol;
    let refuse = |code: u8| {
        let code = match protocol {
            Protocol::V5 => code,
            Protocol::V311 => reason::connack_v311(code),
        };
        Refused::ConnAck(protocol, code)
    };
    if connect.properties.authentication_method.is_some() {
        return Err(refuse(reason::BAD_AUTHENTICATION_METHOD));
    }
    let mut assigned = None;
    if connect.client_id.is_empty() {
        if protocol == Protocol::V311 && !connect.clean_start {
            return Err(refuse(reason::CLIENT_IDENTIFIER_NOT_VALID));
        }
        let id = format!("auto-{conn:x}-{:x}", switchyard_broker::now_ms());
        assigned = Some(id.clone());
        connect.client_id = id;
    }
    let credentials = ConnectCredentials {
        client_id: &connect.client_id,
        username: connect.username.as_deref(),
        password: connect.password.as_ref().map(|p: &Bytes| p),
        peer,
        client_cert,
    };
    let principal = match broker.auth().authenticate(credentials).await {
        Ok(p) => p,
        Err(refusal) => {
            tracing::info!(client_id = %Escaped(&connect.client_id), ?peer, code = refusal.0, "connection refused by authentication");
            return Err(refuse(refusal.0));
        }
    };
    if let Some(will) = &connect.will {
        if !topic::levels_within(&will.topic, cfg.max_topic_levels) {
            return Err(refuse(reason::TOPIC_NAME_INVALID));
        }
        if !topic::valid_topic_name(&will.topic) || !broker.auth().may_publish(&principal, &will.topic) {
            return Err(refuse(reason::NOT_AUTHORIZED));
        }
    }

    let requested = connect.keep_alive;
    let keep_alive = match cfg.server_keep_alive {
        0 => requested,
        cap if requested == 0 || requested > cap => cap,
        _ => requested,
    };
    let props = &connect.properties;
    let mut connack_properties = Properties::default();
    if protocol == Protocol::V5 {
        connack_properties.receive_maximum = Some(cfg.receive_maximum);
        connack_properties.maximum_packet_size = Some(cfg.max_packet_size);
        connack_properties.topic_alias_maximum = Some(cfg.topic_alias_maximum);
        connack_properties.assigned_client_identifier = assigned;
        if keep_alive != requested || cfg.server_keep_alive != 0 {
            connack_properties.server_keep_alive = Some(keep_alive);
        }
    }
    let client_id = Arc::<str>::from(connect.client_id.as_str());
    let accepted = Accepted {
        protocol,
        principal: principal.clone().shared(),
        client_id: Arc::clone(&client_id),
        keep_alive,
        client_alias_max: props.topic_alias_maximum.unwrap_or(0),
        zero_expiry: props.session_expiry_interval.unwrap_or(0) == 0,
    };
    let request = ConnectRequest {
        conn,
        principal,
        client_receive_maximum: props.receive_maximum.unwrap_or(u16::MAX),
        client_max_packet_size: props.maximum_packet_size.unwrap_or(u32::MAX),
        connect,
        client_id,
        outbox: Arc::clone(outbox),
        connack_properties,
    };
    broker
        .send(switchyard_broker::Event::Connect(Box::new(request)))
        .await
        .map_err(|_| refuse(reason::SERVER_UNAVAILABLE))?;
    Ok(accepted)
}

/// The CONNACK that carries a refusal.
pub fn refusal_connack(code: u8) -> Packet {
    Packet::ConnAck(ConnAck { session_present: false, code, properties: Properties::default() })
}
