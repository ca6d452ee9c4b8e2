//! Labels and annotations that mark an injected pod, as istiod writes them.

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use super::decision::STATUS_ANNOTATION;
use super::workload::{CANONICAL_NAME, CANONICAL_REVISION, Workload, canonical_labels};

/// Label telling peers that the pod speaks Istio mTLS.
pub const TLS_MODE: &str = "security.istio.io/tlsMode";
/// Label naming the pod's network in a multi-network mesh.
pub const NETWORK: &str = "topology.istio.io/network";
/// Annotation naming the revision that injected the pod.
pub const REVISION_ANNOTATION: &str = "istio.io/rev";
/// Annotation naming the container `kubectl exec` defaults to.
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
/// Annotation naming the container `kubectl logs` defaults to.
pub const DEFAULT_LOGS_CONTAINER: &str = "kubectl.kubernetes.io/default-logs-container";

/// The `sidecar.istio.io/status` annotation: what was added, so it can be removed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarStatus {
    /// Init containers added.
    pub init_containers: Option<Vec<String>>,
    /// Containers added.
    pub containers: Option<Vec<String>>,
    /// Volumes added.
    pub volumes: Option<Vec<String>>,
    /// Image pull secrets added (none).
    pub image_pull_secrets: Option<Vec<String>>,
    /// The injecting revision.
    pub revision: String,
}

impl SidecarStatus {
    /// The annotation value, as compact JSON.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Labels to set on the injected pod; labels the pod already has are kept, as Istio keeps them
/// (`security.istio.io/tlsMode: disabled` opts a pod out of mTLS). `tls_mode` adds
/// `security.istio.io/tlsMode: istio` (the sidecar template; the gateway's has none).
pub fn labels_to_add(pod: &Pod, workload: &Workload, network: &str, tls_mode: bool) -> Vec<(String, String)> {
    let existing = pod.metadata.labels.as_ref();
    let has = |key: &str| existing.is_some_and(|labels| labels.contains_key(key));
    let mut labels = Vec::with_capacity(4);
    if tls_mode && !has(TLS_MODE) {
        labels.push((TLS_MODE.to_string(), "istio".to_string()));
    }
    let (name, revision) = canonical_labels(pod, workload);
    if !has(CANONICAL_NAME) && !name.is_empty() {
        labels.push((CANONICAL_NAME.to_string(), name));
    }
    if !has(CANONICAL_REVISION) {
        labels.push((CANONICAL_REVISION.to_string(), revision));
    }
    if !network.is_empty() && !has(NETWORK) {
        labels.push((NETWORK.to_string(), network.to_string()));
    }
    labels
}

/// Annotations to set on the injected pod.
pub fn annotations_to_add(pod: &Pod, status: &SidecarStatus, extra: Vec<(String, String)>) -> Vec<(String, String)> {
    let existing = pod.metadata.annotations.as_ref();
    let has = |key: &str| existing.is_some_and(|annotations| annotations.contains_key(key));
    let mut annotations = Vec::with_capacity(7);
    if !has(REVISION_ANNOTATION) {
        annotations.push((REVISION_ANNOTATION.to_string(), status.revision.clone()));
    }
    let first_app = pod
        .spec
        .as_ref()
        .and_then(|spec| {
            spec.containers
                .iter()
                .find(|c| c.name != super::decision::PROXY_CONTAINER)
        })
        .map(|c| c.name.clone());
    if let Some(first_app) = first_app {
        for key in [DEFAULT_CONTAINER, DEFAULT_LOGS_CONTAINER] {
            if !has(key) {
                annotations.push((key.to_string(), first_app.clone()));
            }
        }
    }
    annotations.extend(extra);
    annotations.push((STATUS_ANNOTATION.to_string(), status.to_annotation()));
    annotations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_annotation_matches_istio_layout() {
        let status = SidecarStatus {
            init_containers: Some(vec!["istio-init".into()]),
            containers: Some(vec!["istio-proxy".into()]),
            volumes: Some(vec!["istio-envoy".into()]),
            image_pull_secrets: None,
            revision: "default".into(),
        };
        assert_eq!(
            status.to_annotation(),
            r#"{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy"],"imagePullSecrets":null,"revision":"default"}"#
        );
    }
}
