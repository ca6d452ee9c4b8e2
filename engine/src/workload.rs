//! The workload a pod belongs to, and the canonical service labels derived from it.
//!
//! The webhook sees only the pod, so the workload is recovered from its controller
//! reference the way istiod does: a ReplicaSet owned by a Deployment carries the pod
//! template hash as a suffix, which is removed to give the Deployment. Offline injection
//! knows the enclosing workload and passes it in directly.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Pod;

/// Label with the pod template hash of ReplicaSet-owned pods.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The canonical service name label.
pub const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
/// The canonical service revision label.
pub const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";
/// Longest label value Kubernetes accepts.
const MAX_LABEL_VALUE: usize = 63;

/// The workload that owns a pod: its name and type, for the proxy's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Workload {
    /// The workload's name (a Deployment's name, not its ReplicaSet's).
    pub name: String,
    /// Its kind, e.g. `Deployment` (borrowed when it is one the engine names itself).
    pub kind: Cow<'static, str>,
    /// Its apiVersion, e.g. `apps/v1`.
    pub api_version: Cow<'static, str>,
}

// === impl Workload ===

impl Workload {
    /// Recovers the workload from the pod's controller reference, name or generateName.
    pub fn of_pod(pod: &Pod) -> Workload {
        let metadata = &pod.metadata;
        let controller = metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true));
        if let Some(owner) = controller {
            let hash = metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(POD_TEMPLATE_HASH));
            if owner.kind == "ReplicaSet"
                && let Some(deployment) =
                    hash.and_then(|hash| owner.name.strip_suffix(hash.as_str())?.strip_suffix('-'))
            {
                return Workload {
                    name: deployment.to_string(),
                    kind: "Deployment".into(),
                    api_version: "apps/v1".into(),
                };
            }
            return Workload {
                name: owner.name.clone(),
                kind: owner.kind.clone().into(),
                api_version: owner.api_version.clone().into(),
            };
        }
        let name = metadata
            .name
            .clone()
            .filter(|name| !name.is_empty())
            .or_else(|| {
                metadata
                    .generate_name
                    .as_ref()
                    .map(|prefix| prefix.trim_end_matches('-').to_string())
            })
            .unwrap_or_default();
        Workload {
            name,
            kind: "Pod".into(),
            api_version: "v1".into(),
        }
    }

    /// `kubernetes://apis/<apiVersion>/namespaces/<ns>/<kind>s/<name>`, as Istio writes it.
    pub fn owner_uri(&self, namespace: &str) -> String {
        const FIXED: usize = "kubernetes://apis//namespaces//s/".len();
        let mut uri =
            String::with_capacity(FIXED + self.api_version.len() + namespace.len() + self.kind.len() + self.name.len());
        uri.push_str("kubernetes://apis/");
        uri.push_str(&self.api_version);
        uri.push_str("/namespaces/");
        uri.push_str(namespace);
        uri.push('/');
        let kind = uri.len();
        uri.push_str(&self.kind);
        uri[kind..].make_ascii_lowercase();
        uri.push_str("s/");
        uri.push_str(&self.name);
        uri
    }
}

/// The canonical service name and revision, as label values Kubernetes accepts (borrowed
/// from the pod or workload when they already are).
pub fn canonical_labels<'a>(pod: &'a Pod, workload: &'a Workload) -> (Cow<'a, str>, Cow<'a, str>) {
    let labels = pod.metadata.labels.as_ref();
    let first = |keys: &[&str]| {
        keys.iter().find_map(|key| {
            labels
                .and_then(|labels| labels.get(*key))
                .map(String::as_str)
                .filter(|value| !value.is_empty())
        })
    };
    let name = first(&[CANONICAL_NAME, "app.kubernetes.io/name", "app"]).unwrap_or(&workload.name);
    let revision = first(&[CANONICAL_REVISION, "app.kubernetes.io/version", "version"]).unwrap_or("latest");
    (to_label_value(name), to_label_value(revision))
}

/// Shortens and trims a string into a valid label value (at most 63 characters,
/// alphanumeric at both ends, only `-_.` and alphanumerics inside); borrowed when nothing
/// but trimming is needed.
pub fn to_label_value(text: &str) -> Cow<'_, str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let outer = |c: char| !c.is_ascii_alphanumeric();
    if text.len() <= MAX_LABEL_VALUE && text.chars().all(allowed) {
        return Cow::Borrowed(text.trim_matches(outer));
    }
    let cleaned: String = text
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .take(MAX_LABEL_VALUE)
        .collect();
    Cow::Owned(cleaned.trim_matches(outer).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn pod_owned_by(kind: &str, name: &str, hash: Option<&str>) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            controller: Some(true),
            ..Default::default()
        }]);
        pod.metadata.labels = hash.map(|hash| [(POD_TEMPLATE_HASH.to_string(), hash.to_string())].into());
        pod
    }

    #[test]
    fn replica_set_resolves_to_deployment() {
        let workload = Workload::of_pod(&pod_owned_by("ReplicaSet", "web-5d9c7b", Some("5d9c7b")));
        assert_eq!((workload.name.as_str(), &*workload.kind), ("web", "Deployment"));
        assert_eq!(
            workload.owner_uri("prod"),
            "kubernetes://apis/apps/v1/namespaces/prod/deployments/web"
        );
        let bare = Workload::of_pod(&pod_owned_by("ReplicaSet", "web-rs", None));
        assert_eq!((bare.name.as_str(), &*bare.kind), ("web-rs", "ReplicaSet"));
    }

    #[test]
    fn bare_pod_uses_name_or_generate_name() {
        let mut pod = Pod::default();
        pod.metadata.generate_name = Some("batch-".into());
        assert_eq!(Workload::of_pod(&pod).name, "batch");
        pod.metadata.name = Some("one".into());
        assert_eq!(Workload::of_pod(&pod).name, "one");
    }

    #[test]
    fn label_values_are_cleaned_trimmed_and_cut() {
        assert_eq!(to_label_value("-web.v1_"), "web.v1");
        assert!(matches!(to_label_value("web"), Cow::Borrowed("web")));
        assert_eq!(to_label_value("team/web app"), "team-web-app");
        assert_eq!(to_label_value("é-web"), "web");
        assert_eq!(to_label_value(&"a".repeat(70)), "a".repeat(63));
        assert_eq!(to_label_value(&format!("{}-b", "a".repeat(62))), "a".repeat(62));
    }

    #[test]
    fn canonical_labels_prefer_labels_and_truncate() {
        let long = "helloworld-helloworld-helloworld-helloworld-helloworld-hellowo-ld";
        let pod = pod_owned_by("Bar", long, None);
        let workload = Workload::of_pod(&pod);
        let (name, revision) = canonical_labels(&pod, &workload);
        assert_eq!(name, "helloworld-helloworld-helloworld-helloworld-helloworld-hellowo");
        assert_eq!(revision, "latest");
        let mut labelled = Pod::default();
        labelled.metadata.labels = Some(
            [
                ("app".to_string(), "web".to_string()),
                ("version".to_string(), "v2".to_string()),
            ]
            .into(),
        );
        assert_eq!(
            canonical_labels(&labelled, &Workload::default()),
            (Cow::Borrowed("web"), Cow::Borrowed("v2"))
        );
    }
}
