//! The resize guard on pods injected by the engine itself, each patch applied to the
//! proposed pod and the result checked.

use k8s_openapi::api::core::v1::{LimitRange, Pod};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{ResizeRequest, ResizeVerdict};
use crate::config::InjectConfig;
use crate::test_support::inject_and_apply;
use crate::{Denial, Injector, NamespaceContext, ResizeOutcome};

fn config(yaml: &str) -> InjectConfig {
    InjectConfig::from_yaml(yaml, "test").unwrap()
}

/// A pod injected with `config`, as the API server would store it.
fn injected(config: &InjectConfig, annotations: Value, app: Value, extra_spec: Value) -> Value {
    let mut pod = json!({
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app", "resources": app}]}
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    inject_and_apply(config.clone(), &pod, NamespaceContext::default())
        .unwrap()
        .0
}

fn proxy_pointer(pod: &Value) -> String {
    for list in ["containers", "initContainers"] {
        if let Some(index) = pod["spec"][list]
            .as_array()
            .and_then(|items| items.iter().position(|c| c["name"] == "istio-proxy"))
        {
            return format!("/spec/{list}/{index}");
        }
    }
    panic!("no proxy in {pod}")
}

fn set(pod: &mut Value, pointer: &str, value: Value) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    pod.pointer_mut(parent).unwrap()[last] = value;
}

fn resize_proxy(pod: &Value, side: &str, resource: &str, value: &str) -> Value {
    let mut new = pod.clone();
    let pointer = format!("{}/resources/{side}/{resource}", proxy_pointer(pod));
    set(&mut new, &pointer, json!(value));
    new
}

/// Judges `old` → `new`, and applies the patch to `new`.
fn judge(
    config: &InjectConfig,
    old: &Value,
    new: &Value,
    limit_ranges: &[LimitRange],
) -> Result<(ResizeOutcome, Value), Denial> {
    let injector = Injector::new(config.clone()).unwrap();
    let old_pod: Pod = serde_json::from_value(old.clone()).unwrap();
    let new_pod: Pod = serde_json::from_value(new.clone()).unwrap();
    let outcome = injector.judge_resize(&ResizeRequest {
        old: &old_pod,
        new: &new_pod,
        namespace_context: NamespaceContext {
            annotations: None,
            limit_ranges,
            resource_quotas: &[],
            recommendation: None,
        },
    })?;
    let mut patched = new.clone();
    if !outcome.patch.is_empty() {
        json_patch::patch(&mut patched, &outcome.patch.to_patch().unwrap()).unwrap();
    }
    Ok((outcome, patched))
}

fn proxy_resources(pod: &Value) -> Value {
    pod.pointer(&format!("{}/resources", proxy_pointer(pod)))
        .unwrap()
        .clone()
}

const BOUNDED: &str = "bounds:\n  cpu.limit: {max: '4'}\n  cpu.request: {min: 10m}\n";

#[test]
fn a_resize_within_bounds_is_stored_as_proposed() {
    let config = config(BOUNDED);
    let old = injected(&config, json!({}), json!({}), json!({}));
    let new = resize_proxy(&old, "requests", "cpu", "300m");
    let (outcome, patched) = judge(&config, &old, &new, &[]).unwrap();
    assert_eq!(outcome.verdict, ResizeVerdict::Allowed);
    assert!(outcome.patch.is_empty());
    assert_eq!(patched, new);
}

#[test]
fn past_a_bound_is_clamped_or_denied_naming_the_bound() {
    // 2 → 4500m keeps the whole-core count at... 5, which --concurrency 2 refuses; so
    // judge the bound with a config that derives no argument.
    let clamp = config(&format!(
        "{BOUNDED}concurrency: {{from: agent}}\nresizePolicy: {{cpu: RestartContainer}}\n"
    ));
    let old = injected(&clamp, json!({}), json!({}), json!({}));
    let new = resize_proxy(&old, "limits", "cpu", "6");
    let (outcome, patched) = judge(&clamp, &old, &new, &[]).unwrap();
    assert_eq!(outcome.verdict, ResizeVerdict::Clamped);
    assert_eq!(proxy_resources(&patched)["limits"]["cpu"], "4");
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("proxy CPU limit 6 clamped to 4 (cluster max)")),
        "{:?}",
        outcome.warnings
    );
    let deny = config(&format!(
        "{BOUNDED}onViolation: deny\nconcurrency: {{from: agent}}\nresizePolicy: {{cpu: RestartContainer}}\n"
    ));
    let message = judge(&deny, &old, &new, &[]).unwrap_err().to_string();
    assert!(
        message.contains("proxy CPU limit 6 (from the resize) is above the cluster max 4"),
        "{message}"
    );
}

#[test]
fn limit_ranges_clamp_a_resize() {
    let config = config("");
    let old = injected(&config, json!({}), json!({}), json!({}));
    let limit_range: LimitRange = serde_json::from_value(json!({"metadata": {"name": "team"},
        "spec": {"limits": [{"type": "Container", "min": {"memory": "64Mi"}}]}}))
    .unwrap();
    let new = resize_proxy(&old, "requests", "memory", "16Mi");
    let (outcome, patched) = judge(&config, &old, &new, &[limit_range]).unwrap();
    assert_eq!(outcome.verdict, ResizeVerdict::Clamped);
    assert_eq!(proxy_resources(&patched)["requests"]["memory"], "64Mi");
}

#[test]
fn a_request_above_the_limit_is_denied() {
    let config = config("");
    let old = injected(&config, json!({}), json!({}), json!({}));
    let new = resize_proxy(&old, "requests", "memory", "2Gi");
    let message = judge(&config, &old, &new, &[]).unwrap_err().to_string();
    assert!(
        message.contains("memory request 2Gi is above its limit 1Gi"),
        "{message}"
    );
}

#[test]
fn the_proxy_follows_an_app_resize_when_sized_by_ratio() {
    let config = config("");
    let old = injected(
        &config,
        json!({"sidecar-injector.io/proxyCPURatio": "10%"}),
        json!({"requests": {"cpu": "1"}}),
        json!({}),
    );
    assert_eq!(proxy_resources(&old)["requests"]["cpu"], "100m");
    let mut new = old.clone();
    new["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("3");
    let (outcome, patched) = judge(&config, &old, &new, &[]).unwrap();
    assert_eq!(outcome.verdict, ResizeVerdict::Followed);
    assert_eq!(proxy_resources(&patched)["requests"]["cpu"], "300m");
    assert_eq!(patched["spec"]["containers"][0]["resources"]["requests"]["cpu"], "3");
    // Without a ratio, an app resize passes untouched.
    let plain = injected(&config, json!({}), json!({"requests": {"cpu": "1"}}), json!({}));
    let mut new = plain.clone();
    new["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("3");
    let (outcome, patched) = judge(&config, &plain, &new, &[]).unwrap();
    assert_eq!(outcome.verdict, ResizeVerdict::Unchanged);
    assert_eq!(patched, new);
}

#[test]
fn a_cpu_resize_that_changes_the_worker_count_is_refused() {
    let config = config("");
    let old = injected(&config, json!({}), json!({}), json!({}));
    let message = judge(&config, &old, &resize_proxy(&old, "limits", "cpu", "3"), &[])
        .unwrap_err()
        .to_string();
    assert!(message.contains("--concurrency 2 is fixed"), "{message}");
    let (outcome, _) = judge(&config, &old, &resize_proxy(&old, "limits", "cpu", "1500m"), &[]).unwrap();
    assert_eq!(outcome.verdict, ResizeVerdict::Allowed);
    // proxy.istio.io/config fixing concurrency: nothing is derived.
    let fixed = injected(
        &config,
        json!({"proxy.istio.io/config": "{\"concurrency\": 2}"}),
        json!({}),
        json!({}),
    );
    assert!(judge(&config, &fixed, &resize_proxy(&fixed, "limits", "cpu", "3"), &[]).is_ok());
}

#[test]
fn with_the_agent_sizing_envoy_a_cpu_limit_across_cores_needs_a_restart() {
    let agent = config("concurrency: {from: agent}\n");
    let old = injected(&agent, json!({}), json!({}), json!({}));
    let message = judge(&agent, &old, &resize_proxy(&old, "limits", "cpu", "3"), &[])
        .unwrap_err()
        .to_string();
    assert!(message.contains("ISTIO_CPU_LIMIT"), "{message}");
    assert!(judge(&agent, &old, &resize_proxy(&old, "limits", "cpu", "1500m"), &[]).is_ok());
    let restart = config("concurrency: {from: agent}\nresizePolicy: {cpu: RestartContainer}\n");
    let old = injected(&restart, json!({}), json!({}), json!({}));
    assert!(judge(&restart, &old, &resize_proxy(&old, "limits", "cpu", "3"), &[]).is_ok());
}

#[test]
fn go_memory_limit_stays_true() {
    let literal = config("");
    let old = injected(&literal, json!({}), json!({}), json!({}));
    let message = judge(&literal, &old, &resize_proxy(&old, "limits", "memory", "2Gi"), &[])
        .unwrap_err()
        .to_string();
    assert!(message.contains("GOMEMLIMIT=966367641 is fixed"), "{message}");
    assert!(judge(&literal, &old, &resize_proxy(&old, "requests", "memory", "256Mi"), &[]).is_ok());

    let field_ref = config("goMemLimitPercent: 100\n");
    let old = injected(&field_ref, json!({}), json!({}), json!({}));
    let (outcome, _) = judge(&field_ref, &old, &resize_proxy(&old, "limits", "memory", "2Gi"), &[]).unwrap();
    assert_eq!(outcome.verdict, ResizeVerdict::Allowed, "RestartContainer re-reads it");
    let never = injected(&field_ref, json!({}), json!({}), json!({"restartPolicy": "Never"}));
    let message = judge(
        &field_ref,
        &never,
        &resize_proxy(&never, "limits", "memory", "2Gi"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("memory resizePolicy NotRequired"), "{message}");
}

#[test]
fn a_change_of_qos_class_by_the_proxy_is_refused() {
    let config = config("");
    let guaranteed = json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    let old = injected(&config, json!({}), guaranteed, json!({}));
    let message = judge(&config, &old, &resize_proxy(&old, "requests", "cpu", "50m"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("QoS class would change from Guaranteed to Burstable"),
        "{message}"
    );
}

#[test]
fn a_pod_without_a_proxy_passes() {
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "a"}]}});
    let (outcome, _) = judge(&config(""), &pod, &pod, &[]).unwrap();
    assert_eq!(outcome.verdict, ResizeVerdict::NotInjected);
}

fn quantity_units(value: &Value, memory: bool) -> Option<i64> {
    let kind = if memory {
        crate::quantity::ResourceKind::Memory
    } else {
        crate::quantity::ResourceKind::Cpu
    };
    value
        .as_str()
        .and_then(|text| crate::quantity::Quantity::parse(text, kind).ok())
        .map(|q| q.units())
}

/// The pod's QoS class by Kubernetes' rules, computed here from the stored pod alone:
/// BestEffort when no container (init containers included) sets a CPU or memory request or
/// limit, Guaranteed when every one sets both limits and requests equal to them (a missing
/// request defaults to its limit), else Burstable.
fn qos_class_of(pod: &Value) -> &'static str {
    let containers = ["initContainers", "containers"]
        .into_iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten());
    let (mut any, mut guaranteed) = (false, true);
    for container in containers {
        let resources = &container["resources"];
        for (name, memory) in [("cpu", false), ("memory", true)] {
            let request = quantity_units(&resources["requests"][name], memory).filter(|units| *units > 0);
            let limit = quantity_units(&resources["limits"][name], memory).filter(|units| *units > 0);
            any |= request.is_some() || limit.is_some();
            guaranteed &= limit.is_some() && request.or(limit) == limit;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// For every resize the guard allows, the stored pod keeps admission's invariants:
    /// request ≤ limit, within the bounds, the same QoS class, and `--concurrency` and
    /// `GOMEMLIMIT` true to the new values.
    #[test]
    fn every_allowed_resize_keeps_the_admission_invariants(
        cpu_request in 1i64..6000,
        cpu_limit in 1i64..6000,
        memory_request in 1i64..4096,
        memory_limit in 1i64..4096,
        which in 0usize..4,
        percent in prop::sample::select(vec![90u8, 100]),
        guaranteed_app in any::<bool>(),
    ) {
        let config = config(&format!("{BOUNDED}goMemLimitPercent: {percent}\n"));
        let app = if guaranteed_app {
            json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
        } else {
            json!({"requests": {"cpu": "500m"}})
        };
        let old = injected(&config, json!({}), app, json!({}));
        let (side, resource, value) = match which {
            0 => ("requests", "cpu", format!("{cpu_request}m")),
            1 => ("limits", "cpu", format!("{cpu_limit}m")),
            2 => ("requests", "memory", format!("{memory_request}Mi")),
            _ => ("limits", "memory", format!("{memory_limit}Mi")),
        };
        let new = resize_proxy(&old, side, resource, &value);
        if let Ok((_, stored)) = judge(&config, &old, &new, &[]) {
            prop_assert_eq!(qos_class_of(&stored), qos_class_of(&old));
            let resources = proxy_resources(&stored);
            for (name, memory) in [("cpu", false), ("memory", true)] {
                let request = quantity_units(&resources["requests"][name], memory);
                let limit = quantity_units(&resources["limits"][name], memory);
                if let (Some(request), Some(limit)) = (request, limit) {
                    prop_assert!(request <= limit, "{resources}");
                }
            }
            let cpu_limit = quantity_units(&resources["limits"]["cpu"], false).unwrap();
            prop_assert!(cpu_limit <= 4000, "{resources}");
            prop_assert!(quantity_units(&resources["requests"]["cpu"], false).unwrap() >= 10);
            let proxy = stored.pointer(&proxy_pointer(&stored)).unwrap();
            let args: Vec<&str> = proxy["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
            let at = args.iter().position(|a| *a == "--concurrency").unwrap();
            prop_assert_eq!(args[at + 1].parse::<i64>().unwrap(), (cpu_limit + 999) / 1000);
            let memory_limit = quantity_units(&resources["limits"]["memory"], true).unwrap();
            let env = proxy["env"].as_array().unwrap().iter().find(|e| e["name"] == "GOMEMLIMIT").unwrap();
            if let Some(literal) = env["value"].as_str() {
                prop_assert_eq!(literal.parse::<i64>().unwrap(), memory_limit * 90 / 100);
            }
        }
    }
}
