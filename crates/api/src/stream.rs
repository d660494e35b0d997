//! Live streams over HTTP (SPEC §5): Server-Sent Events and NDJSON of what the core commits.
//!
//! - `GET /resources/{id}/events` and `GET /resources/{id}/commands` with `Accept:
//!   text/event-stream` (SSE) or `application/x-ndjson`: one resource's events or commands, as
//!   stored (normalized JSON). Without a streaming `Accept`, `/events` is 406 and `/commands`
//!   lists the commands history (`commands` module).
//! - `GET /messages` with the same `Accept` values: the tenant's firehose, events and commands of
//!   every resource (applications only).
//!
//! SSE events carry `id:` = the message's sequence number (increasing per resource, not dense;
//! `Written::Stored`). A client reconnecting with `Last-Event-ID: N` to a resource stream first
//! gets the cached messages after `N`, oldest first, then live ones; the stream subscribes
//! before it reads the cache and drops live messages it already sent by sequence, so the switch
//! has neither a gap nor a duplicate (what the cache no longer holds, beyond its `keep`, is
//! gone). A stream starts with its keep-alive record (so the response head is sent at once and
//! the client knows it listens); then SSE sends a `: keep-alive` comment after 15 s of silence,
//! NDJSON an empty `{}` line after 60 s.
//!
//! **A slow reader** has a bounded queue ([`StreamLimits::queue`] messages, in the core's
//! listener): what does not fit is dropped for that stream only, and the stream then says how
//! many it missed — SSE `event: gap` with `data: {"missed": n}`, NDJSON a line `{"gap":
//! {"missed": n}}` — before going on live. An SSE client can fill the gap from the cache by
//! reconnecting with the last `id:` it saw. Intake and other streams never wait for it.
//!
//! Streams are bounded by [`StreamLimits::slots`] (`[http] max_streams`): beyond it 503. Each
//! ends when the server shuts down or the tenant is deleted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use switchyard_broker::{Heard, Listener, Scope};
use switchyard_storage::data::{Channel, TimeRange};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::ApiState;
use crate::auth::DataAuth;
use crate::data::{blocking, now_ms};
use crate::error::ApiError;

/// Streams open at once by default (`[http] max_streams`).
pub const DEFAULT_MAX_STREAMS: usize = 1024;
/// Messages a stream's listener queues by default before it counts a gap.
pub const DEFAULT_QUEUE: usize = 256;
/// Silence after which SSE sends a comment.
pub const SSE_KEEPALIVE: Duration = Duration::from_secs(15);
/// Silence after which NDJSON sends `{}`.
pub const NDJSON_KEEPALIVE: Duration = Duration::from_secs(60);
/// Most cached messages a resumed stream replays.
const MAX_REPLAY: usize = 10_000;

/// How many streams may be open and how far each may fall behind.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// One permit per open stream.
    pub slots: Arc<Semaphore>,
    /// Messages queued per stream before it is told it missed some.
    pub queue: usize,
}

impl StreamLimits {
    pub fn new(max_streams: usize, queue: usize) -> StreamLimits {
        StreamLimits { slots: Arc::new(Semaphore::new(max_streams)), queue: queue.max(1) }
    }
}

impl Default for StreamLimits {
    fn default() -> StreamLimits {
        StreamLimits::new(DEFAULT_MAX_STREAMS, DEFAULT_QUEUE)
    }
}

/// The two stream formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Sse,
    Ndjson,
}

impl Format {
    /// The format `Accept` asks for, if it names one (SSE first when it names both).
    pub fn from_headers(headers: &HeaderMap) -> Option<Format> {
        let accept = headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
        let names = |media: &str| {
            accept.split(',').any(|part| part.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case(media)))
        };
        if names("text/event-stream") {
            Some(Format::Sse)
        } else if names("application/x-ndjson") {
            Some(Format::Ndjson)
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Sse => "text/event-stream",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    fn keepalive(self) -> Duration {
        match self {
            Format::Sse => SSE_KEEPALIVE,
            Format::Ndjson => NDJSON_KEEPALIVE,
        }
    }

    /// One message; stored bodies are compact JSON, one line.
    fn message(self, seq: u64, body: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(body.len() + 32);
        if self == Format::Sse {
            out.extend_from_slice(format!("id: {seq}\ndata: ").as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\n\n");
        } else {
            out.extend_from_slice(body);
            out.push(b'\n');
        }
        Bytes::from(out)
    }

    fn gap(self, missed: u64) -> Bytes {
        match self {
            Format::Sse => Bytes::from(format!("event: gap\ndata: {{\"missed\":{missed}}}\n\n")),
            Format::Ndjson => Bytes::from(format!("{{\"gap\":{{\"missed\":{missed}}}}}\n")),
        }
    }

    fn heartbeat(self) -> Bytes {
        match self {
            Format::Sse => Bytes::from_static(b": keep-alive\n\n"),
            Format::Ndjson => Bytes::from_static(b"{}\n"),
        }
    }
}

/// 406 for a stream-only route asked for something else.
pub fn not_acceptable() -> ApiError {
    ApiError::NotAcceptable("this route streams: Accept text/event-stream or application/x-ndjson".into())
}

/// The `Last-Event-ID` header, if any.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    text.parse::<u64>()
        .map(Some)
        .map_err(|_| ApiError::bad_request("invalid Last-Event-ID", vec![format!("{text:?}: not a sequence number")]))
}

/// `GET /resources/{id}/events` or `/commands` as a stream of `channel` for `format`.
pub async fn resource(
    state: &ApiState,
    caller: &DataAuth,
    id: &switchyard_identity::ResourceId,
    channel: Channel,
    format: Format,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let key = caller.read(id)?;
    let after = last_event_id(headers)?;
    let permit = slot(state)?;
    // Subscribe first, then read the cache: whatever commits in between is heard and read, and
    // dropped once by sequence; nothing falls between the two.
    let listener = state.broker.listen(Scope::Resource { resource: key.clone(), channel }, state.streams.queue);
    let mut pending = VecDeque::new();
    let mut last = 0;
    if let Some(after) = after {
        let store = Arc::clone(state.broker.data_store());
        let cache = key.of_channel(channel);
        let mut cached = blocking(move || store.messages(&cache, TimeRange::default(), MAX_REPLAY, now_ms())).await?;
        cached.retain(|m| m.seq > after);
        cached.sort_by_key(|m| m.seq);
        for m in &cached {
            pending.push_back(format.message(m.seq, &m.body));
        }
        last = cached.last().map_or(after, |m| m.seq);
    }
    Ok(respond(Feed::new(listener, format, pending, last, permit, state.shutdown.clone())))
}

/// `GET /messages`: the tenant's firehose, events and commands of every resource.
#[utoipa::path(get, path = "/messages", tag = "streams",
    responses(
        (status = 200, description = "SSE (`Accept: text/event-stream`) or NDJSON (`application/x-ndjson`) of every message of the tenant as stored"),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 406, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody),
    ))]
pub async fn firehose(
    caller: DataAuth,
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let DataAuth::App(app) = &caller else {
        return Err(ApiError::Forbidden("the tenant's stream needs an API key".into()));
    };
    let format = Format::from_headers(&headers).ok_or_else(not_acceptable)?;
    let permit = slot(&state)?;
    let scope = Scope::Tenant(Arc::from(app.domain.as_str()));
    let listener = state.broker.listen(scope, state.streams.queue);
    Ok(respond(Feed::new(listener, format, VecDeque::new(), 0, permit, state.shutdown.clone())))
}

fn slot(state: &ApiState) -> Result<OwnedSemaphorePermit, ApiError> {
    Arc::clone(&state.streams.slots).try_acquire_owned().map_err(|_| ApiError::Unavailable)
}

/// One open stream: its listener, what it still has to send from the cache, the last sequence
/// sent, and the permit it holds until the client goes.
struct Feed {
    listener: Listener,
    format: Format,
    pending: VecDeque<Bytes>,
    last: u64,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
}

impl Feed {
    fn new(
        listener: Listener,
        format: Format,
        pending: VecDeque<Bytes>,
        last: u64,
        permit: OwnedSemaphorePermit,
        shutdown: CancellationToken,
    ) -> Feed {
        let mut pending = pending;
        // Something at once, so the response head goes out now (HTTP/1 sends it with the first
        // chunk) and the client knows the stream listens.
        pending.push_front(format.heartbeat());
        Feed { listener, format, pending, last, shutdown, _permit: permit }
    }

    /// The next chunk to write; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.pending.pop_front() {
            return Some(chunk);
        }
        let silence = tokio::time::sleep(self.format.keepalive());
        tokio::pin!(silence);
        loop {
            tokio::select! {
                heard = self.listener.recv() => match heard? {
                    Heard::Message(m) if m.seq <= self.last => continue,
                    Heard::Message(m) => {
                        self.last = m.seq;
                        return Some(self.format.message(m.seq, &m.body));
                    }
                    Heard::Missed(n) => return Some(self.format.gap(n)),
                },
                () = &mut silence => return Some(self.format.heartbeat()),
                () = self.shutdown.cancelled() => return None,
            }
        }
    }
}

fn respond(feed: Feed) -> Response {
    let content_type = feed.format.content_type();
    let chunks = futures_util::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), feed))
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
