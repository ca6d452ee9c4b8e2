//! The policy applied to a resize of the injected proxy, field by field.

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{ProxyAt, ResizeRequest, ResizeVerdict, derived};
use crate::config::OnViolation;
use crate::error::InjectError;
use crate::resources::bounds::effective_bounds;
use crate::resources::limit_range::{container_max, container_min_named, quantity};
use crate::resources::ratio::{Ratio, app_requests, ratio_annotation};
use crate::resources::{AppAmounts, PodView};
use crate::resources::{Field, FieldKey, ProxyResources, Resource, Side, Source};
use crate::{Injector, quantity::Quantity};

/// A resize the guard allows, with its changes to the proposed pod.
pub(crate) struct Judged {
    pub verdict: ResizeVerdict,
    pub resources: ProxyResources,
    /// (`requests`|`limits`, resource name, canonical value) the patch sets.
    pub patched: Vec<(&'static str, &'static str, String)>,
}

/// The two resources a resize may change.
const RESIZABLE: [Resource; 2] = [Resource::Cpu, Resource::Memory];

/// A container's resources as proxy fields.
pub(crate) fn resources_of(container: &Container) -> ProxyResources {
    let mut resources = ProxyResources::unset();
    let requirements = container.resources.as_ref();
    for key in FieldKey::ALL {
        let map = requirements.and_then(|r| match key.side {
            Side::Request => r.requests.as_ref(),
            Side::Limit => r.limits.as_ref(),
        });
        if let Some(value) = map
            .and_then(|map| map.get(key.resource.name()))
            .and_then(|q| Quantity::parse(&q.0, key.resource.kind()).ok())
        {
            *resources.field_mut(key) = Field::from(value, Source::ProxyContainer);
        }
    }
    resources
}

/// Judges the proxy's change; `None` when the injected containers keep their values.
pub(crate) fn judge(
    injector: &Injector,
    request: &ResizeRequest<'_>,
    old_proxy: ProxyAt<'_>,
    new_proxy: ProxyAt<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<Judged>, InjectError> {
    let old = resources_of(old_proxy.container);
    let asked = resources_of(new_proxy.container);
    let mut proposed = asked.clone();
    let followed = follow_ratio(request, &old, &mut proposed);
    let changed: Vec<FieldKey> = FieldKey::ALL
        .into_iter()
        .filter(|key| RESIZABLE.contains(&key.resource) && old.value(*key) != proposed.value(*key))
        .collect();
    if changed.is_empty() {
        return Ok(None);
    }
    let tuning = &injector.compiled.tuning;
    let bounds = effective_bounds(&tuning.bounds, request.namespace_context.annotations)?;
    let mut clamped = false;
    for key in &changed {
        let Some(value) = proposed.value(*key) else { continue };
        let range = bounds.range(*key);
        let violation = match (&range.min, &range.max) {
            (Some(min), _) if value.units() < min.value.units() => Some((min, "min", "below", "raised")),
            (_, Some(max)) if value.units() > max.value.units() => Some((max, "max", "above", "clamped")),
            _ => None,
        };
        if let Some((bound, end, direction, verb)) = violation {
            if tuning.on_violation == OnViolation::Deny {
                return Err(InjectError::OutOfBounds {
                    field: key.describe(),
                    value: value.to_string(),
                    origin: "the resize".into(),
                    direction,
                    bound: format!("{} {end} {}", bound.origin, bound.value),
                });
            }
            let why = format!("{verb} to {} ({} {end})", bound.value, bound.origin);
            warnings.push(format!("resize: proxy {} {value} {why}", key.describe()));
            proposed.adjust(*key, bound.value, why);
            clamped = true;
        }
        clamped |= clamp_to_limit_ranges(request, &mut proposed, *key, warnings);
    }
    for resource in RESIZABLE {
        keep_request_within_limit(&mut proposed, resource, &asked, warnings)?;
    }
    check_qos(request, new_proxy.container, &old, &proposed)?;
    derived::check(injector, request.old, old_proxy.container, &old, &proposed)?;
    let patched = FieldKey::ALL
        .into_iter()
        .filter(|key| RESIZABLE.contains(&key.resource) && proposed.value(*key) != asked.value(*key))
        .filter_map(|key| {
            let side = match key.side {
                Side::Request => "requests",
                Side::Limit => "limits",
            };
            Some((side, key.resource.name(), proposed.value(key)?.to_canonical()))
        })
        .collect();
    let verdict = if followed {
        ResizeVerdict::Followed
    } else if clamped {
        ResizeVerdict::Clamped
    } else {
        ResizeVerdict::Allowed
    };
    Ok(Some(Judged {
        verdict,
        resources: proposed,
        patched,
    }))
}

/// When the app's requests change, the proxy left as it was, and the proxy's request was
/// sized by a ratio annotation, sizes it again from the new requests.
fn follow_ratio(request: &ResizeRequest<'_>, old: &ProxyResources, proposed: &mut ProxyResources) -> bool {
    let mut followed = false;
    let (old_amounts, new_amounts) = (AppAmounts::of(request.old), AppAmounts::of(request.new));
    let old_pod = PodView {
        pod: request.old,
        amounts: &old_amounts,
    };
    let new_pod = PodView {
        pod: request.new,
        amounts: &new_amounts,
    };
    for resource in RESIZABLE {
        let key = FieldKey::new(resource, Side::Request);
        let before = app_requests(old_pod, resource);
        let after = app_requests(new_pod, resource);
        if before == after || old.value(key) != proposed.value(key) {
            continue;
        }
        let Some(annotation) = ratio_annotation(resource) else {
            continue;
        };
        let pod_ratio = request
            .old
            .metadata
            .annotations
            .as_ref()
            .and_then(|map| map.get(annotation));
        let namespace_ratio = request
            .namespace_context
            .annotations
            .and_then(|map| map.get(annotation));
        let plain = key.annotation();
        let pod_plain = request
            .old
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|map| map.contains_key(plain));
        // A plain annotation at the same level wins over the ratio, as at admission.
        let ratio = match (pod_plain, pod_ratio, namespace_ratio) {
            (false, Some(text), _) => Some(text),
            (false, None, Some(text)) => Some(text),
            _ => None,
        };
        let Some(ratio) = ratio.and_then(|text| Ratio::parse(text).map(|ratio| (text, ratio))) else {
            continue;
        };
        if after == 0 {
            continue;
        }
        let value = quantity(resource, ratio.1.apply(after));
        if Some(value) == proposed.value(key) {
            continue;
        }
        let why = format!(
            "follows the app: {} × app requests {}",
            ratio.0.trim(),
            quantity(resource, after)
        );
        proposed.adjust(key, value, why);
        followed = true;
    }
    followed
}

/// Clamps a changed field into the LimitRanges' `type: Container` min and max.
fn clamp_to_limit_ranges(
    request: &ResizeRequest<'_>,
    proposed: &mut ProxyResources,
    key: FieldKey,
    warnings: &mut Vec<String>,
) -> bool {
    let limit_ranges = request.namespace_context.limit_ranges;
    let Some(value) = proposed.value(key) else { return false };
    let target = match (
        container_min_named(limit_ranges, key.resource),
        container_max(limit_ranges, key.resource),
    ) {
        (Some((min, name)), _) if value.units() < min => Some((min, name, "raised", "min")),
        (_, Some((max, name))) if value.units() > max => Some((max, name, "lowered", "max")),
        _ => None,
    };
    let Some((units, name, verb, end)) = target else {
        return false;
    };
    let new = quantity(key.resource, units);
    let why = format!("{verb} to {new} (LimitRange {name} {end})");
    warnings.push(format!("resize: proxy {} {value} {why}", key.describe()));
    proposed.adjust(key, new, why);
    true
}

/// request ≤ limit: a request the guard moved above the limit is lowered to it; one the
/// resize asked for is denied.
fn keep_request_within_limit(
    proposed: &mut ProxyResources,
    resource: Resource,
    asked: &ProxyResources,
    warnings: &mut Vec<String>,
) -> Result<(), InjectError> {
    let request_key = FieldKey::new(resource, Side::Request);
    let limit_key = FieldKey::new(resource, Side::Limit);
    let (Some(request), Some(limit)) = (proposed.value(request_key), proposed.value(limit_key)) else {
        return Ok(());
    };
    if request.units() <= limit.units() {
        return Ok(());
    }
    if proposed.value(request_key) == asked.value(request_key) && proposed.value(limit_key) == asked.value(limit_key) {
        return Err(InjectError::ResizeRefused {
            reason: format!(
                "{} request {request} is above its limit {limit}; resize the request at or below the limit",
                resource.label()
            ),
        });
    }
    let why = format!("lowered to the limit {limit}");
    warnings.push(format!("resize: proxy {} {request} {why}", request_key.describe()));
    proposed.adjust(request_key, limit, why);
    Ok(())
}

/// Kubernetes' QoS class of `pod` with the proxy at `proxy`.
fn qos_class(pod: &Pod, proxy_name: &str, proxy: &ProxyResources) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let mut any = false;
    let mut guaranteed = true;
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for container in containers {
        let resources = if container.name == proxy_name {
            proxy.clone()
        } else {
            resources_of(container)
        };
        for resource in RESIZABLE {
            let request = resources.effective_request(resource);
            let limit = resources.value(FieldKey::new(resource, Side::Limit));
            any |= request.is_some() || limit.is_some();
            guaranteed &= limit.is_some() && request == limit;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The API server refuses a resize that changes the pod's QoS class. When the proxy's
/// values are what would change it, the guard refuses, saying so; a class changed by the
/// app's own resize is left to the API server's message.
fn check_qos(
    request: &ResizeRequest<'_>,
    proxy: &Container,
    old: &ProxyResources,
    proposed: &ProxyResources,
) -> Result<(), InjectError> {
    let stored = qos_class(request.old, "", &ProxyResources::unset());
    let after = qos_class(request.new, &proxy.name, proposed);
    let with_old_proxy = qos_class(request.new, &proxy.name, old);
    if stored != after && with_old_proxy == stored {
        return Err(InjectError::ResizeRefused {
            reason: format!(
                "the pod's QoS class would change from {stored} to {after}, which the API server refuses on resize; {}",
                if stored == "Guaranteed" {
                    "keep the proxy's CPU and memory requests equal to its limits"
                } else {
                    "keep the proxy's requests below its limits or leave them unset as they were"
                }
            ),
        });
    }
    Ok(())
}
