//! Arbitrary bytes through `normalize` with arbitrary limits and options: errors are fine,
//! panics are not. Whatever is accepted must round-trip: the payload and every stored body parse
//! as JSON objects carrying `timestamp` (epoch ms, the record's) and `resource`, the metrics stay
//! inside the limits, and normalizing a stored body again gives the same record.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_identity::{Domain, ResourceId};
use switchyard_pipeline::timestamp::{MAX_TS, MIN_TS};
use switchyard_pipeline::{Channel, Context, Limits, Options, normalize};
use switchyard_series::Value as PointValue;

/// The limits and context the fuzzer picks, then the body.
type Input<'a> = (u8, u8, u16, u16, u8, u8, u64, &'a [u8]);

fuzz_target!(|input: Input<'_>| {
    let (max_messages, max_depth, max_metrics, max_metric_name, max_message_id, flags, now, body) = input;
    let limits = Limits {
        max_messages: usize::from(max_messages),
        max_depth: usize::from(max_depth),
        max_metrics: usize::from(max_metrics),
        max_metric_name: usize::from(max_metric_name),
        max_message_id: usize::from(max_message_id),
    };
    let tenant = Domain::parse("a.example").expect("a valid domain");
    let path = ResourceId::parse("dev-1").expect("a valid resource id");
    let resource = (flags & 1 == 1).then_some(&path);
    let options = Options {
        store: flags & 2 == 0,
        forward: flags & 4 == 0,
        ttl: (flags & 8 == 8).then(|| Duration::from_secs(now % 1_000_000)),
    };
    // The receive time is a real clock's: always a valid timestamp.
    let now_ms = (now % (MAX_TS as u64 + 1)) as i64;
    let channel = if flags & 16 == 16 { Channel::Commands } else { Channel::Events };
    let retention = (flags & 32 == 32).then(|| Duration::from_secs(now % 1_000_000 / 2 + 1));
    let ctx = Context { tenant: &tenant, resource, now_ms, options, keep: 100, retention, limits: &limits, channel };
    let Ok(n) = normalize(body, &ctx) else { return };

    assert!(n.count >= 1 && n.count <= limits.max_messages.max(1));
    assert_eq!(n.data.len(), if options.store { n.count } else { 0 });
    let payload: Value = serde_json::from_slice(&n.payload).expect("the payload is JSON");
    let messages = match &payload {
        Value::Array(items) => items.clone(),
        one => vec![one.clone()],
    };
    assert_eq!(messages.len(), n.count);
    for m in &messages {
        let ts = m["timestamp"].as_i64().expect("timestamp in epoch ms");
        assert!((MIN_TS..=MAX_TS).contains(&ts));
        let r = m["resource"].as_str().expect("resource");
        if let Some(path) = resource {
            assert_eq!(r, path.as_str());
        }
    }
    for record in &n.data {
        let body: Value = serde_json::from_slice(&record.body).expect("the stored body is JSON");
        assert_eq!(body["timestamp"].as_i64(), Some(record.ts));
        assert_eq!(body["resource"].as_str(), Some(&*record.resource.resource));
        assert!(record.points.len() <= limits.max_metrics);
        // A ttl or a retention bounds the expiry, and the shorter wins.
        let bound = |d: Option<Duration>| d.map(|d| now_ms + d.as_millis() as i64);
        let expected = match (bound(options.ttl), bound(retention)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        assert_eq!(record.expires_at, expected);
        if channel == Channel::Commands {
            assert!(record.points.is_empty(), "a command yields no metrics");
        }
        for (name, _) in &record.points {
            assert!(!name.is_empty() && name.len() <= limits.max_metric_name);
        }
        // Normalizing what was stored is a fixed point.
        let own = ResourceId::parse(&record.resource.resource).expect("a stored resource id is valid");
        let again_ctx = Context { resource: Some(&own), ..ctx };
        let again = normalize(&record.body, &again_ctx).expect("a normalized message normalizes again");
        let again = &again.data[0];
        assert_eq!((again.ts, &again.message_id), (record.ts, &record.message_id));
        assert_eq!(again.points.len(), record.points.len());
        for ((name, value), (name2, value2)) in record.points.iter().zip(&again.points) {
            assert_eq!(name, name2);
            assert!(same(value, value2), "{name}: {value:?} became {value2:?}");
        }
    }
});

/// Equal values; numbers within a few units in the last place, because the JSON parser's
/// default float reading may be one unit off on long mantissas.
fn same(a: &PointValue, b: &PointValue) -> bool {
    match (a, b) {
        (PointValue::Number(x), PointValue::Number(y)) => (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON,
        (PointValue::Text(x), PointValue::Text(y)) => x == y,
        _ => false,
    }
}
