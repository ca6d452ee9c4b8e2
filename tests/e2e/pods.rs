//! Test pods, and what the scenarios read from the pods the API server stored.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::ObjectMeta;

use crate::cluster::string_map;

/// The injected proxy container.
pub const PROXY: &str = "istio-proxy";
/// The injected init container (classic mode, no CNI).
pub const INIT: &str = "istio-init";
/// The injected init container in CNI mode: checks the rules Istio CNI installed.
pub const VALIDATION: &str = "istio-validation";
/// An image that is never pulled: no node runs the pods.
const IMAGE: &str = "registry.k8s.io/pause:3.10";

/// A pod with one `app` container, and the given labels and annotations.
pub fn test_pod(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: (!labels.is_empty()).then(|| string_map(labels)),
            annotations: (!annotations.is_empty()).then(|| string_map(annotations)),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some(IMAGE.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec
        .iter()
        .flat_map(|spec| spec.containers.iter().chain(spec.init_containers.iter().flatten()))
}

/// How many `istio-proxy` containers the pod has, in containers and initContainers.
pub fn proxy_count(pod: &Pod) -> usize {
    all_containers(pod).filter(|c| c.name == PROXY).count()
}

/// A container by name, from containers or initContainers.
pub fn container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    all_containers(pod).find(|c| c.name == name)
}

/// The pod's layout for messages: `init: [istio-init] containers: [app, istio-proxy]`.
pub fn layout(pod: &Pod) -> String {
    let names = |list: Option<&Vec<Container>>| {
        list.map(|l| l.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let spec = pod.spec.as_ref();
    format!(
        "init: [{}] containers: [{}]",
        names(spec.and_then(|s| s.init_containers.as_ref())),
        names(spec.map(|s| &s.containers))
    )
}
