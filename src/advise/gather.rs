//! `advise`'s one I/O step: the queries that fetch what [`super::advise`] needs.
//!
//! Instant queries for the raw samples of the two usage series of every `istio-proxy`
//! container over the window (range vectors), and the latest value over the window of
//! kube-state-metrics' owner and annotation series. None of the usage series is an error.

use super::AdviseOptions;
use super::prometheus::{Prometheus, PrometheusError};
use super::usage::Series;

/// The proxy container whose usage is read.
const PROXY_CONTAINER: &str = "istio-proxy";

/// Why `advise` has no answer.
#[derive(Debug, thiserror::Error)]
pub enum AdviseError {
    /// Prometheus could not be asked.
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
    /// Prometheus has none of the series.
    #[error(
        "Prometheus at {url} has no {cpu} or {memory} series for container=\"{PROXY_CONTAINER}\" in the last {window}{scope}"
    )]
    NoSeries {
        /// The base URL.
        url: String,
        /// The CPU metric.
        cpu: &'static str,
        /// The memory metric.
        memory: &'static str,
        /// The window.
        window: String,
        /// ` in namespaces a, b` or empty.
        scope: String,
    },
}

/// The CPU counter read.
pub const CPU_METRIC: &str = "container_cpu_usage_seconds_total";
/// The memory gauge read.
pub const MEMORY_METRIC: &str = "container_memory_working_set_bytes";

/// What Prometheus returned.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    /// CPU counter series with raw samples.
    pub cpu: Vec<Series>,
    /// Working-set series with raw samples.
    pub memory: Vec<Series>,
    /// `kube_pod_owner`.
    pub pod_owner: Vec<Series>,
    /// `kube_replicaset_owner`.
    pub replica_set_owner: Vec<Series>,
    /// `kube_pod_annotations` (only the annotations kube-state-metrics was allowed to export).
    pub pod_annotations: Vec<Series>,
}

fn selector(container: Option<&str>, namespaces: &[String]) -> String {
    let mut matchers = Vec::new();
    if let Some(container) = container {
        matchers.push(format!("container=\"{container}\""));
    }
    if !namespaces.is_empty() {
        let escaped: Vec<String> = namespaces
            .iter()
            .map(|n| n.replace('\\', "\\\\").replace('"', "\\\""))
            .collect();
        matchers.push(format!("namespace=~\"{}\"", escaped.join("|")));
    }
    if matchers.is_empty() {
        // PromQL refuses an empty `{}`.
        return String::new();
    }
    format!("{{{}}}", matchers.join(","))
}

/// Asks Prometheus for everything `advise` needs.
pub async fn gather(options: &AdviseOptions) -> Result<Gathered, AdviseError> {
    let prometheus = Prometheus::new(&options.prometheus, options.timeout)?;
    let window = &options.window;
    let proxies = selector(Some(PROXY_CONTAINER), &options.namespaces);
    let everything = selector(None, &options.namespaces);
    let cpu = prometheus
        .query(&format!("{CPU_METRIC}{proxies}[{window}]"), options.at)
        .await?;
    let memory = prometheus
        .query(&format!("{MEMORY_METRIC}{proxies}[{window}]"), options.at)
        .await?;
    if cpu.is_empty() && memory.is_empty() {
        return Err(AdviseError::NoSeries {
            url: options.prometheus.clone(),
            cpu: CPU_METRIC,
            memory: MEMORY_METRIC,
            window: window.clone(),
            scope: if options.namespaces.is_empty() {
                String::new()
            } else {
                format!(" in namespaces {}", options.namespaces.join(", "))
            },
        });
    }
    let latest = |metric: &str| format!("max_over_time({metric}{everything}[{window}])");
    Ok(Gathered {
        cpu,
        memory,
        pod_owner: prometheus.query(&latest("kube_pod_owner"), options.at).await?,
        replica_set_owner: prometheus.query(&latest("kube_replicaset_owner"), options.at).await?,
        pod_annotations: prometheus.query(&latest("kube_pod_annotations"), options.at).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_escape_namespaces() {
        assert_eq!(selector(Some("istio-proxy"), &[]), "{container=\"istio-proxy\"}");
        assert_eq!(selector(None, &[]), "");
        assert_eq!(selector(None, &["a".into(), "b\"".into()]), "{namespace=~\"a|b\\\"\"}");
    }
}
