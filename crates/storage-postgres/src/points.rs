//! The metrics ([`SeriesStore`]) of [`PgDataStore`], kept as point groups: one row of
//! `point_groups` per stored message that has points, holding its metric names and, in step, their
//! values (`nums` for numbers, `txts` for texts, the other one NULL) at the message's timestamp.
//!
//! A batch of messages is one binary `COPY` of one row per message, not one per point: what made
//! ingest slow was the index entry and the conflict check of every point. Replacing a value is
//! therefore decided when reading: at a timestamp written twice the row with the higher `seq`
//! (written later) wins, and `delete_points` counts a `(metric, timestamp)` once however often
//! it was written.

use std::collections::HashMap;
use std::ops::Range;
use std::pin::pin;

use deadpool_postgres::Transaction;

use switchyard_storage::StorageError;
use switchyard_storage::data::Written;
use switchyard_storage::data::{Block, Ingest, Point, ResourceKey, SeriesInfo, SeriesStore, TimeRange, Value};
use tokio_postgres::Statement;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::data::PgDataStore;
use crate::db::{Fail, text};
use crate::sql;

/// The rows [`sql::PUT_POINTS`] copies in for the stored messages of a batch: one per message
/// with points, its points at `points` in the flat columns.
#[derive(Default)]
pub(crate) struct PointRows<'a> {
    rows: Vec<PointRow<'a>>,
    metrics: Vec<&'a [u8]>,
    nums: Vec<Option<f64>>,
    txts: Vec<Option<&'a [u8]>>,
}

struct PointRow<'a> {
    key: &'a ResourceKey,
    ts: i64,
    seq: i64,
    expires_at: Option<i64>,
    points: Range<usize>,
}

/// The column types of [`sql::PUT_POINTS`], in its order.
const COLUMNS: [Type; 8] = [
    Type::BYTEA,
    Type::BYTEA,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::BYTEA_ARRAY,
    Type::FLOAT8_ARRAY,
    Type::BYTEA_ARRAY,
];

impl<'a> PointRows<'a> {
    /// The rows of `stored` (the messages of `batch` written, with their cache keys), numbered
    /// by `written`. A metric named twice in one message keeps its later value.
    pub(crate) fn of(batch: &'a [Ingest], stored: &'a [(usize, ResourceKey)], written: &[Written]) -> Self {
        let seqs = written.iter().filter_map(|w| match w {
            Written::Stored { seq } => Some(*seq as i64),
            Written::Duplicate => None,
        });
        let mut rows = PointRows::default();
        let mut slot: HashMap<&str, usize> = HashMap::new();
        for ((i, key), seq) in stored.iter().zip(seqs) {
            let ingest = &batch[*i];
            if ingest.points.is_empty() {
                continue;
            }
            slot.clear();
            let first = rows.metrics.len();
            for (metric, value) in &ingest.points {
                let (num, txt) = match value {
                    Value::Number(n) => (Some(*n), None),
                    Value::Text(s) => (None, Some(s.as_bytes())),
                };
                match slot.get(&**metric) {
                    Some(at) => (rows.nums[*at], rows.txts[*at]) = (num, txt),
                    None => {
                        slot.insert(metric, rows.metrics.len());
                        rows.metrics.push(metric.as_bytes());
                        rows.nums.push(num);
                        rows.txts.push(txt);
                    }
                }
            }
            let points = first..rows.metrics.len();
            rows.rows.push(PointRow { key, ts: ingest.ts, seq, expires_at: ingest.expires_at, points });
        }
        rows
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Copies the rows in (binary `COPY`, the cheapest way in for many rows).
    pub(crate) async fn copy(
        &self,
        txn: &Transaction<'_>,
        statement: &Statement,
    ) -> Result<u64, tokio_postgres::Error> {
        let sink = txn.copy_in(statement).await?;
        let writer = BinaryCopyInWriter::new(sink, &COLUMNS);
        let mut writer = pin!(writer);
        for row in &self.rows {
            let (metrics, nums, txts) =
                (&self.metrics[row.points.clone()], &self.nums[row.points.clone()], &self.txts[row.points.clone()]);
            let values: [&(dyn ToSql + Sync); 8] = [
                &row.key.tenant.as_bytes(),
                &row.key.resource.as_bytes(),
                &row.ts,
                &row.seq,
                &row.expires_at,
                &metrics,
                &nums,
                &txts,
            ];
            writer.as_mut().write(&values).await?;
        }
        writer.finish().await
    }
}

fn value_of(num: Option<f64>, txt: Option<Vec<u8>>) -> Result<Value, Fail> {
    match (num, txt) {
        (Some(n), None) => Ok(Value::Number(n)),
        (None, Some(t)) => Ok(Value::Text(text(t, "text point")?.into())),
        _ => Err(Fail::Corrupt("a point is neither a number nor a text".into())),
    }
}

impl SeriesStore for PgDataStore {
    fn series(&self, resource: &ResourceKey, now: i64) -> Result<Vec<SeriesInfo>, StorageError> {
        let (tenant, res) = (resource.tenant.as_bytes(), resource.resource.as_bytes());
        self.db
            .run(async |client| {
                let rows = client.query(sql::SERIES, &[&tenant, &res, &now]).await?;
                rows.into_iter()
                    .map(|row| {
                        let metric = text(row.get(0), "metric name")?;
                        let latest = Point { ts: row.get(1), value: value_of(row.get(2), row.get(3))? };
                        Ok(SeriesInfo { metric: metric.into(), latest })
                    })
                    .collect()
            })
            .map_err(Into::into)
    }

    fn scan(
        &self,
        resource: &ResourceKey,
        metric: &str,
        range: TimeRange,
        now: i64,
    ) -> Result<Vec<Block>, StorageError> {
        let (tenant, res) = (resource.tenant.as_bytes(), resource.resource.as_bytes());
        self.db
            .run(async |client| {
                let params: [&(dyn ToSql + Sync); 6] =
                    [&tenant, &res, &metric.as_bytes(), &range.from, &range.until, &now];
                let rows = client.query(sql::SCAN, &params).await?;
                let points = rows
                    .into_iter()
                    .map(|row| Ok(Point { ts: row.get(0), value: value_of(row.get(1), row.get(2))? }))
                    .collect::<Result<Vec<_>, Fail>>()?;
                Ok(if points.is_empty() { Vec::new() } else { vec![Block::Raw(points)] })
            })
            .map_err(Into::into)
    }

    fn delete_points(
        &self,
        resource: &ResourceKey,
        range: TimeRange,
        metrics: Option<&[String]>,
    ) -> Result<u64, StorageError> {
        let (tenant, res) = (resource.tenant.as_bytes(), resource.resource.as_bytes());
        let names: Option<Vec<&[u8]>> = metrics.map(|names| names.iter().map(|n| n.as_bytes()).collect());
        self.db
            .run(async |client| {
                let params: [&(dyn ToSql + Sync); 5] = [&tenant, &res, &range.from, &range.until, &names];
                let count: i64 = client.query_one(sql::DELETE_POINTS, &params).await?.get(0);
                Ok(count as u64)
            })
            .map_err(Into::into)
    }
}
