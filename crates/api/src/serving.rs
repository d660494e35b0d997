//! Serving the router over plain HTTP or HTTPS: one task per connection, the TLS handshake
//! inside it under a deadline, at most [`HttpLimits::connections`] open at once. Beyond the
//! limit a new connection is closed at once, before any byte is read or any handshake runs,
//! counted in `switchyard_http_refused_total` and logged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use switchyard_transport::TlsSource;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Bounds of the HTTP(S) listeners.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// TLS handshake deadline (HTTPS).
    pub handshake_timeout: Duration,
    /// One permit per open connection, shared by the HTTP and HTTPS listeners
    /// (`[http] max_connections`).
    pub connections: Arc<Semaphore>,
}

impl HttpLimits {
    /// Limits allowing `max_connections` open connections.
    pub fn new(handshake_timeout: Duration, max_connections: usize) -> Self {
        Self { handshake_timeout, connections: Arc::new(Semaphore::new(max_connections)) }
    }
}

/// Serve `app` on `listener` until shutdown; with `tls`, every connection is HTTPS, its handshake
/// done in the connection's own task under the handshake deadline.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<TlsSource>>,
    app: Router,
    limits: HttpLimits,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => { backoff = Duration::from_millis(5); pair }
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&limits.connections).try_acquire_owned() else {
            metrics::counter!("switchyard_http_refused_total").increment(1);
            tracing::warn!(%peer, "HTTP connection limit reached; connection closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        let handshake_timeout = limits.handshake_timeout;
        tasks.spawn(async move {
            match tls {
                None => serve_http(stream, peer, app, shutdown).await,
                Some(tls) => match tokio::time::timeout(handshake_timeout, tls.acceptor().accept(stream)).await {
                    Ok(Ok(stream)) => serve_http(stream, peer, app, shutdown).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTPS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
                },
            }
            drop(permit);
        });
    }
}

async fn serve_http<S>(stream: S, peer: SocketAddr, app: Router, shutdown: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "HTTP connection error");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
