//! Commands over HTTP, in process: sent through the pipeline and the core to MQTT subscribers
//! of the commands topic and into the commands history (never the events cache or metrics),
//! listed back, and only by whom SPEC §2.5 allows.

use axum::http::StatusCode;
use serde_json::json;
use switchyard_broker::Outgoing;
use switchyard_storage::data::{Channel, ResourceKey, TimeRange};

use crate::data_tests::{A, B};
use crate::ingest_tests::{delivered, start};

#[tokio::test]
async fn a_command_reaches_subscribers_and_the_history_not_the_events() {
    let t = start(1 << 20).await;
    let device = t.subscriber(A, "a.example/resources/sensor-1/commands").await;
    let events = t.subscriber(A, "a.example/resources/+/events").await;
    let other_tenant = t.subscriber(B, "#").await;
    let (status, body) = t.post("/resources/sensor-1/commands", &t.a, r#"{"led": "on", "level": 3}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "1 message stored");
    let command = body["content"].clone();
    assert_eq!((command["led"].as_str(), command["resource"].as_str()), (Some("on"), Some("sensor-1")));
    assert_eq!(delivered(&device), [("a.example/resources/sensor-1/commands".to_owned(), command.clone())]);
    assert!(delivered(&events).is_empty() && delivered(&other_tenant).is_empty());

    // Stored in the commands history only: no events, no metrics.
    assert!(t.stored(A, "sensor-1").is_empty(), "not among the events");
    let (status, list) = t.get("/resources/sensor-1/series", &t.a).await;
    assert_eq!((status, list), (StatusCode::OK, json!([])), "commands are never metrics");
    let (status, list) = t.get("/resources/sensor-1/commands", &t.a).await;
    assert_eq!((status, list), (StatusCode::OK, json!([command])));

    // ttl: the stored command expires, and its delivery carries the expiry.
    let (status, body) = t.post("/resources/sensor-1/commands?ttl=1h", &t.a, r#"{"led": "off"}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut items = Vec::new();
    device.drain(&mut items);
    let now = switchyard_broker::now_ms();
    let expires = items.iter().find_map(|i| match i {
        Outgoing::Publish(d) => d.message.expires_at_ms,
        _ => None,
    });
    assert!(expires.is_some_and(|at| at > now && at <= now + 3_600_000), "{expires:?}");
    let key = ResourceKey { tenant: A.into(), resource: "sensor-1".into() }.of_channel(Channel::Commands);
    let stored = t.store.messages(&key, TimeRange::default(), 10, (now + 3_600_001) as i64).unwrap();
    assert_eq!(stored.len(), 1, "the command with a ttl is expired an hour later");

    // History: newest first, limited.
    let (status, list) = t.get("/resources/sensor-1/commands?limit=1", &t.a).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["led"], "off");
    for bad in ["limit=0", "limit=1001", "limit=x"] {
        let (status, _) = t.get(&format!("/resources/sensor-1/commands?{bad}"), &t.a).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn only_applications_send_and_a_device_reads_only_its_own_commands() {
    let t = start(1 << 20).await;
    let (status, _) = t.post("/resources/sensor-1/commands", &t.a, r#"{"go": 1}"#).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = t.post("/resources/sensor-1/commands", &t.device, r#"{"go": 2}"#).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a device sends no commands, not even to itself: {body}");
    let (status, _) = t.post("/resources/sensor-1/commands", "", r#"{"go": 2}"#).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = t.post("/resources/sensor-1/commands", "Basic AAAA", r#"{"go": 2}"#).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = t.post("/resources/sensor-1/commands", &t.a, "not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = t.post("/resources/bad%20id/commands", &t.a, r#"{"go": 2}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, list) = t.get("/resources/sensor-1/commands", &t.device).await;
    assert_eq!(status, StatusCode::OK, "the device reads its own commands");
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, _) = t.get("/resources/sensor-2/commands", &t.device).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = t.get("/resources/sensor-1/commands", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, list) = t.get("/resources/sensor-1/commands", &t.b).await;
    assert_eq!((status, list), (StatusCode::OK, json!([])), "another tenant's resource of that name is empty");
}

#[tokio::test]
async fn stream_only_routes_refuse_other_formats() {
    let t = start(1 << 20).await;
    for uri in ["/resources/sensor-1/events", "/messages"] {
        let (status, body) = t.get(uri, &t.a).await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{uri}: {body}");
    }
}
