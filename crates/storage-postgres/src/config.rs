//! How to reach the database ([`PgConfig`]) and why opening a store failed ([`PgError`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_storage::StorageError;

/// Where the stores keep their tables. The URL may hold a password: it is never printed
/// (`Debug` hides it) and never put in an error message.
#[derive(Clone)]
pub struct PgConfig {
    /// `postgres://user[:password]@host[:port]/database[?options]`.
    pub url: String,
    /// Connections each store keeps at most.
    pub pool_size: usize,
    /// The schema holding the tables (created if missing); `public` when `None`. An identifier:
    /// lowercase ASCII letters, digits and `_`, not starting with a digit, at most 63 bytes.
    pub schema: Option<String>,
    /// How long connecting, and waiting for a free connection, may take.
    pub connect_timeout: Duration,
    /// PEM certificates trusted for the server's, beside the system's roots; setting it requires
    /// TLS, as `sslmode=require` in the URL does (see the `tls` module).
    pub ca_file: Option<PathBuf>,
}

impl PgConfig {
    /// A configuration for `url` with 8 connections, schema `public` and a 10 s timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), pool_size: 8, schema: None, connect_timeout: Duration::from_secs(10), ca_file: None }
    }

    /// The schema name, checked: it is written into SQL as an identifier, so only what can never
    /// need quoting is accepted.
    pub(crate) fn schema_name(&self) -> Result<&str, PgError> {
        let name = self.schema.as_deref().unwrap_or("public");
        let mut bytes = name.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if first_ok && rest_ok && name.len() <= 63 && !name.starts_with("pg_") {
            Ok(name)
        } else {
            Err(PgError::Schema(name.to_owned()))
        }
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &"<hidden>")
            .field("pool_size", &self.pool_size)
            .field("schema", &self.schema)
            .field("connect_timeout", &self.connect_timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Why a store could not be opened. Messages never contain the URL or its password.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("the PostgreSQL URL is not valid")]
    Url,
    #[error("schema name {0:?} is not a plain identifier (lowercase letters, digits, _; not pg_*; at most 63 bytes)")]
    Schema(String),
    #[error("pool_size must be at least 1")]
    PoolSize,
    #[error("cannot start the PostgreSQL client runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    #[error("PostgreSQL schema migration failed: {0}")]
    Migrate(String),
    #[error("TLS to PostgreSQL: {0}")]
    Tls(String),
}

impl From<PgError> for StorageError {
    fn from(e: PgError) -> Self {
        StorageError::Backend(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        let with = |s: Option<&str>| PgConfig { schema: s.map(str::to_owned), ..PgConfig::new("postgres://x") };
        assert_eq!(with(None).schema_name().unwrap(), "public");
        for good in ["a", "_x", "switchyard_1", &"a".repeat(63)] {
            assert_eq!(with(Some(good)).schema_name().unwrap(), good);
        }
        for bad in ["", "1a", "A", "a-b", "a\"b", "a;drop", "pg_temp", "é", &"a".repeat(64)] {
            assert!(matches!(with(Some(bad)).schema_name(), Err(PgError::Schema(_))), "{bad:?}");
        }
    }

    #[test]
    fn debug_hides_the_url() {
        let config = PgConfig::new("postgres://u:s3cret@h/db");
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
