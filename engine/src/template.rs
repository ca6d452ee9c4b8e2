//! The parts of the sidecar that are the same for every pod, built and serialized once in
//! [`crate::Injector::new`] and spliced into each answer as they are.

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::config::{InboundTrafficPolicy, InjectConfig, InterceptionMode};
use crate::container::EnvVar;
use crate::istio_parts::{self, SecurityInputs, VOLUME_NAMES, standard_volumes};
use crate::json_write::WriteJson;
use crate::overrides::PROXY_PORTS;
use crate::traffic::PROXY_UID;

/// The compiled template.
#[derive(Debug, Clone)]
pub(crate) struct SidecarTemplate {
    /// Istio's nine volumes, serialized, with their names.
    pub volumes: Vec<(&'static str, Box<RawValue>)>,
    /// The mesh-wide ProxyConfig the config changes from Istio's defaults, under each pod's
    /// `proxy.istio.io/config` in `PROXY_CONFIG`.
    pub mesh_proxy_config: Map<String, Value>,
    /// `$(POD_NAMESPACE).svc.<cluster domain>`, the proxy's `--domain`.
    pub domain: String,
    /// The proxy's `ports`.
    pub ports: Box<RawValue>,
    /// The proxy's `startupProbe`.
    pub startup_probe: Box<RawValue>,
    /// The `postStart` hook that holds the app until the proxy is ready.
    pub hold_lifecycle: Box<RawValue>,
    /// The native sidecar's drain `preStop` hook for the config's status port.
    pub native_lifecycle: (u16, Box<RawValue>),
    /// The proxy's mounts of Istio's volumes (and of the mTLS certificates, when mounted).
    pub proxy_mounts: ProxyMounts,
    /// The variables that are the same for every pod, by name: the downward-API ones, and
    /// those whose value is the config's alone (left out here when the config leaves them
    /// out of every pod).
    pub env: Vec<(&'static str, Box<RawValue>)>,
    /// The proxy's security context for the usual case: redirect capture, uid/gid 1337.
    pub proxy_security: Box<RawValue>,
    /// The init container's security context for uid/gid 1337.
    pub init_security: Box<RawValue>,
}

/// A template's proxy mounts, serialized, with where a custom bootstrap's mount goes among
/// them.
#[derive(Debug, Clone)]
pub(crate) struct ProxyMounts {
    /// The mounts, in order.
    pub serialized: Vec<Box<RawValue>>,
    /// The index of the mount the custom bootstrap's is written after
    /// ([`crate::bootstrap_override::AFTER_MOUNT`]'s), if the template has it.
    pub bootstrap_after: Option<usize>,
}

impl ProxyMounts {
    /// Serializes `mounts` and finds the custom bootstrap's place among them.
    pub(crate) fn compile(mounts: impl IntoIterator<Item = Value>) -> Self {
        let mounts: Vec<Value> = mounts.into_iter().collect();
        ProxyMounts {
            bootstrap_after: mounts
                .iter()
                .position(|mount| mount["name"] == crate::bootstrap_override::AFTER_MOUNT),
            serialized: mounts.iter().map(raw).collect(),
        }
    }
}

/// The downward-API variables of the proxy: (name, field path or resource, from a resource).
const DOWNWARD_ENV: [(&str, &str, bool); 9] = [
    ("POD_NAME", "metadata.name", false),
    ("POD_NAMESPACE", "metadata.namespace", false),
    ("INSTANCE_IP", "status.podIP", false),
    ("SERVICE_ACCOUNT", "spec.serviceAccountName", false),
    ("HOST_IP", "status.hostIP", false),
    ("ISTIO_CPU_LIMIT", "limits.cpu", true),
    ("GOMEMLIMIT", "limits.memory", true),
    ("GOMAXPROCS", "limits.cpu", true),
    ("ISTIO_META_NODE_NAME", "spec.nodeName", false),
];

/// The variables whose value comes from the config alone, as (name, value); those the
/// config leaves out of every pod are absent. `PROXY_CONFIG` is the one of a pod without
/// `proxy.istio.io/config`.
fn config_env<'c>(config: &'c InjectConfig, mesh_proxy_config_json: &'c str) -> Vec<(&'static str, &'c str)> {
    let mut env = vec![
        ("PILOT_CERT_PROVIDER", "istiod"),
        ("CA_ADDR", config.ca_address.as_str()),
        ("PROXY_CONFIG", mesh_proxy_config_json),
        ("ISTIO_META_CLUSTER_ID", config.cluster_id.as_str()),
        ("ISTIO_META_MESH_ID", config.mesh_id.as_str()),
        ("TRUST_DOMAIN", config.trust_domain.as_str()),
    ];
    if config.inbound_traffic_policy == InboundTrafficPolicy::Localhost {
        env.push(("REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION", "true"));
    }
    if !config.compliance_policy.is_empty() {
        env.push(("COMPLIANCE_POLICY", config.compliance_policy.as_str()));
        if config.compliance_policy == "fips-140-3" {
            env.push(("GODEBUG", "fips140=only"));
        }
    }
    if !config.network.is_empty() {
        env.push(("ISTIO_META_NETWORK", config.network.as_str()));
    }
    env
}

/// Serializes a value built from constants (a `Value` or one of the engine's own types);
/// `null` if it somehow has no JSON form.
pub(crate) fn raw<T: serde::Serialize>(value: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// [`raw`] for a value that writes its own JSON.
fn raw_written(value: &impl WriteJson) -> Box<RawValue> {
    let mut out = Vec::new();
    value.write_json(&mut out);
    String::from_utf8(out)
        .ok()
        .and_then(|text| RawValue::from_string(text).ok())
        .unwrap_or_else(|| RawValue::NULL.to_owned())
}

impl SidecarTemplate {
    /// Builds the template for `config`.
    pub(crate) fn compile(config: &InjectConfig) -> Self {
        let volumes = VOLUME_NAMES
            .into_iter()
            .zip(standard_volumes())
            .map(|(name, volume)| (name, raw(&volume)))
            .collect();
        let mut mesh_proxy_config = config.mesh_default_config.clone();
        if config.interception_mode != InterceptionMode::Redirect {
            mesh_proxy_config.insert(
                "interceptionMode".into(),
                Value::from(config.interception_mode.as_str()),
            );
        }
        let mesh_proxy_config_json = format!("{}\n", Value::Object(mesh_proxy_config.clone()));
        let downward = DOWNWARD_ENV.into_iter().map(|(name, source, resource)| {
            let value = if resource {
                json!({"name": name, "valueFrom": {"resourceFieldRef": {"divisor": "1", "resource": source}}})
            } else {
                json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": source}}})
            };
            (name, raw(&value))
        });
        let from_config = config_env(config, &mesh_proxy_config_json)
            .into_iter()
            .map(|(name, value)| (name, raw_written(&EnvVar::literal(name, value))));
        let env = downward.chain(from_config).collect();
        let usual = SecurityInputs {
            tproxy: false,
            cap_net_bind_service: false,
            ids: (PROXY_UID, PROXY_UID),
        };
        SidecarTemplate {
            volumes,
            mesh_proxy_config,
            domain: format!("$(POD_NAMESPACE).svc.{}", config.cluster_domain),
            ports: raw(&json!(
                PROXY_PORTS
                    .iter()
                    .map(|(port, name)| json!({"containerPort": port, "name": name, "protocol": "TCP"}))
                    .collect::<Vec<_>>()
            )),
            startup_probe: raw(&json!({
                "failureThreshold": 600,
                "httpGet": {"path": "/healthz/ready", "port": 15021},
                "periodSeconds": 1,
                "timeoutSeconds": 3,
            })),
            hold_lifecycle: raw(&json!({"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}})),
            native_lifecycle: (
                config.status_port,
                raw(&istio_parts::native_lifecycle(config.status_port)),
            ),
            proxy_mounts: ProxyMounts::compile(istio_parts::proxy_mounts(config)),
            env,
            proxy_security: raw(&istio_parts::proxy_security_context(config, usual)),
            init_security: raw(&istio_parts::init_security_context(config, usual.ids)),
        }
    }

    /// The serialized variable `name`, if it is the same for every pod.
    pub(crate) fn env(&self, name: &'static str) -> Option<&RawValue> {
        self.env
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, raw)| raw.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_volumes_serialize_as_built() {
        let template = SidecarTemplate::compile(&InjectConfig::default());
        let names: Vec<&str> = template.volumes.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, VOLUME_NAMES);
        for ((name, raw), built) in template.volumes.iter().zip(standard_volumes()) {
            let item: Value = serde_json::from_str(raw.get()).unwrap();
            assert_eq!(item, built, "{name}");
            assert_eq!(item["name"], *name);
        }
        let tproxy = InjectConfig {
            interception_mode: InterceptionMode::Tproxy,
            ..InjectConfig::default()
        };
        assert_eq!(
            SidecarTemplate::compile(&tproxy).mesh_proxy_config["interceptionMode"],
            "TPROXY"
        );
    }

    #[test]
    fn every_downward_variable_is_compiled() {
        let template = SidecarTemplate::compile(&InjectConfig::default());
        for (name, _, _) in DOWNWARD_ENV {
            let raw = template.env(name).unwrap();
            let value: Value = serde_json::from_str(raw.get()).unwrap();
            assert_eq!(value["name"], name);
        }
        assert!(template.env("NOT_A_VARIABLE").is_none());
    }

    #[test]
    fn the_custom_bootstrap_mount_goes_after_istio_data() {
        let template = SidecarTemplate::compile(&InjectConfig::default());
        let at = template
            .proxy_mounts
            .bootstrap_after
            .expect("the template mounts istio-data");
        let mount: Value = serde_json::from_str(template.proxy_mounts.serialized[at].get()).unwrap();
        assert_eq!(mount["name"], crate::bootstrap_override::AFTER_MOUNT);
        assert_eq!(ProxyMounts::compile([json!({"name": "other"})]).bootstrap_after, None);
    }

    #[test]
    fn variables_from_the_config_are_compiled_as_set_or_left_out() {
        let config = InjectConfig {
            network: "net-1".into(),
            compliance_policy: "fips-140-3".into(),
            ..InjectConfig::default()
        };
        let template = SidecarTemplate::compile(&config);
        let value = |name| serde_json::from_str::<Value>(template.env(name).unwrap().get()).unwrap();
        assert_eq!(value("CA_ADDR"), json!({"name": "CA_ADDR", "value": config.ca_address}));
        assert_eq!(value("ISTIO_META_NETWORK")["value"], "net-1");
        assert_eq!(value("GODEBUG")["value"], "fips140=only");
        assert_eq!(
            value("PROXY_CONFIG")["value"],
            format!("{}\n", Value::Object(template.mesh_proxy_config.clone()))
        );
        let usual = SidecarTemplate::compile(&InjectConfig::default());
        for absent in [
            "ISTIO_META_NETWORK",
            "COMPLIANCE_POLICY",
            "GODEBUG",
            "REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION",
        ] {
            assert!(usual.env(absent).is_none(), "{absent}");
        }
    }
}
