//! The pure injection engine of sidecar-injector, in three typed stages:
//!
//! 1. `plan`: the decision, the per-pod settings and the resolved resources (every denial);
//! 2. `render`: the containers and volumes to add;
//! 3. `emit`: the RFC 6902 operations, and the size of the annotations they leave, which
//!    must fit the API server's limit (`annotation_size`). The stages are private modules.
//!
//! Nothing here does I/O, and the crate depends on no async runtime, HTTP, TLS or Kubernetes
//! client crate, so the compiler keeps it pure. The webhook server, offline `inject`,
//! `explain` and the tests all call [`Injector::inject`], so they cannot disagree. The config
//! is parsed once, in [`Injector::new`]; every annotation the engine reads is in
//! [`annotations::REGISTRY`].

#![forbid(unsafe_code)]

mod annotation_size;
pub mod annotations;
mod bootstrap_override;
mod capture_lists;
pub mod config;
mod container;
pub(crate) mod decision;
mod emit;
pub(crate) mod error;
pub(crate) mod fields;
mod gateway;
mod image_type;
pub mod inject_path;
pub mod installed_istio;
mod istio_parts;
pub mod json_bytes;
mod json_text;
mod json_write;
mod log_levels;
pub(crate) mod metadata;
pub(crate) mod openshift;
pub(crate) mod overrides;
pub(crate) mod patch;
mod plan;
pub(crate) mod probes;
pub(crate) mod prometheus;
pub(crate) mod proxy_config;
mod proxy_config_fields;
pub mod quantity;
pub(crate) mod reinject;
mod render;
pub mod resize;
pub mod resize_policy;
pub(crate) mod resources;
pub(crate) mod sidecar;
mod template;
mod templates;
#[cfg(test)]
mod test_support;
pub(crate) mod traffic;
pub(crate) mod user_volumes;
mod volume_rules;
pub(crate) mod workload;

use k8s_openapi::api::core::v1::Pod;

use self::gateway::GatewayTemplate;
use self::plan::Planned;
use self::template::SidecarTemplate;
use crate::config::layers::InstalledSetting;
use crate::config::{CompiledConfig, ConfigError, InjectConfig, Provenance, UserConfig};

pub use self::decision::{Decision, InjectReason, PROXY_CONTAINER, SkipReason, is_injected_container};
pub use self::error::InjectError;
pub use self::fields::{FieldKey, Resource, Side};
pub use self::patch::SerializedPatch;
pub use self::reinject::strip_injection;
pub use self::resize::{ResizeOutcome, ResizeRequest, ResizeVerdict};
pub use self::resources::pod_level::PodLevelChange;
pub use self::resources::{
    AppAmounts, ConcurrencyPolicy, ContainerAmounts, Field, ListAmounts, NamespaceContext, ProxyResources,
    Recommendation, Source,
};
pub use self::workload::Workload;

/// One pod to consider, with what the engine cannot read from the pod itself.
#[derive(Debug, Clone, Copy)]
pub struct PodRequest<'a> {
    /// The pod as the API server will store it.
    pub pod: &'a Pod,
    /// The namespace it is created in.
    pub namespace: &'a str,
    /// The owning workload, when the caller knows it (offline injection); else derived.
    pub workload: Option<&'a Workload>,
    /// Whether the pod JSON has a `metadata` object at all.
    pub has_metadata: bool,
    /// Bytes (keys and values) of the pod's annotations that the caller left out of `pod`
    /// because the engine never reads them ([`annotations::read_by_engine`]); 0 when `pod`
    /// has them all. They count toward the API server's limit on the patched pod's.
    pub unread_annotation_bytes: usize,
    /// The namespace's annotations and LimitRanges, as far as they are known.
    pub namespace_context: NamespaceContext<'a>,
    /// The amounts of the pod's containers, when the caller read them with the pod and left
    /// the containers' `resources` out of it; `None` reads them from the pod.
    pub app_amounts: Option<&'a AppAmounts>,
    /// The pod was stripped of a previous injection (offline re-injection). A pod without
    /// containers is otherwise skipped, since the API server refuses it; one whose only
    /// containers were injected ones (Istio's `only-proxy-container` case) is injected again.
    pub reinjection: bool,
}

/// The engine's answer for a pod it accepts.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was decided and why.
    pub decision: Decision,
    /// The patch, serialized; empty when skipped.
    pub patch: SerializedPatch,
    /// Messages for the user (AdmissionResponse warnings).
    pub warnings: Vec<String>,
    /// The proxy's resources, when injected.
    pub resources: Option<ProxyResources>,
    /// The init container's resources, when one is added.
    pub init_resources: Option<ProxyResources>,
    /// The pod-level `spec.resources` values injection grows, when the pod sets them.
    pub pod_level: Vec<PodLevelChange>,
}

/// The engine's answer for a pod it refuses.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct Denial {
    /// Why (boxed: denials are rare and the success path stays small).
    pub error: Box<InjectError>,
    /// Warnings collected before the refusal.
    pub warnings: Vec<String>,
}

/// A validated configuration, ready to inject pods.
#[derive(Debug, Clone)]
pub struct Injector {
    compiled: CompiledConfig,
    concurrency: ConcurrencyPolicy,
    template: SidecarTemplate,
    gateway: GatewayTemplate,
    provenance: Provenance,
}

// === impl Injector ===

impl Injector {
    /// Checks and parses `config` once ([`InjectConfig::compile`]), so requests never meet
    /// a bad default and never parse a config value.
    pub fn new(config: InjectConfig) -> Result<Self, ConfigError> {
        let compiled = config.compile()?;
        let concurrency = ConcurrencyPolicy {
            from: compiled.raw.concurrency.from,
            floor: compiled.raw.concurrency.min,
            ceiling: compiled.raw.concurrency.max,
        };
        let template = SidecarTemplate::compile(&compiled.raw);
        let gateway = GatewayTemplate::compile(&compiled.raw, &compiled.tuning);
        Ok(Injector {
            compiled,
            concurrency,
            template,
            gateway,
            provenance: Provenance::default(),
        })
    }

    /// The config file's keys over the installed Istio's settings over the built-in
    /// defaults ([`UserConfig::compose`]), checked as [`Injector::new`] checks; a bad value
    /// that came from the installed Istio is named with the ConfigMap path it was read from.
    pub fn compose(user: &UserConfig, installed: &[InstalledSetting]) -> Result<Self, ConfigError> {
        let (config, provenance) = user.compose(installed)?;
        let mut injector = Injector::new(config).map_err(|error| match error.key() {
            Some(key) if provenance.source_of(key).is_installed() => ConfigError::Installed {
                source_name: provenance.source_of(key).to_string(),
                error: Box::new(error),
            },
            _ => error,
        })?;
        injector.provenance = provenance;
        Ok(injector)
    }

    /// The engine for a request whose webhook path carries parameters
    /// ([`inject_path::InjectPath`]): its cluster and network replace the configured ones and
    /// every variable is set on the proxy, as istiod does; `None` when the path has none.
    pub fn for_inject_path(&self, path: &inject_path::InjectPath) -> Result<Option<Injector>, ConfigError> {
        if path.is_empty() {
            return Ok(None);
        }
        let mut config = self.compiled.raw.clone();
        if let Some(cluster) = path.envs.get(inject_path::CLUSTER_ENV).filter(|c| !c.is_empty()) {
            config.cluster_id = cluster.clone();
        }
        if let Some(network) = path.envs.get(inject_path::NETWORK_ENV).filter(|n| !n.is_empty()) {
            config.network = network.clone();
        }
        config.path_envs = path.envs.clone();
        let mut injector = Injector::new(config)?;
        injector.provenance = self.provenance.clone();
        Ok(Some(injector))
    }

    /// Where each config key's value came from (empty for [`Injector::new`]).
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// How `--concurrency` is derived.
    pub fn concurrency(&self) -> &ConcurrencyPolicy {
        &self.concurrency
    }

    /// The resource policy for a pod rendered with `template`.
    pub(crate) fn tuning(&self, template: templates::Template) -> &resources::Tuning {
        match template {
            templates::Template::Sidecar => &self.compiled.tuning,
            templates::Template::Gateway => &self.gateway.tuning,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &InjectConfig {
        &self.compiled.raw
    }

    /// Decides on `request.pod` and, when injecting, builds the patch: `plan` (every
    /// denial), then `render`, then `emit`.
    pub fn inject(&self, request: &PodRequest<'_>) -> Result<Outcome, Denial> {
        let plan = match plan::plan(self, request)? {
            Planned::Skip(decision, warnings) => return Ok(Outcome::skipped(decision, warnings)),
            Planned::Inject(plan) => plan,
        };
        let templates = render::Templates {
            sidecar: &self.template,
            gateway: &self.gateway,
        };
        let rendered = render::render(&plan, self.config(), &self.concurrency, templates);
        let emit::Emitted {
            patch,
            annotations_over_limit,
        } = emit::emit(&plan, rendered, self.config());
        let plan = *plan;
        if let Some(annotations) = annotations_over_limit {
            return Err(Denial::new(annotations_too_large(annotations), plan.warnings));
        }
        Ok(Outcome {
            decision: plan.decision,
            patch,
            warnings: plan.warnings,
            init_resources: plan.with_init.then_some(plan.init_resources),
            resources: Some(plan.proxy_resources),
            pod_level: plan.pod_level,
        })
    }
}

/// The denial of a pod whose annotations the patch would take past the API server's limit.
fn annotations_too_large(annotations: annotation_size::AnnotationBytes) -> InjectError {
    let limit = annotation_size::TOTAL_ANNOTATION_BYTES;
    InjectError::AnnotationsTooLarge {
        total: annotations.total,
        added: annotations.added,
        limit,
        room: limit.saturating_sub(annotations.added),
    }
}

// === impl Outcome ===

impl Outcome {
    /// The answer for a pod left as it is.
    pub(crate) fn skipped(decision: Decision, warnings: Vec<String>) -> Self {
        Outcome {
            decision,
            patch: SerializedPatch::default(),
            warnings,
            resources: None,
            init_resources: None,
            pod_level: Vec::new(),
        }
    }
}

// === impl Denial ===

impl Denial {
    /// A refusal, with the warnings collected before it.
    pub(crate) fn new(error: InjectError, warnings: Vec<String>) -> Self {
        Denial {
            error: Box::new(error),
            warnings,
        }
    }
}
