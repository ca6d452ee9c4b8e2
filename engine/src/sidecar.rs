//! The containers and volumes Istio's sidecar template adds, built as JSON.
//!
//! Field for field this follows istiod's default `sidecar` template, so a pod joins the
//! mesh exactly as it would with istiod. The values that are ours, not Istio's, are the
//! resources (resolved per field) and `--concurrency` (derived from the CPU limit).

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::resources::{ConcurrencyPolicy, ProxyResources};
use super::traffic::TrafficSettings;
use super::workload::Workload;
use crate::config::{InboundTrafficPolicy, InjectConfig, InterceptionMode};

/// Name of the init container that installs iptables rules.
pub const INIT_CONTAINER: &str = "istio-init";
/// Name of the init container that only checks rules installed by Istio CNI.
pub const VALIDATION_CONTAINER: &str = "istio-validation";

/// The volumes the proxy always needs, in Istio's order.
pub const VOLUME_NAMES: [&str; 9] = [
    "workload-socket",
    "credential-socket",
    "workload-certs",
    "istio-envoy",
    "istio-data",
    "istio-podinfo",
    "istio-token",
    "istiod-ca-cert",
    "istio-ca-crl",
];

/// The proxy's own mounts, (volume, path), in Istio's order.
pub const PROXY_MOUNTS: [(&str, &str); 9] = [
    ("workload-socket", "/var/run/secrets/workload-spiffe-uds"),
    ("credential-socket", "/var/run/secrets/credential-uds"),
    ("workload-certs", "/var/run/secrets/workload-spiffe-credentials"),
    ("istiod-ca-cert", "/var/run/secrets/istio"),
    ("istio-ca-crl", "/var/run/secrets/istio/crl"),
    ("istio-data", "/var/lib/istio/data"),
    ("istio-envoy", "/etc/istio/proxy"),
    ("istio-token", "/var/run/secrets/tokens"),
    ("istio-podinfo", "/etc/istio/pod"),
];

/// Where the `istio-certs` volume is mounted when `mountMtlsCerts` is on.
pub(crate) const MTLS_CERTS_MOUNT_PATH: &str = "/etc/certs/";

/// What the template needs to know about one pod.
pub struct SidecarInputs<'a> {
    /// The pod being injected.
    pub pod: &'a Pod,
    /// Its namespace.
    pub namespace: &'a str,
    /// The owning workload.
    pub workload: &'a Workload,
    /// Resolved proxy resources.
    pub resources: &'a ProxyResources,
    /// How `--concurrency` follows them.
    pub concurrency: &'a ConcurrencyPolicy,
    /// Validated traffic settings.
    pub traffic: &'a TrafficSettings,
    /// Whether the proxy is a native sidecar.
    pub native: bool,
    /// Whether the app waits for the proxy (classic layout: proxy first, postStart wait).
    pub hold: bool,
    /// The pod's `proxy.istio.io/config`.
    pub proxy_config: &'a super::proxy_config::ProxyConfig,
    /// The app's own Prometheus settings, for `ISTIO_PROMETHEUS_ANNOTATIONS`.
    pub prometheus_original: Option<&'a str>,
    /// The proxy's readiness probe, `None` when the status port is disabled.
    pub readiness_probe: Option<Value>,
    /// The proxy image (config, or `sidecar.istio.io/proxyImage`), with its image type.
    pub proxy_image: &'a str,
    /// The init container's image, with its image type.
    pub init_image: &'a str,
    /// Add `NET_BIND_SERVICE` to the proxy (`sidecar.istio.io/capNetBindService`).
    pub cap_net_bind_service: bool,
    /// The proxy's uid and gid: 1337, or a user override's `runAsUser`/`runAsGroup`.
    pub proxy_ids: (i64, i64),
    /// The configuration.
    pub config: &'a InjectConfig,
    /// The mesh-wide ProxyConfig, from the compiled template.
    pub mesh_proxy_config: &'a serde_json::Map<String, Value>,
    /// Log levels of the proxy and agent.
    pub log_levels: &'a crate::log_levels::LogLevels,
    /// The proxy's `resizePolicy`, when the config writes one.
    pub resize_policy: Option<crate::resize_policy::ProxyResizePolicy>,
}

/// The `istio-proxy` container.
pub fn build_proxy_container(inputs: &SidecarInputs<'_>) -> Value {
    let mut container = json!({
        "name": super::decision::PROXY_CONTAINER,
        "image": inputs.proxy_image,
        "args": proxy_args(inputs),
        "env": proxy_env(inputs),
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "resources": inputs.resources.to_requirements(),
        "securityContext": proxy_security_context(inputs),
        "volumeMounts": proxy_mounts(inputs.config),
    });
    if let Some(object) = container.as_object_mut() {
        add_seccomp(object, inputs.config);
        add_probes_and_lifecycle(object, inputs);
        if let Some(policy) = &inputs.config.image_pull_policy {
            object.insert("imagePullPolicy".into(), json!(policy));
        }
        if let Some(policy) = inputs.resize_policy {
            object.insert("resizePolicy".into(), policy.to_json());
        }
    }
    container
}

/// `proxy sidecar` with the domain, log levels and, unless the agent chooses, `--concurrency`.
fn proxy_args(inputs: &SidecarInputs<'_>) -> Vec<String> {
    let config = inputs.config;
    let mut args = vec![
        "proxy".to_string(),
        "sidecar".to_string(),
        "--domain".to_string(),
        format!("$(POD_NAMESPACE).svc.{}", config.cluster_domain),
        format!("--proxyLogLevel={}", inputs.log_levels.proxy),
        format!("--proxyComponentLogLevel={}", inputs.log_levels.components),
        format!("--log_output_level={}", inputs.log_levels.agent),
    ];
    let concurrency = inputs
        .proxy_config
        .concurrency
        .or_else(|| inputs.resources.concurrency(inputs.concurrency));
    if let Some(workers) = concurrency {
        args.extend(["--concurrency".to_string(), workers.to_string()]);
    }
    args
}

/// Non-root, read-only and without capabilities; a TPROXY proxy runs as root with
/// `NET_ADMIN`, and one with `capNetBindService` as root with `NET_BIND_SERVICE` (gid 1337),
/// as istiod's template has it.
fn proxy_security_context(inputs: &SidecarInputs<'_>) -> Value {
    let tproxy = inputs.traffic.mode == InterceptionMode::Tproxy;
    let bind = inputs.cap_net_bind_service;
    let mut add = Vec::new();
    if tproxy {
        add.push("NET_ADMIN");
    }
    if bind {
        add.push("NET_BIND_SERVICE");
    }
    let capabilities = if add.is_empty() {
        json!({"drop": ["ALL"]})
    } else {
        json!({"add": add, "drop": ["ALL"]})
    };
    let root = tproxy || bind;
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": capabilities,
        "privileged": false,
        "readOnlyRootFilesystem": true,
        "runAsGroup": if bind && !tproxy { 1337 } else { inputs.proxy_ids.1 },
        "runAsNonRoot": !root,
        "runAsUser": if root { 0 } else { inputs.proxy_ids.0 },
    })
}

/// The proxy's mounts of Istio's volumes, with the mTLS certificates just before the pod
/// info when `mountMtlsCerts` is on (Istio's template order).
fn proxy_mounts(config: &InjectConfig) -> Value {
    let mounts = PROXY_MOUNTS.iter().flat_map(|(name, path)| {
        let mtls = (config.mount_mtls_certs && *name == "istio-podinfo")
            .then(|| json!({"mountPath": MTLS_CERTS_MOUNT_PATH, "name": MTLS_CERTS_VOLUME, "readOnly": true}));
        mtls.into_iter().chain([json!({"mountPath": path, "name": name})])
    });
    Value::Array(mounts.collect())
}

/// Readiness and startup probes, the hold or drain hook, and the native restart policy.
fn add_probes_and_lifecycle(object: &mut serde_json::Map<String, Value>, inputs: &SidecarInputs<'_>) {
    if let Some(probe) = &inputs.readiness_probe {
        object.insert("readinessProbe".into(), probe.clone());
    }
    if inputs.traffic.status_port != 0 {
        object.insert(
            "startupProbe".into(),
            json!({
                "failureThreshold": 600,
                "httpGet": {"path": "/healthz/ready", "port": 15021},
                "periodSeconds": 1,
                "timeoutSeconds": 3,
            }),
        );
    }
    if inputs.hold && !inputs.native {
        object.insert(
            "lifecycle".into(),
            json!({"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}),
        );
    }
    if inputs.native {
        object.insert("restartPolicy".into(), json!("Always"));
        object.insert(
            "lifecycle".into(),
            json!({"preStop": {"exec": {"command": [
                "pilot-agent",
                "request",
                format!("--debug-port={}", inputs.traffic.status_port),
                "POST",
                "drain",
            ]}}}),
        );
    }
}

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

fn resource_env(name: &str, resource: &str) -> Value {
    json!({"name": name, "valueFrom": {"resourceFieldRef": {"divisor": "1", "resource": resource}}})
}

/// An env var with a literal value; an empty value is left out, as the API server stores it.
fn value_env(name: &str, value: impl Into<String>) -> Value {
    let value = value.into();
    if value.is_empty() {
        json!({ "name": name })
    } else {
        json!({"name": name, "value": value})
    }
}

fn proxy_env(inputs: &SidecarInputs<'_>) -> Vec<Value> {
    let config = inputs.config;
    let spec = inputs.pod.spec.as_ref();
    let app_containers: Vec<&str> = spec
        .map(|spec| {
            spec.containers
                .iter()
                .map(|c| c.name.as_str())
                .filter(|name| *name != super::decision::PROXY_CONTAINER)
                .collect()
        })
        .unwrap_or_default();
    let mut env = Vec::with_capacity(24);
    if config.inbound_traffic_policy == InboundTrafficPolicy::Localhost {
        env.push(value_env("REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION", "true"));
    }
    env.extend([
        value_env("PILOT_CERT_PROVIDER", "istiod"),
        value_env("CA_ADDR", config.ca_address.clone()),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("INSTANCE_IP", "status.podIP"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        field_env("HOST_IP", "status.hostIP"),
        resource_env("ISTIO_CPU_LIMIT", "limits.cpu"),
        value_env("PROXY_CONFIG", inputs.proxy_config.agent_json(inputs.mesh_proxy_config)),
    ]);
    env.push(value_env("ISTIO_META_POD_PORTS", pod_ports_json(inputs.pod)));
    env.push(value_env("ISTIO_META_APP_CONTAINERS", app_containers.join(",")));
    if config.go_mem_limit_percent >= 100 {
        env.push(resource_env("GOMEMLIMIT", "limits.memory"));
    } else if let Some(bytes) = inputs.resources.go_memory_limit(config.go_mem_limit_percent) {
        env.push(value_env("GOMEMLIMIT", bytes.to_string()));
    }
    if config.go_max_procs_from_limit {
        env.push(resource_env("GOMAXPROCS", "limits.cpu"));
    }
    if !config.compliance_policy.is_empty() {
        env.push(value_env("COMPLIANCE_POLICY", config.compliance_policy.clone()));
        if config.compliance_policy == "fips-140-3" {
            env.push(value_env("GODEBUG", "fips140=only"));
        }
    }
    env.extend([
        value_env("ISTIO_META_CLUSTER_ID", config.cluster_id.clone()),
        field_env("ISTIO_META_NODE_NAME", "spec.nodeName"),
        value_env("ISTIO_META_INTERCEPTION_MODE", inputs.traffic.mode.as_str()),
    ]);
    if !inputs.workload.name.is_empty() {
        let labelled = inputs
            .pod
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(WORKLOAD_NAME_LABEL));
        let name = labelled.unwrap_or(&inputs.workload.name);
        env.push(value_env("ISTIO_META_WORKLOAD_NAME", name.clone()));
        env.push(value_env(
            "ISTIO_META_OWNER",
            inputs.workload.owner_uri(inputs.namespace),
        ));
    }
    env.push(value_env("ISTIO_META_MESH_ID", config.mesh_id.clone()));
    env.push(value_env("TRUST_DOMAIN", config.trust_domain.clone()));
    if !config.network.is_empty() {
        env.push(value_env("ISTIO_META_NETWORK", config.network.clone()));
    }
    if let Some(attributes) = otel_resource_attributes(inputs, &app_containers) {
        env.push(value_env("OTEL_RESOURCE_ATTRIBUTES", attributes));
    }
    if let Some(original) = inputs.prometheus_original {
        env.push(value_env("ISTIO_PROMETHEUS_ANNOTATIONS", original));
    }
    env.extend(metadata_env(inputs));
    crate::inject_path::move_path_envs_last(&mut env, config);
    env
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
fn metadata_env<'a>(inputs: &SidecarInputs<'a>) -> impl Iterator<Item = Value> + 'a {
    inputs
        .proxy_config
        .metadata
        .iter()
        .map(|(name, value)| value_env(name, value.clone()))
}

/// The app containers' ports as Istio's agent reads them (an empty list when there are none).
fn pod_ports_json(pod: &Pod) -> String {
    let entries: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|spec| spec.containers.iter())
        .flat_map(|container| container.ports.iter().flatten())
        .map(|port| {
            let mut fields = Vec::with_capacity(4);
            if let Some(name) = &port.name {
                fields.push(format!("\"name\":{}", Value::from(name.as_str())));
            }
            if let Some(host_port) = port.host_port {
                fields.push(format!("\"hostPort\":{host_port}"));
            }
            fields.push(format!("\"containerPort\":{}", port.container_port));
            if let Some(protocol) = &port.protocol {
                fields.push(format!("\"protocol\":{}", Value::from(protocol.as_str())));
            }
            format!("    {{{}}}", fields.join(","))
        })
        .collect();
    if entries.is_empty() {
        "[\n]".to_string()
    } else {
        format!("[\n{}\n]", entries.join(",\n"))
    }
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
) -> Result<Option<Value>, super::error::InjectError> {
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
    let initial_delay = number(READINESS_INITIAL_DELAY, config.readiness_initial_delay_seconds)?;
    let mut probe = json!({
        "failureThreshold": number(READINESS_FAILURE_THRESHOLD, config.readiness_failure_threshold)?,
        "httpGet": {"path": "/healthz/ready", "port": 15021},
        "periodSeconds": number(READINESS_PERIOD, config.readiness_period_seconds)?,
        "timeoutSeconds": 3,
    });
    if initial_delay > 0 {
        probe["initialDelaySeconds"] = json!(initial_delay);
    }
    Ok(Some(probe))
}

/// The init container: `istio-init`, or `istio-validation` when Istio CNI installs the rules.
pub fn build_init_container(inputs: &SidecarInputs<'_>) -> Value {
    let config = inputs.config;
    let cni = config.cni_enabled;
    let security_context = if cni {
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsGroup": inputs.proxy_ids.1,
            "runAsNonRoot": true,
            "runAsUser": inputs.proxy_ids.0,
        })
    } else {
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": false,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "runAsUser": 0,
        })
    };
    let mut container = json!({
        "name": init_container_name(config),
        "image": inputs.init_image,
        "args": inputs.traffic.iptables_args(cni, inputs.proxy_ids.0, &inputs.log_levels.agent),
        "resources": inputs.resources.to_requirements(),
        "securityContext": security_context,
    });
    let metadata: Vec<Value> = metadata_env(inputs).collect();
    if let (false, Some(object)) = (metadata.is_empty(), container.as_object_mut()) {
        object.insert("env".into(), Value::Array(metadata));
    }
    if let Some(object) = container.as_object_mut() {
        add_seccomp(object, config);
        if let Some(policy) = &config.image_pull_policy {
            object.insert("imagePullPolicy".into(), json!(policy));
        }
    }
    container
}

/// Adds `seccompProfile: RuntimeDefault` to a container's security context when configured.
fn add_seccomp(container: &mut serde_json::Map<String, Value>, config: &InjectConfig) {
    if !config.seccomp_runtime_default {
        return;
    }
    if let Some(security) = container.get_mut("securityContext").and_then(Value::as_object_mut) {
        security.insert("seccompProfile".into(), json!({"type": "RuntimeDefault"}));
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

/// Name of the volume `mountMtlsCerts` adds.
pub(crate) const MTLS_CERTS_VOLUME: &str = "istio-certs";

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

/// Istio's nine volumes, the same for every pod ([`crate::template`] serializes them once).
pub fn standard_volumes() -> [Value; 9] {
    [
        json!({"name": "workload-socket", "emptyDir": {}}),
        json!({"name": "credential-socket", "emptyDir": {}}),
        json!({"name": "workload-certs", "emptyDir": {}}),
        json!({"name": "istio-envoy", "emptyDir": {"medium": "Memory"}}),
        json!({"name": "istio-data", "emptyDir": {}}),
        json!({
            "name": "istio-podinfo",
            "downwardAPI": {"items": [
                {"fieldRef": {"fieldPath": "metadata.labels"}, "path": "labels"},
                {"fieldRef": {"fieldPath": "metadata.annotations"}, "path": "annotations"},
            ]},
        }),
        json!({
            "name": "istio-token",
            "projected": {"sources": [{"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]},
        }),
        json!({"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}}),
        json!({"name": "istio-ca-crl", "configMap": {"name": "istio-ca-crl", "optional": true}}),
    ]
}
