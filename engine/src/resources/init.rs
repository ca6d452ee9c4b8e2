//! The init container's own resources (`initResources`, `sidecar-injector.io/initCPU`, ...).
//!
//! `istio-init` runs for a second, before the app, but Istio sizes it like the proxy; under
//! the static CPU manager that reserves whole cores for it. Each init field is, in order: the
//! pod annotation, the config's `initResources`, else a copy of the proxy's resolved value
//! (Istio's behaviour, and ours when nothing is set). A pod's effective request is the larger
//! of its largest init container and the sum of the others (native sidecars included), so a
//! smaller init container never changes what the pod reserves; a larger one raises it, which
//! the scheduler, LimitRanger and pod-level resources all count. The init container keeps
//! request ≤ limit, stays Guaranteed when the proxy is kept Guaranteed, and is held to the
//! namespace's LimitRanges (`type: Container` min/max and ratio, `type: Pod` max).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, Pod};

use super::{Field, FieldKey, ProxyResources, Resource, Side, Source, Tuning, limit_range};
use crate::annotations::{INIT_CPU, INIT_CPU_LIMIT, INIT_MEMORY, INIT_MEMORY_LIMIT};
use crate::config::examples_for;
use crate::error::{InjectError, quoted};
use crate::fields::FieldBounds;
use crate::quantity::Quantity;

/// The pod annotation for an init field, if it has one.
pub fn init_annotation(key: FieldKey) -> Option<&'static str> {
    match (key.resource, key.side) {
        (Resource::Cpu, Side::Request) => Some(INIT_CPU),
        (Resource::Cpu, Side::Limit) => Some(INIT_CPU_LIMIT),
        (Resource::Memory, Side::Request) => Some(INIT_MEMORY),
        (Resource::Memory, Side::Limit) => Some(INIT_MEMORY_LIMIT),
        (Resource::EphemeralStorage, _) => None,
    }
}

/// The init container's resources, from `proxy` (the proxy's layered resolution) and the
/// pod's and config's own init values; `guaranteed` when the proxy was kept Guaranteed.
pub fn resolve_init(
    pod: &Pod,
    proxy: &ProxyResources,
    tuning: &Tuning,
    limit_ranges: &[LimitRange],
    guaranteed: bool,
    warnings: &mut Vec<String>,
) -> Result<ProxyResources, InjectError> {
    let annotations = pod.metadata.annotations.as_ref();
    let mut init = proxy.clone();
    let mut own = [false; 6];
    for key in FieldKey::ALL {
        if let Some(field) = own_field(key, annotations, tuning)? {
            *init.field_mut(key) = field;
            own[key.index()] = true;
        }
    }
    if !own.contains(&true) {
        return Ok(init);
    }
    for resource in Resource::ALL {
        keep_request_within_limit(&mut init, resource, own)?;
    }
    if guaranteed {
        equalize_init(&mut init, warnings);
    }
    let mut local = Vec::new();
    limit_range::apply_container_limits(&mut init, limit_ranges, &FieldBounds::default(), &mut local)?;
    warnings.extend(local.into_iter().map(|w| match w.strip_prefix("proxy ") {
        Some(rest) => format!("init container {rest}"),
        None => w,
    }));
    fit_pod_max(&mut init, limit_ranges, warnings);
    for resource in Resource::ALL {
        keep_request_within_limit(&mut init, resource, [true; 6])?;
    }
    Ok(init)
}

/// The init container's own value for `key`: the pod annotation, else `initResources`.
fn own_field(
    key: FieldKey,
    annotations: Option<&BTreeMap<String, String>>,
    tuning: &Tuning,
) -> Result<Option<Field>, InjectError> {
    if let Some(annotation) = init_annotation(key)
        && let Some(text) = annotations.and_then(|map| map.get(annotation))
    {
        let kind = key.resource.kind();
        let value = Quantity::parse(text, kind).map_err(|reason| InjectError::InvalidQuantity {
            annotation: annotation.to_string(),
            value: quoted(text),
            reason,
            examples: examples_for(kind),
        })?;
        return Ok(Some(Field::from(value, Source::PodAnnotation(annotation))));
    }
    Ok(tuning.init_defaults[key.index()].map(|value| Field::from(value, Source::InitConfig)))
}

/// A copied value gives way to an own one: a copied request above an own limit is lowered
/// to it, a copied limit below an own request is raised to it; two own values in the wrong
/// order are denied naming both sources.
fn keep_request_within_limit(init: &mut ProxyResources, resource: Resource, own: [bool; 6]) -> Result<(), InjectError> {
    let request_key = FieldKey::new(resource, Side::Request);
    let limit_key = FieldKey::new(resource, Side::Limit);
    let (Some(request), Some(limit)) = (init.value(request_key), init.value(limit_key)) else {
        return Ok(());
    };
    if request.units() <= limit.units() {
        return Ok(());
    }
    match (own[request_key.index()], own[limit_key.index()]) {
        (false, true) => init.adjust(request_key, limit, "lowered to the init container's limit".into()),
        (true, false) => init.adjust(limit_key, request, "raised to the init container's request".into()),
        _ => {
            return Err(InjectError::RequestAboveLimit {
                subject: format!("init container {}", resource.label()),
                request: request.to_string(),
                request_source: init.field(request_key).source.to_string(),
                limit: limit.to_string(),
                limit_source: init.field(limit_key).source.to_string(),
            });
        }
    }
    Ok(())
}

/// Sets the init container's CPU and memory limits to its requests, so a Guaranteed pod
/// stays Guaranteed (every container, init containers included, must be).
fn equalize_init(init: &mut ProxyResources, warnings: &mut Vec<String>) {
    let mut changes = Vec::new();
    for resource in [Resource::Cpu, Resource::Memory] {
        let request_key = FieldKey::new(resource, Side::Request);
        let limit_key = FieldKey::new(resource, Side::Limit);
        if let Some(request) = init.effective_request(resource)
            && init.value(limit_key) != Some(request)
        {
            if init.value(request_key).is_none() {
                init.adjust(request_key, request, "set to the limit to keep QoS Guaranteed".into());
            }
            init.adjust(limit_key, request, "set to the request to keep QoS Guaranteed".into());
            changes.push(format!("{} limit {request}", resource.label()));
        }
    }
    if !changes.is_empty() {
        warnings.push(format!(
            "pod is QoS Guaranteed; to keep it so, init container {}",
            changes.join(", ")
        ));
    }
}

/// The init container runs alone among the init containers before it, so the pod's total is
/// at least its value: above a `type: Pod` max it is lowered to the max, with a warning.
fn fit_pod_max(init: &mut ProxyResources, limit_ranges: &[LimitRange], warnings: &mut Vec<String>) {
    for resource in Resource::ALL {
        let Some((max, name)) = limit_range::pod_max(limit_ranges, resource) else {
            continue;
        };
        for side in [Side::Request, Side::Limit] {
            let key = FieldKey::new(resource, side);
            if let Some(value) = init.value(key)
                && value.units() > max
            {
                let lowered = limit_range::quantity(resource, max);
                let why = format!("lowered to {lowered} (LimitRange {name} per-Pod max)");
                warnings.push(format!("init container {} {value} {why}", key.describe()));
                init.adjust(key, lowered, why);
            }
        }
    }
}

#[cfg(test)]
mod tests;
