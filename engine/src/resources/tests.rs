//! Table tests for each resolution rule and for precedence, and property tests for the
//! guarantees: request ≤ limit, within bounds and LimitRanges, QoS kept.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, LimitRange, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::annotations::{PROXY_CPU, PROXY_CPU_LIMIT, PROXY_MEMORY};
use crate::config::InjectConfig;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn container(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
    let quantities = |pairs: &[(&str, &str)]| {
        (!pairs.is_empty()).then(|| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ApiQuantity(v.to_string())))
                .collect()
        })
    };
    Container {
        name: name.into(),
        resources: Some(ResourceRequirements {
            requests: quantities(requests),
            limits: quantities(limits),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod(annotations: &[(&str, &str)], containers: Vec<Container>) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.annotations = (!annotations.is_empty()).then(|| map(annotations));
    pod.spec = Some(PodSpec {
        containers,
        ..Default::default()
    });
    pod
}

fn app() -> Vec<Container> {
    vec![container("app", &[("cpu", "1"), ("memory", "1Gi")], &[])]
}

fn tuning(yaml: &str) -> Tuning {
    InjectConfig::from_yaml(yaml, "test").unwrap().compile().unwrap().tuning
}

fn limit_range(name: &str, items: serde_json::Value) -> LimitRange {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"limits": items}})).unwrap()
}

fn resolve(
    pod: &Pod,
    namespace: &[(&str, &str)],
    limit_ranges: &[LimitRange],
    tuning: &Tuning,
) -> Result<Resolution, InjectError> {
    let annotations = map(namespace);
    let context = NamespaceContext {
        annotations: (!namespace.is_empty()).then_some(&annotations),
        recommendation: None,
        limit_ranges,
        resource_quotas: &[],
    };
    let amounts = AppAmounts::of(pod);
    resolve_resources(PodView { pod, amounts: &amounts }, &context, tuning, false)
}

fn shown(resources: &ProxyResources) -> String {
    resources.to_string()
}

const PROFILES: &str = "profiles:\n  small:\n    requests: {cpu: 50m, memory: 64Mi}\n    limits: {cpu: 500m, memory: 256Mi}\n  large:\n    requests: {cpu: '1', memory: 1Gi}\n    limits: {cpu: '4', memory: 4Gi}\n";

#[test]
fn precedence_pod_over_namespace_over_profile_over_default() {
    let tuning = tuning(PROFILES);
    type Pairs = &'static [(&'static str, &'static str)];
    let cases: [(&str, Pairs, Pairs, &str, &str); 6] = [
        (
            "config defaults",
            &[],
            &[],
            "cpu=100m/2 memory=128Mi/1Gi",
            "config default",
        ),
        (
            "namespace profile",
            &[],
            &[("sidecar-injector.io/profile", "small")],
            "cpu=50m/500m memory=64Mi/256Mi",
            "profile small (chosen by namespace annotation)",
        ),
        (
            "pod profile beats namespace profile",
            &[("sidecar-injector.io/profile", "large")],
            &[("sidecar-injector.io/profile", "small")],
            "cpu=1/4 memory=1Gi/4Gi",
            "profile large (chosen by pod annotation)",
        ),
        (
            "namespace annotation beats profile",
            &[("sidecar-injector.io/profile", "small")],
            &[(PROXY_CPU, "200m")],
            "cpu=200m/500m memory=64Mi/256Mi",
            "namespace annotation sidecar.istio.io/proxyCPU",
        ),
        (
            "pod annotation beats namespace annotation",
            &[(PROXY_CPU, "300m")],
            &[(PROXY_CPU, "200m")],
            "cpu=300m/2 memory=128Mi/1Gi",
            "pod annotation sidecar.istio.io/proxyCPU",
        ),
        (
            "namespace annotation over default",
            &[],
            &[(PROXY_CPU, "250m")],
            "cpu=250m/2 memory=128Mi/1Gi",
            "namespace annotation sidecar.istio.io/proxyCPU",
        ),
    ];
    for (name, pod_annotations, namespace, expected, cpu_source) in cases {
        let resolution = resolve(&pod(pod_annotations, app()), namespace, &[], &tuning).unwrap();
        assert_eq!(shown(&resolution.resources), expected, "{name}");
        let source = resolution.resources.field(FieldKey::ALL[0]).source.to_string();
        assert_eq!(source, cpu_source, "{name}");
    }
}

#[test]
fn unknown_profile_is_denied_with_the_known_names() {
    let error = resolve(
        &pod(&[("sidecar-injector.io/profile", "huge")], app()),
        &[],
        &[],
        &tuning(PROFILES),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("\"huge\"") && message.contains("large, small"),
        "{message}"
    );
}

#[test]
fn ratios_size_requests_from_app_requests() {
    let containers = vec![
        container("a", &[("cpu", "1"), ("memory", "1Gi")], &[]),
        container("b", &[], &[("cpu", "3"), ("memory", "1Gi")]),
    ];
    let annotated = pod(
        &[
            ("sidecar-injector.io/proxyCPURatio", "10%"),
            ("sidecar-injector.io/proxyMemoryRatio", "0.25"),
        ],
        containers.clone(),
    );
    let resolution = resolve(&annotated, &[], &[], &tuning("")).unwrap();
    assert_eq!(shown(&resolution.resources), "cpu=400m/2 memory=512Mi/1Gi");
    // A plain annotation on the pod beats a ratio.
    let both = pod(
        &[("sidecar-injector.io/proxyCPURatio", "10%"), (PROXY_CPU, "150m")],
        containers.clone(),
    );
    assert_eq!(
        shown(&resolve(&both, &[], &[], &tuning("")).unwrap().resources),
        "cpu=150m/2 memory=128Mi/1Gi"
    );
    // On the namespace, and bounded.
    let bounded = tuning("bounds:\n  cpu.request: {max: 300m}\n");
    let resolution = resolve(
        &pod(&[], containers),
        &[("sidecar-injector.io/proxyCPURatio", "0.5")],
        &[],
        &bounded,
    )
    .unwrap();
    assert_eq!(shown(&resolution.resources), "cpu=300m/2 memory=128Mi/1Gi");
    assert!(
        resolution
            .warnings
            .iter()
            .any(|w| w.contains("clamped to 300m (cluster max)")),
        "{:?}",
        resolution.warnings
    );
    let error = resolve(
        &pod(&[("sidecar-injector.io/proxyCPURatio", "lots")], app()),
        &[],
        &[],
        &tuning(""),
    )
    .unwrap_err();
    assert!(error.to_string().contains("proxyCPURatio"), "{error}");
}

#[test]
fn bounds_clamp_with_a_short_warning_or_deny() {
    let clamp = tuning("bounds:\n  cpu.limit: {min: 500m, max: '2'}\n  memory.request: {min: 64Mi}\n");
    let resolution = resolve(
        &pod(&[(PROXY_CPU_LIMIT, "8"), (PROXY_MEMORY, "1Mi")], app()),
        &[],
        &[],
        &clamp,
    )
    .unwrap();
    assert_eq!(shown(&resolution.resources), "cpu=100m/2 memory=64Mi/1Gi");
    assert!(
        resolution
            .warnings
            .contains(&"proxy CPU limit 8 clamped to 2 (cluster max)".to_string()),
        "{:?}",
        resolution.warnings
    );
    assert!(resolution.warnings.iter().all(|w| w.len() < 120));
    let deny = tuning("onViolation: deny\nbounds:\n  cpu.limit: {max: '2'}\n");
    let error = resolve(&pod(&[(PROXY_CPU_LIMIT, "8")], app()), &[], &[], &deny).unwrap_err();
    assert_eq!(
        error.to_string(),
        "proxy CPU limit 8 (from pod annotation sidecar.istio.io/proxyCPULimit) is above the cluster max 2"
    );
}

#[test]
fn namespace_may_tighten_bounds_but_not_widen_them() {
    let tuning = tuning("bounds:\n  cpu.limit: {max: '2'}\n");
    let tighter = [("sidecar-injector.io/bounds", r#"{"cpu.limit":{"max":"1"}}"#)];
    let resolution = resolve(&pod(&[], app()), &tighter, &[], &tuning).unwrap();
    assert_eq!(resolution.resources.value(FieldKey::ALL[1]).unwrap().to_string(), "1");
    assert!(resolution.warnings.iter().any(|w| w.contains("(namespace max)")));
    let wider = [("sidecar-injector.io/bounds", r#"{"cpu.limit":{"max":"8"}}"#)];
    let resolution = resolve(&pod(&[(PROXY_CPU_LIMIT, "4")], app()), &wider, &[], &tuning).unwrap();
    assert_eq!(resolution.resources.value(FieldKey::ALL[1]).unwrap().to_string(), "2");
    let broken = [("sidecar-injector.io/bounds", "{not json")];
    assert!(
        resolve(&pod(&[], app()), &broken, &[], &tuning)
            .unwrap_err()
            .to_string()
            .contains("sidecar-injector.io/bounds")
    );
}

#[test]
fn limit_range_container_rules() {
    let defaults_only = tuning("resources: {}\n");
    let lr = limit_range(
        "defaults",
        json!([{"type": "Container", "default": {"cpu": "300m", "memory": "256Mi"}, "defaultRequest": {"cpu": "150m"}}]),
    );
    let resolution = resolve(&pod(&[], app()), &[], &[lr], &defaults_only).unwrap();
    assert_eq!(shown(&resolution.resources), "cpu=150m/300m memory=256Mi/256Mi");
    assert_eq!(
        resolution.resources.field(FieldKey::ALL[1]).source.to_string(),
        "LimitRange defaults default"
    );

    let max = limit_range(
        "max",
        json!([{"type": "Container", "max": {"cpu": "1", "memory": "512Mi"}, "min": {"cpu": "200m"}}]),
    );
    let resolution = resolve(&pod(&[], app()), &[], &[max], &tuning("")).unwrap();
    assert_eq!(shown(&resolution.resources), "cpu=200m/1 memory=128Mi/512Mi");
    assert!(
        resolution
            .warnings
            .iter()
            .any(|w| w == "proxy CPU limit 2 lowered to 1 (LimitRange max max)"),
        "{:?}",
        resolution.warnings
    );

    let ratio = limit_range(
        "ratio",
        json!([{"type": "Container", "maxLimitRequestRatio": {"cpu": "4"}}]),
    );
    let resolution = resolve(&pod(&[], app()), &[], &[ratio], &tuning("")).unwrap();
    assert_eq!(shown(&resolution.resources), "cpu=100m/400m memory=128Mi/1Gi");

    let conflicting = limit_range("tight", json!([{"type": "Container", "min": {"cpu": "3"}}]));
    let bounded = tuning("bounds:\n  cpu.limit: {max: '2'}\n");
    let error = resolve(&pod(&[], app()), &[], &[conflicting], &bounded).unwrap_err();
    assert!(error.to_string().contains("LimitRange tight min 3"), "{error}");
}

#[test]
fn several_limit_ranges_combine_tightest_first() {
    let a = limit_range("a", json!([{"type": "Container", "max": {"cpu": "1500m"}}]));
    let b = limit_range(
        "b",
        json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "200Mi"}}]),
    );
    let resolution = resolve(&pod(&[], app()), &[], &[a, b], &tuning("")).unwrap();
    assert_eq!(shown(&resolution.resources), "cpu=100m/1 memory=200Mi/1Gi");
}

#[test]
fn pod_limit_range_shrinks_the_proxy_or_denies_naming_it() {
    let containers = vec![container("app", &[("cpu", "1")], &[("cpu", "2"), ("memory", "1Gi")])];
    let pod_max = limit_range("per-pod", json!([{"type": "Pod", "max": {"cpu": "3"}}]));
    let resolution = resolve(&pod(&[], containers.clone()), &[], &[pod_max], &tuning("")).unwrap();
    assert_eq!(resolution.resources.value(FieldKey::ALL[1]).unwrap().to_string(), "1");
    let too_small = limit_range("tiny", json!([{"type": "Pod", "max": {"cpu": "2"}}]));
    let error = resolve(&pod(&[], containers), &[], &[too_small], &tuning("")).unwrap_err();
    assert!(error.to_string().contains("LimitRange tiny per-Pod max 2"), "{error}");
}

#[test]
fn guaranteed_pods_stay_guaranteed() {
    let guaranteed = vec![container(
        "app",
        &[("cpu", "1"), ("memory", "1Gi")],
        &[("cpu", "1"), ("memory", "1Gi")],
    )];
    let resolution = resolve(&pod(&[], guaranteed.clone()), &[], &[], &tuning("")).unwrap();
    assert_eq!(shown(&resolution.resources), "cpu=100m/100m memory=128Mi/128Mi");
    assert!(resolution.warnings.iter().any(|w| w.contains("QoS Guaranteed")));
    let off = tuning("preserveGuaranteedQoS: false\n");
    assert_eq!(
        shown(&resolve(&pod(&[], guaranteed), &[], &[], &off).unwrap().resources),
        "cpu=100m/2 memory=128Mi/1Gi"
    );
    // Burstable apps are left alone.
    assert_eq!(
        shown(&resolve(&pod(&[], app()), &[], &[], &tuning("")).unwrap().resources),
        "cpu=100m/2 memory=128Mi/1Gi"
    );
}

#[test]
fn concurrency_and_memory_hint_follow_policy() {
    let resources = resolve(
        &pod(&[(PROXY_CPU, "1500m"), (PROXY_CPU_LIMIT, "3500m")], app()),
        &[],
        &[],
        &tuning(""),
    )
    .unwrap()
    .resources;
    assert_eq!(resources.concurrency(&ConcurrencyPolicy::default()), Some(4));
    let from_request = ConcurrencyPolicy {
        from: ConcurrencyFrom::Request,
        floor: 1,
        ceiling: 0,
    };
    assert_eq!(resources.concurrency(&from_request), Some(2));
    let capped = ConcurrencyPolicy {
        from: ConcurrencyFrom::Limit,
        floor: 1,
        ceiling: 3,
    };
    assert_eq!(resources.concurrency(&capped), Some(3));
    let agent = ConcurrencyPolicy {
        from: ConcurrencyFrom::Agent,
        ..ConcurrencyPolicy::default()
    };
    assert_eq!(resources.concurrency(&agent), None);
    assert_eq!(resources.go_memory_limit(90), Some((1i64 << 30) * 9 / 10));
}

#[test]
fn provenance_names_each_source() {
    let resources = resolve(
        &pod(&[(PROXY_CPU_LIMIT, "1")], app()),
        &[(PROXY_MEMORY, "200Mi")],
        &[],
        &tuning(""),
    )
    .unwrap()
    .resources;
    let provenance: serde_json::Value = serde_json::from_str(&resources.provenance()).unwrap();
    assert_eq!(
        provenance["cpu.limit"],
        json!({"value": "1", "from": "pod annotation sidecar.istio.io/proxyCPULimit"})
    );
    assert_eq!(
        provenance["memory.request"],
        json!({"value": "200Mi", "from": "namespace annotation sidecar.istio.io/proxyMemory"})
    );
    assert_eq!(provenance["cpu.request"]["from"], "config default");
}

fn arbitrary_cpu() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![Just(None), (1i64..8000).prop_map(Some)]
}

proptest! {
    #[test]
    fn resolution_always_satisfies_its_guarantees(
        cpu_request in arbitrary_cpu(),
        cpu_limit in arbitrary_cpu(),
        lr_min in prop_oneof![Just(None), (1i64..500).prop_map(Some)],
        lr_max in prop_oneof![Just(None), (500i64..4000).prop_map(Some)],
        lr_ratio in prop_oneof![Just(None), (1i64..10).prop_map(Some)],
        bound_max in prop_oneof![Just(None), (1000i64..6000).prop_map(Some)],
        guaranteed_app in any::<bool>(),
    ) {
        let mut annotations = Vec::new();
        let cpu_request_text = cpu_request.map(|m| format!("{m}m"));
        let cpu_limit_text = cpu_limit.map(|m| format!("{m}m"));
        if let Some(text) = &cpu_request_text { annotations.push((PROXY_CPU, text.as_str())); }
        if let Some(text) = &cpu_limit_text { annotations.push((PROXY_CPU_LIMIT, text.as_str())); }
        let app = if guaranteed_app {
            vec![container("app", &[("cpu", "1"), ("memory", "1Gi")], &[("cpu", "1"), ("memory", "1Gi")])]
        } else {
            app()
        };
        let mut item = serde_json::Map::new();
        item.insert("type".into(), json!("Container"));
        if let Some(min) = lr_min { item.insert("min".into(), json!({"cpu": format!("{min}m")})); }
        if let Some(max) = lr_max { item.insert("max".into(), json!({"cpu": format!("{max}m")})); }
        if let Some(ratio) = lr_ratio { item.insert("maxLimitRequestRatio".into(), json!({"cpu": ratio.to_string()})); }
        let lr = limit_range("lr", json!([item]));
        let yaml = bound_max.map(|m| format!("bounds:\n  cpu.limit: {{max: {m}m}}\n")).unwrap_or_default();
        let tuning = tuning(&yaml);
        let resolution = match resolve(&pod(&annotations, app), &[], &[lr], &tuning) {
            Ok(resolution) => resolution,
            Err(error) => {
                // Denials are allowed only for a real conflict: the user's own request above
                // their own limit, or a LimitRange min above the cluster max.
                let user_conflict = cpu_request.unwrap_or(100) > cpu_limit.unwrap_or(2000);
                let policy_conflict = matches!((lr_min, bound_max), (Some(min), Some(max)) if min > max);
                prop_assert!(user_conflict || policy_conflict, "unexpected denial: {error}");
                return Ok(());
            }
        };
        let resources = resolution.resources;
        let request = resources.effective_request(Resource::Cpu).map(|q| q.units());
        let limit = resources.value(FieldKey::ALL[1]).map(|q| q.units());
        if let (Some(request), Some(limit)) = (request, limit) {
            prop_assert!(request <= limit, "request {request} > limit {limit}");
            if let Some(ratio) = lr_ratio { prop_assert!(limit <= request * ratio); }
        }
        if let Some(min) = lr_min {
            prop_assert!(request.is_some_and(|r| r >= min));
            prop_assert!(limit.is_none_or(|l| l >= min));
        }
        if let Some(max) = lr_max {
            prop_assert!(limit.is_some_and(|l| l <= max));
        }
        if let Some(max) = bound_max {
            let cluster_ok = limit.is_some_and(|l| l <= max)
                || lr_min.is_some_and(|min| min > max);
            prop_assert!(cluster_ok, "limit {limit:?} above bound {max}");
        }
        if guaranteed_app {
            prop_assert_eq!(request, limit);
            let memory_request = resources.effective_request(Resource::Memory).map(|q| q.units());
            prop_assert_eq!(memory_request, resources.value(FieldKey::ALL[3]).map(|q| q.units()));
        }
    }
}

#[test]
fn provenance_is_the_object_of_each_set_field_and_the_extra_entries() {
    use crate::quantity::{Quantity, ResourceKind};
    let mut resources = ProxyResources::unset();
    let cpu = FieldKey::new(Resource::Cpu, Side::Request);
    let memory = FieldKey::new(Resource::Memory, Side::Limit);
    resources.adjust(
        cpu,
        Quantity::parse("100m", ResourceKind::Cpu).unwrap(),
        "raised".into(),
    );
    resources.adjust(
        cpu,
        Quantity::parse("200m", ResourceKind::Cpu).unwrap(),
        "raised again".into(),
    );
    resources.adjust(
        memory,
        Quantity::parse("1Gi", ResourceKind::Memory).unwrap(),
        "capped".into(),
    );
    let extra = vec![
        ("pod.memory.limit".to_string(), json!({"value": "2Gi"})),
        ("pod.cpu.request".to_string(), json!({"value": "1"})),
        ("pod.memory.limit".to_string(), json!({"value": "3Gi"})),
    ];
    let expected = json!({
        "cpu.request": {"adjusted": "raised; raised again", "from": "raised", "value": "200m"},
        "memory.limit": {"adjusted": "capped", "from": "capped", "value": "1Gi"},
        "pod.cpu.request": {"value": "1"},
        "pod.memory.limit": {"value": "3Gi"},
    });
    // Byte for byte what a JSON object of the same entries serializes to.
    assert_eq!(resources.provenance_with(extra), expected.to_string());
}

#[test]
fn provenance_fields_are_in_name_order_and_all_present() {
    let names: Vec<&str> = super::FIELDS_BY_NAME.iter().map(|key| key.name()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), FieldKey::ALL.len());
}
