//! `advise`, pure part two: percentiles, rounding to sensible steps, and the config's policy.
//!
//! A percentile is the nearest-rank one: the smallest sample at or above `p`% of them. The
//! CPU request is the percentile of the per-pod CPU rate; the memory request and limit are
//! the memory percentile (100: the peak working set) plus the margin. Each is rounded up to
//! a step that suits its size, then put through the engine exactly as a pod annotating
//! those values would be at admission ([`Injector::inject`]), so bounds, profiles and
//! `onViolation` apply with no second copy of their rules; what they changed is reported.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, Pod};
use serde_json::{Value, json};

use crate::engine::annotations::INJECT;
use crate::engine::{FieldKey, Injector, NamespaceContext, PodRequest, ProxyResources, Resource, Side};
use crate::quantity::Quantity;

/// The three fields `advise` recommends, in output order.
pub const ADVISED_FIELDS: [FieldKey; 3] = [
    FieldKey::new(Resource::Cpu, Side::Request),
    FieldKey::new(Resource::Memory, Side::Request),
    FieldKey::new(Resource::Memory, Side::Limit),
];

const MEBIBYTE: i64 = 1 << 20;

/// The nearest-rank `percentile` (0 < p ≤ 100) of `samples`; `None` when there are none.
pub fn percentile(samples: &[f64], percentile: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (percentile / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A percentage flag (`90`, `12.5`, `15%`) in basis points, within `0 < p ≤ 100` unless
/// `allow_zero` (a margin may be 0) or above 100 (a margin may be 150%).
pub fn parse_percent(text: &str, allow_zero: bool, allow_above_100: bool) -> Result<u32, String> {
    let number = text.trim().trim_end_matches('%');
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("{text:?} is not a percentage (examples: 90, 12.5, 15%)"))?;
    let low_ok = if allow_zero { value >= 0.0 } else { value > 0.0 };
    let high_ok = allow_above_100 || value <= 100.0;
    if !low_ok || !high_ok || value > 1000.0 {
        let range = match (allow_zero, allow_above_100) {
            (true, true) => "0 to 1000",
            (false, false) => "above 0 and at most 100",
            _ => "0 to 100",
        };
        return Err(format!("{text:?} is out of range: use {range}"));
    }
    Ok((value * 100.0).round() as u32)
}

/// Checks a Prometheus range duration (`7d`, `12h`, `1d12h`, `90m`).
pub fn parse_window(text: &str) -> Result<String, String> {
    let invalid = || format!("--window {text:?} is not a Prometheus duration (examples: 7d, 12h, 1d12h, 90m)");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(invalid());
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|unit| rest.starts_with(unit))
            .ok_or_else(invalid)?;
        rest = &rest[unit.len()..];
    }
    Ok(text.trim().to_string())
}

fn round_up(value: i64, step: i64) -> i64 {
    (value.div_euclid(step) + i64::from(value.rem_euclid(step) != 0)) * step
}

/// CPU millicores rounded up: 5m steps to 100m, 25m to 1 core, 100m above; at least 5m.
pub fn round_cpu(millicores: i64) -> i64 {
    let step = match millicores {
        ..=100 => 5,
        101..=1000 => 25,
        _ => 100,
    };
    round_up(millicores, step).max(5)
}

/// Memory bytes rounded up: 4Mi steps to 128Mi, 16Mi to 1Gi, 128Mi above; at least 4Mi.
pub fn round_memory(bytes: i64) -> i64 {
    let step = match bytes {
        b if b <= 128 * MEBIBYTE => 4 * MEBIBYTE,
        b if b <= 1024 * MEBIBYTE => 16 * MEBIBYTE,
        _ => 128 * MEBIBYTE,
    };
    round_up(bytes, step).max(4 * MEBIBYTE)
}

/// What the percentile flags ask for.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    /// Of the per-pod CPU rate, in basis points.
    pub cpu: u32,
    /// Of the working set, in basis points.
    pub memory: u32,
    /// Added to the memory figure, in basis points.
    pub memory_margin: u32,
}

/// The observed figures: CPU millicores and memory bytes, rounded up to whole units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The CPU percentile.
    pub cpu: Quantity,
    /// The memory percentile.
    pub memory: Quantity,
}

/// The percentiles of the samples, when there are both CPU and memory samples.
pub fn observe(cpu: &[f64], memory: &[f64], percentiles: Percentiles) -> Option<Observed> {
    let cpu = percentile(cpu, f64::from(percentiles.cpu) / 100.0)?;
    let memory = percentile(memory, f64::from(percentiles.memory) / 100.0)?;
    // Float noise (0.1 + 0.2) must not round 25m up to 26m: round to a micro-core first.
    let millicores = ((cpu * 1e6).round() / 1e3).ceil() as i64;
    Some(Observed {
        cpu: Quantity::from_millicores(millicores),
        memory: Quantity::from_bytes(memory.ceil() as i64),
    })
}

/// The recommendation before policy, one value per [`ADVISED_FIELDS`] entry.
pub fn recommend(observed: Observed, percentiles: Percentiles) -> [Quantity; 3] {
    let bytes = i128::from(observed.memory.units()) * i128::from(10_000 + percentiles.memory_margin);
    let with_margin = i64::try_from((bytes + 9_999) / 10_000).unwrap_or(i64::MAX / 2);
    let memory = Quantity::from_bytes(round_memory(with_margin));
    [
        Quantity::from_millicores(round_cpu(observed.cpu.units())),
        memory,
        memory,
    ]
}

/// The recommendation after the config's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policed {
    /// One value per [`ADVISED_FIELDS`] entry, as admission would set them.
    pub values: [Quantity; 3],
    /// What bounds or LimitRanges changed, e.g. `cpu.request 5m raised to 10m (cluster min)`.
    pub clamped: Vec<String>,
}

/// What a namespace brings to the policy: its annotations (profile, bounds, defaults) and
/// its LimitRanges, as admission reads them.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamespacePolicy<'a> {
    /// The namespace's annotations, when read from the cluster.
    pub annotations: Option<&'a BTreeMap<String, String>>,
    /// The namespace's LimitRanges, when read from the cluster.
    pub limit_ranges: &'a [LimitRange],
}

/// The proxy resources admission gives a pod of `namespace` carrying `annotations`
/// (`None` when it would not inject it); `Err` is the denial.
fn admit(
    injector: &Injector,
    namespace: &str,
    policy: NamespacePolicy<'_>,
    annotations: &BTreeMap<String, String>,
) -> Result<(Option<ProxyResources>, &'static str), String> {
    let mut annotations = annotations.clone();
    annotations.insert(INJECT.to_string(), "true".to_string());
    let pod: Value = json!({"metadata": {"name": "advise", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "advise"}]}});
    let pod: Pod = serde_json::from_value(pod).map_err(|e| e.to_string())?;
    let request = PodRequest {
        pod: &pod,
        namespace,
        workload: None,
        has_metadata: true,
        unread_annotation_bytes: 0,
        namespace_context: NamespaceContext {
            annotations: policy.annotations,
            limit_ranges: policy.limit_ranges,
            ..NamespaceContext::default()
        },
        app_amounts: None,
        reinjection: false,
    };
    let outcome = injector.inject(&request).map_err(|denial| denial.error.to_string())?;
    Ok((outcome.resources, outcome.decision.as_str()))
}

/// Puts `values` through admission, as a pod of `namespace` annotating them would be.
/// `Err` carries the denial (`onViolation: deny`) or why the pod would not be injected.
pub fn police(
    injector: &Injector,
    namespace: &str,
    policy: NamespacePolicy<'_>,
    values: [Quantity; 3],
) -> Result<Policed, String> {
    let annotations: BTreeMap<String, String> = ADVISED_FIELDS
        .iter()
        .zip(values)
        .map(|(key, value)| (key.annotation().to_string(), value.to_canonical()))
        .collect();
    let (resources, decision) = admit(injector, namespace, policy, &annotations)
        .map_err(|denial| format!("admission would deny it: {denial}"))?;
    let resources = resources.ok_or_else(|| format!("admission would not inject it ({decision})"))?;
    let mut policed = Policed {
        values,
        clamped: Vec::new(),
    };
    for (index, key) in ADVISED_FIELDS.iter().enumerate() {
        let field = resources.field(*key);
        if let Some(value) = field.value {
            policed.values[index] = value;
        }
        for adjustment in &field.adjustments {
            policed
                .clamped
                .push(format!("{key} {} {adjustment}", values[index].to_canonical()));
        }
    }
    Ok(policed)
}

/// What a pod of `namespace` with `pod_annotations` gets today, as `explain` computes it:
/// one canonical value (or `-`) per [`ADVISED_FIELDS`] entry.
pub fn current_sizing(
    injector: &Injector,
    namespace: &str,
    policy: NamespacePolicy<'_>,
    pod_annotations: &BTreeMap<String, String>,
) -> Result<[Option<Quantity>; 3], String> {
    let (resources, _) = admit(injector, namespace, policy, pod_annotations)
        .map_err(|denial| format!("admission would deny its pods: {denial}"))?;
    let resources = resources.unwrap_or_else(ProxyResources::unset);
    Ok(ADVISED_FIELDS.map(|key| resources.value(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InjectConfig;

    const PERCENTILES: Percentiles = Percentiles {
        cpu: 9_000,
        memory: 10_000,
        memory_margin: 1_500,
    };

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&samples, 90.0), Some(9.0));
        assert_eq!(percentile(&samples, 91.0), Some(10.0));
        assert_eq!(percentile(&samples, 100.0), Some(10.0));
        assert_eq!(percentile(&samples, 0.01), Some(1.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn values_round_up_to_steps_that_suit_their_size() {
        assert_eq!(round_cpu(0), 5);
        assert_eq!(round_cpu(21), 25);
        assert_eq!(round_cpu(100), 100);
        assert_eq!(round_cpu(101), 125);
        assert_eq!(round_cpu(1001), 1100);
        assert_eq!(round_memory(1), 4 * MEBIBYTE);
        assert_eq!(round_memory(57 * MEBIBYTE + 1), 60 * MEBIBYTE);
        assert_eq!(round_memory(129 * MEBIBYTE), 144 * MEBIBYTE);
        assert_eq!(round_memory(1025 * MEBIBYTE), 1152 * MEBIBYTE);
    }

    #[test]
    fn flags_parse_or_say_what_is_accepted() {
        assert_eq!(parse_percent("90", false, false), Ok(9_000));
        assert_eq!(parse_percent("12.5%", true, true), Ok(1_250));
        assert_eq!(parse_percent("0", true, true), Ok(0));
        assert!(
            parse_percent("0", false, false)
                .unwrap_err()
                .contains("above 0 and at most 100")
        );
        assert!(parse_percent("101", false, false).is_err());
        assert!(parse_percent("x", true, true).unwrap_err().contains("not a percentage"));
        assert_eq!(parse_window("1d12h").as_deref(), Ok("1d12h"));
        for bad in ["", "7", "d", "7days", "-1d"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_gets_the_margin_and_cpu_the_percentile() {
        let cpu: Vec<f64> = (1..=10).map(|m| f64::from(m) * 0.003).collect();
        let memory = [40.0 * MEBIBYTE as f64, 50.0 * MEBIBYTE as f64];
        let observed = observe(&cpu, &memory, PERCENTILES).unwrap();
        assert_eq!(observed.cpu.to_canonical(), "27m");
        assert_eq!(observed.memory.to_canonical(), "50Mi");
        let [cpu, memory_request, memory_limit] = recommend(observed, PERCENTILES);
        assert_eq!(cpu.to_canonical(), "30m");
        // 50Mi × 1.15 = 57.5Mi, up to the next 4Mi.
        assert_eq!(memory_request.to_canonical(), "60Mi");
        assert_eq!(memory_limit, memory_request);
        assert_eq!(observe(&[], &memory, PERCENTILES), None);
    }

    #[test]
    fn the_config_policy_clamps_as_admission_does() {
        let config = "bounds:\n  cpu.request: {min: 50m}\n  memory.limit: {max: 64Mi}\n";
        let injector = Injector::new(InjectConfig::from_yaml(config, "t").unwrap()).unwrap();
        let values = [
            Quantity::from_millicores(10),
            Quantity::from_bytes(80 * MEBIBYTE),
            Quantity::from_bytes(80 * MEBIBYTE),
        ];
        let policed = police(&injector, "shop", NamespacePolicy::default(), values).unwrap();
        let shown: Vec<String> = policed.values.iter().map(Quantity::to_canonical).collect();
        // The limit is clamped to 64Mi, and the request then lowered to the limit.
        assert_eq!(shown, ["50m", "64Mi", "64Mi"]);
        assert_eq!(
            policed.clamped,
            [
                "cpu.request 10m raised to 50m (cluster min)",
                "memory.request 80Mi lowered to the limit",
                "memory.limit 80Mi clamped to 64Mi (cluster max)"
            ]
        );

        let deny =
            Injector::new(InjectConfig::from_yaml(&format!("{config}onViolation: deny\n"), "t").unwrap()).unwrap();
        let error = police(&deny, "shop", NamespacePolicy::default(), values).unwrap_err();
        assert!(error.starts_with("admission would deny it: "), "{error}");

        let bounds = BTreeMap::from([(
            crate::engine::annotations::BOUNDS.to_string(),
            r#"{"cpu.request":{"min":"100m"}}"#.to_string(),
        )]);
        let namespace = NamespacePolicy {
            annotations: Some(&bounds),
            ..NamespacePolicy::default()
        };
        let policed = police(&injector, "shop", namespace, values).unwrap();
        assert_eq!(policed.values[0].to_canonical(), "100m");
    }

    #[test]
    fn the_namespaces_limit_ranges_clamp_as_admission_does() {
        let injector = Injector::new(InjectConfig::default()).unwrap();
        let limit_range: LimitRange = serde_json::from_value(json!({
            "metadata": {"name": "team-max", "namespace": "shop"},
            "spec": {"limits": [{"type": "Container", "max": {"cpu": "150m", "memory": "1Gi"}}]}
        }))
        .unwrap();
        let values = [
            Quantity::from_millicores(175),
            Quantity::from_bytes(116 * MEBIBYTE),
            Quantity::from_bytes(116 * MEBIBYTE),
        ];
        let unbounded = police(&injector, "shop", NamespacePolicy::default(), values).unwrap();
        assert_eq!(unbounded.values[0].to_canonical(), "175m");
        let namespace = NamespacePolicy {
            annotations: None,
            limit_ranges: std::slice::from_ref(&limit_range),
        };
        let policed = police(&injector, "shop", namespace, values).unwrap();
        let shown: Vec<String> = policed.values.iter().map(Quantity::to_canonical).collect();
        assert_eq!(shown, ["150m", "116Mi", "116Mi"]);
        assert_eq!(
            policed.clamped,
            ["cpu.request 175m lowered to 150m (LimitRange team-max max)"]
        );
    }

    #[test]
    fn current_sizing_reads_pod_annotations_and_config() {
        let injector = Injector::new(InjectConfig::default()).unwrap();
        let none = current_sizing(&injector, "shop", NamespacePolicy::default(), &BTreeMap::new()).unwrap();
        let shown = none.map(|q| q.map(|q| q.to_canonical()));
        assert_eq!(shown, [Some("100m".into()), Some("128Mi".into()), Some("1Gi".into())]);
        let annotated = BTreeMap::from([(FieldKey::ALL[0].annotation().to_string(), "30m".to_string())]);
        let current = current_sizing(&injector, "shop", NamespacePolicy::default(), &annotated).unwrap();
        assert_eq!(current[0].map(|q| q.to_canonical()).as_deref(), Some("30m"));
    }
}
