//! The identity registry's storage trait: tenants, devices, API keys and a little server metadata
//! (the admin token's hash), as opaque records under string keys in four tables.
//!
//! The Device Hub (`crates/hub`) serializes the records and builds the keys; a backend only
//! stores bytes, reads by key, scans a key prefix in byte order with paging, and applies batches
//! atomically. A [`RegistryOp::Create`] fails the whole batch with [`RegistryError::Conflict`] if
//! its key exists, so "create unless it exists" is decided by the store, not by a read before the
//! write (several servers may share one store).
//!
//! Keys are compared as exact byte strings and never contain U+0000. Every backend runs the
//! [`registry conformance checks`](crate::conformance::registry).

use bytes::Bytes;

use crate::StorageError;

/// The registry's tables. Each is an independent key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Tenant records, keyed by domain.
    Tenants,
    /// Device records, keyed by `{domain}/{resource id}`.
    Devices,
    /// API key records, keyed by `{domain}/{key id}`.
    ApiKeys,
    /// Server metadata (the admin token's hash), keyed by name.
    Meta,
}

impl Table {
    /// Every table, for backends that create them up front.
    pub const ALL: [Table; 4] = [Table::Tenants, Table::Devices, Table::ApiKeys, Table::Meta];

    /// A stable name, for backends that name tables and for messages.
    pub fn name(self) -> &'static str {
        match self {
            Table::Tenants => "tenants",
            Table::Devices => "devices",
            Table::ApiKeys => "apikeys",
            Table::Meta => "meta",
        }
    }
}

/// One change in a registry batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryOp {
    /// Insert a record that must not exist yet; if it does, the whole batch fails with
    /// [`RegistryError::Conflict`] and nothing of it is applied.
    Create { table: Table, key: String, value: Bytes },
    /// Create or replace a record.
    Put { table: Table, key: String, value: Bytes },
    /// Remove a record (absent is not an error).
    Delete { table: Table, key: String },
    /// Remove every record whose key starts with `prefix`.
    DeletePrefix { table: Table, prefix: String },
}

/// Why a registry batch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A [`RegistryOp::Create`] met an existing record; nothing was applied.
    #[error("{} record {key:?} already exists", table.name())]
    Conflict { table: Table, key: String },
    /// The backend failed; nothing was applied.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Durable registry records. Calls block; async callers run them off their event loop.
/// Implementations are safe to call from several threads; a batch is seen whole or not at all.
pub trait RegistryStore: Send + Sync + 'static {
    /// The record at `key`, if any.
    fn get(&self, table: Table, key: &str) -> Result<Option<Bytes>, StorageError>;

    /// Records whose key starts with `prefix` and (if given) sorts strictly after `after`, in
    /// ascending byte order of key, at most `limit` of them.
    fn scan(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>, StorageError>;

    /// Applies `ops` in order, atomically and durably.
    fn commit(&self, ops: &[RegistryOp]) -> Result<(), RegistryError>;
}

/// Where a scan of keys starting with `prefix` and after `after` begins: at `after` (exclusive)
/// when it sorts at or past `prefix`, else at `prefix` (inclusive). For backends' range reads.
pub fn scan_start<'a>(prefix: &'a str, after: Option<&'a str>) -> std::ops::Bound<&'a str> {
    match after {
        Some(after) if after >= prefix => std::ops::Bound::Excluded(after),
        _ => std::ops::Bound::Included(prefix),
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::*;

    #[test]
    fn scan_start_picks_the_later_bound() {
        assert_eq!(scan_start("a/", None), Bound::Included("a/"));
        assert_eq!(scan_start("a/", Some("a/x")), Bound::Excluded("a/x"));
        assert_eq!(scan_start("a/", Some("a/")), Bound::Excluded("a/"));
        assert_eq!(scan_start("b/", Some("a/z")), Bound::Included("b/"));
        assert_eq!(scan_start("", Some("")), Bound::Excluded(""));
    }

    #[test]
    fn table_names_are_distinct() {
        let names: std::collections::HashSet<_> = Table::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), Table::ALL.len());
    }
}
