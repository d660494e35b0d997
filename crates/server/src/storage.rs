//! The `[storage]` section (SPEC §7) and [`open`]: where broker state, the registry, the data and
//! the forwarding outbox live — embedded in `data_dir` (the default) or in one PostgreSQL
//! database — opened in one place for `serve`, with the data store's maintenance.
//!
//! Every store call blocks. The broker commits on its own thread, and the hub, the HTTP API and
//! the forwarders call the stores on the blocking pool, so the PostgreSQL stores (which block on
//! a private runtime and must never be called from an async task) are called as the embedded
//! ones are. The one call the intake makes on its async path, the outbox bound, reads the
//! embedded store's in-memory count; on PostgreSQL it reads a figure refreshed off the runtime
//! ([`OutboxGauge`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use switchyard_identity::Domain;
use switchyard_storage::{DataStore, OutboxStore, RegistryStore, SessionStore};
use switchyard_storage_embedded::{DataConfig, EmbeddedDataStore, EmbeddedStore};
use switchyard_storage_postgres::{PgConfig, PgDataStore, PgStore};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;

/// How often the data store does its background work (sealing chunks, expiring TTL, retention).
const MAINTAIN_EVERY: Duration = Duration::from_secs(10);
/// The smallest `[storage] write_buffer_bytes`.
const MIN_WRITE_BUFFER: u64 = 1 << 20;
/// How old a tenant's outbox figure may be before the PostgreSQL outbox is asked again.
const OUTBOX_FIGURE_AGE: Duration = Duration::from_secs(1);

/// The `[storage]` section as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawStorage {
    backend: String,
    url: Option<String>,
    pool_size: usize,
    schema: Option<String>,
    connect_timeout_secs: u64,
    ca_file: Option<std::path::PathBuf>,
    write_buffer_bytes: Option<u64>,
    cache_bytes: Option<u64>,
    max_tracked_resources: Option<usize>,
    max_tracked_series: Option<usize>,
}

impl Default for RawStorage {
    fn default() -> Self {
        let pg = PgConfig::new("");
        RawStorage {
            backend: "embedded".into(),
            url: None,
            pool_size: pg.pool_size,
            schema: None,
            connect_timeout_secs: pg.connect_timeout.as_secs(),
            ca_file: None,
            write_buffer_bytes: None,
            cache_bytes: None,
            max_tracked_resources: None,
            max_tracked_series: None,
        }
    }
}

/// The embedded data store's memory (`[storage]`; see `switchyard_storage_embedded::DataConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedMemory {
    /// Memtables (writes not yet in tables) before the largest are flushed; writes wait while
    /// twice this is unflushed.
    pub write_buffer_bytes: u64,
    /// The block cache for reads.
    pub cache_bytes: u64,
    /// Resources whose message-cache size is kept in memory (beyond: counted from disk).
    pub max_tracked_resources: usize,
    /// Series keys kept in memory (beyond: looked up on disk).
    pub max_tracked_series: usize,
}

impl Default for EmbeddedMemory {
    fn default() -> Self {
        let data = DataConfig::default();
        EmbeddedMemory {
            write_buffer_bytes: data.write_buffer_bytes,
            cache_bytes: data.cache_bytes,
            max_tracked_resources: data.max_tracked_resources,
            max_tracked_series: data.max_tracked_series,
        }
    }
}

/// The checked backend.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Everything in `data_dir`.
    Embedded(EmbeddedMemory),
    /// Everything in one PostgreSQL schema (`Debug` hides the URL).
    Postgres(PgConfig),
}

/// Checks the `[storage]` section.
pub(crate) fn check(raw: RawStorage) -> anyhow::Result<Backend> {
    match raw.backend.as_str() {
        "embedded" => {
            if raw.url.is_some() || raw.schema.is_some() || raw.ca_file.is_some() {
                bail!("storage.url, storage.schema and storage.ca_file apply to storage.backend = \"postgres\" only");
            }
            let default = EmbeddedMemory::default();
            let memory = EmbeddedMemory {
                write_buffer_bytes: raw.write_buffer_bytes.unwrap_or(default.write_buffer_bytes),
                cache_bytes: raw.cache_bytes.unwrap_or(default.cache_bytes),
                max_tracked_resources: raw.max_tracked_resources.unwrap_or(default.max_tracked_resources),
                max_tracked_series: raw.max_tracked_series.unwrap_or(default.max_tracked_series),
            };
            if memory.max_tracked_resources == 0 || memory.max_tracked_series == 0 {
                bail!("storage.max_tracked_resources and storage.max_tracked_series must be at least 1");
            }
            if memory.write_buffer_bytes < MIN_WRITE_BUFFER {
                bail!("storage.write_buffer_bytes must be at least {MIN_WRITE_BUFFER} (1 MiB)");
            }
            Ok(Backend::Embedded(memory))
        }
        "postgres" | "postgresql" => {
            let embedded = [raw.write_buffer_bytes, raw.cache_bytes].iter().any(Option::is_some)
                || [raw.max_tracked_resources, raw.max_tracked_series].iter().any(Option::is_some);
            if embedded {
                bail!(
                    "storage.write_buffer_bytes, cache_bytes, max_tracked_resources and max_tracked_series \
                     apply to storage.backend = \"embedded\" only"
                );
            }
            let Some(url) = raw.url.filter(|u| !u.trim().is_empty()) else {
                bail!(
                    "storage.backend = \"postgres\" needs storage.url (or SWITCHYARD_STORAGE_URL), \
                     e.g. \"postgres://switchyard@127.0.0.1:5432/switchyard\""
                );
            };
            if raw.pool_size == 0 {
                bail!("storage.pool_size must be at least 1");
            }
            Ok(Backend::Postgres(PgConfig {
                url,
                pool_size: raw.pool_size,
                schema: raw.schema,
                connect_timeout: Duration::from_secs(raw.connect_timeout_secs.max(1)),
                ca_file: raw.ca_file,
            }))
        }
        other => bail!("storage.backend = {other:?}: expected \"embedded\" or \"postgres\""),
    }
}

/// `url` with its password, if any, replaced by `***`: what logs and errors may show. Both URL
/// (`postgres://user:secret@host/db`) and key-value (`host=h password=secret`) forms.
pub fn redacted(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _password)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{}", redacted_query(tail));
        }
        return format!("{scheme}://{authority}{}", redacted_query(tail));
    }
    url.split_whitespace().map(redacted_pair).collect::<Vec<_>>().join(" ")
}

/// A URL's path and query with a `password=` parameter hidden.
fn redacted_query(tail: &str) -> String {
    match tail.split_once('?') {
        Some((path, query)) => format!("{path}?{}", query.split('&').map(redacted_pair).collect::<Vec<_>>().join("&")),
        None => tail.to_owned(),
    }
}

/// `key=value`, the value hidden when the key is `password`.
fn redacted_pair(pair: &str) -> String {
    match pair.split_once('=') {
        Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
        _ => pair.to_owned(),
    }
}

/// The opened stores, each behind the trait its user takes.
pub struct Storage {
    pub sessions: Arc<dyn SessionStore>,
    pub registry: Arc<dyn RegistryStore>,
    pub data: Arc<dyn DataStore>,
    pub outbox: Arc<dyn OutboxStore>,
    /// Whether the outbox count is a database query (not to be made on the async path).
    outbox_queries: bool,
}

/// Opens the configured backend's stores. Blocks (PostgreSQL: connects and migrates the schema):
/// call it from the blocking pool.
pub fn open(settings: &Settings) -> anyhow::Result<Storage> {
    let window_ms = i64::try_from(settings.idempotency_window.as_millis()).unwrap_or(i64::MAX);
    match &settings.storage {
        Backend::Embedded(memory) => {
            let dir = &settings.data_dir;
            let store =
                Arc::new(EmbeddedStore::open(dir).with_context(|| format!("opening storage in {}", dir.display()))?);
            let retention_ms = settings.retention.map(|r| i64::try_from(r.as_millis()).unwrap_or(i64::MAX));
            let config = DataConfig {
                idempotency_window_ms: window_ms,
                retention_ms,
                write_buffer_bytes: memory.write_buffer_bytes,
                cache_bytes: memory.cache_bytes,
                max_tracked_resources: memory.max_tracked_resources,
                max_tracked_series: memory.max_tracked_series,
                ..DataConfig::default()
            };
            let data = Arc::new(
                EmbeddedDataStore::open(dir, config)
                    .with_context(|| format!("opening the data store in {}", dir.display()))?,
            );
            tracing::info!(backend = "embedded", data_dir = %dir.display(), "storage opened");
            Ok(Storage {
                sessions: store.clone(),
                registry: store,
                data: data.clone(),
                outbox: data,
                outbox_queries: false,
            })
        }
        Backend::Postgres(config) => {
            let at = || {
                format!(
                    "storage.url = {:?}, schema {}",
                    redacted(&config.url),
                    config.schema.as_deref().unwrap_or("public")
                )
            };
            let store =
                Arc::new(PgStore::open(config).with_context(|| format!("opening PostgreSQL storage ({})", at()))?);
            let data = Arc::new(
                PgDataStore::open(config, window_ms)
                    .with_context(|| format!("opening the PostgreSQL data store ({})", at()))?,
            );
            tracing::info!(
                backend = "postgres",
                url = %redacted(&config.url),
                schema = config.schema.as_deref().unwrap_or("public"),
                pool_size = config.pool_size,
                "storage opened"
            );
            Ok(Storage {
                sessions: store.clone(),
                registry: store,
                data: data.clone(),
                outbox: data,
                outbox_queries: true,
            })
        }
    }
}

impl Storage {
    /// A check for [`Pipeline::with_outbox_bound`](switchyard_pipeline::Pipeline): whether the
    /// tenant's outbox holds `max` bytes or more. Never blocks: the embedded count is in memory;
    /// a database's figure comes from [`OutboxGauge`].
    pub fn outbox_full(&self, max: u64) -> Box<dyn Fn(&Domain) -> bool + Send + Sync> {
        let outbox = Arc::clone(&self.outbox);
        if self.outbox_queries {
            let gauge = Arc::new(OutboxGauge::new(outbox, max));
            Box::new(move |tenant| gauge.full(tenant))
        } else {
            Box::new(move |tenant| outbox.pending_bytes(tenant.as_str()) >= max)
        }
    }

    /// Runs the data store's background work every [`MAINTAIN_EVERY`] on the blocking pool
    /// (never on the commit path) until `stop`; a failure is logged and tried again next time.
    /// Embedded: sealing chunks, TTL expiry and retention; PostgreSQL: TTL expiry and forgetting
    /// `messageId`s past the idempotency window.
    pub fn spawn_maintenance(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let data = Arc::clone(&self.data);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(MAINTAIN_EVERY) => {}
                }
                let data = Arc::clone(&data);
                let now = i64::try_from(switchyard_broker::now_ms()).unwrap_or(i64::MAX);
                match tokio::task::spawn_blocking(move || data.maintain(now)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "data store maintenance failed; retried later"),
                    Err(e) => tracing::error!(error = %e, "data store maintenance panicked"),
                }
            }
        })
    }
}

/// Each tenant's "outbox at its bound" from a database outbox, as last read: a read older than
/// [`OUTBOX_FIGURE_AGE`] starts a new one on the blocking pool and answers the previous figure
/// meanwhile (a tenant not seen yet: not full). The bound is soft either way.
struct OutboxGauge {
    outbox: Arc<dyn OutboxStore>,
    max: u64,
    figures: Mutex<HashMap<Domain, Figure>>,
}

#[derive(Clone, Copy)]
struct Figure {
    full: bool,
    read_at: Option<Instant>,
    reading: bool,
}

impl OutboxGauge {
    fn new(outbox: Arc<dyn OutboxStore>, max: u64) -> Self {
        OutboxGauge { outbox, max, figures: Mutex::new(HashMap::new()) }
    }

    fn full(self: &Arc<Self>, tenant: &Domain) -> bool {
        let mut figures = self.figures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let figure = figures.entry(tenant.clone()).or_insert(Figure { full: false, read_at: None, reading: false });
        let stale = figure.read_at.is_none_or(|at| at.elapsed() >= OUTBOX_FIGURE_AGE);
        if !stale || figure.reading {
            return figure.full;
        }
        let previous = figure.full;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Not on the runtime: asking here blocks no task.
            drop(figures);
            self.read(tenant.clone());
            return self.figures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[tenant].full;
        };
        figure.reading = true;
        let gauge = Arc::clone(self);
        let tenant = tenant.clone();
        runtime.spawn_blocking(move || gauge.read(tenant));
        previous
    }

    /// Asks the outbox (blocking) and records the answer.
    fn read(&self, tenant: Domain) {
        let full = self.outbox.pending_bytes(tenant.as_str()) >= self.max;
        let mut figures = self.figures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        figures.insert(tenant, Figure { full, read_at: Some(Instant::now()), reading: false });
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use switchyard_storage::StorageError;
    use switchyard_storage::forward::OutboxRecord;

    use super::*;
    use crate::config::Overrides;

    fn load(file: &str, env: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, file).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Settings::load(Some(Path::new(&path)), env, &Overrides::default())
    }

    #[test]
    fn embedded_is_the_default() {
        assert!(matches!(load("", &[]).unwrap().storage, Backend::Embedded(m) if m == EmbeddedMemory::default()));
        assert!(matches!(load("[storage]\nbackend = \"embedded\"\n", &[]).unwrap().storage, Backend::Embedded(_)));
    }

    #[test]
    fn the_embedded_memory_bounds_are_read_and_checked() {
        let file = "[storage]\nwrite_buffer_bytes = 8388608\ncache_bytes = 1048576\nmax_tracked_series = 5\n";
        let Backend::Embedded(m) = load(file, &[]).unwrap().storage else { panic!("not embedded") };
        let expected = EmbeddedMemory {
            write_buffer_bytes: 8 << 20,
            cache_bytes: 1 << 20,
            max_tracked_series: 5,
            ..EmbeddedMemory::default()
        };
        assert_eq!(m, expected);
        assert!(load("[storage]\nmax_tracked_resources = 0\n", &[]).is_err());
        let small = load("[storage]\nwrite_buffer_bytes = 1000\n", &[]).unwrap_err();
        assert!(small.to_string().contains("at least"), "{small}");
        let pg = "[storage]\nbackend = \"postgres\"\nurl = \"postgres://h/db\"\nwrite_buffer_bytes = 8388608\n";
        assert!(load(pg, &[]).unwrap_err().to_string().contains("embedded"));
    }

    #[test]
    fn postgres_reads_the_file_and_the_environment() {
        let file = "[storage]\nbackend = \"postgres\"\nurl = \"postgres://a@h/db\"\npool_size = 4\nschema = \"sy\"\n";
        let Backend::Postgres(pg) = load(file, &[]).unwrap().storage else { panic!("not postgres") };
        assert_eq!((pg.url.as_str(), pg.pool_size, pg.schema.as_deref()), ("postgres://a@h/db", 4, Some("sy")));
        assert_eq!(pg.connect_timeout, Duration::from_secs(10));
        assert_eq!(pg.ca_file, None);
        let tls = format!("{file}ca_file = \"db-ca.pem\"\n");
        let Backend::Postgres(pg) = load(&tls, &[]).unwrap().storage else { panic!("not postgres") };
        assert_eq!(pg.ca_file.as_deref(), Some(std::path::Path::new("db-ca.pem")));
        let Backend::Postgres(pg) = load(file, &[("SWITCHYARD_STORAGE_CA_FILE", "env.pem")]).unwrap().storage else {
            panic!("not postgres")
        };
        assert_eq!(pg.ca_file.as_deref(), Some(std::path::Path::new("env.pem")));

        let env = [
            ("SWITCHYARD_STORAGE_BACKEND", "postgres"),
            ("SWITCHYARD_STORAGE_URL", "postgres://u:pw@h:5433/other"),
            ("SWITCHYARD_STORAGE_POOL_SIZE", "2"),
        ];
        let Backend::Postgres(pg) = load(file, &env).unwrap().storage else { panic!("not postgres") };
        assert_eq!((pg.url.as_str(), pg.pool_size), ("postgres://u:pw@h:5433/other", 2));
        let Backend::Postgres(pg) = load("", &env).unwrap().storage else { panic!("not postgres") };
        assert_eq!(pg.schema, None);
        assert!(!format!("{:?}", load("", &env).unwrap()).contains("pw"), "Debug shows no password");
    }

    #[test]
    fn bad_storage_settings_are_named_in_the_error() {
        let cases = [
            ("[storage]\nbackend = \"postgres\"\n", "storage.url"),
            ("[storage]\nbackend = \"postgres\"\nurl = \" \"\n", "storage.url"),
            ("[storage]\nbackend = \"postgres\"\nurl = \"postgres://h/d\"\npool_size = 0\n", "storage.pool_size"),
            ("[storage]\nbackend = \"sqlite\"\n", "storage.backend"),
            ("[storage]\nurl = \"postgres://h/d\"\n", "storage.url"),
            ("[storage]\nca_file = \"db-ca.pem\"\n", "storage.ca_file"),
            ("[storage]\npool = 3\n", "pool"),
            (
                "[storage]\nbackend = \"postgres\"\nurl = \"postgres://h/d\"\n[pipeline]\nretention = \"1d\"\n",
                "pipeline.retention",
            ),
        ];
        for (text, expected) in cases {
            let err = load(text, &[]).unwrap_err();
            assert!(format!("{err:#}").contains(expected), "{text}: {err:#}");
        }
        let err = load("", &[("SWITCHYARD_STORAGE_BACKEND", "postgres")]).unwrap_err();
        assert!(format!("{err:#}").contains("SWITCHYARD_STORAGE_URL"), "{err:#}");
    }

    /// An outbox holding `.0` bytes for every tenant, counting the times it was asked.
    struct Pending(u64, std::sync::atomic::AtomicUsize);

    impl OutboxStore for Pending {
        fn set_sinks(&self, _: &[&str]) -> Result<(), StorageError> {
            Ok(())
        }
        fn sinks(&self) -> Result<Vec<(String, u64)>, StorageError> {
            Ok(Vec::new())
        }
        fn read(&self, _: u64, _: usize) -> Result<Vec<OutboxRecord>, StorageError> {
            Ok(Vec::new())
        }
        fn cursor(&self, _: &str) -> Result<Option<u64>, StorageError> {
            Ok(None)
        }
        fn acknowledge(&self, _: &str, _: u64) -> Result<(), StorageError> {
            Ok(())
        }
        fn rewind(&self, _: &str, _: i64) -> Result<u64, StorageError> {
            Ok(0)
        }
        fn trim(&self, _: i64) -> Result<u64, StorageError> {
            Ok(0)
        }
        fn last(&self) -> u64 {
            0
        }
        fn pending_bytes(&self, _: &str) -> u64 {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.0
        }
    }

    fn gauge(pending: u64, max: u64) -> (Arc<OutboxGauge>, Arc<Pending>) {
        let outbox = Arc::new(Pending(pending, 0.into()));
        (Arc::new(OutboxGauge::new(outbox.clone(), max)), outbox)
    }

    #[test]
    fn the_outbox_gauge_asks_at_once_off_the_runtime() {
        let tenant = Domain::parse("a.example").unwrap();
        assert!(gauge(10, 10).0.full(&tenant));
        assert!(!gauge(9, 10).0.full(&tenant));
    }

    #[tokio::test]
    async fn the_outbox_gauge_asks_on_the_blocking_pool_then_answers_from_memory() {
        let tenant = Domain::parse("a.example").unwrap();
        let (gauge, outbox) = gauge(10, 10);
        assert!(!gauge.full(&tenant), "not read yet: not full");
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            while !gauge.full(&tenant) {
                tokio::task::yield_now().await;
            }
        });
        read.await.expect("the figure is read on the blocking pool");
        assert_eq!(outbox.1.load(std::sync::atomic::Ordering::SeqCst), 1, "one read while fresh");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted("postgres://sy:s3cret@db:5432/sy?sslmode=disable"),
            "postgres://sy:***@db:5432/sy?sslmode=disable"
        );
        assert_eq!(redacted("postgresql://a:b:c@h/d"), "postgresql://a:***@h/d");
        assert_eq!(redacted("postgres://sy@db/sy"), "postgres://sy@db/sy");
        assert_eq!(redacted("postgres://db/sy"), "postgres://db/sy");
        assert_eq!(redacted("postgres://sy@db/sy?password=s3cret&x=1"), "postgres://sy@db/sy?password=***&x=1");
        assert_eq!(redacted("host=db user=sy password=s3cret dbname=sy"), "host=db user=sy password=*** dbname=sy");
    }
}
