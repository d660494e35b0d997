//! Data-driven tests of normalization and metric extraction, and a property test that no
//! input makes it panic.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::*;
use crate::error::ErrorKind;

const NOW: i64 = 1_796_452_200_000;

fn tenant() -> Domain {
    Domain::parse("app.example.com").unwrap()
}

fn rid(s: &str) -> ResourceId {
    ResourceId::parse(s).unwrap()
}

fn run_with(
    input: &[u8],
    resource: Option<&str>,
    options: Options,
    limits: &Limits,
) -> Result<Normalized, IntakeError> {
    let tenant = tenant();
    let resource = resource.map(rid);
    let ctx = Context {
        tenant: &tenant,
        resource: resource.as_ref(),
        now_ms: NOW,
        options,
        keep: 100,
        retention: None,
        limits,
        channel: Channel::Events,
    };
    normalize(input, &ctx)
}

fn run(input: &str, resource: Option<&str>) -> Result<Normalized, IntakeError> {
    run_with(input.as_bytes(), resource, Options::default(), &Limits::default())
}

fn payload(n: &Normalized) -> Json {
    serde_json::from_slice(&n.payload).unwrap()
}

fn points(n: &Normalized) -> Vec<(String, Value)> {
    let mut p: Vec<(String, Value)> =
        n.data.iter().flat_map(|d| d.points.iter().map(|(k, v)| (k.to_string(), v.clone()))).collect();
    p.sort_by(|a, b| a.0.cmp(&b.0));
    p
}

fn num(name: &str, v: f64) -> (String, Value) {
    (name.to_owned(), Value::Number(v))
}

fn text(name: &str, v: &str) -> (String, Value) {
    (name.to_owned(), Value::Text(Arc::from(v)))
}

#[test]
fn normalizes_objects_and_arrays() {
    for (input, resource, expected) in [
        (r#"{"temp": 21.3}"#, Some("dev"), json!({"temp": 21.3, "timestamp": NOW, "resource": "dev"})),
        (r#"{"temp": 1, "timestamp": 5}"#, Some("dev"), json!({"temp": 1, "timestamp": 5, "resource": "dev"})),
        (
            r#"{"t": 1, "timestamp": "2026-12-05T06:30:00.5Z"}"#,
            Some("dev"),
            json!({"t": 1, "timestamp": 1_796_452_200_500i64, "resource": "dev"}),
        ),
        (r#" {"resource": "dev"} "#, Some("dev"), json!({"timestamp": NOW, "resource": "dev"})),
        (r#"{"resource": "other", "x": 1}"#, None, json!({"x": 1, "timestamp": NOW, "resource": "other"})),
        (
            r#"[{"x": 1}, {"x": 2, "timestamp": 7}]"#,
            Some("dev"),
            json!([{"x": 1, "timestamp": NOW, "resource": "dev"}, {"x": 2, "timestamp": 7, "resource": "dev"}]),
        ),
        (
            r#"[{"resource": "a"}, {"resource": "b"}]"#,
            None,
            json!([{"timestamp": NOW, "resource": "a"}, {"timestamp": NOW, "resource": "b"}]),
        ),
        (
            r#"{"domain": "x", "a": [1, {"b": 2}]}"#,
            Some("d"),
            json!({"domain": "x", "a": [1, {"b": 2}], "timestamp": NOW, "resource": "d"}),
        ),
    ] {
        let n = run(input, resource).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(payload(&n), expected, "{input}");
        let bodies: Vec<Json> = n.data.iter().map(|d| serde_json::from_slice(&d.body).unwrap()).collect();
        let expected_bodies = if expected.is_array() { expected.as_array().unwrap().clone() } else { vec![expected] };
        assert_eq!(bodies, expected_bodies, "{input}");
        assert_eq!(n.count, bodies.len());
        for (d, body) in n.data.iter().zip(&bodies) {
            assert_eq!(Some(d.ts), body["timestamp"].as_i64());
            assert_eq!(Some(&*d.resource.resource), body["resource"].as_str());
            assert_eq!(&*d.resource.tenant, "app.example.com");
            assert_eq!(d.keep, 100);
            assert_eq!(d.expires_at, None);
        }
    }
}

#[test]
fn refusals_name_the_field() {
    for (input, resource, error, detail) in [
        ("{", Some("d"), "invalid JSON", "EOF while parsing an object at line 1 column 1"),
        ("", Some("d"), "invalid JSON", "EOF while parsing a value at line 1 column 0"),
        ("42", Some("d"), "not a JSON object or array of objects", "got a number"),
        (r#""x""#, Some("d"), "not a JSON object or array of objects", "got a string"),
        ("null", Some("d"), "not a JSON object or array of objects", "got null"),
        ("[]", Some("d"), "empty array", "an array must hold at least one message"),
        ("[{}, 1]", Some("d"), "not a JSON object or array of objects", "[1]: not a JSON object (got a number)"),
        ("[[{}]]", Some("d"), "not a JSON object or array of objects", "[0]: not a JSON object (got an array)"),
        (
            r#"{"resource": "other"}"#,
            Some("d"),
            "invalid message",
            r#"resource: "other" does not match the resource of the topic or path ("d")"#,
        ),
        (r#"{"resource": 5}"#, Some("d"), "invalid message", "resource: not a string (got a number)"),
        (
            r#"{"resource": "a/b"}"#,
            None,
            "invalid message",
            "resource: resource id contains a character that is not allowed",
        ),
        (r#"{"resource": ""}"#, None, "invalid message", "resource: resource id is empty"),
        (
            r#"{"x": 1}"#,
            None,
            "invalid message",
            "resource: missing (required when the topic or path names no resource)",
        ),
        (
            r#"[{"resource": "a"}, {"x": 1}]"#,
            None,
            "invalid messages",
            "[1].resource: missing (required when the topic or path names no resource)",
        ),
        (r#"{"timestamp": true}"#, Some("d"), "invalid message", "timestamp: not a number or ISO-8601 string"),
        (
            r#"[{}, {}, {"timestamp": null}]"#,
            Some("d"),
            "invalid messages",
            "[2].timestamp: not a number or ISO-8601 string",
        ),
        (r#"{"timestamp": -1}"#, Some("d"), "invalid message", "timestamp: out of range (1970-01-01 to 9999-12-31)"),
        (
            r#"{"timestamp": "later"}"#,
            Some("d"),
            "invalid message",
            r#"timestamp: "later" is not an ISO-8601 date-time"#,
        ),
        (r#"{"messageId": ""}"#, Some("d"), "invalid message", "messageId: empty"),
        (r#"{"messageId": 1.5}"#, Some("d"), "invalid message", "messageId: not a string or integer (got a number)"),
        (r#"{"messageId": {}}"#, Some("d"), "invalid message", "messageId: not a string or integer (got an object)"),
        (r#"{"": 1}"#, Some("d"), "invalid message", ": an empty key cannot name a metric"),
        (r#"{"a": {"": true}}"#, Some("d"), "invalid message", "a.: an empty key cannot name a metric"),
    ] {
        let e = run(input, resource).expect_err(input);
        assert_eq!(e.kind, ErrorKind::Invalid, "{input}");
        assert_eq!(e.error, error, "{input}");
        assert_eq!(e.details.first().map(String::as_str), Some(detail), "{input}: {:?}", e.details);
    }
}

#[test]
fn every_problem_of_every_message_is_reported() {
    let e = run(r#"[{"resource": "x", "timestamp": "no"}, {}, {"messageId": false}]"#, Some("d")).unwrap_err();
    assert_eq!(e.details.len(), 3, "{:?}", e.details);
    assert!(e.details[0].starts_with("[0].resource: "));
    assert!(e.details[1].starts_with("[0].timestamp: "));
    assert!(e.details[2].starts_with("[2].messageId: "));
}

#[test]
fn metrics_follow_spec_4_3() {
    let input = r#"{
        "temp": 21.3, "count": 7, "big": 18446744073709551615, "neg": -3,
        "on": true, "off": false, "state": "open", "list": [1, 2, {"x": 1}], "none": null,
        "sensors": {"temp": 20.5, "deep": {"er": {"still": 1}}, "ok": true, "label": "b", "arr": [1], "empty": {}},
        "resource": "d", "timestamp": 9, "domain": "app.example.com", "messageId": "m-1",
        "meta": {"resource": 1, "timestamp": 2, "domain": 3, "messageId": 4},
        "a.b": 1, "a": {"b": 2}
    }"#;
    let n = run(input, Some("d")).unwrap();
    assert_eq!(
        points(&n),
        [
            num("a.b", 1.0),
            num("a.b", 2.0),
            num("big", 18_446_744_073_709_551_615.0),
            num("count", 7.0),
            num("meta.domain", 3.0),
            num("meta.messageId", 4.0),
            num("meta.resource", 1.0),
            num("meta.timestamp", 2.0),
            num("neg", -3.0),
            num("off", 0.0),
            num("on", 1.0),
            num("sensors.deep.er.still", 1.0),
            text("sensors.label", "b"),
            num("sensors.ok", 1.0),
            num("sensors.temp", 20.5),
            text("state", "open"),
            num("temp", 21.3),
        ]
    );
    assert_eq!(n.data[0].ts, 9);
    assert_eq!(n.data[0].message_id.as_deref(), Some("m-1"));
    // The stored message keeps the exact digits of integers beyond 2^53.
    assert!(std::str::from_utf8(&n.data[0].body).unwrap().contains("18446744073709551615"));
}

#[test]
fn message_ids() {
    for (id, expected) in [
        (json!("abc"), Some("abc")),
        (json!(42), Some("42")),
        (json!(18_446_744_073_709_551_615u64), Some("18446744073709551615")),
        (json!(-1), Some("-1")),
        (json!(null), None),
    ] {
        let input = json!({"messageId": id}).to_string();
        let n = run(&input, Some("d")).unwrap();
        assert_eq!(n.data[0].message_id.as_deref(), expected, "{input}");
        assert!(n.data[0].points.is_empty(), "{input}");
    }
    let limits = Limits { max_message_id: 4, ..Limits::default() };
    assert!(run_with(br#"{"messageId": "abcd"}"#, Some("d"), Options::default(), &limits).is_ok());
    let e = run_with(br#"{"messageId": "abcde"}"#, Some("d"), Options::default(), &limits).unwrap_err();
    assert_eq!(e.details, ["messageId: longer than 4 bytes"]);
}

#[test]
fn options_apply() {
    let options = Options { store: true, forward: false, ttl: Some(Duration::from_secs(60)) };
    let n = run_with(br#"[{"x": 1, "timestamp": 0}, {"x": 2}]"#, Some("d"), options, &Limits::default()).unwrap();
    assert_eq!(n.options, options);
    // The ttl counts from the receive time, not the (here 1970) message timestamp.
    assert!(n.data.iter().all(|d| d.expires_at == Some(NOW + 60_000)));
    let options = Options { store: false, ..Options::default() };
    let n = run_with(br#"[{"x": 1}, {"x": 2}]"#, Some("d"), options, &Limits::default()).unwrap();
    assert!(n.data.is_empty());
    assert_eq!(n.count, 2);
    assert_eq!(payload(&n).as_array().unwrap().len(), 2);
}

#[test]
fn depth_is_capped_without_recursion() {
    let limits = Limits { max_depth: 3, ..Limits::default() };
    let ok = br#"{"a": {"b": {"c": 1}}}"#;
    assert!(run_with(ok, Some("d"), Options::default(), &limits).is_ok());
    let ok_in_array = br#"[{"a": {"b": {"c": 1}}}]"#;
    assert!(run_with(ok_in_array, Some("d"), Options::default(), &limits).is_ok());
    let ok_strings = br#"{"a": {"b": {"c": "{[{[{[\"{"}}}"#;
    assert!(run_with(ok_strings, Some("d"), Options::default(), &limits).is_ok());
    for deep in [&br#"{"a": {"b": {"c": {}}}}"#[..], br#"[{"a": {"b": {"c": {}}}}]"#, br#"{"a": [[[1]]]}"#] {
        let e = run_with(deep, Some("d"), Options::default(), &limits).unwrap_err();
        assert_eq!(e.error, "nested too deeply", "{}", String::from_utf8_lossy(deep));
    }
    // 10,000 levels: refused by the scan, with the default limits, on a small stack.
    let deep = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let also_deep = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
    let handle = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            let e = run(&deep, Some("d")).unwrap_err();
            let e2 = run(&also_deep, Some("d")).unwrap_err();
            (e, e2)
        })
        .unwrap();
    let (e, e2) = handle.join().unwrap();
    assert_eq!(e.error, "nested too deeply");
    assert_eq!(e.details, ["more than 32 levels of objects and arrays (at byte 160)"]);
    assert_eq!(e2.error, "nested too deeply");
    // The deepest accepted nesting is flattened without recursion.
    let deepest = format!("{}1{}", "{\"a\":".repeat(32), "}".repeat(32));
    let n = run(&deepest, Some("d")).unwrap();
    assert_eq!(points(&n), [num(&vec!["a"; 32].join("."), 1.0)]);
    // A limit above what the parser allows is clamped.
    let limits = Limits { max_depth: 10_000, ..Limits::default() };
    let e = run_with(&[b'['; 200], Some("d"), Options::default(), &limits).unwrap_err();
    assert_eq!(e.error, "nested too deeply");
}

#[test]
fn sizes_are_capped() {
    let limits = Limits { max_messages: 2, max_metrics: 3, max_metric_name: 5, ..Limits::default() };
    let check = |input: &str| run_with(input.as_bytes(), Some("d"), Options::default(), &limits);
    assert!(check("[{}, {}]").is_ok());
    let e = check("[{}, {}, {}]").unwrap_err();
    assert_eq!((e.kind, e.http_status()), (ErrorKind::TooLarge, 413));
    assert_eq!(e.details, ["3 messages, at most 2 per request"]);

    assert!(check(r#"{"a": 1, "b": 2, "c": {"d": 3}, "e": [], "f": null, "resource": "d"}"#).is_ok());
    let e = check(r#"[{"a": 1}, {"a": 1, "b": 2, "c": {"d": 3, "e": 4}}]"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert_eq!(e.details, ["[1].(message): more than 3 metrics in one message"]);

    assert!(check(r#"{"ab": {"cd": 1}}"#).is_ok());
    let e = check(r#"{"ab": {"cde": 1}}"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(e.details, ["ab.cde: metric name longer than 5 bytes"]);
    // A long key on the path is refused before anything is built beneath it.
    let e = check(&format!(r#"{{"{}": {{"a": 1}}}}"#, "k".repeat(10_000))).unwrap_err();
    assert_eq!(e.details.len(), 1);
    assert!(e.details[0].len() < 200, "{}", e.details[0]);
}

proptest! {
    #[test]
    fn arbitrary_json_never_panics(value in arb_json(), as_array in any::<bool>(), with_resource in any::<bool>()) {
        let value = if as_array { json!([value]) } else { value };
        let input = serde_json::to_vec(&value).unwrap();
        let resource = with_resource.then_some("d");
        if let Ok(n) = run_with(&input, resource, Options::default(), &Limits::default()) {
            let delivered = payload(&n);
            let objects = if value.is_array() { delivered.as_array().unwrap().clone() } else { vec![delivered] };
            prop_assert_eq!(objects.len(), n.count);
            prop_assert_eq!(n.data.len(), n.count);
            for (object, record) in objects.iter().zip(&n.data) {
                prop_assert_eq!(object["timestamp"].as_i64(), Some(record.ts));
                prop_assert_eq!(object["resource"].as_str(), Some(&*record.resource.resource));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = run_with(&bytes, Some("d"), Options::default(), &Limits::default());
    }
}

fn arb_json() -> impl Strategy<Value = Json> {
    let key = prop_oneof![
        Just("resource".to_owned()),
        Just("timestamp".to_owned()),
        Just("messageId".to_owned()),
        Just("domain".to_owned()),
        Just(String::new()),
        "[a-z.]{1,4}",
    ];
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Json::from),
        Just(Json::from("d")),
        Just(Json::from("2026-12-05T06:30:00Z")),
        "\\PC{0,8}".prop_map(Json::from),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn the_example_of_docs_messages_md() {
    let input = r#"{"temp": 21.3, "sensors": {"co2": 412, "door": true}, "state": "ok", "samples": [1, 2]}"#;
    let n = run(input, Some("sensor-1")).unwrap();
    let expected = json!({"resource": "sensor-1", "samples": [1, 2], "sensors": {"co2": 412, "door": true}, "state": "ok", "temp": 21.3, "timestamp": NOW});
    assert_eq!(payload(&n), expected);
    assert_eq!(
        points(&n),
        [num("sensors.co2", 412.0), num("sensors.door", 1.0), text("state", "ok"), num("temp", 21.3)]
    );
}
