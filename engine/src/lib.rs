//! The pure injection engine of sidecar-injector: decide → resolve resources → build sidecar
//! → build patch.
//!
//! Nothing here does I/O, and the crate depends on no async runtime, HTTP, TLS or Kubernetes
//! client crate, so the compiler keeps it pure. The webhook server, offline `inject` and the tests all call
//! [`Injector::inject`], so they cannot disagree. The engine reads the pod through
//! k8s-openapi types and answers with the RFC 6902 patch that adds the sidecar.

#![forbid(unsafe_code)]

pub mod annotations;
mod capture_lists;
pub mod config;
pub mod decision;
pub mod error;
pub mod fields;
pub mod metadata;
pub mod openshift;
pub mod overrides;
pub mod patch;
pub mod probes;
pub mod prometheus;
pub mod proxy_config;
pub mod quantity;
pub mod reinject;
pub mod resources;
pub mod sidecar;
pub mod traffic;
pub mod user_volumes;
pub mod workload;

use json_patch::Patch;
use k8s_openapi::api::core::v1::Pod;

use self::decision::{Decision, PROXY_CONTAINER, parse_choice, should_inject};
use self::error::{InjectError, quoted};
use self::metadata::{SidecarStatus, annotations_to_add, labels_to_add};
use self::patch::PatchBuilder;
use self::resources::{
    ConcurrencyPolicy, NamespaceContext, PROVENANCE, ProxyResources, resolve_proxy_override, resolve_resources,
};
use self::sidecar::{SidecarInputs, build_init_container, build_proxy_container, build_volumes, init_container_name};
use self::traffic::TrafficSettings;
use self::workload::Workload;
use crate::config::{CniProvider, CompiledConfig, ConfigError, InjectConfig, InterceptionMode, Platform};

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

    /// Decides on `request.pod` and, when injecting, builds the patch.
    pub fn inject(&self, request: &PodRequest<'_>) -> Result<Outcome, Denial> {
        let pod = request.pod;
        let (decision, mut warnings) = should_inject(pod, request.namespace, &self.compiled);
        let skip = |decision, warnings| Outcome {
            decision,
            patch: Patch(Vec::new()),
            warnings,
            resources: None,
        };
        if matches!(decision, Decision::Skip(_)) {
            return Ok(skip(decision, warnings));
        }
        let Some(spec) = pod.spec.as_ref() else {
            warnings.push("the pod has no spec; nothing to inject".into());
            return Ok(skip(decision, warnings));
        };
        let annotations = pod.metadata.annotations.as_ref();
        let deny = |error, warnings| Denial {
            error: Box::new(error),
            warnings,
        };
        let native = self.native_sidecar(annotations, &mut warnings);
        let resources = match resolve_resources(pod, &request.namespace_context, &self.compiled.tuning, native) {
            Ok(resolution) => {
                warnings.extend(resolution.warnings);
                resolution.resources
            }
            Err(error) => return Err(deny(error, warnings)),
        };
        let traffic = match TrafficSettings::from_annotations(annotations, &self.compiled.raw) {
            Ok(traffic) => traffic,
            Err(error) => return Err(deny(error, warnings)),
        };
        let proxy_config = match proxy_config::ProxyConfig::from_annotations(annotations) {
            Ok(proxy_config) => proxy_config,
            Err(error) => return Err(deny(error, warnings)),
        };
        let hold = proxy_config
            .hold_application
            .unwrap_or(self.compiled.raw.hold_application_until_proxy_starts);
        let user_volumes = match user_volumes::user_volumes(annotations) {
            Ok(user_volumes) => user_volumes,
            Err(error) => return Err(deny(error, warnings)),
        };
        let prometheus = prometheus::plan_merge(annotations, self.compiled.raw.enable_prometheus_merge);
        let readiness_probe = match sidecar::readiness_probe(annotations, &self.compiled.raw, traffic.status_port) {
            Ok(probe) => probe,
            Err(error) => return Err(deny(error, warnings)),
        };
        let proxy_image = annotations
            .and_then(|map| map.get(sidecar::PROXY_IMAGE))
            .map(String::as_str)
            .filter(|image| !image.trim().is_empty())
            .unwrap_or(&self.compiled.raw.proxy_image);
        let with_init = traffic.mode != InterceptionMode::None;
        let init_name = init_container_name(&self.compiled.raw);
        let overrides = overrides::Overrides::find(spec, init_name);
        let overridden_resources = overrides
            .proxy_container()
            .is_some_and(|c| c.resources.is_some_and(|r| r.requests.is_some() || r.limits.is_some()));
        let proxy_resources = if overridden_resources {
            match resolve_proxy_override(pod, &request.namespace_context, &self.compiled.tuning, native) {
                Ok(resolution) => resolution.resources,
                Err(error) => return Err(deny(error, warnings)),
            }
        } else {
            resources.clone()
        };
        let user_security = overrides.proxy_container().and_then(|c| c.security_context);
        // A TPROXY proxy runs as root, outside any range, so OpenShift's UID is not used.
        let platform_ids = match self.compiled.raw.platform {
            Platform::Openshift if traffic.mode != InterceptionMode::Tproxy => {
                openshift::proxy_ids(request.namespace_context.annotations)
            }
            _ => None,
        }
        .unwrap_or((traffic::PROXY_UID, traffic::PROXY_UID));
        let proxy_ids = (
            user_security
                .as_ref()
                .and_then(|s| s.run_as_user)
                .unwrap_or(platform_ids.0),
            user_security
                .as_ref()
                .and_then(|s| s.run_as_group)
                .unwrap_or(platform_ids.1),
        );

        let derived;
        let workload = match request.workload {
            Some(workload) => workload,
            None => {
                derived = Workload::of_pod(pod);
                &derived
            }
        };
        let inputs = SidecarInputs {
            pod,
            namespace: request.namespace,
            workload,
            resources: &proxy_resources,
            concurrency: &self.concurrency,
            traffic: &traffic,
            native,
            hold,
            proxy_config: &proxy_config,
            prometheus_original: prometheus.original.as_deref(),
            readiness_probe,
            proxy_image,
            proxy_ids,
            config: &self.compiled.raw,
        };
        let mut proxy = build_proxy_container(&inputs);
        if let Some(mounts) = proxy.get_mut("volumeMounts").and_then(|m| m.as_array_mut()) {
            for mount in &user_volumes.mounts {
                let clashes = mounts
                    .iter()
                    .any(|ours| ours["mountPath"] == mount["mountPath"] || ours["name"] == mount["name"]);
                if !clashes {
                    mounts.push(mount.clone());
                }
            }
        }
        if let Some(user) = &overrides.proxy {
            overrides::merge_container(&mut proxy, &user.container);
            proxy["resources"] = serde_json::to_value(proxy_resources.to_requirements()).unwrap_or_default();
            if traffic.mode == InterceptionMode::Tproxy {
                sidecar::enforce_tproxy(&mut proxy);
            }
        }
        let probe_plan = if probes::rewrite_enabled(pod, self.compiled.raw.rewrite_app_probes) {
            probes::plan_probe_rewrites(pod, traffic.status_port)
        } else {
            probes::ProbePlan::default()
        };
        if let (Some(value), Some(env)) = (
            &probe_plan.app_probers,
            proxy.get_mut("env").and_then(|e| e.as_array_mut()),
        ) {
            env.push(serde_json::json!({"name": "ISTIO_KUBE_APP_PROBERS", "value": value}));
        }
        let init = with_init.then(|| {
            let mut init = build_init_container(&inputs);
            if let Some(user) = &overrides.init {
                overrides::merge_container(&mut init, &user.container);
            }
            init["resources"] = serde_json::to_value(resources.to_requirements()).unwrap_or_default();
            init
        });

        let mut builder = PatchBuilder::new();
        if !request.has_metadata {
            builder.add(&["metadata"], serde_json::json!({}));
        }
        let existing_volumes = spec.volumes.as_ref();
        let exists = |name: &str| existing_volumes.is_some_and(|list| list.iter().any(|v| v.name == name));
        let injected_volumes = build_volumes(&self.compiled.raw, pod);
        let volume_names: Vec<String> = injected_volumes.iter().map(|(name, _)| name.to_string()).collect();
        let volumes: Vec<_> = injected_volumes
            .into_iter()
            .filter(|(name, _)| !exists(name))
            .map(|(_, volume)| volume)
            .chain(user_volumes.volumes.into_iter().filter(|volume| {
                !volume["name"]
                    .as_str()
                    .is_some_and(|name| exists(name) || volume_names.iter().any(|ours| ours == name))
            }))
            .collect();
        for rewrite in probe_plan.rewrites {
            let index = rewrite.container.to_string();
            let mut path = vec!["spec", rewrite.list, index.as_str()];
            path.extend_from_slice(rewrite.probe);
            if rewrite.handler != "httpGet" {
                path.push(rewrite.handler);
                builder.remove(&path);
                path.pop();
            }
            path.push("httpGet");
            builder.add(&path, rewrite.http_get);
        }

        for (list, index) in overrides.removals() {
            let index = index.to_string();
            builder.remove(&["spec", list, index.as_str()]);
        }
        let init_len = spec
            .init_containers
            .as_ref()
            .map(|list| list.len() - overrides.removed_from("initContainers"));
        let containers_len = spec.containers.len() - overrides.removed_from("containers");
        let mut added_init = Vec::new();
        let mut added_containers = Vec::new();
        if native {
            let mut front = Vec::with_capacity(2);
            if let Some(init) = init {
                front.push(init);
                added_init.push(init_name.to_string());
            }
            front.push(proxy);
            added_init.push(PROXY_CONTAINER.to_string());
            builder.insert_items(&["spec", "initContainers"], init_len, Some(0), front);
        } else {
            if let Some(init) = init {
                let position = if self.compiled.raw.cni_enabled { Some(0) } else { None };
                builder.insert_items(&["spec", "initContainers"], init_len, position, vec![init]);
                added_init.push(init_name.to_string());
            }
            let position = if hold { Some(0) } else { None };
            builder.insert_items(&["spec", "containers"], Some(containers_len), position, vec![proxy]);
            added_containers.push(PROXY_CONTAINER.to_string());
        }
        let pull_secrets: Vec<serde_json::Value> = self
            .compiled
            .raw
            .image_pull_secrets
            .iter()
            .filter(|name| {
                !spec
                    .image_pull_secrets
                    .iter()
                    .flatten()
                    .any(|secret| &secret.name == *name)
            })
            .map(|name| serde_json::json!({ "name": name }))
            .collect();
        builder.insert_items(
            &["spec", "imagePullSecrets"],
            spec.image_pull_secrets.as_ref().map(Vec::len),
            Some(0),
            pull_secrets,
        );
        // istiod puts its volumes and pull secrets ahead of the pod's own.
        builder.insert_items(&["spec", "volumes"], existing_volumes.map(Vec::len), Some(0), volumes);
        let status = SidecarStatus {
            init_containers: (!added_init.is_empty()).then_some(added_init),
            containers: (!added_containers.is_empty()).then_some(added_containers),
            volumes: Some(volume_names),
            image_pull_secrets: (!self.compiled.raw.image_pull_secrets.is_empty())
                .then(|| self.compiled.raw.image_pull_secrets.clone()),
            revision: self.compiled.raw.revision.clone(),
        };
        builder.set_entries(
            &["metadata", "labels"],
            pod.metadata.labels.as_ref(),
            labels_to_add(pod, workload, &self.compiled.raw.network),
        );
        let mut extra = prometheus.annotations;
        if let Some(recorded) = overrides.annotation(native) {
            extra.push((overrides::OVERRIDES_ANNOTATION.to_string(), recorded));
        }
        if self.compiled.raw.cni_enabled && with_init {
            extra.extend(traffic.cni_annotations());
        }
        if self.compiled.raw.cni_enabled && self.compiled.raw.cni_provider == CniProvider::Multus {
            let existing = annotations.and_then(|map| map.get(traffic::MULTUS_NETWORKS));
            extra.push((
                traffic::MULTUS_NETWORKS.to_string(),
                traffic::multus_networks(existing.map(String::as_str), request.namespace),
            ));
        }
        let mut added_annotations = annotations_to_add(pod, &status, extra);
        if self.compiled.raw.provenance_annotation {
            added_annotations.push((PROVENANCE.to_string(), proxy_resources.provenance()));
        }
        builder.set_entries(&["metadata", "annotations"], annotations, added_annotations);
        for key in &prometheus.remove {
            builder.remove(&["metadata", "annotations", key]);
        }
        Ok(Outcome {
            decision,
            patch: builder.build(),
            warnings,
            resources: Some(proxy_resources),
        })
    }

    fn native_sidecar(
        &self,
        annotations: Option<&std::collections::BTreeMap<String, String>>,
        warnings: &mut Vec<String>,
    ) -> bool {
        let Some(value) = annotations.and_then(|map| map.get(NATIVE_SIDECAR)) else {
            return self.compiled.raw.native_sidecars;
        };
        parse_choice(value).unwrap_or_else(|| {
            warnings.push(format!(
                "annotation {NATIVE_SIDECAR}={} is not \"true\" or \"false\"; using the default",
                quoted(value)
            ));
            self.compiled.raw.native_sidecars
        })
    }
}
