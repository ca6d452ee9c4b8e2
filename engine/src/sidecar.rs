//! The containers and volumes Istio's sidecar template adds: typed containers
//! ([`crate::container`]) with the template's compiled parts, and the volumes as JSON.
//!
//! Field for field this follows istiod's default `sidecar` template, so a pod joins the
//! mesh exactly as it would with istiod. The values that are ours, not Istio's, are the
//! resources (resolved per field) and `--concurrency` (derived from the CPU limit).

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::resources::{ConcurrencyPolicy, ProxyResources};
use super::traffic::{PROXY_UID, TrafficSettings};
use super::workload::Workload;
use crate::bootstrap_override;
use crate::config::{InjectConfig, InterceptionMode};
use crate::container::{
    EnvVar, Fragment, InitContainer, Mounts, ProxyArgs, ProxyContainer, ProxyRole, ReadinessProbe, Requirements,
};
use crate::istio_parts::{
    MTLS_CERTS_MOUNT_PATH, MTLS_CERTS_VOLUME, PROXY_MOUNTS, SecurityInputs, init_security_context, native_lifecycle,
    proxy_security_context,
};
use crate::json_text::JsonText;
use crate::template::SidecarTemplate;

/// Name of the init container that installs iptables rules.
pub const INIT_CONTAINER: &str = "istio-init";
/// Name of the init container that only checks rules installed by Istio CNI.
pub const VALIDATION_CONTAINER: &str = "istio-validation";

/// What the template needs to know about one pod.
pub(crate) struct SidecarInputs<'a> {
    /// The pod being injected.
    pub pod: &'a Pod,
    /// Its namespace.
    pub namespace: &'a str,
    /// The owning workload.
    pub workload: &'a Workload,
    /// Resolved proxy resources.
    pub resources: &'a ProxyResources,
    /// Resolved init container resources.
    pub init_resources: &'a ProxyResources,
    /// How `--concurrency` follows them.
    pub concurrency: &'a ConcurrencyPolicy,
    /// Validated traffic settings.
    pub traffic: &'a TrafficSettings<'a>,
    /// Whether the proxy is a native sidecar.
    pub native: bool,
    /// Whether the app waits for the proxy (classic layout: proxy first, postStart wait).
    pub hold: bool,
    /// The pod's `proxy.istio.io/config`.
    pub proxy_config: &'a super::proxy_config::ProxyConfig,
    /// The app's own Prometheus settings, for `ISTIO_PROMETHEUS_ANNOTATIONS`.
    pub prometheus_original: Option<&'a JsonText>,
    /// The proxy's readiness probe, `None` when the status port is disabled.
    pub readiness_probe: Option<&'a ReadinessProbe>,
    /// The proxy image (config, or `sidecar.istio.io/proxyImage`), with its image type.
    pub proxy_image: &'a str,
    /// The init container's image, with its image type.
    pub init_image: &'a str,
    /// Add `NET_BIND_SERVICE` to the proxy (`sidecar.istio.io/capNetBindService`).
    pub cap_net_bind_service: bool,
    /// The ConfigMap of `sidecar.istio.io/bootstrapOverride`.
    pub bootstrap_override: Option<&'a str>,
    /// The proxy's uid and gid: 1337, or a user override's `runAsUser`/`runAsGroup`.
    pub proxy_ids: (i64, i64),
    /// The configuration.
    pub config: &'a InjectConfig,
    /// The parts compiled once for the config.
    pub template: &'a SidecarTemplate,
    /// Log levels of the proxy and agent.
    pub log_levels: &'a crate::log_levels::LogLevels<'a>,
    /// The proxy's `resizePolicy`, when the config writes one.
    pub resize_policy: Option<crate::resize_policy::ProxyResizePolicy>,
}

/// The `istio-proxy` container, with the template's parts where they fit this pod.
pub(crate) fn build_proxy_container<'a>(inputs: &SidecarInputs<'a>) -> ProxyContainer<'a> {
    let template = inputs.template;
    let concurrency = match inputs.proxy_config.concurrency {
        Some(set) if inputs.config.concurrency_arg_from_proxy_config => Some(set),
        // The agent reads it from PROXY_CONFIG, as istiod after 1.28 leaves it.
        Some(_) => None,
        None => inputs.resources.concurrency(inputs.concurrency),
    };
    let security = SecurityInputs {
        tproxy: inputs.traffic.mode == InterceptionMode::Tproxy,
        cap_net_bind_service: inputs.cap_net_bind_service,
        ids: inputs.proxy_ids,
    };
    let usual = SecurityInputs {
        tproxy: false,
        cap_net_bind_service: false,
        ids: (PROXY_UID, PROXY_UID),
    };
    let security_context = if security == usual {
        Fragment::Compiled(&template.proxy_security)
    } else {
        Fragment::Built(proxy_security_context(inputs.config, security))
    };
    let status_port = inputs.traffic.status_port;
    let lifecycle = if inputs.native {
        Some(match &template.native_lifecycle {
            (port, raw) if *port == status_port => Fragment::Compiled(raw),
            _ => Fragment::Built(native_lifecycle(status_port)),
        })
    } else {
        inputs.hold.then_some(Fragment::Compiled(&template.hold_lifecycle))
    };
    ProxyContainer {
        args: ProxyArgs {
            role: ProxyRole::Sidecar,
            domain: &template.domain,
            log_levels: inputs.log_levels,
            concurrency,
        },
        env: proxy_env(inputs),
        image: inputs.proxy_image,
        image_pull_policy: inputs.config.image_pull_policy.as_deref(),
        lifecycle,
        name: super::decision::PROXY_CONTAINER,
        ports: &template.ports,
        readiness_probe: inputs.readiness_probe,
        resize_policy: inputs.resize_policy,
        resources: Requirements(inputs.resources),
        restart_policy: inputs.native.then_some("Always"),
        security_context,
        startup_probe: (status_port != 0).then_some(&*template.startup_probe),
        volume_mounts: Mounts {
            compiled: &template.proxy_mounts.serialized,
            inserted: bootstrap_override::inserted_mount(
                inputs.bootstrap_override,
                template.proxy_mounts.bootstrap_after,
            ),
            user: Vec::new(),
        },
    }
}

/// Whether a user's mount clashes with one of the proxy's own, by path or volume name.
pub(crate) fn clashes_with_proxy_mount(config: &InjectConfig, mount: &Value) -> bool {
    let mtls = config
        .mount_mtls_certs
        .then_some((MTLS_CERTS_VOLUME, MTLS_CERTS_MOUNT_PATH));
    PROXY_MOUNTS
        .iter()
        .copied()
        .chain(mtls)
        .any(|(name, path)| mount["mountPath"] == path || mount["name"] == name)
}

/// A variable that is the same for every pod, from the template (absent when the config
/// leaves it out).
pub(crate) fn compiled_env<'a>(template: &'a SidecarTemplate, name: &'static str) -> Option<EnvVar<'a>> {
    template.env(name).map(|raw| EnvVar::Compiled(name, raw))
}

/// The proxy's environment, in the template's order.
fn proxy_env<'a>(inputs: &SidecarInputs<'a>) -> Vec<EnvVar<'a>> {
    let config = inputs.config;
    let app_containers = app_container_names(inputs.pod);
    let mut env = Vec::with_capacity(28);
    env.extend(compiled_env(
        inputs.template,
        "REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION",
    ));
    push_identity_env(inputs, &mut env);
    push_pod_env(inputs, &mut env);
    env.push(EnvVar::literal("ISTIO_META_APP_CONTAINERS", app_containers.join(",")));
    push_go_runtime_env(inputs, &mut env);
    push_mesh_env(inputs, &app_containers, &mut env);
    env.extend(metadata_env(inputs));
    crate::inject_path::move_path_envs_last(&mut env, config);
    env
}

/// `PROXY_CONFIG` (the mesh's ProxyConfig under the pod's) and `ISTIO_META_POD_PORTS`.
pub(crate) fn push_pod_env<'a>(inputs: &SidecarInputs<'a>, env: &mut Vec<EnvVar<'a>>) {
    let template = inputs.template;
    if inputs.proxy_config.raw.is_empty() {
        env.extend(compiled_env(template, "PROXY_CONFIG"));
    } else {
        let proxy_config = inputs.proxy_config.agent_json(&template.mesh_proxy_config);
        env.push(EnvVar::literal("PROXY_CONFIG", proxy_config));
    }
    env.push(EnvVar::literal("ISTIO_META_POD_PORTS", pod_ports_json(inputs.pod)));
}

/// The pod's containers other than a proxy already in it.
pub(crate) fn app_container_names(pod: &Pod) -> Vec<&str> {
    pod.spec
        .as_ref()
        .map(|spec| {
            spec.containers
                .iter()
                .map(|c| c.name.as_str())
                .filter(|name| *name != super::decision::PROXY_CONTAINER)
                .collect()
        })
        .unwrap_or_default()
}

/// The agent's CA and the pod's identity from the downward API.
pub(crate) fn push_identity_env<'a>(inputs: &SidecarInputs<'a>, env: &mut Vec<EnvVar<'a>>) {
    env.extend(
        [
            "PILOT_CERT_PROVIDER",
            "CA_ADDR",
            "POD_NAME",
            "POD_NAMESPACE",
            "INSTANCE_IP",
            "SERVICE_ACCOUNT",
            "HOST_IP",
            "ISTIO_CPU_LIMIT",
        ]
        .into_iter()
        .filter_map(|name| compiled_env(inputs.template, name)),
    );
}

/// The Go runtime's limits (`GOMEMLIMIT`, `GOMAXPROCS`) and the compliance policy.
pub(crate) fn push_go_runtime_env<'a>(inputs: &SidecarInputs<'a>, env: &mut Vec<EnvVar<'a>>) {
    let config = inputs.config;
    let compiled = |name| compiled_env(inputs.template, name);
    if config.go_mem_limit_percent >= 100 {
        env.extend(compiled("GOMEMLIMIT"));
    } else if let Some(bytes) = inputs.resources.go_memory_limit(config.go_mem_limit_percent) {
        env.push(EnvVar::literal("GOMEMLIMIT", bytes.to_string()));
    }
    if config.go_max_procs_from_limit {
        env.extend(compiled("GOMAXPROCS"));
    }
    env.extend(compiled("COMPLIANCE_POLICY"));
    env.extend(compiled("GODEBUG"));
}

/// The mesh metadata: cluster, node, interception mode, workload and owner, mesh, trust
/// domain, network, OpenTelemetry attributes and the pod's original Prometheus annotations.
fn push_mesh_env<'a>(inputs: &SidecarInputs<'a>, app_containers: &[&str], env: &mut Vec<EnvVar<'a>>) {
    let config = inputs.config;
    let compiled = |name| compiled_env(inputs.template, name);
    env.extend(compiled("ISTIO_META_CLUSTER_ID"));
    env.extend(compiled("ISTIO_META_NODE_NAME"));
    env.push(EnvVar::literal(
        "ISTIO_META_INTERCEPTION_MODE",
        inputs.traffic.mode.as_str(),
    ));
    push_workload_env(inputs, env);
    env.extend(compiled("ISTIO_META_MESH_ID"));
    env.extend(compiled("TRUST_DOMAIN"));
    env.extend(compiled("ISTIO_META_NETWORK"));
    if config.otel_resource_attributes
        && let Some(attributes) = otel_resource_attributes(inputs, app_containers)
    {
        env.push(EnvVar::literal("OTEL_RESOURCE_ATTRIBUTES", attributes));
    }
    if let Some(original) = inputs.prometheus_original {
        env.push(EnvVar::Json("ISTIO_PROMETHEUS_ANNOTATIONS", original));
    }
}

/// `ISTIO_META_WORKLOAD_NAME` and `ISTIO_META_OWNER`, for a pod with an owning workload; then
/// `ISTIO_BOOTSTRAP_OVERRIDE`, for a pod naming a custom bootstrap.
pub(crate) fn push_workload_env<'a>(inputs: &SidecarInputs<'a>, env: &mut Vec<EnvVar<'a>>) {
    if !inputs.workload.name.is_empty() {
        let labelled = inputs
            .pod
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(WORKLOAD_NAME_LABEL));
        let name = labelled.unwrap_or(&inputs.workload.name);
        env.push(EnvVar::literal("ISTIO_META_WORKLOAD_NAME", name.as_str()));
        env.push(EnvVar::literal(
            "ISTIO_META_OWNER",
            inputs.workload.owner_uri(inputs.namespace),
        ));
    }
    // Both of istiod's templates name the custom bootstrap right after the owner.
    if inputs.bootstrap_override.is_some() {
        env.push(EnvVar::literal(bootstrap_override::ENV, bootstrap_override::FILE));
    }
}

/// OpenTelemetry's Kubernetes service attributes, for pods labelled with
/// `app.kubernetes.io/version`: namespace, version and `<namespace>.<pod>.<container>`.
fn otel_resource_attributes(inputs: &SidecarInputs<'_>, app_containers: &[&str]) -> Option<String> {
    let version = inputs.pod.metadata.labels.as_ref()?.get(APP_VERSION_LABEL)?;
    let namespace = inputs.namespace;
    let container = app_containers.first().copied().unwrap_or_default();
    Some(format!(
        "service.namespace={namespace},service.version={version},service.instance.id={namespace}.$(POD_NAME).{container}"
    ))
}

/// A label naming the workload for telemetry in place of its controller's name.
const WORKLOAD_NAME_LABEL: &str = "service.istio.io/workload-name";

/// The label OpenTelemetry reads `service.version` from.
const APP_VERSION_LABEL: &str = "app.kubernetes.io/version";

/// `proxyMetadata` from `proxy.istio.io/config`, as environment variables.
pub(crate) fn metadata_env<'a>(inputs: &SidecarInputs<'a>) -> impl Iterator<Item = EnvVar<'a>> + 'a {
    inputs
        .proxy_config
        .metadata
        .iter()
        .map(|(name, value)| EnvVar::literal(name.as_str(), value.as_str()))
}

/// The app containers' ports as Istio's agent reads them (an empty list when there are none).
fn pod_ports_json(pod: &Pod) -> String {
    use std::io::Write as _;
    let ports = pod
        .spec
        .iter()
        .flat_map(|spec| spec.containers.iter())
        .flat_map(|container| container.ports.iter().flatten());
    // Written into one buffer: `[`, then each port as `    {"name":…,"containerPort":…}` on
    // its own line, then `]` on its own; writes into a Vec never fail. Room is made once, for
    // a port with a short name and protocol (about 60 bytes) each.
    let mut out = Vec::with_capacity(4 + 64 * ports.clone().count());
    out.extend_from_slice(b"[\n");
    let mut first = true;
    for port in ports {
        out.extend_from_slice(if first { b"    {" } else { b",\n    {" });
        first = false;
        if let Some(name) = &port.name {
            out.extend_from_slice(b"\"name\":");
            let _ = serde_json::to_writer(&mut out, name);
            out.push(b',');
        }
        if let Some(host_port) = port.host_port {
            let _ = write!(out, "\"hostPort\":{host_port},");
        }
        let _ = write!(out, "\"containerPort\":{}", port.container_port);
        if let Some(protocol) = &port.protocol {
            out.extend_from_slice(b",\"protocol\":");
            let _ = serde_json::to_writer(&mut out, protocol);
        }
        out.push(b'}');
    }
    out.extend_from_slice(if first { b"]" } else { b"\n]" });
    // Only JSON was written, and serde_json writes UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

use crate::annotations::READINESS_FAILURE_THRESHOLD;
use crate::annotations::READINESS_INITIAL_DELAY;
use crate::annotations::READINESS_PERIOD;

/// The proxy's readiness probe from the `readiness.status.sidecar.istio.io/*` annotations
/// over the config; `None` when the status port is 0.
pub fn readiness_probe(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    config: &InjectConfig,
    status_port: u16,
) -> Result<Option<ReadinessProbe>, super::error::InjectError> {
    if status_port == 0 {
        return Ok(None);
    }
    let number = |key: &'static str, default: u32| -> Result<u32, super::error::InjectError> {
        match annotations.and_then(|map| map.get(key)) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<u32>()
                .map_err(|_| super::error::InjectError::InvalidAnnotation {
                    annotation: key.into(),
                    value: super::error::quoted(text),
                    reason: "it is not a whole number of seconds or tries".into(),
                    accepted: crate::annotations::WHOLE_NUMBER_FORMS,
                }),
        }
    };
    Ok(Some(ReadinessProbe {
        initial_delay_seconds: number(READINESS_INITIAL_DELAY, config.readiness_initial_delay_seconds)?,
        failure_threshold: number(READINESS_FAILURE_THRESHOLD, config.readiness_failure_threshold)?,
        period_seconds: number(READINESS_PERIOD, config.readiness_period_seconds)?,
    }))
}

/// The init container: `istio-init`, or `istio-validation` when Istio CNI installs the rules.
pub(crate) fn build_init_container<'a>(inputs: &SidecarInputs<'a>) -> InitContainer<'a> {
    let config = inputs.config;
    let cni = config.cni_enabled;
    let security_context = if inputs.proxy_ids == (PROXY_UID, PROXY_UID) {
        Fragment::Compiled(&inputs.template.init_security)
    } else {
        Fragment::Built(init_security_context(config, inputs.proxy_ids))
    };
    InitContainer {
        args: inputs
            .traffic
            .iptables_args(cni, inputs.proxy_ids.0, inputs.log_levels.agent),
        env: metadata_env(inputs).collect(),
        image: inputs.init_image,
        image_pull_policy: config.image_pull_policy.as_deref(),
        name: init_container_name(config),
        resources: Requirements(inputs.init_resources),
        security_context,
    }
}

/// The init container's name under this config.
pub fn init_container_name(config: &InjectConfig) -> &'static str {
    if config.cni_enabled {
        VALIDATION_CONTAINER
    } else {
        INIT_CONTAINER
    }
}

/// Re-applies what TPROXY interception needs after a user override was merged: the proxy
/// runs as root with NET_ADMIN.
pub fn enforce_tproxy(proxy: &mut Value) {
    let Some(security) = proxy.get_mut("securityContext").and_then(Value::as_object_mut) else {
        return;
    };
    security.insert("runAsUser".into(), json!(0));
    security.insert("runAsNonRoot".into(), json!(false));
    let capabilities = security.entry("capabilities").or_insert_with(|| json!({}));
    capabilities["add"] = json!(["NET_ADMIN"]);
}

/// The `istio-certs` volume (istiod's `global.mountMtlsCerts`): the pod's service account's
/// `istio.<account>` Secret.
pub fn mtls_certs_volume(config: &InjectConfig, pod: &Pod) -> Option<(&'static str, Value)> {
    if !config.mount_mtls_certs {
        return None;
    }
    let account = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.service_account_name.as_deref())
        .filter(|name| !name.is_empty())
        .unwrap_or("default");
    Some((
        MTLS_CERTS_VOLUME,
        json!({"name": MTLS_CERTS_VOLUME, "secret": {"optional": true, "secretName": format!("istio.{account}")}}),
    ))
}

#[cfg(test)]
mod tests {
    //! The settings that follow istiod after 1.28, through the public injection call.

    use serde_json::{Value, json};

    use crate::config::InjectConfig;
    use crate::test_support::{container, inject_and_apply};

    #[test]
    fn pod_ports_are_written_one_per_line() {
        let pod = |containers: Value| -> k8s_openapi::api::core::v1::Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})).unwrap()
        };
        let two = pod(json!([
            {"name": "a", "ports": [{"name": "http", "containerPort": 80}]},
            {"name": "b", "ports": [{"hostPort": 8080, "containerPort": 8080, "protocol": "TCP"},
                                    {"name": "q\"uote", "containerPort": 9}]},
        ]));
        assert_eq!(
            super::pod_ports_json(&two),
            "[\n    {\"name\":\"http\",\"containerPort\":80},\n    \
             {\"hostPort\":8080,\"containerPort\":8080,\"protocol\":\"TCP\"},\n    \
             {\"name\":\"q\\\"uote\",\"containerPort\":9}\n]"
        );
        assert_eq!(super::pod_ports_json(&pod(json!([{"name": "a"}]))), "[\n]");
    }

    fn injected(config: InjectConfig, labels: Value, annotations: Value) -> Value {
        let pod = json!({"metadata": {"name": "p", "labels": labels, "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "app"}]}});
        inject_and_apply(config, &pod, Default::default()).unwrap().0
    }

    fn env_names(proxy: &Value) -> Vec<&str> {
        proxy["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect()
    }

    #[test]
    fn a_proxy_image_without_a_registry_path_is_not_used_as_istiod_reads_it() {
        let pod = json!({"metadata": {"name": "p", "annotations": {"sidecar.istio.io/proxyImage": "a b"}},
            "spec": {"containers": [{"name": "app", "image": "app"}]}});
        let (patched, outcome) = inject_and_apply(InjectConfig::default(), &pod, Default::default()).unwrap();
        assert_eq!(
            container(&patched, "istio-proxy")["image"],
            InjectConfig::default().proxy_image
        );
        assert!(
            outcome.warnings.iter().any(|w| w.contains("has no '/'")),
            "{:?}",
            outcome.warnings
        );
        let named = injected(
            InjectConfig::default(),
            json!({}),
            json!({"sidecar.istio.io/proxyImage": "example/proxy:own"}),
        );
        assert_eq!(container(&named, "istio-proxy")["image"], "example/proxy:own");
    }

    #[test]
    fn istio_1_28_and_later_behaviours_follow_their_settings() {
        let annotations = json!({"sidecar.istio.io/proxyImage": "example/proxy:own",
            "proxy.istio.io/config": "{\"concurrency\": 3}"});
        let labels = json!({"app.kubernetes.io/version": "v1"});
        let as_1_28 = injected(InjectConfig::default(), labels.clone(), annotations.clone());
        let proxy = container(&as_1_28, "istio-proxy");
        assert_eq!(
            container(&as_1_28, "istio-init")["image"],
            InjectConfig::default().proxy_init_image
        );
        assert!(
            proxy["args"]
                .as_array()
                .unwrap()
                .windows(2)
                .any(|w| w[0] == "--concurrency" && w[1] == "3")
        );
        assert!(env_names(proxy).contains(&"OTEL_RESOURCE_ATTRIBUTES"));

        let later = InjectConfig {
            init_image_from_proxy_image_annotation: true,
            concurrency_arg_from_proxy_config: false,
            otel_resource_attributes: false,
            ..InjectConfig::default()
        };
        let after = injected(later, labels, annotations);
        let proxy = container(&after, "istio-proxy");
        assert_eq!(container(&after, "istio-init")["image"], "example/proxy:own");
        assert!(
            !proxy["args"].as_array().unwrap().iter().any(|a| a == "--concurrency"),
            "{}",
            proxy["args"]
        );
        assert!(!env_names(proxy).contains(&"OTEL_RESOURCE_ATTRIBUTES"));
    }
}
