//! [`PgDataStore`]: the message cache ([`MessageStore`]) and, in the `points` and `outbox`
//! modules, the metrics and the forwarding outbox, written by one transaction per
//! [`DataStore::write`].
//!
//! A write locks the two counters first (message and outbox sequence), so writers of every node
//! take turns and numbers follow commit order; it then decides duplicates against the stored
//! `messageId`s, and applies the batch as a handful of `unnest` statements, pipelined: ids,
//! messages, points (one row per message), the cache trimmed to each resource's `keep`, outbox
//! records, counters.
//!
//! [`DataStore::write_unsynced`] commits without waiting for the disk (`synchronous_commit`
//! off for that transaction) and [`DataStore::sync`] then waits for the WAL to be flushed past
//! every such commit, so the committer writes one batch while the previous one is flushed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use futures_util::future::{try_join, try_join_all, try_join4};
use switchyard_storage::data::{DataStore, Ingest, MessageStore, ResourceKey, StoredMessage, TimeRange, Written};
use switchyard_storage::{Channel, StorageError};

use crate::config::{PgConfig, PgError};
use tokio_postgres::types::ToSql;

use crate::db::{Db, Fail, big};
use crate::points::PointRows;
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

/// A `messageId` of a resource: tenant, cache key, id.
type IdSlot<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Whether a write's commit waits for the disk ([`DataStore::write`]) or leaves that to a later
/// [`DataStore::sync`] ([`DataStore::write_unsynced`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Commit {
    Durable,
    Unsynced,
}

/// Flat parameter arrays of one `unnest` statement's rows.
type Column<'a> = Vec<&'a [u8]>;

impl PgDataStore {
    /// One transaction in four round trips whatever the batch: lock and read (counters, sinks,
    /// known ids), then the points copy and, behind it, every other change, then the commit.
    /// The statements of a step are pipelined, and prepared once per connection.
    async fn write_in(
        &self,
        client: &mut deadpool_postgres::Client,
        batch: &[Ingest],
        now: i64,
        commit: Commit,
    ) -> Result<(Vec<Written>, u64), Fail> {
        let txn = client.transaction().await?;
        let lock = txn.prepare_cached(sql::LOCK_COUNTERS).await?;
        let has_sinks = txn.prepare_cached(sql::HAS_SINKS).await?;
        let known_ids = txn.prepare_cached(sql::KNOWN_IDS).await?;
        let keys: Vec<ResourceKey> = batch.iter().map(|i| i.resource.of_channel(i.channel)).collect();

        // messageIds already stored for these resources, and when; read once the counters are
        // locked, so a writer of another node that stored them has committed.
        let with_id: Vec<(&ResourceKey, &str)> =
            keys.iter().zip(batch).filter_map(|(k, i)| Some((k, i.message_id.as_deref()?))).collect();
        let id_tenants: Column<'_> = with_id.iter().map(|(k, _)| k.tenant.as_bytes()).collect();
        let id_resources: Column<'_> = with_id.iter().map(|(k, _)| k.resource.as_bytes()).collect();
        let ids: Column<'_> = with_id.iter().map(|(_, id)| id.as_bytes()).collect();
        let set_commit = async {
            match commit {
                Commit::Durable => Ok(()),
                Commit::Unsynced => txn.batch_execute(sql::ASYNC_COMMIT).await,
            }
        };
        let read_ids = async {
            if with_id.is_empty() {
                return Ok(Vec::new());
            }
            txn.query(&known_ids, &[&id_tenants, &id_resources, &ids]).await
        };
        let ((), counters, sinks, rows) =
            try_join4(set_commit, txn.query(&lock, &[]), txn.query_one(&has_sinks, &[]), read_ids).await?;
        let counter = |name: &str| counters.iter().find(|r| r.get::<_, &str>(0) == name).map(|r| r.get::<_, i64>(1));
        let (Some(mut message_seq), Some(mut outbox_seq)) = (counter("message_seq"), counter("outbox_seq")) else {
            return Err(Fail::Corrupt("the counters table lacks a row".into()));
        };
        let mut known: HashMap<IdSlot<'_>, i64> = HashMap::new();
        for row in &rows {
            known.insert((row.get(0), row.get(1), row.get(2)), row.get(3));
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

        let put_ids = txn.prepare_cached(sql::PUT_IDS).await?;
        let insert_messages = txn.prepare_cached(sql::INSERT_MESSAGES).await?;
        let put_points = txn.prepare_cached(sql::PUT_POINTS).await?;
        let trim = txn.prepare_cached(sql::TRIM_MESSAGES).await?;
        let append_outbox = txn.prepare_cached(sql::APPEND_OUTBOX).await?;
        let set_counters = txn.prepare_cached(sql::SET_COUNTERS).await?;
        let new_tenants: Column<'_> = new_ids.iter().map(|(k, _)| k.tenant.as_bytes()).collect();
        let new_resources: Column<'_> = new_ids.iter().map(|(k, _)| k.resource.as_bytes()).collect();
        let new_names: Column<'_> = new_ids.iter().map(|(_, id)| id.as_bytes()).collect();
        let messages = MessageRows::of(batch, &stored, &written);
        let points = PointRows::of(batch, &stored, &written);
        let forwarded: Vec<&Ingest> = if sinks.get::<_, bool>(0) {
            stored.iter().map(|(i, _)| &batch[*i]).filter(|i| i.forward).collect()
        } else {
            Vec::new()
        };
        let outbox = OutboxRows::of(&forwarded, outbox_seq);
        outbox_seq += forwarded.len() as i64;

        let id_params: [&(dyn ToSql + Sync); 4] = [&new_tenants, &new_resources, &new_names, &now];
        let (message_params, trim_params) = (messages.params(), messages.trim_params());
        let outbox_params = outbox.params(&now);
        let counter_params: [&(dyn ToSql + Sync); 2] = [&message_seq, &outbox_seq];
        let mut changes = Vec::new();
        if !new_ids.is_empty() {
            changes.push(txn.execute(&put_ids, &id_params));
        }
        if !stored.is_empty() {
            changes.push(txn.execute(&insert_messages, &message_params));
        }
        if !stored.is_empty() {
            changes.push(txn.execute(&trim, &trim_params));
        }
        if !forwarded.is_empty() {
            changes.push(txn.execute(&append_outbox, &outbox_params));
        }
        changes.push(txn.execute(&set_counters, &counter_params));
        // The copy goes first; the connection sends the rest once it is done.
        let copy = async { if points.is_empty() { Ok(0) } else { points.copy(&txn, &put_points).await } };
        try_join(copy, try_join_all(changes)).await?;
        txn.commit().await?;
        Ok((written, outbox_seq as u64))
    }

    fn write_with(&self, batch: &[Ingest], now: i64, commit: Commit) -> Result<Vec<Written>, StorageError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let (written, last) = self.db.run(async |client| self.write_in(client, batch, now, commit).await)?;
        self.last.fetch_max(last, std::sync::atomic::Ordering::Relaxed);
        Ok(written)
    }
}

/// The parameters of [`sql::INSERT_MESSAGES`] and [`sql::TRIM_MESSAGES`] for the stored messages.
struct MessageRows<'a> {
    tenants: Column<'a>,
    resources: Column<'a>,
    ts: Vec<i64>,
    seqs: Vec<i64>,
    bodies: Column<'a>,
    expiry: Vec<Option<i64>>,
    /// Each cache is trimmed to the `keep` of its last message in the batch.
    keep_tenants: Column<'a>,
    keep_resources: Column<'a>,
    keep: Vec<i64>,
}

impl<'a> MessageRows<'a> {
    fn of(batch: &'a [Ingest], stored: &'a [(usize, ResourceKey)], written: &[Written]) -> Self {
        let seqs = written
            .iter()
            .filter_map(|w| match w {
                Written::Stored { seq } => Some(*seq as i64),
                Written::Duplicate => None,
            })
            .collect();
        let keeps: BTreeMap<&ResourceKey, i64> =
            stored.iter().map(|(i, key)| (key, i64::from(batch[*i].keep))).collect();
        MessageRows {
            tenants: stored.iter().map(|(_, k)| k.tenant.as_bytes()).collect(),
            resources: stored.iter().map(|(_, k)| k.resource.as_bytes()).collect(),
            ts: stored.iter().map(|(i, _)| batch[*i].ts).collect(),
            seqs,
            bodies: stored.iter().map(|(i, _)| &batch[*i].body[..]).collect(),
            expiry: stored.iter().map(|(i, _)| batch[*i].expires_at).collect(),
            keep_tenants: keeps.keys().map(|k| k.tenant.as_bytes()).collect(),
            keep_resources: keeps.keys().map(|k| k.resource.as_bytes()).collect(),
            keep: keeps.values().copied().collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [&self.tenants, &self.resources, &self.ts, &self.seqs, &self.bodies, &self.expiry]
    }

    fn trim_params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.keep_tenants, &self.keep_resources, &self.keep]
    }
}

/// The parameters of [`sql::APPEND_OUTBOX`]: the forwarded messages, numbered after `last`.
struct OutboxRows<'a> {
    seqs: Vec<i64>,
    tenants: Column<'a>,
    resources: Column<'a>,
    channels: Vec<i16>,
    bodies: Column<'a>,
}

impl<'a> OutboxRows<'a> {
    fn of(forwarded: &[&'a Ingest], last: i64) -> Self {
        OutboxRows {
            seqs: (1..=forwarded.len() as i64).map(|n| last + n).collect(),
            tenants: forwarded.iter().map(|i| i.resource.tenant.as_bytes()).collect(),
            resources: forwarded.iter().map(|i| i.resource.resource.as_bytes()).collect(),
            channels: forwarded.iter().map(|i| channel_code(i.channel)).collect(),
            bodies: forwarded.iter().map(|i| &i.body[..]).collect(),
        }
    }

    fn params<'p>(&'p self, now: &'p i64) -> [&'p (dyn ToSql + Sync); 6] {
        [&self.seqs, now, &self.tenants, &self.resources, &self.channels, &self.bodies]
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

impl DataStore for PgDataStore {
    fn write(&self, batch: &[Ingest], now: i64) -> Result<Vec<Written>, StorageError> {
        self.write_with(batch, now, Commit::Durable)
    }

    fn write_unsynced(&self, batch: &[Ingest], now: i64) -> Result<Vec<Written>, StorageError> {
        self.write_with(batch, now, Commit::Unsynced)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.db.run(async |client| Ok(client.batch_execute(sql::SYNC).await?)).map_err(Into::into)
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
