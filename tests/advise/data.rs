//! The usage the `advise` tests load into Prometheus, with percentiles known by design.
//!
//! One sample a minute, starting five hours before the test. Namespace `shop`:
//! - `Deployment/web`, named by kube-state-metrics: pod `web-5b8c7d-bbbbb` of ReplicaSet
//!   `web-5b8c7d` for minutes 0–100, then pod `web-6c9d8f-ccccc` of ReplicaSet `web-6c9d8f`
//!   for minutes 100–200. Their 200 CPU rates are 1m…200m exactly once each (so p90 is
//!   180m), and the second pod's counter restarts from zero at its 195m interval. Memory
//!   peaks at 50Mi. kube_pod_annotations gives the second pod `proxyCPU: 150m`.
//! - `Deployment/api`, named from its pod `api-7c6b5d4f9-x7k2p` (no kube-state-metrics
//!   series): 8m and 20Mi throughout, below the test config's `cpu.request` min of 25m.
//! - `StatefulSet/db` (`db-0`): 31 samples only, below `--min-samples 100`.
//! - An `app` container of the first web pod using 3 cores, which must be ignored.
//!
//! Namespace `pay`: `pay-0`, 5m and 10Mi, for `--namespace` filtering.

use std::fmt::Write as _;

use sidecar_injector::engine::annotations::PROXY_CPU;

const MEBIBYTE: f64 = 1_048_576.0;

/// One series: metric name, labels, and (minute, value) samples.
struct Generated {
    metric: &'static str,
    labels: Vec<(String, String)>,
    samples: Vec<(i64, f64)>,
}

/// A counter whose per-minute rates (cores) are `rates`, starting at `start` from
/// `offset`; `reset_at` is the interval after which it restarts from zero.
fn counter(start: i64, rates: &[f64], offset: f64, reset_at: Option<usize>) -> Vec<(i64, f64)> {
    let mut value = offset;
    let mut samples = vec![(start, value)];
    for (index, rate) in rates.iter().enumerate() {
        if reset_at == Some(index) {
            value = 0.0;
        }
        value += rate * 60.0;
        samples.push((start + 1 + index as i64, value));
    }
    samples
}

fn gauge(minutes: std::ops::RangeInclusive<i64>, value: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    minutes.map(|minute| (minute, value(minute))).collect()
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn pod_labels(namespace: &str, pod: &str, container: &str) -> Vec<(String, String)> {
    labels(&[("container", container), ("namespace", namespace), ("pod", pod)])
}

fn owner(metric: &'static str, object_label: &str, object: &str, kind: &str, name: &str) -> Generated {
    Generated {
        metric,
        labels: labels(&[
            ("namespace", "shop"),
            (object_label, object),
            ("owner_kind", kind),
            ("owner_name", name),
        ]),
        samples: gauge(0..=200, |_| 1.0),
    }
}

/// The rates 1m…100m (plus `base`) in a fixed shuffled order: 37 is coprime to 100.
fn shuffled_millicores(base: i64) -> Vec<f64> {
    (0..100).map(|i| ((i * 37) % 100 + 1 + base) as f64 / 1000.0).collect()
}

fn all_series() -> Vec<Generated> {
    let web_b_rates = shuffled_millicores(100);
    let reset_at = web_b_rates.iter().position(|rate| (rate - 0.195).abs() < 1e-9);
    let cpu = "container_cpu_usage_seconds_total";
    let memory = "container_memory_working_set_bytes";
    let proxy = "istio-proxy";
    let web_a = "web-5b8c7d-bbbbb";
    let web_b = "web-6c9d8f-ccccc";
    let api = "api-7c6b5d4f9-x7k2p";
    let series = |metric, labels, samples| Generated {
        metric,
        labels,
        samples,
    };
    let sanitized: String = PROXY_CPU
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let annotation_label = format!("annotation_{sanitized}");
    let annotations = labels(&[("namespace", "shop"), ("pod", web_b), (&annotation_label, "150m")]);
    vec![
        series(
            cpu,
            pod_labels("shop", web_a, proxy),
            counter(0, &shuffled_millicores(0), 500.0, None),
        ),
        series(
            cpu,
            pod_labels("shop", web_a, "app"),
            counter(0, &[3.0; 100], 0.0, None),
        ),
        series(
            cpu,
            pod_labels("shop", web_b, proxy),
            counter(100, &web_b_rates, 1000.0, reset_at),
        ),
        series(
            cpu,
            pod_labels("shop", api, proxy),
            counter(0, &[0.008; 200], 0.0, None),
        ),
        series(
            cpu,
            pod_labels("shop", "db-0", proxy),
            counter(170, &[0.05; 30], 0.0, None),
        ),
        series(
            cpu,
            pod_labels("pay", "pay-0", proxy),
            counter(0, &[0.005; 200], 0.0, None),
        ),
        series(
            memory,
            pod_labels("shop", web_a, proxy),
            gauge(0..=100, |m| (20 + m % 25) as f64 * MEBIBYTE),
        ),
        series(
            memory,
            pod_labels("shop", web_a, "app"),
            gauge(0..=100, |_| 900.0 * MEBIBYTE),
        ),
        series(
            memory,
            pod_labels("shop", web_b, proxy),
            gauge(100..=200, |m| (30 + m % 21) as f64 * MEBIBYTE),
        ),
        series(
            memory,
            pod_labels("shop", api, proxy),
            gauge(0..=200, |_| 20.0 * MEBIBYTE),
        ),
        series(
            memory,
            pod_labels("shop", "db-0", proxy),
            gauge(170..=200, |_| 100.0 * MEBIBYTE),
        ),
        series(
            memory,
            pod_labels("pay", "pay-0", proxy),
            gauge(0..=200, |_| 10.0 * MEBIBYTE),
        ),
        owner("kube_pod_owner", "pod", web_a, "ReplicaSet", "web-5b8c7d"),
        owner("kube_pod_owner", "pod", web_b, "ReplicaSet", "web-6c9d8f"),
        owner("kube_replicaset_owner", "replicaset", "web-5b8c7d", "Deployment", "web"),
        owner("kube_replicaset_owner", "replicaset", "web-6c9d8f", "Deployment", "web"),
        series("kube_pod_annotations", annotations, gauge(100..=200, |_| 1.0)),
    ]
}

/// The OpenMetrics text of every series, minute 0 at `start` (Unix seconds), each metric's
/// series together as the format requires.
pub fn openmetrics(start: i64) -> String {
    let mut all = all_series();
    all.sort_by_key(|series| series.metric);
    let mut text = String::new();
    for series in all {
        let labels: Vec<String> = series
            .labels
            .iter()
            .map(|(name, value)| format!("{name}=\"{value}\""))
            .collect();
        for (minute, value) in series.samples {
            let _ = writeln!(
                text,
                "{}{{{}}} {value} {}",
                series.metric,
                labels.join(","),
                start + minute * 60
            );
        }
    }
    text.push_str("# EOF\n");
    text
}
