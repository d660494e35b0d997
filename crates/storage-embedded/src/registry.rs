//! The identity registry in the same redb file as the broker state: one table per
//! [`Table`], named `registry_{name}`, string key → record bytes.
//!
//! A commit is one write transaction with immediate durability, like session commits. A
//! [`RegistryOp::Create`] that meets an existing key aborts the transaction (dropping it), so a
//! conflicting batch leaves nothing behind. Prefix scans and prefix deletes are range reads from
//! the prefix, stopping at the first key that no longer starts with it.

use std::ops::Bound;

use bytes::Bytes;
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};
use switchyard_storage::StorageError;
use switchyard_storage::registry::{RegistryError, RegistryOp, RegistryStore, Table, scan_start};

use crate::{EmbeddedStore, map_error};

const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("registry_tenants");
const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("registry_devices");
const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("registry_apikeys");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("registry_meta");

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match table {
        Table::Tenants => TENANTS,
        Table::Devices => DEVICES,
        Table::ApiKeys => API_KEYS,
        Table::Meta => META,
    }
}

/// Creates the registry tables, inside the transaction that creates the session tables.
pub(crate) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    for table in Table::ALL {
        txn.open_table(definition(table))?;
    }
    Ok(())
}

/// Applies `ops` inside `txn`. `Ok(Some(..))` names the first conflicting `Create`: the caller
/// then drops (aborts) the transaction.
fn apply(txn: &redb::WriteTransaction, ops: &[RegistryOp]) -> Result<Option<(Table, String)>, redb::Error> {
    for op in ops {
        match op {
            RegistryOp::Create { table, key, value } => {
                let mut t = txn.open_table(definition(*table))?;
                if t.get(key.as_str())?.is_some() {
                    return Ok(Some((*table, key.clone())));
                }
                t.insert(key.as_str(), value.as_ref())?;
            }
            RegistryOp::Put { table, key, value } => {
                txn.open_table(definition(*table))?.insert(key.as_str(), value.as_ref())?;
            }
            RegistryOp::Delete { table, key } => {
                txn.open_table(definition(*table))?.remove(key.as_str())?;
            }
            RegistryOp::DeletePrefix { table, prefix } => {
                let mut t = txn.open_table(definition(*table))?;
                let mut doomed = Vec::new();
                for entry in t.range::<&str>(prefix.as_str()..)? {
                    let (key, _) = entry?;
                    let key = key.value();
                    if !key.starts_with(prefix.as_str()) {
                        break;
                    }
                    doomed.push(key.to_owned());
                }
                for key in doomed {
                    t.remove(key.as_str())?;
                }
            }
        }
    }
    Ok(None)
}

impl RegistryStore for EmbeddedStore {
    fn get(&self, table: Table, key: &str) -> Result<Option<Bytes>, StorageError> {
        let read = || -> Result<Option<Bytes>, redb::Error> {
            let txn = self.db.begin_read()?;
            let t = txn.open_table(definition(table))?;
            Ok(t.get(key)?.map(|v| Bytes::copy_from_slice(v.value())))
        };
        read().map_err(|e| map_error(&format!("read {}", table.name()), e))
    }

    fn scan(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>, StorageError> {
        let read = || -> Result<Vec<(String, Bytes)>, redb::Error> {
            let txn = self.db.begin_read()?;
            let t = txn.open_table(definition(table))?;
            let mut out = Vec::new();
            if limit == 0 {
                return Ok(out);
            }
            let range: (Bound<&str>, Bound<&str>) = (scan_start(prefix, after), Bound::Unbounded);
            for entry in t.range::<&str>(range)? {
                let (key, value) = entry?;
                let key = key.value();
                if !key.starts_with(prefix) {
                    break;
                }
                out.push((key.to_owned(), Bytes::copy_from_slice(value.value())));
                if out.len() == limit {
                    break;
                }
            }
            Ok(out)
        };
        read().map_err(|e| map_error(&format!("scan {}", table.name()), e))
    }

    fn commit(&self, ops: &[RegistryOp]) -> Result<(), RegistryError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(|e| map_error("begin registry write", e))?;
        txn.set_durability(Durability::Immediate).map_err(|e| StorageError::Backend(format!("set durability: {e}")))?;
        match apply(&txn, ops) {
            Ok(None) => {}
            // Dropping the transaction aborts it: nothing of the batch is applied.
            Ok(Some((table, key))) => return Err(RegistryError::Conflict { table, key }),
            Err(e) => return Err(map_error("write registry batch", e).into()),
        }
        txn.commit().map_err(|e| map_error("commit registry batch", e).into())
    }
}
