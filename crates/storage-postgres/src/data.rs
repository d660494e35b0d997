//! [`PgDataStore`]: the message cache and the metrics ([`DataStore`]) and, in the `outbox`
//! module, the forwarding outbox, written by one transaction per [`DataStore::write`].
//!
//! A write locks the two counters first (message and outbox sequence), so writers of every node
//! take turns and numbers follow commit order; it then decides duplicates against the stored
//! `messageId`s, and applies the batch as a handful of `unnest` statements: ids, messages,
//! points (the later value of a repeated timestamp wins), the cache trimmed to each resource's
//! `keep`, outbox records, counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use switchyard_storage::data::{
    Block, DataStore, Ingest, MessageStore, Point, ResourceKey, SeriesInfo, SeriesStore, StoredMessage, TimeRange,
    Value, Written,
};
use switchyard_storage::{Channel, StorageError};

use crate::config::{PgConfig, PgError};
use crate::db::{Db, Fail, big, text};
use crate::sql;

/// The pipeline's data and the forwarding outbox in PostgreSQL; see the [crate docs](crate).
pub struct PgDataStore {
    pub(crate) db: Db,
    window_ms: i64,
    /// The last outbox sequence seen, for [`OutboxStore::last`](switchyard_storage::OutboxStore)
    /// when the database cannot answer.
    pub(crate) last: AtomicU64,
}

impl PgDataStore {
    /// Connects and brings the schema up to date; a `messageId` is remembered for
    /// `idempotency_window_ms`. Blocks; never call it from an async task.
    pub fn open(config: &PgConfig, idempotency_window_ms: i64) -> Result<PgDataStore, PgError> {
        Ok(PgDataStore { db: Db::open(config)?, window_ms: idempotency_window_ms, last: AtomicU64::new(0) })
    }
}

pub(crate) fn channel_code(channel: Channel) -> i16 {
    match channel {
        Channel::Events => 0,
        Channel::Commands => 1,
    }
}

pub(crate) fn channel_of(code: i16) -> Result<Channel, Fail> {
    match code {
        0 => Ok(Channel::Events),
        1 => Ok(Channel::Commands),
        other => Err(Fail::Corrupt(format!("outbox channel {other}"))),
    }
}

fn value_columns(value: &Value) -> (Option<f64>, Option<&[u8]>) {
    match value {
        Value::Number(n) => (Some(*n), None),
        Value::Text(s) => (None, Some(s.as_bytes())),
    }
}

fn value_of(num: Option<f64>, txt: Option<Vec<u8>>) -> Result<Value, Fail> {
    match (num, txt) {
        (Some(n), None) => Ok(Value::Number(n)),
        (None, Some(t)) => Ok(Value::Text(text(t, "text point")?.into())),
        _ => Err(Fail::Corrupt("a point is neither a number nor a text".into())),
    }
}

/// A `messageId` of a resource: tenant, cache key, id.
type IdSlot<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// What one write does, decided before any row changes.
struct Effects {
    written: Vec<Written>,
    /// Indexes into the batch of the messages stored, with their cache key.
    stored: Vec<(usize, ResourceKey)>,
}

impl PgDataStore {
    async fn write_in(
        &self,
        client: &mut tokio_postgres::Client,
        batch: &[Ingest],
        now: i64,
    ) -> Result<(Vec<Written>, u64), Fail> {
        let txn = client.transaction().await?;
        let counters = txn.query(sql::LOCK_COUNTERS, &[]).await?;
        let counter = |name: &str| counters.iter().find(|r| r.get::<_, &str>(0) == name).map(|r| r.get::<_, i64>(1));
        let (Some(mut message_seq), Some(mut outbox_seq)) = (counter("message_seq"), counter("outbox_seq")) else {
            return Err(Fail::Corrupt("the counters table lacks a row".into()));
        };
        let keys: Vec<ResourceKey> = batch.iter().map(|i| i.resource.of_channel(i.channel)).collect();

        // messageIds already stored for these resources, and when.
        let with_id: Vec<(&ResourceKey, &str)> =
            keys.iter().zip(batch).filter_map(|(k, i)| Some((k, i.message_id.as_deref()?))).collect();
        let mut known: HashMap<IdSlot<'_>, i64> = HashMap::new();
        let rows;
        if !with_id.is_empty() {
            let tenants: Vec<&[u8]> = with_id.iter().map(|(k, _)| k.tenant.as_bytes()).collect();
            let resources: Vec<&[u8]> = with_id.iter().map(|(k, _)| k.resource.as_bytes()).collect();
            let ids: Vec<&[u8]> = with_id.iter().map(|(_, id)| id.as_bytes()).collect();
            rows = txn.query(sql::KNOWN_IDS, &[&tenants, &resources, &ids]).await?;
            for row in &rows {
                known.insert((row.get(0), row.get(1), row.get(2)), row.get(3));
            }
        }
        let mut written = Vec::with_capacity(batch.len());
        let mut stored = Vec::new();
        let mut new_ids: Vec<(&ResourceKey, &str)> = Vec::new();
        for (i, (ingest, key)) in batch.iter().zip(&keys).enumerate() {
            if let Some(id) = ingest.message_id.as_deref() {
                let slot = (key.tenant.as_bytes(), key.resource.as_bytes(), id.as_bytes());
                if known.get(&slot).is_some_and(|at| now < at.saturating_add(self.window_ms)) {
                    written.push(Written::Duplicate);
                    continue;
                }
                known.insert(slot, now);
                new_ids.push((key, id));
            }
            message_seq += 1;
            written.push(Written::Stored { seq: message_seq as u64 });
            stored.push((i, key.clone()));
        }
        let effects = Effects { written, stored };
        if !new_ids.is_empty() {
            let tenants: Vec<&[u8]> = new_ids.iter().map(|(k, _)| k.tenant.as_bytes()).collect();
            let resources: Vec<&[u8]> = new_ids.iter().map(|(k, _)| k.resource.as_bytes()).collect();
            let ids: Vec<&[u8]> = new_ids.iter().map(|(_, id)| id.as_bytes()).collect();
            txn.execute(sql::PUT_IDS, &[&tenants, &resources, &ids, &now]).await?;
        }
        self.store_messages(&txn, batch, &effects).await?;
        if txn.query_one(sql::HAS_SINKS, &[]).await?.get::<_, bool>(0) {
            let forwarded: Vec<&Ingest> =
                effects.stored.iter().map(|(i, _)| &batch[*i]).filter(|i| i.forward).collect();
            if !forwarded.is_empty() {
                let seqs: Vec<i64> = (1..=forwarded.len() as i64).map(|n| outbox_seq + n).collect();
                outbox_seq += forwarded.len() as i64;
                let tenants: Vec<&[u8]> = forwarded.iter().map(|i| i.resource.tenant.as_bytes()).collect();
                let resources: Vec<&[u8]> = forwarded.iter().map(|i| i.resource.resource.as_bytes()).collect();
                let channels: Vec<i16> = forwarded.iter().map(|i| channel_code(i.channel)).collect();
                let bodies: Vec<&[u8]> = forwarded.iter().map(|i| &i.body[..]).collect();
                txn.execute(sql::APPEND_OUTBOX, &[&seqs, &now, &tenants, &resources, &channels, &bodies]).await?;
            }
        }
        txn.execute(sql::SET_COUNTERS, &[&message_seq, &outbox_seq]).await?;
        txn.commit().await?;
        Ok((effects.written, outbox_seq as u64))
    }

    /// Inserts the stored messages and their points, then trims each cache to its `keep`.
    async fn store_messages(
        &self,
        txn: &tokio_postgres::Transaction<'_>,
        batch: &[Ingest],
        effects: &Effects,
    ) -> Result<(), Fail> {
        if effects.stored.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = effects
            .written
            .iter()
            .filter_map(|w| match w {
                Written::Stored { seq } => Some(*seq as i64),
                Written::Duplicate => None,
            })
            .collect();
        let tenants: Vec<&[u8]> = effects.stored.iter().map(|(_, k)| k.tenant.as_bytes()).collect();
        let resources: Vec<&[u8]> = effects.stored.iter().map(|(_, k)| k.resource.as_bytes()).collect();
        let ts: Vec<i64> = effects.stored.iter().map(|(i, _)| batch[*i].ts).collect();
        let bodies: Vec<&[u8]> = effects.stored.iter().map(|(i, _)| &batch[*i].body[..]).collect();
        let expiry: Vec<Option<i64>> = effects.stored.iter().map(|(i, _)| batch[*i].expires_at).collect();
        txn.execute(sql::INSERT_MESSAGES, &[&tenants, &resources, &ts, &seqs, &bodies, &expiry]).await?;

        // One row per (series, timestamp): the batch's later value wins.
        let mut points: HashMap<(&ResourceKey, &str, i64), (&Value, Option<i64>)> = HashMap::new();
        for (i, key) in &effects.stored {
            let ingest = &batch[*i];
            for (metric, value) in &ingest.points {
                points.insert((key, &**metric, ingest.ts), (value, ingest.expires_at));
            }
        }
        if !points.is_empty() {
            let (mut tenants, mut resources, mut metrics, mut ts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut nums, mut txts, mut expiry) = (Vec::new(), Vec::new(), Vec::new());
            for ((key, metric, at), (value, expires_at)) in &points {
                tenants.push(key.tenant.as_bytes());
                resources.push(key.resource.as_bytes());
                metrics.push(metric.as_bytes());
                ts.push(*at);
                let (num, txt) = value_columns(value);
                nums.push(num);
                txts.push(txt);
                expiry.push(*expires_at);
            }
            txn.execute(sql::PUT_POINTS, &[&tenants, &resources, &metrics, &ts, &nums, &txts, &expiry]).await?;
        }

        // Each cache is trimmed to the `keep` of its last message in the batch.
        let keeps: BTreeMap<&ResourceKey, i64> =
            effects.stored.iter().map(|(i, key)| (key, i64::from(batch[*i].keep))).collect();
        let tenants: Vec<&[u8]> = keeps.keys().map(|k| k.tenant.as_bytes()).collect();
        let resources: Vec<&[u8]> = keeps.keys().map(|k| k.resource.as_bytes()).collect();
        let keep: Vec<i64> = keeps.values().copied().collect();
        txn.execute(sql::TRIM_MESSAGES, &[&tenants, &resources, &keep]).await?;
        Ok(())
    }
}

fn message_rows(rows: &[tokio_postgres::Row]) -> Vec<StoredMessage> {
    rows.iter()
        .map(|row| StoredMessage {
            ts: row.get(0),
            seq: row.get::<_, i64>(1) as u64,
            body: Bytes::from(row.get::<_, Vec<u8>>(2)),
        })
        .collect()
}

impl MessageStore for PgDataStore {
    fn messages(
        &self,
        resource: &ResourceKey,
        range: TimeRange,
        limit: usize,
        now: i64,
    ) -> Result<Vec<StoredMessage>, StorageError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (tenant, res) = (resource.tenant.as_bytes(), resource.resource.as_bytes());
        self.db
            .run(async |client| {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                    [&tenant, &res, &range.from, &range.until, &now, &big(limit)];
                Ok(message_rows(&client.query(sql::MESSAGES, &params).await?))
            })
            .map_err(Into::into)
    }

    fn current(&self, resource: &ResourceKey, now: i64) -> Result<Option<StoredMessage>, StorageError> {
        Ok(self.messages(resource, TimeRange::default(), 1, now)?.pop())
    }

    fn delete_messages(&self, resource: &ResourceKey, range: TimeRange) -> Result<u64, StorageError> {
        let (tenant, res) = (resource.tenant.as_bytes(), resource.resource.as_bytes());
        self.db
            .run(async |client| {
                Ok(client.execute(sql::DELETE_MESSAGE_RANGE, &[&tenant, &res, &range.from, &range.until]).await?)
            })
            .map_err(Into::into)
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
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
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
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                    [&tenant, &res, &range.from, &range.until, &names];
                Ok(client.execute(sql::DELETE_POINTS, &params).await?)
            })
            .map_err(Into::into)
    }
}

impl DataStore for PgDataStore {
    fn write(&self, batch: &[Ingest], now: i64) -> Result<Vec<Written>, StorageError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let (written, last) = self.db.run(async |client| self.write_in(client, batch, now).await)?;
        self.last.fetch_max(last, std::sync::atomic::Ordering::Relaxed);
        Ok(written)
    }

    fn drop_tenant(&self, tenant: &str) -> Result<(), StorageError> {
        self.db
            .run(async |client| {
                client.execute(sql::DROP_TENANT, &[&tenant.as_bytes()]).await?;
                Ok(())
            })
            .map_err(Into::into)
    }

    fn maintain(&self, now: i64) -> Result<(), StorageError> {
        let forget_before = now.saturating_sub(self.window_ms);
        self.db
            .run(async |client| {
                client.execute(sql::EXPIRE_MESSAGES, &[&now]).await?;
                client.execute(sql::EXPIRE_POINTS, &[&now]).await?;
                client.execute(sql::EXPIRE_IDS, &[&forget_before]).await?;
                Ok(())
            })
            .map_err(Into::into)
    }
}
