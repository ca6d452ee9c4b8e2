//! The pure injection engine of sidecar-injector, in three typed stages:
//!
//! 1. [`plan`]: the decision, the per-pod settings and the resolved resources (every denial);
//! 2. [`render`]: the containers and volumes to add;
//! 3. [`emit`]: the RFC 6902 operations.
//!
//! Nothing here does I/O, and the crate depends on no async runtime, HTTP, TLS or Kubernetes
//! client crate, so the compiler keeps it pure. The webhook server, offline `inject`,
//! `explain` and the tests all call [`Injector::inject`], so they cannot disagree. The config
//! is parsed once, in [`Injector::new`]; every annotation the engine reads is in
//! [`annotations::REGISTRY`].

#![forbid(unsafe_code)]

pub mod annotations;
mod capture_lists;
pub mod config;
pub mod decision;
mod emit;
pub mod error;
pub mod fields;
pub mod metadata;
pub mod openshift;
pub mod overrides;
pub mod patch;
mod plan;
pub mod probes;
pub mod prometheus;
pub mod proxy_config;
pub mod quantity;
pub mod reinject;
mod render;
pub mod resources;
pub mod sidecar;
pub mod traffic;
pub mod user_volumes;
mod volume_rules;
pub mod workload;

use json_patch::Patch;
use k8s_openapi::api::core::v1::Pod;

use self::decision::Decision;
use self::error::InjectError;
use self::plan::Planned;
use self::resources::{ConcurrencyPolicy, NamespaceContext, ProxyResources};
use self::workload::Workload;
use crate::config::{CompiledConfig, ConfigError, InjectConfig};

/// Annotation that turns native sidecar mode on or off for one pod.
pub use crate::annotations::NATIVE_SIDECAR;

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
    /// The namespace's annotations and LimitRanges, as far as they are known.
    pub namespace_context: NamespaceContext<'a>,
}

/// The engine's answer for a pod it accepts.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What was decided and why.
    pub decision: Decision,
    /// The patch; empty when skipped.
    pub patch: Patch,
    /// Messages for the user (AdmissionResponse warnings).
    pub warnings: Vec<String>,
    /// The proxy's resources, when injected.
    pub resources: Option<ProxyResources>,
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
        Ok(Injector { compiled, concurrency })
    }

    /// How `--concurrency` is derived.
    pub fn concurrency(&self) -> &ConcurrencyPolicy {
        &self.concurrency
    }

    /// The configuration in force.
    pub fn config(&self) -> &InjectConfig {
        &self.compiled.raw
    }

    /// Decides on `request.pod` and, when injecting, builds the patch: [`plan`] (every
    /// denial), then [`render`], then [`emit`].
    pub fn inject(&self, request: &PodRequest<'_>) -> Result<Outcome, Denial> {
        let plan = match plan::plan(self, request)? {
            Planned::Skip(decision, warnings) => return Ok(Outcome::skipped(decision, warnings)),
            Planned::Inject(plan) => plan,
        };
        let rendered = render::render(&plan, self.config(), &self.concurrency);
        let patch = emit::emit(&plan, rendered, self.config());
        let plan = *plan;
        Ok(Outcome {
            decision: plan.decision,
            patch,
            warnings: plan.warnings,
            resources: Some(plan.proxy_resources),
        })
    }
}

// === impl Outcome ===

impl Outcome {
    /// The answer for a pod left as it is.
    pub(crate) fn skipped(decision: Decision, warnings: Vec<String>) -> Self {
        Outcome {
            decision,
            patch: Patch(Vec::new()),
            warnings,
            resources: None,
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
