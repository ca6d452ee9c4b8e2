//! Step 4: LimitRanges, judged as the API server's LimitRanger will judge the pod.
//!
//! LimitRanger applies `default` and `defaultRequest` before mutating webhooks run, so it
//! never fills the containers we add; we fill them here, for fields nothing else set.
//! It validates after us, so the proxy and init container must satisfy every
//! `type: Container` item (min, max, maxLimitRequestRatio), and the whole pod every
//! `type: Pod` max. Several LimitRanges combine as Kubernetes combines them: each must
//! hold, so the tightest min, max and ratio win; defaults come from the first LimitRange
//! by name that has one. Values are clamped into range with a warning; when no value can
//! satisfy every constraint the pod is denied with a message naming the LimitRange.

use k8s_openapi::api::core::v1::LimitRange;

use super::app_amounts::PodView;
use super::{FieldKey, ProxyResources, Resource, Side, Source};
use crate::error::InjectError;
use crate::fields::FieldBounds;
use crate::quantity::{Quantity, ResourceKind};

/// A constraint value and the LimitRange it came from.
#[derive(Debug, Clone)]
struct Named {
    units: i64,
    limit_range: String,
}

/// The combined constraints of one type for one resource.
#[derive(Debug, Clone, Default)]
struct Combined {
    min: Option<Named>,
    max: Option<Named>,
    /// maxLimitRequestRatio in thousandths.
    ratio_milli: Option<Named>,
    default_limit: Option<Named>,
    default_request: Option<Named>,
}

fn quantity_units(text: &str, kind: ResourceKind) -> Option<i64> {
    Quantity::parse(text, kind).ok().map(|q| q.units())
}

/// Combines the items of `item_type` (`Container` or `Pod`) for `resource`.
fn combine(limit_ranges: &[LimitRange], item_type: &str, resource: Resource) -> Combined {
    let mut sorted: Vec<&LimitRange> = limit_ranges.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut combined = Combined::default();
    for limit_range in sorted {
        let name = limit_range.metadata.name.clone().unwrap_or_default();
        let items = limit_range.spec.iter().flat_map(|spec| spec.limits.iter());
        for item in items.filter(|item| item.type_ == item_type) {
            let get = |map: &Option<
                std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
            >,
                       kind: ResourceKind| {
                map.as_ref()
                    .and_then(|map| map.get(resource.name()))
                    .and_then(|q| quantity_units(&q.0, kind))
                    .map(|units| Named {
                        units,
                        limit_range: name.clone(),
                    })
            };
            let kind = resource.kind();
            let tighter = |current: &mut Option<Named>, new: Option<Named>, keep_larger: bool| {
                if let Some(new) = new {
                    let replace = current.as_ref().is_none_or(|c| {
                        if keep_larger {
                            new.units > c.units
                        } else {
                            new.units < c.units
                        }
                    });
                    if replace {
                        *current = Some(new);
                    }
                }
            };
            tighter(&mut combined.min, get(&item.min, kind), true);
            tighter(&mut combined.max, get(&item.max, kind), false);
            tighter(
                &mut combined.ratio_milli,
                get(&item.max_limit_request_ratio, ResourceKind::Cpu),
                false,
            );
            // API defaulting: default limit falls back to max; default request to default, then min.
            let default_limit = get(&item.default, kind).or_else(|| get(&item.max, kind));
            let default_request = get(&item.default_request, kind)
                .or_else(|| default_limit.clone())
                .or_else(|| get(&item.min, kind));
            if combined.default_limit.is_none() {
                combined.default_limit = default_limit;
            }
            if combined.default_request.is_none() {
                combined.default_request = default_request;
            }
        }
    }
    combined
}

/// A quantity of `resource` from its units (millicores or bytes).
pub(crate) fn quantity(resource: Resource, units: i64) -> Quantity {
    match resource {
        Resource::Cpu => Quantity::from_millicores(units),
        Resource::Memory | Resource::EphemeralStorage => Quantity::from_bytes(units),
    }
}

/// Sets a field to `units`, recording `{verb} to {value} ({reason})` and warning when it
/// replaces a value.
fn set(
    resources: &mut ProxyResources,
    key: FieldKey,
    units: i64,
    verb: &str,
    reason: String,
    warnings: &mut Vec<String>,
) {
    let value = quantity(key.resource, units);
    let why = format!("{verb} to {value} ({reason})");
    if let Some(old) = resources.value(key) {
        warnings.push(format!("proxy {} {old} {why}", key.describe()));
    }
    resources.adjust(key, value, why);
}

/// Fills defaults and clamps the proxy (and init container) into every Container item.
pub fn apply_container_limits(
    resources: &mut ProxyResources,
    limit_ranges: &[LimitRange],
    bounds: &FieldBounds,
    warnings: &mut Vec<String>,
) -> Result<(), InjectError> {
    if limit_ranges.is_empty() {
        return Ok(());
    }
    for resource in Resource::ALL {
        let combined = combine(limit_ranges, "Container", resource);
        apply_defaults(resources, resource, &combined);
        if let Some(min) = &combined.min {
            apply_bound(resources, resource, End::Min, min, warnings);
        }
        if let Some(max) = &combined.max {
            apply_bound(resources, resource, End::Max, max, warnings);
        }
        if let Some(ratio) = &combined.ratio_milli {
            apply_ratio(resources, resource, ratio, warnings);
        }
        check_container_constraints(resources, resource, &combined, bounds)?;
    }
    Ok(())
}

/// Fills the unset limit and request of `resource` with the LimitRanges' defaults.
fn apply_defaults(resources: &mut ProxyResources, resource: Resource, combined: &Combined) {
    let request_key = FieldKey::new(resource, Side::Request);
    let limit_key = FieldKey::new(resource, Side::Limit);
    if resources.value(limit_key).is_none()
        && let Some(default) = &combined.default_limit
    {
        let field = resources.field_mut(limit_key);
        field.value = Some(quantity(resource, default.units));
        field.source = Source::LimitRangeDefault(default.limit_range.clone());
    }
    if resources.value(request_key).is_none()
        && let Some(default) = &combined.default_request
    {
        let field = resources.field_mut(request_key);
        field.value = Some(quantity(resource, default.units));
        field.source = Source::LimitRangeDefault(default.limit_range.clone());
    }
}

/// Which end of a LimitRange's range a bound is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Min,
    Max,
}

/// Brings the request and limit of `resource` within `bound`: a min raises the values below
/// it and sets the request when neither is set; a max lowers the values above it and sets
/// the limit when unset.
fn apply_bound(
    resources: &mut ProxyResources,
    resource: Resource,
    end: End,
    bound: &Named,
    warnings: &mut Vec<String>,
) {
    let request_key = FieldKey::new(resource, Side::Request);
    let limit_key = FieldKey::new(resource, Side::Limit);
    let (word, verb, order) = match end {
        End::Min => ("min", "raised", [request_key, limit_key]),
        End::Max => ("max", "lowered", [limit_key, request_key]),
    };
    let reason = || format!("LimitRange {} {word}", bound.limit_range);
    for key in order {
        let outside = resources.value(key).is_some_and(|v| match end {
            End::Min => v.units() < bound.units,
            End::Max => v.units() > bound.units,
        });
        if outside {
            set(resources, key, bound.units, verb, reason(), warnings);
        }
    }
    let unset = match end {
        End::Min => {
            (resources.value(request_key).is_none() && resources.value(limit_key).is_none()).then_some(request_key)
        }
        End::Max => resources.value(limit_key).is_none().then_some(limit_key),
    };
    if let Some(key) = unset {
        set(resources, key, bound.units, "set", reason(), warnings);
    }
}

fn apply_ratio(resources: &mut ProxyResources, resource: Resource, ratio: &Named, warnings: &mut Vec<String>) {
    let request_key = FieldKey::new(resource, Side::Request);
    let limit_key = FieldKey::new(resource, Side::Limit);
    let Some(limit) = resources.value(limit_key).map(|v| v.units()) else {
        return;
    };
    let request = resources.effective_request(resource).map(|v| v.units()).unwrap_or(0);
    let allowed_limit = i128::from(request) * i128::from(ratio.units) / 1000;
    if request == 0 {
        let needed = (i128::from(limit) * 1000 + i128::from(ratio.units) - 1) / i128::from(ratio.units.max(1));
        let reason = format!("LimitRange {} maxLimitRequestRatio", ratio.limit_range);
        set(
            resources,
            request_key,
            i64::try_from(needed).unwrap_or(limit),
            "raised",
            reason,
            warnings,
        );
    } else if i128::from(limit) > allowed_limit {
        let lowered = i64::try_from(allowed_limit).unwrap_or(limit).max(request);
        let reason = format!("LimitRange {} maxLimitRequestRatio", ratio.limit_range);
        set(resources, limit_key, lowered, "lowered", reason, warnings);
    }
}

fn check_container_constraints(
    resources: &ProxyResources,
    resource: Resource,
    combined: &Combined,
    bounds: &FieldBounds,
) -> Result<(), InjectError> {
    let request_key = FieldKey::new(resource, Side::Request);
    let limit_key = FieldKey::new(resource, Side::Limit);
    let request = resources.effective_request(resource).map(|v| v.units());
    let limit = resources.value(limit_key).map(|v| v.units());
    let unsatisfiable = |key: FieldKey, reason: String| InjectError::Unsatisfiable {
        field: key.describe(),
        reason,
    };
    if let (Some(min), Some(max)) = (&combined.min, &combined.max)
        && min.units > max.units
    {
        return Err(unsatisfiable(
            request_key,
            format!(
                "LimitRange {} min {} is above LimitRange {} max {}",
                min.limit_range,
                quantity(resource, min.units),
                max.limit_range,
                quantity(resource, max.units)
            ),
        ));
    }
    for (key, value) in [(request_key, request), (limit_key, limit)] {
        let Some(value) = value else { continue };
        let range = bounds.range(key);
        if let (Some(max), Some(min)) = (&range.max, &combined.min)
            && min.units > max.value.units()
            && value > max.value.units()
        {
            return Err(unsatisfiable(
                key,
                format!(
                    "LimitRange {} min {} is above the {} max {}",
                    min.limit_range,
                    quantity(resource, min.units),
                    max.origin,
                    max.value
                ),
            ));
        }
        if let (Some(min), Some(max)) = (&range.min, &combined.max)
            && min.value.units() > max.units
            && value < min.value.units()
        {
            return Err(unsatisfiable(
                key,
                format!(
                    "the {} min {} is above LimitRange {} max {}",
                    min.origin,
                    min.value,
                    max.limit_range,
                    quantity(resource, max.units)
                ),
            ));
        }
    }
    if let (Some(ratio), Some(limit), Some(request)) = (&combined.ratio_milli, limit, request)
        && i128::from(limit) * 1000 > i128::from(request) * i128::from(ratio.units)
    {
        return Err(unsatisfiable(
            limit_key,
            format!(
                "limit/request exceeds LimitRange {} maxLimitRequestRatio",
                ratio.limit_range
            ),
        ));
    }
    Ok(())
}

/// The pod's effective total: max(regular + restartable inits, peak of each regular init
/// plus the restartable inits started before it), per Kubernetes' sidecar accounting.
pub(crate) fn pod_total(regular: &[i64], inits: &[(i64, bool)]) -> i64 {
    let mut restartable_sum = 0i64;
    let mut init_peak = 0i64;
    for &(value, restartable) in inits {
        if restartable {
            restartable_sum = restartable_sum.saturating_add(value);
        } else {
            init_peak = init_peak.max(value.saturating_add(restartable_sum));
        }
    }
    let regular_sum = regular.iter().fold(0i64, |sum, v| sum.saturating_add(*v));
    regular_sum.saturating_add(restartable_sum).max(init_peak)
}

/// The pod's total for `side` with the proxy at `proxy`, as LimitRanger sums it: a container
/// without a limit adds nothing to the limits (LimitRanger refuses a pod for want of a limit
/// only when no container has one, and the proxy has one); `None` for a pod without a spec.
fn pod_total_with_proxy(pod: PodView<'_>, resource: Resource, side: Side, proxy: i64, native: bool) -> Option<i64> {
    let spec = pod.spec()?;
    let mut regular = Vec::with_capacity(spec.containers.len() + 1);
    for (_, amounts) in pod.app_containers() {
        regular.push(amounts.on_side(resource, side));
    }
    // istio-init runs first among init containers and is sized like the proxy.
    let mut inits = vec![(proxy, false)];
    if native {
        inits.push((proxy, true));
    } else {
        regular.push(proxy);
    }
    for (container, amounts) in pod.app_init_containers() {
        let restartable = container.restart_policy.as_deref() == Some("Always");
        inits.push((amounts.on_side(resource, side), restartable));
    }
    Some(pod_total(&regular, &inits))
}

/// The largest `type: Container` min for `resource`, in units.
pub(crate) fn container_min(limit_ranges: &[LimitRange], resource: Resource) -> Option<i64> {
    combine(limit_ranges, "Container", resource).min.map(|min| min.units)
}

/// The tightest `type: Container` max for `resource`, in units, and its LimitRange.
pub(crate) fn container_max(limit_ranges: &[LimitRange], resource: Resource) -> Option<(i64, String)> {
    combine(limit_ranges, "Container", resource)
        .max
        .map(|max| (max.units, max.limit_range))
}

/// The largest `type: Container` min for `resource`, in units, and its LimitRange.
pub(crate) fn container_min_named(limit_ranges: &[LimitRange], resource: Resource) -> Option<(i64, String)> {
    combine(limit_ranges, "Container", resource)
        .min
        .map(|min| (min.units, min.limit_range))
}

/// The tightest `type: Pod` max for `resource`, in units, and the LimitRange that sets it.
pub(crate) fn pod_max(limit_ranges: &[LimitRange], resource: Resource) -> Option<(i64, String)> {
    combine(limit_ranges, "Pod", resource)
        .max
        .map(|max| (max.units, max.limit_range))
}

/// Shrinks the proxy so the pod fits every Pod item's max, or denies naming the LimitRange.
/// A value the pod sets at pod level is left to [`super::pod_level`]: LimitRanger compares
/// the pod-level value, not the containers' total, with the max.
pub(crate) fn apply_pod_limits(
    pod: PodView<'_>,
    resources: &mut ProxyResources,
    limit_ranges: &[LimitRange],
    bounds: &FieldBounds,
    native: bool,
    warnings: &mut Vec<String>,
) -> Result<(), InjectError> {
    for resource in Resource::ALL {
        let Some(max) = combine(limit_ranges, "Pod", resource).max else {
            continue;
        };
        let container_min = combine(limit_ranges, "Container", resource).min.map(|m| m.units);
        for side in [Side::Limit, Side::Request] {
            if super::pod_level::pod_level_value(pod.pod, resource, side).is_some() {
                continue;
            }
            let key = FieldKey::new(resource, side);
            let Some(current) = (match side {
                Side::Request => resources.effective_request(resource),
                Side::Limit => resources.value(key),
            }) else {
                continue;
            };
            let current = current.units();
            let Some(total) = pod_total_with_proxy(pod, resource, side, current, native) else {
                return Err(InjectError::PodLimitExceeded {
                    needed: format!("an unbounded {} limit (a container has no limit)", resource.label()),
                    limit_range: max.limit_range.clone(),
                    max: quantity(resource, max.units).to_string(),
                    hint: "; set limits on every container".into(),
                });
            };
            if total <= max.units {
                continue;
            }
            let floor = [
                bounds.range(key).min.as_ref().map(|b| b.value.units()),
                container_min,
                (side == Side::Limit)
                    .then(|| resources.effective_request(resource).map(|v| v.units()))
                    .flatten(),
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0);
            let wanted = current.saturating_sub(total - max.units).max(floor);
            let new_total = pod_total_with_proxy(pod, resource, side, wanted, native).unwrap_or(i64::MAX);
            if new_total > max.units {
                return Err(InjectError::PodLimitExceeded {
                    needed: format!("{} {}", key.describe(), quantity(resource, new_total)),
                    limit_range: max.limit_range.clone(),
                    max: quantity(resource, max.units).to_string(),
                    hint: format!(
                        "; the proxy is already at its smallest allowed {}",
                        quantity(resource, wanted)
                    ),
                });
            }
            let reason = format!("LimitRange {} per-Pod max", max.limit_range);
            set(resources, key, wanted, "lowered", reason, warnings);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn pod_total_counts_sidecars_and_init_peaks() {
        assert_eq!(pod_total(&[100, 200], &[(50, false)]), 300);
        assert_eq!(pod_total(&[100], &[(500, false)]), 500);
        assert_eq!(pod_total(&[100], &[(50, false), (30, true), (200, false)]), 230);
        assert_eq!(pod_total(&[100], &[(30, true)]), 130);
    }

    #[test]
    fn a_container_without_a_limit_adds_nothing_to_the_pod_limit() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [
            {"name": "app", "resources": {"limits": {"cpu": "1"}}},
            {"name": "unlimited"},
        ]}}))
        .unwrap();
        let amounts = super::super::app_amounts::AppAmounts::of(&pod);
        let view = PodView {
            pod: &pod,
            amounts: &amounts,
        };
        assert_eq!(
            pod_total_with_proxy(view, Resource::Cpu, Side::Limit, 500, false),
            Some(1500)
        );
    }
}
