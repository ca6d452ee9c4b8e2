//! The plain-HTTP admin port: liveness, readiness and metrics for the kubelet and Prometheus.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics::Metrics;

/// Whether the webhook can take traffic: TLS is loaded and the listener accepts (cleared
/// when shutdown begins), and the namespace caches, if any, have synced once.
#[derive(Debug)]
pub struct Readiness {
    serving: AtomicBool,
    synced: AtomicBool,
}

impl Readiness {
    /// Not ready; `needs_sync` says whether caches must sync first.
    pub fn new(needs_sync: bool) -> Self {
        Readiness {
            serving: AtomicBool::new(false),
            synced: AtomicBool::new(!needs_sync),
        }
    }

    /// Marks the listener accepting or not.
    pub fn set(&self, serving: bool) {
        self.serving.store(serving, Ordering::SeqCst);
    }

    /// Marks the caches synced.
    pub fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::SeqCst);
    }

    /// Whether the server is ready.
    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::SeqCst) && self.synced.load(Ordering::SeqCst)
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new(false)
    }
}

/// State shared by the admin routes.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Readiness flag.
    pub readiness: Arc<Readiness>,
    /// Metrics to expose.
    pub metrics: Arc<Metrics>,
}

/// `/livez`, `/readyz` and `/metrics`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
