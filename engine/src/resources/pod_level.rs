//! Step 6: pod-level resources (`spec.resources`, KEP-2837, on by default in Kubernetes 1.34).
//!
//! The API server requires pod-level requests to cover the containers' effective requests
//! (regular and restartable init containers summed, or the peak of one init container plus
//! the restartable ones before it, whichever is larger) and pod-level limits to cover each
//! regular container's limit. Adding a proxy to such a pod would get it refused, or, with
//! room to spare, eat into the app's budget. So every pod-level value the pod sets grows by
//! what injection adds to the same aggregate (requests and limits alike), so the app keeps its
//! budget. A pod-level Guaranteed pod (requests equal to limits for CPU and memory) stays
//! Guaranteed, and a LimitRange `type: Pod` max, which LimitRanger compares with the
//! pod-level values, is never exceeded: the growth is shrunk to the max with a warning while
//! the containers still fit, and the pod is denied naming the LimitRange when they do not.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, LimitRange, Pod};

use super::app_amounts::{ContainerAmounts, PodView};
use super::limit_range::{pod_max, pod_total, quantity};
use super::ratio::request_or_limit;
use super::{FieldKey, ProxyResources, Resource, Side};
use crate::decision::is_injected_container;
use crate::error::InjectError;
use crate::quantity::Quantity;

/// The resources Kubernetes accepts at pod level.
const POD_LEVEL: [Resource; 2] = [Resource::Cpu, Resource::Memory];

/// Where injection puts its containers, which decides how they count.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// Native sidecar layout: the init container, then the restartable proxy, first among
    /// the init containers.
    pub native: bool,
    /// Whether an init container is added at all (not for interception mode `NONE`).
    pub with_init: bool,
    /// In the classic layout, whether the init container goes first (CNI) or last.
    pub init_first: bool,
}

/// One pod-level value injection changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLevelChange {
    /// CPU or memory.
    pub resource: Resource,
    /// Request or limit.
    pub side: Side,
    /// The pod's value.
    pub from: Quantity,
    /// The value after injection.
    pub to: Quantity,
    /// Why it is not simply the pod's value plus what injection adds, when it is not.
    pub note: Option<String>,
}

impl PodLevelChange {
    /// `spec.resources` key: `requests` or `limits`.
    pub fn list(&self) -> &'static str {
        match self.side {
            Side::Request => "requests",
            Side::Limit => "limits",
        }
    }

    /// The provenance entry: key `pod.cpu.request`, the new value and how it was reached.
    pub fn provenance(&self) -> (String, serde_json::Value) {
        let mut entry = serde_json::json!({
            "value": self.to.to_string(),
            "from": format!("pod spec.resources {} plus the injected containers", self.from),
        });
        if let Some(note) = &self.note {
            entry["adjusted"] = serde_json::json!(note);
        }
        (format!("pod.{}", FieldKey::new(self.resource, self.side)), entry)
    }
}

/// The pod's own value of `resource` on `side` at pod level, in units.
pub fn pod_level_value(pod: &Pod, resource: Resource, side: Side) -> Option<i64> {
    let resources = pod.spec.as_ref()?.resources.as_ref()?;
    let map = match side {
        Side::Request => resources.requests.as_ref(),
        Side::Limit => resources.limits.as_ref(),
    };
    request_or_limit(map, None, resource)
}

/// The pod-level values that must grow for the injected `proxy` and `init` containers.
pub(crate) fn grow_pod_level(
    view: PodView<'_>,
    proxy: &ProxyResources,
    init: &ProxyResources,
    placement: Placement,
    limit_ranges: &[LimitRange],
    warnings: &mut Vec<String>,
) -> Result<Vec<PodLevelChange>, InjectError> {
    let pod = view.pod;
    let mut changes = Vec::new();
    if pod.spec.as_ref().and_then(|spec| spec.resources.as_ref()).is_none() {
        return Ok(changes);
    }
    let guaranteed = is_pod_level_guaranteed(pod);
    for resource in POD_LEVEL {
        let mut values: BTreeMap<Side, (i64, i64, Option<String>)> = BTreeMap::new();
        for side in [Side::Request, Side::Limit] {
            let Some(old) = pod_level_value(pod, resource, side) else {
                continue;
            };
            let before = aggregate(view, resource, side, None);
            let after = aggregate(view, resource, side, Some((proxy, init, placement)));
            let mut new = old.saturating_add(after.saturating_sub(before).max(0));
            if side == Side::Limit && !placement.native {
                // A regular container's limit may not exceed the pod's.
                new = new.max(amount(proxy, resource, side));
            }
            values.insert(side, (old, new, None));
        }
        if let (Some(&(_, request, _)), Some(&(_, limit, _))) = (values.get(&Side::Request), values.get(&Side::Limit)) {
            if guaranteed && request != limit {
                let top = request.max(limit);
                for entry in values.values_mut().filter(|entry| entry.1 != top) {
                    entry.1 = top;
                    entry.2 = Some("raised to keep the pod Guaranteed (pod-level requests equal to limits)".into());
                }
            } else if request > limit
                && let Some(entry) = values.get_mut(&Side::Limit)
            {
                entry.1 = request;
                entry.2 = Some("raised to the pod-level request".into());
            }
        }
        fit_pod_max(
            view,
            resource,
            &mut values,
            proxy,
            init,
            placement,
            limit_ranges,
            warnings,
        )?;
        for (side, (old, new, note)) in values {
            if new != old {
                changes.push(PodLevelChange {
                    resource,
                    side,
                    from: quantity(resource, old),
                    to: quantity(resource, new),
                    note,
                });
            }
        }
    }
    Ok(changes)
}

/// Shrinks pod-level values above the LimitRange `Pod` max to it, while the containers still
/// fit; denies naming the LimitRange when they do not.
#[allow(clippy::too_many_arguments)]
fn fit_pod_max(
    view: PodView<'_>,
    resource: Resource,
    values: &mut BTreeMap<Side, (i64, i64, Option<String>)>,
    proxy: &ProxyResources,
    init: &ProxyResources,
    placement: Placement,
    limit_ranges: &[LimitRange],
    warnings: &mut Vec<String>,
) -> Result<(), InjectError> {
    let Some((max, limit_range)) = pod_max(limit_ranges, resource) else {
        return Ok(());
    };
    for (side, (old, new, note)) in values.iter_mut() {
        if *new <= max {
            continue;
        }
        let key = FieldKey::new(resource, *side);
        let needed = match side {
            Side::Request => aggregate(view, resource, *side, Some((proxy, init, placement))),
            Side::Limit => largest_regular_limit(view, resource, proxy, placement),
        };
        if needed > max {
            return Err(InjectError::PodLimitExceeded {
                needed: format!("pod-level {} {}", key.describe(), quantity(resource, needed)),
                limit_range,
                max: quantity(resource, max).to_string(),
                hint: format!(
                    "; the pod sets {} and its containers need that much",
                    quantity(resource, *old)
                ),
            });
        }
        let reason = format!(
            "lowered to {} (LimitRange {limit_range} per-Pod max) from {}: the app's containers get less than before",
            quantity(resource, max),
            quantity(resource, *new)
        );
        warnings.push(format!("pod-level {} {reason}", key.describe()));
        *new = max;
        *note = Some(reason);
    }
    Ok(())
}

/// Whether QoS comes out Guaranteed from the pod-level values, as `ComputePodQOS` decides it.
pub(crate) fn is_pod_level_guaranteed(pod: &Pod) -> bool {
    POD_LEVEL.into_iter().all(|resource| {
        let limit = pod_level_value(pod, resource, Side::Limit);
        limit.is_some() && pod_level_value(pod, resource, Side::Request).is_none_or(|r| Some(r) == limit)
    })
}

/// A proxy or init container's amount; a request is its limit when only that is set.
fn amount(resources: &ProxyResources, resource: Resource, side: Side) -> i64 {
    match side {
        Side::Request => resources.effective_request(resource),
        Side::Limit => resources.value(FieldKey::new(resource, side)),
    }
    .map_or(0, |value| value.units())
}

/// The containers' aggregate for `side` (Kubernetes' `AggregateContainerRequests`/`Limits`):
/// of the pod as it is (`injected: None`), or with the app's containers and ours in place.
pub(crate) fn aggregate(
    pod: PodView<'_>,
    resource: Resource,
    side: Side,
    injected: Option<(&ProxyResources, &ProxyResources, Placement)>,
) -> i64 {
    if pod.spec().is_none() {
        return 0;
    }
    let keep = |(c, _): &(&Container, &ContainerAmounts)| injected.is_none() || !is_injected_container(&c.name);
    let mut regular: Vec<i64> = pod
        .containers()
        .filter(keep)
        .map(|(_, amounts)| amounts.on_side(resource, side))
        .collect();
    let mut inits: Vec<(i64, bool)> = pod
        .init_containers()
        .filter(keep)
        .map(|(c, amounts)| {
            (
                amounts.on_side(resource, side),
                c.restart_policy.as_deref() == Some("Always"),
            )
        })
        .collect();
    if let Some((proxy, init, placement)) = injected {
        let ours_init = placement.with_init.then(|| (amount(init, resource, side), false));
        let ours_proxy = amount(proxy, resource, side);
        if placement.native {
            let front: Vec<(i64, bool)> = ours_init.into_iter().chain([(ours_proxy, true)]).collect();
            inits.splice(0..0, front);
        } else {
            regular.push(ours_proxy);
            match ours_init {
                Some(ours) if placement.init_first => inits.insert(0, ours),
                Some(ours) => inits.push(ours),
                None => {}
            }
        }
    }
    pod_total(&regular, &inits)
}

/// The largest limit among the regular containers after injection.
fn largest_regular_limit(pod: PodView<'_>, resource: Resource, proxy: &ProxyResources, placement: Placement) -> i64 {
    let apps = pod
        .app_containers()
        .map(|(_, amounts)| amounts.on_side(resource, Side::Limit));
    let ours = (!placement.native).then(|| amount(proxy, resource, Side::Limit));
    apps.chain(ours).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Source;
    use crate::resources::app_amounts::AppAmounts;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": value})).unwrap()
    }

    fn proxy(cpu: (i64, i64), memory: (i64, i64)) -> ProxyResources {
        let mut resources = ProxyResources::unset();
        for (resource, (request, limit)) in [(Resource::Cpu, cpu), (Resource::Memory, memory)] {
            for (side, units) in [(Side::Request, request), (Side::Limit, limit)] {
                let field = resources.field_mut(FieldKey::new(resource, side));
                field.value = Some(quantity(resource, units));
                field.source = Source::ConfigDefault;
            }
        }
        resources
    }

    const CLASSIC: Placement = Placement {
        native: false,
        with_init: true,
        init_first: false,
    };

    fn changes(pod: &Pod, placement: Placement, limit_ranges: &[LimitRange]) -> Result<Vec<String>, String> {
        let ours = proxy((100, 2000), (128 << 20, 1 << 30));
        let mut warnings = Vec::new();
        let amounts = AppAmounts::of(pod);
        let view = PodView { pod, amounts: &amounts };
        grow_pod_level(view, &ours, &ours, placement, limit_ranges, &mut warnings)
            .map(|changes| {
                changes
                    .iter()
                    .map(|c| format!("{} {} {}->{}", c.list(), c.resource.name(), c.from, c.to))
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn pod_level_requests_grow_by_what_the_proxy_adds() {
        let app = pod(json!({
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
            "containers": [{"name": "app", "resources": {"requests": {"cpu": "900m"}}}],
        }));
        assert_eq!(
            changes(&app, CLASSIC, &[]).unwrap(),
            ["requests cpu 1->1100m", "requests memory 1Gi->1152Mi"]
        );
        let untouched = pod(json!({"containers": [{"name": "app"}]}));
        assert_eq!(changes(&untouched, CLASSIC, &[]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn an_init_container_counts_by_its_peak() {
        // The app's init container needs 3 CPUs on its own, more than the proxy adds to the
        // regular containers: the aggregate does not move, and neither does the pod.
        let big_init = pod(json!({
            "resources": {"requests": {"cpu": "3"}},
            "initContainers": [{"name": "setup", "resources": {"requests": {"cpu": "3"}}}],
            "containers": [{"name": "app", "resources": {"requests": {"cpu": "1"}}}],
        }));
        assert_eq!(changes(&big_init, CLASSIC, &[]).unwrap(), Vec::<String>::new());
        // Native: the proxy runs beside every later init container, so it adds to the peak.
        let native = Placement {
            native: true,
            ..CLASSIC
        };
        assert_eq!(changes(&big_init, native, &[]).unwrap(), ["requests cpu 3->3100m"]);
    }

    #[test]
    fn a_guaranteed_pod_stays_guaranteed() {
        // Resolution equalizes the proxy of such a pod (qos); were it not, both sides rise
        // to the larger growth.
        let guaranteed = pod(json!({
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "containers": [{"name": "app"}],
        }));
        assert_eq!(
            changes(&guaranteed, CLASSIC, &[]).unwrap(),
            [
                "requests cpu 1->3",
                "limits cpu 1->3",
                "requests memory 1Gi->2Gi",
                "limits memory 1Gi->2Gi"
            ]
        );
    }

    #[test]
    fn a_limit_range_pod_max_shrinks_or_denies() {
        let limit_range: LimitRange = serde_json::from_value(json!({
            "metadata": {"name": "pods"},
            "spec": {"limits": [{"type": "Pod", "max": {"cpu": "1050m"}}]},
        }))
        .unwrap();
        let roomy = pod(json!({
            "resources": {"requests": {"cpu": "1"}},
            "containers": [{"name": "app", "resources": {"requests": {"cpu": "500m"}}}],
        }));
        assert_eq!(
            changes(&roomy, CLASSIC, std::slice::from_ref(&limit_range)).unwrap(),
            ["requests cpu 1->1050m"]
        );
        let full = pod(json!({
            "resources": {"requests": {"cpu": "1"}},
            "containers": [{"name": "app", "resources": {"requests": {"cpu": "1"}}}],
        }));
        let error = changes(&full, CLASSIC, &[limit_range]).unwrap_err();
        assert!(
            error.contains("pod-level CPU request 1100m, above LimitRange pods per-Pod max 1050m"),
            "{error}"
        );
    }
}
