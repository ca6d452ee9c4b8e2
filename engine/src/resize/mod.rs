//! The resize guard: the judgement of an in-place resize (`pods/resize`, KEP-1287) of an
//! injected pod, as its own stage beside `plan` → `render` → `emit`.
//!
//! A resize that changes an injected container is judged by the admission policy:
//! request ≤ limit; the bounds (`onViolation: clamp` moves a value to its bound with a
//! warning, `deny` refuses naming the bound); LimitRange `type: Container` min and max
//! (clamped); the pod's QoS class (which the API server refuses to change); and the settings
//! derived from the proxy's resources (its `derived` module), which must stay true. A resize of the
//! app containers of a pod whose proxy request was sized by ratio (`proxyCPURatio`,
//! `proxyMemoryRatio`) resizes the proxy in the same patch. Everything else passes unchanged.
//!
//! The API server keeps a pod's metadata as it was on `pods/resize` (its resize strategy
//! resets labels and annotations), so the provenance annotation cannot be rewritten here; the
//! warning gives the new figures instead.

mod derived;
mod judge;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::decision::PROXY_CONTAINER;
use crate::patch::{PatchBuilder, SerializedPatch};
use crate::resources::NamespaceContext;
use crate::{Denial, Injector};

/// One `pods/resize` UPDATE: the stored pod and the proposed one.
#[derive(Debug, Clone, Copy)]
pub struct ResizeRequest<'a> {
    /// The pod as stored (`oldObject`).
    pub old: &'a Pod,
    /// The pod as the resize would store it (`object`).
    pub new: &'a Pod,
    /// The namespace's annotations, LimitRanges and quotas.
    pub namespace_context: NamespaceContext<'a>,
}

/// What the guard decided about a resize it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeVerdict {
    /// The pod has no injected proxy.
    NotInjected,
    /// The injected containers are not changed (and need not follow the app).
    Unchanged,
    /// The proxy's change is within policy, as proposed.
    Allowed,
    /// The proxy's change was clamped into policy by the patch.
    Clamped,
    /// The proxy follows the app's resize (ratio sizing), in the patch.
    Followed,
}

impl ResizeVerdict {
    /// The word for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ResizeVerdict::NotInjected => "resize:not-injected",
            ResizeVerdict::Unchanged => "resize:unchanged",
            ResizeVerdict::Allowed => "resize:allowed",
            ResizeVerdict::Clamped => "resize:clamped",
            ResizeVerdict::Followed => "resize:followed",
        }
    }
}

/// The guard's answer for a resize it allows.
#[derive(Debug, Clone)]
pub struct ResizeOutcome {
    /// What was decided.
    pub verdict: ResizeVerdict,
    /// The patch to the proposed pod; empty when it is stored as proposed.
    pub patch: SerializedPatch,
    /// Messages for the user.
    pub warnings: Vec<String>,
    /// Each proxy field's value after the guard, with what changed it (for `explain`).
    pub proxy: Option<crate::ProxyResources>,
}

impl ResizeOutcome {
    fn pass(verdict: ResizeVerdict) -> Self {
        ResizeOutcome {
            verdict,
            patch: SerializedPatch::default(),
            warnings: Vec::new(),
            proxy: None,
        }
    }
}

/// Where the proxy is in a pod: the list and index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProxyAt<'a> {
    pub list: &'static str,
    pub index: usize,
    pub container: &'a Container,
}

/// Finds `istio-proxy` in `spec.containers`, else `spec.initContainers`.
pub(crate) fn find_proxy<'a>(pod: &'a Pod) -> Option<ProxyAt<'a>> {
    let spec = pod.spec.as_ref()?;
    let find = |list: &'static str, containers: &'a [Container]| -> Option<ProxyAt<'a>> {
        containers
            .iter()
            .position(|c| c.name == PROXY_CONTAINER)
            .map(|index| ProxyAt {
                list,
                index,
                container: &containers[index],
            })
    };
    find("containers", &spec.containers)
        .or_else(|| find("initContainers", spec.init_containers.as_deref().unwrap_or_default()))
}

// === impl Injector ===

impl Injector {
    /// Judges a `pods/resize` UPDATE: allowed (perhaps with a patch and warnings), or denied.
    pub fn judge_resize(&self, request: &ResizeRequest<'_>) -> Result<ResizeOutcome, Denial> {
        let (Some(old_proxy), Some(new_proxy)) = (find_proxy(request.old), find_proxy(request.new)) else {
            return Ok(ResizeOutcome::pass(ResizeVerdict::NotInjected));
        };
        let mut warnings = Vec::new();
        let judged = judge::judge(self, request, old_proxy, new_proxy, &mut warnings)
            .map_err(|error| Denial::new(error, warnings.clone()))?;
        let Some(judged) = judged else {
            return Ok(ResizeOutcome::pass(ResizeVerdict::Unchanged));
        };
        let mut builder = PatchBuilder::new();
        let index = new_proxy.index.to_string();
        for (side, resource, value) in &judged.patched {
            builder.add(
                &["spec", new_proxy.list, index.as_str(), "resources", side, resource],
                serde_json::json!(value),
            );
        }
        if judged.verdict != ResizeVerdict::Allowed {
            warnings.push(format!(
                "istio-proxy resized to {}; the API server keeps annotations as they were on pods/resize, so {} still shows admission's values",
                judged.resources,
                crate::annotations::PROVENANCE
            ));
        }
        Ok(ResizeOutcome {
            verdict: judged.verdict,
            patch: builder.build(),
            warnings,
            proxy: Some(judged.resources),
        })
    }
}

#[cfg(test)]
mod tests;
