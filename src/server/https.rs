//! The HTTPS accept loop: connection limit, TLS handshakes, HTTP/1.1 and HTTP/2, and the
//! shutdown schedule (keep accepting for the drain delay, then let in-flight requests finish).
//!
//! Any axum [`Router`] can be served this way, which lets benchmarks measure a baseline
//! handler on exactly the stack the webhook uses.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Version, header};
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::ServeError;
use super::admin::Readiness;
use super::idle::Activity;
use super::metrics::Metrics;
use super::options::ServeOptions;
use super::tls::TlsHandle;

/// Serves `app` over TLS on `listener` with default [`ServeOptions`] until `shutdown`
/// resolves, then stops accepting and waits for in-flight connections to finish.
/// `readiness`, when given, is set once the loop accepts and cleared at shutdown.
pub async fn serve_https(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    readiness: Option<Arc<Readiness>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    HttpsServer {
        listener,
        tls: tls.into(),
        app,
        readiness,
        options: ServeOptions::default(),
        metrics: Arc::new(Metrics::new()),
    }
    .serve(shutdown)
    .await
}

/// Everything the accept loop needs.
pub struct HttpsServer {
    /// The bound webhook listener.
    pub listener: TcpListener,
    /// TLS settings, read again for every connection so rotation applies at once.
    pub tls: TlsHandle,
    /// The routes.
    pub app: Router,
    /// Set once accepting, cleared as soon as shutdown begins.
    pub readiness: Option<Arc<Readiness>>,
    /// Limits, timeouts and the drain schedule.
    pub options: ServeOptions,
    /// Connection and handshake counters.
    pub metrics: Arc<Metrics>,
}

/// What woke the accept loop.
enum Event {
    Permit(Result<OwnedSemaphorePermit, tokio::sync::AcquireError>),
    Accepted(std::io::Result<(TcpStream, std::net::SocketAddr)>),
    Shutdown,
    DrainDelayOver,
}

/// What every connection task shares.
#[derive(Clone)]
struct ConnectionContext {
    app: Router,
    options: ServeOptions,
    metrics: Arc<Metrics>,
}

// === impl HttpsServer ===

impl HttpsServer {
    /// Serves until `shutdown` resolves and the drain is over.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let HttpsServer {
            listener,
            tls,
            app,
            readiness,
            options,
            metrics,
        } = self;
        let (app, draining) = closing_when_draining(app);
        let max_connections = options.max_connections.clamp(1, u32::MAX as usize);
        let permits = Arc::new(Semaphore::new(max_connections));
        // Tells every connection to finish its requests and close.
        let (drain_tx, drain_rx) = watch::channel(false);
        let context = ConnectionContext {
            app,
            options: options.clone(),
            metrics,
        };
        tracing::info!(addr = %listener.local_addr()?, max_connections, "serving HTTPS");
        if let Some(readiness) = &readiness {
            readiness.set(true);
        }
        tokio::pin!(shutdown);
        let mut permit = None;
        let mut drain_until: Option<Instant> = None;
        loop {
            let event = tokio::select! {
                acquired = permits.clone().acquire_owned(), if permit.is_none() => Event::Permit(acquired),
                accepted = listener.accept(), if permit.is_some() => Event::Accepted(accepted),
                () = &mut shutdown, if drain_until.is_none() => Event::Shutdown,
                () = tokio::time::sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => {
                    Event::DrainDelayOver
                }
            };
            match event {
                Event::Permit(Ok(acquired)) => permit = Some(acquired),
                Event::Permit(Err(_)) | Event::DrainDelayOver => break,
                Event::Shutdown => {
                    if let Some(readiness) = &readiness {
                        readiness.set(false);
                    }
                    draining.store(true, Ordering::SeqCst);
                    tracing::info!(
                        drain_delay = ?options.drain_delay,
                        "shutting down: /readyz is 503; still accepting for the drain delay"
                    );
                    drain_until = Some(Instant::now() + options.drain_delay);
                }
                Event::Accepted(Err(error)) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Event::Accepted(Ok((stream, peer))) => {
                    let Some(permit) = permit.take() else {
                        continue;
                    };
                    let acceptor = TlsAcceptor::from(tls.current());
                    tokio::spawn(serve_connection(
                        context.clone(),
                        stream,
                        peer,
                        acceptor,
                        drain_rx.clone(),
                        permit,
                    ));
                }
            }
        }
        drop(listener);
        drop(permit);
        tracing::info!("stopped accepting; draining in-flight requests");
        drain_connections(&permits, max_connections as u32, &drain_tx, options.drain_timeout).await;
        Ok(())
    }
}

/// Adds the layer that asks clients to close their connections once draining has begun, and
/// returns the flag that starts it.
fn closing_when_draining(app: Router) -> (Router, Arc<AtomicBool>) {
    let draining = Arc::new(AtomicBool::new(false));
    let flag = draining.clone();
    let app = app.layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        let draining = flag.load(Ordering::SeqCst);
        close_when_draining(draining, request, next)
    }));
    (app, draining)
}

/// Tells every connection to finish its requests and close, then waits until all of them
/// have ended or `timeout` passes.
async fn drain_connections(permits: &Semaphore, all: u32, drain_tx: &watch::Sender<bool>, timeout: Duration) {
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(timeout, async {
        // Every connection task, in its handshake or serving, holds a permit until it ends.
        let _ = permits.acquire_many(all).await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}

/// Keeps [`Metrics`]' open-connection gauge right however a connection task ends.
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.connection_opened();
        OpenConnection(metrics)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

/// Handshakes, then serves HTTP/2 or HTTP/1.1 as ALPN chose, until the client leaves, the
/// drain ends the connection, or (HTTP/2) it has no request in flight for the header read
/// timeout. The permit is held throughout.
async fn serve_connection(
    context: ConnectionContext,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    acceptor: TlsAcceptor,
    mut drain: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    let _permit = permit;
    let _open = OpenConnection::new(context.metrics.clone());
    let _ = stream.set_nodelay(true);
    let tls_stream = match tokio::time::timeout(context.options.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => tls_stream,
        Ok(Err(error)) => {
            context.metrics.handshake_failed("error");
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            context.metrics.handshake_failed("timeout");
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut builder = ConnectionBuilder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(context.options.header_read_timeout);
    // HTTP/2 has no header timeout in hyper: idle connections are closed below, and pings
    // find peers that went away.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    // ALPN already chose the protocol; skipping hyper's sniffing also means a connection
    // that finishes its handshake during the drain still gets its first request served.
    let builder = if h2 { builder.http2_only() } else { builder.http1_only() };
    let activity = Activity::new();
    let tracked = activity.clone();
    let app = context
        .app
        .layer(axum::middleware::from_fn(move |request: Request, next: Next| {
            Activity::track(tracked.clone(), request, next)
        }));
    let connection = builder.serve_connection(TokioIo::new(tls_stream), TowerToHyperService::new(app));
    // A graceful shutdown of its own, so either the drain or idleness can start it. Its
    // `shutdown()` would wait for the watcher that `served` keeps until dropped, so the close
    // is started by dropping it instead.
    let closing = GracefulShutdown::new();
    let served = closing.watcher().watch(connection.into_owned());
    tokio::pin!(served);
    let idle_limit = context.options.header_read_timeout;
    let result = loop {
        tokio::select! {
            result = &mut served => break Some(result),
            _ = drain.wait_for(|draining| *draining) => break None,
            () = tokio::time::sleep(activity.idle_deadline(idle_limit)), if h2 => {
                if activity.idle_deadline(idle_limit).is_zero() {
                    tracing::debug!(%peer, "closing an idle HTTP/2 connection");
                    break None;
                }
            }
        }
    };
    let result = match result {
        Some(result) => result,
        None => {
            // Dropping the trigger starts the graceful close (GOAWAY, or close once the
            // current HTTP/1.1 response is sent); the connection then finishes its requests.
            drop(closing);
            served.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// During the drain delay, asks HTTP/1.1 clients to close after this response, so their
/// next request opens a new connection (which the Service routes to a pod that stays).
async fn close_when_draining(draining: bool, request: Request, next: Next) -> Response {
    let http1 = request.version() < Version::HTTP_2;
    let mut response = next.run(request).await;
    if draining && http1 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
