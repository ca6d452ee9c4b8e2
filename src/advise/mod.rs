//! `advise`: proxy sizes proposed from what the proxies really used, read from Prometheus.
//!
//! [`gather`] is the only I/O: instant queries for the raw samples of
//! `container_cpu_usage_seconds_total` and `container_memory_working_set_bytes` of every
//! `istio-proxy` container over the window, and kube-state-metrics' owner and annotation
//! series. [`advise`] is pure: it groups the samples by namespace and workload
//! ([`usage`]), takes the percentiles, rounds them and puts them through the engine's
//! admission policy ([`sizing`]), and [`report`] writes the result as text, JSON or YAML.

pub mod apply;
mod gather;
pub mod prometheus;
pub mod report;
pub mod sizing;
pub mod usage;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::LimitRange;
use serde::Serialize;

pub use self::gather::{AdviseError, CPU_METRIC, Gathered, MEMORY_METRIC, gather};
use self::sizing::{NamespacePolicy, Percentiles};
use self::usage::{Owners, Series, Usage, WorkloadUsage};
use crate::engine::Injector;
use crate::engine::annotations::REGISTRY;
use crate::quantity::Quantity;

/// What `advise` was asked.
#[derive(Debug, Clone)]
pub struct AdviseOptions {
    /// Base URL of the Prometheus HTTP API.
    pub prometheus: String,
    /// The range, as a Prometheus duration (`7d`).
    pub window: String,
    /// Only these namespaces; all when empty.
    pub namespaces: Vec<String>,
    /// The percentiles and the memory margin.
    pub percentiles: Percentiles,
    /// Fewer samples than this give no recommendation.
    pub min_samples: usize,
    /// How long one query may take.
    pub timeout: Duration,
    /// The evaluation time, Unix seconds (now).
    pub at: f64,
}

/// Observed figures as quantities.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ObservedOut {
    /// The CPU percentile.
    pub cpu: String,
    /// The memory percentile.
    pub memory: String,
}

/// A recommendation's three values.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecommendedOut {
    /// CPU request.
    #[serde(rename = "cpu.request")]
    pub cpu_request: String,
    /// Memory request.
    #[serde(rename = "memory.request")]
    pub memory_request: String,
    /// Memory limit.
    #[serde(rename = "memory.limit")]
    pub memory_limit: String,
}

/// One workload's (or, with `workload: None`, one namespace's) recommendation.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    /// The namespace.
    pub namespace: String,
    /// `Kind/name`; `None` for the namespace-level entry.
    pub workload: Option<String>,
    /// Usage samples: the fewer of CPU rates and memory samples.
    pub samples: usize,
    /// The percentiles, when there are samples of both.
    pub observed: Option<ObservedOut>,
    /// The proposal after policy; `None` with a `reason`.
    pub recommended: Option<RecommendedOut>,
    /// What the policy changed.
    pub clamped: Vec<String>,
    /// Why there is no recommendation.
    pub reason: Option<String>,
    /// `kube_pod_owner` or `pod name`: where the workload's name came from.
    #[serde(rename = "workloadFrom")]
    pub workload_from: Option<&'static str>,
    /// What its proxies get today (cpu.request, memory.request, memory.limit).
    #[serde(skip)]
    pub current: [Option<Quantity>; 3],
    /// The pods seen at the end of the window.
    #[serde(skip)]
    pub pods: usize,
    /// The recommended values, for sums.
    #[serde(skip)]
    pub values: Option<[Quantity; 3]>,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    /// The window, as given.
    pub window: String,
    /// Per namespace: its own entry, then its workloads.
    pub recommendations: Vec<Recommendation>,
}

/// kube-state-metrics' label for an annotation: `annotation_` and the key with every
/// character outside `[a-zA-Z0-9_]` made `_`.
fn metric_label(key: &str) -> String {
    let sanitized: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("annotation_{sanitized}")
}

/// The registry's annotations of each pod, read back from `kube_pod_annotations`.
fn pod_annotations(series: &[Series]) -> BTreeMap<(String, String), BTreeMap<String, String>> {
    let labels: Vec<(String, &'static str)> = REGISTRY.iter().map(|row| (metric_label(row.key), row.key)).collect();
    let mut found = BTreeMap::new();
    for series in series {
        let (Some(namespace), Some(pod)) = (series.labels.get("namespace"), series.labels.get("pod")) else {
            continue;
        };
        let annotations: BTreeMap<String, String> = labels
            .iter()
            .filter_map(|(label, key)| {
                let value = series.labels.get(label).filter(|v| !v.is_empty())?;
                Some((key.to_string(), value.clone()))
            })
            .collect();
        found.insert((namespace.clone(), pod.clone()), annotations);
    }
    found
}

/// Everything about one group of proxies that is not its name.
struct Group<'a> {
    namespace: &'a str,
    usage: &'a WorkloadUsage,
    annotations: BTreeMap<String, String>,
}

fn recommend_group(
    injector: &Injector,
    options: &AdviseOptions,
    policy: NamespacePolicy<'_>,
    group: &Group<'_>,
) -> Recommendation {
    let usage = group.usage;
    let samples = usage.cpu.len().min(usage.memory.len());
    let observed = sizing::observe(&usage.cpu, &usage.memory, options.percentiles);
    let mut recommendation = Recommendation {
        namespace: group.namespace.to_string(),
        workload: None,
        samples,
        observed: observed.map(|o| ObservedOut {
            cpu: o.cpu.to_canonical(),
            memory: o.memory.to_canonical(),
        }),
        recommended: None,
        clamped: Vec::new(),
        reason: None,
        workload_from: None,
        current: [None; 3],
        pods: usage.current_pods(),
        values: None,
    };
    match sizing::current_sizing(injector, group.namespace, policy, &group.annotations) {
        Ok(current) => recommendation.current = current,
        Err(reason) => recommendation.reason = Some(reason),
    }
    let Some(observed) = observed.filter(|_| samples >= options.min_samples) else {
        recommendation.reason = Some(format!(
            "{samples} samples ({} CPU, {} memory), fewer than --min-samples {}",
            usage.cpu.len(),
            usage.memory.len(),
            options.min_samples
        ));
        return recommendation;
    };
    match sizing::police(
        injector,
        group.namespace,
        policy,
        sizing::recommend(observed, options.percentiles),
    ) {
        Ok(policed) => {
            let [cpu, memory_request, memory_limit] = policed.values.map(|q| q.to_canonical());
            recommendation.recommended = Some(RecommendedOut {
                cpu_request: cpu,
                memory_request,
                memory_limit,
            });
            recommendation.values = Some(policed.values);
            recommendation.clamped = policed.clamped;
        }
        Err(reason) => recommendation.reason = Some(reason),
    }
    recommendation
}

/// What `advise` read of one namespace from the cluster.
#[derive(Debug, Clone, Default)]
pub struct NamespaceFacts {
    /// Its annotations (profile, bounds, defaults).
    pub annotations: BTreeMap<String, String>,
    /// Its LimitRanges, which clamp the proxy at admission as the bounds do.
    pub limit_ranges: Vec<LimitRange>,
}

/// Turns the gathered series into recommendations. `namespaces` holds what was read of
/// namespaces from the cluster; others have no annotations and no LimitRanges.
pub fn advise(
    injector: &Injector,
    options: &AdviseOptions,
    gathered: &Gathered,
    namespaces: &BTreeMap<String, NamespaceFacts>,
) -> Advice {
    let owners = Owners::from_series(&gathered.pod_owner, &gathered.replica_set_owner);
    let usage: Usage = usage::group_usage(&gathered.cpu, &gathered.memory, &owners);
    let annotations = pod_annotations(&gathered.pod_annotations);
    let mut recommendations = Vec::new();
    for (namespace, workloads) in &usage {
        let facts = namespaces.get(namespace);
        let policy = NamespacePolicy {
            annotations: facts.map(|facts| &facts.annotations),
            limit_ranges: facts.map_or(&[], |facts| facts.limit_ranges.as_slice()),
        };
        let mut whole = WorkloadUsage::default();
        for workload in workloads.values() {
            whole.cpu.extend(&workload.cpu);
            whole.memory.extend(&workload.memory);
            whole.last_seen.extend(workload.last_seen.clone());
        }
        let group = Group {
            namespace,
            usage: &whole,
            annotations: BTreeMap::new(),
        };
        recommendations.push(recommend_group(injector, options, policy, &group));
        for (name, workload) in workloads {
            // The annotations of its newest pod that kube-state-metrics exported.
            let newest = workload
                .last_seen
                .iter()
                .filter_map(|(pod, seen)| Some((seen, annotations.get(&(namespace.clone(), pod.clone()))?)))
                .max_by(|a, b| a.0.total_cmp(b.0));
            let group = Group {
                namespace,
                usage: workload,
                annotations: newest.map(|(_, found)| found.clone()).unwrap_or_default(),
            };
            let mut recommendation = recommend_group(injector, options, policy, &group);
            recommendation.workload = Some(name.to_string());
            recommendation.workload_from = workload.source.map(usage::WorkloadSource::as_str);
            recommendations.push(recommendation);
        }
    }
    Advice {
        window: options.window.clone(),
        recommendations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InjectConfig;
    use crate::engine::FieldKey;

    #[test]
    fn annotation_labels_are_read_back_into_registry_keys() {
        let key = FieldKey::ALL[0].annotation();
        let label = metric_label(key);
        assert_eq!(label, format!("annotation_{}", key.replace(['.', '/'], "_")));
        let series = Series {
            labels: [
                ("namespace", "shop"),
                ("pod", "p"),
                (label.as_str(), "30m"),
                ("annotation_other", "x"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            samples: Vec::new(),
        };
        let found = pod_annotations(&[series]);
        assert_eq!(
            found[&("shop".to_string(), "p".to_string())],
            BTreeMap::from([(key.to_string(), "30m".to_string())])
        );
    }

    #[test]
    fn too_few_samples_give_a_reason_and_no_recommendation() {
        let injector = Injector::new(InjectConfig::default()).unwrap();
        let sample = |time: f64, value: f64| usage::Sample { time, value };
        let pod = |values: Vec<usage::Sample>| Series {
            labels: [("namespace", "shop"), ("pod", "web-5b8c7d-bbbbb")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            samples: values,
        };
        let gathered = Gathered {
            cpu: vec![pod(vec![sample(0.0, 0.0), sample(60.0, 1.2), sample(120.0, 2.4)])],
            memory: vec![pod(vec![sample(0.0, 1e6), sample(60.0, 2e6)])],
            ..Gathered::default()
        };
        let mut options = AdviseOptions {
            prometheus: String::new(),
            window: "7d".into(),
            namespaces: Vec::new(),
            percentiles: Percentiles {
                cpu: 9_000,
                memory: 10_000,
                memory_margin: 1_500,
            },
            min_samples: 3,
            timeout: Duration::from_secs(1),
            at: 0.0,
        };
        let advice = advise(&injector, &options, &gathered, &BTreeMap::new());
        let web = &advice.recommendations[1];
        assert_eq!(web.workload.as_deref(), Some("Deployment/web"));
        assert_eq!(web.workload_from, Some("pod name"));
        assert_eq!(web.recommended, None);
        assert_eq!(
            web.reason.as_deref(),
            Some("2 samples (2 CPU, 2 memory), fewer than --min-samples 3")
        );
        options.min_samples = 2;
        let advice = advise(&injector, &options, &gathered, &BTreeMap::new());
        let namespace = &advice.recommendations[0];
        assert_eq!(namespace.workload, None);
        let recommended = namespace.recommended.as_ref().unwrap();
        assert_eq!(recommended.cpu_request, "20m");
        // 2 MB × 1.15 = 2.3 MB, up to the 4Mi floor.
        assert_eq!(recommended.memory_limit, "4Mi");
    }
}
