//! The HTTPS webhook server and its plain-HTTP admin server: a thin shell around the engine.
//!
//! [`Server::bind`] takes already-bound listeners, so tests can bind port 0 and read the
//! address back without a race. [`Server::run`] serves until the shutdown future
//! resolves, then turns `/readyz` to 503 at once, keeps accepting for the drain delay,
//! stops accepting, and lets in-flight requests finish before returning. TLS files and
//! the config file can be polled and reloaded while it runs ([`reload`]).

pub mod admin;
pub(crate) mod blocking;
pub mod cluster;
pub mod deadline;
pub mod events;
pub mod https;
pub mod idle;
pub mod installed_istio;
pub mod layers;
pub mod metrics;
pub mod options;
pub mod reload;
pub mod tls;
pub mod vpa;
pub mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use self::admin::{AdminState, Readiness};
use self::blocking::BlockingLane;
use self::cluster::ClusterCache;
use self::https::HttpsServer;
use self::installed_istio::InstalledIstioSource;
use self::layers::ConfigLayers;
use self::metrics::{Metrics, ReloadKind};
use self::options::ServeOptions;
use self::reload::FilePoller;
use self::tls::{TlsFiles, TlsHandle};
use self::webhook::WebhookState;
use crate::config::{IstioSource, UserConfig};
use crate::engine::Injector;

/// How long `/readyz` waits for the namespace caches by default before reporting ready
/// without them.
pub const DEFAULT_CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be read or served.
    #[error("listener error: {0}")]
    Io(#[from] std::io::Error),
}

/// A revision served besides the default one (`istio.revisions`): its layers and engine.
struct ServedRevision {
    name: String,
    layers: Arc<ConfigLayers>,
    injector: Arc<ArcSwap<Injector>>,
}

/// The other revisions `user` names, each starting from the file alone.
fn served_revisions(user: &UserConfig) -> Result<Vec<ServedRevision>, String> {
    user.config
        .istio
        .revisions
        .iter()
        .filter(|name| **name != user.config.revision)
        .map(|name| {
            let revision_user = user.for_revision(name);
            let injector =
                Injector::compose(&revision_user, &[]).map_err(|error| format!("revision {name}: {error}"))?;
            let injector = Arc::new(ArcSwap::from_pointee(injector));
            Ok(ServedRevision {
                name: name.clone(),
                layers: Arc::new(ConfigLayers::new(revision_user, injector.clone())),
                injector,
            })
        })
        .collect()
}

/// A server whose listeners are bound and whose TLS credentials are loaded.
pub struct Server {
    webhook_listener: TcpListener,
    admin_listener: TcpListener,
    tls: TlsHandle,
    injector: Arc<ArcSwap<Injector>>,
    layers: Arc<ConfigLayers>,
    revisions: Vec<ServedRevision>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    cluster: Option<kube::Client>,
    events: bool,
    cache_sync_timeout: Duration,
    options: ServeOptions,
    tls_reload: Option<(TlsFiles, Duration)>,
    config_reload: Option<(PathBuf, Duration)>,
}

// === impl Server ===

impl Server {
    /// Assembles a server from bound listeners, TLS settings and an engine.
    pub fn bind(
        webhook_listener: TcpListener,
        admin_listener: TcpListener,
        tls: impl Into<TlsHandle>,
        injector: Injector,
    ) -> Self {
        let user = UserConfig::explicit(injector.config().clone()).unwrap_or_else(|_| UserConfig::defaults());
        let revisions = served_revisions(&user).unwrap_or_default();
        let injector = Arc::new(ArcSwap::from_pointee(injector));
        Server {
            revisions,
            webhook_listener,
            admin_listener,
            tls: tls.into(),
            layers: Arc::new(ConfigLayers::new(user, injector.clone())),
            injector,
            metrics: Arc::new(Metrics::new()),
            readiness: Arc::new(Readiness::default()),
            cluster: None,
            events: true,
            cache_sync_timeout: DEFAULT_CACHE_SYNC_TIMEOUT,
            options: ServeOptions::default(),
            tls_reload: None,
            config_reload: None,
        }
    }

    /// Reads namespace annotations and LimitRanges through `client`; `/readyz` then waits
    /// for the caches' first sync (at most the cache-sync timeout).
    pub fn with_cluster(mut self, client: kube::Client) -> Self {
        self.readiness = Arc::new(Readiness::new(true));
        self.cluster = Some(client);
        self
    }

    /// Whether a server with a cluster emits Kubernetes Events on the workload when it denies
    /// a pod or adjusts its proxy's resources ([`events`]); on by default.
    pub fn with_events(mut self, enabled: bool) -> Self {
        self.events = enabled;
        self
    }

    /// How long `/readyz` waits for the caches before reporting ready without them.
    pub fn with_cache_sync_timeout(mut self, timeout: Duration) -> Self {
        self.cache_sync_timeout = timeout;
        self
    }

    /// The config file as written, so that settings of the installed Istio
    /// (`istio.source: cluster`) fill the keys it leaves out; without it every key of the
    /// engine's config counts as set.
    pub fn with_user_config(mut self, user: UserConfig) -> Result<Self, String> {
        self.revisions = served_revisions(&user)?;
        self.layers.set_user(user)?;
        Ok(self)
    }

    /// Limits, timeouts and the drain schedule.
    pub fn with_options(mut self, options: ServeOptions) -> Self {
        self.options = options;
        self
    }

    /// Re-reads `files` every `interval` and serves new connections with them when they
    /// change; a set that does not load keeps the current one.
    pub fn reload_tls(mut self, files: TlsFiles, interval: Duration) -> Self {
        self.tls_reload = Some((files, interval));
        self
    }

    /// Re-reads the config file every `interval` and injects with it when it changes; a
    /// file that does not validate keeps the current config.
    pub fn reload_config(mut self, path: PathBuf, interval: Duration) -> Self {
        self.config_reload = Some((path, interval));
        self
    }

    /// The counters, for tests and embedding.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The webhook's address.
    pub fn webhook_addr(&self) -> std::io::Result<SocketAddr> {
        self.webhook_listener.local_addr()
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// Starts the file pollers; they stop when the returned handles are aborted.
    fn start_reloads(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut pollers = Vec::new();
        if let Some((files, interval)) = self.tls_reload.take() {
            let mut poller = FilePoller::new(files.paths(), None);
            // Whatever is on disk now is what we serve from now on, if it loads.
            if let Some(Ok(contents)) = poller.poll()
                && let Ok(config) = files.config_from(&contents)
            {
                self.tls.store(config);
            }
            let handle = self.tls.clone();
            pollers.push(reload::spawn(
                poller,
                interval,
                ReloadKind::Tls,
                self.metrics.clone(),
                move |contents| {
                    handle.store(files.config_from(contents).map_err(|error| error.to_string())?);
                    Ok(())
                },
            ));
        }
        if let Some((path, interval)) = self.config_reload.take() {
            let origin = path.display().to_string();
            let layers = self.layers.clone();
            let others: Vec<(String, Arc<ConfigLayers>)> = self
                .revisions
                .iter()
                .map(|revision| (revision.name.clone(), revision.layers.clone()))
                .collect();
            let apply = move |contents: &[Vec<u8>]| -> Result<(), String> {
                let text = contents
                    .first()
                    .map(|bytes| String::from_utf8_lossy(bytes))
                    .unwrap_or_default();
                let user = UserConfig::from_yaml(&text, &origin).map_err(|error| error.to_string())?;
                // Every revision or none: check them all before swapping any.
                for (name, _) in &others {
                    Injector::compose(&user.for_revision(name), &[])
                        .map_err(|error| format!("revision {name}: {error}"))?;
                }
                for (name, revision) in &others {
                    revision.set_user(user.for_revision(name))?;
                }
                layers.set_user(user)
            };
            let mut poller = FilePoller::new(vec![path], None);
            if let Some(Ok(contents)) = poller.poll() {
                let _ = apply(&contents);
            }
            pollers.push(reload::spawn(
                poller,
                interval,
                ReloadKind::Config,
                self.metrics.clone(),
                apply,
            ));
        }
        pollers
    }

    /// Starts a watcher of the installed Istio for the config and each served revision, when
    /// the config reads it from the cluster.
    fn start_installed_istio(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut watchers = Vec::new();
        let user = self.layers.user().config;
        if let (Some(client), IstioSource::Cluster) = (&self.cluster, user.istio.source) {
            let all = std::iter::once((user.revision.clone(), self.layers.clone())).chain(
                self.revisions
                    .iter()
                    .map(|revision| (revision.name.clone(), revision.layers.clone())),
            );
            for (revision, layers) in all {
                let source = InstalledIstioSource {
                    namespace: user.istio.namespace.clone(),
                    revision,
                };
                watchers.push(installed_istio::spawn(
                    client.clone(),
                    source,
                    layers,
                    self.metrics.clone(),
                ));
            }
        }
        watchers
    }

    /// Serves until `shutdown` resolves, then drains and returns.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let mut pollers = self.start_reloads();
        pollers.extend(self.start_installed_istio());
        let Server {
            webhook_listener,
            admin_listener,
            tls,
            injector,
            metrics,
            readiness,
            cluster,
            events,
            cache_sync_timeout,
            options,
            revisions,
            ..
        } = self;
        let events = cluster
            .clone()
            .filter(|_| events)
            .map(|client| events::start(client, metrics.clone()));
        let revisions = revisions
            .into_iter()
            .map(|revision| (revision.name, revision.injector))
            .collect();
        let cluster =
            cluster.map(|client| ClusterCache::start(client, readiness.clone(), metrics.clone(), cache_sync_timeout));
        let admin = AdminServer::start(
            admin_listener,
            AdminState {
                readiness: readiness.clone(),
                metrics: metrics.clone(),
            },
        );
        let app = webhook::router(Arc::new(WebhookState {
            injector,
            revisions,
            metrics: metrics.clone(),
            cluster,
            blocking: BlockingLane::new(&options),
            options: options.clone(),
            events,
        }));
        let served = HttpsServer {
            listener: webhook_listener,
            tls,
            app,
            readiness: Some(readiness),
            options,
            metrics,
        }
        .serve(shutdown)
        .await;
        for poller in pollers {
            poller.abort();
        }
        admin.stop().await;
        served
    }
}

/// The admin endpoints' server task, and the switch that stops it.
struct AdminServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// Serves the admin router on `listener` until stopped.
    fn start(listener: TcpListener, state: AdminState) -> Self {
        let router = admin::router(state);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "admin server failed");
            }
        });
        AdminServer { stop, task }
    }

    /// Stops it gracefully and waits until it has stopped.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
