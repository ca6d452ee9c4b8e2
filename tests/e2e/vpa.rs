//! VerticalPodAutoscaler objects for the VPA scenarios: the CRDs from the
//! `k8s.io/autoscaler/vertical-pod-autoscaler` Go module (`scripts/ensure-vpa-crd.sh`
//! caches them), and the Deployment → ReplicaSet → pod chain a VPA targets.
//!
//! No controller-manager runs, so the chain is created by hand: a Deployment, a ReplicaSet
//! it controls (owner reference with its uid), and pods the ReplicaSet controls. No VPA
//! recommender runs either: the test writes `status.recommendation` through the status
//! subresource, as the recommender does.

use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::check::{Context, eventually};

/// The VPA CRD file, fetched and cached by the script when missing.
fn crd_file() -> Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/scripts/ensure-vpa-crd.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .context(format!("running {}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed:\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let path = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    std::fs::read_to_string(&path).context(format!("reading {path}"))
}

/// Installs the VPA CRDs (when absent) and waits until they are established.
pub async fn install_crds(client: &Client) -> Result<(), String> {
    let text = crd_file()?;
    let crds: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&text).context("parsing the VPA CRDs")?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(format!("creating CRD {name}: {error}")),
        }
        eventually(&format!("CRD {name} established"), || async {
            let found = api.get(&name).await.map_err(|e| e.to_string())?;
            let established = found
                .status
                .and_then(|status| status.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                Ok(())
            } else {
                Err("not established yet".into())
            }
        })
        .await?;
    }
    Ok(())
}

fn vpa_resource() -> ApiResource {
    let kind = GroupVersionKind::gvk("autoscaling.k8s.io", "v1", "VerticalPodAutoscaler");
    ApiResource::from_gvk_with_plural(&kind, "verticalpodautoscalers")
}

fn controller(api_version: &str, kind: &str, name: &str, uid: Option<String>) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A Deployment `name` and a ReplicaSet `replica_set` it controls, whose pods carry
/// `pod-template-hash: hash`. Returns the owner reference for those pods.
pub async fn deployment_chain(
    client: &Client,
    namespace: &str,
    name: &str,
    replica_set: &str,
    hash: &str,
) -> Result<OwnerReference, String> {
    let labels = json!({"app": name});
    let template = json!({"metadata": {"labels": {"app": name, "pod-template-hash": hash}},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}});
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": labels}, "template": template}}))
    .context("building the Deployment")?;
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &deployment)
        .await
        .context(format!("creating Deployment {namespace}/{name}"))?;
    let mut set: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": replica_set, "labels": {"app": name, "pod-template-hash": hash}},
        "spec": {"selector": {"matchLabels": {"app": name, "pod-template-hash": hash}}, "template": template}}))
    .context("building the ReplicaSet")?;
    set.metadata.owner_references = Some(vec![controller("apps/v1", "Deployment", name, deployment.metadata.uid)]);
    let set = Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &set)
        .await
        .context(format!("creating ReplicaSet {namespace}/{replica_set}"))?;
    Ok(controller("apps/v1", "ReplicaSet", replica_set, set.metadata.uid))
}

/// A VPA targeting Deployment `target` with `spec` merged in, and `containerRecommendations`
/// written through the status subresource.
pub async fn create_vpa(
    client: &Client,
    namespace: &str,
    name: &str,
    target: &str,
    spec: Value,
    recommendations: Value,
) -> Result<(), String> {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &vpa_resource());
    let mut full_spec = json!({"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}});
    if let (Some(full), Some(extra)) = (full_spec.as_object_mut(), spec.as_object()) {
        full.extend(extra.clone());
    }
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace}, "spec": full_spec}))
    .context("building the VPA")?;
    api.create(&PostParams::default(), &object)
        .await
        .context(format!("creating VPA {namespace}/{name}"))?;
    write_recommendations(client, namespace, name, recommendations).await
}

/// Replaces the VPA's `status.recommendation.containerRecommendations`, through the status
/// subresource.
pub async fn write_recommendations(
    client: &Client,
    namespace: &str,
    name: &str,
    recommendations: Value,
) -> Result<(), String> {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &vpa_resource());
    let status = json!({"status": {"recommendation": {"containerRecommendations": recommendations}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .context(format!("writing the status of VPA {namespace}/{name}"))?;
    Ok(())
}

/// A pod controlled by `owner`, with the `pod-template-hash` label.
pub fn owned_pod(name: &str, owner: &OwnerReference, hash: &str, annotations: &[(&str, &str)]) -> Pod {
    let mut pod = crate::pods::test_pod(name, &[("pod-template-hash", hash)], annotations);
    pod.metadata.owner_references = Some(vec![owner.clone()]);
    pod
}
