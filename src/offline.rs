//! Offline injection, like `istioctl kube-inject`: YAML workloads in, injected YAML out.
//!
//! Every pod template found (in a Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
//! ReplicationController, Job, CronJob or a `List` of them) goes through the same
//! [`Injector::inject`] as the webhook, and the returned patch is applied to the
//! template. Other documents pass through unchanged, in their original order. A template
//! injected before is stripped of what its status annotation lists and injected again.

use serde_json::Value;

use crate::engine::workload::Workload;
use crate::engine::{Injector, PodRequest};
use crate::manifest::{self, ManifestError};
pub use crate::reinject::strip_injection;

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

/// Where a workload kind keeps its pod template; `None` for kinds without one.
pub fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&[]),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job"
        | "DeploymentConfig" => Some(&["spec", "template"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// Reads a pod template (`metadata` and `spec`) as a Pod; the flag says whether it had metadata.
pub fn pod_from_template(template: &Value) -> Result<(k8s_openapi::api::core::v1::Pod, bool), serde_json::Error> {
    let has_metadata = template.get("metadata").is_some_and(Value::is_object);
    let pod = serde_json::from_value(serde_json::json!({
        "metadata": template.get("metadata").cloned().unwrap_or(Value::Null),
        "spec": template.get("spec").cloned().unwrap_or(Value::Null),
    }))?;
    Ok((pod, has_metadata))
}

/// Injects the pod templates of one parsed document.
pub fn inject_document(
    injector: &Injector,
    mut document: Value,
    default_namespace: &str,
) -> Result<Value, OfflineError> {
    let kind = document
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if kind == "List" {
        if let Some(items) = document.get_mut("items").and_then(Value::as_array_mut) {
            for item in items.iter_mut() {
                *item = inject_document(injector, item.take(), default_namespace)?;
            }
        }
        return Ok(document);
    }
    let Some(template_path) = template_path(&kind) else {
        return Ok(document);
    };
    let name = document
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let namespace = document
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(default_namespace)
        .to_string();
    let workload = Workload {
        name: name.clone(),
        kind: kind.clone(),
        api_version: document
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("v1")
            .to_string(),
    };
    let label = format!("{kind}/{name}");
    let mut template = &mut document;
    for key in template_path {
        match template.get_mut(*key) {
            Some(next) => template = next,
            None => return Ok(document),
        }
    }
    inject_template(
        injector,
        template,
        &namespace,
        (kind != "Pod").then_some(&workload),
        &label,
    )?;
    Ok(document)
}

/// Runs the engine on one pod (or pod template) in place.
fn inject_template(
    injector: &Injector,
    template: &mut Value,
    namespace: &str,
    workload: Option<&Workload>,
    label: &str,
) -> Result<(), OfflineError> {
    strip_injection(template);
    let (pod, has_metadata) = pod_from_template(template).map_err(|error| OfflineError::InvalidPod {
        workload: label.to_string(),
        message: error.to_string(),
    })?;
    let request = PodRequest {
        pod: &pod,
        namespace,
        workload,
        has_metadata,
        namespace_context: crate::engine::resources::NamespaceContext::default(),
    };
    let outcome = injector.inject(&request).map_err(|denial| OfflineError::Denied {
        workload: label.to_string(),
        message: denial.error.to_string(),
    })?;
    for warning in &outcome.warnings {
        tracing::warn!(workload = label, "{warning}");
    }
    json_patch::patch(template, &outcome.patch).map_err(|error| OfflineError::Patch {
        workload: label.to_string(),
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
        assert_eq!(names(&documents[0], "containers"), ["app", "istio-proxy"]);
        let twice = inject_yaml(&injector, &once, "default").unwrap();
        assert_eq!(
            once, twice,
            "re-injection strips the first injection and gives the same result"
        );
    }
}
