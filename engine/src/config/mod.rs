//! The injector's configuration file: images, default resources, policy and selectors.
//!
//! The file is YAML. Unknown keys and bad values stop start-up with a message naming the
//! key, because a typo in a webhook's config silently changes every pod in the cluster.
//! [`InjectConfig::default`] is the built-in configuration `serve` runs with when no file
//! is given; `deploy/config.yaml` documents every key.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};

use crate::quantity::{QuantityError, ResourceKind};

mod compiled;
pub mod istio_source;
pub mod layers;
pub mod quota;
pub mod resize;
pub mod tuning;

pub use self::compiled::CompiledConfig;
pub use self::istio_source::{IstioSource, IstioSourceConfig};
pub use self::layers::{Provenance, SettingSource, UserConfig};
pub use self::quota::{OnQuota, QuotaLimits};
pub use self::resize::{ResizePolicyConfig, ResizeRestart};

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not match the schema (unknown key, wrong type).
    #[error("config file {path}: {message}")]
    Schema {
        /// The file.
        path: String,
        /// serde's description, which names the key.
        message: String,
    },
    /// A resource value is not a quantity.
    #[error("config key {key} has value {value:?}, which {reason} (examples: {examples})")]
    Quantity {
        /// The dotted key.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: QuantityError,
        /// Accepted forms.
        examples: &'static str,
    },
    /// A default request exceeds its default limit.
    #[error("config key {key}: request {request} is above limit {limit}")]
    RequestAboveLimit {
        /// The dotted key of the request.
        key: String,
        /// The request.
        request: String,
        /// The limit.
        limit: String,
    },
    /// Another value is out of range.
    #[error("config key {key} has value {value:?}: {reason}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// The value as written.
        value: String,
        /// The accepted form.
        reason: String,
    },
    /// A value taken from the installed Istio is refused.
    #[error("{error} (read from {source_name})")]
    Installed {
        /// Where it was read, e.g. `istio values global.proxy.logLevel`.
        source_name: String,
        /// What is wrong with it.
        error: Box<ConfigError>,
    },
}

impl ConfigError {
    /// The config key a value error names.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Quantity { key, .. }
            | ConfigError::RequestAboveLimit { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Installed { error, .. } => error.key(),
            ConfigError::Read { .. } | ConfigError::Schema { .. } => None,
        }
    }
}

/// Whether pods without an explicit choice are injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InjectionPolicy {
    /// Inject unless the pod opts out (Istio's default).
    #[default]
    Enabled,
    /// Inject only pods that opt in.
    Disabled,
}

/// How the four resource annotations combine with the configured defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum ResourceMerge {
    /// Each annotation overrides only its own field; the rest keep their defaults.
    #[default]
    PerField,
    /// Istio's behaviour: any annotation drops every default.
    Istio,
}

/// The Kubernetes distribution, where it changes what is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Platform {
    /// Any conformant Kubernetes.
    #[default]
    Kubernetes,
    /// OpenShift: the proxy runs as the last UID of the namespace's
    /// `openshift.io/sa.scc.uid-range`.
    Openshift,
}

/// Which CNI plugin chain Istio CNI runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum CniProvider {
    /// Chained into the node's CNI config.
    #[default]
    Default,
    /// Run by Multus: pods name the `istio-cni` NetworkAttachmentDefinition of their
    /// namespace in `k8s.v1.cni.cncf.io/networks`.
    Multus,
}

/// What a pod naming an injection template this injector does not render gets
/// (`inject.istio.io/templates`; see the `templates` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum UnknownTemplates {
    /// Refused, naming the templates rendered here (istiod refuses a template it lacks).
    #[default]
    Deny,
    /// Left alone, for another injector.
    Skip,
    /// The sidecar, as if it named none.
    Sidecar,
}

/// Where the proxy sends inbound traffic (MeshConfig `inboundTrafficPolicy.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum InboundTrafficPolicy {
    /// To the pod IP.
    #[default]
    Passthrough,
    /// To localhost, as before Istio 1.10; probes are told so with
    /// `REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION`.
    Localhost,
}

/// How inbound and outbound traffic is captured into the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
pub enum InterceptionMode {
    /// iptables REDIRECT (Istio's default).
    #[default]
    #[serde(rename = "REDIRECT")]
    Redirect,
    /// iptables TPROXY, which keeps the source address.
    #[serde(rename = "TPROXY")]
    Tproxy,
    /// No capture; no init container.
    #[serde(rename = "NONE")]
    None,
}

impl InterceptionMode {
    /// The spelling Istio uses in annotations and arguments.
    pub fn as_str(self) -> &'static str {
        match self {
            InterceptionMode::Redirect => "REDIRECT",
            InterceptionMode::Tproxy => "TPROXY",
            InterceptionMode::None => "NONE",
        }
    }

    /// Parses Istio's spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "REDIRECT" => Some(InterceptionMode::Redirect),
            "TPROXY" => Some(InterceptionMode::Tproxy),
            "NONE" => Some(InterceptionMode::None),
            _ => None,
        }
    }
}

/// CPU and memory amounts as written in the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourceAmounts {
    /// CPU, e.g. `100m`.
    #[serde(default)]
    pub cpu: Option<String>,
    /// Memory, e.g. `128Mi`.
    #[serde(default)]
    pub memory: Option<String>,
    /// Ephemeral storage, e.g. `1Gi`.
    #[serde(default, rename = "ephemeral-storage")]
    pub ephemeral_storage: Option<String>,
}

/// Default requests and limits for the proxy and init container.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourceDefaults {
    /// Default requests.
    #[serde(default)]
    pub requests: ResourceAmounts,
    /// Default limits.
    #[serde(default)]
    pub limits: ResourceAmounts,
}

impl Default for ResourceDefaults {
    /// Istio's defaults: requests 100m / 128Mi, limits 2 / 1Gi.
    fn default() -> Self {
        ResourceDefaults {
            requests: ResourceAmounts {
                cpu: Some("100m".into()),
                memory: Some("128Mi".into()),
                ephemeral_storage: None,
            },
            limits: ResourceAmounts {
                cpu: Some("2".into()),
                memory: Some("1Gi".into()),
                ephemeral_storage: None,
            },
        }
    }
}

/// What to do with a proxy value outside the configured bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnViolation {
    /// Clamp it into range and warn.
    #[default]
    Clamp,
    /// Deny the pod.
    Deny,
}

/// Which CPU field Envoy's worker count follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConcurrencyFrom {
    /// The CPU limit, rounded up to whole cores (what pilot-agent itself does).
    #[default]
    Limit,
    /// The CPU request (istio#61683).
    Request,
    /// No `--concurrency` argument: pilot-agent sizes Envoy from `ISTIO_CPU_LIMIT` itself, as
    /// with istiod's template. `proxy.istio.io/config` `concurrency` still applies.
    Agent,
}

/// A min and max for one field.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BoundSpec {
    /// Smallest value.
    #[serde(default)]
    pub min: Option<String>,
    /// Largest value.
    #[serde(default)]
    pub max: Option<String>,
}

/// How `--concurrency` is derived.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ConcurrencyConfig {
    /// `limit` or `request`.
    pub from: ConcurrencyFrom,
    /// Fewest worker threads.
    pub min: i64,
    /// Most worker threads; 0 for no ceiling.
    pub max: i64,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        ConcurrencyConfig {
            from: ConcurrencyFrom::Limit,
            min: 1,
            max: 0,
        }
    }
}

/// Everything that shapes injection. Field names are the YAML keys in camelCase.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct InjectConfig {
    /// Image of the `istio-proxy` container.
    pub proxy_image: String,
    /// Image of the `istio-init` (or `istio-validation`) init container.
    pub proxy_init_image: String,
    /// `imagePullPolicy` for injected containers; unset leaves the Kubernetes default.
    pub image_pull_policy: Option<String>,
    /// Whether pods without an explicit choice are injected.
    pub policy: InjectionPolicy,
    /// Pods matching any of these are not injected unless they opt in explicitly.
    pub never_inject_selector: Vec<LabelSelector>,
    /// Pods matching any of these are injected unless they opt out explicitly.
    pub always_inject_selector: Vec<LabelSelector>,
    /// Put `istio-proxy` in `initContainers` with `restartPolicy: Always` (Kubernetes 1.29+).
    pub native_sidecars: bool,
    /// How resource annotations combine with the defaults.
    pub resource_merge: ResourceMerge,
    /// Default proxy resources.
    pub resources: ResourceDefaults,
    /// The init container's own requests and limits, per field; a field left out copies the
    /// proxy's value (Istio's behaviour). Pod annotations `sidecar-injector.io/initCPU`, ...
    /// override them.
    pub init_resources: ResourceDefaults,
    /// Named resource presets, chosen with `sidecar-injector.io/profile`.
    pub profiles: BTreeMap<String, ResourceDefaults>,
    /// Per-field min and max (`cpu.request`, `cpu.limit`, `memory.request`, ...).
    pub bounds: BTreeMap<String, BoundSpec>,
    /// What to do with a value outside the bounds.
    pub on_violation: OnViolation,
    /// What to do when the injected pod would exceed a ResourceQuota.
    pub on_quota: OnQuota,
    /// The limits set when a ResourceQuota requires one nothing set.
    pub quota_limits: QuotaLimits,
    /// Keep pods whose app containers are all Guaranteed in QoS Guaranteed.
    #[serde(rename = "preserveGuaranteedQoS")]
    pub preserve_guaranteed_qos: bool,
    /// How Envoy's worker count is derived.
    pub concurrency: ConcurrencyConfig,
    /// The proxy's `resizePolicy` for in-place resize.
    pub resize_policy: ResizePolicyConfig,
    /// `GOMEMLIMIT` as a percentage of the memory limit (1-100). At 100 it is istiod's
    /// `resourceFieldRef` to `limits.memory`, which the kubelet resolves.
    pub go_mem_limit_percent: u8,
    /// Give the proxy `GOMAXPROCS` as a `resourceFieldRef` to `limits.cpu`, as istiod has
    /// since after 1.28 (its 1.28 test corpus has none).
    pub go_max_procs_from_limit: bool,
    /// Give `istio-init` the pod's `sidecar.istio.io/proxyImage` too, as istiod does after
    /// 1.28 (its 1.28 corpus keeps the configured init image).
    pub init_image_from_proxy_image_annotation: bool,
    /// Write `--concurrency` from a `concurrency` in the pod's `proxy.istio.io/config`, as
    /// istiod 1.28 does; after 1.28 istiod passes it in `PROXY_CONFIG` only.
    pub concurrency_arg_from_proxy_config: bool,
    /// Write `OTEL_RESOURCE_ATTRIBUTES` for pods labelled `app.kubernetes.io/version`, as the
    /// 1.28 corpus shows; the istiod after 1.28 we compare with writes none.
    pub otel_resource_attributes: bool,
    /// Record where each proxy resource value came from in the `sidecar-injector.io/resources`
    /// annotation.
    pub provenance_annotation: bool,
    /// Istio's `compliancePolicy` (e.g. `fips-140-3`), passed to the proxy as
    /// `COMPLIANCE_POLICY`; empty for none.
    pub compliance_policy: String,
    /// Image pull secrets added to every injected pod (istiod's `global.imagePullSecrets`).
    pub image_pull_secrets: Vec<String>,
    /// Mount the `istio.<service account>` Secret at `/etc/certs/` in the proxy (istiod's
    /// `global.mountMtlsCerts`).
    pub mount_mtls_certs: bool,
    /// Mesh-wide ProxyConfig (MeshConfig `defaultConfig`) passed to the agent in
    /// `PROXY_CONFIG`, under each pod's `proxy.istio.io/config`. `interceptionMode` comes from
    /// its own setting.
    pub mesh_default_config: serde_json::Map<String, serde_json::Value>,
    /// Largest AdmissionReview body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The Istio revision written to `istio.io/rev` and the status annotation.
    pub revision: String,
    /// Cluster DNS domain.
    pub cluster_domain: String,
    /// Trust domain passed to the proxy.
    pub trust_domain: String,
    /// Mesh ID passed to the proxy.
    pub mesh_id: String,
    /// Cluster ID passed to the proxy.
    pub cluster_id: String,
    /// Address of the CA (istiod).
    pub ca_address: String,
    /// Network the pods are on, for multi-network meshes; empty for none.
    pub network: String,
    /// Default interception mode.
    pub interception_mode: InterceptionMode,
    /// Default `traffic.sidecar.istio.io/includeOutboundIPRanges`.
    #[serde(rename = "includeOutboundIPRanges")]
    pub include_outbound_ip_ranges: String,
    /// Default `traffic.sidecar.istio.io/excludeOutboundIPRanges`.
    #[serde(rename = "excludeOutboundIPRanges")]
    pub exclude_outbound_ip_ranges: String,
    /// Default `traffic.sidecar.istio.io/excludeInboundPorts`.
    pub exclude_inbound_ports: String,
    /// Default `traffic.sidecar.istio.io/excludeOutboundPorts`.
    pub exclude_outbound_ports: String,
    /// Port of the agent's status server (0 disables it).
    pub status_port: u16,
    /// Istio CNI is installed: use `istio-validation` instead of `istio-init`.
    pub cni_enabled: bool,
    /// How Istio CNI is run, when enabled.
    pub cni_provider: CniProvider,
    /// What a pod naming a template not rendered here gets.
    pub unknown_templates: UnknownTemplates,
    /// The Kubernetes distribution.
    pub platform: Platform,
    /// Where the proxy sends inbound traffic.
    pub inbound_traffic_policy: InboundTrafficPolicy,
    /// Proxy readiness probe `initialDelaySeconds` (0 leaves it out).
    pub readiness_initial_delay_seconds: u32,
    /// Proxy readiness probe `periodSeconds`.
    pub readiness_period_seconds: u32,
    /// Proxy readiness probe `failureThreshold`.
    pub readiness_failure_threshold: u32,
    /// Start the proxy before the app containers (istiod's `holdApplicationUntilProxyStarts`).
    pub hold_application_until_proxy_starts: bool,
    /// Merge app metrics into the agent's (istiod's `enablePrometheusMerge`).
    pub enable_prometheus_merge: bool,
    /// Point app HTTP/TCP/gRPC probes at the agent (`sidecar.istio.io/rewriteAppHTTPProbers`
    /// overrides it per pod).
    pub rewrite_app_probes: bool,
    /// Give injected containers `seccompProfile: RuntimeDefault`, which Pod Security
    /// `restricted` requires (istiod does not set it).
    pub seccomp_runtime_default: bool,
    /// Proxy log level.
    pub proxy_log_level: String,
    /// Proxy component log levels.
    pub proxy_component_log_level: String,
    /// pilot-agent's and istio-iptables' `--log_output_level` (istiod's `global.logging.level`).
    pub agent_log_level: String,
    /// Where the installed Istio's settings come from (`static`: this file only; `cluster`:
    /// the istiod chart's ConfigMaps, under this file's own keys).
    pub istio: IstioSourceConfig,
    /// Proxy environment variables set by the webhook's URL path ([`crate::inject_path`]),
    /// for the request being answered; never read from the file.
    #[serde(skip)]
    pub path_envs: BTreeMap<String, String>,
}

impl Default for InjectConfig {
    fn default() -> Self {
        InjectConfig {
            proxy_image: "docker.io/istio/proxyv2:1.28.0".into(),
            proxy_init_image: "docker.io/istio/proxyv2:1.28.0".into(),
            image_pull_policy: None,
            policy: InjectionPolicy::Enabled,
            never_inject_selector: Vec::new(),
            always_inject_selector: Vec::new(),
            native_sidecars: true,
            resource_merge: ResourceMerge::PerField,
            resources: ResourceDefaults::default(),
            init_resources: ResourceDefaults {
                requests: ResourceAmounts::default(),
                limits: ResourceAmounts::default(),
            },
            profiles: BTreeMap::new(),
            bounds: BTreeMap::new(),
            on_violation: OnViolation::Clamp,
            on_quota: OnQuota::Fit,
            quota_limits: QuotaLimits::default(),
            preserve_guaranteed_qos: true,
            concurrency: ConcurrencyConfig::default(),
            resize_policy: ResizePolicyConfig::default(),
            go_mem_limit_percent: 90,
            go_max_procs_from_limit: false,
            init_image_from_proxy_image_annotation: false,
            concurrency_arg_from_proxy_config: true,
            otel_resource_attributes: true,
            provenance_annotation: true,
            compliance_policy: String::new(),
            image_pull_secrets: Vec::new(),
            mount_mtls_certs: false,
            mesh_default_config: serde_json::Map::new(),
            max_body_bytes: 4 * 1024 * 1024,
            revision: "default".into(),
            cluster_domain: "cluster.local".into(),
            trust_domain: "cluster.local".into(),
            mesh_id: "cluster.local".into(),
            cluster_id: "Kubernetes".into(),
            ca_address: "istiod.istio-system.svc:15012".into(),
            network: String::new(),
            interception_mode: InterceptionMode::Redirect,
            include_outbound_ip_ranges: "*".into(),
            exclude_outbound_ip_ranges: String::new(),
            exclude_inbound_ports: String::new(),
            exclude_outbound_ports: String::new(),
            status_port: 15020,
            cni_enabled: false,
            cni_provider: CniProvider::Default,
            unknown_templates: UnknownTemplates::Deny,
            platform: Platform::Kubernetes,
            inbound_traffic_policy: InboundTrafficPolicy::Passthrough,
            readiness_initial_delay_seconds: 0,
            readiness_period_seconds: 15,
            readiness_failure_threshold: 4,
            hold_application_until_proxy_starts: false,
            enable_prometheus_merge: true,
            rewrite_app_probes: true,
            seccomp_runtime_default: true,
            proxy_log_level: "warning".into(),
            proxy_component_log_level: "misc:error".into(),
            agent_log_level: "default:info".into(),
            istio: IstioSourceConfig::default(),
            path_envs: BTreeMap::new(),
        }
    }
}

// === impl InjectConfig ===

impl InjectConfig {
    /// Reads a config file and checks it against the schema.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (text, display) = read_config_file(path)?;
        Self::from_yaml(&text, &display)
    }

    /// Parses config YAML against the schema (unknown keys and wrong types are refused);
    /// `origin` names the source in errors. Values are checked, and parsed into typed
    /// values, once, by [`InjectConfig::compile`].
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: InjectConfig = if text.trim().is_empty() {
            InjectConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|error| ConfigError::Schema {
                path: origin.to_string(),
                message: error.to_string(),
            })?
        };
        Ok(config)
    }
}

/// A config file's text and its name for messages.
pub(crate) fn read_config_file(path: &Path) -> Result<(String, String), ConfigError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: display.clone(),
        source,
    })?;
    Ok((text, display))
}

/// Examples of accepted quantities, for error messages.
pub fn examples_for(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Cpu => "500m, 2",
        ResourceKind::Memory => "128Mi, 1Gi",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_istio_defaults() {
        let config = InjectConfig::from_yaml("", "test").unwrap();
        let tuning = config.clone().compile().unwrap().tuning;
        let units: Vec<Option<i64>> = tuning.defaults.iter().map(|q| q.map(|q| q.units())).collect();
        assert_eq!(
            units,
            [Some(100), Some(2000), Some(128 << 20), Some(1 << 30), None, None]
        );
        assert_eq!(config.policy, InjectionPolicy::Enabled);
        assert!(
            config.native_sidecars,
            "Istio has defaulted to native sidecars since 1.27"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let error = InjectConfig::from_yaml("nativeSidecar: true\n", "c.yaml")
            .and_then(InjectConfig::compile)
            .unwrap_err();
        assert!(error.to_string().contains("nativeSidecar"), "{error}");
    }

    #[test]
    fn bad_quantity_names_the_key() {
        let error = InjectConfig::from_yaml("resources:\n  limits:\n    cpu: lots\n", "c.yaml")
            .and_then(InjectConfig::compile)
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("resources.limits.cpu") && message.contains("lots"),
            "{message}"
        );
    }

    #[test]
    fn default_request_above_limit_is_refused() {
        let yaml = "resources:\n  requests:\n    cpu: '3'\n  limits:\n    cpu: '2'\n";
        let error = InjectConfig::from_yaml(yaml, "c.yaml")
            .and_then(InjectConfig::compile)
            .unwrap_err();
        assert!(error.to_string().contains("resources.requests.cpu"), "{error}");
    }

    #[test]
    fn bad_enum_value_is_refused() {
        let error = InjectConfig::from_yaml("policy: sometimes\n", "c.yaml")
            .and_then(InjectConfig::compile)
            .unwrap_err();
        assert!(error.to_string().contains("sometimes"), "{error}");
        let error = InjectConfig::from_yaml("resourceMerge: mixed\n", "c.yaml")
            .and_then(InjectConfig::compile)
            .unwrap_err();
        assert!(error.to_string().contains("mixed"), "{error}");
    }

    #[test]
    fn shipped_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config.yaml");
        let config = InjectConfig::load(&path).unwrap();
        assert_eq!(config.resource_merge, ResourceMerge::PerField);
    }
}
