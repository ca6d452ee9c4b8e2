//! Istio's `gateway` injection template: the proxy is the pod's main container.
//!
//! Chosen in [`crate::plan`] ([`crate::templates::Template::Gateway`]), compiled once in
//! [`crate::Injector::new`] beside the sidecar's [`SidecarTemplate`], and rendered by
//! [`crate::render`]. Field for field it follows istiod's `gateway` template:
//!
//! - `proxy router`, with no traffic capture: no init container, no `security.istio.io/tlsMode`
//!   label, never a native sidecar, no startup probe and no lifecycle hook;
//! - a smaller environment (no OpenTelemetry variables, `GOMEMLIMIT` before
//!   `ISTIO_META_APP_CONTAINERS`, the Prometheus merge's variable last, as istiod appends it
//!   after any template) and a security context of only the proxy's uid and gid;
//! - the readiness probe from the config, whatever the pod's `readiness.status.*` annotations,
//!   and the interception mode of the ProxyConfig, whatever `sidecar.istio.io/interceptionMode`;
//! - the volumes and mounts without `istio-ca-crl`;
//! - the pod's `net.ipv4.ip_unprivileged_port_start=0` sysctl, so Envoy binds ports below 1024.
//!
//! Resources are the pod's own `istio-proxy` container's, then our annotations, profiles and
//! bounds. istiod's gateway template sets none, so with `resourceMerge: istio` the config's
//! default resources are not used; under `perField` they fill what the pod leaves unset.

use k8s_openapi::api::core::v1::PodSpec;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::config::{InjectConfig, InterceptionMode, ResourceMerge};
use crate::container::{EnvVar, Fragment, Mounts, ProxyArgs, ProxyContainer, ProxyRole, ReadinessProbe, Requirements};
use crate::istio_parts::{VOLUME_NAMES, proxy_mounts, standard_volumes};
use crate::patch::PatchBuilder;
use crate::resources::Tuning;
use crate::sidecar::{self, SidecarInputs};
use crate::template::{ProxyMounts, raw};
use crate::traffic::PROXY_UID;

/// The volume (and mount) of Istio's sidecar that its gateway template leaves out.
const SIDECAR_ONLY_VOLUME: &str = "istio-ca-crl";

/// The sysctl that lets the proxy bind ports below 1024 without a capability.
const UNPRIVILEGED_PORTS: &str = "net.ipv4.ip_unprivileged_port_start";

/// The gateway's readiness probe port: istiod's template fixes it.
const READINESS_PORT: u16 = 15021;

/// The gateway's parts that are the same for every pod under one config.
#[derive(Debug, Clone)]
pub(crate) struct GatewayTemplate {
    /// The volumes, serialized, with their names.
    pub volumes: Vec<(&'static str, Box<RawValue>)>,
    /// The proxy's mounts of them (and of the mTLS certificates, when mounted).
    pub proxy_mounts: ProxyMounts,
    /// `runAsUser`/`runAsGroup` 1337.
    pub security: Box<RawValue>,
    /// The readiness probe from the config.
    pub readiness_probe: Option<ReadinessProbe>,
    /// The resource policy for gateway proxies.
    pub tuning: Tuning,
}

impl GatewayTemplate {
    /// Builds the gateway template for `config`, whose resource policy is `tuning`.
    pub(crate) fn compile(config: &InjectConfig, tuning: &Tuning) -> Self {
        let volumes = VOLUME_NAMES
            .into_iter()
            .zip(standard_volumes())
            .filter(|(name, _)| *name != SIDECAR_ONLY_VOLUME)
            .map(|(name, volume)| (name, raw(&volume)))
            .collect();
        let proxy_mounts = ProxyMounts::compile(
            proxy_mounts(config)
                .into_iter()
                .filter(|mount| mount["name"] != SIDECAR_ONLY_VOLUME),
        );
        let mut tuning = tuning.clone();
        if tuning.merge == ResourceMerge::Istio {
            tuning.defaults = [None; 6];
        }
        GatewayTemplate {
            volumes,
            proxy_mounts,
            security: raw(&security_context((PROXY_UID, PROXY_UID))),
            readiness_probe: sidecar::readiness_probe(None, config, READINESS_PORT).ok().flatten(),
            tuning,
        }
    }
}

/// The gateway proxy's security context: its uid and gid only.
fn security_context((uid, gid): (i64, i64)) -> Value {
    json!({"runAsGroup": gid, "runAsUser": uid})
}

/// The gateway's `istio-proxy` container.
pub(crate) fn build_gateway_container<'a>(
    inputs: &SidecarInputs<'a>,
    gateway: &'a GatewayTemplate,
) -> ProxyContainer<'a> {
    let template = inputs.template;
    let security_context = if inputs.proxy_ids == (PROXY_UID, PROXY_UID) {
        Fragment::Compiled(&gateway.security)
    } else {
        Fragment::Built(security_context(inputs.proxy_ids))
    };
    ProxyContainer {
        args: ProxyArgs {
            role: ProxyRole::Router,
            domain: &template.domain,
            log_levels: inputs.log_levels,
            concurrency: inputs.resources.concurrency(inputs.concurrency),
        },
        env: gateway_env(inputs),
        image: inputs.proxy_image,
        image_pull_policy: inputs.config.image_pull_policy.as_deref(),
        lifecycle: None,
        name: crate::decision::PROXY_CONTAINER,
        ports: &template.ports,
        readiness_probe: gateway.readiness_probe.as_ref(),
        resize_policy: inputs.resize_policy,
        resources: Requirements(inputs.resources),
        restart_policy: None,
        security_context,
        startup_probe: None,
        volume_mounts: Mounts {
            compiled: &gateway.proxy_mounts.serialized,
            inserted: crate::bootstrap_override::inserted_mount(
                inputs.bootstrap_override,
                gateway.proxy_mounts.bootstrap_after,
            ),
            user: Vec::new(),
        },
    }
}

/// The gateway proxy's environment, in the gateway template's order.
fn gateway_env<'a>(inputs: &SidecarInputs<'a>) -> Vec<EnvVar<'a>> {
    let config = inputs.config;
    let mut env = Vec::with_capacity(24);
    sidecar::push_identity_env(inputs, &mut env);
    sidecar::push_pod_env(inputs, &mut env);
    sidecar::push_go_runtime_env(inputs, &mut env);
    let app_containers = sidecar::app_container_names(inputs.pod);
    env.push(EnvVar::literal("ISTIO_META_APP_CONTAINERS", app_containers.join(",")));
    let compiled = |name| sidecar::compiled_env(inputs.template, name);
    env.extend(compiled("ISTIO_META_CLUSTER_ID"));
    env.extend(compiled("ISTIO_META_NODE_NAME"));
    env.push(EnvVar::literal(
        "ISTIO_META_INTERCEPTION_MODE",
        interception_mode(inputs),
    ));
    env.extend(compiled("ISTIO_META_NETWORK"));
    sidecar::push_workload_env(inputs, &mut env);
    env.extend(compiled("ISTIO_META_MESH_ID"));
    env.extend(compiled("TRUST_DOMAIN"));
    env.extend(sidecar::metadata_env(inputs));
    // istiod's Prometheus merge runs after any template and appends the app's settings.
    if let Some(original) = inputs.prometheus_original {
        env.push(EnvVar::Json("ISTIO_PROMETHEUS_ANNOTATIONS", original));
    }
    crate::inject_path::move_path_envs_last(&mut env, config);
    env
}

/// `ProxyConfig.interceptionMode`: the pod's `proxy.istio.io/config`, else the mesh's. The
/// `sidecar.istio.io/interceptionMode` annotation is read by istiod's sidecar template only.
fn interception_mode(inputs: &SidecarInputs<'_>) -> &'static str {
    inputs
        .proxy_config
        .raw
        .get("interceptionMode")
        .and_then(Value::as_str)
        .and_then(InterceptionMode::parse)
        .unwrap_or(inputs.config.interception_mode)
        .as_str()
}

/// Adds `net.ipv4.ip_unprivileged_port_start=0` to the pod's sysctls, unless the pod sets
/// that sysctl itself (its value is kept: istiod's template would replace the whole list).
pub(crate) fn emit_unprivileged_ports(spec: &PodSpec, builder: &mut PatchBuilder) {
    let sysctl = json!({"name": UNPRIVILEGED_PORTS, "value": "0"});
    let Some(security) = spec.security_context.as_ref() else {
        builder.add(&["spec", "securityContext"], json!({"sysctls": [sysctl]}));
        return;
    };
    let existing = security.sysctls.as_ref();
    if existing.is_some_and(|list| list.iter().any(|item| item.name == UNPRIVILEGED_PORTS)) {
        return;
    }
    builder.insert_items(
        &["spec", "securityContext", "sysctls"],
        existing.map(Vec::len),
        None,
        &[sysctl],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::istio_parts::PROXY_MOUNTS;

    /// The sidecar's own mounts that the gateway also has, in order.
    fn gateway_mounts() -> Vec<&'static str> {
        PROXY_MOUNTS
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| *name != SIDECAR_ONLY_VOLUME)
            .collect()
    }

    fn compiled(config: &InjectConfig) -> GatewayTemplate {
        let tuning = Tuning::from_config(config).unwrap();
        GatewayTemplate::compile(config, &tuning)
    }

    #[test]
    fn volumes_and_mounts_leave_out_the_crl() {
        let template = compiled(&InjectConfig::default());
        let names: Vec<&str> = template.volumes.iter().map(|(name, _)| *name).collect();
        assert_eq!(names.len(), 8);
        assert!(!names.contains(&SIDECAR_ONLY_VOLUME));
        let mounts: Vec<String> = template
            .proxy_mounts
            .serialized
            .iter()
            .map(|raw| {
                serde_json::from_str::<Value>(raw.get()).unwrap()["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(mounts, gateway_mounts());
        let security: Value = serde_json::from_str(template.security.get()).unwrap();
        assert_eq!(security, json!({"runAsGroup": 1337, "runAsUser": 1337}));
    }

    #[test]
    fn readiness_ignores_the_status_port_and_istio_merge_drops_defaults() {
        let config = InjectConfig {
            status_port: 0,
            readiness_failure_threshold: 7,
            ..InjectConfig::default()
        };
        let template = compiled(&config);
        let probe = crate::container::written(&template.readiness_probe.unwrap());
        assert_eq!(probe["httpGet"]["port"], 15021);
        assert_eq!(probe["failureThreshold"], 7);
        assert!(template.tuning.defaults.iter().any(Option::is_some));
        let istio = InjectConfig {
            resource_merge: ResourceMerge::Istio,
            ..InjectConfig::default()
        };
        assert!(compiled(&istio).tuning.defaults.iter().all(Option::is_none));
    }
}
