//! Labels and annotations that mark an injected pod, as istiod writes them.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use super::decision::STATUS_ANNOTATION;
use super::workload::{CANONICAL_NAME, CANONICAL_REVISION, Workload, canonical_labels};
use crate::json_text::JsonText;
use crate::patch::{Entry, EntryValue};

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
pub struct SidecarStatus<'a> {
    /// Init containers added.
    pub init_containers: Option<Vec<&'static str>>,
    /// Containers added.
    pub containers: Option<Vec<&'static str>>,
    /// Volumes added.
    pub volumes: Option<Vec<&'a str>>,
    /// Image pull secrets added (none).
    pub image_pull_secrets: Option<&'a [String]>,
    /// The injecting revision.
    pub revision: &'a str,
}

impl SidecarStatus<'_> {
    /// The annotation value, compact JSON escaped for the patch in one pass.
    pub(crate) fn to_annotation_text(&self) -> JsonText {
        JsonText::of(self)
    }
}

/// Labels to set on the injected pod; labels the pod already has are kept, as Istio keeps them
/// (`security.istio.io/tlsMode: disabled` opts a pod out of mTLS). `tls_mode` adds
/// `security.istio.io/tlsMode: istio` (the sidecar template; the gateway's has none).
pub(crate) fn labels_to_add<'a>(
    pod: &'a Pod,
    workload: &'a Workload,
    network: &'a str,
    tls_mode: bool,
) -> Vec<Entry<'a>> {
    let existing = pod.metadata.labels.as_ref();
    let has = |key: &str| existing.is_some_and(|labels| labels.contains_key(key));
    let mut labels: Vec<Entry<'a>> = Vec::with_capacity(4);
    if tls_mode && !has(TLS_MODE) {
        labels.push((TLS_MODE.into(), "istio".into()));
    }
    let (name, revision) = canonical_labels(pod, workload);
    if !has(CANONICAL_NAME) && !name.is_empty() {
        labels.push((CANONICAL_NAME.into(), EntryValue::Text(name)));
    }
    if !has(CANONICAL_REVISION) {
        labels.push((CANONICAL_REVISION.into(), EntryValue::Text(revision)));
    }
    if !network.is_empty() && !has(NETWORK) {
        labels.push((NETWORK.into(), network.into()));
    }
    labels
}

/// Annotations to set on the injected pod.
pub(crate) fn annotations_to_add<'a>(
    pod: &'a Pod,
    status: &'a SidecarStatus<'_>,
    extra: impl IntoIterator<Item = Entry<'a>>,
) -> Vec<Entry<'a>> {
    let existing = pod.metadata.annotations.as_ref();
    let has = |key: &str| existing.is_some_and(|annotations| annotations.contains_key(key));
    let mut annotations: Vec<Entry<'a>> = Vec::with_capacity(12);
    if !has(REVISION_ANNOTATION) {
        annotations.push((REVISION_ANNOTATION.into(), status.revision.into()));
    }
    let first_app = pod.spec.as_ref().and_then(|spec| {
        spec.containers
            .iter()
            .find(|c| c.name != super::decision::PROXY_CONTAINER)
    });
    if let Some(first_app) = first_app {
        for key in [DEFAULT_CONTAINER, DEFAULT_LOGS_CONTAINER] {
            if !has(key) {
                annotations.push((key.into(), EntryValue::Text(Cow::Borrowed(&first_app.name))));
            }
        }
    }
    annotations.extend(extra);
    annotations.push((STATUS_ANNOTATION.into(), status.to_annotation_text().into()));
    annotations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_annotation_matches_istio_layout() {
        let status = SidecarStatus {
            init_containers: Some(vec!["istio-init"]),
            containers: Some(vec!["istio-proxy"]),
            volumes: Some(vec!["istio-envoy"]),
            image_pull_secrets: None,
            revision: "default",
        };
        assert_eq!(
            status.to_annotation_text().to_json(),
            r#"{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy"],"imagePullSecrets":null,"revision":"default"}"#
        );
    }
}
