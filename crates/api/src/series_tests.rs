//! The metrics API in process (set-up in `data_tests`): listing and latest values, aggregates per
//! bucket checked against an independent computation over data that spans bucket edges and a
//! range that cuts into its first bucket, order and limit, several queries at once, deletion by
//! range and metric. The aggregates are checked three times: over raw points, over a store that
//! serves most points as sealed chunks (answered from their summaries where they lie within a
//! bucket), and over the embedded store after sealing runs.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use serde_json::{Value as Json, json};
use switchyard_series::chunk::Chunk;
use switchyard_storage::data::{
    Block, DataStore, Ingest, MessageStore, ResourceKey, SeriesInfo, SeriesStore, StoredMessage, TimeRange, Written,
};
use switchyard_storage::{MemoryDataStore, StorageError};
use switchyard_storage_embedded::{DataConfig, EmbeddedDataStore};

use crate::data_tests::{A, HOUR, T0, TestApp, ingest, start, start_with};

/// Points per sealed chunk in [`Chunked`].
const CHUNK: usize = 40;

/// Serves a [`MemoryDataStore`]'s points as sealed chunks of [`CHUNK`] points, the rest raw.
struct Chunked(Arc<MemoryDataStore>);

impl MessageStore for Chunked {
    fn messages(
        &self,
        r: &ResourceKey,
        range: TimeRange,
        limit: usize,
        now: i64,
    ) -> Result<Vec<StoredMessage>, StorageError> {
        self.0.messages(r, range, limit, now)
    }
    fn current(&self, r: &ResourceKey, now: i64) -> Result<Option<StoredMessage>, StorageError> {
        self.0.current(r, now)
    }
    fn delete_messages(&self, r: &ResourceKey, range: TimeRange) -> Result<u64, StorageError> {
        self.0.delete_messages(r, range)
    }
}

impl SeriesStore for Chunked {
    fn series(&self, r: &ResourceKey, now: i64) -> Result<Vec<SeriesInfo>, StorageError> {
        self.0.series(r, now)
    }
    fn scan(&self, r: &ResourceKey, metric: &str, _range: TimeRange, now: i64) -> Result<Vec<Block>, StorageError> {
        // Whole chunks, as a store would keep them: scan everything, seal, hand over all blocks.
        let mut blocks = Vec::new();
        for block in self.0.scan(r, metric, TimeRange::default(), now)? {
            let Block::Raw(points) = block else { unreachable!("the memory store serves raw points") };
            let sealed = points.len() / CHUNK * CHUNK;
            blocks.extend(points[..sealed].chunks(CHUNK).map(|c| Block::Sealed(Chunk::encode(c))));
            blocks.push(Block::Raw(points[sealed..].to_vec()));
        }
        Ok(blocks)
    }
    fn delete_points(
        &self,
        r: &ResourceKey,
        range: TimeRange,
        metrics: Option<&[String]>,
    ) -> Result<u64, StorageError> {
        self.0.delete_points(r, range, metrics)
    }
}

impl DataStore for Chunked {
    fn write(&self, batch: &[Ingest], now: i64) -> Result<Vec<Written>, StorageError> {
        self.0.write(batch, now)
    }
    fn drop_tenant(&self, tenant: &str) -> Result<(), StorageError> {
        self.0.drop_tenant(tenant)
    }
    fn maintain(&self, now: i64) -> Result<(), StorageError> {
        self.0.maintain(now)
    }
}

/// A reading every 37 s from `T0 - 50 min` to `T0 + 130 min`: decimals that are not in order.
fn readings() -> Vec<(i64, f64)> {
    (0..292).map(|i| (T0 - 50 * 60_000 + i * 37_000, ((i * 7919) % 1000) as f64 / 10.0 - 20.0)).collect()
}

async fn filled() -> TestApp {
    fill(start().await)
}

fn fill(t: TestApp) -> TestApp {
    fill_sealing(t, 0)
}

/// Writes the readings in batches of `seal_every` (all at once when 0), sealing what the store
/// holds after each but the last.
fn fill_sealing(t: TestApp, seal_every: usize) -> TestApp {
    let batch: Vec<_> = readings().iter().map(|&(ts, v)| ingest(A, "r1", ts, &[("temp", v), ("hum", 50.0)])).collect();
    let size = if seal_every == 0 { batch.len() } else { seal_every };
    for (i, part) in batch.chunks(size).enumerate() {
        t.write(part);
        if (i + 1) * size < batch.len() {
            // Far enough ahead that every point is old enough to seal.
            t.store.maintain(T0 + 24 * HOUR).unwrap();
        }
    }
    t
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Linear interpolation between the closest ranks over sorted `v` (numpy's default).
fn percentile(v: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

/// min, max, mean, median, sum, count, first, last, std (sample: n − 1), percentile(95) of `values`
/// in time order.
fn expected(values: &[f64]) -> Vec<f64> {
    let n = values.len() as f64;
    let sum: f64 = values.iter().sum();
    let mean = sum / n;
    let std = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt();
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    vec![
        sorted[0],
        sorted[sorted.len() - 1],
        mean,
        percentile(&sorted, 50.0),
        sum,
        n,
        values[0],
        values[values.len() - 1],
        std,
        percentile(&sorted, 95.0),
    ]
}

const ALL: &str = "min,max,mean,median,sum,count,first,last,std,percentile(95)";

fn rows(body: &Json) -> Vec<Vec<Json>> {
    body["series"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|r| r.as_array().unwrap().clone())
        .collect()
}

fn assert_row(row: &[Json], ts: i64, want: &[f64]) {
    assert_eq!(row[0].as_i64(), Some(ts), "{row:?}");
    assert_eq!(row.len(), want.len() + 1, "{row:?}");
    for (i, (got, want)) in row[1..].iter().zip(want).enumerate() {
        let got = got.as_f64().unwrap_or_else(|| panic!("column {i} of {row:?}"));
        assert!(close(got, *want), "column {i} at {ts}: {got} != {want}");
    }
}

#[tokio::test]
async fn hourly_aggregates_match_an_independent_computation() {
    check_hourly_aggregates(filled().await).await;
}

#[tokio::test]
async fn hourly_aggregates_from_sealed_chunks_match_too() {
    let store = Arc::new(Chunked(Arc::new(MemoryDataStore::default())));
    check_hourly_aggregates(fill(start_with(store).await)).await;
}

#[tokio::test]
async fn hourly_aggregates_from_the_embedded_store_match_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedDataStore::open(dir.path(), DataConfig::default()).unwrap());
    // Sealed in runs that end mid-hour, the last run left unsealed.
    let t = fill_sealing(start_with(store.clone()).await, 70);
    let key = ResourceKey { tenant: A.into(), resource: "r1".into() };
    let blocks = store.scan(&key, "temp", TimeRange::default(), T0).unwrap();
    let sealed = blocks.iter().filter(|b| matches!(b, Block::Sealed(_))).count();
    assert!(sealed >= 1 && matches!(blocks.last(), Some(Block::Raw(_))), "{} blocks, {sealed} sealed", blocks.len());
    check_hourly_aggregates(t).await;
}

async fn check_hourly_aggregates(t: TestApp) {
    // The range starts 20 minutes into the first hour and ends 10 minutes into the last.
    let (from, until) = (T0 - 40 * 60_000, T0 + 2 * HOUR + 10 * 60_000);
    let uri = format!("/resources/r1/series/temp?from={from}&until={until}&aggregates={ALL}&grouping=1h");
    let (status, body) = t.get(&uri, &t.a).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let echo = &body["query"];
    assert_eq!((echo["from"].as_i64(), echo["until"].as_i64()), (Some(from), Some(until)));
    assert_eq!(echo["aggregates"].as_array().unwrap().len(), 10);
    assert_eq!(echo["grouping"], "1h");

    let in_range: Vec<(i64, f64)> = readings().into_iter().filter(|(ts, _)| (from..until).contains(ts)).collect();
    let got = rows(&body);
    let starts = [T0 - HOUR, T0, T0 + HOUR, T0 + 2 * HOUR];
    assert_eq!(got.len(), starts.len(), "{body}");
    for (row, start) in got.iter().zip(starts) {
        let bucket: Vec<f64> =
            in_range.iter().filter(|(ts, _)| (start..start + HOUR).contains(ts)).map(|p| p.1).collect();
        assert!(bucket.len() > 3, "each bucket holds data");
        assert_row(row, start, &expected(&bucket));
    }

    // Other bucket widths cover the same points: counts add up.
    for grouping in ["15m", "2h", "1d", "auto"] {
        let uri =
            format!("/resources/r1/series/temp?from={from}&until={until}&aggregates=count,sum&grouping={grouping}");
        let (status, body) = t.get(&uri, &t.a).await;
        assert_eq!(status, StatusCode::OK, "{grouping}: {body}");
        let (count, sum) =
            rows(&body).iter().fold((0.0, 0.0), |(c, s), r| (c + r[1].as_f64().unwrap(), s + r[2].as_f64().unwrap()));
        assert_eq!(count, in_range.len() as f64, "{grouping}");
        assert!(close(sum, in_range.iter().map(|p| p.1).sum()), "{grouping}");
    }
    let uri = format!("/resources/r1/series/temp?from={from}&until={until}&aggregates=max,count&grouping=15m");
    let (_, body) = t.get(&uri, &t.a).await;
    for row in rows(&body) {
        assert_eq!(row[0].as_i64().unwrap().rem_euclid(15 * 60_000), 0, "buckets aligned to UTC: {row:?}");
    }
}

#[tokio::test]
async fn raw_points_order_limit_and_ungrouped_aggregates() {
    let t = filled().await;
    let all = readings();
    let (from, until) = (all[10].0, all[20].0);
    let uri = format!("/resources/r1/series/temp?from={from}&until={until}");
    let (status, body) = t.get(&uri, &t.a).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let want: Vec<Json> = all[10..20].iter().map(|(ts, v)| json!([ts, v])).collect();
    assert_eq!(body["series"], Json::Array(want.clone()));

    let (_, body) = t.get(&format!("{uri}&order=desc&limit=3"), &t.a).await;
    let newest: Vec<Json> = want.iter().rev().take(3).cloned().collect();
    assert_eq!(body["series"], Json::Array(newest));
    assert_eq!((body["query"]["order"].as_str(), body["query"]["limit"].as_i64()), (Some("desc"), Some(3)));

    let (_, body) = t.get(&format!("{uri}&aggregates={ALL}&grouping=1h&order=desc&limit=1"), &t.a).await;
    assert_eq!(rows(&body).len(), 1, "{body}");

    // Without grouping, the aggregates cover the whole range in one row, in request order.
    let (_, body) = t.get(&format!("{uri}&aggregates=last,count,first"), &t.a).await;
    let got = rows(&body);
    assert_eq!(got.len(), 1, "{body}");
    assert_eq!(got[0][1..], [json!(all[19].1), json!(10.0), json!(all[10].1)]);

    // The default range is the last 7 days: this data is older.
    let (_, body) = t.get("/resources/r1/series/temp", &t.a).await;
    assert_eq!(body["series"], json!([]));
    let until = body["query"]["until"].as_i64().unwrap();
    assert_eq!(until - body["query"]["from"].as_i64().unwrap(), 7 * 24 * HOUR + 1);
}

#[tokio::test]
async fn series_listing_latest_and_several_queries() {
    let t = filled().await;
    t.write(&[ingest(A, "r2", T0, &[("temp", 1.5)])]);
    let last = *readings().last().unwrap();
    let (status, body) = t.get("/resources/r1/series", &t.a).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!([
            {"name": "hum", "latest": {"timestamp": last.0, "value": 50.0}},
            {"name": "temp", "latest": {"timestamp": last.0, "value": last.1}},
        ])
    );
    let (status, body) = t.get("/resources/r1/series/temp/latest", &t.a).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"timestamp": last.0, "value": last.1})));
    assert_eq!(t.get("/resources/r1/series/wind/latest", &t.a).await.0, StatusCode::NOT_FOUND);

    let q = json!({"queries": [
        {"resource": "r1", "metric": "temp", "from": T0, "until": T0 + HOUR, "aggregates": ["count", "max"], "grouping": "1h"},
        {"resource": "r2", "metric": "temp", "from": "2024-12-05T00:00:00Z", "until": T0 + 1},
        {"resource": "r1", "metric": "hum", "from": T0, "until": T0 + HOUR, "aggregates": "mean,count"},
    ]});
    let (status, answers) = t.call(Method::POST, "/series/query", &t.a, Some(q)).await;
    assert_eq!(status, StatusCode::OK, "{answers}");
    // The three share the row budget: 100,000 / 3 each.
    let uri =
        format!("/resources/r1/series/temp?from={T0}&until={}&aggregates=count,max&grouping=1h&limit=33333", T0 + HOUR);
    assert_eq!(answers[0], t.get(&uri, &t.a).await.1);
    assert_eq!(answers[1]["series"], json!([[T0, 1.5]]));
    assert_eq!(answers[1]["query"]["resource"], "r2");
    assert_eq!(rows(&answers[2])[0][1..], [json!(50.0), answers[0]["series"][0][1].clone()]);
}

#[tokio::test]
async fn delete_by_range_metric_and_only_series() {
    let t = filled().await;
    let all = readings();
    let count = |body: &Json| rows(body).first().map_or(0, |r| r[1].as_f64().unwrap() as i64);
    let span = format!("from={}&until={}", all[0].0, all[all.len() - 1].0 + 1);
    let counts = async |metric: &str| {
        let (_, body) = t.get(&format!("/resources/r1/series/{metric}?{span}&aggregates=count"), &t.a).await;
        count(&body)
    };
    let messages = async || t.get("/resources/r1/messages?limit=1000", &t.a).await.1.as_array().unwrap().len();

    // One metric in a range: its points go, messages and the other metric stay.
    let (from, until) = (all[100].0, all[150].0);
    let uri = format!("/resources/r1?from={from}&until={until}&metrics=temp");
    let (status, body) = t.call(Method::DELETE, &uri, &t.a, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"messages": 0, "points": 50})));
    assert_eq!(counts("temp").await, all.len() as i64 - 50);
    assert_eq!(counts("hum").await, all.len() as i64);
    assert_eq!(messages().await, all.len());
    let (_, body) = t.get(&format!("/resources/r1/series/temp?from={from}&until={until}"), &t.a).await;
    assert_eq!(body["series"], json!([]));

    // Only the series, every metric: messages stay.
    let uri = format!("/resources/r1?until={}&onlytimeseries=true", all[10].0);
    let (_, body) = t.call(Method::DELETE, &uri, &t.a, None).await;
    assert_eq!(body, json!({"messages": 0, "points": 20}));
    assert_eq!(messages().await, all.len());

    // Messages and points in a range.
    let uri = format!("/resources/r1?from={}", all[280].0);
    let (_, body) = t.call(Method::DELETE, &uri, &t.a, None).await;
    assert_eq!(body, json!({"messages": all.len() - 280, "points": 2 * (all.len() - 280)}));
    assert_eq!(messages().await, 280);
    assert_eq!(counts("hum").await, 270);

    // Everything.
    let (_, body) = t.call(Method::DELETE, "/resources/r1", &t.a, None).await;
    assert_eq!(body, json!({"messages": 280, "points": 220 + 270}));
    assert_eq!(t.get("/resources/r1/series", &t.a).await.1, json!([]));
}
