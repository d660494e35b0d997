//! How bytes reach the core: TCP and TLS listeners with bounded accept, and [`serve`], the one
//! per-connection task that every transport (including WebSocket, from the HTTP crate) runs.
//!
//! TLS handshakes run inside each connection's task under the connect timeout, never in the
//! accept loop, so a slow handshake cannot stall other clients. On MQTTS a verified client
//! certificate (`client_cert`) reaches the authenticator with the CONNECT credentials, and stays
//! tracked (`certified`) so a reload that revokes it closes the device's connections.

mod certified;
mod client_cert;
mod conn;
mod handshake;
mod inflow;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard_broker::Broker;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use certified::{Revoked, Tracked};
pub use client_cert::{ClientAuth, ClientCaFiles};
pub use conn::serve;
pub use tls::{TlsError, TlsFiles, TlsSource};

/// The runtime connections and the core run on: multi-threaded, `workers` threads, without
/// tokio's LIFO slot. That slot runs the task woken last first, which would handle the later of
/// two packets that reached different sockets together first (a PUBLISH routed before the
/// SUBSCRIBE another client sent ahead of it); without it, tasks a worker wakes together run in
/// arrival order. Needs `--cfg tokio_unstable` (`.cargo/config.toml`).
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers).enable_all().disable_lifo_slot();
    builder.build()
}

/// Limits of the listeners.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Time allowed for the TLS / WebSocket handshake plus CONNECT and authentication.
    pub connect_timeout: Duration,
    /// Shared by every listener: connections beyond it are closed at once after accept.
    pub connections: Arc<Semaphore>,
}

/// Accept MQTT connections on `listener` until shutdown; with `tls`, each one is TLS.
/// Connection tasks are tracked by `tasks` so the caller can wait for them to drain.
pub async fn run_listener(
    listener: TcpListener,
    tls: Option<Arc<TlsSource>>,
    broker: Broker,
    limits: ListenerLimits,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) => {
                // Out of file descriptors or similar: wait rather than spin.
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limits.connections).try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; connection closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        let timeout = limits.connect_timeout;
        // A TLS connection is its own, larger kind of task: plain ones do not reserve its room.
        match &tls {
            None => tasks.spawn(conn::serve_holding(stream, Some(peer), None, broker, timeout, shutdown, permit)),
            Some(tls) => tasks.spawn(serve_tls(stream, peer, Arc::clone(tls), broker, timeout, shutdown, permit)),
        };
    }
}

/// The TLS handshake (under the connect timeout), then [`serve`] with the client certificate,
/// if one was presented and verified.
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Arc<TlsSource>,
    broker: Broker,
    timeout: Duration,
    shutdown: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let started = tokio::time::Instant::now();
    match tokio::time::timeout(timeout, Box::pin(tls.mqtt_acceptor().accept(stream))).await {
        Ok(Ok(stream)) => {
            // The guard keeps the chain for reloads to check again while the connection lives.
            let (cert, _tracked) = match stream.get_ref().1.peer_certificates().and_then(|chain| tls.identify(chain)) {
                Some((cert, tracked)) => (Some(Box::new(cert)), Some(tracked)),
                None => (None, None),
            };
            let left = timeout.saturating_sub(started.elapsed());
            conn::serve_holding(stream, Some(peer), cert, broker, left, shutdown, permit).await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}
