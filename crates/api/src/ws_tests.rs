//! The data WebSockets over real sockets (the router served on 127.0.0.1:0, a WebSocket client):
//! credentials refused before the upgrade, publish frames acknowledged in order once stored and
//! delivered live to MQTT subscribers and listeners, `/socket` routing by resource and channel,
//! the frame size and socket limits, and a slow subscriber told what it missed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};
use switchyard_pipeline::{Pipeline, PipelineConfig};
use switchyard_storage::MemoryDataStore;
use switchyard_storage::data::{ResourceKey, TimeRange};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::data_tests::{A, TestApp, start_app_ws};
use crate::ingest_tests::delivered;
use crate::{HttpLimits, IngestConfig, WsLimits};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Served {
    t: TestApp,
    addr: SocketAddr,
    _stop: tokio_util::sync::DropGuard,
}

/// The app with the pipeline (at most 3 messages per request, bodies up to `max_body`) served on
/// a local port.
async fn serve(max_body: usize, ws: WsLimits) -> Served {
    let pipeline = Arc::new(Pipeline::new(PipelineConfig { max_messages_per_request: 3, ..PipelineConfig::default() }));
    let store = Arc::new(MemoryDataStore::default());
    let t = start_app_ws(store, pipeline.clone(), IngestConfig { pipeline, max_body }, ws).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let limits = HttpLimits::new(Duration::from_secs(5), 100);
    tokio::spawn(crate::serve(listener, None, t.app.clone(), limits, TaskTracker::new(), stop.clone()));
    Served { t, addr, _stop: stop.drop_guard() }
}

/// `apiKey=…&apiSecret=…` of a `Basic` authorization.
fn query_of(basic: &str) -> String {
    let raw = base64::engine::general_purpose::STANDARD.decode(basic.trim_start_matches("Basic ")).unwrap();
    let (key, secret) = std::str::from_utf8(&raw).unwrap().split_once(':').unwrap().to_owned();
    format!("apiKey={key}&apiSecret={secret}")
}

impl Served {
    /// Opens `path`, with `auth` as the `Authorization` header if given; the refusal's status
    /// when the upgrade is refused.
    async fn open(&self, path: &str, auth: Option<&str>) -> Result<Ws, StatusCode> {
        let mut request = format!("ws://{}{path}", self.addr).into_client_request().unwrap();
        if let Some(auth) = auth {
            request.headers_mut().insert("authorization", auth.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(ws),
            Err(WsError::Http(response)) => Err(StatusCode::from_u16(response.status().as_u16()).unwrap()),
            Err(e) => panic!("{path}: {e}"),
        }
    }

    async fn app_socket(&self, path: &str) -> Ws {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.open(&format!("{path}{sep}{}", query_of(&self.t.a)), None).await.unwrap()
    }

    fn stored(&self, resource: &str) -> Vec<Json> {
        let key = ResourceKey { tenant: A.into(), resource: resource.into() };
        let now = switchyard_broker::now_ms() as i64;
        let messages = self.t.store.messages(&key, TimeRange::default(), 100, now).unwrap();
        messages.iter().map(|m| serde_json::from_slice(&m.body).unwrap()).collect()
    }

    async fn post(&self, uri: &str, body: String) -> StatusCode {
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("authorization", &self.t.a)
            .body(Body::from(body))
            .unwrap();
        self.t.app.clone().oneshot(request).await.unwrap().status()
    }
}

/// The next text frame as JSON.
async fn next(ws: &mut Ws) -> Json {
    loop {
        match ws.next().await.expect("socket open").expect("frame") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

#[tokio::test]
async fn credentials_are_checked_before_the_upgrade() {
    let s = serve(1 << 20, WsLimits::default()).await;
    let app_query = query_of(&s.t.a);
    let wrong = app_query.replace("apiSecret=", "apiSecret=x");
    let token = s.t.device.trim_start_matches("Bearer ");
    let paths = [
        "/resources/r1/events/subscribe",
        "/resources/r1/commands/subscribe",
        "/resources/r1/events/publish",
        "/resources/r1/commands/publish",
        "/socket",
    ];
    for path in paths {
        assert_eq!(s.open(path, None).await.err(), Some(StatusCode::UNAUTHORIZED), "{path}: none");
        assert_eq!(s.open(&format!("{path}?{wrong}"), None).await.err(), Some(StatusCode::UNAUTHORIZED), "{path}");
        assert_eq!(s.open(path, Some("Basic eDp5")).await.err(), Some(StatusCode::UNAUTHORIZED), "{path}");
        assert_eq!(s.open(&format!("{path}?token=a.b.c"), None).await.err(), Some(StatusCode::UNAUTHORIZED));
        // Header and URL together are ambiguous.
        let both = s.open(&format!("{path}?{app_query}"), Some(&s.t.a)).await.err();
        assert_eq!(both, Some(StatusCode::BAD_REQUEST), "{path}");
        // Tenant B's key reaches B's resources only (a different namespace): accepted.
        s.open(path, Some(&s.t.b)).await.unwrap();
        s.open(&format!("{path}?{app_query}"), None).await.unwrap();
    }
    // A device token: its own events in, its own commands out; nothing else.
    let own = |p: &str| p.replace("r1", "sensor-1");
    for (path, allowed) in [
        (own(paths[0]), false),
        (own(paths[1]), true),
        (paths[1].to_owned(), false),
        (own(paths[2]), true),
        (paths[2].to_owned(), false),
        (own(paths[3]), false),
        (paths[4].to_owned(), true),
    ] {
        let want = if allowed { None } else { Some(StatusCode::FORBIDDEN) };
        assert_eq!(s.open(&path, Some(&s.t.device)).await.err(), want, "{path} (header)");
        assert_eq!(s.open(&format!("{path}?token={token}"), None).await.err(), want, "{path} (query)");
    }
    // Not a WebSocket handshake: 400 once the credentials pass.
    let request = Request::get("/resources/r1/events/subscribe").header("authorization", &s.t.a).body(Body::empty());
    let response = s.t.app.clone().oneshot(request.unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn publish_frames_are_stored_acknowledged_in_order_and_delivered_live() {
    let s = serve(1 << 20, WsLimits::default()).await;
    let live = s.t.subscriber(A, "a.example/resources/+/events").await;
    let mut listener = s.app_socket("/resources/r1/events/subscribe").await;
    let mut ws = s.app_socket("/resources/r1/events/publish?ttl=1h").await;
    send(&mut ws, r#"{"temp": 21.5, "timestamp": 1000}"#).await;
    send(&mut ws, r#"[{"x": 1}, {"x": 2, "timestamp": "soon"}]"#).await;
    send(&mut ws, r#"[{"x": 3}, {"x": 4}]"#).await;
    send(&mut ws, r#"{"resource": "r2"}"#).await;
    assert_eq!(next(&mut ws).await, json!({"type": "ack", "frame": 1, "message": "1 message stored"}));
    let error = next(&mut ws).await;
    assert_eq!(
        (error["type"].as_str(), error["frame"].as_u64(), error["status"].as_u64()),
        (Some("error"), Some(2), Some(400))
    );
    assert!(error["details"][0].as_str().unwrap().starts_with("[1].timestamp"), "{error}");
    assert_eq!(next(&mut ws).await, json!({"type": "ack", "frame": 3, "message": "2 messages stored"}));
    let error = next(&mut ws).await;
    assert!(error["details"][0].as_str().unwrap().starts_with("resource"), "{error}");

    let first = json!({"temp": 21.5, "timestamp": 1000, "resource": "r1"});
    assert_eq!(s.stored("r1").len(), 3, "on disk when acknowledged");
    assert!(s.stored("r1").contains(&first));
    let topics: Vec<(String, Json)> = delivered(&live);
    assert_eq!(topics.len(), 2, "one live message per frame: {topics:?}");
    assert_eq!(topics[0], ("a.example/resources/r1/events".to_owned(), first.clone()));

    // The subscribe socket hears the stored messages, with increasing sequence numbers.
    let heard = next(&mut listener).await;
    assert_eq!((heard["type"].as_str(), heard["resource"].as_str()), (Some("message"), Some("r1")));
    assert_eq!((heard["channel"].as_str(), &heard["message"]), (Some("events"), &first));
    let (a, b) = (next(&mut listener).await, next(&mut listener).await);
    assert_eq!((&a["message"]["x"], &b["message"]["x"]), (&json!(3), &json!(4)));
    assert!(heard["seq"].as_u64() < a["seq"].as_u64() && a["seq"].as_u64() < b["seq"].as_u64());
}

#[tokio::test]
async fn socket_routes_each_message_by_resource_and_channel() {
    let s = serve(1 << 20, WsLimits::default()).await;
    let live = s.t.subscriber(A, "a.example/resources/#").await;
    let mut r2_commands = s.app_socket("/resources/r2/commands/subscribe").await;
    let mut ws = s.app_socket("/socket").await;
    send(&mut ws, r#"[{"resource": "r1", "x": 1}, {"resource": "r2", "channel": "commands", "do": "on"}]"#).await;
    assert_eq!(next(&mut ws).await, json!({"type": "ack", "frame": 1, "message": "2 messages stored"}));
    let topics: Vec<String> = delivered(&live)
        .into_iter()
        .map(|(t, body)| {
            assert!(body.get("channel").is_none(), "channel is the socket's, not the message's: {body}");
            t
        })
        .collect();
    assert_eq!(topics, ["a.example/resources/r1/events", "a.example/resources/r2/commands"]);
    let command = next(&mut r2_commands).await;
    assert_eq!((command["channel"].as_str(), &command["message"]["do"]), (Some("commands"), &json!("on")));
    assert_eq!(s.stored("r1").len(), 1);
    assert!(s.stored("r2").is_empty(), "a command is not an event");

    for (frame, detail) in [
        (r#"{"x": 1}"#, "resource: missing"),
        (r#"[{"resource": "r1"}, {"resource": "r1", "channel": "other"}]"#, "[1].channel"),
        (r#"[{"resource": "r1"}, 7]"#, "[1]."),
        ("not json", ""),
    ] {
        send(&mut ws, frame).await;
        let error = next(&mut ws).await;
        assert_eq!((error["type"].as_str(), error["status"].as_u64()), (Some("error"), Some(400)), "{frame}");
        assert!(error["details"][0].as_str().unwrap().starts_with(detail), "{frame}: {error}");
    }
    send(&mut ws, r#"[{"resource": "a"}, {"resource": "b"}, {"resource": "c"}, {"resource": "d"}]"#).await;
    assert_eq!(next(&mut ws).await["status"], 413);

    // A device on /socket: its own events only.
    let mut device = s.open("/socket", Some(&s.t.device)).await.unwrap();
    send(&mut device, r#"{"resource": "sensor-1", "v": 1}"#).await;
    assert_eq!(next(&mut device).await["type"], "ack");
    send(&mut device, r#"[{"resource": "sensor-1"}, {"resource": "r1", "v": 1}]"#).await;
    let error = next(&mut device).await;
    assert_eq!(
        (error["status"].as_u64(), error["details"][0].as_str()),
        (Some(403), Some("[1].resource: not this device"))
    );
    send(&mut device, r#"{"resource": "sensor-1", "channel": "commands"}"#).await;
    assert_eq!(next(&mut device).await["status"], 403);
}

#[tokio::test]
async fn a_frame_over_max_body_closes_the_socket_with_1009() {
    let s = serve(256, WsLimits::default()).await;
    let mut ws = s.app_socket("/resources/r1/events/publish").await;
    send(&mut ws, &format!(r#"{{"text": "{}"}}"#, "x".repeat(300))).await;
    match ws.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("no close frame: {other:?}"),
    }
    assert!(s.stored("r1").is_empty());
}

#[tokio::test]
async fn sockets_beyond_the_limit_are_refused_with_503() {
    let s = serve(1 << 20, WsLimits::new(1)).await;
    let mut first = s.app_socket("/resources/r1/events/publish").await;
    let path = format!("/resources/r1/events/subscribe?{}", query_of(&s.t.a));
    assert_eq!(s.open(&path, None).await.err(), Some(StatusCode::SERVICE_UNAVAILABLE));
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    // The permit returns when the server's side of the socket ends.
    loop {
        match s.open(&path, None).await {
            Ok(_) => break,
            Err(status) => assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE),
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_slow_subscriber_is_told_how_many_messages_it_missed() {
    let s = serve(1 << 20, WsLimits { listener_queue: 2, ..WsLimits::default() }).await;
    let mut slow = s.app_socket("/resources/r1/events/subscribe").await;
    // Far more than the socket buffers hold, sent while the subscriber reads nothing.
    const SENT: u64 = 600;
    let padding = "p".repeat(60_000);
    for i in 0..SENT {
        assert_eq!(
            s.post("/resources/r1/events?store=true", format!(r#"{{"i": {i}, "pad": "{padding}"}}"#)).await,
            StatusCode::OK
        );
    }
    // Every message is either heard, in order, or counted as missed; something was missed.
    let (mut heard, mut missed, mut last) = (0, 0, -1);
    while heard + missed < SENT {
        let frame = next(&mut slow).await;
        match frame["type"].as_str() {
            Some("message") => {
                let i = frame["message"]["i"].as_i64().unwrap();
                assert!(i > last, "in order");
                last = i;
                heard += 1;
            }
            Some("missed") => missed += frame["count"].as_u64().unwrap(),
            _ => panic!("{frame}"),
        }
    }
    assert_eq!(heard + missed, SENT);
    assert!(missed > 0, "the queue of 2 overflowed");
}
