//! The HTTPS `/inject` endpoint: HTTP concerns only, around [`crate::review::review`].
//! `/inject/<key>/<value>/...` (and `/inject/:ENV:<key>=<value>...`) carry istiod's path
//! parameters, such as `/inject/cluster/<c>/net/<n>` ([`InjectPath`]).
//!
//! Status codes: 200 with an AdmissionReview for every request that could be read
//! (allowed, patched or denied); 400 for a body that is not an AdmissionReview; 413 for a
//! body over the limit, sent once the client has finished sending (up to 16 MiB is read and
//! thrown away first, so HTTP/2 and HTTP/1.1 clients still writing get the answer); 415 for
//! a Content-Type other than JSON; 500 when processing a review failed unexpectedly (a panic
//! on the blocking pool); 503 for a request not done by its deadline ([`super::deadline`]).
//!
//! Small reviews are parsed and answered on the async worker that read them; large ones on
//! the blocking pool (the server's `blocking` module).

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;

use super::blocking::{BlockingError, BlockingLane};
use super::cluster::{ClusterCache, NamespaceSnapshot};
use super::deadline::{DeadlineState, enforce_deadline};
use super::events::EventSender;
use super::metrics::Metrics;
use super::options::ServeOptions;
use crate::config::istio_source::REVISION_LABEL;
use crate::engine::Injector;
use crate::engine::NamespaceContext;
use crate::engine::inject_path::InjectPath;
use crate::review::{ParsedReview, ReviewAnswer, ReviewError, answer_review, parse_review};

/// What every webhook request needs.
#[derive(Debug)]
pub struct WebhookState {
    /// The engine; a config reload swaps it, and each request uses the one current when it
    /// starts.
    pub injector: Arc<ArcSwap<Injector>>,
    /// The other served revisions' engines (`istio.revisions`), by revision; a pod goes to
    /// the one its namespace's or its own `istio.io/rev` (or a tag) names, else to `injector`.
    pub revisions: std::collections::BTreeMap<String, Arc<ArcSwap<Injector>>>,
    /// Where outcomes are counted.
    pub metrics: Arc<Metrics>,
    /// Namespace and LimitRange caches, when connected to a cluster.
    pub cluster: Option<ClusterCache>,
    /// Where large reviews are processed.
    pub(crate) blocking: BlockingLane,
    /// The request deadline.
    pub options: ServeOptions,
    /// Where Events about denied and adjusted pods are queued, when connected and wanted.
    pub events: Option<EventSender>,
}

/// The webhook's routes, with the per-request deadline.
pub fn router(state: Arc<WebhookState>) -> Router {
    let deadline = DeadlineState {
        options: state.options.clone(),
        metrics: state.metrics.clone(),
    };
    Router::new()
        .route("/inject", post(inject))
        .route("/inject/", post(inject))
        .route("/inject/{*parameters}", post(inject))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(deadline, enforce_deadline))
}

/// An error answered as plain text with its status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The Content-Type is not JSON.
    #[error("Content-Type must be application/json, got {0:?}")]
    UnsupportedMediaType(String),
    /// The body is larger than `maxBodyBytes`.
    #[error("body is larger than maxBodyBytes ({limit} bytes)")]
    TooLarge {
        /// The limit in force.
        limit: usize,
        /// Whether the rest of the body was read (and thrown away), so the connection can
        /// carry the answer and go on; otherwise an HTTP/1.1 connection closes after it.
        drained: bool,
    },
    /// The body could not be read (the client went away or sent a broken stream).
    #[error("cannot read the request body: {0}")]
    BodyRead(String),
    /// The body is not a usable AdmissionReview.
    #[error(transparent)]
    BadReview(#[from] ReviewError),
    /// Processing failed in a way no request should cause (a bug, answered rather than
    /// taking the connection or the server down).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<BlockingError> for ApiError {
    fn from(error: BlockingError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

// === impl ApiError ===

impl ApiError {
    /// The `reason` label of the failure counter.
    fn reason(&self) -> &'static str {
        match self {
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::TooLarge { .. } => "body-too-large",
            ApiError::BodyRead(_) => "body-read",
            ApiError::BadReview(_) => "bad-request",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyRead(_) | ApiError::BadReview(_) => StatusCode::BAD_REQUEST,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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

/// The most of an oversized body read and thrown away before the 413 is sent. A client still
/// sending when the answer comes sees a reset (HTTP/2) or a broken pipe (HTTP/1.1) instead of
/// the answer, so up to this much is read first; a larger body gets the 413 at once, and an
/// HTTP/1.1 connection is closed after it.
const MAX_DISCARDED_BYTES: u64 = 16 * 1024 * 1024;

/// Reads the body, refusing it once it passes `limit` bytes (or says it will).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let mut chunks = body.into_data_stream();
    if let Some(length) = declared.filter(|length| *length > limit as u64) {
        let drained = length <= MAX_DISCARDED_BYTES && discard_rest(&mut chunks, 0).await;
        return Err(ApiError::TooLarge { limit, drained });
    }
    let mut bytes = Vec::with_capacity(declared.map_or(0, |length| length as usize));
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| ApiError::BodyRead(error.to_string()))?;
        if bytes.len() + chunk.len() > limit {
            let seen = (bytes.len() + chunk.len()) as u64;
            let drained = discard_rest(&mut chunks, seen).await;
            return Err(ApiError::TooLarge { limit, drained });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Reads the rest of a refused body and throws it away; true when it ended within
/// [`MAX_DISCARDED_BYTES`] (`seen` counts what was read already).
async fn discard_rest(chunks: &mut axum::body::BodyDataStream, mut seen: u64) -> bool {
    while let Some(chunk) = chunks.next().await {
        let Ok(chunk) = chunk else { return false };
        seen += chunk.len() as u64;
        if seen > MAX_DISCARDED_BYTES {
            return false;
        }
    }
    true
}

/// The namespace's annotations, LimitRanges and ResourceQuotas, for pod creations and
/// resizes when connected.
async fn namespace_snapshot(state: &WebhookState, parsed: &ParsedReview) -> NamespaceSnapshot {
    match (&state.cluster, parsed.is_pod_create() || parsed.is_pod_resize()) {
        (Some(cluster), true) => {
            let mut snapshot = cluster.snapshot(parsed.namespace(), &state.metrics).await;
            if let Some(owner) = super::vpa::PodOwner::of_review(parsed) {
                cluster.add_recommendation(&mut snapshot, parsed.namespace(), &owner);
            }
            snapshot
        }
        _ => NamespaceSnapshot::default(),
    }
}

/// The engine for this pod: its revision's (the namespace's or pod's `istio.io/rev`, read
/// through the tags), with the webhook path's parameters applied.
fn engine_for(
    state: &WebhookState,
    default: Arc<Injector>,
    path: &str,
    parsed: &ParsedReview,
    snapshot: &NamespaceSnapshot,
) -> Result<Arc<Injector>, ApiError> {
    let mut injector = default;
    if !state.revisions.is_empty() {
        let config = injector.config();
        let namespace_rev = snapshot.labels.as_ref().and_then(|labels| labels.get(REVISION_LABEL));
        let pod_rev = parsed.object_label(REVISION_LABEL);
        let chosen = config
            .istio
            .revision_for(namespace_rev.map(String::as_str), pod_rev.as_deref(), &config.revision);
        if let Some(other) = state.revisions.get(chosen) {
            injector = other.load_full();
        }
    }
    match injector
        .for_inject_path(&InjectPath::parse(path))
        .map_err(|error| ApiError::Internal(format!("webhook path {path:?}: {error}")))?
    {
        Some(for_path) => Ok(Arc::new(for_path)),
        None => Ok(injector),
    }
}

/// Runs the engine on a parsed review and writes the answer.
fn answer_with(
    injector: &Injector,
    parsed: ParsedReview,
    snapshot: NamespaceSnapshot,
) -> Result<ReviewAnswer, ReviewError> {
    let context = NamespaceContext {
        annotations: snapshot.annotations.as_ref(),
        limit_ranges: &snapshot.limit_ranges,
        resource_quotas: &snapshot.resource_quotas,
        recommendation: snapshot.recommendation.as_ref(),
    };
    answer_review(injector, parsed, &context, snapshot.warnings)
}

/// Checks the request, reads and parses the body, and answers it: inline when the body is
/// small, else on the blocking pool, with the namespace looked up in between (that lookup
/// may wait on the API server, which must not hold a blocking thread or a permit).
async fn handle(state: &WebhookState, path: &str, headers: &HeaderMap, body: Body) -> Result<ReviewAnswer, ApiError> {
    let injector = state.injector.load_full();
    is_json(headers)?;
    let body = read_body(headers, body, injector.config().max_body_bytes).await?;
    if !state.blocking.takes(body.len()) {
        let parsed = parse_review(&body)?;
        let snapshot = namespace_snapshot(state, &parsed).await;
        let injector = engine_for(state, injector, path, &parsed, &snapshot)?;
        return Ok(answer_with(&injector, parsed, snapshot)?);
    }
    state.metrics.blocking_review();
    let parsed = state.blocking.run(move || parse_review(&body)).await??;
    let snapshot = namespace_snapshot(state, &parsed).await;
    let injector = engine_for(state, injector, path, &parsed, &snapshot)?;
    Ok(state
        .blocking
        .run(move || answer_with(&injector, parsed, snapshot))
        .await??)
}

async fn inject(State(state): State<Arc<WebhookState>>, request: Request) -> Response {
    let started = Instant::now();
    let metrics = &state.metrics;
    metrics.request();
    let (parts, body) = request.into_parts();
    let result = handle(&state, parts.uri.path(), &parts.headers, body).await;
    let response = match result {
        Ok(answer) => {
            let summary = &answer.summary;
            if let Some(events) = &state.events {
                events.observe(summary);
            }
            match (&summary.denial, summary.injected()) {
                (Some(reason), _) => {
                    metrics.failure("denied");
                    tracing::info!(uid = %summary.uid, namespace = %summary.namespace, pod = %summary.pod, decision = summary.decision, reason = %reason, "admission denied");
                }
                (None, true) => {
                    metrics.success();
                    // Formatted only when the line is written.
                    let resources: &dyn std::fmt::Display = match &summary.resources {
                        Some(resources) => resources,
                        None => &"",
                    };
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
            metrics.failure(error.reason());
            tracing::warn!(error = %error, "admission request rejected");
            let close = matches!(error, ApiError::TooLarge { drained: false, .. }) && parts.version < Version::HTTP_2;
            let mut response = error.into_response();
            if close {
                // The unread rest of the body would be taken for the next request.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    metrics.observe_seconds(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_on_the_blocking_pool_is_a_500() {
        let error = ApiError::from(BlockingError::Panicked("boom".into()));
        assert_eq!(error.reason(), "internal");
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
