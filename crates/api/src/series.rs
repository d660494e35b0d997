//! The metrics over HTTP (SPEC §5): series of a resource, queries with aggregates and grouping,
//! latest values, and deletion by range and metric. The store hands over blocks; the query engine
//! (`switchyard_series::query::run`) answers from them.
//!
//! - `GET /resources/{id}/series` → `[{"name", "latest": {"timestamp", "value"}}]`, by name;
//! - `GET /resources/{id}/series/{metric}?from=&until=&aggregates=&grouping=&order=&limit=` →
//!   `{"query": {...}, "series": [[ts, v1, v2, ...], ...]}`: one column per aggregate in request
//!   order (one, the value, without aggregates); `from`/`until` epoch ms or ISO-8601, *default*
//!   the last 7 days; `aggregates` comma-separated (min, max, mean, median, sum, count, first,
//!   last, std, percentile(N)); `grouping` (of aggregates; raw points are never grouped) none
//!   (*default*), auto, `Ns|Nm|Nh|Nd|Nw`, buckets aligned to UTC multiples; `order` asc
//!   (*default*) or desc; `limit` at most 100,000 rows (*default*). `query` echoes the effective
//!   query. Numbers that JSON cannot carry (NaN, ±inf) and empty cells are `null`;
//! - `GET /resources/{id}/series/{metric}/latest` → `{"timestamp", "value"}` (404 when none);
//! - `POST /series/query {"queries": [{"resource", "metric", and the parameters above}, ...]}` →
//!   `[{"query", "series"}, ...]` in request order, at most 20 queries (`aggregates` a list or a
//!   comma-separated string), which share the 100,000 rows (`limit` *default* and at most
//!   100,000 / number of queries);
//! - `DELETE /resources/{id}?from=&until=&metrics=a,b&onlytimeseries=` → `{"messages": n,
//!   "points": m}`: deletes the points in the range (of the named metrics, or all), and the
//!   messages in the range unless `onlytimeseries=true` or `metrics` is given (a message holds
//!   every metric). API keys only.
//!
//! Callers as for the message cache (`data`): applications for their tenant, a device for its
//! own resource, reads only.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;
use switchyard_series::Value;
use switchyard_series::query::{self, Aggregate, Cell, Grouping, Order, QueryError, Row};
use switchyard_storage::ResourceKey;
use switchyard_storage::data::TimeRange;
use utoipa::{IntoParams, ToSchema};

use crate::ApiState;
use crate::auth::DataAuth;
use crate::data::{blocking, now_ms, path_id, range, resource_id, text_instant};
use crate::error::{ApiError, json_body};
use crate::timearg::Instant;

/// The range queried when none is given: the last 7 days.
pub const DEFAULT_SPAN_MS: i64 = 7 * 86_400_000;
/// Most rows in one answer (the *default* limit).
pub const MAX_ROWS: usize = 100_000;
/// Most aggregates in one query.
pub const MAX_AGGREGATES: usize = 16;
/// Most queries in one `POST /series/query`.
pub const MAX_QUERIES: usize = 20;
/// Longest metric name accepted.
pub const MAX_METRIC_LEN: usize = 256;

/// The series routes.
pub fn routes() -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/resources/{id}", axum::routing::delete(delete))
        .route("/resources/{id}/series", get(list))
        .route("/resources/{id}/series/{metric}", get(series))
        .route("/resources/{id}/series/{metric}/latest", get(latest))
        .route("/series/query", post(multi))
}

/// A point as served.
#[derive(Debug, Serialize, ToSchema)]
pub struct Latest {
    /// Epoch ms.
    timestamp: i64,
    /// A number, or text.
    value: JsonValue,
}

/// One series of a resource.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesEntry {
    name: String,
    latest: Latest,
}

/// The effective query, echoed in answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueryEcho {
    resource: String,
    metric: String,
    from: i64,
    until: i64,
    aggregates: Vec<String>,
    grouping: String,
    order: String,
    limit: usize,
}

/// An answer: the effective query and its rows `[ts, v1, v2, ...]`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesAnswer {
    query: QueryEcho,
    #[schema(value_type = Vec<Vec<JsonValue>>)]
    series: Vec<JsonValue>,
}

fn json_value(v: &Value) -> JsonValue {
    match v {
        Value::Number(n) => serde_json::Number::from_f64(*n).map_or(JsonValue::Null, JsonValue::Number),
        Value::Text(t) => JsonValue::String(t.to_string()),
    }
}

fn row_json(row: &Row) -> JsonValue {
    let mut out = Vec::with_capacity(1 + row.cells.len());
    out.push(JsonValue::from(row.ts));
    out.extend(row.cells.iter().map(|c| match c {
        Cell::Number(n) => serde_json::Number::from_f64(*n).map_or(JsonValue::Null, JsonValue::Number),
        Cell::Text(t) => JsonValue::String(t.to_string()),
        Cell::Null => JsonValue::Null,
    }));
    JsonValue::Array(out)
}

fn metric_name(raw: &str) -> Result<Arc<str>, ApiError> {
    if raw.is_empty() || raw.len() > MAX_METRIC_LEN {
        return Err(ApiError::bad_request(
            format!("a metric name has 1 to {MAX_METRIC_LEN} bytes"),
            vec![format!("metric: {} bytes", raw.len())],
        ));
    }
    Ok(raw.into())
}

/// Every series of a resource with its newest point, by name.
#[utoipa::path(get, path = "/resources/{id}/series", tag = "series",
    params(("id" = String, Path, description = "resource id")),
    responses(
        (status = 200, body = Vec<SeriesEntry>),
        (status = 400, description = "invalid parameters", body = crate::error::ErrorBody),
        (status = 401, description = "bad or missing credentials", body = crate::error::ErrorBody),
        (status = 403, description = "not this caller's resource, or a device deleting", body = crate::error::ErrorBody),
        (status = 503, description = "storage unavailable", body = crate::error::ErrorBody),
    ))]
pub async fn list(
    caller: DataAuth,
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<SeriesEntry>>, ApiError> {
    let key = caller.read(&path_id(id)?)?;
    let store = Arc::clone(state.broker.data_store());
    let now = now_ms();
    let found = blocking(move || store.series(&key, now)).await?;
    let entries = found
        .into_iter()
        .map(|s| SeriesEntry {
            name: s.metric.to_string(),
            latest: Latest { timestamp: s.latest.ts, value: json_value(&s.latest.value) },
        })
        .collect();
    Ok(Json(entries))
}

/// The newest point of one series.
#[utoipa::path(get, path = "/resources/{id}/series/{metric}/latest", tag = "series",
    params(("id" = String, Path, description = "resource id"), ("metric" = String, Path, description = "metric name")),
    responses(
        (status = 200, body = Latest),
        (status = 400, description = "invalid parameters", body = crate::error::ErrorBody),
        (status = 401, description = "bad or missing credentials", body = crate::error::ErrorBody),
        (status = 403, description = "not this caller's resource, or a device deleting", body = crate::error::ErrorBody),
        (status = 503, description = "storage unavailable", body = crate::error::ErrorBody),
        (status = 404, description = "no such series", body = crate::error::ErrorBody),
    ))]
pub async fn latest(
    caller: DataAuth,
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Latest>, ApiError> {
    let Path((id, metric)) = path?;
    let key = caller.read(&resource_id(&id)?)?;
    let metric = metric_name(&metric)?;
    let store = Arc::clone(state.broker.data_store());
    let now = now_ms();
    let found = blocking(move || store.series(&key, now)).await?;
    let info =
        found.into_iter().find(|s| s.metric == metric).ok_or_else(|| ApiError::NotFound("no such series".into()))?;
    Ok(Json(Latest { timestamp: info.latest.ts, value: json_value(&info.latest.value) }))
}

/// `?from=&until=&aggregates=&grouping=&order=&limit=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// Inclusive start: epoch ms or ISO-8601 (*default* 7 days before `until`).
    from: Option<String>,
    /// Exclusive end: epoch ms or ISO-8601 (*default* now, or 7 days after `from`).
    until: Option<String>,
    /// Comma-separated: min, max, mean, median, sum, count, first, last, std, percentile(N).
    aggregates: Option<String>,
    /// none (*default*), auto, or `Ns`, `Nm`, `Nh`, `Nd`, `Nw` (buckets aligned in UTC).
    grouping: Option<String>,
    /// asc (*default*) or desc.
    order: Option<String>,
    /// At most this many rows (*default* and most: 100,000).
    limit: Option<usize>,
}

/// `aggregates` in a JSON body: a list or one comma-separated string.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AggregateList {
    List(Vec<String>),
    Text(String),
}

/// One query of `POST /series/query`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesSpec {
    resource: String,
    metric: String,
    from: Option<Instant>,
    until: Option<Instant>,
    aggregates: Option<AggregateList>,
    grouping: Option<String>,
    order: Option<String>,
    limit: Option<usize>,
}

/// The body of `POST /series/query`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesQueries {
    /// 1 to 20 queries.
    queries: Vec<SeriesSpec>,
}

/// A validated query: what the engine runs, and what is echoed.
struct Planned {
    key: ResourceKey,
    metric: Arc<str>,
    query: query::Query,
    echo: QueryEcho,
}

/// A parse error's text without the "invalid query" prefix the answer already says.
fn why(e: QueryError) -> String {
    match e {
        QueryError::Invalid(why) => why,
        e => e.to_string(),
    }
}

fn split_aggregates(raw: &str) -> Vec<String> {
    raw.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

/// Validates one query's parameters at `now`; it may answer at most `max_rows` rows.
fn plan(key: ResourceKey, metric: Arc<str>, spec: &SeriesSpec, now: i64, max_rows: usize) -> Result<Planned, ApiError> {
    let TimeRange { from, until } = range(spec.from.as_ref(), spec.until.as_ref())?;
    let (from, until) = match (from, until) {
        (Some(f), Some(u)) => (f, u),
        (Some(f), None) => (f, f.saturating_add(DEFAULT_SPAN_MS)),
        (None, Some(u)) => (u.saturating_sub(DEFAULT_SPAN_MS), u),
        // `until` is exclusive: a point stamped now is included.
        (None, None) => (now.saturating_sub(DEFAULT_SPAN_MS), now.saturating_add(1)),
    };
    let names = match &spec.aggregates {
        None => vec![],
        Some(AggregateList::List(list)) => list.iter().map(|s| s.trim().to_owned()).collect(),
        Some(AggregateList::Text(text)) => split_aggregates(text),
    };
    if names.len() > MAX_AGGREGATES {
        return Err(ApiError::bad_request(
            format!("at most {MAX_AGGREGATES} aggregates"),
            vec![format!("aggregates: {} given", names.len())],
        ));
    }
    let mut aggregates = Vec::with_capacity(names.len());
    let mut bad = Vec::new();
    for name in &names {
        match name.parse::<Aggregate>() {
            Ok(a) => aggregates.push(a),
            Err(e) => bad.push(why(e)),
        }
    }
    if !bad.is_empty() {
        return Err(ApiError::bad_request("invalid aggregates", bad));
    }
    let grouping_name = spec.grouping.as_deref().map_or("none", str::trim);
    let grouping: Grouping =
        grouping_name.parse().map_err(|e| ApiError::bad_request("invalid grouping", vec![why(e)]))?;
    if let Grouping::Every { ms } = grouping
        && !aggregates.is_empty()
        && ms > 0
        && until.saturating_sub(from) / ms >= MAX_ROWS as i64
    {
        return Err(ApiError::bad_request(
            format!("grouping {grouping_name} yields more than {MAX_ROWS} buckets over this range"),
            vec![format!("from: {from}, until: {until}: {} buckets", until.saturating_sub(from) / ms)],
        ));
    }
    let order = match spec.order.as_deref() {
        None => Order::Asc,
        Some(raw) => raw.parse().map_err(|e| ApiError::bad_request("invalid order", vec![why(e)]))?,
    };
    let limit = spec.limit.unwrap_or(max_rows);
    if limit == 0 || limit > max_rows {
        return Err(ApiError::bad_request(
            format!("limit must be between 1 and {max_rows}"),
            vec![format!("limit: {limit}")],
        ));
    }
    let echo = QueryEcho {
        resource: key.resource.to_string(),
        metric: metric.to_string(),
        from,
        until,
        aggregates: names,
        grouping: grouping_name.to_owned(),
        order: if order == Order::Asc { "asc" } else { "desc" }.to_owned(),
        limit,
    };
    let query = query::Query { from, until, aggregates, grouping, order, limit: Some(limit) };
    Ok(Planned { key, metric, query, echo })
}

/// Runs planned queries on the blocking pool, in order.
async fn run(state: &ApiState, planned: Vec<Planned>) -> Result<Vec<SeriesAnswer>, ApiError> {
    let store = Arc::clone(state.broker.data_store());
    let now = now_ms();
    let results = blocking(move || {
        let mut out = Vec::with_capacity(planned.len());
        for p in planned {
            let range = TimeRange { from: Some(p.query.from), until: Some(p.query.until) };
            let blocks = store.scan(&p.key, &p.metric, range, now)?;
            out.push((p.echo, query::run(&p.query, blocks)));
        }
        Ok(out)
    })
    .await?;
    results
        .into_iter()
        .map(|(echo, rows)| Ok(SeriesAnswer { query: echo, series: rows?.iter().map(row_json).collect() }))
        .collect()
}

/// One series: raw points or aggregates, optionally grouped in buckets.
#[utoipa::path(get, path = "/resources/{id}/series/{metric}", tag = "series",
    params(("id" = String, Path, description = "resource id"), ("metric" = String, Path, description = "metric name"), SeriesParams),
    responses(
        (status = 200, body = SeriesAnswer),
        (status = 400, description = "invalid parameters", body = crate::error::ErrorBody),
        (status = 401, description = "bad or missing credentials", body = crate::error::ErrorBody),
        (status = 403, description = "not this caller's resource, or a device deleting", body = crate::error::ErrorBody),
        (status = 503, description = "storage unavailable", body = crate::error::ErrorBody),
    ))]
pub async fn series(
    caller: DataAuth,
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    params: Result<Query<SeriesParams>, QueryRejection>,
) -> Result<Json<SeriesAnswer>, ApiError> {
    let Path((id, metric)) = path?;
    let key = caller.read(&resource_id(&id)?)?;
    let metric = metric_name(&metric)?;
    let Query(p) = params?;
    let spec = SeriesSpec {
        resource: id,
        metric: metric.to_string(),
        from: text_instant(&p.from),
        until: text_instant(&p.until),
        aggregates: p.aggregates.map(AggregateList::Text),
        grouping: p.grouping,
        order: p.order,
        limit: p.limit,
    };
    let planned = plan(key, metric, &spec, now_ms(), MAX_ROWS)?;
    let mut answers = run(&state, vec![planned]).await?;
    answers.pop().map(Json).ok_or(ApiError::Unavailable)
}

/// Several series queries in one request; answers in request order.
#[utoipa::path(post, path = "/series/query", tag = "series", request_body = SeriesQueries,
    responses(
        (status = 200, body = Vec<SeriesAnswer>),
        (status = 400, description = "invalid parameters", body = crate::error::ErrorBody),
        (status = 401, description = "bad or missing credentials", body = crate::error::ErrorBody),
        (status = 403, description = "not this caller's resource, or a device deleting", body = crate::error::ErrorBody),
        (status = 503, description = "storage unavailable", body = crate::error::ErrorBody),
    ))]
pub async fn multi(
    caller: DataAuth,
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Vec<SeriesAnswer>>, ApiError> {
    let q: SeriesQueries = json_body(&body?)?;
    if q.queries.is_empty() || q.queries.len() > MAX_QUERIES {
        return Err(ApiError::bad_request(
            format!("queries must hold 1 to {MAX_QUERIES} queries"),
            vec![format!("queries: {} given", q.queries.len())],
        ));
    }
    let now = now_ms();
    // The answer as a whole holds at most MAX_ROWS rows: each query its share.
    let share = MAX_ROWS / q.queries.len();
    let mut planned = Vec::with_capacity(q.queries.len());
    for (i, spec) in q.queries.iter().enumerate() {
        let at = |e: ApiError| match e {
            ApiError::BadRequest { error, details } => {
                ApiError::BadRequest { error: format!("queries[{i}]: {error}"), details }
            }
            e => e,
        };
        let key = caller.read(&resource_id(&spec.resource).map_err(at)?).map_err(at)?;
        let metric = metric_name(&spec.metric).map_err(at)?;
        planned.push(plan(key, metric, spec, now, share).map_err(at)?);
    }
    Ok(Json(run(&state, planned).await?))
}

/// `?from=&until=&metrics=&onlytimeseries=` of a delete.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Inclusive start: epoch ms or ISO-8601 (unbounded when absent).
    from: Option<String>,
    /// Exclusive end: epoch ms or ISO-8601 (unbounded when absent).
    until: Option<String>,
    /// Comma-separated metric names: delete only their points, keep messages.
    metrics: Option<String>,
    /// `true`: delete points only, keep messages.
    onlytimeseries: Option<String>,
}

/// What a delete removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedData {
    messages: u64,
    points: u64,
}

/// Deletes a resource's points (and messages) in a range. API keys only.
#[utoipa::path(delete, path = "/resources/{id}", tag = "series",
    params(("id" = String, Path, description = "resource id"), DeleteParams),
    responses(
        (status = 200, body = DeletedData),
        (status = 400, description = "invalid parameters", body = crate::error::ErrorBody),
        (status = 401, description = "bad or missing credentials", body = crate::error::ErrorBody),
        (status = 403, description = "not this caller's resource, or a device deleting", body = crate::error::ErrorBody),
        (status = 503, description = "storage unavailable", body = crate::error::ErrorBody),
    ))]
pub async fn delete(
    caller: DataAuth,
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<DeleteParams>, QueryRejection>,
) -> Result<Json<DeletedData>, ApiError> {
    let key = caller.delete(&path_id(id)?)?;
    let Query(p) = params?;
    let range = range(text_instant(&p.from).as_ref(), text_instant(&p.until).as_ref())?;
    let metrics = match p.metrics.as_deref().map(split_aggregates) {
        Some(list) if list.is_empty() => {
            return Err(ApiError::bad_request(
                "metrics lists no metric",
                vec![format!("metrics: {:?}", p.metrics.as_deref().unwrap_or_default())],
            ));
        }
        Some(list) => Some(list.iter().map(|m| metric_name(m).map(|m| m.to_string())).collect::<Result<Vec<_>, _>>()?),
        None => None,
    };
    let only_series = match p.onlytimeseries.as_deref() {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(other) => {
            return Err(ApiError::bad_request("invalid onlytimeseries", vec![format!("{other:?}: true or false")]));
        }
    };
    let keep_messages = only_series || metrics.is_some();
    let store = Arc::clone(state.broker.data_store());
    let (messages, points) = blocking(move || {
        let points = store.delete_points(&key, range, metrics.as_deref())?;
        let messages = if keep_messages { 0 } else { store.delete_messages(&key, range)? };
        Ok((messages, points))
    })
    .await?;
    Ok(Json(DeletedData { messages, points }))
}
