//! The kinds whose objects hold a pod template, where they hold it, and the templates found.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::is_list;
use crate::engine::Workload;

/// The kinds whose objects hold a pod template, and the path to it (empty: the object is one).
const WORKLOAD_KINDS: &[(&str, &[&str])] = &[
    ("Pod", &[]),
    ("Deployment", &["spec", "template"]),
    ("StatefulSet", &["spec", "template"]),
    ("DaemonSet", &["spec", "template"]),
    ("ReplicaSet", &["spec", "template"]),
    ("ReplicationController", &["spec", "template"]),
    ("Job", &["spec", "template"]),
    ("CronJob", &["spec", "jobTemplate", "spec", "template"]),
    ("DeploymentConfig", &["spec", "template"]),
];

/// The kinds that hold a pod template, for messages.
pub(crate) fn workload_kinds() -> impl Iterator<Item = &'static str> {
    WORKLOAD_KINDS.iter().map(|(kind, _)| *kind)
}

fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    WORKLOAD_KINDS
        .iter()
        .find(|(known, _)| *known == kind)
        .map(|(_, path)| *path)
}

/// A pod template found in a manifest, with what the engine needs to know about its object.
/// `T` is `&Value` to read the template or `&mut Value` to inject it in place.
#[derive(Debug)]
pub struct PodTemplate<T> {
    /// The object holding the template: kind, name and apiVersion (`v1` when absent).
    pub owner: Workload,
    /// The object's `metadata.namespace`, when it names one.
    pub namespace: Option<String>,
    /// The template (`metadata` and `spec`), or the Pod itself.
    pub template: T,
}

// === impl PodTemplate ===

impl<T> PodTemplate<T> {
    /// The owner for the engine's `PodRequest`: `None` for a bare Pod, which has no workload
    /// but itself.
    pub fn workload(&self) -> Option<&Workload> {
        (self.owner.kind != "Pod").then_some(&self.owner)
    }

    /// `Kind/name`, for messages.
    pub fn label(&self) -> String {
        format!("{}/{}", self.owner.kind, self.owner.name)
    }
}

impl<'a> PodTemplate<&'a Value> {
    /// `object`'s template, read as a `kind` object whatever its own `kind` says; `None`
    /// when `kind` holds no template or the object lacks it.
    pub(crate) fn of_kind(object: &'a Value, kind: &str) -> Option<Self> {
        let template = template_path(kind)?
            .iter()
            .try_fold(object, |value, key| value.get(*key))?;
        let (owner, namespace) = owner_of(object, kind);
        Some(PodTemplate {
            owner,
            namespace,
            template,
        })
    }
}

/// The object's workload (as `kind`) and namespace.
fn owner_of(object: &Value, kind: &str) -> (Workload, Option<String>) {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).map(str::to_string);
    let owner = Workload {
        name: text("/metadata/name").unwrap_or_default(),
        kind: kind.to_string().into(),
        api_version: text("/apiVersion").map_or(Cow::Borrowed("v1"), Cow::Owned),
    };
    (owner, text("/metadata/namespace"))
}

fn kind_of(object: &Value) -> &str {
    object.get("kind").and_then(Value::as_str).unwrap_or_default()
}

/// Every pod template in `document`, in order: its own, or those of its `List` items.
pub fn pod_templates(document: &Value) -> Vec<PodTemplate<&Value>> {
    let mut found = Vec::new();
    collect(document, &mut found);
    found
}

fn collect<'a>(document: &'a Value, out: &mut Vec<PodTemplate<&'a Value>>) {
    match document.as_object() {
        Some(object) if is_list(object) => {
            for item in document["items"].as_array().into_iter().flatten() {
                collect(item, out);
            }
        }
        _ => out.extend(PodTemplate::of_kind(document, kind_of(document))),
    }
}

/// As [`pod_templates`], with each template open for change in place.
pub fn pod_templates_mut(document: &mut Value) -> Vec<PodTemplate<&mut Value>> {
    let mut found = Vec::new();
    collect_mut(document, &mut found);
    found
}

fn collect_mut<'a>(document: &'a mut Value, out: &mut Vec<PodTemplate<&'a mut Value>>) {
    if document.as_object().is_some_and(is_list) {
        for item in document
            .get_mut("items")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            collect_mut(item, out);
        }
        return;
    }
    let kind = kind_of(document).to_string();
    let Some(path) = template_path(&kind) else {
        return;
    };
    let (owner, namespace) = owner_of(document, &kind);
    let template = path.iter().try_fold(document, |value, key| value.get_mut(*key));
    if let Some(template) = template {
        out.push(PodTemplate {
            owner,
            namespace,
            template,
        });
    }
}

/// A pod template as a Pod object: `apiVersion`, `kind`, and the template's `metadata`
/// (`{}` when absent) and `spec`.
pub fn template_as_pod(template: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "spec": template.get("spec").cloned().unwrap_or(Value::Null),
    })
}

/// Decodes a pod template as a Pod; the flag says whether it had a `metadata` object, which
/// the engine needs to know to create `/metadata` in its patch.
pub(crate) fn pod_from_template(template: &Value) -> Result<(Pod, bool), serde_json::Error> {
    let has_metadata = template.get("metadata").is_some_and(Value::is_object);
    Ok((serde_json::from_value(template_as_pod(template))?, has_metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::read_documents;

    const WORKLOADS: &str = "kind: List\nitems:\n- kind: Deployment\n  apiVersion: apps/v1\n  metadata: {name: web, namespace: team}\n  spec:\n    template:\n      spec: {containers: [{name: app}]}\n- kind: List\n  items:\n  - kind: Pod\n    metadata: {name: p}\n    spec: {containers: [{name: app}]}\n- kind: Service\n  metadata: {name: web}\n---\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        metadata: {labels: {a: b}}\n        spec: {containers: [{name: job}]}\n---\nkind: Deployment\nmetadata: {name: no-template}\n";

    #[test]
    fn finds_the_templates_of_workloads_and_lists_in_order() {
        let documents = read_documents(WORKLOADS).unwrap();
        let found: Vec<_> = documents.iter().flat_map(pod_templates).collect();
        let labels: Vec<String> = found.iter().map(PodTemplate::label).collect();
        assert_eq!(labels, ["Deployment/web", "Pod/p", "CronJob/nightly"]);
        assert_eq!(found[0].namespace.as_deref(), Some("team"));
        assert_eq!(found[0].owner.api_version, "apps/v1");
        assert_eq!(found[1].owner.api_version, "v1");
        assert!(found[1].workload().is_none(), "a bare Pod has no workload");
        assert_eq!(found[2].template["metadata"]["labels"]["a"], "b");
    }

    #[test]
    fn templates_change_in_place_and_lists_keep_their_shape() {
        let mut documents = read_documents(WORKLOADS).unwrap();
        for found in documents.iter_mut().flat_map(pod_templates_mut) {
            found.template["spec"]["touched"] = json!(found.label());
        }
        assert_eq!(
            documents[0]["items"][0]["spec"]["template"]["spec"]["touched"],
            "Deployment/web"
        );
        assert_eq!(documents[0]["items"][1]["items"][0]["spec"]["touched"], "Pod/p");
        assert_eq!(
            documents[1].pointer("/spec/jobTemplate/spec/template/spec/touched"),
            Some(&json!("CronJob/nightly"))
        );
        assert_eq!(
            documents[2],
            json!({"kind": "Deployment", "metadata": {"name": "no-template"}})
        );
    }

    #[test]
    fn a_template_decodes_as_a_pod() {
        let (pod, has_metadata) = pod_from_template(&json!({"spec": {"containers": [{"name": "app"}]}})).unwrap();
        assert!(!has_metadata);
        assert_eq!(pod.spec.unwrap().containers[0].name, "app");
        let (_, has_metadata) = pod_from_template(&json!({"metadata": {"name": "p"}, "spec": {}})).unwrap();
        assert!(has_metadata);
        assert!(pod_from_template(&json!({"spec": {"containers": "none"}})).is_err());
    }
}
