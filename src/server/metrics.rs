//! Prometheus metrics under Istio's injector metric names, so existing dashboards keep working.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `reason` label on skip and failure counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the pod was skipped or the request failed.
    pub reason: String,
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
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Metrics ===

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Counter::default();
        let success = Counter::default();
        let skip = Family::<ReasonLabel, Counter>::default();
        let failure = Family::<ReasonLabel, Counter>::default();
        // 5µs .. ~5s: fine enough for sub-millisecond injections.
        let time = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            5e-6, 2.0, 21,
        ));
        registry.register(
            "sidecar_injection_requests",
            "Total number of sidecar injection requests",
            requests.clone(),
        );
        registry.register(
            "sidecar_injection_success",
            "Total number of successful sidecar injections",
            success.clone(),
        );
        registry.register(
            "sidecar_injection_skip",
            "Total number of skipped sidecar injections",
            skip.clone(),
        );
        registry.register(
            "sidecar_injection_failure",
            "Total number of failed sidecar injections",
            failure.clone(),
        );
        registry.register(
            "sidecar_injection_time_seconds",
            "Time taken to answer an injection request",
            time.clone(),
        );
        let namespace_fallback = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "sidecar_injector_namespace_fallback",
            "Pods admitted with config defaults because their namespace could not be read",
            namespace_fallback.clone(),
        );
        Metrics {
            registry,
            requests,
            success,
            skip,
            failure,
            time,
            namespace_fallback,
        }
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
}
