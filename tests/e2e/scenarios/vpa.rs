//! Scenarios 23 to 25 and 27: a VerticalPodAutoscaler's `istio-proxy` target sizes the proxy.
//!
//! The namespace sets `proxyCPU: 150m`, so every check tells the VPA layer (above it) from
//! the namespace default (below it). Pods are owned by a ReplicaSet owned by a Deployment,
//! which the VPA targets; the injector must resolve the ReplicaSet from its cache.
//!
//! - 23: the ReplicaSet is named without its pod-template-hash, so only the cache can name
//!   the Deployment; pods are created until one follows the VPA (the cache learns the VPA a
//!   moment after it is stored), and each pod before it has the namespace default.
//! - 24: the VPA's 5m is raised to the config's 10m minimum, and a pod's own `proxyMemory`
//!   annotation beats the VPA's memory.
//! - 25: beside VPA's own admission controller, `containerPolicies` gives `istio-proxy`
//!   `mode: "Off"`, so the VPA has no entry for it and the proxy falls back to the namespace
//!   default. Adding an entry makes the proxy follow it, and removing it again falls back.
//! - 27: a ReplicaSet missing from the cache: the Deployment is read from the name and the
//!   `pod-template-hash` label, with a warning.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use crate::check::{Context, Outcome, ensure};
use crate::harness::{Harness, INJECTION_ENABLED};
use crate::sizing::{Provenance, Sizes, check_injected, provenance_of};
use crate::vpa::{create_vpa, deployment_chain, owned_pod};

const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
/// How long the injector's caches may take to see a VPA or its change.
const PICKUP_LIMIT: Duration = Duration::from_secs(15);
const PICKUP_PAUSE: Duration = Duration::from_millis(100);

fn proxy_entry(cpu: &str, memory: &str) -> Value {
    json!({"containerName": "istio-proxy", "target": {"cpu": cpu, "memory": memory}})
}

fn app_entry() -> Value {
    json!({"containerName": "app", "target": {"cpu": "1", "memory": "1Gi"}})
}

async fn namespace(harness: &Harness, name: &str) -> Result<(), String> {
    harness
        .cluster
        .create_namespace_with(name, &[INJECTION_ENABLED], &[(PROXY_CPU, "150m")])
        .await
}

/// Creates pods of `owner` until `accept` takes one (within [`PICKUP_LIMIT`]); every pod on
/// the way must pass `before`. Returns the accepted pod and how many came before it.
async fn until_pod(
    harness: &Harness,
    namespace: &str,
    prefix: &str,
    owner: &OwnerReference,
    annotations: &[(&str, &str)],
    accept: impl Fn(&Pod) -> bool,
    before: impl Fn(&Pod) -> Result<(), String>,
) -> Result<(Pod, usize), String> {
    let started = Instant::now();
    for attempt in 0.. {
        let pod = owned_pod(&format!("{prefix}-{attempt}"), owner, "5b8c7d", annotations);
        let stored = harness
            .cluster
            .create_pod(namespace, &pod)
            .await
            .context(format!("creating pod {prefix}-{attempt}"))?;
        if accept(&stored) {
            return Ok((stored, attempt));
        }
        before(&stored).map_err(|e| format!("pod {prefix}-{attempt}, before the change reached us: {e}"))?;
        ensure!(
            started.elapsed() < PICKUP_LIMIT,
            "{attempt} pods in {} s and none sized as expected",
            PICKUP_LIMIT.as_secs()
        );
        tokio::time::sleep(PICKUP_PAUSE).await;
    }
    unreachable!("the loop returns or fails")
}

fn cpu_from(pod: &Pod) -> String {
    provenance_of(pod, "cpu.request").map(|p| p.from).unwrap_or_default()
}

fn expect_provenance(pod: &Pod, field: &str, value: &str, from: &str, adjusted: Option<&str>) -> Result<(), String> {
    let expected = Provenance {
        value: value.into(),
        from: from.into(),
        adjusted: adjusted.map(str::to_string),
    };
    let found = provenance_of(pod, field)?;
    ensure!(
        found == expected,
        "provenance of {field} is {found:?}, expected {expected:?}"
    );
    Ok(())
}

/// The proxy sized by the namespace default: 150m, the rest from config.
fn namespace_default(pod: &Pod) -> Result<(), String> {
    check_injected(
        pod,
        Sizes {
            requests: &[("cpu", "150m"), ("memory", "128Mi")],
            limits: &[("cpu", "2"), ("memory", "1Gi")],
        },
    )?;
    expect_provenance(
        pod,
        "cpu.request",
        "150m",
        &format!("namespace annotation {PROXY_CPU}"),
        None,
    )
}

/// Scenario 23.
pub async fn follows_the_vpa(harness: &Harness) -> Outcome {
    const NAMESPACE: &str = "e2e-vpa-follow";
    namespace(harness, NAMESPACE).await?;
    let client = harness.cluster.client();
    // Named without the hash: only the ReplicaSet cache leads to the Deployment.
    let owner = deployment_chain(client, NAMESPACE, "web", "web-current", "5b8c7d").await?;
    let recommendations = json!([app_entry(), proxy_entry("35m", "80Mi")]);
    create_vpa(
        client,
        NAMESPACE,
        "web",
        "web",
        json!({"updatePolicy": {"updateMode": "Off"}}),
        recommendations,
    )
    .await?;
    let vpa = format!("vpa {NAMESPACE}/web");
    let (pod, before) = until_pod(
        harness,
        NAMESPACE,
        "web",
        &owner,
        &[],
        |pod| cpu_from(pod) == vpa,
        namespace_default,
    )
    .await?;
    check_injected(
        &pod,
        Sizes {
            requests: &[("cpu", "35m"), ("memory", "80Mi")],
            limits: &[("cpu", "2"), ("memory", "1Gi")],
        },
    )?;
    expect_provenance(&pod, "cpu.request", "35m", &vpa, None)?;
    expect_provenance(&pod, "memory.request", "80Mi", &vpa, None)?;
    expect_provenance(&pod, "cpu.limit", "2", "config default", None)?;
    Ok(format!(
        "pod of ReplicaSet web-current (Deployment web) sized 35m/80Mi from {vpa} over the namespace's 150m, \
         limits 2/1Gi from config; {before} pods before the VPA reached the cache had the namespace default"
    ))
}

/// Scenario 24.
pub async fn within_bounds(harness: &Harness) -> Outcome {
    const NAMESPACE: &str = "e2e-vpa-bounds";
    namespace(harness, NAMESPACE).await?;
    let client = harness.cluster.client();
    let owner = deployment_chain(client, NAMESPACE, "api", "api-7c6b5d4f9", "7c6b5d4f9").await?;
    let recommendations = json!([proxy_entry("5m", "80Mi")]);
    create_vpa(
        client,
        NAMESPACE,
        "api",
        "api",
        json!({"updatePolicy": {"updateMode": "Off"}}),
        recommendations,
    )
    .await?;
    let vpa = format!("vpa {NAMESPACE}/api");
    let annotations = [(PROXY_MEMORY, "200Mi")];
    let (pod, _) = until_pod(
        harness,
        NAMESPACE,
        "api",
        &owner,
        &annotations,
        |pod| cpu_from(pod) == vpa,
        |_| Ok(()),
    )
    .await?;
    check_injected(
        &pod,
        Sizes {
            requests: &[("cpu", "10m"), ("memory", "200Mi")],
            limits: &[("cpu", "2"), ("memory", "1Gi")],
        },
    )?;
    expect_provenance(&pod, "cpu.request", "10m", &vpa, Some("raised to 10m (cluster min)"))?;
    expect_provenance(
        &pod,
        "memory.request",
        "200Mi",
        &format!("pod annotation {PROXY_MEMORY}"),
        None,
    )?;
    Ok(format!(
        "{vpa}'s 5m raised to the config's 10m minimum (provenance says both); the pod's proxyMemory 200Mi beat the VPA's 80Mi"
    ))
}

/// Scenario 25.
pub async fn falls_back_without_a_proxy_entry(harness: &Harness) -> Outcome {
    const NAMESPACE: &str = "e2e-vpa-fallback";
    namespace(harness, NAMESPACE).await?;
    let client = harness.cluster.client();
    let owner = deployment_chain(client, NAMESPACE, "batch", "batch-5b8c7d", "5b8c7d").await?;
    // As beside VPA's admission controller: it scales the app and leaves istio-proxy alone,
    // so its recommender writes no entry for istio-proxy.
    let spec = json!({"updatePolicy": {"updateMode": "Auto"},
        "resourcePolicy": {"containerPolicies": [{"containerName": "istio-proxy", "mode": "Off"}]}});
    create_vpa(client, NAMESPACE, "batch", "batch", spec, json!([app_entry()])).await?;
    let first = harness
        .cluster
        .create_pod(NAMESPACE, &owned_pod("batch-first", &owner, "5b8c7d", &[]))
        .await
        .context("creating pod batch-first")?;
    namespace_default(&first).map_err(|e| format!("with no istio-proxy entry: {e}"))?;

    // The cache does see this VPA: an entry added to its status is followed...
    let vpa = format!("vpa {NAMESPACE}/batch");
    crate::vpa::write_recommendations(
        client,
        NAMESPACE,
        "batch",
        json!([app_entry(), proxy_entry("40m", "64Mi")]),
    )
    .await?;
    let (followed, _) = until_pod(
        harness,
        NAMESPACE,
        "batch-on",
        &owner,
        &[],
        |pod| cpu_from(pod) == vpa,
        namespace_default,
    )
    .await?;
    expect_provenance(&followed, "cpu.request", "40m", &vpa, None)?;
    // ...and once it is gone again, the proxy falls back to the namespace default.
    crate::vpa::write_recommendations(client, NAMESPACE, "batch", json!([app_entry()])).await?;
    let (fallen, _) = until_pod(
        harness,
        NAMESPACE,
        "batch-off",
        &owner,
        &[],
        |pod| cpu_from(pod) != vpa,
        |pod| expect_provenance(pod, "cpu.request", "40m", &vpa, None),
    )
    .await?;
    namespace_default(&fallen)?;
    Ok(format!(
        "VPA with containerPolicies istio-proxy mode Off has no istio-proxy entry: proxy at the namespace's 150m; \
         an entry added to its status was followed (40m from {vpa}), and removing it fell back to 150m"
    ))
}

/// Scenario 27: a pod whose ReplicaSet the cache does not hold (here: never created, as for
/// one created a moment before its pods) still finds its Deployment's VPA: the ReplicaSet's
/// name without the pod's `pod-template-hash` label, with a warning saying so.
pub async fn replica_set_cache_miss(harness: &Harness) -> Outcome {
    const NAMESPACE: &str = "e2e-vpa-miss";
    namespace(harness, NAMESPACE).await?;
    let client = harness.cluster.client();
    // A Deployment `late` with a VPA, and the chain's ReplicaSet only named, never stored.
    deployment_chain(client, NAMESPACE, "late", "late-placeholder", "6c9d8f").await?;
    create_vpa(
        client,
        NAMESPACE,
        "late",
        "late",
        json!({"updatePolicy": {"updateMode": "Off"}}),
        json!([proxy_entry("45m", "96Mi")]),
    )
    .await?;
    let missing = OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "late-6c9d8f".into(),
        uid: "00000000-0000-0000-0000-000000000027".into(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let vpa = format!("vpa {NAMESPACE}/late");
    let started = Instant::now();
    for attempt in 0.. {
        let pod = owned_pod(&format!("late-{attempt}"), &missing, "6c9d8f", &[]);
        let (stored, warnings) = harness.cluster.create_pod_with_warnings(NAMESPACE, &pod).await?;
        if cpu_from(&stored) == vpa {
            expect_provenance(&stored, "cpu.request", "45m", &vpa, None)?;
            expect_provenance(&stored, "memory.request", "96Mi", &vpa, None)?;
            let said = warnings.iter().any(|w| {
                w.contains("ReplicaSet late-6c9d8f is not in the cache yet")
                    && w.contains("its Deployment was taken to be late")
            });
            ensure!(said, "no cache-miss warning in {warnings:?}");
            return Ok(format!(
                "ReplicaSet late-6c9d8f not in the cache: Deployment late taken from the pod-template-hash, \
                 proxy 45m/96Mi from {vpa}, and the warning says so"
            ));
        }
        namespace_default(&stored).map_err(|e| format!("pod late-{attempt}, before the VPA reached us: {e}"))?;
        ensure!(
            started.elapsed() < PICKUP_LIMIT,
            "{attempt} pods and none followed {vpa}"
        );
        tokio::time::sleep(PICKUP_PAUSE).await;
    }
    unreachable!("the loop returns or fails")
}
