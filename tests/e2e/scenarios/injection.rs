//! Scenario 1: a pod in an `istio-injection=enabled` namespace gets `istio-proxy` and
//! `istio-init`, and the resources the API server stored are the annotated ones field by
//! field, with the fields no annotation sets at the configured defaults.

use k8s_openapi::api::core::v1::Container;
use sidecar_injector::quantity::{Quantity, ResourceKind};

use crate::check::{Context, Outcome, ensure};
use crate::harness::Harness;
use crate::pods::{INIT, PROXY, container, layout, proxy_count, test_pod};

/// Annotations under test, and what every resource field must read back as.
const ANNOTATIONS: [(&str, &str); 2] = [
    ("sidecar.istio.io/proxyCPU", "300m"),
    ("sidecar.istio.io/proxyMemoryLimit", "2Gi"),
];
/// (field, resource, expected): the annotated values, the rest deploy/config.yaml's defaults.
const EXPECTED: [(&str, &str, &str); 4] = [
    ("requests", "cpu", "300m"),
    ("requests", "memory", "128Mi"),
    ("limits", "cpu", "2"),
    ("limits", "memory", "2Gi"),
];

pub async fn annotated_resources(harness: &Harness) -> Outcome {
    let namespace = "e2e-injection";
    harness.injected_namespace(namespace, &[]).await?;
    let pod = harness
        .cluster
        .create_pod(namespace, &test_pod("annotated", &[], &ANNOTATIONS))
        .await
        .context("creating the pod")?;
    ensure!(proxy_count(&pod) == 1, "expected one {PROXY}: {}", layout(&pod));
    let in_init = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.init_containers.as_ref())
        .is_some_and(|list| list.iter().any(|c| c.name == INIT));
    ensure!(in_init, "expected {INIT} among the init containers: {}", layout(&pod));
    for name in [PROXY, INIT] {
        let found = container(&pod, name).ok_or_else(|| format!("no {name}"))?;
        check_resources(found)?;
    }
    Ok(format!(
        "{PROXY} and {INIT} stored with requests cpu=300m memory=128Mi, limits cpu=2 memory=2Gi ({})",
        layout(&pod)
    ))
}

/// Compares each of the four fields as exact quantities.
fn check_resources(container: &Container) -> Result<(), String> {
    let resources = container.resources.as_ref();
    for (field, resource, expected) in EXPECTED {
        let map = match field {
            "requests" => resources.and_then(|r| r.requests.as_ref()),
            _ => resources.and_then(|r| r.limits.as_ref()),
        };
        let stored = map
            .and_then(|m| m.get(resource))
            .map(|q| q.0.clone())
            .ok_or_else(|| format!("{}: no {field}.{resource}", container.name))?;
        let kind = if resource == "cpu" {
            ResourceKind::Cpu
        } else {
            ResourceKind::Memory
        };
        let parse = |text: &str| Quantity::parse(text, kind).map_err(|e| format!("{text:?}: {e}"));
        ensure!(
            parse(&stored)? == parse(expected)?,
            "{}: {field}.{resource} is {stored}, expected {expected}",
            container.name
        );
    }
    Ok(())
}
