//! Istio's fixed sidecar parts, as JSON: the volume names and volumes, the proxy's mounts,
//! the security contexts and the native drain hook. [`crate::template`] serializes them once
//! per config; [`crate::sidecar`] builds one for a pod only where the pod differs.

use serde_json::{Value, json};

use crate::config::InjectConfig;

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

/// What the proxy's and init container's security contexts depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SecurityInputs {
    /// TPROXY interception.
    pub tproxy: bool,
    /// `sidecar.istio.io/capNetBindService`.
    pub cap_net_bind_service: bool,
    /// The proxy's uid and gid.
    pub ids: (i64, i64),
}

/// Non-root, read-only and without capabilities; a TPROXY proxy runs as root with
/// `NET_ADMIN`, and one with `capNetBindService` as root with `NET_BIND_SERVICE` (gid 1337),
/// as istiod's template has it.
pub(crate) fn proxy_security_context(config: &InjectConfig, inputs: SecurityInputs) -> Value {
    let tproxy = inputs.tproxy;
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
    let mut context = json!({
        "allowPrivilegeEscalation": false,
        "capabilities": capabilities,
        "privileged": false,
        "readOnlyRootFilesystem": true,
        "runAsGroup": if bind && !tproxy { 1337 } else { inputs.ids.1 },
        "runAsNonRoot": !root,
        "runAsUser": if root { 0 } else { inputs.ids.0 },
    });
    add_seccomp(&mut context, config);
    context
}

/// The proxy's mounts of Istio's volumes, with the mTLS certificates just before the pod
/// info when `mountMtlsCerts` is on (Istio's template order).
pub(crate) fn proxy_mounts(config: &InjectConfig) -> Vec<Value> {
    let mounts = PROXY_MOUNTS.iter().flat_map(|(name, path)| {
        let mtls = (config.mount_mtls_certs && *name == "istio-podinfo")
            .then(|| json!({"mountPath": MTLS_CERTS_MOUNT_PATH, "name": MTLS_CERTS_VOLUME, "readOnly": true}));
        mtls.into_iter().chain([json!({"mountPath": path, "name": name})])
    });
    mounts.collect()
}

/// The native sidecar's `preStop` hook: drain through the agent's status port.
pub(crate) fn native_lifecycle(status_port: u16) -> Value {
    json!({"preStop": {"exec": {"command": [
        "pilot-agent",
        "request",
        format!("--debug-port={status_port}"),
        "POST",
        "drain",
    ]}}})
}

/// The init container's security context: root with `NET_ADMIN` and `NET_RAW` to install
/// the rules, or, when Istio CNI installs them, the proxy's uid and gid without capabilities.
pub(crate) fn init_security_context(config: &InjectConfig, ids: (i64, i64)) -> Value {
    let mut context = if config.cni_enabled {
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsGroup": ids.1,
            "runAsNonRoot": true,
            "runAsUser": ids.0,
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
    add_seccomp(&mut context, config);
    context
}

/// Adds `seccompProfile: RuntimeDefault` to a security context when configured.
fn add_seccomp(security: &mut Value, config: &InjectConfig) {
    if !config.seccomp_runtime_default {
        return;
    }
    if let Some(security) = security.as_object_mut() {
        security.insert("seccompProfile".into(), json!({"type": "RuntimeDefault"}));
    }
}

/// Name of the volume `mountMtlsCerts` adds.
pub(crate) const MTLS_CERTS_VOLUME: &str = "istio-certs";

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
