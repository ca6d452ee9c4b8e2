//! The servers under load, started in this process on 127.0.0.1 ephemeral ports: the real
//! webhook (`Server::bind` + `run`); a baseline that runs the same axum + rustls stack
//! (`serve_https`) with a handler that parses the AdmissionReview with the webhook's own
//! parser (`parse_review`) and writes `allowed: true` with the webhook's own writer
//! (`WireReview`), with no engine and no patch; and a replay server, the baseline's handler
//! answering with the bytes the engine answered the benchmark's review with once, at start,
//! so that it sends the same patch and costs what carrying that answer costs, without the
//! engine. Each has its own rcgen CA.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sidecar_injector::certs::CertBundle;
use sidecar_injector::config::InjectConfig;
use sidecar_injector::engine::Injector;
use sidecar_injector::review::{WebhookResponse, WireReview, parse_review, review};
use sidecar_injector::server::Server;
use sidecar_injector::server::https::serve_https;
use sidecar_injector::server::options::ServeOptions;
use sidecar_injector::server::tls::server_config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The servers, running, and how to stop them.
pub struct Servers {
    /// The real webhook's HTTPS address.
    pub ours: SocketAddr,
    /// The baseline's HTTPS address.
    pub baseline: SocketAddr,
    /// The replay server's HTTPS address.
    pub replay: SocketAddr,
    /// The CAs of all, PEM, for the client's root store.
    pub ca_pems: Vec<String>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

// === impl Servers ===

impl Servers {
    /// Starts the servers on the current runtime; `options` are the real webhook's, and the
    /// replay server answers with the engine's answer to `replayed`.
    pub async fn start(config: InjectConfig, options: ServeOptions, replayed: &[u8]) -> Result<Servers, String> {
        let max_body = config.max_body_bytes;
        let injector = Injector::new(config).map_err(|e| format!("config: {e}"))?;
        let answer = review(&injector, replayed).map_err(|e| format!("the replayed review: {e}"))?;
        let mut servers = Servers {
            ours: loopback(),
            baseline: loopback(),
            replay: loopback(),
            ca_pems: Vec::new(),
            stops: Vec::new(),
            tasks: Vec::new(),
        };

        let (tls, ca) = tls_for_loopback()?;
        servers.ca_pems.push(ca);
        let webhook = bind().await?;
        let admin = bind().await?;
        let server = Server::bind(webhook, admin, tls, injector).with_options(options);
        servers.ours = server.webhook_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = oneshot::channel::<()>();
        servers.stops.push(stop);
        servers.tasks.push(tokio::spawn(async move {
            if let Err(error) = server.run(async move { drop(stopped.await) }).await {
                eprintln!("webhook server failed: {error}");
            }
        }));

        servers.baseline = servers.serve(baseline_router(max_body), "baseline").await?;
        let replay = replay_router(
            max_body,
            Arc::new(Replayed {
                uid: answer.summary.uid,
                answer: Bytes::from(answer.body),
            }),
        );
        servers.replay = servers.serve(replay, "replay").await?;
        Ok(servers)
    }

    /// Serves `router` through `serve_https` with its own CA, until stopped; its address.
    async fn serve(&mut self, router: Router, name: &'static str) -> Result<SocketAddr, String> {
        let (tls, ca) = tls_for_loopback()?;
        self.ca_pems.push(ca);
        let listener = bind().await?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = oneshot::channel::<()>();
        self.stops.push(stop);
        self.tasks.push(tokio::spawn(async move {
            let shutdown = async move { drop(stopped.await) };
            if let Err(error) = serve_https(listener, tls, router, None, shutdown).await {
                eprintln!("{name} server failed: {error}");
            }
        }));
        Ok(addr)
    }

    /// Stops the servers and waits for them to drain.
    pub async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The baseline's routes: the webhook's path and body limit, with the least possible work.
fn baseline_router(max_body: usize) -> Router {
    Router::new()
        .route("/inject", post(allow))
        .layer(DefaultBodyLimit::max(max_body))
}

/// Parses the review as the webhook does and allows it, echoing the uid, with no patch.
async fn allow(body: Bytes) -> Response {
    let parsed = match parse_review(&body) {
        Ok(parsed) => parsed,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    let bytes = WireReview::of(parsed.api_version(), &WebhookResponse::allowed(parsed.uid())).to_bytes();
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// The one review the replay server answers: its uid, and the engine's answer to it.
struct Replayed {
    uid: String,
    answer: Bytes,
}

/// The replay server's routes: the baseline's, answering with the engine's answer to the
/// review whose uid is given.
fn replay_router(max_body: usize, replayed: Arc<Replayed>) -> Router {
    Router::new()
        .route("/inject", post(move |body: Bytes| replay(body, replayed.clone())))
        .layer(DefaultBodyLimit::max(max_body))
}

/// Parses the review as the webhook does and sends the engine's answer to the one review
/// the benchmark posts; a review with another uid is refused, so no answer goes to the
/// wrong request.
async fn replay(body: Bytes, replayed: Arc<Replayed>) -> Response {
    let parsed = match parse_review(&body) {
        Ok(parsed) => parsed,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    if parsed.uid() != replayed.uid {
        return (StatusCode::BAD_REQUEST, "not the replayed review").into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], replayed.answer.clone()).into_response()
}

/// A fresh CA and a serving certificate for 127.0.0.1, as a rustls config and the CA PEM.
pub fn tls_for_loopback() -> Result<(Arc<rustls::ServerConfig>, String), String> {
    let bundle = CertBundle::generate(&["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(|e| format!("certificates: {e}"))?;
    let tls = server_config(
        bundle.cert_pem.as_bytes(),
        bundle.key_pem.as_bytes(),
        ("bench", "bench"),
    )
    .map_err(|e| format!("TLS config: {e}"))?;
    Ok((tls, bundle.ca_pem))
}

async fn bind() -> Result<TcpListener, String> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
