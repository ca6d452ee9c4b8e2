//! A request's objects: a Pod read with only the fields the engine uses (its spec through
//! [`super::pod_spec`]), or a raw object whose metadata is read on demand until it is known
//! to be a Pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::annotations::ReadAnnotations;
use super::pod_spec::{IntoSpec, ReadSpec};
use crate::engine::AppAmounts;

/// A request's object: read as a Pod in the one pass over the body (a Pod CREATE), or kept
/// raw until it is known to be one.
#[derive(Debug)]
pub(super) enum ReviewObject {
    /// Read as a Pod.
    Pod(Box<PodObject>),
    /// As sent.
    Raw(Box<RawValue>),
}

impl ReviewObject {
    /// The object as a Pod.
    pub(super) fn to_pod(&self) -> Result<ReadPod, String> {
        match self {
            ReviewObject::Pod(object) => Ok(pod_of((**object).clone())),
            ReviewObject::Raw(raw) => into_pod(raw),
        }
    }

    /// The kind and name of the object's controlling owner reference, with the value of its
    /// label `label`: from the typed metadata of a Pod, from one read of a raw object's.
    pub(super) fn controller_owner(&self, label: &str) -> Option<(String, String, Option<String>)> {
        match self {
            ReviewObject::Pod(object) => {
                let metadata = object.metadata.as_ref()?;
                let (kind, name) = controller_owner(metadata.owner_references.as_deref()?)?;
                Some((
                    kind,
                    name,
                    metadata.labels.as_ref().and_then(|labels| labels.get(label)).cloned(),
                ))
            }
            ReviewObject::Raw(raw) => {
                let mut metadata = raw_metadata(raw);
                let (kind, name) = controller_owner(metadata.owner_references.as_deref()?)?;
                Some((
                    kind,
                    name,
                    metadata.labels.as_mut().and_then(|labels| labels.remove(label)),
                ))
            }
        }
    }

    /// A label of the object.
    pub(super) fn label(&self, key: &str) -> Option<String> {
        match self {
            ReviewObject::Pod(object) => object.metadata.as_ref()?.labels.as_ref()?.get(key).cloned(),
            ReviewObject::Raw(raw) => object_label(raw, key),
        }
    }

    /// `metadata.namespace`, when the object has one.
    pub(super) fn namespace(&self) -> String {
        match self {
            ReviewObject::Pod(object) => object
                .metadata
                .as_ref()
                .and_then(|metadata| metadata.namespace.clone())
                .unwrap_or_default(),
            ReviewObject::Raw(raw) => object_namespace(raw),
        }
    }
}

/// The kind and name of the controlling owner among `owners`; one without a kind or name
/// (which the API server never stores) counts as none.
pub fn controller_owner(owners: &[OwnerReference]) -> Option<(String, String)> {
    owners
        .iter()
        .find(|owner| owner.controller == Some(true))
        .filter(|owner| !owner.kind.is_empty() && !owner.name.is_empty())
        .map(|owner| (owner.kind.clone(), owner.name.clone()))
}

/// The parts of a Pod the engine reads, its spec read as `S` and its annotations as `A`:
/// [`ReadSpec`] and [`ReadAnnotations`] in the one pass over a Pod CREATE, k8s-openapi's
/// whole `PodSpec` and every annotation otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(bound = "S: Deserialize<'de>, A: Deserialize<'de>")]
pub(super) struct PodObject<S = ReadSpec, A = ReadAnnotations> {
    #[serde(default)]
    metadata: Option<PodMetadata<A>>,
    #[serde(default)]
    spec: Option<S>,
}

/// A Pod as read for the engine.
#[derive(Debug)]
pub(super) struct ReadPod {
    /// The pod.
    pub(super) pod: Pod,
    /// Whether it had a `metadata` object.
    pub(super) has_metadata: bool,
    /// Keys and values of the annotations left out of `pod`.
    pub(super) unread_annotation_bytes: usize,
    /// The amounts of its containers, when the reader left their `resources` out of `pod`.
    pub(super) app_amounts: Option<AppAmounts>,
}

/// The metadata fields the engine reads; the rest (`managedFields` above all) is skipped.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound = "A: Deserialize<'de>")]
struct PodMetadata<A> {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generate_name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<A>,
    #[serde(default)]
    owner_references: Option<Vec<OwnerReference>>,
}

/// The metadata fields read from a raw object before it is known to be a Pod.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawMetadata {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    owner_references: Option<Vec<OwnerReference>>,
}

/// The object's namespace and labels, read from its metadata alone.
fn raw_metadata(object: &RawValue) -> RawMetadata {
    #[derive(Deserialize)]
    struct Object {
        #[serde(default)]
        metadata: Option<RawMetadata>,
    }
    serde_json::from_str::<Object>(object.get())
        .ok()
        .and_then(|object| object.metadata)
        .unwrap_or_default()
}

/// A label of the object.
fn object_label(object: &RawValue, key: &str) -> Option<String> {
    raw_metadata(object).labels?.remove(key)
}

/// `metadata.namespace` of a raw object, when it has one.
fn object_namespace(object: &RawValue) -> String {
    raw_metadata(object).namespace.unwrap_or_default()
}

/// Reads the object as a Pod, its spec and annotations in full. (A missing or null
/// `spec.containers` reads as empty; the engine skips such a pod.)
pub(super) fn into_pod(object: &RawValue) -> Result<ReadPod, String> {
    let parsed: PodObject<PodSpec, BTreeMap<String, String>> =
        serde_json::from_str(object.get()).map_err(|error| error.to_string())?;
    Ok(pod_of(parsed))
}

/// The Pod of the parts read.
pub(super) fn pod_of<S: IntoSpec, A: Into<ReadAnnotations>>(parsed: PodObject<S, A>) -> ReadPod {
    let has_metadata = parsed.metadata.is_some();
    let mut unread_annotation_bytes = 0;
    let metadata = parsed.metadata.map_or_else(ObjectMeta::default, |metadata| {
        let annotations = metadata.annotations.map(|annotations| {
            let read = annotations.into();
            unread_annotation_bytes = read.unread_bytes;
            read.kept
        });
        ObjectMeta {
            name: metadata.name,
            generate_name: metadata.generate_name,
            namespace: metadata.namespace,
            labels: metadata.labels,
            annotations,
            owner_references: metadata.owner_references,
            ..ObjectMeta::default()
        }
    });
    let (spec, app_amounts) = match parsed.spec.map(IntoSpec::into_spec) {
        Some((spec, amounts)) => (Some(spec), amounts),
        None => (None, None),
    };
    ReadPod {
        pod: Pod {
            metadata,
            spec,
            status: None,
        },
        has_metadata,
        unread_annotation_bytes,
        app_amounts,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_fields_the_engine_reads_are_kept() {
        let object = json!({
            "metadata": {
                "name": "web", "namespace": "apps", "labels": {"app": "web"},
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                "resourceVersion": "7",
            },
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            "status": {"phase": "Pending"},
        });
        let raw = serde_json::value::to_raw_value(&object).unwrap();
        let ReadPod { pod, has_metadata, .. } = into_pod(&raw).unwrap();
        assert!(has_metadata);
        assert_eq!(pod.metadata.name.as_deref(), Some("web"));
        assert_eq!(pod.metadata.labels.unwrap()["app"], "web");
        assert!(pod.metadata.managed_fields.is_none() && pod.metadata.resource_version.is_none());
        assert!(pod.status.is_none());
        assert_eq!(pod.spec.unwrap().containers[0].name, "app");
    }
}
