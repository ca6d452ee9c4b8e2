//! Which ResourceQuotas apply to the injected pod: `scopes` and `scopeSelector`, as the
//! API server's pod evaluator matches them (`podMatchesScopeFunc`). `BestEffort` is judged
//! with the injected containers, which rarely leave a pod BestEffort.

use k8s_openapi::api::core::v1::{ResourceQuota, ScopedResourceSelectorRequirement};

use super::super::app_amounts::PodView;
use super::super::{FieldKey, ProxyResources, Resource, Side};

/// Whether the quota's scopes and scope selector all match the injected pod.
pub(super) fn quota_matches(
    quota: &ResourceQuota,
    pod: PodView<'_>,
    proxy: &ProxyResources,
    init: &ProxyResources,
) -> bool {
    let Some(spec) = quota.spec.as_ref() else { return true };
    let scope_names = spec
        .scopes
        .iter()
        .flatten()
        .map(|scope| ScopedResourceSelectorRequirement {
            scope_name: scope.clone(),
            operator: "Exists".into(),
            values: None,
        });
    let selector = spec
        .scope_selector
        .iter()
        .flat_map(|selector| selector.match_expressions.iter().flatten().cloned());
    scope_names
        .chain(selector)
        .all(|requirement| scope_matches(&requirement, pod, proxy, init))
}

fn scope_matches(
    requirement: &ScopedResourceSelectorRequirement,
    pod: PodView<'_>,
    proxy: &ProxyResources,
    init: &ProxyResources,
) -> bool {
    let spec = pod.spec();
    let terminating = spec
        .and_then(|s| s.active_deadline_seconds)
        .is_some_and(|seconds| seconds >= 0);
    let best_effort = is_best_effort(pod, proxy, init);
    let matched = match requirement.scope_name.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "PriorityClass" => {
            let class = spec
                .and_then(|s| s.priority_class_name.as_deref())
                .filter(|c| !c.is_empty());
            let values = requirement.values.iter().flatten();
            return match requirement.operator.as_str() {
                "Exists" => class.is_some(),
                "DoesNotExist" => class.is_none(),
                "In" => class.is_some_and(|class| values.clone().any(|v| v == class)),
                "NotIn" => !class.is_some_and(|class| values.clone().any(|v| v == class)),
                _ => false,
            };
        }
        _ => return false,
    };
    match requirement.operator.as_str() {
        "Exists" => matched,
        "DoesNotExist" => !matched,
        _ => false,
    }
}

/// BestEffort: no container, ours included, requests or limits CPU or memory.
fn is_best_effort(pod: PodView<'_>, proxy: &ProxyResources, init: &ProxyResources) -> bool {
    let ours = [proxy, init].into_iter().all(|resources| {
        [Resource::Cpu, Resource::Memory].into_iter().all(|resource| {
            resources.effective_request(resource).is_none()
                && resources.value(FieldKey::new(resource, Side::Limit)).is_none()
        })
    });
    ours && pod
        .app_containers()
        .chain(pod.app_init_containers())
        .all(|(_, amounts)| !amounts.declares_cpu_or_memory())
}
