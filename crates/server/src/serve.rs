//! `switchyard serve`: open the key file and storage (embedded in `data_dir` or PostgreSQL, see
//! `storage.rs`), load the Device Hub (first start: write the initial credentials), start the
//! core with the hub as its authenticator and the pipeline with its data store (maintained on a
//! task of its own), bind every listener, wait for a signal, then drain within the deadline: stop
//! accepting, close connections (wills go out), write pending device activity, flush.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchyard_broker::{AnonymousAuth, Broker, DataPath};
use switchyard_hub::{DEFAULT_DEVICE_CACHE, Hub, HubConfig, INITIAL_CREDENTIALS, Registry, system_clock};
use switchyard_identity::{KeyFile, check_private};
use switchyard_pipeline::{Pipeline, TenantData};
use switchyard_storage::RegistryStore;
use switchyard_transport::{ListenerLimits, TlsSource};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;

/// How often certificate, client CA and CRL files are checked for changes.
const TLS_RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Log levels from `SWITCHYARD_LOG`, else `RUST_LOG`, else [`DEFAULT_LOG`] (see [`log_filter`]).
fn init_logs(json: bool) {
    let filter = log_filter(std::env::var("SWITCHYARD_LOG").ok(), std::env::var("RUST_LOG").ok());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Without a filter set: our `info`, the storage engines' and the PostgreSQL client's warnings only.
const DEFAULT_LOG: &str = "info,fjall=warn,lsm_tree=warn,tokio_postgres=warn";

/// The first of the directives that is set and non-empty wins; an invalid one is reported
/// on stderr and replaced by [`DEFAULT_LOG`].
fn log_filter(switchyard_log: Option<String>, rust_log: Option<String>) -> tracing_subscriber::EnvFilter {
    let chosen = [switchyard_log, rust_log].into_iter().flatten().find(|d| !d.trim().is_empty());
    let Some(directives) = chosen else { return tracing_subscriber::EnvFilter::new(DEFAULT_LOG) };
    tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("switchyard: ignoring log filter {directives:?} ({e}); using {DEFAULT_LOG:?}");
        tracing_subscriber::EnvFilter::new(DEFAULT_LOG)
    })
}

pub fn run(settings: Settings) -> anyhow::Result<()> {
    init_logs(settings.json_logs);
    let workers = settings.workers;
    let runtime = switchyard_transport::runtime(workers).context("starting the runtime")?;
    runtime.block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Before any listener answers: a SIGTERM that follows a successful health check must
    // start a clean shutdown, never the default action (death without a flush).
    let mut signals = Signals::register().context("registering signal handlers")?;
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
    // Secrets first: a file others can read refuses the start before anything is opened.
    warn_if_inside(&settings.key_file, &settings.data_dir);
    check_initial_credentials(&settings.data_dir)?;
    let key_file = KeyFile::load_or_create(&settings.key_file).context("opening the server key file")?;
    let opening = settings.clone();
    let storage = off_runtime(move || crate::storage::open(&opening)).await?;
    let hub = {
        let (settings, registry) = (settings.clone(), Arc::clone(&storage.registry));
        off_runtime(move || open_hub(&settings, registry, key_file)).await?
    };
    let registry = Arc::clone(hub.registry());
    let mut pipeline = Pipeline::new(settings.pipeline.clone()).with_tenant_data(move |domain| {
        let tenant = registry.tenant(domain);
        tenant
            .map(|e| TenantData {
                message_cache: e.tenant.message_cache,
                retention: e.tenant.retention_secs.map(Duration::from_secs),
            })
            .unwrap_or_default()
    });
    if !settings.forward.is_empty() {
        // Checked per request, without I/O on the request's path: see docs/forwarding.md.
        pipeline = pipeline.with_outbox_bound(storage.outbox_full(settings.max_outbox_bytes));
    }
    let pipeline = Arc::new(pipeline);
    let tls = match &settings.tls {
        Some(files) => Some(TlsSource::load(files.clone()).context("loading the TLS certificate and client CAs")?),
        None => None,
    };

    // Bind everything before starting work, so a taken port fails fast.
    let mqtt = bind(settings.mqtt_listen, "MQTT").await?;
    let http = bind(settings.http_listen, "HTTP").await?;
    let (mqtts, https) = match &tls {
        Some(_) => {
            (Some(bind(settings.mqtt_tls_listen, "MQTTS").await?), Some(bind(settings.http_tls_listen, "HTTPS").await?))
        }
        None => (None, None),
    };

    let shutdown = CancellationToken::new();
    let router_stop = CancellationToken::new();
    let data_path = DataPath { intake: pipeline.clone(), store: Arc::clone(&storage.data) };
    let (broker, router) = {
        let (config, sessions, auth, stop) =
            (settings.broker.clone(), Arc::clone(&storage.sessions), hub.clone(), router_stop.clone());
        // Loads the stored sessions: a blocking read.
        off_runtime(move || {
            Broker::start_with_data(config, sessions, auth, data_path, stop).context("starting the broker core")
        })
        .await?
    };
    let maintain_stop = CancellationToken::new();
    let maintainer = storage.spawn_maintenance(maintain_stop.clone());
    hub.attach(broker.clone());
    let flusher_stop = CancellationToken::new();
    let flusher = tokio::spawn(Arc::clone(&hub).run_flusher(flusher_stop.clone()));
    let limits = ListenerLimits {
        connect_timeout: settings.connect_timeout,
        connections: Arc::new(Semaphore::new(settings.max_connections)),
    };
    let tasks = TaskTracker::new();
    let listeners = TaskTracker::new();
    let api_state = switchyard_api::ApiState {
        broker: broker.clone(),
        limits: limits.clone(),
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
        hub,
        metrics: install_metrics(),
        ingest: switchyard_api::IngestConfig { pipeline, max_body: settings.max_body },
        ws: switchyard_api::WsLimits::new(settings.http_max_websockets),
        streams: switchyard_api::StreamLimits::new(settings.http_max_streams, switchyard_api::DEFAULT_QUEUE),
    };
    let app = switchyard_api::protect(switchyard_api::router(api_state.clone()), settings.allowed_origins.clone());

    // After the metrics recorder is installed, so the forwarders' lag gauges reach it.
    let forward_stop = CancellationToken::new();
    let forward_tasks = TaskTracker::new();
    let sinks = settings.forward.iter().map(|s| Ok((s.name.clone(), s.sink()?))).collect::<anyhow::Result<_>>()?;
    let forwarder = {
        let (outbox, tasks, stop) = (Arc::clone(&storage.outbox), forward_tasks.clone(), forward_stop.clone());
        // Registers the sinks with the outbox: a blocking write.
        off_runtime(move || {
            switchyard_forward::Forwarder::start(outbox, sinks, switchyard_forward::RunConfig::default(), &tasks, stop)
                .context("starting the forwarders")
        })
        .await?
    };
    let app = app.merge(crate::forward::admin_routes(forwarder, api_state));
    listeners.spawn(switchyard_transport::run_listener(
        mqtt,
        None,
        broker.clone(),
        limits.clone(),
        tasks.clone(),
        shutdown.clone(),
    ));
    let http_limits = switchyard_api::HttpLimits::new(settings.connect_timeout, settings.http_max_connections);
    listeners.spawn(switchyard_api::serve(
        http,
        None,
        app.clone(),
        http_limits.clone(),
        tasks.clone(),
        shutdown.clone(),
    ));
    if let (Some(tls), Some(mqtts), Some(https)) = (&tls, mqtts, https) {
        let watch = Arc::clone(tls).watch(TLS_RELOAD_EVERY, broker.clone(), limits.connect_timeout, shutdown.clone());
        listeners.spawn(watch);
        listeners.spawn(switchyard_transport::run_listener(
            mqtts,
            Some(Arc::clone(tls)),
            broker.clone(),
            limits.clone(),
            tasks.clone(),
            shutdown.clone(),
        ));
        listeners.spawn(switchyard_api::serve(
            https,
            Some(Arc::clone(tls)),
            app,
            http_limits,
            tasks.clone(),
            shutdown.clone(),
        ));
    }
    tracing::info!(data_dir = %settings.data_dir.display(), tenant = %settings.tenant_domain, "switchyard ready");

    // The core ending on its own (a panic) leaves nothing worth serving: stop, and say so.
    let mut core = tokio::spawn(router.join());
    let core_failed = tokio::select! {
        () = signals.recv() => false,
        _ = &mut core => true,
    };
    if core_failed {
        tracing::error!("broker core stopped unexpectedly; shutting down");
    }
    tracing::info!(deadline_s = settings.shutdown_timeout.as_secs(), "shutting down");
    shutdown.cancel();
    // Connections hold no shutdown signal: the core closes them, and refuses late ones.
    if broker.close_all().await.is_err() {
        tracing::warn!("the broker core is gone; connections close as their clients leave");
    }
    drop(broker);
    listeners.close();
    tasks.close();
    let drained = tokio::time::timeout(settings.shutdown_timeout, async {
        listeners.wait().await;
        tasks.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(open = tasks.len(), "connections still open at the deadline; closing anyway");
    }
    flusher_stop.cancel();
    if tokio::time::timeout(settings.shutdown_timeout, flusher).await.is_err() {
        tracing::error!("device activity was not written before the deadline");
    }
    forward_stop.cancel();
    forward_tasks.close();
    if tokio::time::timeout(settings.shutdown_timeout, forward_tasks.wait()).await.is_err() {
        tracing::warn!("forwarders still running at the deadline; unacknowledged records resend");
    }
    router_stop.cancel();
    maintain_stop.cancel();
    if !core_failed && tokio::time::timeout(settings.shutdown_timeout, core).await.is_err() {
        tracing::error!("broker core did not finish flushing before the deadline");
    }
    if tokio::time::timeout(settings.shutdown_timeout, maintainer).await.is_err() {
        tracing::warn!("data store maintenance still running at the deadline");
    }
    if core_failed {
        anyhow::bail!("broker core stopped unexpectedly");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Runs blocking startup work (store reads and writes) on the blocking pool: the PostgreSQL
/// stores must never be called from an async task.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work).await.context("a startup task panicked")?
}

/// The registry (bootstrapped on first start) and the hub over `store`. Blocking.
fn open_hub(settings: &Settings, store: Arc<dyn RegistryStore>, key_file: KeyFile) -> anyhow::Result<Arc<Hub>> {
    let registry =
        Registry::open(store, key_file, system_clock(), DEFAULT_DEVICE_CACHE).context("loading the device registry")?;
    if let Some(path) =
        registry.bootstrap(&settings.data_dir, &settings.tenant_domain).context("first-start bootstrap")?
    {
        tracing::warn!(
            path = %path.display(),
            "first start: the admin token and the first tenant's credentials were written to this file (mode 0600); \
             read them, store them safely and delete the file"
        );
    }
    let config = HubConfig {
        rotation_grace: settings.rotation_grace,
        limiter: settings.auth_limits,
        anonymous: AnonymousAuth { allow_anonymous: settings.allow_anonymous, deny: settings.anonymous_deny.clone() },
        ..HubConfig::default()
    };
    Ok(Hub::new(Arc::new(registry), config))
}

/// A first-start credentials file still present must still be private: it holds the admin
/// token and a tenant's master key.
fn check_initial_credentials(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let path = data_dir.join(INITIAL_CREDENTIALS);
    match std::fs::metadata(&path) {
        Ok(metadata) => Ok(check_private(&path, &metadata)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A key file inside the data directory defeats its purpose: a copy of the data would carry it.
fn warn_if_inside(key_file: &std::path::Path, data_dir: &std::path::Path) {
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if absolute(key_file).starts_with(absolute(data_dir)) {
        tracing::warn!(
            key_file = %key_file.display(),
            "the server key file is inside the data directory: a copy of the data then opens every master key; \
             move it (server.key_file) and back it up separately"
        );
    }
}

/// Installs the Prometheus recorder behind `GET /metrics` (once per process).
fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed; /metrics shows broker figures only");
            None
        }
    }
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding the {what} listener on {addr}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(listener = what, addr = %local, "listening");
    Ok(listener)
}

/// SIGTERM and SIGINT, both of which ask for a clean shutdown.
struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Replaces the default actions from now on; a signal that arrives before [`Self::recv`]
    /// is polled is kept, not lost.
    fn register() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { term: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filter_prefers_switchyard_log_then_rust_log() {
        let filter = |s: Option<&str>, r: Option<&str>| log_filter(s.map(Into::into), r.map(Into::into)).to_string();
        assert_eq!(filter(Some("debug"), Some("warn")), "debug");
        assert_eq!(filter(None, Some("warn")), "warn");
        assert_eq!(filter(Some(" "), Some("switchyard_hub=debug")), "switchyard_hub=debug");
        assert_eq!(filter(None, None), tracing_subscriber::EnvFilter::new(DEFAULT_LOG).to_string());
    }

    #[cfg(unix)]
    #[test]
    fn initial_credentials_readable_by_others_refuse_the_start() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        check_initial_credentials(dir.path()).unwrap();
        let path = dir.path().join(INITIAL_CREDENTIALS);
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let message = format!("{:#}", check_initial_credentials(dir.path()).unwrap_err());
        assert!(message.contains(&path.display().to_string()) && message.contains("chmod 600"), "{message}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_initial_credentials(dir.path()).unwrap();
    }
}
