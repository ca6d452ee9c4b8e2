//! Prometheus metrics merging, as istiod does it.
//!
//! The agent serves the app's metrics merged with Envoy's on the status port. The pod's
//! scrape annotations are pointed there, and the originals move into the proxy's
//! `ISTIO_PROMETHEUS_ANNOTATIONS` so the agent knows where to fetch the app's metrics.
//! A pod with `prometheus.io/scrape: "false"`, or `prometheus.istio.io/merge-metrics:
//! "false"`, is left alone.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Per-pod switch for merging.
pub use crate::annotations::PROMETHEUS_MERGE_METRICS as MERGE_METRICS;
/// Scrape path annotation.
pub use crate::annotations::PROMETHEUS_PATH as PATH;
/// Scrape port annotation.
pub use crate::annotations::PROMETHEUS_PORT as PORT;
/// Scrape switch annotation.
pub use crate::annotations::PROMETHEUS_SCRAPE as SCRAPE;
/// Several `port:path` targets.
pub use crate::annotations::PROMETHEUS_SCRAPE_TARGETS as SCRAPE_TARGETS;
/// The dotted spelling of [`SCRAPE`] some charts write; `"false"` opts out as istiod reads it.
const SCRAPE_DOTTED: &str = "prometheus.io.scrape";
/// Where the agent serves merged metrics. istiod writes this port whatever the status port.
const AGENT_METRICS_PORT: &str = "15020";

/// What merging changes: annotations to set and the env value for the agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrometheusMerge {
    /// Annotations to set on the pod.
    pub annotations: Vec<(String, String)>,
    /// `ISTIO_PROMETHEUS_ANNOTATIONS`, when the pod had its own scrape settings.
    pub original: Option<String>,
    /// Annotations to remove: the targets move into `original`.
    pub remove: Vec<String>,
}

/// Plans the merge for a pod's annotations; nothing when disabled or opted out.
pub fn plan_merge(annotations: Option<&BTreeMap<String, String>>, enabled: bool) -> PrometheusMerge {
    let get = |key: &str| annotations.and_then(|map| map.get(key)).map(String::as_str);
    let opted_out = [SCRAPE, SCRAPE_DOTTED, MERGE_METRICS]
        .into_iter()
        .any(|key| get(key).is_some_and(|v| v.eq_ignore_ascii_case("false")));
    if !enabled || opted_out {
        return PrometheusMerge::default();
    }
    let targets: Vec<(String, String)> = get(SCRAPE_TARGETS)
        .map(|text| {
            text.split(',')
                .filter_map(|target| {
                    let (port, path) = target.trim().split_once(':').unwrap_or((target.trim(), "/metrics"));
                    (!port.is_empty()).then(|| (port.to_string(), path.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    // Annotations that already point at the agent are ours from an earlier injection.
    let ours = get(PORT) == Some(AGENT_METRICS_PORT) && get(PATH) == Some("/stats/prometheus");
    if ours {
        return PrometheusMerge::default();
    }
    let mut original = Map::new();
    if let Some(scrape) = get(SCRAPE) {
        original.insert("scrape".into(), json!(scrape));
    }
    let first = targets.first();
    if let Some(path) = get(PATH)
        .map(str::to_string)
        .or_else(|| first.map(|(_, path)| path.clone()))
    {
        original.insert("path".into(), json!(path));
    }
    if let Some(port) = get(PORT)
        .map(str::to_string)
        .or_else(|| first.map(|(port, _)| port.clone()))
    {
        original.insert("port".into(), json!(port));
    }
    if !targets.is_empty() {
        let list: Vec<Value> = targets
            .iter()
            .map(|(port, path)| json!({"port": port, "path": path}))
            .collect();
        original.insert("targets".into(), Value::Array(list));
    }
    PrometheusMerge {
        annotations: vec![
            (PATH.to_string(), "/stats/prometheus".to_string()),
            (PORT.to_string(), AGENT_METRICS_PORT.to_string()),
            (SCRAPE.to_string(), "true".to_string()),
        ],
        original: (!original.is_empty()).then(|| Value::Object(original).to_string()),
        remove: get(SCRAPE_TARGETS)
            .map(|_| SCRAPE_TARGETS.to_string())
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn merges_and_records_the_originals() {
        let plain = plan_merge(None, true);
        assert_eq!(plain.annotations.len(), 3);
        assert_eq!(plain.original, None);
        let own = annotations(&[(SCRAPE, "true"), (SCRAPE_TARGETS, "8080:/metrics,9100:/custom-metrics")]);
        let merged = plan_merge(Some(&own), true);
        let original: Value = serde_json::from_str(&merged.original.unwrap()).unwrap();
        assert_eq!(
            original,
            json!({"scrape":"true","path":"/metrics","port":"8080","targets":[{"port":"8080","path":"/metrics"},{"port":"9100","path":"/custom-metrics"}]})
        );
        assert_eq!(merged.remove, vec![SCRAPE_TARGETS.to_string()]);
    }

    #[test]
    fn opt_outs_leave_the_pod_alone() {
        for pairs in [
            &[(SCRAPE, "false")][..],
            &[(SCRAPE_DOTTED, "false")][..],
            &[(MERGE_METRICS, "false")][..],
        ] {
            assert_eq!(plan_merge(Some(&annotations(pairs)), true), PrometheusMerge::default());
        }
        assert_eq!(plan_merge(None, false), PrometheusMerge::default());
    }
}
