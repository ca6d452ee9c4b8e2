//! The HTTPS webhook server and its plain-HTTP admin server: a thin shell around the engine.
//!
//! [`Server::bind`] takes already-bound listeners, so tests can bind port 0 and read the
//! address back without a race. [`Server::run`] serves until the shutdown future
//! resolves, then marks itself unready, stops accepting, and lets in-flight requests
//! finish before returning.

pub mod admin;
pub mod metrics;
pub mod tls;
pub mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use self::admin::{AdminState, Readiness};
use self::metrics::Metrics;
use self::webhook::WebhookState;
use crate::engine::Injector;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be read or served.
    #[error("listener error: {0}")]
    Io(#[from] std::io::Error),
}

/// A server whose listeners are bound and whose TLS credentials are loaded.
pub struct Server {
    webhook_listener: TcpListener,
    admin_listener: TcpListener,
    tls: Arc<ServerConfig>,
    injector: Injector,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

// === impl Server ===

impl Server {
    /// Assembles a server from bound listeners, TLS settings and an engine.
    pub fn bind(
        webhook_listener: TcpListener,
        admin_listener: TcpListener,
        tls: Arc<ServerConfig>,
        injector: Injector,
    ) -> Self {
        Server {
            webhook_listener,
            admin_listener,
            tls,
            injector,
            metrics: Arc::new(Metrics::new()),
            readiness: Arc::new(Readiness::default()),
        }
    }

    /// The webhook's address.
    pub fn webhook_addr(&self) -> std::io::Result<SocketAddr> {
        self.webhook_listener.local_addr()
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let Server {
            webhook_listener,
            admin_listener,
            tls,
            injector,
            metrics,
            readiness,
        } = self;
        let admin = admin::router(AdminState {
            readiness: readiness.clone(),
            metrics: metrics.clone(),
        });
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = tokio::spawn(async move {
            let served = axum::serve(admin_listener, admin)
                .with_graceful_shutdown(async move {
                    let _ = admin_stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "admin server failed");
            }
        });

        let app = webhook::router(Arc::new(WebhookState { injector, metrics }));
        let acceptor = TlsAcceptor::from(tls);
        let graceful = GracefulShutdown::new();
        readiness.set(true);
        tracing::info!(addr = %webhook_listener.local_addr()?, "webhook serving HTTPS");
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = webhook_listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let service = TowerToHyperService::new(app.clone());
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let tls_stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls_stream)) => tls_stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                        let builder = ConnectionBuilder::new(TokioExecutor::new());
                        let connection = builder.serve_connection(TokioIo::new(tls_stream), service);
                        if let Err(error) = watcher.watch(connection.into_owned()).await {
                            tracing::debug!(%peer, %error, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        readiness.set(false);
        drop(webhook_listener);
        tracing::info!("shutting down: draining in-flight requests");
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
            tracing::warn!("drain timed out; closing remaining connections");
        }
        let _ = stop_admin.send(());
        let _ = admin_task.await;
        Ok(())
    }
}
