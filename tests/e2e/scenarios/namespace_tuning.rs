//! Scenario 11: a namespace annotation sizes the proxy of every pod in the namespace, field by
//! field, and a change to it applies to the next pods.
//!
//! The injector learns namespaces from a reflector (a namespace it has not seen yet is read
//! live), so a change reaches it a moment after the API server stores it. After the annotation
//! goes from 300Mi to 400Mi, pods are created until one gets 400Mi (at most 10 s); every pod
//! on the way must have one of the two values, never anything else, and the pod after the
//! first 400Mi must have 400Mi too: the cache does not go back.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use sidecar_injector::quantity::{Quantity, ResourceKind};

use crate::check::{Context, Outcome, ensure};
use crate::harness::{Harness, INJECTION_ENABLED};
use crate::pods::{PROXY, container, test_pod};
use crate::sizing::{Provenance, Sizes, check_injected, provenance_of};

const NAMESPACE: &str = "e2e-namespace-tuning";
const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
/// The memory request from the annotation; the rest deploy/config.yaml's defaults.
const BEFORE: Sizes = Sizes {
    requests: &[("cpu", "100m"), ("memory", "300Mi")],
    limits: &[("cpu", "2"), ("memory", "1Gi")],
};
const AFTER: Sizes = Sizes {
    requests: &[("cpu", "100m"), ("memory", "400Mi")],
    limits: &[("cpu", "2"), ("memory", "1Gi")],
};
/// How long the injector may take to see the changed annotation.
const PICKUP_LIMIT: Duration = Duration::from_secs(10);
const PICKUP_PAUSE: Duration = Duration::from_millis(50);

pub async fn run(harness: &Harness) -> Outcome {
    harness
        .cluster
        .create_namespace_with(NAMESPACE, &[INJECTION_ENABLED], &[(PROXY_MEMORY, "300Mi")])
        .await?;
    let first = create(harness, "before").await?;
    check_sized(&first, "300Mi")?;

    harness
        .cluster
        .annotate_namespace(NAMESPACE, PROXY_MEMORY, "400Mi")
        .await?;
    let changed = Instant::now();
    let mut before_count = 0;
    loop {
        let pod = create(harness, &format!("after-{}", before_count + 1)).await?;
        if memory_request(&pod)? == "400Mi" {
            check_sized(&pod, "400Mi")?;
            break;
        }
        check_sized(&pod, "300Mi")?;
        before_count += 1;
        ensure!(
            changed.elapsed() < PICKUP_LIMIT,
            "{before_count} pods created in {} s after the change still got 300Mi",
            PICKUP_LIMIT.as_secs()
        );
        tokio::time::sleep(PICKUP_PAUSE).await;
    }
    let picked_up = changed.elapsed();
    let settled = create(harness, "settled").await?;
    check_sized(&settled, "400Mi").map_err(|e| format!("the pod after the first 400Mi one: {e}"))?;
    Ok(format!(
        "proxy requests memory 300Mi from the namespace annotation, cpu 100m, limits 2/1Gi from \
         config; annotation changed to 400Mi: {before_count} pods still 300Mi, 400Mi after {} ms, \
         and the next pod 400Mi",
        picked_up.as_millis()
    ))
}

async fn create(harness: &Harness, name: &str) -> Result<Pod, String> {
    harness
        .cluster
        .create_pod(NAMESPACE, &test_pod(name, &[], &[]))
        .await
        .context(format!("creating pod {name}"))
}

/// The proxy's memory request as stored, in canonical form.
fn memory_request(pod: &Pod) -> Result<String, String> {
    let stored = container(pod, PROXY)
        .and_then(|c| c.resources.as_ref()?.requests.as_ref()?.get("memory"))
        .ok_or_else(|| format!("{PROXY} has no memory request"))?;
    Quantity::parse(&stored.0, ResourceKind::Memory)
        .map(|q| q.to_canonical())
        .map_err(|e| format!("{PROXY} memory request {:?}: {e}", stored.0))
}

/// Stored resources and provenance for a pod sized with the namespace's `memory`.
fn check_sized(pod: &Pod, memory: &str) -> Result<(), String> {
    let expected = if memory == "300Mi" { BEFORE } else { AFTER };
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    check_injected(pod, expected).map_err(|e| format!("pod {name}: {e}"))?;
    let namespace_source = format!("namespace annotation {PROXY_MEMORY}");
    for (field, value, from) in [
        ("memory.request", memory, namespace_source.as_str()),
        ("cpu.request", "100m", "config default"),
        ("cpu.limit", "2", "config default"),
        ("memory.limit", "1Gi", "config default"),
    ] {
        let expected = Provenance {
            value: value.to_string(),
            from: from.to_string(),
            adjusted: None,
        };
        let found = provenance_of(pod, field)?;
        ensure!(
            found == expected,
            "pod {name}: provenance of {field} is {found:?}, expected {expected:?}"
        );
    }
    Ok(())
}
