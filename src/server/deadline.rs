//! The per-request deadline: answer before the API server gives up on us.
//!
//! The API server adds `?timeout=10s` (the webhook's `timeoutSeconds`) to every call. A
//! request still running at [`ServeOptions::request_deadline`] of that (80 % by default)
//! is answered 503 with the reason, so the API server reports our message rather than a
//! bare timeout, and a client that trickles its body cannot hold a connection for longer.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::metrics::Metrics;
use super::options::ServeOptions;

/// What the deadline middleware needs.
#[derive(Debug, Clone)]
pub struct DeadlineState {
    /// Where the deadline comes from.
    pub options: ServeOptions,
    /// Where cut-off requests are counted.
    pub metrics: Arc<Metrics>,
}

/// Runs the request, or answers 503 when it is not done by its deadline.
pub async fn enforce_deadline(State(state): State<DeadlineState>, request: Request, next: Next) -> Response {
    let deadline = state.options.request_deadline(request.uri().query());
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            state.metrics.request_timed_out();
            tracing::warn!(?deadline, "request not done before its deadline; answered 503");
            let message =
                format!("the webhook could not answer within {deadline:?} (its share of the API server's timeout)\n");
            (StatusCode::SERVICE_UNAVAILABLE, message).into_response()
        }
    }
}
