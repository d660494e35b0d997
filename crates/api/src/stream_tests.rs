//! SSE and NDJSON streams in process: live messages as committed, `Last-Event-ID` resume without
//! gap or duplicate, the slow-reader gap, keep-alives (paused time), the stream cap, and who may
//! listen to what.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::{Request, StatusCode};
use futures_util::StreamExt;
use serde_json::{Value as Json, json};
use switchyard_pipeline::{Pipeline, PipelineConfig};
use switchyard_storage::MemoryDataStore;
use tower::ServiceExt;

use crate::data_tests::{A, TestApp, start_streams};
use crate::{IngestConfig, StreamLimits};

async fn start(streams: StreamLimits) -> TestApp {
    let pipeline = Arc::new(Pipeline::new(PipelineConfig::default()));
    let ingest = IngestConfig { pipeline: pipeline.clone(), max_body: 1 << 20 };
    start_streams(Arc::new(MemoryDataStore::default()), pipeline, ingest, streams).await
}

/// An open stream: its body, read chunk by chunk.
struct Open {
    body: BodyDataStream,
    buffered: String,
}

impl Open {
    /// The next complete record: an SSE event (up to its blank line) or an NDJSON line.
    async fn next(&mut self) -> Option<String> {
        loop {
            let end = if self.buffered.starts_with(':') || self.buffered.contains("\n\n") {
                self.buffered.find("\n\n").map(|i| i + 2)
            } else if self.buffered.starts_with('{') {
                self.buffered.find('\n').map(|i| i + 1)
            } else {
                self.buffered.find("\n\n").map(|i| i + 2)
            };
            if let Some(end) = end {
                let record: String = self.buffered.drain(..end).collect();
                return Some(record.trim_end().to_owned());
            }
            let chunk = self.body.next().await?.unwrap();
            self.buffered.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next SSE message as (id, JSON).
    async fn sse(&mut self) -> (u64, Json) {
        let record = self.next().await.expect("stream open");
        let (id, data) = record.split_once('\n').unwrap_or_else(|| panic!("not a message: {record:?}"));
        let id = id.strip_prefix("id: ").unwrap_or_else(|| panic!("no id: {record:?}")).parse().unwrap();
        (id, serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap())
    }
}

impl TestApp {
    async fn open(&self, uri: &str, auth: &str, headers: &[(&str, &str)]) -> Result<Open, (StatusCode, Json)> {
        let mut request = Request::get(uri).header("authorization", auth);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        if status != StatusCode::OK {
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            return Err((status, serde_json::from_slice(&bytes).unwrap_or(Json::Null)));
        }
        let mut open = Open { body: response.into_body().into_data_stream(), buffered: String::new() };
        let first = open.next().await.unwrap();
        assert!(first == ": keep-alive" || first == "{}", "a stream opens with its keep-alive: {first:?}");
        Ok(open)
    }

    async fn send(&self, uri: &str, body: &str) {
        let (status, answer) = self.post(uri, &self.a, body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
}

const SSE: (&str, &str) = ("accept", "text/event-stream");
const NDJSON: (&str, &str) = ("accept", "application/x-ndjson");

#[tokio::test]
async fn sse_and_ndjson_carry_what_is_committed() {
    let t = start(StreamLimits::default()).await;
    let mut sse = t.open("/resources/sensor-1/events", &t.a, &[SSE]).await.unwrap();
    let mut own = t.open("/resources/sensor-1/events", &t.device, &[NDJSON]).await.unwrap();
    let mut commands = t.open("/resources/sensor-1/commands", &t.device, &[SSE]).await.unwrap();
    let mut firehose = t.open("/messages", &t.a, &[NDJSON]).await.unwrap();
    t.send("/resources/sensor-1/events", r#"{"temp": 1}"#).await;
    t.send("/resources/sensor-2/events", r#"{"temp": 2}"#).await;
    t.send("/resources/sensor-1/commands", r#"{"led": "on"}"#).await;
    t.send("/resources/sensor-1/events", r#"{"temp": 3}"#).await;

    let (first, event) = sse.sse().await;
    assert_eq!((event["temp"].as_i64(), event["resource"].as_str()), (Some(1), Some("sensor-1")));
    let (second, event) = sse.sse().await;
    assert_eq!(event["temp"], 3, "another resource's events and commands are not in it");
    assert!(second > first, "ids increase: {first} then {second}");
    let lines: Vec<Json> =
        [own.next().await, own.next().await].map(|l| serde_json::from_str(&l.unwrap()).unwrap()).into();
    assert_eq!(lines.iter().map(|l| l["temp"].as_i64().unwrap()).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(commands.sse().await.1["led"], "on");
    let mut everything = Vec::new();
    for _ in 0..4 {
        let line: Json = serde_json::from_str(&firehose.next().await.unwrap()).unwrap();
        everything.push((line["resource"].as_str().unwrap().to_owned(), line.get("led").is_some()));
    }
    let expected = [("sensor-1", false), ("sensor-2", false), ("sensor-1", true), ("sensor-1", false)];
    assert_eq!(everything, expected.map(|(r, c)| (r.to_owned(), c)));
}

#[tokio::test]
async fn last_event_id_resumes_from_the_cache_then_goes_live_without_duplicates() {
    let t = start(StreamLimits::default()).await;
    let mut first = t.open("/resources/sensor-1/events", &t.a, &[SSE]).await.unwrap();
    for n in 1..=4 {
        t.send("/resources/sensor-1/events", &format!(r#"{{"n": {n}}}"#)).await;
    }
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(first.sse().await.0);
    }
    drop(first);
    t.send("/resources/sensor-1/events", r#"{"n": 5}"#).await;
    let after = ids[1].to_string();
    let mut resumed = t.open("/resources/sensor-1/events", &t.a, &[SSE, ("last-event-id", &after)]).await.unwrap();
    t.send("/resources/sensor-1/events", r#"{"n": 6}"#).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (id, m) = resumed.sse().await;
        seen.push((id, m["n"].as_i64().unwrap()));
    }
    assert_eq!(seen[..2], [(ids[2], 3), (ids[3], 4)], "the cache after the id, oldest first");
    assert_eq!(seen.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [3, 4, 5, 6], "then live, no gap, no duplicate");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));

    let (status, _) = t.open("/resources/sensor-1/events", &t.a, &[SSE, ("last-event-id", "x")]).await.err().unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_slow_reader_is_told_what_it_missed_and_stalls_no_one() {
    let t = start(StreamLimits::new(8, 2)).await;
    let mut slow = t.open("/resources/sensor-1/events", &t.a, &[NDJSON]).await.unwrap();
    let mut fast = t.open("/resources/sensor-1/events", &t.a, &[SSE]).await.unwrap();
    for n in 1..=5 {
        // Intake is answered although the slow stream reads nothing.
        t.send("/resources/sensor-1/events", &format!(r#"{{"n": {n}}}"#)).await;
        assert_eq!(fast.sse().await.1["n"], n, "the other stream keeps up");
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        let line = serde_json::from_str::<Json>(&slow.next().await.unwrap()).unwrap();
        got.push(line.get("n").map_or(line.clone(), |n| json!({"n": n})));
    }
    assert_eq!(got, [json!({"n": 1}), json!({"n": 2}), json!({"gap": {"missed": 3}})], "queued, then the gap");
    t.send("/resources/sensor-1/events", r#"{"n": 6}"#).await;
    let line: Json = serde_json::from_str(&slow.next().await.unwrap()).unwrap();
    assert_eq!(line["n"], 6, "live again");

    // SSE says it as an event of its own.
    let mut slow = t.open("/resources/sensor-1/events", &t.a, &[SSE]).await.unwrap();
    for n in 7..=10 {
        t.send("/resources/sensor-1/events", &format!(r#"{{"n": {n}}}"#)).await;
    }
    slow.sse().await;
    slow.sse().await;
    assert_eq!(slow.next().await.unwrap(), "event: gap\ndata: {\"missed\":2}");
}

#[tokio::test(start_paused = true)]
async fn quiet_streams_send_keepalives() {
    let t = start(StreamLimits::default()).await;
    let mut sse = t.open("/resources/sensor-1/events", &t.a, &[SSE]).await.unwrap();
    let mut ndjson = t.open("/messages", &t.a, &[NDJSON]).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(14), sse.next()).await.is_err(), "nothing before 15 s");
    assert_eq!(sse.next().await.unwrap(), ": keep-alive");
    assert!(tokio::time::timeout(Duration::from_secs(40), ndjson.next()).await.is_err(), "nothing before 60 s");
    assert_eq!(ndjson.next().await.unwrap(), "{}");
}

#[tokio::test]
async fn streams_are_capped_and_need_the_right_credentials() {
    let t = start(StreamLimits::new(1, 8)).await;
    let open = t.open("/resources/sensor-1/events", &t.a, &[SSE]).await.unwrap();
    let (status, _) = t.open("/resources/sensor-1/events", &t.a, &[SSE]).await.err().unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "beyond max_streams");
    drop(open);
    let open = t.open("/resources/sensor-1/events", &t.a, &[SSE]).await;
    assert!(open.is_ok(), "a closed stream frees its slot");
    drop(open);

    for (uri, auth, want) in [
        ("/resources/sensor-1/events", "", StatusCode::UNAUTHORIZED),
        ("/resources/sensor-1/events", "Basic AAAA", StatusCode::UNAUTHORIZED),
        ("/resources/sensor-2/events", t.device.as_str(), StatusCode::FORBIDDEN),
        ("/resources/sensor-2/commands", t.device.as_str(), StatusCode::FORBIDDEN),
        ("/messages", t.device.as_str(), StatusCode::FORBIDDEN),
        ("/messages", "", StatusCode::UNAUTHORIZED),
        ("/resources/bad%20id/events", t.a.as_str(), StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = t.open(uri, auth, &[SSE]).await.err().unwrap();
        assert_eq!(status, want, "{uri} {body}");
    }
    assert_eq!(A, "a.example");
}
