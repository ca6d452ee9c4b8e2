//! Offline injection, like `istioctl kube-inject`: YAML workloads in, injected YAML out.
//!
//! Every pod template found (in a Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
//! ReplicationController, Job, CronJob or a `List` of them) goes through the same
//! [`Injector::inject`] as the webhook, and the returned patch is applied to the
//! template. Other documents pass through unchanged, in their original order. A template
//! injected before is stripped of what its status annotation lists and injected again.

use serde_json::Value;

pub use crate::engine::strip_injection;
use crate::engine::{Injector, PodRequest};
use crate::manifest::{self, ManifestError, PodTemplate};

/// Why offline injection failed.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The input is not YAML, or the output could not be written as YAML.
    #[error(transparent)]
    Yaml(#[from] ManifestError),
    /// A pod template is not a valid pod.
    #[error("{workload}: pod template is not a valid Pod: {message}")]
    InvalidPod {
        /// `Kind/name`.
        workload: String,
        /// The decoding error.
        message: String,
    },
    /// The engine refused the pod.
    #[error("{workload}: {message}")]
    Denied {
        /// `Kind/name`.
        workload: String,
        /// The denial message.
        message: String,
    },
    /// The patch did not apply (a bug, reported rather than hidden).
    #[error("{workload}: patch did not apply: {message}")]
    Patch {
        /// `Kind/name`.
        workload: String,
        /// The json-patch error.
        message: String,
    },
}

/// Injects every workload in a multi-document YAML string; returns YAML.
pub fn inject_yaml(injector: &Injector, input: &str, default_namespace: &str) -> Result<String, OfflineError> {
    let injected = manifest::read_documents(input)?
        .into_iter()
        .map(|document| inject_document(injector, document, default_namespace))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(manifest::write_documents(&injected)?)
}

/// Injects the pod templates of one parsed document in place (a `List`'s, item by item).
fn inject_document(injector: &Injector, mut document: Value, default_namespace: &str) -> Result<Value, OfflineError> {
    for found in manifest::pod_templates_mut(&mut document) {
        inject_template(injector, found, default_namespace)?;
    }
    Ok(document)
}

/// Runs the engine on one pod (or pod template) in place; `default_namespace` serves when
/// its object names none.
fn inject_template(
    injector: &Injector,
    found: PodTemplate<&mut Value>,
    default_namespace: &str,
) -> Result<(), OfflineError> {
    let label = found.label();
    let workload = found.workload().cloned();
    let namespace = found.namespace.as_deref().unwrap_or(default_namespace);
    let template = found.template;
    let reinjection = strip_injection(template);
    let (pod, has_metadata) = manifest::pod_from_template(template).map_err(|error| OfflineError::InvalidPod {
        workload: label.clone(),
        message: error.to_string(),
    })?;
    let request = PodRequest {
        pod: &pod,
        namespace,
        workload: workload.as_ref(),
        has_metadata,
        unread_annotation_bytes: 0,
        namespace_context: crate::engine::NamespaceContext::default(),
        app_amounts: None,
        reinjection,
    };
    let outcome = injector.inject(&request).map_err(|denial| OfflineError::Denied {
        workload: label.clone(),
        message: denial.error.to_string(),
    })?;
    for warning in &outcome.warnings {
        tracing::warn!(workload = label, "{warning}");
    }
    let operations = outcome.patch.to_patch().map_err(|error| OfflineError::Patch {
        workload: label.clone(),
        message: error.to_string(),
    })?;
    json_patch::patch(template, &operations).map_err(|error| OfflineError::Patch {
        workload: label,
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InjectConfig;

    const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: app\n        image: nginx\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n";

    #[test]
    fn injects_workloads_passes_other_kinds_and_reinjects_cleanly() {
        let injector = Injector::new(InjectConfig::default()).unwrap();
        let once = inject_yaml(&injector, DEPLOYMENT, "default").unwrap();
        let documents = manifest::read_documents(&once).unwrap();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[1]["kind"], "Service");
        let names = |doc: &Value, list: &str| -> Vec<String> {
            doc.pointer(&format!("/spec/template/spec/{list}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        };
        // Native sidecars, the default: the proxy is an init container after istio-init.
        assert_eq!(names(&documents[0], "containers"), ["app"]);
        assert_eq!(names(&documents[0], "initContainers"), ["istio-init", "istio-proxy"]);
        let twice = inject_yaml(&injector, &once, "default").unwrap();
        assert_eq!(
            once, twice,
            "re-injection strips the first injection and gives the same result"
        );
    }

    #[test]
    fn a_pod_without_containers_is_left_as_written() {
        // The engine skips it (the API server refuses it); it used to fail here as "a bug".
        let injector = Injector::new(InjectConfig::default()).unwrap();
        let input = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: empty\nspec: {}\n";
        let output = inject_yaml(&injector, input, "default").unwrap();
        let documents = manifest::read_documents(&output).unwrap();
        assert_eq!(documents[0]["spec"], serde_json::json!({}));
    }
}
