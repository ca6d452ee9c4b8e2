//! The HTTPS webhook server and its plain-HTTP admin server: a thin shell around the engine.
//!
//! [`Server::bind`] takes already-bound listeners, so tests can bind port 0 and read the
//! address back without a race. [`Server::run`] serves until the shutdown future
//! resolves, then marks itself unready, stops accepting, and lets in-flight requests
//! finish before returning.

pub mod admin;
pub mod cluster;
pub mod https;
pub mod metrics;
pub mod tls;
pub mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ServerConfig;
use tokio::net::TcpListener;

use self::admin::{AdminState, Readiness};
use self::cluster::ClusterCache;
use self::metrics::Metrics;
use self::webhook::WebhookState;
use crate::engine::Injector;

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
    cluster: Option<kube::Client>,
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
            cluster: None,
        }
    }

    /// Reads namespace annotations and LimitRanges through `client`; `/readyz` then waits
    /// for the caches' first sync.
    pub fn with_cluster(mut self, client: kube::Client) -> Self {
        self.readiness = Arc::new(Readiness::new(true));
        self.cluster = Some(client);
        self
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
            cluster,
        } = self;
        let cluster = cluster.map(|client| ClusterCache::start(client, readiness.clone()));
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

        let app = webhook::router(Arc::new(WebhookState {
            injector,
            metrics,
            cluster,
        }));
        let draining = readiness.clone();
        let served = https::serve_https(webhook_listener, tls, app, Some(readiness.clone()), async move {
            shutdown.await;
            draining.set(false);
        })
        .await;
        let _ = stop_admin.send(());
        let _ = admin_task.await;
        served
    }
}
