//! The identity registry ([`RegistryStore`]) on [`PgStore`]: one table per [`Table`], keys as
//! `bytea` so scans run in byte order, one transaction per batch. A `Create` is an insert that
//! does nothing on conflict; if it inserted nothing the transaction is rolled back, so a
//! conflicting batch leaves nothing, and of two nodes creating one key exactly one wins.

use bytes::Bytes;
use switchyard_storage::{RegistryError, RegistryOp, RegistryStore, StorageError, Table};

use crate::db::{Fail, big, successor, text};
use crate::session::PgStore;
use crate::sql;

impl RegistryStore for PgStore {
    fn get(&self, table: Table, key: &str) -> Result<Option<Bytes>, StorageError> {
        self.db
            .run(async |client| {
                let row = client.query_opt(sql::registry(table).get, &[&key.as_bytes()]).await?;
                Ok(row.map(|row| Bytes::from(row.get::<_, Vec<u8>>(0))))
            })
            .map_err(Into::into)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>, StorageError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let end = successor(prefix.as_bytes());
        let after = after.map(str::as_bytes);
        self.db
            .run(async |client| {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                    [&prefix.as_bytes(), &end, &after, &big(limit)];
                let rows = client.query(sql::registry(table).scan, &params).await?;
                rows.iter()
                    .map(|row| Ok((text(row.get(0), "registry key")?, Bytes::from(row.get::<_, Vec<u8>>(1)))))
                    .collect()
            })
            .map_err(Into::into)
    }

    fn commit(&self, ops: &[RegistryOp]) -> Result<(), RegistryError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.db
            .run(async |client| {
                let txn = client.transaction().await?;
                for op in ops {
                    match op {
                        RegistryOp::Create { table, key, value } => {
                            let stmt = sql::registry(*table).create;
                            if txn.execute(stmt, &[&key.as_bytes(), &&value[..]]).await? == 0 {
                                // Dropping the transaction rolls it back.
                                return Err(Fail::Conflict(*table, key.clone()));
                            }
                        }
                        RegistryOp::Put { table, key, value } => {
                            txn.execute(sql::registry(*table).put, &[&key.as_bytes(), &&value[..]]).await?;
                        }
                        RegistryOp::Delete { table, key } => {
                            txn.execute(sql::registry(*table).delete, &[&key.as_bytes()]).await?;
                        }
                        RegistryOp::DeletePrefix { table, prefix } => {
                            let end = successor(prefix.as_bytes());
                            txn.execute(sql::registry(*table).delete_prefix, &[&prefix.as_bytes(), &end]).await?;
                        }
                    }
                }
                txn.commit().await?;
                Ok(())
            })
            .map_err(Into::into)
    }
}
