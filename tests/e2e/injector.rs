//! Our webhook, in-process: the library's real HTTPS server on loopback ports.
//!
//! The same `Server` as `sidecar-injector serve`, bound to 127.0.0.1:0 (the listeners are
//! passed in, so there is no port race), with a CA and serving certificate for 127.0.0.1 made
//! by [`CertBundle`], the code behind the `certs` command. The API server reaches it at
//! `https://127.0.0.1:PORT/inject` and trusts it through the caBundle. The harness's injector
//! also reads namespace annotations and LimitRanges from the cluster, as a deployed one does.
//! One started with a client CA requires client certificates, as `serve --client-ca` does;
//! one started with a config file re-reads it, as `serve --config` does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sidecar_injector::certs::CertBundle;
use sidecar_injector::config::{InjectConfig, UserConfig};
use sidecar_injector::engine::Injector;
use sidecar_injector::server::Server;
use sidecar_injector::server::tls::server_config_with_client_ca;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::check::{Context, eventually};
use crate::loopback_http;

/// Counters read from `/metrics`, under Istio's metric names.
pub const REQUESTS: &str = "sidecar_injection_requests_total";
/// Pods skipped because they already carry a proxy: what a reinvocation produces.
pub const SKIPPED_ALREADY_INJECTED: &str = "sidecar_injection_skip_total{reason=\"already-injected\"}";
/// 1 once the namespace and LimitRange reflectors have listed once.
pub const CACHE_SYNCED: &str = "sidecar_injector_cache_synced";
/// TLS handshakes that failed (not timed out): a refused client certificate is one.
pub const HANDSHAKE_FAILURES: &str = "sidecar_injector_tls_handshake_failures_total{reason=\"error\"}";

/// How often [`RunningInjector::start_with_config_file`]'s injector re-reads its file.
const CONFIG_POLL: Duration = Duration::from_millis(100);

/// A running webhook server; stopped (and drained) by [`RunningInjector::stop`].
pub struct RunningInjector {
    webhook: SocketAddr,
    admin: SocketAddr,
    ca_pem: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
}

// === impl RunningInjector ===

impl RunningInjector {
    /// Starts the server with `config` on 127.0.0.1 ephemeral ports, without namespace or
    /// LimitRange caches: pods get the config's sizing only.
    pub async fn start(config: InjectConfig) -> Result<Self, String> {
        Self::start_with(config, None, None).await
    }

    /// Like [`RunningInjector::start`], reading namespace annotations and LimitRanges through
    /// `client`, as `serve` does in a cluster; see [`RunningInjector::wait_synced`].
    pub async fn start_with_cluster(config: InjectConfig, client: kube::Client) -> Result<Self, String> {
        Self::start_with(config, Some(client), None).await
    }

    /// Like [`RunningInjector::start`], requiring every client to present a certificate
    /// issued by `client_ca_pem`, as `serve --client-ca` does.
    pub async fn start_with_client_ca(config: InjectConfig, client_ca_pem: &str) -> Result<Self, String> {
        Self::start_with(config, None, Some(client_ca_pem)).await
    }

    /// Like [`RunningInjector::start_with_cluster`], with the config file as written, so that
    /// with `istio.source: cluster` the installed Istio's ConfigMaps fill the keys it leaves
    /// out, as `serve --config` does.
    pub async fn start_with_user_config(user: UserConfig, client: kube::Client) -> Result<Self, String> {
        let config = user.config.clone();
        Self::start_server(config, Some(user), Some(client), None, None).await
    }

    /// Like [`RunningInjector::start_with_user_config`], with the config read from `path` and
    /// re-read every 100 ms, as `serve --config` polls its file: writing the file is a config
    /// change without a restart.
    pub async fn start_with_config_file(path: &Path, client: kube::Client) -> Result<Self, String> {
        let user = UserConfig::load(path).map_err(|e| e.to_string())?;
        let config = user.config.clone();
        let reload = Some(path.to_path_buf());
        Self::start_server(config, Some(user), Some(client), None, reload).await
    }

    async fn start_with(
        config: InjectConfig,
        client: Option<kube::Client>,
        client_ca_pem: Option<&str>,
    ) -> Result<Self, String> {
        Self::start_server(config, None, client, client_ca_pem, None).await
    }

    async fn start_server(
        config: InjectConfig,
        user: Option<UserConfig>,
        client: Option<kube::Client>,
        client_ca_pem: Option<&str>,
        reload: Option<PathBuf>,
    ) -> Result<Self, String> {
        let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
        let bundle = CertBundle::generate(&hosts).context("making webhook certificates")?;
        let tls = server_config_with_client_ca(
            bundle.cert_pem.as_bytes(),
            bundle.key_pem.as_bytes(),
            client_ca_pem.map(|pem| (pem.as_bytes(), "the e2e client CA")),
            ("generated", "generated"),
        )
        .context("loading webhook certificates")?;
        let webhook_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the webhook")?;
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding admin")?;
        let injector = Injector::new(config).context("validating the injector config")?;
        let mut server = Server::bind(webhook_listener, admin_listener, tls, injector);
        if let Some(user) = user {
            server = server.with_user_config(user).context("composing the injector config")?;
        }
        if let Some(client) = client {
            server = server.with_cluster(client);
        }
        if let Some(path) = reload {
            server = server.reload_config(path, CONFIG_POLL);
        }
        let webhook = server.webhook_addr().context("webhook address")?;
        let admin = server.admin_addr().context("admin address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            server.run(shutdown).await.map_err(|e| e.to_string())
        });
        Ok(RunningInjector {
            webhook,
            admin,
            ca_pem: bundle.ca_pem,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The URL the API server calls.
    pub fn url(&self) -> String {
        format!("https://{}/inject", self.webhook)
    }

    /// The webhook's address.
    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook
    }

    /// The admin server's address (`/readyz`, `/metrics`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The CA (PEM) that signed the serving certificate, for `clientConfig.caBundle`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The current value of a counter series from `/metrics`, e.g. [`REQUESTS`]; 0 if absent.
    pub async fn counter(&self, series: &str) -> Result<u64, String> {
        let (status, text) = loopback_http::get(self.admin, "/metrics").await?;
        if status != 200 {
            return Err(format!("/metrics answered {status}: {text}"));
        }
        let value = text
            .lines()
            .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .next()
            .map(|value| {
                value
                    .trim()
                    .parse::<f64>()
                    .map_err(|e| format!("{series} {value:?}: {e}"))
            })
            .transpose()?
            .unwrap_or(0.0);
        Ok(value as u64)
    }

    /// Waits until `/readyz` answers 200 and the caches report synced (not merely the
    /// cache-sync timeout passing), so that the first pods see namespaces and LimitRanges.
    pub async fn wait_synced(&self) -> Result<(), String> {
        eventually("the injector's namespace and LimitRange caches sync", || async {
            let (status, text) = loopback_http::get(self.admin, "/readyz").await?;
            if status != 200 {
                return Err(format!("/readyz answered {status}: {}", text.trim()));
            }
            match self.counter(CACHE_SYNCED).await? {
                1 => Ok(()),
                n => Err(format!("{CACHE_SYNCED} is {n}")),
            }
        })
        .await
    }

    /// Stops accepting, drains in-flight requests and waits for the server to finish.
    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.context("webhook task")?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningInjector {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
