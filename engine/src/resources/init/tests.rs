//! The init container's own resources, through the public injection call with the patch
//! applied to the pod.

use k8s_openapi::api::core::v1::LimitRange;
use serde_json::{Value, json};

use crate::NamespaceContext;
use crate::config::{InjectConfig, ResourceAmounts, ResourceDefaults};
use crate::test_support::{container, inject_and_apply};

fn pod(annotations: Value, app_resources: Value) -> Value {
    json!({
        "metadata": {"name": "p", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app", "resources": app_resources}]}
    })
}

fn resources_of(patched: &Value, name: &str) -> Value {
    container(patched, name)["resources"].clone()
}

fn inject(config: InjectConfig, pod: &Value) -> Value {
    inject_and_apply(config, pod, NamespaceContext::default()).unwrap().0
}

#[test]
fn unset_copies_the_proxy() {
    let patched = inject(InjectConfig::default(), &pod(json!({}), json!({})));
    assert_eq!(
        resources_of(&patched, "istio-init"),
        resources_of(&patched, "istio-proxy")
    );
}

#[test]
fn annotations_size_the_init_container_alone() {
    let annotations = json!({"sidecar-injector.io/initCPU": "10m", "sidecar-injector.io/initMemory": "32Mi"});
    let patched = inject(InjectConfig::default(), &pod(annotations, json!({})));
    assert_eq!(
        resources_of(&patched, "istio-init"),
        json!({"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}})
    );
    assert_eq!(
        resources_of(&patched, "istio-proxy"),
        json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}})
    );
}

#[test]
fn config_sets_defaults_and_the_annotation_wins() {
    let config = InjectConfig {
        init_resources: ResourceDefaults {
            requests: ResourceAmounts {
                cpu: Some("20m".into()),
                memory: Some("16Mi".into()),
                ephemeral_storage: None,
            },
            limits: ResourceAmounts {
                cpu: Some("200m".into()),
                ..Default::default()
            },
        },
        ..Default::default()
    };
    let patched = inject(
        config,
        &pod(json!({"sidecar-injector.io/initMemory": "48Mi"}), json!({})),
    );
    assert_eq!(
        resources_of(&patched, "istio-init"),
        json!({"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"cpu": "200m", "memory": "1Gi"}})
    );
}

#[test]
fn a_bad_value_is_denied_naming_the_annotation() {
    let denial = inject_and_apply(
        InjectConfig::default(),
        &pod(json!({"sidecar-injector.io/initCPULimit": "lots"}), json!({})),
        NamespaceContext::default(),
    )
    .unwrap_err();
    let message = denial.to_string();
    assert!(
        message.contains("sidecar-injector.io/initCPULimit")
            && message.contains("\"lots\"")
            && message.contains("500m"),
        "{message}"
    );
}

#[test]
fn an_own_limit_lowers_a_copied_request_and_two_own_values_must_agree() {
    let patched = inject(
        InjectConfig::default(),
        &pod(json!({"sidecar-injector.io/initCPULimit": "50m"}), json!({})),
    );
    assert_eq!(resources_of(&patched, "istio-init")["requests"]["cpu"], "50m");
    let denial = inject_and_apply(
        InjectConfig::default(),
        &pod(
            json!({"sidecar-injector.io/initCPU": "300m", "sidecar-injector.io/initCPULimit": "50m"}),
            json!({}),
        ),
        NamespaceContext::default(),
    )
    .unwrap_err();
    let message = denial.to_string();
    assert!(
        message.contains("init container CPU request 300m") && message.contains("sidecar-injector.io/initCPULimit"),
        "{message}"
    );
}

#[test]
fn a_guaranteed_pod_gets_a_guaranteed_init_container() {
    let guaranteed = json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    let (patched, outcome) = inject_and_apply(
        InjectConfig::default(),
        &pod(
            json!({"sidecar-injector.io/initCPU": "10m", "sidecar-injector.io/initMemory": "32Mi"}),
            guaranteed,
        ),
        NamespaceContext::default(),
    )
    .unwrap();
    assert_eq!(
        resources_of(&patched, "istio-init"),
        json!({"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "10m", "memory": "32Mi"}})
    );
    assert!(
        outcome.warnings.iter().any(|w| w.contains("init container")),
        "{:?}",
        outcome.warnings
    );
}

#[test]
fn limit_ranges_hold_the_init_container() {
    let limit_range: LimitRange = serde_json::from_value(json!({
        "metadata": {"name": "team"},
        "spec": {"limits": [
            {"type": "Container", "min": {"cpu": "50m"}},
            {"type": "Pod", "max": {"memory": "2Gi"}},
        ]}
    }))
    .unwrap();
    let context = NamespaceContext {
        annotations: None,
        limit_ranges: std::slice::from_ref(&limit_range),
        resource_quotas: &[],
        recommendation: None,
    };
    let annotations = json!({"sidecar-injector.io/initCPU": "10m", "sidecar-injector.io/initMemory": "3Gi", "sidecar-injector.io/initMemoryLimit": "3Gi"});
    let (patched, outcome) = inject_and_apply(InjectConfig::default(), &pod(annotations, json!({})), context).unwrap();
    let init = resources_of(&patched, "istio-init");
    assert_eq!(init["requests"]["cpu"], "50m", "{init}");
    assert_eq!(init["requests"]["memory"], "2Gi", "{init}");
    assert_eq!(init["limits"]["memory"], "2Gi", "{init}");
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.starts_with("init container CPU request 10m raised")),
        "{:?}",
        outcome.warnings
    );
}

#[test]
fn a_smaller_init_container_never_changes_what_a_pod_level_pod_reserves() {
    let pod_level = |annotations: Value| {
        let mut pod = pod(annotations, json!({"requests": {"cpu": "500m"}}));
        pod["spec"]["resources"] = json!({"requests": {"cpu": "1"}});
        inject(InjectConfig::default(), &pod)["spec"]["resources"].clone()
    };
    let copied = pod_level(json!({}));
    assert_eq!(pod_level(json!({"sidecar-injector.io/initCPU": "10m"})), copied);
    let larger = pod_level(json!({"sidecar-injector.io/initCPU": "3", "sidecar-injector.io/initCPULimit": "3"}));
    // The aggregate goes from 500m to max(500m + 100m proxy, 3 init) = 3: 2500m more.
    assert_eq!(
        larger["requests"]["cpu"], "3500m",
        "grown by what the init container adds: {larger}"
    );
}
