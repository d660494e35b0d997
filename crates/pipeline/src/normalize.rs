//! Validation and normalization of one request's messages (SPEC §4.1, §4.3, §4.4), and the
//! extraction of their metrics. Pure: input bytes and a [`Context`] in, a [`Normalized`] (what
//! to deliver, what to store) or an [`IntakeError`] out.
//!
//! Rules, in the order they apply:
//! - Nesting deeper than [`Limits::max_depth`] levels (the message object is level 1; an
//!   enclosing array is not counted) is refused by a byte scan *before* parsing, so a
//!   10,000-level input costs one pass and no stack. Nothing here recurses on client data.
//! - The input is one JSON object or a non-empty array of at most
//!   [`Limits::max_messages`] objects (413 beyond that). An empty array is refused: it carries
//!   nothing to store or deliver, and accepting it would hide client bugs.
//! - `resource`: a string that is a valid resource id, equal to the topic's or path's resource
//!   when there is one; required in every message when there is none (`POST /messages`).
//! - `timestamp`: see [`crate::timestamp`]; the receive time when absent.
//! - `messageId`: a non-empty string of at most [`Limits::max_message_id`] bytes, or an
//!   integer (kept as its decimal text for idempotency); `null` counts as absent.
//! - `domain`: kept as sent, never a metric (the tenant comes from the credentials, never from
//!   the body).
//! - Metrics (SPEC §4.3): every number, boolean (1/0) or string, at the top level or in nested
//!   objects (flattened to dotted names `sensors.temp`); arrays and nulls are not metrics, nor is
//!   anything inside an array; the top-level `resource`, `timestamp`, `domain` and `messageId`
//!   are never metrics (nested fields of those names are). A message may carry at most
//!   [`Limits::max_metrics`] metrics (413 beyond that); a metric name is at most
//!   [`Limits::max_metric_name`] bytes and no key on its path may be empty. Keys containing `.`
//!   are kept as they are, so `{"a.b":1,"a":{"b":2}}` yields two points named `a.b`: the store
//!   keeps the later one.
//! - Numbers become `f64`: integers beyond 2^53 lose precision in the metric (the stored message
//!   keeps the exact digits), integers beyond the `u64`/`i64` range are read as floats by the
//!   JSON parser in both.
//!
//! A command ([`Context::channel`] is [`Channel::Commands`]) follows the same rules but yields
//! no metrics: the commands history is a message cache, never a series.
//!
//! The normalized message is the input object with `timestamp` (epoch ms) and `resource` set;
//! its keys come out in the JSON library's map order. The delivered payload is that object, or
//! an array of them when the input was an array.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value as Json};
use switchyard_identity::{Domain, ResourceId};
pub use switchyard_storage::data::Channel;
use switchyard_storage::data::{Ingest, ResourceKey, Value};

use crate::error::{Details, IntakeError};
use crate::options::Options;
use crate::timestamp;

/// Top-level keys that are never metrics.
pub const RESERVED: [&str; 4] = ["resource", "timestamp", "domain", "messageId"];

/// The JSON parser refuses more than 128 levels; [`Limits::max_depth`] is clamped below that so
/// the clear depth error always comes first.
pub const DEPTH_CEILING: usize = 100;

/// Bounds on client-shaped input. The byte size of a request is bounded by its transport
/// (`max_packet_size`, the HTTP body limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages per request (array length).
    pub max_messages: usize,
    /// Object/array nesting levels within a message (clamped to [`DEPTH_CEILING`]).
    pub max_depth: usize,
    /// Metrics per message.
    pub max_metrics: usize,
    /// Bytes of a flattened metric name.
    pub max_metric_name: usize,
    /// Bytes of a `messageId`.
    pub max_message_id: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_messages: 1000, max_depth: 32, max_metrics: 1000, max_metric_name: 256, max_message_id: 256 }
    }
}

/// Everything normalization needs besides the input.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The tenant, from the credentials.
    pub tenant: &'a Domain,
    /// The resource named by the topic or path; `None` for `POST /messages`, where every
    /// message names its own.
    pub resource: Option<&'a ResourceId>,
    /// Receive time, epoch ms: the `timestamp` of messages without one, and the start of `ttl`.
    pub now_ms: i64,
    pub options: Options,
    /// Messages the resource's cache keeps (the tenant's setting).
    pub keep: u32,
    /// The tenant's retention: stored data expires this long after `now_ms` at the latest
    /// (a shorter `ttl` still wins). Live delivery is not affected.
    pub retention: Option<std::time::Duration>,
    pub limits: &'a Limits,
    /// Events or commands: a command is normalized the same way but yields no metrics.
    pub channel: Channel,
}

/// The outcome of a valid request.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// What is delivered live and echoed: the normalized object, or an array of them when the
    /// input was an array.
    pub payload: Bytes,
    /// What to store, one record per message in input order; empty when `store=false`.
    pub data: Vec<Ingest>,
    /// How many messages the request held.
    pub count: usize,
    /// The request's options (the forwarder reads `forward`).
    pub options: Options,
}

/// Validates and normalizes a request body (see the module documentation for the rules).
pub fn normalize(input: &[u8], ctx: &Context<'_>) -> Result<Normalized, IntakeError> {
    let max_depth = ctx.limits.max_depth.clamp(1, DEPTH_CEILING);
    let is_array = input.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    check_depth(input, max_depth + usize::from(is_array))?;
    let value: Json =
        serde_json::from_slice(input).map_err(|e| IntakeError::invalid("invalid JSON", vec![e.to_string()]))?;
    let messages = match value {
        Json::Object(map) => vec![map],
        Json::Array(items) => array_of_objects(items, ctx.limits.max_messages)?,
        _ => {
            return Err(IntakeError::invalid(
                "not a JSON object or array of objects",
                vec![format!("got {}", kind_of(&value))],
            ));
        }
    };

    let tenant: Arc<str> = Arc::from(ctx.tenant.as_str());
    let path_resource: Option<Arc<str>> = ctx.resource.map(|r| Arc::from(r.as_str()));
    let retained_until =
        ctx.retention.map(|r| ctx.now_ms.saturating_add(i64::try_from(r.as_millis()).unwrap_or(i64::MAX)));
    let expires_at = match (ctx.options.expires_at(ctx.now_ms), retained_until) {
        (Some(ttl), Some(retention)) => Some(ttl.min(retention)),
        (ttl, retention) => ttl.or(retention),
    };
    let mut details = Details::default();
    let mut records = Vec::with_capacity(messages.len());
    for (i, map) in messages.into_iter().enumerate() {
        let prefix = if is_array { format!("[{i}].") } else { String::new() };
        match normalize_one(map, ctx, path_resource.as_ref()) {
            Ok(one) => records.push(Ingest {
                resource: ResourceKey { tenant: Arc::clone(&tenant), resource: one.resource },
                ts: one.ts,
                message_id: one.message_id,
                body: one.body,
                expires_at,
                keep: ctx.keep,
                points: one.points,
                channel: ctx.channel,
                forward: ctx.options.forward,
            }),
            Err(problems) => {
                for (field, problem, too_large) in problems {
                    details.push(format!("{prefix}{field}: {problem}"), too_large);
                }
            }
        }
    }
    if !details.is_empty() {
        let error = if is_array { "invalid messages" } else { "invalid message" };
        return Err(details.into_error(error));
    }

    let payload = if is_array {
        let len = records.iter().map(|r| r.body.len() + 1).sum::<usize>() + 1;
        let mut buf = BytesMut::with_capacity(len);
        buf.put_u8(b'[');
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                buf.put_u8(b',');
            }
            buf.put_slice(&r.body);
        }
        buf.put_u8(b']');
        buf.freeze()
    } else {
        records[0].body.clone()
    };
    let count = records.len();
    if !ctx.options.store {
        records.clear();
    }
    Ok(Normalized { payload, data: records, count, options: ctx.options })
}

/// Refuses input nested deeper than `max` levels, scanning bytes (strings skipped) without
/// parsing, so that any depth costs one pass and constant stack.
fn check_depth(input: &[u8], max: usize) -> Result<(), IntakeError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, &b) in input.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(IntakeError::invalid(
                        "nested too deeply",
                        vec![format!("more than {max} levels of objects and arrays (at byte {at})")],
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn array_of_objects(items: Vec<Json>, max_messages: usize) -> Result<Vec<Map<String, Json>>, IntakeError> {
    if items.is_empty() {
        return Err(IntakeError::invalid("empty array", vec!["an array must hold at least one message".into()]));
    }
    if items.len() > max_messages {
        return Err(IntakeError::too_large(
            "too many messages",
            vec![format!("{} messages, at most {max_messages} per request", items.len())],
        ));
    }
    let mut details = Details::default();
    let mut maps = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Json::Object(map) => maps.push(map),
            other => details.push(format!("[{i}]: not a JSON object (got {})", kind_of(&other)), false),
        }
    }
    if details.is_empty() { Ok(maps) } else { Err(details.into_error("not a JSON object or array of objects")) }
}

fn kind_of(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// One problem with a message: the field, what is wrong, whether it is a size limit (413).
type Problem = (String, String, bool);

/// One normalized message.
struct One {
    resource: Arc<str>,
    ts: i64,
    message_id: Option<Arc<str>>,
    body: Bytes,
    points: Vec<(Arc<str>, Value)>,
}

fn normalize_one(
    mut map: Map<String, Json>,
    ctx: &Context<'_>,
    path_resource: Option<&Arc<str>>,
) -> Result<One, Vec<Problem>> {
    let mut problems: Vec<Problem> = Vec::new();
    let mut problem = |field: &str, what: String| problems.push((field.to_owned(), what, false));

    let resource = match (map.get("resource"), path_resource) {
        (None, Some(path)) => Some(Arc::clone(path)),
        (None, None) => {
            problem("resource", "missing (required when the topic or path names no resource)".into());
            None
        }
        (Some(Json::String(s)), path) => match (ResourceId::parse(s), path) {
            (Err(e), _) => {
                problem("resource", e.to_string());
                None
            }
            (Ok(_), Some(path)) if **path != **s => {
                problem("resource", format!("{s:?} does not match the resource of the topic or path ({path:?})"));
                None
            }
            (Ok(_), Some(path)) => Some(Arc::clone(path)),
            (Ok(_), None) => Some(Arc::from(s.as_str())),
        },
        (Some(other), _) => {
            problem("resource", format!("not a string (got {})", kind_of(other)));
            None
        }
    };

    let ts = match map.get("timestamp") {
        None => Some(ctx.now_ms),
        Some(v) => timestamp::parse(v).map_err(|e| problem("timestamp", e.to_string())).ok(),
    };

    let message_id = match map.get("messageId") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.is_empty() => Err("empty".to_owned()),
        Some(Json::String(s)) if s.len() > ctx.limits.max_message_id => {
            Err(format!("longer than {} bytes", ctx.limits.max_message_id))
        }
        Some(Json::String(s)) => Ok(Some(Arc::from(s.as_str()))),
        Some(Json::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(Arc::from(n.to_string()))),
        Some(other) => Err(format!("not a string or integer (got {})", kind_of(other))),
    };
    let message_id = message_id.map_err(|e| problem("messageId", e)).ok().flatten();

    let points = match ctx.channel {
        Channel::Events => extract_metrics(&map, ctx.limits).map_err(|p| problems.push(p)).ok(),
        Channel::Commands => Some(Vec::new()),
    };

    match (resource, ts, points) {
        (Some(resource), Some(ts), Some(points)) if problems.is_empty() => {
            map.insert("timestamp".to_owned(), Json::from(ts));
            map.insert("resource".to_owned(), Json::from(&*resource));
            let body = Bytes::from(serde_json::to_vec(&map).expect("a JSON map always serializes"));
            Ok(One { resource, ts, message_id, body, points })
        }
        _ => Err(problems),
    }
}

/// The metrics of a message (SPEC §4.3), walking nested objects with an explicit stack.
fn extract_metrics(map: &Map<String, Json>, limits: &Limits) -> Result<Vec<(Arc<str>, Value)>, Problem> {
    let mut points = Vec::new();
    // (name prefix including its trailing '.', object): the top level has an empty prefix.
    let mut stack: Vec<(String, &Map<String, Json>)> = vec![(String::new(), map)];
    while let Some((prefix, object)) = stack.pop() {
        let top = prefix.is_empty();
        for (key, value) in object {
            if top && RESERVED.contains(&key.as_str()) {
                continue;
            }
            let skipped = match value {
                Json::Array(_) | Json::Null => true,
                Json::Object(inner) => inner.is_empty(),
                _ => false,
            };
            if skipped {
                continue;
            }
            if key.is_empty() {
                return Err(metric_problem(&prefix, key, "an empty key cannot name a metric".into()));
            }
            if prefix.len() + key.len() > limits.max_metric_name {
                let what = format!("metric name longer than {} bytes", limits.max_metric_name);
                return Err(metric_problem(&prefix, key, what));
            }
            let value = match value {
                Json::Object(inner) => {
                    stack.push((format!("{prefix}{key}."), inner));
                    continue;
                }
                Json::Number(n) => match n.as_f64() {
                    Some(f) if f.is_finite() => Value::Number(f),
                    _ => return Err(metric_problem(&prefix, key, "not representable as a 64-bit float".into())),
                },
                Json::Bool(b) => Value::Number(if *b { 1.0 } else { 0.0 }),
                Json::String(s) => Value::Text(Arc::from(s.as_str())),
                Json::Array(_) | Json::Null => continue,
            };
            if points.len() == limits.max_metrics {
                return Err((
                    String::from("(message)"),
                    format!("more than {} metrics in one message", limits.max_metrics),
                    true,
                ));
            }
            points.push((Arc::from(format!("{prefix}{key}")), value));
        }
    }
    Ok(points)
}

fn metric_problem(prefix: &str, key: &str, what: String) -> Problem {
    (shorten(&format!("{prefix}{key}")), what, false)
}

/// A field path for an error detail, cut to a readable length.
fn shorten(path: &str) -> String {
    const MAX: usize = 80;
    if path.len() <= MAX {
        return path.to_owned();
    }
    let mut end = MAX;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &path[..end])
}

#[cfg(test)]
#[path = "normalize_tests.rs"]
mod tests;
