//! Drift: running pods whose proxy is not what injection would give them today.
//!
//! The engine decides, with no second copy of its rules: an injected pod is stripped of its
//! injection ([`strip_injection`], as offline re-injection does), run through
//! [`Injector::inject`] with its namespace's annotations and LimitRanges, and the returned
//! patch applied; its proxy's image and each resource field are then compared with the
//! running proxy, each expected value named with its source as `explain` prints it. A pod
//! without a proxy that the API server would send to us and the engine would inject is
//! reported as missing its proxy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde_json::Value;

use super::ClusterView;
use super::namespaces::{Injection, NamespaceReport, sending_webhooks};
use super::selectors::namespace_labels;
use crate::engine::annotations::PROXY_IMAGE;
use crate::engine::quantity::Quantity;
use crate::engine::{
    Decision, FieldKey, Injector, NamespaceContext, PROXY_CONTAINER, PodRequest, ProxyResources, Side, strip_injection,
};

/// One pod that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodDrift {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub pod: String,
    /// What differs.
    pub differences: Vec<Difference>,
}

/// One value that differs between the running proxy and today's injection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `proxy` (present or not), `image`, or a resource field such as `cpu.limit`.
    pub field: String,
    /// What the running pod has (`-` for unset).
    pub running: String,
    /// What injection would give today (`-` for unset).
    pub expected: String,
    /// Where the expected value comes from, with the adjustments made to it.
    pub source: String,
}

/// The `istio-proxy` container of a pod as JSON (a container or a native sidecar).
fn proxy_container(pod: &Value) -> Option<&Value> {
    ["containers", "initContainers"]
        .into_iter()
        .flat_map(|list| pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array))
        .flatten()
        .find(|container| container["name"] == PROXY_CONTAINER)
}

/// A container's value of `key`, as written, when set.
fn resource_value(container: &Value, key: FieldKey) -> Option<&str> {
    let list = match key.side {
        Side::Request => "requests",
        Side::Limit => "limits",
    };
    container["resources"][list][key.resource.name()].as_str()
}

/// Whether two written quantities of `key`'s kind are the same amount.
fn same_amount(running: Option<&str>, expected: Option<&Quantity>, key: FieldKey) -> bool {
    match (running, expected) {
        (None, None) => true,
        (Some(text), Some(expected)) => {
            Quantity::parse(text, key.resource.kind()).is_ok_and(|running| running.units() == expected.units())
        }
        _ => false,
    }
}

/// What differs between `pod`'s running proxy and today's injection of it.
fn pod_differences(injector: &Injector, view: &ClusterView, pod: &Pod) -> Result<Vec<Difference>, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let namespace_object = view.namespace(&namespace);
    let running = serde_json::to_value(pod).map_err(|error| error.to_string())?;
    let mut stripped = running.clone();
    let injected = strip_injection(&mut stripped);
    let template: Pod = serde_json::from_value(stripped.clone()).map_err(|error| error.to_string())?;
    let recommendation = view.recommendation_for(&running);
    let request = PodRequest {
        pod: &template,
        namespace: &namespace,
        workload: None,
        has_metadata: true,
        unread_annotation_bytes: 0,
        namespace_context: NamespaceContext {
            annotations: namespace_object.and_then(|ns| ns.metadata.annotations.as_ref()),
            limit_ranges: view.limit_ranges_of(&namespace),
            recommendation: recommendation.as_ref(),
            // ResourceQuotas are left out: a running pod is already counted in a quota's
            // `used`, so fitting it again would count it twice and report false drift.
            ..NamespaceContext::default()
        },
        app_amounts: None,
        reinjection: injected,
    };
    if !injected {
        let labels = namespace_labels(&namespace, namespace_object.and_then(|ns| ns.metadata.labels.as_ref()));
        return missing_proxy(injector, view, &labels, pod, &request);
    }
    let outcome = match injector.inject(&request) {
        Ok(outcome) => outcome,
        Err(denial) => return Ok(vec![proxy_difference("injected", "denied", denial.error.to_string())]),
    };
    let Some(resources) = outcome.resources.as_ref() else {
        return Ok(vec![proxy_difference(
            "injected",
            "none",
            format!("engine: {}", outcome.decision.as_str()),
        )]);
    };
    let operations = outcome.patch.to_patch().map_err(|error| error.to_string())?;
    let mut expected = stripped;
    json_patch::patch(&mut expected, &operations).map_err(|error| format!("today's patch does not apply: {error}"))?;
    let (Some(running_proxy), Some(expected_proxy)) = (proxy_container(&running), proxy_container(&expected)) else {
        return Ok(vec![proxy_difference(
            "no istio-proxy container",
            PROXY_CONTAINER,
            "the pod's status annotation".into(),
        )]);
    };
    let mut differences = Vec::new();
    differences.extend(image_difference(pod, running_proxy, expected_proxy));
    differences.extend(resource_differences(running_proxy, resources));
    Ok(differences)
}

/// A difference in the proxy container as a whole: there, missing or denied.
fn proxy_difference(running: &str, expected: &str, source: String) -> Difference {
    Difference {
        field: "proxy".into(),
        running: running.into(),
        expected: expected.into(),
        source,
    }
}

/// For a pod without a proxy (`request`, in a namespace with `labels`): a missing proxy, when
/// a webhook would send the pod to us and the engine would inject it.
fn missing_proxy(
    injector: &Injector,
    view: &ClusterView,
    labels: &BTreeMap<String, String>,
    pod: &Pod,
    request: &PodRequest<'_>,
) -> Result<Vec<Difference>, String> {
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    let sending = sending_webhooks(view, labels, &pod_labels)?;
    if sending.is_empty() {
        return Ok(Vec::new());
    }
    Ok(match injector.inject(request) {
        Ok(outcome) if matches!(outcome.decision, Decision::Inject(_)) => vec![proxy_difference(
            "none",
            PROXY_CONTAINER,
            format!("sent to {}; engine: {}", sending.join(", "), outcome.decision.as_str()),
        )],
        _ => Vec::new(),
    })
}

/// The proxy image, when the running one is not today's, with where today's comes from.
fn image_difference(pod: &Pod, running_proxy: &Value, expected_proxy: &Value) -> Option<Difference> {
    let image = |container: &Value| container["image"].as_str().unwrap_or("-").to_string();
    if image(running_proxy) == image(expected_proxy) {
        return None;
    }
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| annotations.contains_key(PROXY_IMAGE));
    Some(Difference {
        field: "image".into(),
        running: image(running_proxy),
        expected: image(expected_proxy),
        source: if annotated {
            format!("pod annotation {PROXY_IMAGE}")
        } else {
            "config proxyImage".into()
        },
    })
}

/// Each resource field of the running proxy that is not today's amount, with the expected
/// value's source and adjustments.
fn resource_differences(running_proxy: &Value, resources: &ProxyResources) -> Vec<Difference> {
    let mut differences = Vec::new();
    for key in FieldKey::ALL {
        let field = resources.field(key);
        let running_value = resource_value(running_proxy, key);
        if same_amount(running_value, field.value.as_ref(), key) {
            continue;
        }
        let mut source = field.source.to_string();
        for adjustment in &field.adjustments {
            source.push_str(", then ");
            source.push_str(adjustment);
        }
        differences.push(Difference {
            field: key.to_string(),
            running: running_value.unwrap_or("-").to_string(),
            expected: field.value.map_or_else(|| "-".to_string(), |q| q.to_string()),
            source,
        });
    }
    differences
}

/// The drifted pods among those read, outside excluded namespaces, and how many were compared.
pub(crate) fn find_drift(
    injector: &Injector,
    view: &ClusterView,
    namespaces: &[NamespaceReport],
) -> (Vec<PodDrift>, usize) {
    let excluded: BTreeMap<&str, bool> = namespaces
        .iter()
        .map(|report| (report.name.as_str(), report.injection == Injection::Excluded))
        .collect();
    let mut drifted = Vec::new();
    let mut checked = 0;
    for pod in &view.pods {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        if excluded.get(namespace.as_str()).copied().unwrap_or(true) {
            continue;
        }
        checked += 1;
        let differences = pod_differences(injector, view, pod).unwrap_or_else(|error| {
            vec![Difference {
                field: "proxy".into(),
                running: "?".into(),
                expected: "?".into(),
                source: format!("cannot be compared: {error}"),
            }]
        });
        if !differences.is_empty() {
            drifted.push(PodDrift {
                namespace,
                pod: pod.metadata.name.clone().unwrap_or_default(),
                differences,
            });
        }
    }
    (drifted, checked)
}

#[cfg(test)]
mod tests {
    use kube::api::DynamicObject;
    use serde_json::json;

    use super::*;
    use crate::check::{CheckOptions, namespaces, shipped_view};
    use crate::config::InjectConfig;

    fn pod(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "team"},
            "spec": {"containers": [{"name": "app", "image": "app"}]}})
    }

    /// `pod` injected offline by `injector`.
    fn injected(injector: &Injector, pod: Value) -> Pod {
        let yaml = crate::offline::inject_yaml(injector, &pod.to_string(), "team").unwrap();
        serde_json::from_value(crate::manifest::read_documents(&yaml).unwrap().remove(0)).unwrap()
    }

    #[test]
    fn drift_is_what_todays_injection_changes_with_its_source() {
        let today = Injector::new(InjectConfig::default()).unwrap();
        let mut older = InjectConfig {
            proxy_image: "docker.io/istio/proxyv2:1.20.0".into(),
            ..InjectConfig::default()
        };
        older.resources.limits.cpu = Some("1500m".into());
        let older = Injector::new(older).unwrap();
        let mut view = shipped_view(
            json!([{"metadata": {"name": "team", "labels": {"istio-injection": "enabled"},
            "annotations": {"sidecar.istio.io/proxyMemory": "200Mi"}}}]),
        );
        let mut same = pod("same");
        same["metadata"]["annotations"] = json!({"sidecar.istio.io/proxyMemory": "200Mi"});
        let mut opted_out = pod("opted-out");
        opted_out["metadata"]["labels"] = json!({"sidecar.istio.io/inject": "false"});
        view.pods = vec![
            injected(&older, pod("stale")),
            injected(&today, same),
            serde_json::from_value(pod("bare")).unwrap(),
            serde_json::from_value(opted_out).unwrap(),
        ];
        let rows = namespaces::report(&today, &view, &CheckOptions::default());
        let (drift, checked) = find_drift(&today, &view, &rows);
        assert_eq!(checked, 4);
        let fields = |pod: &str| -> Vec<(String, String, String, String)> {
            drift
                .iter()
                .filter(|row| row.pod == pod)
                .flat_map(|row| row.differences.iter())
                .map(|d| (d.field.clone(), d.running.clone(), d.expected.clone(), d.source.clone()))
                .collect()
        };
        let owned = |a: &str, b: &str, c: &str, d: &str| (a.to_string(), b.to_string(), c.to_string(), d.to_string());
        assert_eq!(
            fields("stale"),
            [
                owned(
                    "image",
                    "docker.io/istio/proxyv2:1.20.0",
                    "docker.io/istio/proxyv2:1.28.0",
                    "config proxyImage"
                ),
                owned("cpu.limit", "1500m", "2", "config default"),
                owned(
                    "memory.request",
                    "128Mi",
                    "200Mi",
                    "namespace annotation sidecar.istio.io/proxyMemory"
                ),
            ]
        );
        assert_eq!(
            fields("bare"),
            [owned(
                "proxy",
                "none",
                "istio-proxy",
                "sent to sidecar-injector/namespace.sidecar-injector.istio.io; engine: inject:policy-enabled"
            )]
        );
        // Injected as today would, and opted out: no drift.
        assert_eq!(drift.len(), 2, "{drift:#?}");
    }

    /// A VPA targeting Deployment `web` in `team` with an `istio-proxy` CPU target of `cpu`.
    fn vpa(cpu: &str) -> DynamicObject {
        serde_json::from_value(
            json!({"apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "team"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
            "status": {"recommendation": {"containerRecommendations": [
                {"containerName": "istio-proxy", "target": {"cpu": cpu}}]}}}),
        )
        .unwrap()
    }

    #[test]
    fn a_proxy_sized_by_its_vpa_is_judged_against_the_vpa() {
        let today = Injector::new(InjectConfig::default()).unwrap();
        let mut sized = InjectConfig::default();
        sized.resources.requests.cpu = Some("35m".into());
        let mut web = pod("web-5d8f-x2");
        web["metadata"]["labels"] = json!({"pod-template-hash": "5d8f"});
        web["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f", "uid": "1", "controller": true}]);
        let mut view = shipped_view(json!([{"metadata": {"name": "team", "labels": {"istio-injection": "enabled"}}}]));
        view.pods = vec![injected(&Injector::new(sized).unwrap(), web)];
        view.replica_sets = vec![
            serde_json::from_value(json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": "web-5d8f", "namespace": "team", "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "2", "controller": true}]}}))
            .unwrap(),
        ];
        let cpu_drift = |view: &ClusterView| -> Vec<(String, String, String)> {
            let rows = namespaces::report(&today, view, &CheckOptions::default());
            find_drift(&today, view, &rows)
                .0
                .iter()
                .flat_map(|row| row.differences.iter())
                .filter(|d| d.field == "cpu.request")
                .map(|d| (d.running.clone(), d.expected.clone(), d.source.clone()))
                .collect()
        };
        let owned = |a: &str, b: &str, c: &str| vec![(a.to_string(), b.to_string(), c.to_string())];
        assert_eq!(
            cpu_drift(&view),
            owned("35m", "100m", "config default"),
            "no VPA: the config's"
        );
        view.vpas = vec![vpa("35m")];
        assert_eq!(cpu_drift(&view), Vec::new(), "sized as its VPA says: no drift");
        view.vpas = vec![vpa("50m")];
        assert_eq!(
            cpu_drift(&view),
            owned("35m", "50m", "vpa team/web"),
            "the VPA moved on"
        );
    }
}
