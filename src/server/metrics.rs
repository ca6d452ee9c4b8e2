//! Prometheus metrics under Istio's injector metric names, so existing dashboards keep working.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `reason` label on skip and failure counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the pod was skipped or the request failed.
    pub reason: String,
}

/// What a file reload was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadKind {
    /// The serving certificate, key and client CA.
    Tls,
    /// The injection config file.
    Config,
    /// The installed Istio's ConfigMaps (`istio.source: cluster`).
    Istio,
}

impl ReloadKind {
    /// The word used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadKind::Tls => "tls",
            ReloadKind::Config => "config",
            ReloadKind::Istio => "istio",
        }
    }
}

/// The injector's counters and histogram, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Counter,
    success: Counter,
    skip: Family<ReasonLabel, Counter>,
    failure: Family<ReasonLabel, Counter>,
    time: Histogram,
    namespace_fallback: Family<ReasonLabel, Counter>,
    tls_reloads: Counter,
    tls_reload_failures: Counter,
    config_reloads: Counter,
    config_reload_failures: Counter,
    istio_reloads: Counter,
    istio_reload_failures: Counter,
    request_timeouts: Counter,
    blocking_reviews: Counter,
    connections_open: Gauge,
    handshake_failures: Family<ReasonLabel, Counter>,
    cache_synced: Gauge,
    events: Family<ResultLabel, Counter>,
    watch_errors: Family<CacheLabel, Counter>,
}

/// The `cache` label of the watch error counter: which reflector failed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabel {
    /// The watched resource, as the reflector names it (`namespaces`, `replicasets`, ...).
    pub cache: String,
}

/// The `result` label of the Event counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// What became of the Event.
    pub result: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `sidecar_injection_requests`.
const REQUESTS: (&str, &str) = (
    "sidecar_injection_requests",
    "Total number of sidecar injection requests",
);
/// `sidecar_injection_success`.
const SUCCESS: (&str, &str) = (
    "sidecar_injection_success",
    "Total number of successful sidecar injections",
);
/// `sidecar_injection_skip`.
const SKIP: (&str, &str) = ("sidecar_injection_skip", "Total number of skipped sidecar injections");
/// `sidecar_injection_failure`.
const FAILURE: (&str, &str) = ("sidecar_injection_failure", "Total number of failed sidecar injections");
/// `sidecar_injection_time_seconds`.
const TIME: (&str, &str) = (
    "sidecar_injection_time_seconds",
    "Time taken to answer an injection request",
);
/// `sidecar_injector_namespace_fallback`.
const NAMESPACE_FALLBACK: (&str, &str) = (
    "sidecar_injector_namespace_fallback",
    "Pods admitted with config defaults because their namespace could not be read",
);
/// `sidecar_injector_tls_reloads`.
const TLS_RELOADS: (&str, &str) = (
    "sidecar_injector_tls_reloads",
    "Times rotated TLS credentials were loaded from disk",
);
/// `sidecar_injector_tls_reload_failures`.
const TLS_RELOAD_FAILURES: (&str, &str) = (
    "sidecar_injector_tls_reload_failures",
    "Changed TLS files that could not be loaded (the previous credentials stay in use)",
);
/// `sidecar_injector_config_reloads`.
const CONFIG_RELOADS: (&str, &str) = (
    "sidecar_injector_config_reloads",
    "Times a changed config file was loaded",
);
/// `sidecar_injector_config_reload_failures`.
const CONFIG_RELOAD_FAILURES: (&str, &str) = (
    "sidecar_injector_config_reload_failures",
    "Changed config files that were refused (the previous config stays in use)",
);
/// `sidecar_injector_istio_config_reloads`.
const ISTIO_RELOADS: (&str, &str) = (
    "sidecar_injector_istio_config_reloads",
    "Times the installed Istio's ConfigMaps were read and their settings taken into use",
);
/// `sidecar_injector_istio_config_failures`.
const ISTIO_RELOAD_FAILURES: (&str, &str) = (
    "sidecar_injector_istio_config_failures",
    "Installed Istio ConfigMaps that did not parse or validate (the last good settings stay in use)",
);
/// `sidecar_injector_request_timeouts`.
const REQUEST_TIMEOUTS: (&str, &str) = (
    "sidecar_injector_request_timeouts",
    "Requests answered 503 because they were not done before their deadline",
);
/// `sidecar_injector_blocking_reviews`.
const BLOCKING_REVIEWS: (&str, &str) = (
    "sidecar_injector_blocking_reviews",
    "Reviews processed on the blocking thread pool because of their size",
);
/// `sidecar_injector_connections_open`.
const CONNECTIONS_OPEN: (&str, &str) = (
    "sidecar_injector_connections_open",
    "HTTPS connections being served (handshaking or open)",
);
/// `sidecar_injector_tls_handshake_failures`.
const HANDSHAKE_FAILURES: (&str, &str) = (
    "sidecar_injector_tls_handshake_failures",
    "TLS handshakes that failed (reason error) or did not finish in time (reason timeout)",
);
/// `sidecar_injector_cache_synced`.
const CACHE_SYNCED: (&str, &str) = (
    "sidecar_injector_cache_synced",
    "1 once the namespace and LimitRange caches have synced",
);

/// `sidecar_injector_events`.
const EVENTS: (&str, &str) = (
    "sidecar_injector_events",
    "Kubernetes Events about denied or adjusted pods, by result (created, updated, deduplicated, rate-limited, dropped, failed, no-object)",
);
/// `sidecar_injector_watch_errors`.
const WATCH_ERRORS: (&str, &str) = (
    "sidecar_injector_watch_errors",
    "Errors of the reflectors' list and watch calls (retried with backoff), by cache; a forbidden watch (missing RBAC) counts here",
);

/// Registers metrics in one registry, handing back the handle to record with.
struct Registrar<'r>(&'r mut Registry);

impl Registrar<'_> {
    fn metric<M: prometheus_client::registry::Metric + Clone>(&mut self, (name, help): (&str, &str), metric: M) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }
}

// === impl Metrics ===

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let mut register = Registrar(&mut registry);
        let requests = register.metric(REQUESTS, Counter::default());
        let success = register.metric(SUCCESS, Counter::default());
        let skip = register.metric(SKIP, Family::<ReasonLabel, Counter>::default());
        let failure = register.metric(FAILURE, Family::<ReasonLabel, Counter>::default());
        // 5µs .. ~5s: fine enough for sub-millisecond injections.
        let buckets = prometheus_client::metrics::histogram::exponential_buckets(5e-6, 2.0, 21);
        let time = register.metric(TIME, Histogram::new(buckets));
        let namespace_fallback = register.metric(NAMESPACE_FALLBACK, Family::<ReasonLabel, Counter>::default());
        let tls_reloads = register.metric(TLS_RELOADS, Counter::default());
        let tls_reload_failures = register.metric(TLS_RELOAD_FAILURES, Counter::default());
        let config_reloads = register.metric(CONFIG_RELOADS, Counter::default());
        let config_reload_failures = register.metric(CONFIG_RELOAD_FAILURES, Counter::default());
        let istio_reloads = register.metric(ISTIO_RELOADS, Counter::default());
        let istio_reload_failures = register.metric(ISTIO_RELOAD_FAILURES, Counter::default());
        let request_timeouts = register.metric(REQUEST_TIMEOUTS, Counter::default());
        let blocking_reviews = register.metric(BLOCKING_REVIEWS, Counter::default());
        let connections_open = register.metric(CONNECTIONS_OPEN, Gauge::default());
        let handshake_failures = register.metric(HANDSHAKE_FAILURES, Family::<ReasonLabel, Counter>::default());
        let cache_synced = register.metric(CACHE_SYNCED, Gauge::default());
        let events = register.metric(EVENTS, Family::<ResultLabel, Counter>::default());
        let watch_errors = register.metric(WATCH_ERRORS, Family::<CacheLabel, Counter>::default());

        Metrics {
            registry,
            requests,
            success,
            skip,
            failure,
            time,
            namespace_fallback,
            tls_reloads,
            tls_reload_failures,
            config_reloads,
            config_reload_failures,
            istio_reloads,
            istio_reload_failures,
            request_timeouts,
            blocking_reviews,
            connections_open,
            handshake_failures,
            cache_synced,
            events,
            watch_errors,
        }
    }

    /// Counts a failed list or watch call of the reflector for `cache`.
    pub fn watch_error(&self, cache: &str) {
        self.watch_errors
            .get_or_create(&CacheLabel {
                cache: cache.to_string(),
            })
            .inc();
    }

    /// Counts what became of an Event notice.
    pub fn event(&self, result: &str) {
        self.events
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts a successful reload.
    pub fn reloaded(&self, kind: ReloadKind) {
        match kind {
            ReloadKind::Tls => self.tls_reloads.inc(),
            ReloadKind::Config => self.config_reloads.inc(),
            ReloadKind::Istio => self.istio_reloads.inc(),
        };
    }

    /// Counts a reload that was refused.
    pub fn reload_failed(&self, kind: ReloadKind) {
        match kind {
            ReloadKind::Tls => self.tls_reload_failures.inc(),
            ReloadKind::Config => self.config_reload_failures.inc(),
            ReloadKind::Istio => self.istio_reload_failures.inc(),
        };
    }

    /// Counts a request cut off at its deadline.
    pub fn request_timed_out(&self) {
        self.request_timeouts.inc();
    }

    /// Counts a review sent to the blocking pool for its size.
    pub fn blocking_review(&self) {
        self.blocking_reviews.inc();
    }

    /// Tracks a connection from accept to close.
    pub fn connection_opened(&self) {
        self.connections_open.inc();
    }

    /// See [`Metrics::connection_opened`].
    pub fn connection_closed(&self) {
        self.connections_open.dec();
    }

    /// Counts a failed TLS handshake.
    pub fn handshake_failed(&self, reason: &str) {
        self.handshake_failures
            .get_or_create(&ReasonLabel { reason: reason.into() })
            .inc();
    }

    /// Records whether the caches have synced.
    pub fn set_cache_synced(&self, synced: bool) {
        self.cache_synced.set(i64::from(synced));
    }

    /// Counts a pod admitted without its namespace's settings.
    pub fn namespace_fallback(&self, reason: &str) {
        self.namespace_fallback
            .get_or_create(&ReasonLabel { reason: reason.into() })
            .inc();
    }

    /// Counts one request.
    pub fn request(&self) {
        self.requests.inc();
    }

    /// Counts an injected pod.
    pub fn success(&self) {
        self.success.inc();
    }

    /// Counts a pod left alone.
    pub fn skip(&self, reason: &str) {
        self.skip.get_or_create(&ReasonLabel { reason: reason.into() }).inc();
    }

    /// Counts a denial or a request that could not be read.
    pub fn failure(&self, reason: &str) {
        self.failure.get_or_create(&ReasonLabel { reason: reason.into() }).inc();
    }

    /// Records how long a request took.
    pub fn observe_seconds(&self, seconds: f64) {
        self.time.observe(seconds);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_istio_metric_names() {
        let metrics = Metrics::new();
        metrics.request();
        metrics.success();
        metrics.skip("pod-opt-out");
        metrics.failure("deny");
        metrics.observe_seconds(0.0001);
        let text = metrics.encode();
        for name in [
            "sidecar_injection_requests_total 1",
            "sidecar_injection_success_total 1",
            "sidecar_injection_skip_total{reason=\"pod-opt-out\"} 1",
            "sidecar_injection_failure_total{reason=\"deny\"} 1",
            "sidecar_injection_time_seconds_count 1",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    #[test]
    fn counts_watch_errors_by_cache() {
        let metrics = Metrics::new();
        metrics.watch_error("replicasets");
        metrics.watch_error("replicasets");
        let text = metrics.encode();
        assert!(
            text.contains("sidecar_injector_watch_errors_total{cache=\"replicasets\"} 2"),
            "{text}"
        );
        assert!(!text.contains("cache=\"namespaces\""), "{text}");
    }
}
