//! Prometheus metrics merging, as istiod does it.
//!
//! The agent serves the app's metrics merged with Envoy's on the status port. The pod's
//! scrape annotations are pointed there, and the originals move into the proxy's
//! `ISTIO_PROMETHEUS_ANNOTATIONS` so the agent knows where to fetch the app's metrics.
//! A pod with `prometheus.io/scrape: "false"`, or `prometheus.istio.io/merge-metrics:
//! "false"`, is left alone. As istiod, a `merge-metrics` value that is not a Go boolean, and a
//! scrape port or target port that is not 1-65535 (or is the agent's own port), are refused.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{InjectError, quoted};
use crate::json_text::JsonText;

/// Per-pod switch for merging.
pub use crate::annotations::PROMETHEUS_MERGE_METRICS as MERGE_METRICS;
/// Scrape path annotation.
pub use crate::annotations::PROMETHEUS_PATH as PATH;
/// Scrape port annotation.
pub use crate::annotations::PROMETHEUS_PORT as PORT;
/// Scrape switch annotation.
pub use crate::annotations::PROMETHEUS_SCRAPE as SCRAPE;
/// The dotted spelling of [`SCRAPE`]; `"false"` opts out as istiod reads it.
use crate::annotations::PROMETHEUS_SCRAPE_DOTTED as SCRAPE_DOTTED;
/// Several `port:path` targets.
pub use crate::annotations::PROMETHEUS_SCRAPE_TARGETS as SCRAPE_TARGETS;
/// Where the agent serves merged metrics. istiod writes this port whatever the status port.
const AGENT_METRICS_PORT: &str = "15020";

/// Go's `strconv.ParseBool` spellings, which istiod accepts for `merge-metrics`: true ones,
/// then (from index 6) false ones.
const GO_BOOLS: [&str; 12] = [
    "1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False",
];
const BOOL_FORMS: &str = "true or false (Go's spellings: 1, t, T, TRUE, True, 0, f, F, FALSE, False)";
const PORT_FORMS: &str = "a port number 1-65535 other than the agent's 15020, e.g. 8080";
const TARGET_FORMS: &str = "comma-separated port:path pairs, each port 1-65535 other than 15020, e.g. 8080:/metrics";

/// What merging changes: annotations to set and the env value for the agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrometheusMerge {
    /// Annotations to set on the pod.
    pub annotations: Vec<(&'static str, &'static str)>,
    /// `ISTIO_PROMETHEUS_ANNOTATIONS`, when the pod had its own scrape settings: `scrape`,
    /// `path` and `port` (each empty when unset) and the `targets`, as istiod writes it.
    pub original: Option<JsonText>,
    /// Annotations to remove: the targets move into `original`.
    pub remove: Vec<String>,
}

/// `ISTIO_PROMETHEUS_ANNOTATIONS`: the members in name order, as a JSON object keeps them.
#[derive(Serialize)]
struct OriginalSettings<'a> {
    path: &'a str,
    port: &'a str,
    scrape: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    targets: Vec<Target<'a>>,
}

/// One of `prometheus.istio.io/merge-targets`' targets, in name order.
#[derive(Serialize)]
struct Target<'a> {
    path: &'a str,
    port: &'a str,
}

/// Plans the merge for a pod's annotations; nothing when disabled or opted out.
/// Refuses, as istiod does, the values it cannot merge with.
pub fn plan_merge(
    annotations: Option<&BTreeMap<String, String>>,
    enabled: bool,
) -> Result<PrometheusMerge, InjectError> {
    let get = |key: &str| annotations.and_then(|map| map.get(key)).map(String::as_str);
    if let Some(value) = get(MERGE_METRICS).filter(|value| !GO_BOOLS.contains(value)) {
        return Err(invalid(MERGE_METRICS, value, "it is not a boolean".into(), BOOL_FORMS));
    }
    let opted_out = [SCRAPE, SCRAPE_DOTTED]
        .into_iter()
        .any(|key| get(key).is_some_and(|v| v.eq_ignore_ascii_case("false")))
        || get(MERGE_METRICS).is_some_and(|v| GO_BOOLS[6..].contains(&v));
    if !enabled || opted_out {
        return Ok(PrometheusMerge::default());
    }
    let targets: Vec<(&str, &str)> = get(SCRAPE_TARGETS)
        .map(|text| {
            text.split(',')
                .filter_map(|target| {
                    let (port, path) = target.trim().split_once(':').unwrap_or((target.trim(), "/metrics"));
                    (!port.is_empty()).then_some((port, path))
                })
                .collect()
        })
        .unwrap_or_default();
    // A port that already is the agent's: ours from an earlier injection, or the user's own
    // choice; istiod leaves the pod alone then.
    if get(PORT) == Some(AGENT_METRICS_PORT) {
        return Ok(PrometheusMerge::default());
    }
    match (get(SCRAPE_TARGETS), targets.is_empty()) {
        (Some(text), false) => {
            for (port, _) in &targets {
                check_port(port).map_err(|reason| invalid(SCRAPE_TARGETS, text, reason, TARGET_FORMS))?;
            }
        }
        _ => {
            if let Some(port) = get(PORT).filter(|port| !port.is_empty()) {
                check_port(port).map_err(|reason| invalid(PORT, port, reason, PORT_FORMS))?;
            }
        }
    }
    // istiod writes `scrape`, `path` and `port` always (empty when unset), and nothing when
    // all three are empty and there are no targets. The first target, when there is one, is
    // the `path` and `port`, for agents that do not read `targets`.
    let (path, port) = match targets.first() {
        Some(&(port, path)) => (path, port),
        None => (get(PATH).unwrap_or_default(), get(PORT).unwrap_or_default()),
    };
    let scrape = get(SCRAPE).unwrap_or_default();
    let has_original = !(scrape.is_empty() && path.is_empty() && port.is_empty() && targets.is_empty());
    let original = OriginalSettings {
        path,
        port,
        scrape,
        targets: targets.iter().map(|&(port, path)| Target { path, port }).collect(),
    };
    Ok(PrometheusMerge {
        annotations: vec![
            (PATH, "/stats/prometheus"),
            (PORT, AGENT_METRICS_PORT),
            (SCRAPE, "true"),
        ],
        original: has_original.then(|| JsonText::of(&original)),
        remove: get(SCRAPE_TARGETS)
            .map(|_| SCRAPE_TARGETS.to_string())
            .into_iter()
            .collect(),
    })
}

/// A scrape port as istiod reads it (Go's `Atoi`): 1-65535 and not the agent's.
fn check_port(port: &str) -> Result<(), String> {
    match port.parse::<i64>() {
        Ok(number) if number.to_string() == AGENT_METRICS_PORT => {
            Err(format!("port {port} is the agent's, which serves the merged metrics"))
        }
        Ok(1..=65535) => Ok(()),
        _ => Err(format!("{} is not a port 1-65535", quoted(port))),
    }
}

fn invalid(annotation: &str, value: &str, reason: String, accepted: &'static str) -> InjectError {
    InjectError::InvalidAnnotation {
        annotation: annotation.into(),
        value: quoted(value),
        reason,
        accepted,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn merges_and_records_the_originals() {
        let plain = plan_merge(None, true).unwrap();
        assert_eq!(plain.annotations.len(), 3);
        assert_eq!(plain.original, None);
        let own = annotations(&[(SCRAPE, "true"), (SCRAPE_TARGETS, "8080:/metrics,9100:/custom-metrics")]);
        let merged = plan_merge(Some(&own), true).unwrap();
        let written = merged.original.unwrap().to_json();
        // Members in name order, as a serde_json map writes them.
        assert_eq!(
            written,
            r#"{"path":"/metrics","port":"8080","scrape":"true","targets":[{"path":"/metrics","port":"8080"},{"path":"/custom-metrics","port":"9100"}]}"#
        );
        let original: Value = serde_json::from_str(&written).unwrap();
        assert_eq!(
            original,
            json!({"scrape":"true","path":"/metrics","port":"8080","targets":[{"port":"8080","path":"/metrics"},{"port":"9100","path":"/custom-metrics"}]})
        );
        assert_eq!(merged.remove, vec![SCRAPE_TARGETS.to_string()]);
        // One setting: the other two members empty, as istiod writes them.
        let path_only = plan_merge(Some(&annotations(&[(PATH, "/m")])), true).unwrap();
        let original: Value = serde_json::from_str(&path_only.original.unwrap().to_json()).unwrap();
        assert_eq!(original, json!({"scrape": "", "path": "/m", "port": ""}));
        // Only empty values: no env at all.
        let empty = plan_merge(Some(&annotations(&[(SCRAPE, "")])), true).unwrap();
        assert_eq!(empty.original, None);
    }

    #[test]
    fn opt_outs_leave_the_pod_alone() {
        for pairs in [
            &[(SCRAPE, "false")][..],
            &[(SCRAPE_DOTTED, "false")][..],
            &[(MERGE_METRICS, "false")][..],
        ] {
            assert_eq!(
                plan_merge(Some(&annotations(pairs)), true).unwrap(),
                PrometheusMerge::default()
            );
        }
        assert_eq!(plan_merge(None, false).unwrap(), PrometheusMerge::default());
        // A scrape port that already is the agent's, whatever the path.
        let agent = annotations(&[(PORT, AGENT_METRICS_PORT), (PATH, "/metrics")]);
        assert_eq!(plan_merge(Some(&agent), true).unwrap(), PrometheusMerge::default());
    }

    #[test]
    fn refuses_what_istiod_refuses() {
        for (pairs, named) in [
            (&[(MERGE_METRICS, "maybe")][..], MERGE_METRICS),
            (&[(MERGE_METRICS, "")][..], MERGE_METRICS),
            (&[(PORT, "65536")][..], PORT),
            (&[(PORT, "http")][..], PORT),
            (&[(PORT, "+15020")][..], PORT),
            (&[(SCRAPE_TARGETS, "trailing")][..], SCRAPE_TARGETS),
            (&[(SCRAPE_TARGETS, "8080:/metrics,0:/x")][..], SCRAPE_TARGETS),
        ] {
            let error = plan_merge(Some(&annotations(pairs)), true).unwrap_err().to_string();
            assert!(error.contains(named), "{pairs:?}: {error}");
        }
        // Go's spellings of a boolean are fine, and each false one opts out (the port unchecked).
        let merged = plan_merge(Some(&annotations(&[(MERGE_METRICS, "True")])), true).unwrap();
        assert_eq!(merged.annotations.len(), 3);
        for off in ["0", "f", "F", "FALSE", "False"] {
            let pairs = annotations(&[(MERGE_METRICS, off), (PORT, "65536")]);
            assert_eq!(
                plan_merge(Some(&pairs), true).unwrap(),
                PrometheusMerge::default(),
                "{off}"
            );
        }
    }
}
