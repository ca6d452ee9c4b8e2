//! The settings derived from the proxy's resources, which a resize must leave true.
//!
//! - `--concurrency N` is a literal argument: a CPU resize that gives another worker count
//!   is refused (unless `proxy.istio.io/config` fixes `concurrency`, so nothing is derived).
//! - Without it, pilot-agent sizes Envoy from `ISTIO_CPU_LIMIT`, a `resourceFieldRef` read
//!   when the container starts: with CPU `NotRequired` there is no restart, so a CPU limit
//!   resize that changes the whole-core count is refused.
//! - `GOMEMLIMIT` as a number never follows the limit: a memory limit resize is refused. As a
//!   `resourceFieldRef` it is re-read on restart, so it is refused only when the memory
//!   policy is `NotRequired`.

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::Injector;
use crate::config::ResizeRestart;
use crate::error::InjectError;
use crate::proxy_config::ProxyConfig;
use crate::resize_policy::ProxyResizePolicy;
use crate::resources::{FieldKey, ProxyResources, Resource, Side};

/// Refuses the change from `old` to `proposed` when a derived setting would go stale.
pub(crate) fn check(
    injector: &Injector,
    pod: &Pod,
    proxy: &Container,
    old: &ProxyResources,
    proposed: &ProxyResources,
) -> Result<(), InjectError> {
    let policy = ProxyResizePolicy::of_container(proxy.resize_policy.as_deref());
    let fixed_by_user = ProxyConfig::from_annotations(pod.metadata.annotations.as_ref())
        .map(|config| config.concurrency.is_some())
        .unwrap_or(false);
    if !fixed_by_user {
        check_concurrency(injector, proxy, old, proposed, policy)?;
    }
    check_go_memory_limit(proxy, old, proposed, policy)
}

/// The `--concurrency` argument of the stored proxy, if any.
fn concurrency_argument(proxy: &Container) -> Option<i64> {
    let args = proxy.args.as_deref().unwrap_or_default();
    let at = args.iter().position(|arg| arg == "--concurrency")?;
    args.get(at + 1)?.parse().ok()
}

fn check_concurrency(
    injector: &Injector,
    proxy: &Container,
    old: &ProxyResources,
    proposed: &ProxyResources,
    policy: ProxyResizePolicy,
) -> Result<(), InjectError> {
    if let Some(workers) = concurrency_argument(proxy) {
        let derived = proposed.concurrency(injector.concurrency());
        if let Some(new_workers) = derived.filter(|new| *new != workers) {
            return Err(InjectError::ResizeRefused {
                reason: format!(
                    "the proxy's CPU would give Envoy {new_workers} worker threads, but --concurrency {workers} is fixed in its arguments; resize within the same whole number of cores, or recreate the pod"
                ),
            });
        }
        return Ok(());
    }
    let limit = FieldKey::new(Resource::Cpu, Side::Limit);
    let cores = |resources: &ProxyResources| resources.value(limit).map(|q| (q.units() + 999) / 1000);
    let reads_limit = proxy.env.iter().flatten().any(|env| env.name == "ISTIO_CPU_LIMIT");
    if reads_limit && cores(old) != cores(proposed) && policy.cpu == ResizeRestart::NotRequired {
        return Err(InjectError::ResizeRefused {
            reason: format!(
                "pilot-agent sized Envoy from ISTIO_CPU_LIMIT when the proxy started, and its CPU resizePolicy NotRequired does not restart it; a CPU limit of {} cores would leave that stale; resize within the same whole number of cores",
                cores(proposed).map_or_else(|| "no".to_string(), |c| c.to_string())
            ),
        });
    }
    Ok(())
}

fn check_go_memory_limit(
    proxy: &Container,
    old: &ProxyResources,
    proposed: &ProxyResources,
    policy: ProxyResizePolicy,
) -> Result<(), InjectError> {
    let limit = FieldKey::new(Resource::Memory, Side::Limit);
    if old.value(limit) == proposed.value(limit) {
        return Ok(());
    }
    let Some(env) = proxy.env.iter().flatten().find(|env| env.name == "GOMEMLIMIT") else {
        return Ok(());
    };
    let shown = proposed
        .value(limit)
        .map_or_else(|| "none".to_string(), |q| q.to_string());
    if let Some(value) = &env.value {
        return Err(InjectError::ResizeRefused {
            reason: format!(
                "GOMEMLIMIT={value} is fixed in the proxy's environment and would not follow a memory limit of {shown}; resize the memory request only, or recreate the pod"
            ),
        });
    }
    if policy.memory == ResizeRestart::NotRequired {
        return Err(InjectError::ResizeRefused {
            reason: format!(
                "GOMEMLIMIT is read from limits.memory when the proxy starts, and its memory resizePolicy NotRequired does not restart it; a memory limit of {shown} would leave it stale"
            ),
        });
    }
    Ok(())
}
