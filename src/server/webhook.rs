//! The HTTPS `/inject` endpoint: HTTP concerns only, around [`crate::review::review`].
//!
//! Status codes: 200 with an AdmissionReview for every request that could be read
//! (allowed, patched or denied); 400 for a body that is not an AdmissionReview; 413 for a
//! body over the limit; 415 for a Content-Type other than JSON.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::metrics::Metrics;
use crate::engine::Injector;
use super::cluster::{ClusterCache, NamespaceSnapshot};
use crate::engine::resources::NamespaceContext;
use crate::review::{ReviewAnswer, ReviewError, answer_review, parse_review};

/// What every webhook request needs.
#[derive(Debug)]
pub struct WebhookState {
    /// The engine.
    pub injector: Injector,
    /// Where outcomes are counted.
    pub metrics: Arc<Metrics>,
    /// Namespace and LimitRange caches, when connected to a cluster.
    pub cluster: Option<ClusterCache>,
}

/// The webhook's routes, with the body limit from the config.
pub fn router(state: Arc<WebhookState>) -> Router {
    let limit = state.injector.config().max_body_bytes;
    Router::new()
        .route("/inject", post(inject))
        .route("/inject/", post(inject))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An error answered as plain text with its status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The Content-Type is not JSON.
    #[error("Content-Type must be application/json, got {0:?}")]
    UnsupportedMediaType(String),
    /// The body is not a usable AdmissionReview.
    #[error(transparent)]
    BadReview(#[from] ReviewError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadReview(_) => StatusCode::BAD_REQUEST,
        };
        let mut line = self.to_string().replace(['\n', '\r'], " ");
        line.push('\n');
        (status, line).into_response()
    }
}

fn is_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let media_type = value.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(value))
    }
}

/// Looks up the namespace (for pod creations, when connected) and runs the engine.
async fn answer(state: &WebhookState, parsed: crate::review::ParsedReview) -> Result<ReviewAnswer, ApiError> {
    let snapshot = match (&state.cluster, parsed.is_pod_create()) {
        (Some(cluster), true) => cluster.snapshot(parsed.namespace(), &state.metrics).await,
        _ => NamespaceSnapshot::default(),
    };
    let context = NamespaceContext {
        annotations: snapshot.annotations.as_ref(),
        limit_ranges: &snapshot.limit_ranges,
    };
    Ok(answer_review(&state.injector, parsed, &context, snapshot.warnings.clone())?)
}

async fn inject(State(state): State<Arc<WebhookState>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let metrics = &state.metrics;
    metrics.request();
    let result = match is_json(&headers).and_then(|()| parse_review(&body).map_err(ApiError::from)) {
        Ok(parsed) => answer(&state, parsed).await,
        Err(error) => Err(error),
    };
    let response = match result {
        Ok(answer) => {
            let summary = &answer.summary;
            match (&summary.denial, summary.injected()) {
                (Some(reason), _) => {
                    metrics.failure("denied");
                    tracing::info!(uid = %summary.uid, namespace = %summary.namespace, pod = %summary.pod, decision = summary.decision, reason = %reason, "admission denied");
                }
                (None, true) => {
                    metrics.success();
                    let resources = summary.resources.as_ref().map(|r| r.to_string()).unwrap_or_default();
                    tracing::info!(uid = %summary.uid, namespace = %summary.namespace, pod = %summary.pod, decision = summary.decision, resources = %resources, "admission injected");
                }
                (None, false) => {
                    metrics.skip(summary.decision.trim_start_matches("skip:"));
                    tracing::info!(uid = %summary.uid, namespace = %summary.namespace, pod = %summary.pod, decision = summary.decision, "admission skipped");
                }
            }
            ([(header::CONTENT_TYPE, "application/json")], answer.body).into_response()
        }
        Err(error) => {
            metrics.failure(match error {
                ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
                ApiError::BadReview(_) => "bad-request",
            });
            tracing::warn!(error = %error, "admission request rejected");
            error.into_response()
        }
    };
    metrics.observe_seconds(started.elapsed().as_secs_f64());
    response
}
