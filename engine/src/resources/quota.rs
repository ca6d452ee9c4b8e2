//! Step 7: ResourceQuota foresight, judged as the API server's quota admission will judge
//! the injected pod after us.
//!
//! - **Limits required.** A quota on `cpu`/`requests.cpu`/`limits.cpu` (or memory) makes
//!   the API server refuse a pod any of whose containers lacks that value
//!   (`must specify limits.cpu for: istio-proxy`), unless the pod sets pod-level resources.
//!   A missing proxy or init limit is set from policy (`quotaLimits`: the request, or a
//!   configured value).
//! - **Would exceed.** When the pod with the injected containers would need more than is
//!   left (`hard` − `used`) of a quota, `onQuota: fit` shrinks the proxy (and an init
//!   container sized like it) within its floors until it fits, with a warning naming the
//!   quota and the numbers; `onQuota: deny`, or a pod that cannot fit, is denied naming the
//!   quota, the resource, what the pod needs, what the injected containers add and what is
//!   left.
//! - **Scopes.** Only quotas whose `scopes` and `scopeSelector` match the injected pod
//!   count: `BestEffort`, `NotBestEffort`, `Terminating`, `NotTerminating` and
//!   `PriorityClass` (`In`, `NotIn`, `Exists`, `DoesNotExist`); a quota with another scope
//!   is left to the API server.
//!
//! `used` is what the namespace's quota controller last wrote, so it can be stale: the
//! API server's quota admission has the last word. A quota without a `used` figure for a
//! resource is not judged for it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use self::scopes::quota_matches;
use super::app_amounts::PodView;
use super::limit_range::{container_min, quantity};
use super::pod_level::{Placement, aggregate, pod_level_value};
use super::{FieldKey, ProxyResources, Resource, Side, Tuning};
use crate::config::OnQuota;
use crate::error::InjectError;
use crate::fields::FieldBounds;
use crate::quantity::Quantity;

/// What quota foresight needs besides the quotas.
pub(crate) struct QuotaInputs<'a> {
    /// The pod.
    pub pod: PodView<'a>,
    /// Where the injected containers go.
    pub placement: Placement,
    /// The policy.
    pub tuning: &'a Tuning,
    /// The effective bounds (floors when shrinking).
    pub bounds: &'a FieldBounds,
    /// The namespace's LimitRanges (floors when shrinking).
    pub limit_ranges: &'a [k8s_openapi::api::core::v1::LimitRange],
    /// Whether the proxy is kept Guaranteed (both sides move together).
    pub guaranteed: bool,
}

/// The parts of a ResourceQuota the checks read.
struct QuotaView<'q> {
    name: String,
    hard: &'q BTreeMap<String, ApiQuantity>,
    used: Option<&'q BTreeMap<String, ApiQuantity>>,
}

impl<'q> QuotaView<'q> {
    fn of(quota: &'q ResourceQuota) -> Option<Self> {
        Some(QuotaView {
            name: quota.metadata.name.clone().unwrap_or_default(),
            hard: quota.spec.as_ref()?.hard.as_ref()?,
            used: quota.status.as_ref().and_then(|status| status.used.as_ref()),
        })
    }
}

/// A quota resource name we can judge: the resource and the side it counts.
fn quota_resource(name: &str) -> Option<(Resource, Side)> {
    let (side, resource) = match name.split_once('.') {
        Some(("requests", resource)) => (Side::Request, resource),
        Some(("limits", resource)) => (Side::Limit, resource),
        _ => (Side::Request, name),
    };
    Resource::from_name(resource).map(|resource| (resource, side))
}

/// Applies every matching quota to the proxy and init container resources.
pub(crate) fn apply_quotas(
    inputs: &QuotaInputs<'_>,
    quotas: &[ResourceQuota],
    proxy: &mut ProxyResources,
    init: &mut ProxyResources,
    warnings: &mut Vec<String>,
) -> Result<(), InjectError> {
    let mut sorted: Vec<&ResourceQuota> = quotas.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let matching: Vec<QuotaView<'_>> = sorted
        .into_iter()
        .filter(|quota| quota_matches(quota, inputs.pod, proxy, init))
        .filter_map(QuotaView::of)
        .collect();
    let pod_level = inputs.pod.spec().is_some_and(|spec| {
        spec.resources
            .as_ref()
            .is_some_and(|r| r.requests.is_some() || r.limits.is_some())
    });
    if !pod_level {
        for quota in &matching {
            fill_required(inputs, quota, (&mut *proxy, &mut *init), warnings)?;
        }
    }
    for quota in &matching {
        fit_quota(inputs, quota, proxy, init, warnings)?;
    }
    Ok(())
}

/// Sets a limit (or request) a quota requires on every container, when the proxy or init
/// container lacks it.
fn fill_required(
    inputs: &QuotaInputs<'_>,
    quota: &QuotaView<'_>,
    ours: (&mut ProxyResources, &mut ProxyResources),
    warnings: &mut Vec<String>,
) -> Result<(), InjectError> {
    let (proxy, init) = ours;
    let name = &quota.name;
    for key in quota.hard.keys() {
        let Some((resource, side)) = quota_resource(key) else {
            continue;
        };
        if resource == Resource::EphemeralStorage {
            continue;
        }
        let with_init = inputs.placement.with_init;
        for (container, resources) in [("proxy", &mut *proxy), ("init container", &mut *init)] {
            if container == "init container" && !with_init {
                continue;
            }
            let field = FieldKey::new(resource, side);
            let present = match side {
                Side::Request => resources.effective_request(resource).is_some(),
                Side::Limit => resources.value(field).is_some(),
            };
            if present {
                continue;
            }
            let configured = match (side, resource) {
                (Side::Limit, Resource::Cpu) => inputs.tuning.quota_limits[0],
                (Side::Limit, Resource::Memory) => inputs.tuning.quota_limits[1],
                _ => None,
            };
            let value = configured.or_else(|| match side {
                Side::Limit => resources.value(FieldKey::new(resource, Side::Request)),
                Side::Request => None,
            });
            let Some(value) = value else {
                return Err(InjectError::QuotaRequiresValue {
                    quota: name.clone(),
                    resource: key.clone(),
                    container,
                    what: if side == Side::Limit {
                        "request"
                    } else {
                        "request or limit"
                    },
                    annotation: field.annotation(),
                });
            };
            let source = if configured.is_some() {
                "quotaLimits"
            } else {
                "the request"
            };
            let why = format!("set to {value} from {source} (ResourceQuota {name} requires {key})");
            warnings.push(format!("{container} {} {why}", field.describe()));
            resources.adjust(field, value, why);
        }
    }
    Ok(())
}

/// The pod's quota usage of `resource` on `side` with the injected containers at the given
/// sizes (`None` for the pod without them): the pod-level value grown as injection grows it,
/// else the containers' aggregate.
fn usage(
    pod: PodView<'_>,
    resource: Resource,
    side: Side,
    ours: Option<(&ProxyResources, &ProxyResources, Placement)>,
) -> i64 {
    let after = aggregate(pod, resource, side, ours);
    match pod_level_value(pod.pod, resource, side).filter(|_| resource != Resource::EphemeralStorage) {
        Some(pod_level) => {
            let before = aggregate(pod, resource, side, None);
            pod_level.saturating_add(after.saturating_sub(before).max(0))
        }
        None => after,
    }
}

/// Shrinks the proxy into what is left of one quota, or denies.
fn fit_quota(
    inputs: &QuotaInputs<'_>,
    quota: &QuotaView<'_>,
    proxy: &mut ProxyResources,
    init: &mut ProxyResources,
    warnings: &mut Vec<String>,
) -> Result<(), InjectError> {
    let (hard, Some(used)) = (quota.hard, quota.used) else {
        return Ok(());
    };
    let pod = inputs.pod;
    for (key, hard_value) in hard {
        let Some((resource, side)) = quota_resource(key) else {
            continue;
        };
        let kind = resource.kind();
        let Some(used_value) = used.get(key).and_then(|q| Quantity::parse(&q.0, kind).ok()) else {
            continue;
        };
        let Ok(hard_value) = Quantity::parse(&hard_value.0, kind) else {
            continue;
        };
        let left = hard_value.units().saturating_sub(used_value.units());
        let need = usage(pod, resource, side, Some((proxy, init, inputs.placement)));
        if need <= left {
            continue;
        }
        let overrun = Overrun {
            quota: &quota.name,
            key,
            resource,
            side,
            hard: hard_value,
            used: used_value,
            left,
            need,
            without: usage(pod, resource, side, None),
        };
        shrink_into(inputs, &overrun, proxy, init, warnings)?;
    }
    Ok(())
}

/// One hard limit of a quota that the pod, with its injected containers, goes over.
struct Overrun<'q> {
    quota: &'q str,
    /// The quota's key, e.g. `limits.cpu`.
    key: &'q str,
    resource: Resource,
    side: Side,
    hard: Quantity,
    used: Quantity,
    /// Hard less used, in units (negative when already over).
    left: i64,
    /// The pod's usage with the injected containers.
    need: i64,
    /// The pod's usage without them.
    without: i64,
}

impl Overrun<'_> {
    /// `units` of the resource, written as a quantity.
    fn show(&self, units: i64) -> String {
        quantity(self.resource, units).to_string()
    }

    /// The adjustment that lowers the proxy to `wanted` units.
    fn lowered(&self, wanted: i64) -> String {
        format!(
            "lowered to {} to fit ResourceQuota {} ({}: hard {}, used {}, {} left)",
            self.show(wanted),
            self.quota,
            self.key,
            self.hard,
            self.used,
            self.show(self.left.max(0))
        )
    }

    /// The denial: the pod needs `need`, the injected containers add `share`.
    fn denial(&self, need: i64, share: i64, hint: String) -> InjectError {
        InjectError::QuotaExceeded {
            quota: self.quota.to_string(),
            resource: self.key.to_string(),
            figures: format!(
                "the pod needs {}, of which the injected containers add {}, and {} is left (hard {}, used {}){hint}",
                self.show(need),
                self.show(share),
                self.show(self.left.max(0)),
                self.hard,
                self.used,
            ),
        }
    }
}

/// Lowers the proxy (and an init container sized like it) so the pod fits `overrun`'s quota,
/// with a warning, or denies when the quota says deny or the proxy cannot shrink enough.
fn shrink_into(
    inputs: &QuotaInputs<'_>,
    overrun: &Overrun<'_>,
    proxy: &mut ProxyResources,
    init: &mut ProxyResources,
    warnings: &mut Vec<String>,
) -> Result<(), InjectError> {
    let (resource, side, left, need, without) = (
        overrun.resource,
        overrun.side,
        overrun.left,
        overrun.need,
        overrun.without,
    );
    let share = need.saturating_sub(without);
    let show = |units: i64| overrun.show(units);
    if inputs.tuning.on_quota == OnQuota::Deny {
        return Err(overrun.denial(need, share, String::new()));
    }
    let field = FieldKey::new(resource, side);
    let current = match side {
        Side::Request => proxy.effective_request(resource),
        Side::Limit => proxy.value(field),
    };
    let Some(current) = current.map(|q| q.units()) else {
        return Err(overrun.denial(need, share, "; the proxy sets no such value to shrink".into()));
    };
    let floor = shrink_floor(inputs, proxy, field);
    let wanted = current.saturating_sub(need - left).max(floor);
    let mut trial_proxy = proxy.clone();
    let mut trial_init = init.clone();
    let why = overrun.lowered(wanted);
    shrink(
        &mut trial_proxy,
        &mut trial_init,
        field,
        current,
        wanted,
        inputs.guaranteed,
        &why,
    );
    let new_need = usage(
        inputs.pod,
        resource,
        side,
        Some((&trial_proxy, &trial_init, inputs.placement)),
    );
    if new_need > left {
        let hint = format!(
            "; the proxy cannot shrink below {} ({})",
            show(floor),
            floor_reason(inputs, field)
        );
        return Err(overrun.denial(new_need, new_need.saturating_sub(without), hint));
    }
    warnings.push(format!(
        "proxy {} {} {why}: the pod needed {}, of which the injected containers added {}; the API server has the last word, and the used figure may be stale",
        field.describe(),
        show(current),
        show(need),
        show(share)
    ));
    *proxy = trial_proxy;
    *init = trial_init;
    Ok(())
}

/// Lowers `field` of the proxy to `wanted`, and of an init container sized like it; keeps
/// the other side equal when the proxy is kept Guaranteed, and request ≤ limit.
fn shrink(
    proxy: &mut ProxyResources,
    init: &mut ProxyResources,
    field: FieldKey,
    current: i64,
    wanted: i64,
    guaranteed: bool,
    why: &str,
) {
    let value = quantity(field.resource, wanted);
    let other = field.other_side();
    let init_current = match field.side {
        Side::Request => init.effective_request(field.resource),
        Side::Limit => init.value(field),
    };
    for (resources, is_proxy) in [(proxy, true), (init, false)] {
        if !is_proxy && init_current.is_none_or(|v| v.units() <= wanted) {
            continue;
        }
        if !is_proxy && init_current.is_some_and(|v| v.units() != current) {
            // The init container was sized on its own; lower it only to the new value.
            resources.adjust(field, value, why.to_string());
            continue;
        }
        resources.adjust(field, value, why.to_string());
        let guaranteed_pair = guaranteed && field.resource != Resource::EphemeralStorage;
        let request_above_limit =
            field.side == Side::Limit && resources.value(other).is_some_and(|request| request.units() > wanted);
        if guaranteed_pair || request_above_limit {
            resources.adjust(other, value, why.to_string());
        }
    }
}

/// How far the proxy's `field` may shrink: its bounds min and the LimitRange Container min,
/// and for a limit the request (unless the request moves with it, Guaranteed).
fn shrink_floor(inputs: &QuotaInputs<'_>, proxy: &ProxyResources, field: FieldKey) -> i64 {
    let bound = inputs.bounds.range(field).min.as_ref().map(|b| b.value.units());
    let limit_range = container_min(inputs.limit_ranges, field.resource);
    let request = (field.side == Side::Limit && !inputs.guaranteed)
        .then(|| proxy.effective_request(field.resource).map(|v| v.units()))
        .flatten();
    let other_min = inputs
        .guaranteed
        .then(|| {
            inputs
                .bounds
                .range(field.other_side())
                .min
                .as_ref()
                .map(|b| b.value.units())
        })
        .flatten();
    [bound, limit_range, request, other_min]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
        .max(if field.resource == Resource::Cpu { 1 } else { 0 })
}

fn floor_reason(inputs: &QuotaInputs<'_>, field: FieldKey) -> String {
    let mut reasons = Vec::new();
    if let Some(bound) = inputs.bounds.range(field).min.as_ref() {
        reasons.push(format!("{} min {}", bound.origin, bound.value));
    }
    if let Some(min) = container_min(inputs.limit_ranges, field.resource) {
        reasons.push(format!("LimitRange min {}", quantity(field.resource, min)));
    }
    if field.side == Side::Limit && !inputs.guaranteed {
        reasons.push("its request".into());
    }
    if reasons.is_empty() {
        "its smallest size".into()
    } else {
        reasons.join(", ")
    }
}

mod scopes;
#[cfg(test)]
mod tests;
