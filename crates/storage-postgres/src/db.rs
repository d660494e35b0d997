//! The connection pool and the private runtime that drives it: [`Db::run`] blocks the caller's
//! thread on one piece of async work with a pooled connection. Also [`Fail`], the error inside
//! the crate, turned into the traits' errors at their boundary.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use switchyard_storage::{RegistryError, StorageError, Table};
use tokio::runtime::Runtime;
use tokio_postgres::NoTls;

use crate::config::{PgConfig, PgError};
use crate::schema;

/// A pool of connections to one schema, and the runtime their tasks run on.
pub(crate) struct Db {
    /// Always `Some` until dropped; taken by `Drop` to shut down without blocking.
    runtime: Option<Runtime>,
    pool: Pool,
}

/// Why a call failed, inside the crate.
#[derive(Debug)]
pub(crate) enum Fail {
    Db(tokio_postgres::Error),
    Pool(String),
    Corrupt(String),
    Conflict(Table, String),
    Unknown(String),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<Fail> for StorageError {
    fn from(fail: Fail) -> Self {
        match fail {
            Fail::Db(e) => StorageError::Backend(format!("PostgreSQL: {e}")),
            Fail::Pool(e) => StorageError::Backend(format!("no PostgreSQL connection: {e}")),
            Fail::Corrupt(what) => StorageError::Corrupt(what),
            Fail::Conflict(table, key) => StorageError::Backend(format!("{} record {key:?} exists", table.name())),
            Fail::Unknown(what) => StorageError::Backend(what),
        }
    }
}

impl From<Fail> for RegistryError {
    fn from(fail: Fail) -> Self {
        match fail {
            Fail::Conflict(table, key) => RegistryError::Conflict { table, key },
            other => RegistryError::Storage(other.into()),
        }
    }
}

impl Db {
    /// Connects, migrates the schema to [`schema::LATEST_VERSION`] and returns the pool.
    pub(crate) fn open(config: &PgConfig) -> Result<Db, PgError> {
        let schema = config.schema_name()?;
        if config.pool_size == 0 {
            return Err(PgError::PoolSize);
        }
        let mut pg: tokio_postgres::Config = config.url.parse().map_err(|_| PgError::Url)?;
        // The name was checked to be a plain identifier, so it needs no quoting here.
        pg.options(format!("-c search_path={schema}"));
        if pg.get_application_name().is_none() {
            pg.application_name("switchyard");
        }
        pg.connect_timeout(config.connect_timeout);
        let recycling = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match crate::tls::connector(config, &mut pg)? {
            Some(tls) => Manager::from_config(pg, tls, recycling),
            None => Manager::from_config(pg, NoTls, recycling),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("switchyard-pg")
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| PgError::Connect(e.to_string()))?;
        let db = Db { runtime: Some(runtime), pool };
        db.block_on(async {
            let mut client = db.pool.get().await.map_err(|e| PgError::Connect(e.to_string()))?;
            schema::migrate(&mut client, schema).await.map_err(|e| PgError::Migrate(StorageError::from(e).to_string()))
        })?;
        Ok(db)
    }

    fn block_on<F: Future>(&self, work: F) -> F::Output {
        self.runtime.as_ref().expect("runtime present until drop").block_on(work)
    }

    /// Runs `work` with a pooled connection, blocking this thread until it is done. Must not be
    /// called from an async task.
    pub(crate) fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut deadpool_postgres::Client) -> Result<T, Fail>,
    ) -> Result<T, Fail> {
        self.block_on(async {
            let mut client = self.pool.get().await.map_err(|e| Fail::Pool(e.to_string()))?;
            work(&mut client).await
        })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Connections are tasks on the runtime; shutting it down in the background closes them
        // without blocking, so a store may be dropped anywhere (even inside another runtime).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Text stored as bytes, read back: keys were `str` when written.
pub(crate) fn text(bytes: Vec<u8>, what: &str) -> Result<String, Fail> {
    String::from_utf8(bytes).map_err(|_| Fail::Corrupt(format!("{what} is not UTF-8")))
}

/// The smallest byte string greater than every string starting with `prefix` (`None`: there is
/// none), so `key >= prefix AND key < successor` is exactly "starts with `prefix`".
pub(crate) fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A `u64` as a `bigint` that sorts the same way (the sign bit flipped).
pub(crate) fn u64_key(n: u64) -> i64 {
    (n ^ (1 << 63)) as i64
}

/// The inverse of [`u64_key`].
pub(crate) fn from_u64_key(n: i64) -> u64 {
    (n as u64) ^ (1 << 63)
}

/// A count or limit as a `bigint`, saturating.
pub(crate) fn big(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_bounds_a_prefix() {
        assert_eq!(successor(b""), None);
        assert_eq!(successor(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
    }

    #[test]
    fn u64_keys_sort_as_unsigned() {
        let mut seqs = [u64::MAX, 0, 1, 1 << 63, (1 << 63) - 1, 255];
        let mut keys: Vec<i64> = seqs.iter().map(|s| u64_key(*s)).collect();
        seqs.sort_unstable();
        keys.sort_unstable();
        assert_eq!(keys.into_iter().map(from_u64_key).collect::<Vec<_>>(), seqs);
    }
}
