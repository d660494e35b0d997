//! The data WebSockets (SPEC §5): live streams out and messages in, for browsers and other
//! clients that would rather not speak MQTT.
//!
//! - `GET /resources/{id}/{events|commands}/subscribe`: every message of that stream as a commit
//!   makes it durable, one text frame each: `{"type":"message","seq":n,"resource":id,
//!   "channel":c,"message":{...}}` (`seq`: the per-resource sequence the message cache serves
//!   too). **Slow readers** are told what they missed: the broker's listener keeps a bounded
//!   queue ([`LISTENER_QUEUE`] messages by default) for each socket and drops what does not fit, and the
//!   socket then gets `{"type":"missed","count":n}` before the next messages; intake and other
//!   listeners never wait for it.
//! - `GET /resources/{id}/{events|commands}/publish` and `GET /socket`: messages in
//!   ([`crate::ws_publish`]).
//!
//! **Credentials** are checked before the upgrade (401 missing or wrong, 403 not allowed, 429
//! throttled), as on every route: `Authorization: Basic apiKey:apiSecret` or `Bearer <device
//! token>`, or, for browsers that cannot set headers, `?apiKey=…&apiSecret=…` or `?token=…` in
//! the URL (never logged: no request line is). An application reaches every resource of its
//! tenant; a device token may only publish its own events and subscribe to its own commands.
//! At most `[http] max_websockets` of these sockets are open at once (503 beyond); `/mqtt` has
//! its own limit.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use switchyard_broker::{Heard, Scope};
use switchyard_identity::topic::Channel;
use switchyard_identity::{Credentials, Identity, parse_authorization, parse_query};
use switchyard_pipeline::Options;
use switchyard_storage::data;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ApiState;
use crate::auth::{DataAuth, authenticate};
use crate::data::path_id;
use crate::error::ApiError;
use crate::ws_publish::{Publisher, Target};

/// Messages a subscribe socket's listener queues by default.
pub const LISTENER_QUEUE: usize = 1024;
/// Largest frame a subscribe socket reads (it expects none but pings and close).
const MAX_SUBSCRIBER_FRAME: usize = 4096;

/// Bounds of the data WebSockets.
#[derive(Debug, Clone)]
pub struct WsLimits {
    /// One permit per open data WebSocket (`[http] max_websockets`).
    pub connections: Arc<Semaphore>,
    /// Messages a subscribe socket's listener queues before it counts the rest as missed.
    pub listener_queue: usize,
}

impl WsLimits {
    /// Limits allowing `max_connections` open data WebSockets, [`LISTENER_QUEUE`] each.
    pub fn new(max_connections: usize) -> WsLimits {
        WsLimits { connections: Arc::new(Semaphore::new(max_connections)), listener_queue: LISTENER_QUEUE }
    }
}

impl Default for WsLimits {
    fn default() -> WsLimits {
        WsLimits::new(10_000)
    }
}

/// The WebSocket routes.
pub fn routes() -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/resources/{id}/events/subscribe", get(events_subscribe))
        .route("/resources/{id}/commands/subscribe", get(commands_subscribe))
        .route("/resources/{id}/events/publish", get(events_publish))
        .route("/resources/{id}/commands/publish", get(commands_publish))
        .route("/socket", get(socket))
}

/// The caller of a data WebSocket: its `Authorization` header or, without one, the URL's
/// `apiKey`/`apiSecret` or `token`.
#[derive(Debug)]
pub struct WsAuth(pub DataAuth);

impl FromRequestParts<ApiState> for WsAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let presented = match (parts.headers.get(AUTHORIZATION), parse_query(query)) {
            (Some(_), Ok(Some(_))) => {
                return Err(ApiError::bad_request("credentials both in the header and in the URL", vec![]));
            }
            (Some(value), _) => match value.to_str() {
                Ok(text) => parse_authorization(text),
                Err(_) => return Err(ApiError::Unauthorized),
            },
            (None, Ok(found)) => Ok(found.unwrap_or(Credentials::Anonymous)),
            (None, Err(e)) => Err(e),
        };
        match authenticate(parts, state, presented, "ws").await? {
            Identity::Application(app) => Ok(WsAuth(DataAuth::App(app))),
            Identity::Device(device) => Ok(WsAuth(DataAuth::Device(device))),
            _ => Err(ApiError::Forbidden("data WebSockets need an API key or a device token".into())),
        }
    }
}

/// What a socket needs before it is upgraded: a permit under the socket limit and the
/// upgrade itself (a request that is no WebSocket handshake is 400).
fn upgrade(state: &ApiState, ws: Upgrade) -> Result<(WebSocketUpgrade, OwnedSemaphorePermit), ApiError> {
    let ws = ws.map_err(|r| ApiError::bad_request("a WebSocket upgrade is expected", vec![r.body_text()]))?;
    let Ok(permit) = Arc::clone(&state.ws.connections).try_acquire_owned() else {
        tracing::warn!("data WebSocket limit reached; upgrade refused");
        return Err(ApiError::Unavailable);
    };
    Ok((ws, permit))
}

type Upgrade = Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

/// Live events of resource `id` (an API key).
async fn events_subscribe(
    WsAuth(caller): WsAuth,
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    ws: Upgrade,
) -> Result<Response, ApiError> {
    subscribe(caller, state, id, ws, Channel::Events)
}

/// Live commands of resource `id` (an API key, or the device's own token).
async fn commands_subscribe(
    WsAuth(caller): WsAuth,
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    ws: Upgrade,
) -> Result<Response, ApiError> {
    subscribe(caller, state, id, ws, Channel::Commands)
}

fn subscribe(
    caller: DataAuth,
    state: ApiState,
    id: Result<Path<String>, PathRejection>,
    ws: Upgrade,
    channel: Channel,
) -> Result<Response, ApiError> {
    let resource = path_id(id)?;
    let key = match (&caller, channel) {
        (DataAuth::Device(_), Channel::Events) => {
            return Err(ApiError::Forbidden("a device may subscribe only to its own commands".into()));
        }
        _ => caller.read(&resource)?,
    };
    let (ws, permit) = upgrade(&state, ws)?;
    let scope = Scope::Resource { resource: key, channel: storage_channel(channel) };
    // Registered before the answer, so nothing committed after the 101 is missed.
    let listener = state.broker.listen(scope, state.ws.listener_queue);
    let tasks = state.tasks.clone();
    Ok(ws.max_message_size(MAX_SUBSCRIBER_FRAME).max_frame_size(MAX_SUBSCRIBER_FRAME).on_upgrade(move |socket| {
        tasks.track_future(async move {
            stream(socket, listener, channel, state).await;
            drop(permit);
        })
    }))
}

/// Forward what `listener` hears to the socket until either side ends.
async fn stream(socket: WebSocket, mut listener: switchyard_broker::Listener, channel: Channel, state: ApiState) {
    let (mut tx, mut rx) = socket.split();
    let close = loop {
        let frame = tokio::select! {
            heard = listener.recv() => match heard {
                Some(Heard::Message(m)) => message_frame(&m.resource.resource, channel, m.seq, &m.body),
                Some(Heard::Missed(n)) => format!(r#"{{"type":"missed","count":{n}}}"#),
                None => break CloseFrame { code: close_code::AWAY, reason: "stream ended".into() },
            },
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
            () = state.shutdown.cancelled() => {
                break CloseFrame { code: close_code::AWAY, reason: "server shutting down".into() };
            }
        };
        if tx.send(Message::Text(frame.into())).await.is_err() {
            return;
        }
    };
    let _ = tx.send(Message::Close(Some(close))).await;
}

/// A message frame; `body` is the stored JSON, written in as it is.
fn message_frame(resource: &str, channel: Channel, seq: u64, body: &[u8]) -> String {
    let resource = serde_json::to_string(resource).unwrap_or_default();
    let body = std::str::from_utf8(body).unwrap_or("null");
    format!(
        r#"{{"type":"message","seq":{seq},"resource":{resource},"channel":"{}","message":{body}}}"#,
        channel.as_str()
    )
}

fn storage_channel(channel: Channel) -> data::Channel {
    match channel {
        Channel::Events => data::Channel::Events,
        Channel::Commands => data::Channel::Commands,
    }
}

/// Events of resource `id` in (an API key, or the device's own token).
async fn events_publish(
    WsAuth(caller): WsAuth,
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    ws: Upgrade,
) -> Result<Response, ApiError> {
    let resource = path_id(id)?;
    publish(caller, state, Target::Resource(resource, Channel::Events), query, ws)
}

/// Commands to resource `id` (an API key).
async fn commands_publish(
    WsAuth(caller): WsAuth,
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    ws: Upgrade,
) -> Result<Response, ApiError> {
    let resource = path_id(id)?;
    publish(caller, state, Target::Resource(resource, Channel::Commands), query, ws)
}

/// Messages of any resource in, each naming its `resource` and optionally `"channel"`.
async fn socket(
    WsAuth(caller): WsAuth,
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
    ws: Upgrade,
) -> Result<Response, ApiError> {
    publish(caller, state, Target::Socket, query, ws)
}

fn publish(
    caller: DataAuth,
    state: ApiState,
    target: Target,
    query: Option<String>,
    ws: Upgrade,
) -> Result<Response, ApiError> {
    let domain = match (&caller, &target) {
        (DataAuth::App(app), _) => app.domain.clone(),
        (DataAuth::Device(d), Target::Resource(r, Channel::Events)) if *r == d.resource => d.domain.clone(),
        (DataAuth::Device(_), Target::Resource(_, Channel::Events)) => {
            return Err(ApiError::Forbidden("a device may send only its own events".into()));
        }
        (DataAuth::Device(_), Target::Resource(_, Channel::Commands)) => {
            return Err(ApiError::Forbidden("sending commands needs an API key".into()));
        }
        // Checked per message.
        (DataAuth::Device(d), Target::Socket) => d.domain.clone(),
    };
    let options = Options::from_query(query.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.error, e.details))?;
    let (ws, permit) = upgrade(&state, ws)?;
    let max = state.ingest.max_body;
    let tasks = state.tasks.clone();
    let publisher = Publisher { state, caller, domain, target, options };
    Ok(ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| {
        tasks.track_future(async move {
            publisher.run(socket).await;
            drop(permit);
        })
    }))
}
