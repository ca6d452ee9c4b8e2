//! `advise`, pure part one: Prometheus series grouped by namespace and owning workload.
//!
//! CPU comes as the raw samples of the `container_cpu_usage_seconds_total` counter and is
//! turned into one rate per pair of consecutive samples; a counter that goes down (the
//! proxy restarted) restarts from zero, as Prometheus' `rate` treats it. Memory comes as
//! the raw working-set samples. The workload is read from kube-state-metrics'
//! `kube_pod_owner` and `kube_replicaset_owner` when they name the pod, else from the pod
//! name with its ReplicaSet or StatefulSet suffix removed; each workload says which.

use std::collections::BTreeMap;
use std::fmt;

/// One sample: seconds since the epoch and the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix time in seconds.
    pub time: f64,
    /// The value.
    pub value: f64,
}

/// One series as Prometheus returns it: its labels and samples in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Label names to values.
    pub labels: BTreeMap<String, String>,
    /// Samples, oldest first.
    pub samples: Vec<Sample>,
}

impl Series {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Where a workload's name came from, shown with every recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorkloadSource {
    /// kube-state-metrics' `kube_pod_owner` (and `kube_replicaset_owner`).
    KubeStateMetrics,
    /// The pod name with its ReplicaSet or StatefulSet suffix removed.
    PodName,
}

impl WorkloadSource {
    /// The form shown in the output.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadSource::KubeStateMetrics => "kube_pod_owner",
            WorkloadSource::PodName => "pod name",
        }
    }
}

/// A workload: `Kind/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WorkloadName {
    /// e.g. `Deployment`.
    pub kind: String,
    /// e.g. `web`.
    pub name: String,
}

impl fmt::Display for WorkloadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Owners as kube-state-metrics reports them, keyed by (namespace, object name).
#[derive(Debug, Clone, Default)]
pub struct Owners {
    /// `kube_pod_owner`: pod → (owner kind, owner name).
    pub pods: BTreeMap<(String, String), (String, String)>,
    /// `kube_replicaset_owner`: ReplicaSet → (owner kind, owner name).
    pub replica_sets: BTreeMap<(String, String), (String, String)>,
}

/// kube-state-metrics writes this owner kind for an object without owner.
const NO_OWNER: &str = "<none>";

impl Owners {
    /// Reads the vectors of `kube_pod_owner` and `kube_replicaset_owner`.
    pub fn from_series(pod_owner: &[Series], replica_set_owner: &[Series]) -> Self {
        let read = |series: &[Series], object_label: &str| {
            series
                .iter()
                .filter_map(|s| {
                    let key = (s.label("namespace")?.to_string(), s.label(object_label)?.to_string());
                    let owner = (s.label("owner_kind")?.to_string(), s.label("owner_name")?.to_string());
                    Some((key, owner))
                })
                .collect()
        };
        Owners {
            pods: read(pod_owner, "pod"),
            replica_sets: read(replica_set_owner, "replicaset"),
        }
    }

    /// The pod's workload and where the answer came from.
    pub fn workload_of(&self, namespace: &str, pod: &str) -> (WorkloadName, WorkloadSource) {
        let Some((kind, name)) = self.pods.get(&(namespace.to_string(), pod.to_string())) else {
            return (workload_from_pod_name(pod), WorkloadSource::PodName);
        };
        let owned = |kind: &str, name: &str| WorkloadName {
            kind: kind.to_string(),
            name: name.to_string(),
        };
        let workload = if kind == NO_OWNER {
            owned("Pod", pod)
        } else if kind == "ReplicaSet" {
            match self.replica_sets.get(&(namespace.to_string(), name.clone())) {
                Some((owner_kind, owner_name)) if owner_kind != NO_OWNER => owned(owner_kind, owner_name),
                _ => owned(kind, name),
            }
        } else {
            owned(kind, name)
        };
        (workload, WorkloadSource::KubeStateMetrics)
    }
}

/// The alphabet of generated name suffixes (`k8s.io/apimachinery/pkg/util/rand`).
fn is_generated(text: &str, lengths: std::ops::RangeInclusive<usize>) -> bool {
    const ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";
    lengths.contains(&text.len()) && text.chars().all(|c| ALPHABET.contains(c))
}

/// `web-7d9f8b6c5d-x2x4q` → `Deployment/web`; `db-0` → `StatefulSet/db`; anything else is
/// its own `Pod/…`.
pub fn workload_from_pod_name(pod: &str) -> WorkloadName {
    let parts: Vec<&str> = pod.split('-').collect();
    let named = |kind: &str, keep: usize| WorkloadName {
        kind: kind.to_string(),
        name: parts[..keep].join("-"),
    };
    match parts.as_slice() {
        [.., hash, suffix] if parts.len() >= 3 && is_generated(suffix, 5..=5) && is_generated(hash, 6..=10) => {
            named("Deployment", parts.len() - 2)
        }
        [.., ordinal] if parts.len() >= 2 && !ordinal.is_empty() && ordinal.chars().all(|c| c.is_ascii_digit()) => {
            named("StatefulSet", parts.len() - 1)
        }
        _ => WorkloadName {
            kind: "Pod".into(),
            name: pod.to_string(),
        },
    }
}

/// The per-sample CPU rates (cores) of one counter series: one per consecutive pair, a
/// counter that went down counted from zero.
pub fn cpu_rates(samples: &[Sample]) -> Vec<f64> {
    samples
        .windows(2)
        .filter_map(|pair| {
            let elapsed = pair[1].time - pair[0].time;
            if elapsed <= 0.0 {
                return None;
            }
            let used = if pair[1].value >= pair[0].value {
                pair[1].value - pair[0].value
            } else {
                pair[1].value
            };
            Some(used / elapsed)
        })
        .collect()
}

/// What one workload's proxies used over the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadUsage {
    /// Where the workload's name came from (the weaker source when pods differ).
    pub source: Option<WorkloadSource>,
    /// CPU rates in cores, one per pair of consecutive counter samples.
    pub cpu: Vec<f64>,
    /// Working-set samples in bytes.
    pub memory: Vec<f64>,
    /// Each pod's last sample time, to count the pods running at the end.
    pub last_seen: BTreeMap<String, f64>,
}

impl WorkloadUsage {
    /// The pods seen within five minutes of the workload's last sample: its current replicas.
    pub fn current_pods(&self) -> usize {
        let last = self.last_seen.values().copied().fold(f64::MIN, f64::max);
        self.last_seen.values().filter(|seen| last - **seen <= 300.0).count()
    }

    fn note(&mut self, pod: &str, source: WorkloadSource, series: &Series) {
        self.source = Some(self.source.map_or(source, |known| known.max(source)));
        if let Some(last) = series.samples.last() {
            let seen = self.last_seen.entry(pod.to_string()).or_insert(last.time);
            *seen = seen.max(last.time);
        }
    }
}

/// Usage keyed by namespace, then workload.
pub type Usage = BTreeMap<String, BTreeMap<WorkloadName, WorkloadUsage>>;

/// Groups the CPU counter series and the memory series by namespace and workload. Series
/// without `namespace` or `pod` labels are left out.
pub fn group_usage(cpu: &[Series], memory: &[Series], owners: &Owners) -> Usage {
    let mut usage = Usage::new();
    let mut place = |series: &Series, is_cpu: bool| {
        let (Some(namespace), Some(pod)) = (series.label("namespace"), series.label("pod")) else {
            return;
        };
        let (workload, source) = owners.workload_of(namespace, pod);
        let entry = usage
            .entry(namespace.to_string())
            .or_default()
            .entry(workload)
            .or_default();
        entry.note(pod, source, series);
        if is_cpu {
            entry.cpu.extend(cpu_rates(&series.samples));
        } else {
            entry.memory.extend(series.samples.iter().map(|s| s.value));
        }
    };
    for series in cpu {
        place(series, true);
    }
    for series in memory {
        place(series, false);
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], values: &[(f64, f64)]) -> Series {
        Series {
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            samples: values.iter().map(|&(time, value)| Sample { time, value }).collect(),
        }
    }

    #[test]
    fn pod_names_lose_their_replica_set_or_stateful_set_suffix() {
        assert_eq!(
            workload_from_pod_name("web-7d9f8b6c5d-x2x4q").to_string(),
            "Deployment/web"
        );
        assert_eq!(
            workload_from_pod_name("my-web-5b8c7d-bbbbb").to_string(),
            "Deployment/my-web"
        );
        assert_eq!(workload_from_pod_name("db-12").to_string(), "StatefulSet/db");
        assert_eq!(workload_from_pod_name("standalone").to_string(), "Pod/standalone");
        // "aeiou" holds letters generated names never use.
        assert_eq!(
            workload_from_pod_name("web-7d9f8b6c5d-aeiou").to_string(),
            "Pod/web-7d9f8b6c5d-aeiou"
        );
    }

    #[test]
    fn owners_resolve_replica_sets_to_their_deployment() {
        let pod_owner = [
            series(
                &[
                    ("namespace", "shop"),
                    ("pod", "a"),
                    ("owner_kind", "ReplicaSet"),
                    ("owner_name", "web-1"),
                ],
                &[],
            ),
            series(
                &[
                    ("namespace", "shop"),
                    ("pod", "b"),
                    ("owner_kind", "ReplicaSet"),
                    ("owner_name", "orphan"),
                ],
                &[],
            ),
            series(
                &[
                    ("namespace", "shop"),
                    ("pod", "c"),
                    ("owner_kind", "<none>"),
                    ("owner_name", "<none>"),
                ],
                &[],
            ),
            series(
                &[
                    ("namespace", "shop"),
                    ("pod", "d"),
                    ("owner_kind", "StatefulSet"),
                    ("owner_name", "db"),
                ],
                &[],
            ),
        ];
        let rs_owner = [series(
            &[
                ("namespace", "shop"),
                ("replicaset", "web-1"),
                ("owner_kind", "Deployment"),
                ("owner_name", "web"),
            ],
            &[],
        )];
        let owners = Owners::from_series(&pod_owner, &rs_owner);
        let of = |pod: &str| {
            let (name, source) = owners.workload_of("shop", pod);
            (name.to_string(), source)
        };
        assert_eq!(of("a"), ("Deployment/web".into(), WorkloadSource::KubeStateMetrics));
        assert_eq!(of("b"), ("ReplicaSet/orphan".into(), WorkloadSource::KubeStateMetrics));
        assert_eq!(of("c"), ("Pod/c".into(), WorkloadSource::KubeStateMetrics));
        assert_eq!(of("d"), ("StatefulSet/db".into(), WorkloadSource::KubeStateMetrics));
        assert_eq!(of("api-0"), ("StatefulSet/api".into(), WorkloadSource::PodName));
    }

    #[test]
    fn a_counter_that_goes_down_restarts_from_zero() {
        let samples = [(0.0, 10.0), (10.0, 11.0), (20.0, 0.5), (30.0, 1.5), (30.0, 9.0)]
            .map(|(time, value)| Sample { time, value });
        assert_eq!(cpu_rates(&samples), [0.1, 0.05, 0.1]);
    }

    #[test]
    fn series_group_by_namespace_and_workload() {
        let cpu = [
            series(
                &[("namespace", "shop"), ("pod", "web-5b8c7d-bbbbb")],
                &[(0.0, 0.0), (60.0, 6.0)],
            ),
            series(
                &[("namespace", "shop"), ("pod", "web-6c9d8f-ccccc")],
                &[(0.0, 0.0), (60.0, 3.0)],
            ),
            series(&[("pod", "no-namespace")], &[(0.0, 0.0), (60.0, 3.0)]),
        ];
        let memory = [series(
            &[("namespace", "shop"), ("pod", "web-6c9d8f-ccccc")],
            &[(0.0, 5.0), (1000.0, 7.0)],
        )];
        let usage = group_usage(&cpu, &memory, &Owners::default());
        assert_eq!(usage.len(), 1);
        let web = &usage["shop"][&workload_from_pod_name("web-5b8c7d-bbbbb")];
        assert_eq!(web.source, Some(WorkloadSource::PodName));
        assert_eq!(web.cpu, [0.1, 0.05]);
        assert_eq!(web.memory, [5.0, 7.0]);
        // The first pod's last sample is 940 s before the second's.
        assert_eq!(web.current_pods(), 1);
    }
}
