//! VerticalPodAutoscaler recommendations for the proxy, from watched caches.
//!
//! Two reflectors: VPAs (`autoscaling.k8s.io/v1`, read as dynamic objects, so no VPA crate
//! is needed) and ReplicaSets (metadata only, for the ReplicaSet → Deployment step). The
//! API server hands the webhook a pod owned by a ReplicaSet; its Deployment comes from the
//! ReplicaSet cache. When the cache misses (a ReplicaSet created a moment before its first
//! pods), the Deployment is the ReplicaSet's name without the pod's `pod-template-hash`
//! label, the name the Deployment controller gives it, and the pod gets a warning saying so.
//!
//! The VPA targeting the owner (`spec.targetRef` kind and name) gives its
//! `status.recommendation.containerRecommendations` entry for `istio-proxy`; its `target`
//! becomes the engine's [`Recommendation`], with provenance `vpa <namespace>/<name>`. No
//! VPA, or no `istio-proxy` entry, leaves the layer out. When the CRD is not installed at
//! start-up the layer is off, and one log line says so.

use std::sync::{Arc, OnceLock};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ListParams, PartialObjectMeta};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Deserialize;
use serde_json::Value;

use super::metrics::Metrics;
use crate::engine::Recommendation;
use crate::quantity::{Quantity, ResourceKind};
use crate::review::ParsedReview;

/// The container whose recommendation is read.
const PROXY_CONTAINER: &str = "istio-proxy";
/// The label the Deployment controller puts on a ReplicaSet's pods, and ends its name with.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The pod's controller and the label that names its ReplicaSet's template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodOwner {
    /// The controller owner's kind, e.g. `ReplicaSet`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The pod's `pod-template-hash` label.
    pub template_hash: Option<String>,
}

impl PodOwner {
    /// The controller and template hash of the pod a review carries, read from its typed
    /// metadata.
    pub fn of_review(parsed: &ParsedReview) -> Option<Self> {
        let (kind, name, template_hash) = parsed.controller_owner(POD_TEMPLATE_HASH)?;
        Some(PodOwner {
            kind,
            name,
            template_hash,
        })
    }

    /// Reads the controller owner reference and the hash label from pod metadata JSON (a
    /// pod as `check` lists it), by the rule [`crate::review::controller_owner`] applies.
    pub fn from_metadata(metadata: &Value) -> Option<Self> {
        let owners = Vec::<OwnerReference>::deserialize(metadata.get("ownerReferences")?).ok()?;
        let (kind, name) = crate::review::controller_owner(&owners)?;
        Some(PodOwner {
            kind,
            name,
            template_hash: metadata
                .pointer(&format!("/labels/{POD_TEMPLATE_HASH}"))
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}

/// The workload a VPA would target for a pod of `owner`: a ReplicaSet is resolved to its
/// controller through `replica_set_owner` (`None`: not in the cache; `Some(None)`: no
/// controller). Returns kind, name and, on a cache miss, a warning.
pub fn target_of(
    owner: &PodOwner,
    replica_set_owner: impl FnOnce(&str) -> Option<Option<(String, String)>>,
) -> (String, String, Option<String>) {
    if owner.kind != "ReplicaSet" {
        return (owner.kind.clone(), owner.name.clone(), None);
    }
    match replica_set_owner(&owner.name) {
        Some(Some(controller)) => (controller.0, controller.1, None),
        Some(None) => (owner.kind.clone(), owner.name.clone(), None),
        None => {
            let deployment = owner
                .template_hash
                .as_deref()
                .and_then(|hash| owner.name.strip_suffix(hash)?.strip_suffix('-'));
            match deployment {
                Some(deployment) => (
                    "Deployment".into(),
                    deployment.to_string(),
                    Some(format!(
                        "ReplicaSet {} is not in the cache yet: its Deployment was taken to be {deployment} from the pod-template-hash label",
                        owner.name
                    )),
                ),
                None => (owner.kind.clone(), owner.name.clone(), None),
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VpaData {
    spec: VpaSpec,
    #[serde(default)]
    status: Option<VpaStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VpaSpec {
    #[serde(default)]
    target_ref: Option<TargetRef>,
}

#[derive(Debug, Deserialize)]
struct TargetRef {
    kind: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VpaStatus {
    #[serde(default)]
    recommendation: Option<VpaRecommendation>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VpaRecommendation {
    #[serde(default)]
    container_recommendations: Vec<ContainerRecommendation>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerRecommendation {
    container_name: String,
    #[serde(default)]
    target: std::collections::BTreeMap<String, String>,
}

/// The `istio-proxy` recommendation of a VPA (`spec` and `status` as JSON) that targets
/// `kind`/`name`; `None` when it targets something else or has no usable entry.
pub fn recommendation_of(
    vpa: &Value,
    namespace: &str,
    vpa_name: &str,
    kind: &str,
    name: &str,
) -> Option<Recommendation> {
    let data: VpaData = serde_json::from_value(vpa.clone()).ok()?;
    let target = data.spec.target_ref?;
    if target.kind != kind || target.name != name {
        return None;
    }
    let entry = data
        .status?
        .recommendation?
        .container_recommendations
        .into_iter()
        .find(|entry| entry.container_name == PROXY_CONTAINER)?;
    let read = |resource: &str, kind: ResourceKind| {
        entry
            .target
            .get(resource)
            .and_then(|text| Quantity::parse(text, kind).ok())
    };
    let recommendation = Recommendation {
        origin: format!("vpa {namespace}/{vpa_name}"),
        cpu: read("cpu", ResourceKind::Cpu),
        memory: read("memory", ResourceKind::Memory),
    };
    (recommendation.cpu.is_some() || recommendation.memory.is_some()).then_some(recommendation)
}

/// The caches, once the CRD was found.
#[derive(Clone)]
struct Stores {
    vpas: Store<DynamicObject>,
    replica_sets: Store<PartialObjectMeta<ReplicaSet>>,
}

/// VPA and ReplicaSet caches; empty (the layer off) until the CRD is found at start-up.
#[derive(Clone, Default)]
pub struct VpaCache {
    stores: Arc<OnceLock<Stores>>,
    off: Arc<OnceLock<String>>,
}

/// Whether the VPA layer is in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VpaLayer {
    /// The start-up check has not answered yet.
    Starting,
    /// Watching VPAs and ReplicaSets.
    On,
    /// Off, and why (as logged).
    Off(String),
}

impl std::fmt::Debug for VpaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VpaCache")
            .field("on", &self.stores.get().is_some())
            .finish()
    }
}

/// The VerticalPodAutoscaler resource (`autoscaling.k8s.io/v1`), read as dynamic objects.
pub(crate) fn vpa_resource() -> ApiResource {
    let kind = GroupVersionKind::gvk("autoscaling.k8s.io", "v1", "VerticalPodAutoscaler");
    ApiResource::from_gvk_with_plural(&kind, "verticalpodautoscalers")
}

// === impl VpaCache ===

impl VpaCache {
    /// Checks for the CRD, then starts both reflectors; logs once when the layer is off, and
    /// counts a watch error when that is for any reason but a missing CRD (say, RBAC).
    pub fn start(client: kube::Client, metrics: Arc<Metrics>) -> VpaCache {
        let cache = VpaCache::default();
        let stores = cache.stores.clone();
        let off = cache.off.clone();
        tokio::spawn(async move {
            let resource = vpa_resource();
            let vpas = Api::<DynamicObject>::all_with(client.clone(), &resource);
            if let Err(error) = vpas.list(&ListParams::default().limit(1)).await {
                let reason = match &error {
                    kube::Error::Api(status) if status.code == 404 => "the CRD is not installed".to_string(),
                    other => {
                        metrics.watch_error("verticalpodautoscalers");
                        format!("VPAs cannot be listed: {other}")
                    }
                };
                tracing::info!(
                    "VerticalPodAutoscaler layer off: {reason} (autoscaling.k8s.io/v1 verticalpodautoscalers)"
                );
                let _ = off.set(reason);
                return;
            }
            let vpa_writer = reflector::store::Writer::new(resource.clone());
            let vpa_store = vpa_writer.as_reader();
            let vpa_events = watcher(vpas, watcher::Config::default()).default_backoff();
            tokio::spawn(super::cluster::drain(
                "verticalpodautoscalers",
                reflector::reflector(vpa_writer, vpa_events),
                metrics.clone(),
            ));
            let (replica_set_store, replica_set_writer) = reflector::store();
            let replica_set_events = watcher(
                Api::<PartialObjectMeta<ReplicaSet>>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff();
            tokio::spawn(super::cluster::drain(
                "replicasets",
                reflector::reflector(replica_set_writer, replica_set_events),
                metrics,
            ));
            tracing::info!("VerticalPodAutoscaler layer on: watching VPAs and ReplicaSets");
            let _ = stores.set(Stores {
                vpas: vpa_store,
                replica_sets: replica_set_store,
            });
        });
        cache
    }

    /// Whether the layer is on, off (and why), or still being checked.
    pub fn layer(&self) -> VpaLayer {
        match (self.stores.get(), self.off.get()) {
            (Some(_), _) => VpaLayer::On,
            (None, Some(reason)) => VpaLayer::Off(reason.clone()),
            (None, None) => VpaLayer::Starting,
        }
    }

    /// The recommendation for a pod of `owner` in `namespace`, with a warning on a
    /// ReplicaSet cache miss.
    pub fn recommendation_for(&self, namespace: &str, owner: &PodOwner) -> (Option<Recommendation>, Option<String>) {
        let Some(stores) = self.stores.get() else {
            return (None, None);
        };
        let vpas = stores.vpas.state();
        recommendation_among(
            vpas.iter().map(|vpa| &**vpa),
            |replica_set| {
                let cached = stores
                    .replica_sets
                    .get(&ObjectRef::new(replica_set).within(namespace))?;
                Some(controller_of(&cached.metadata))
            },
            namespace,
            owner,
        )
    }
}

/// The controller owner (kind, name) in `metadata`'s owner references.
pub(crate) fn controller_of(metadata: &ObjectMeta) -> Option<(String, String)> {
    crate::review::controller_owner(metadata.owner_references.as_deref()?)
}

/// The recommendation for a pod of `owner` in `namespace` among `vpas` (any namespace; the
/// others are passed over), its ReplicaSet resolved through `replica_set_owner` as in
/// [`target_of`]; with a warning on a ReplicaSet miss. The server's caches and `check`'s
/// listing both answer through it.
pub(crate) fn recommendation_among<'a>(
    vpas: impl IntoIterator<Item = &'a DynamicObject>,
    replica_set_owner: impl FnOnce(&str) -> Option<Option<(String, String)>>,
    namespace: &str,
    owner: &PodOwner,
) -> (Option<Recommendation>, Option<String>) {
    let (kind, name, warning) = target_of(owner, replica_set_owner);
    let found = vpas
        .into_iter()
        .filter(|vpa| vpa.metadata.namespace.as_deref() == Some(namespace))
        .find_map(|vpa| {
            let vpa_name = vpa.metadata.name.as_deref()?;
            recommendation_of(&vpa.data, namespace, vpa_name, &kind, &name)
        });
    (found, warning)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn replica_set_owner() -> PodOwner {
        PodOwner {
            kind: "ReplicaSet".into(),
            name: "web-5b8c7d".into(),
            template_hash: Some("5b8c7d".into()),
        }
    }

    #[test]
    fn owners_come_from_the_controller_reference_and_the_hash_label() {
        let metadata = json!({"labels": {"pod-template-hash": "5b8c7d"}, "ownerReferences": [
            {"kind": "Other", "name": "x"},
            {"kind": "ReplicaSet", "name": "web-5b8c7d", "controller": true}]});
        assert_eq!(PodOwner::from_metadata(&metadata), Some(replica_set_owner()));
        assert_eq!(PodOwner::from_metadata(&json!({"name": "p"})), None);
    }

    #[test]
    fn a_review_gives_the_same_owner_for_a_pod_create_and_a_raw_object() {
        let metadata = json!({"name": "web-5b8c7d-x", "labels": {"pod-template-hash": "5b8c7d"}, "ownerReferences": [
            {"apiVersion": "v1", "kind": "Other", "name": "x", "uid": "1"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5b8c7d", "uid": "2", "controller": true}]});
        let review = |operation: &str, sub_resource: Option<&str>, metadata: &Value| {
            let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
                "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": operation,
                "subResource": sub_resource, "namespace": "apps",
                "object": {"metadata": metadata, "spec": {"containers": [{"name": "app"}]}}}});
            crate::review::parse_review(&serde_json::to_vec(&body).unwrap()).unwrap()
        };
        let created = review("CREATE", None, &metadata);
        assert!(created.is_pod_create());
        assert_eq!(PodOwner::of_review(&created), Some(replica_set_owner()));
        let resized = review("UPDATE", Some("resize"), &metadata);
        assert!(resized.is_pod_resize());
        assert_eq!(PodOwner::of_review(&resized), Some(replica_set_owner()));
        let no_controller =
            json!({"ownerReferences": [{"apiVersion": "v1", "kind": "Other", "name": "x", "uid": "1"}]});
        assert_eq!(PodOwner::of_review(&review("CREATE", None, &no_controller)), None);
    }

    #[test]
    fn a_replica_set_resolves_to_its_deployment_and_a_miss_reads_the_hash() {
        let owner = replica_set_owner();
        let cached = target_of(&owner, |_| Some(Some(("Deployment".into(), "web".into()))));
        assert_eq!(cached, ("Deployment".into(), "web".into(), None));
        let alone = target_of(&owner, |_| Some(None));
        assert_eq!(alone, ("ReplicaSet".into(), "web-5b8c7d".into(), None));
        let (kind, name, warning) = target_of(&owner, |_| None);
        assert_eq!((kind.as_str(), name.as_str()), ("Deployment", "web"));
        assert!(warning.unwrap().contains("not in the cache"));
        let stateful = PodOwner {
            kind: "StatefulSet".into(),
            name: "db".into(),
            template_hash: None,
        };
        assert_eq!(target_of(&stateful, |_| unreachable!()).1, "db");
    }

    #[test]
    fn the_istio_proxy_target_of_the_matching_vpa_is_the_recommendation() {
        let vpa = json!({"spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
            "status": {"recommendation": {"containerRecommendations": [
                {"containerName": "app", "target": {"cpu": "1", "memory": "1Gi"}},
                {"containerName": "istio-proxy", "target": {"cpu": "35m", "memory": "52428800"}}]}}});
        let found = recommendation_of(&vpa, "shop", "web-vpa", "Deployment", "web").unwrap();
        assert_eq!(found.origin, "vpa shop/web-vpa");
        assert_eq!(found.cpu.map(|q| q.to_canonical()).as_deref(), Some("35m"));
        assert_eq!(found.memory.map(|q| q.to_canonical()).as_deref(), Some("52428800"));
        assert_eq!(recommendation_of(&vpa, "shop", "web-vpa", "Deployment", "api"), None);
        let no_proxy = json!({"spec": {"targetRef": {"kind": "Deployment", "name": "web"}},
            "status": {"recommendation": {"containerRecommendations": [{"containerName": "app", "target": {"cpu": "1"}}]}}});
        assert_eq!(recommendation_of(&no_proxy, "shop", "v", "Deployment", "web"), None);
        let no_status = json!({"spec": {"targetRef": {"kind": "Deployment", "name": "web"}}});
        assert_eq!(recommendation_of(&no_status, "shop", "v", "Deployment", "web"), None);
    }

    /// An API server that answers every request 404, as one without the VPA CRD does.
    async fn api_server_without_the_crd() -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}"#;
                    let answer = format!(
                        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn without_the_crd_the_layer_is_off_and_says_why() {
        let addr = api_server_without_the_crd().await;
        let client = kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap())).unwrap();
        let metrics = Arc::new(Metrics::default());
        let cache = VpaCache::start(client, metrics.clone());
        let mut layer = cache.layer();
        for _ in 0..500 {
            if layer != VpaLayer::Starting {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            layer = cache.layer();
        }
        assert_eq!(layer, VpaLayer::Off("the CRD is not installed".into()));
        assert_eq!(cache.recommendation_for("shop", &replica_set_owner()), (None, None));
        // A missing CRD is a layer turned off, not a failed watch.
        assert!(!metrics.encode().contains("sidecar_injector_watch_errors"));
    }
}
