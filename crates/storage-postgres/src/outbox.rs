//! The forwarding outbox ([`OutboxStore`]) on [`PgDataStore`]: records appended by
//! [`DataStore::write`](switchyard_storage::DataStore::write) in its transaction, sinks with
//! their cursors in `outbox_sinks`, and the sequence in `counters`, which only ever grows
//! (trimming deletes records, never the counter).
//!
//! [`OutboxStore::pending_bytes`] and [`OutboxStore::last`] cannot fail by signature: when the
//! database does not answer, `pending_bytes` reports `u64::MAX` (the intake refuses, as it would
//! with a full outbox, and writes would fail anyway) and `last` the last value this store saw.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use switchyard_storage::StorageError;
use switchyard_storage::forward::{OutboxRecord, OutboxStore, RECORD_OVERHEAD, valid_sink_name};

use crate::data::{PgDataStore, channel_of};
use crate::db::{Fail, big, text};
use crate::sql;

fn unknown(sink: &str) -> Fail {
    Fail::Unknown(format!("no forwarding sink named {sink:?}"))
}

fn seq(n: u64) -> Result<i64, Fail> {
    i64::try_from(n).map_err(|_| Fail::Unknown(format!("outbox sequence {n} is out of range")))
}

impl OutboxStore for PgDataStore {
    fn set_sinks(&self, sinks: &[&str]) -> Result<(), StorageError> {
        if let Some(bad) = sinks.iter().find(|s| !valid_sink_name(s)) {
            return Err(StorageError::Backend(format!("invalid sink name {bad:?}")));
        }
        self.db
            .run(async |client| {
                let txn = client.transaction().await?;
                // Taken as a writer takes it: a new sink starts after the last record committed.
                let last: i64 = txn.query_one(sql::LOCK_OUTBOX, &[]).await?.get(0);
                txn.execute(sql::FORGET_SINKS, &[&sinks]).await?;
                txn.execute(sql::ADD_SINKS, &[&sinks, &last]).await?;
                txn.commit().await?;
                Ok(())
            })
            .map_err(Into::into)
    }

    fn sinks(&self) -> Result<Vec<(String, u64)>, StorageError> {
        self.db
            .run(async |client| {
                let rows = client.query(sql::SINKS, &[]).await?;
                Ok(rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64)).collect())
            })
            .map_err(Into::into)
    }

    fn read(&self, after: u64, limit: usize) -> Result<Vec<OutboxRecord>, StorageError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.db
            .run(async |client| {
                let after = seq(after.min(i64::MAX as u64))?;
                let rows = client.query(sql::READ, &[&after, &big(limit)]).await?;
                rows.into_iter()
                    .map(|row| {
                        Ok(OutboxRecord {
                            seq: row.get::<_, i64>(0) as u64,
                            at: row.get(1),
                            tenant: text(row.get(2), "outbox tenant")?.into(),
                            resource: text(row.get(3), "outbox resource")?.into(),
                            channel: channel_of(row.get(4))?,
                            body: Bytes::from(row.get::<_, Vec<u8>>(5)),
                        })
                    })
                    .collect()
            })
            .map_err(Into::into)
    }

    fn cursor(&self, sink: &str) -> Result<Option<u64>, StorageError> {
        self.db
            .run(async |client| {
                let row = client.query_opt(sql::CURSOR, &[&sink]).await?;
                Ok(row.map(|row| row.get::<_, i64>(0) as u64))
            })
            .map_err(Into::into)
    }

    fn acknowledge(&self, sink: &str, seq_: u64) -> Result<(), StorageError> {
        self.db
            .run(async |client| {
                let upto = seq(seq_.min(i64::MAX as u64))?;
                match client.execute(sql::ACKNOWLEDGE, &[&sink, &upto]).await? {
                    0 => Err(unknown(sink)),
                    _ => Ok(()),
                }
            })
            .map_err(Into::into)
    }

    fn rewind(&self, sink: &str, from: i64) -> Result<u64, StorageError> {
        self.db
            .run(async |client| match client.query_opt(sql::REWIND, &[&sink, &from]).await? {
                Some(row) => Ok(row.get::<_, i64>(0) as u64),
                None => Err(unknown(sink)),
            })
            .map_err(Into::into)
    }

    fn trim(&self, before: i64) -> Result<u64, StorageError> {
        self.db.run(async |client| Ok(client.execute(sql::TRIM, &[&before]).await?)).map_err(Into::into)
    }

    fn last(&self) -> u64 {
        let read = self.db.run(async |client| Ok(client.query_one(sql::LAST, &[]).await?.get::<_, i64>(0)));
        if let Ok(last) = read {
            self.last.fetch_max(last as u64, Ordering::Relaxed);
        }
        self.last.load(Ordering::Relaxed)
    }

    fn pending_bytes(&self, tenant: &str) -> u64 {
        let overhead = RECORD_OVERHEAD as i64;
        let read = self.db.run(async |client| {
            Ok(client.query_one(sql::PENDING, &[&tenant.as_bytes(), &overhead]).await?.get::<_, i64>(0))
        });
        read.map_or(u64::MAX, |bytes| bytes as u64)
    }
}
