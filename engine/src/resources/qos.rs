//! Step 2: a pod whose app containers are all Guaranteed stays Guaranteed.
//!
//! Kubernetes gives a pod QoS Guaranteed only when every container, init containers
//! included, has CPU and memory limits equal to its requests. Adding a Burstable proxy
//! silently demotes such a pod. When every app container is Guaranteed, the proxy's CPU
//! and memory limits are set to its requests (so the pod's scheduled size does not grow),
//! or the request to the limit when only a limit is set. A pod with pod-level resources is
//! Guaranteed when those are, and its proxy is equalized the same way, so the pod-level
//! values grow equally on both sides ([`super::pod_level`]).

use k8s_openapi::api::core::v1::Container;

use super::app_amounts::{ContainerAmounts, PodView};
use super::{FieldKey, ProxyResources, Resource, Side, Source};

/// Whether every app container (and init container) is Guaranteed, or the pod is
/// Guaranteed by its pod-level resources (which then decide its QoS class alone).
pub(crate) fn app_is_guaranteed(pod: PodView<'_>) -> bool {
    let Some(spec) = pod.spec() else {
        return false;
    };
    if spec.resources.is_some() {
        return super::pod_level::is_pod_level_guaranteed(pod.pod);
    }
    let guaranteed = |(_, amounts): (&Container, &ContainerAmounts)| {
        [Resource::Cpu, Resource::Memory].into_iter().all(|resource| {
            let limit = amounts.limit(resource);
            limit.is_some() && amounts.request_or_limit(resource) == limit
        })
    };
    pod.app_containers().next().is_some()
        && pod.app_containers().all(guaranteed)
        && pod.app_init_containers().all(guaranteed)
}

/// Makes the proxy's CPU and memory requests equal their limits; returns whether it could.
pub fn equalize(resources: &mut ProxyResources, warnings: Option<&mut Vec<String>>) -> bool {
    let mut changes = Vec::new();
    let mut complete = true;
    for resource in [Resource::Cpu, Resource::Memory] {
        let request_key = FieldKey::new(resource, Side::Request);
        let limit_key = FieldKey::new(resource, Side::Limit);
        match (resources.value(request_key), resources.value(limit_key)) {
            (Some(request), Some(limit)) if request != limit => {
                resources.adjust(limit_key, request, "set to the request to keep QoS Guaranteed".into());
                changes.push(format!("{} limit {limit} → {request}", resource.label()));
            }
            (Some(request), None) => {
                let field = resources.field_mut(limit_key);
                field.value = Some(request);
                field.source = Source::GuaranteedQos;
                changes.push(format!("{} limit set to {request}", resource.label()));
            }
            (None, Some(limit)) => {
                let field = resources.field_mut(request_key);
                field.value = Some(limit);
                field.source = Source::GuaranteedQos;
                changes.push(format!("{} request set to {limit}", resource.label()));
            }
            (None, None) => complete = false,
            _ => {}
        }
    }
    if let Some(warnings) = warnings {
        if !changes.is_empty() {
            warnings.push(format!(
                "pod is QoS Guaranteed; to keep it so, proxy {}",
                changes.join(", ")
            ));
        }
        if !complete {
            warnings.push(
                "pod is QoS Guaranteed but the proxy has no CPU or memory size; the pod will be Burstable".into(),
            );
        }
    }
    complete
}

/// Step 2 entry point: equalizes when every app container is Guaranteed.
pub(crate) fn keep_guaranteed(pod: PodView<'_>, resources: &mut ProxyResources, warnings: &mut Vec<String>) -> bool {
    if !app_is_guaranteed(pod) {
        return false;
    }
    equalize(resources, Some(warnings));
    true
}
