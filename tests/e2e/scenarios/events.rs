//! Scenario 45: Kubernetes Events on the workload. Pods owned by a ReplicaSet that a
//! Deployment owns (both stored as objects; no controller runs here) are denied
//! (`proxyCPU=abc`) or clamped (`proxyCPULimit=10` over the shipped bound of 8); the Events
//! are read back from `events.k8s.io/v1`, on the Deployment. A second identical denial raises
//! the first Event's `series.count` instead of making another, and a denied pod without an
//! owner gets its Event on itself. Both workloads have 0 replicas, so on an existing cluster
//! no controller makes pods from them.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::check::{Context, Outcome, ensure, poll};
use crate::harness::Harness;
use crate::pods::{proxy_count, test_pod};

const NAMESPACE: &str = "e2e-events";
/// Polls for Events: the count is written within two series intervals (10 s each).
pub(super) const EVENT_TRIES: u32 = 800;

/// A controller owner reference to `kind/name` with `uid`.
fn owner(kind: &str, name: &str, uid: String) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: kind.into(),
        name: name.into(),
        uid,
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// Stores Deployment `name` and its ReplicaSet `name-rs`; the ReplicaSet's owner reference.
async fn workload(harness: &Harness, name: &str) -> Result<OwnerReference, String> {
    let client = harness.cluster.client();
    let template = json!({"metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}});
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}}, "template": template}
    }))
    .context("deployment")?;
    let deployment = Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &deployment)
        .await
        .context(format!("creating Deployment {name}"))?;
    let mut replica_set: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-rs")},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}}, "template": template}
    }))
    .context("replica set")?;
    replica_set.metadata.owner_references = Some(vec![owner(
        "Deployment",
        name,
        deployment.metadata.uid.unwrap_or_default(),
    )]);
    let replica_set = Api::<ReplicaSet>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &replica_set)
        .await
        .context(format!("creating ReplicaSet {name}-rs"))?;
    Ok(owner(
        "ReplicaSet",
        &format!("{name}-rs"),
        replica_set.metadata.uid.unwrap_or_default(),
    ))
}

/// Our Events in `namespace` with `reason` on `kind/name`.
pub(super) async fn events_on(
    harness: &Harness,
    namespace: &str,
    (kind, name): (&str, &str),
    reason: &str,
) -> Result<Vec<Event>, String> {
    let events = Api::<Event>::namespaced(harness.cluster.client().clone(), namespace)
        .list(&ListParams::default())
        .await
        .context("listing Events")?;
    Ok(events
        .items
        .into_iter()
        .filter(|event| {
            event.reason.as_deref() == Some(reason)
                && event.reporting_controller.as_deref() == Some("sidecar-injector")
                && event.regarding.as_ref().is_some_and(|regarding| {
                    regarding.kind.as_deref() == Some(kind) && regarding.name.as_deref() == Some(name)
                })
        })
        .collect())
}

pub async fn run(harness: &Harness) -> Outcome {
    harness.injected_namespace(NAMESPACE, &[]).await?;
    let denied_owner = workload(harness, "web-denied").await?;
    let clamped_owner = workload(harness, "web-clamped").await?;
    let owned = |name: &str, owner: &OwnerReference, annotations: &[(&str, &str)]| {
        let mut pod = test_pod(name, &[], annotations);
        pod.metadata.owner_references = Some(vec![owner.clone()]);
        pod
    };
    let bad_cpu = [("sidecar.istio.io/proxyCPU", "abc")];
    for name in ["denied-1", "denied-2"] {
        let refused = harness
            .cluster
            .create_pod(NAMESPACE, &owned(name, &denied_owner, &bad_cpu))
            .await;
        ensure!(refused.is_err(), "{name} was admitted");
    }
    let clamped = harness
        .cluster
        .create_pod(
            NAMESPACE,
            &owned("clamped", &clamped_owner, &[("sidecar.istio.io/proxyCPULimit", "10")]),
        )
        .await
        .context("creating the clamped pod")?;
    ensure!(proxy_count(&clamped) == 1, "the clamped pod was not injected");
    ensure!(
        harness
            .cluster
            .create_pod(NAMESPACE, &test_pod("lone", &[], &bad_cpu))
            .await
            .is_err(),
        "the lone pod was admitted"
    );

    let denial = poll(
        "the denial Event on Deployment web-denied counts 2",
        EVENT_TRIES,
        || async {
            let events = events_on(harness, NAMESPACE, ("Deployment", "web-denied"), "InjectionDenied").await?;
            let counts: Vec<i32> = events
                .iter()
                .map(|e| e.series.as_ref().map_or(1, |s| s.count))
                .collect();
            match events.as_slice() {
                [event] if counts == [2] => Ok(event.clone()),
                _ => Err(format!("{} Events, counts {counts:?}", events.len())),
            }
        },
    )
    .await?;
    let note = denial.note.clone().unwrap_or_default();
    ensure!(
        note.contains("sidecar.istio.io/proxyCPU") && denial.type_.as_deref() == Some("Warning"),
        "denial Event: {denial:?}"
    );
    let clamp = poll("the clamp Event on Deployment web-clamped", EVENT_TRIES, || async {
        let events = events_on(
            harness,
            NAMESPACE,
            ("Deployment", "web-clamped"),
            "ProxyResourcesAdjusted",
        )
        .await?;
        events.into_iter().next().ok_or_else(|| "none yet".to_string())
    })
    .await?;
    let clamp_note = clamp.note.clone().unwrap_or_default();
    ensure!(
        clamp_note.contains("cpu.limit clamped to 8"),
        "clamp Event note: {clamp_note:?}"
    );
    let lone = poll("the denial Event on Pod lone", EVENT_TRIES, || async {
        let events = events_on(harness, NAMESPACE, ("Pod", "lone"), "InjectionDenied").await?;
        events.into_iter().next().ok_or_else(|| "none yet".to_string())
    })
    .await?;
    ensure!(lone.regarding.is_some(), "lone: {lone:?}");
    Ok(format!(
        "denial on Deployment web-denied (series count 2 for 2 pods): {note:?}; clamp on Deployment web-clamped: {clamp_note:?}; ownerless pod: on the Pod"
    ))
}
