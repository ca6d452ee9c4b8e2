//! Quota foresight through the public injection call, each patch applied to the pod.

use k8s_openapi::api::core::v1::ResourceQuota;
use serde_json::{Value, json};

use crate::NamespaceContext;
use crate::config::{InjectConfig, OnQuota, QuotaLimits, ResourceAmounts, ResourceDefaults};
use crate::test_support::{container, inject_and_apply};
use crate::{Denial, Outcome};

fn quota(name: &str, spec: Value, used: Value) -> ResourceQuota {
    serde_json::from_value(
        json!({"metadata": {"name": name}, "spec": spec, "status": {"hard": spec["hard"], "used": used}}),
    )
    .unwrap()
}

fn pod(extra_spec: Value) -> Value {
    let mut pod = json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "app",
            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}}]}
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    pod
}

fn no_limits() -> InjectConfig {
    InjectConfig {
        resources: ResourceDefaults {
            requests: ResourceAmounts {
                cpu: Some("100m".into()),
                memory: Some("128Mi".into()),
                ephemeral_storage: None,
            },
            limits: ResourceAmounts::default(),
        },
        ..Default::default()
    }
}

fn run(config: InjectConfig, pod: &Value, quotas: &[ResourceQuota]) -> Result<(Value, Outcome), Denial> {
    let context = NamespaceContext {
        annotations: None,
        limit_ranges: &[],
        resource_quotas: quotas,
        recommendation: None,
    };
    inject_and_apply(config, pod, context)
}

#[test]
fn a_required_limit_is_set_from_the_request_or_the_config() {
    let quotas = [quota(
        "limits",
        json!({"hard": {"limits.cpu": "10", "limits.memory": "10Gi"}}),
        json!({}),
    )];
    let (patched, outcome) = run(no_limits(), &pod(json!({})), &quotas).unwrap();
    for name in ["istio-proxy", "istio-init"] {
        assert_eq!(
            container(&patched, name)["resources"]["limits"],
            json!({"cpu": "100m", "memory": "128Mi"}),
            "{name}"
        );
    }
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("ResourceQuota limits requires limits.cpu")),
        "{:?}",
        outcome.warnings
    );
    let configured = InjectConfig {
        quota_limits: QuotaLimits {
            cpu: "500m".into(),
            memory: "request".into(),
        },
        ..no_limits()
    };
    let (patched, _) = run(configured, &pod(json!({})), &quotas).unwrap();
    assert_eq!(container(&patched, "istio-proxy")["resources"]["limits"]["cpu"], "500m");
    // Without the quota nothing is set.
    let (patched, _) = run(no_limits(), &pod(json!({})), &[]).unwrap();
    assert!(container(&patched, "istio-proxy")["resources"].get("limits").is_none());
}

#[test]
fn a_nearly_full_quota_shrinks_the_proxy_to_fit() {
    // 2 CPU hard, 1400m used: 600m left; the app requests 500m, the proxy 100m, the init
    // container runs alone; so the pod needs 600m and fits exactly. With 1450m used it must
    // shrink to 50m.
    let quotas = [quota(
        "team",
        json!({"hard": {"requests.cpu": "2"}}),
        json!({"requests.cpu": "1450m"}),
    )];
    let (patched, outcome) = run(InjectConfig::default(), &pod(json!({})), &quotas).unwrap();
    assert_eq!(
        container(&patched, "istio-proxy")["resources"]["requests"]["cpu"],
        "50m"
    );
    assert_eq!(container(&patched, "istio-init")["resources"]["requests"]["cpu"], "50m");
    let warning = outcome
        .warnings
        .iter()
        .find(|w| w.contains("ResourceQuota team"))
        .expect("a quota warning");
    assert!(
        warning.contains("hard 2, used 1450m, 550m left")
            && warning.contains("needed 600m")
            && warning.contains("added 100m"),
        "{warning}"
    );
    assert!(warning.contains("the API server has the last word"), "{warning}");
    let roomy = [quota(
        "team",
        json!({"hard": {"requests.cpu": "2"}}),
        json!({"requests.cpu": "1400m"}),
    )];
    let (patched, outcome) = run(InjectConfig::default(), &pod(json!({})), &roomy).unwrap();
    assert_eq!(
        container(&patched, "istio-proxy")["resources"]["requests"]["cpu"],
        "100m"
    );
    assert!(outcome.warnings.iter().all(|w| !w.contains("ResourceQuota")));
}

#[test]
fn deny_or_cannot_fit_names_quota_resource_need_share_and_left() {
    let quotas = [quota(
        "team",
        json!({"hard": {"requests.cpu": "2"}}),
        json!({"requests.cpu": "1450m"}),
    )];
    let deny = InjectConfig {
        on_quota: OnQuota::Deny,
        ..Default::default()
    };
    let message = run(deny, &pod(json!({})), &quotas).unwrap_err().to_string();
    assert!(
        message.contains("ResourceQuota team: requests.cpu would be exceeded: the pod needs 600m, of which the injected containers add 100m, and 550m is left (hard 2, used 1450m)"),
        "{message}"
    );
    assert!(message.contains("the API server has the last word"), "{message}");
    // The app alone does not fit: shrinking cannot help.
    let full = [quota(
        "team",
        json!({"hard": {"requests.cpu": "2"}}),
        json!({"requests.cpu": "1800m"}),
    )];
    let message = run(InjectConfig::default(), &pod(json!({})), &full)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("200m is left") && message.contains("cannot shrink below"),
        "{message}"
    );
}

#[test]
fn scoped_quotas_apply_only_where_they_match() {
    let full_used = json!({"requests.cpu": "1450m"});
    let hard = json!({"requests.cpu": "2"});
    let terminating = quota(
        "jobs",
        json!({"hard": hard, "scopes": ["Terminating"]}),
        full_used.clone(),
    );
    let (patched, _) = run(
        InjectConfig::default(),
        &pod(json!({})),
        std::slice::from_ref(&terminating),
    )
    .unwrap();
    assert_eq!(
        container(&patched, "istio-proxy")["resources"]["requests"]["cpu"],
        "100m",
        "not terminating"
    );
    let (patched, _) = run(
        InjectConfig::default(),
        &pod(json!({"activeDeadlineSeconds": 60})),
        std::slice::from_ref(&terminating),
    )
    .unwrap();
    assert_eq!(
        container(&patched, "istio-proxy")["resources"]["requests"]["cpu"],
        "50m",
        "terminating"
    );

    let high = quota(
        "high",
        json!({"hard": hard, "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}),
        full_used.clone(),
    );
    let (patched, _) = run(
        InjectConfig::default(),
        &pod(json!({"priorityClassName": "low"})),
        std::slice::from_ref(&high),
    )
    .unwrap();
    assert_eq!(
        container(&patched, "istio-proxy")["resources"]["requests"]["cpu"],
        "100m",
        "other class"
    );
    let (patched, _) = run(
        InjectConfig::default(),
        &pod(json!({"priorityClassName": "high"})),
        std::slice::from_ref(&high),
    )
    .unwrap();
    assert_eq!(
        container(&patched, "istio-proxy")["resources"]["requests"]["cpu"],
        "50m",
        "class high"
    );

    let best_effort = quota("be", json!({"hard": hard, "scopes": ["BestEffort"]}), full_used.clone());
    let (patched, _) = run(
        InjectConfig::default(),
        &pod(json!({})),
        std::slice::from_ref(&best_effort),
    )
    .unwrap();
    assert_eq!(
        container(&patched, "istio-proxy")["resources"]["requests"]["cpu"],
        "100m",
        "the injected pod is not BestEffort"
    );
    let not_best_effort = quota("nbe", json!({"hard": hard, "scopes": ["NotBestEffort"]}), full_used);
    let (patched, _) = run(
        InjectConfig::default(),
        &pod(json!({})),
        std::slice::from_ref(&not_best_effort),
    )
    .unwrap();
    assert_eq!(
        container(&patched, "istio-proxy")["resources"]["requests"]["cpu"],
        "50m"
    );
}

#[test]
fn limits_quota_shrinks_the_limit_not_below_the_request() {
    // limits.memory 2Gi, 1Gi used: 1Gi left; app 512Mi + proxy 1Gi = 1.5Gi. Fit: 512Mi.
    let quotas = [quota(
        "mem",
        json!({"hard": {"limits.memory": "2Gi"}}),
        json!({"limits.memory": "1Gi"}),
    )];
    let (patched, _) = run(InjectConfig::default(), &pod(json!({})), &quotas).unwrap();
    assert_eq!(
        container(&patched, "istio-proxy")["resources"]["limits"]["memory"],
        "512Mi"
    );
    // 1900Mi used: 148Mi left; the app alone needs 512Mi.
    let full = [quota(
        "mem",
        json!({"hard": {"limits.memory": "2Gi"}}),
        json!({"limits.memory": "1900Mi"}),
    )];
    let message = run(InjectConfig::default(), &pod(json!({})), &full)
        .unwrap_err()
        .to_string();
    assert!(message.contains("ResourceQuota mem: limits.memory"), "{message}");
}

#[test]
fn a_quota_without_used_figures_is_not_judged() {
    let unknown: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": "new"}, "spec": {"hard": {"requests.cpu": "1m"}}})).unwrap();
    let (patched, _) = run(InjectConfig::default(), &pod(json!({})), &[unknown]).unwrap();
    assert_eq!(
        container(&patched, "istio-proxy")["resources"]["requests"]["cpu"],
        "100m"
    );
}

#[test]
fn a_required_request_nothing_can_give_is_denied_naming_the_quota() {
    let config = InjectConfig {
        resources: ResourceDefaults {
            requests: ResourceAmounts::default(),
            limits: ResourceAmounts::default(),
        },
        ..Default::default()
    };
    let quotas = [quota(
        "requests",
        json!({"hard": {"requests.memory": "10Gi"}}),
        json!({}),
    )];
    let message = run(config, &pod(json!({})), &quotas).unwrap_err().to_string();
    assert!(
        message.contains("ResourceQuota requests requires requests.memory")
            && message.contains("sidecar.istio.io/proxyMemory"),
        "{message}"
    );
}
