//! The annotation registry: every annotation (and the one label) the injector reads, in one
//! table.
//!
//! Each row names the key, where it may appear, the form its value takes, a one-line doc and
//! the config key that gives its default. The README's annotation reference is generated from
//! [`REGISTRY`] (`SIDECAR_INJECTOR_REGENERATE=1 cargo test -p sidecar-injector-engine readme`),
//! the fuzz target draws its keys and sample values from it, and `explain` uses it to list
//! what a pod sets. A test fails when an annotation-like string literal appears anywhere in
//! the engine outside this file, so a new annotation cannot bypass the table.
//!
//! Adding an annotation means: one constant and one row here, its use, and its test.

use std::fmt;

// === keys ===

/// Opt a pod in or out (label, or annotation when the label is absent).
pub const INJECT: &str = "sidecar.istio.io/inject";
/// Written by injection; its presence means the pod is already injected.
pub const STATUS: &str = "sidecar.istio.io/status";
/// Proxy CPU request.
pub const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
/// Proxy memory request.
pub const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
/// Proxy CPU limit.
pub const PROXY_CPU_LIMIT: &str = "sidecar.istio.io/proxyCPULimit";
/// Proxy memory limit.
pub const PROXY_MEMORY_LIMIT: &str = "sidecar.istio.io/proxyMemoryLimit";
/// Proxy ephemeral-storage request.
pub const PROXY_EPHEMERAL_STORAGE: &str = "sidecar-injector.io/proxyEphemeralStorage";
/// Proxy ephemeral-storage limit.
pub const PROXY_EPHEMERAL_STORAGE_LIMIT: &str = "sidecar-injector.io/proxyEphemeralStorageLimit";
/// Proxy CPU request as a share of the app containers' requests.
pub const PROXY_CPU_RATIO: &str = "sidecar-injector.io/proxyCPURatio";
/// Proxy memory request as a share of the app containers' requests.
pub const PROXY_MEMORY_RATIO: &str = "sidecar-injector.io/proxyMemoryRatio";
/// Init container CPU request.
pub const INIT_CPU: &str = "sidecar-injector.io/initCPU";
/// Init container memory request.
pub const INIT_MEMORY: &str = "sidecar-injector.io/initMemory";
/// Init container CPU limit.
pub const INIT_CPU_LIMIT: &str = "sidecar-injector.io/initCPULimit";
/// Init container memory limit.
pub const INIT_MEMORY_LIMIT: &str = "sidecar-injector.io/initMemoryLimit";
/// A named resource profile from the config.
pub const PROFILE: &str = "sidecar-injector.io/profile";
/// Namespace bounds that tighten the config's bounds.
pub const BOUNDS: &str = "sidecar-injector.io/bounds";
/// Written by injection: each proxy resource field's value and source.
pub const PROVENANCE: &str = "sidecar-injector.io/resources";
/// Native sidecar layout for one pod.
pub const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";
/// Istio's injection templates for one pod, comma-separated (`sidecar`, `gateway`, ...).
pub const TEMPLATES: &str = "inject.istio.io/templates";
/// The accepted form of [`TEMPLATES`] (see [`crate::templates`]).
pub(crate) const TEMPLATE_FORMS: &str = "comma-separated template names among sidecar and gateway";
/// Envoy's log level for one pod.
pub const LOG_LEVEL: &str = "sidecar.istio.io/logLevel";
/// Envoy's per-component log levels for one pod.
pub const COMPONENT_LOG_LEVEL: &str = "sidecar.istio.io/componentLogLevel";
/// pilot-agent's (and istio-iptables') log levels for one pod.
pub const AGENT_LOG_LEVEL: &str = "sidecar.istio.io/agentLogLevel";
/// The image variant (`distroless`, `debug`, `default`) of the proxy and init images.
pub const PROXY_IMAGE_TYPE: &str = "sidecar.istio.io/proxyImageType";
/// Give the proxy `NET_BIND_SERVICE` (it then runs as root), for ports below 1024.
pub const CAP_NET_BIND_SERVICE: &str = "sidecar.istio.io/capNetBindService";
/// A ConfigMap with Envoy's custom bootstrap, mounted into the proxy.
pub const BOOTSTRAP_OVERRIDE: &str = "sidecar.istio.io/bootstrapOverride";
/// The accepted form of [`BOOTSTRAP_OVERRIDE`].
pub(crate) const BOOTSTRAP_OVERRIDE_FORMS: &str =
    "the name of a ConfigMap in the pod's namespace holding custom_bootstrap.json, e.g. custom-bootstrap";
/// The proxy image for one pod.
pub const PROXY_IMAGE: &str = "sidecar.istio.io/proxyImage";
/// Traffic capture mode.
pub const INTERCEPTION_MODE: &str = "sidecar.istio.io/interceptionMode";
/// Outbound CIDRs to capture (`*` for all).
pub const INCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
/// Outbound CIDRs not to capture.
pub const EXCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
/// Inbound ports to capture (`*` for all).
pub const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
/// Inbound ports not to capture.
pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
/// Outbound ports to capture whatever their destination.
pub const INCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeOutboundPorts";
/// Outbound ports not to capture.
pub const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
/// Virtual interfaces whose traffic is treated as outbound.
pub const KUBEVIRT_INTERFACES: &str = "traffic.sidecar.istio.io/kubevirtInterfaces";
/// Interfaces whose traffic is not captured (`istio-iptables -c`).
pub const EXCLUDE_INTERFACES: &str = "traffic.sidecar.istio.io/excludeInterfaces";
/// Istio's newer name for [`KUBEVIRT_INTERFACES`].
pub const REROUTE_VIRTUAL_INTERFACES: &str = "istio.io/reroute-virtual-interfaces";
/// The agent's status port.
pub const STATUS_PORT: &str = "status.sidecar.istio.io/port";
/// Readiness probe `initialDelaySeconds`.
pub const READINESS_INITIAL_DELAY: &str = "readiness.status.sidecar.istio.io/initialDelaySeconds";
/// Readiness probe `periodSeconds`.
pub const READINESS_PERIOD: &str = "readiness.status.sidecar.istio.io/periodSeconds";
/// Readiness probe `failureThreshold`.
pub const READINESS_FAILURE_THRESHOLD: &str = "readiness.status.sidecar.istio.io/failureThreshold";
/// Point app probes at the agent.
pub const REWRITE_PROBES: &str = "sidecar.istio.io/rewriteAppHTTPProbers";
/// ProxyConfig for one pod.
pub const PROXY_CONFIG: &str = "proxy.istio.io/config";
/// Written by injection: the user's own `istio-proxy`/`istio-init` fields.
pub const OVERRIDES: &str = "proxy.istio.io/overrides";
/// Extra pod volumes.
pub const USER_VOLUME: &str = "sidecar.istio.io/userVolume";
/// Extra mounts for the proxy.
pub const USER_VOLUME_MOUNT: &str = "sidecar.istio.io/userVolumeMount";
/// The app's own scrape switch.
pub const PROMETHEUS_SCRAPE: &str = "prometheus.io/scrape";
/// The dotted spelling of [`PROMETHEUS_SCRAPE`] some charts write; `"false"` opts out as
/// istiod reads it (a key without a domain, so not a row of its own).
pub const PROMETHEUS_SCRAPE_DOTTED: &str = "prometheus.io.scrape";
/// The app's own metrics port.
pub const PROMETHEUS_PORT: &str = "prometheus.io/port";
/// The app's own metrics path.
pub const PROMETHEUS_PATH: &str = "prometheus.io/path";
/// Several app metrics endpoints.
pub const PROMETHEUS_SCRAPE_TARGETS: &str = "prometheus.istio.io/scrape-targets";
/// Opt out of metrics merging.
pub const PROMETHEUS_MERGE_METRICS: &str = "prometheus.istio.io/merge-metrics";
/// Multus networks of the pod, merged with Istio CNI's attachment.
pub const MULTUS_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
/// OpenShift: the namespace's UID range.
pub const OPENSHIFT_UID_RANGE: &str = "openshift.io/sa.scc.uid-range";
/// OpenShift: the namespace's supplemental group range.
pub const OPENSHIFT_SUPPLEMENTAL_GROUPS: &str = "openshift.io/sa.scc.supplemental-groups";

// === accepted forms, shared with the error messages ===

/// The accepted form of an on/off switch istiod compares with `"true"` and `"false"`.
pub const SWITCH_FORMS: &str = "true or false, in lower case; empty for the default";
/// The accepted form of a ratio annotation.
pub const RATIO_FORMS: &str = "a fraction above 0 and at most 10, e.g. 0.1, or a percentage, e.g. 10%";
/// The accepted form of a namespace's bounds.
pub const BOUNDS_FORMS: &str = "JSON like {\"cpu.limit\":{\"max\":\"2\"},\"memory.request\":{\"min\":\"64Mi\"}}";
/// The accepted form of `proxy.istio.io/config`.
pub const PROXY_CONFIG_FORMS: &str = "a ProxyConfig mapping in YAML or JSON, e.g. {\"concurrency\": 2}";
/// The accepted form of a readiness setting.
pub const WHOLE_NUMBER_FORMS: &str = "a whole number 0 or more, e.g. 10";
/// The accepted form of the interception mode.
pub const INTERCEPTION_MODE_FORMS: &str = "REDIRECT, TPROXY or NONE";
/// The accepted form of the status port.
pub const STATUS_PORT_FORMS: &str = "a port 0-65535 (0 disables the status server)";
/// The accepted form of `proxy.istio.io/overrides`, which injection writes.
pub const OVERRIDES_FORMS: &str = "JSON as injection writes it, e.g. {\"containers\":[{\"name\":\"istio-proxy\",\"args\":[\"proxy\"]}]}, or no annotation";
/// The accepted form of a user volume.
pub const USER_VOLUME_FORMS: &str = "a Kubernetes volume, e.g. {\"certs\":{\"secret\":{\"secretName\":\"x\"}}}";
/// The accepted form of a user volume mount.
pub const USER_VOLUME_MOUNT_FORMS: &str =
    "a volume mount, e.g. {\"certs\":{\"mountPath\":\"/etc/certs\",\"readOnly\":true}}";

/// The accepted form of Envoy's log level.
pub const LOG_LEVEL_FORMS: &str = "trace, debug, info, warning, warn, error, critical or off";
/// The accepted form of Envoy's component log levels.
pub const COMPONENT_LOG_LEVEL_FORMS: &str =
    "comma-separated component:level pairs, each level one of Envoy's (trace ... off), e.g. misc:error,rbac:debug";
/// The accepted form of the agent's log levels.
pub const AGENT_LOG_LEVEL_FORMS: &str =
    "debug, info, warn, error, fatal or none, or comma-separated scope:level pairs, e.g. default:info,xdsproxy:debug";
/// The accepted form of an interface list.
pub const INTERFACES_FORMS: &str = "comma-separated Linux interface names (a letter, then letters, digits, '_', '.' or '-'; at most 15 characters), e.g. eth1,net1";
/// The accepted form of a capture list.
pub const PORTS_OR_ALL_FORMS: &str = "\"*\" or comma-separated ports 1-65535, e.g. 80,8080";
/// The accepted form of a capture list.
pub const PORTS_FORMS: &str = "comma-separated ports 1-65535, e.g. 80,8080";
/// The accepted form of a capture list.
pub const CIDRS_OR_ALL_FORMS: &str = "\"*\" or comma-separated CIDRs, e.g. 10.0.0.0/8,fd00::/8";
/// The accepted form of a capture list.
pub const CIDRS_FORMS: &str = "comma-separated CIDRs, e.g. 10.0.0.0/8,fd00::/8";

// === the table ===

/// Where an annotation is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// On the pod (or its template).
    Pod,
    /// On the namespace only.
    Namespace,
    /// On the pod, else on its namespace.
    PodOrNamespace,
    /// A pod label, else a pod annotation of the same name.
    PodLabelOrAnnotation,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Pod => "pod",
            Scope::Namespace => "namespace",
            Scope::PodOrNamespace => "pod, namespace",
            Scope::PodLabelOrAnnotation => "pod label or annotation",
        })
    }
}

/// How the value is parsed, which is also what the fuzz target generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A boolean, spelled as istiod reads that key (`true`/`false` only, or Go's
    /// `strconv.ParseBool` forms); the row's `accepted` says which.
    Bool,
    /// A CPU quantity.
    CpuQuantity,
    /// A memory or storage quantity.
    MemoryQuantity,
    /// A fraction or percentage.
    Ratio,
    /// A name chosen from the config.
    Name,
    /// Comma-separated ports, `*` allowed when `wildcard`.
    Ports {
        /// Whether `*` is accepted.
        wildcard: bool,
    },
    /// Comma-separated CIDRs, `*` allowed when `wildcard`.
    Cidrs {
        /// Whether `*` is accepted.
        wildcard: bool,
    },
    /// Comma-separated Linux interface names.
    Interfaces,
    /// One port, 0 allowed.
    Port,
    /// A whole number.
    WholeNumber,
    /// One of a fixed set of words.
    Choice,
    /// Free text (an image, interface names, a UID range).
    Text,
    /// A JSON (or YAML) document.
    Document,
}

/// One row of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnotationSpec {
    /// The key.
    pub key: &'static str,
    /// Where it is read.
    pub scope: Scope,
    /// How it is parsed.
    pub form: Form,
    /// The accepted form, as error messages and the README say it.
    pub accepted: &'static str,
    /// What it does, in one line.
    pub doc: &'static str,
    /// The config key that gives the default, if any.
    pub config_default: Option<&'static str>,
    /// A valid value, for documentation and fuzz seeds.
    pub sample: &'static str,
}

const fn row(
    key: &'static str,
    scope: Scope,
    form: Form,
    accepted: &'static str,
    doc: &'static str,
    config_default: Option<&'static str>,
    sample: &'static str,
) -> AnnotationSpec {
    AnnotationSpec {
        key,
        scope,
        form,
        accepted,
        doc,
        config_default,
        sample,
    }
}

const QUANTITY_CPU: &str = "a Kubernetes CPU quantity, e.g. 250m or 2";
const QUANTITY_MEMORY: &str = "a Kubernetes memory quantity, e.g. 256Mi or 1Gi";
const BOOL: &str = "true or false";

use Form::*;
use Scope::*;

/// Every annotation the injector reads, in the README's order.
#[rustfmt::skip]
pub const REGISTRY: &[AnnotationSpec] = &[
    row(INJECT, PodLabelOrAnnotation, Bool, SWITCH_FORMS, "opt in or out of injection", Some("policy"), "true"),
    row(STATUS, Pod, Document, "written by injection", "present: the pod is already injected and is skipped", None, "{}"),
    row(PROXY_CPU, PodOrNamespace, CpuQuantity, QUANTITY_CPU, "proxy and init CPU request", Some("resources.requests.cpu"), "250m"),
    row(PROXY_MEMORY, PodOrNamespace, MemoryQuantity, QUANTITY_MEMORY, "proxy and init memory request", Some("resources.requests.memory"), "256Mi"),
    row(PROXY_CPU_LIMIT, PodOrNamespace, CpuQuantity, QUANTITY_CPU, "CPU limit; also sets `--concurrency`", Some("resources.limits.cpu"), "2"),
    row(PROXY_MEMORY_LIMIT, PodOrNamespace, MemoryQuantity, QUANTITY_MEMORY, "memory limit", Some("resources.limits.memory"), "1Gi"),
    row(PROXY_EPHEMERAL_STORAGE, PodOrNamespace, MemoryQuantity, QUANTITY_MEMORY, "ephemeral-storage request", Some("resources.requests.ephemeral-storage"), "1Gi"),
    row(PROXY_EPHEMERAL_STORAGE_LIMIT, PodOrNamespace, MemoryQuantity, QUANTITY_MEMORY, "ephemeral-storage limit", Some("resources.limits.ephemeral-storage"), "2Gi"),
    row(PROXY_CPU_RATIO, PodOrNamespace, Ratio, RATIO_FORMS, "CPU request as a share of the app containers' requests", None, "10%"),
    row(PROXY_MEMORY_RATIO, PodOrNamespace, Ratio, RATIO_FORMS, "memory request as a share of the app containers' requests", None, "0.25"),
    row(INIT_CPU, Pod, CpuQuantity, QUANTITY_CPU, "init container CPU request (unset: the proxy's)", Some("initResources.requests.cpu"), "10m"),
    row(INIT_MEMORY, Pod, MemoryQuantity, QUANTITY_MEMORY, "init container memory request (unset: the proxy's)", Some("initResources.requests.memory"), "32Mi"),
    row(INIT_CPU_LIMIT, Pod, CpuQuantity, QUANTITY_CPU, "init container CPU limit (unset: the proxy's)", Some("initResources.limits.cpu"), "100m"),
    row(INIT_MEMORY_LIMIT, Pod, MemoryQuantity, QUANTITY_MEMORY, "init container memory limit (unset: the proxy's)", Some("initResources.limits.memory"), "64Mi"),
    row(PROFILE, PodOrNamespace, Name, "the name of a config profile", "resource preset from the config's `profiles`", Some("profiles"), "small"),
    row(BOUNDS, Namespace, Document, BOUNDS_FORMS, "tightens the config's bounds for the namespace", Some("bounds"), "{\"cpu.limit\":{\"max\":\"2\"}}"),
    row(NATIVE_SIDECAR, Pod, Bool, SWITCH_FORMS, "native sidecar layout for this pod", Some("nativeSidecars"), "true"),
    row(TEMPLATES, Pod, Text, TEMPLATE_FORMS, "`gateway`: Istio's gateway template: the proxy (`proxy router`) is the pod's main container, kept among the containers (never a native sidecar), with no traffic capture or init container and the pod sysctl `net.ipv4.ip_unprivileged_port_start=0`; a pod naming another template is refused, or skipped or given the sidecar (config `unknownTemplates`)", None, "gateway"),
    row(PROXY_IMAGE, Pod, Text, "an image reference with a registry path, e.g. docker.io/istio/proxyv2:1.28.0", "the proxy image for this pod; a value without a `/` is not used (the configured image is, with a warning), as istiod reads it", Some("proxyImage"), "docker.io/istio/proxyv2:1.28.0"),
    row(PROXY_IMAGE_TYPE, Pod, Text, "an image type: distroless, debug or default (any other word is appended to the tag, as istiod does)", "the variant of the configured proxy and init images (tag suffix `-<type>`; `default` removes one)", None, "distroless"),
    row(BOOTSTRAP_OVERRIDE, Pod, Text, BOOTSTRAP_OVERRIDE_FORMS, "Envoy's custom bootstrap: the ConfigMap is mounted at `/etc/istio/custom-bootstrap` and named to the agent by `ISTIO_BOOTSTRAP_OVERRIDE`", None, "custom-bootstrap"),
    row(CAP_NET_BIND_SERVICE, Pod, Bool, "true (anything else is off, as istiod reads it)", "add `NET_BIND_SERVICE` to the proxy, which then runs as root (uid 0, gid 1337)", None, "true"),
    row(LOG_LEVEL, Pod, Choice, LOG_LEVEL_FORMS, "Envoy's log level (`--proxyLogLevel`)", Some("proxyLogLevel"), "debug"),
    row(COMPONENT_LOG_LEVEL, Pod, Text, COMPONENT_LOG_LEVEL_FORMS, "Envoy's component log levels (`--proxyComponentLogLevel`)", Some("proxyComponentLogLevel"), "misc:error,rbac:debug"),
    row(AGENT_LOG_LEVEL, Pod, Text, AGENT_LOG_LEVEL_FORMS, "pilot-agent's and istio-iptables' `--log_output_level`", Some("agentLogLevel"), "default:info"),
    row(INTERCEPTION_MODE, Pod, Choice, INTERCEPTION_MODE_FORMS, "traffic capture mode", Some("interceptionMode"), "TPROXY"),
    row(INCLUDE_OUTBOUND_IP_RANGES, Pod, Cidrs { wildcard: true }, CIDRS_OR_ALL_FORMS, "`istio-iptables -i`", Some("includeOutboundIPRanges"), "10.0.0.0/8"),
    row(EXCLUDE_OUTBOUND_IP_RANGES, Pod, Cidrs { wildcard: false }, CIDRS_FORMS, "`istio-iptables -x`", Some("excludeOutboundIPRanges"), "10.96.0.0/12"),
    row(INCLUDE_INBOUND_PORTS, Pod, Ports { wildcard: true }, PORTS_OR_ALL_FORMS, "`istio-iptables -b`", None, "8080"),
    row(EXCLUDE_INBOUND_PORTS, Pod, Ports { wildcard: false }, PORTS_FORMS, "added to `istio-iptables -d`", Some("excludeInboundPorts"), "9090"),
    row(INCLUDE_OUTBOUND_PORTS, Pod, Ports { wildcard: false }, PORTS_FORMS, "`istio-iptables -q`", None, "443"),
    row(EXCLUDE_OUTBOUND_PORTS, Pod, Ports { wildcard: false }, PORTS_FORMS, "`istio-iptables -o`", Some("excludeOutboundPorts"), "5432"),
    row(KUBEVIRT_INTERFACES, Pod, Interfaces, INTERFACES_FORMS, "`istio-iptables -k`", None, "net1"),
    row(REROUTE_VIRTUAL_INTERFACES, Pod, Interfaces, INTERFACES_FORMS, "`istio-iptables -k` (newer name)", None, "net1"),
    row(EXCLUDE_INTERFACES, Pod, Interfaces, INTERFACES_FORMS, "`istio-iptables -c`: interfaces whose traffic is not captured", None, "eth1"),
    row(STATUS_PORT, Pod, Port, STATUS_PORT_FORMS, "the agent's status port, excluded from capture", Some("statusPort"), "15020"),
    row(READINESS_INITIAL_DELAY, Pod, WholeNumber, WHOLE_NUMBER_FORMS, "the proxy readiness probe's `initialDelaySeconds`", Some("readinessInitialDelaySeconds"), "1"),
    row(READINESS_PERIOD, Pod, WholeNumber, WHOLE_NUMBER_FORMS, "the proxy readiness probe's `periodSeconds`", Some("readinessPeriodSeconds"), "15"),
    row(READINESS_FAILURE_THRESHOLD, Pod, WholeNumber, WHOLE_NUMBER_FORMS, "the proxy readiness probe's `failureThreshold`", Some("readinessFailureThreshold"), "4"),
    row(REWRITE_PROBES, Pod, Bool, BOOL, "point the app's HTTP/TCP/gRPC probes and lifecycle hooks at the agent", Some("rewriteAppProbes"), "false"),
    row(PROXY_CONFIG, Pod, Document, PROXY_CONFIG_FORMS, "ProxyConfig for the agent (`PROXY_CONFIG`); `concurrency`, `holdApplicationUntilProxyStarts`, `proxyMetadata` apply", Some("meshDefaultConfig"), "{\"concurrency\": 2}"),
    row(OVERRIDES, Pod, Document, OVERRIDES_FORMS, "the user's own proxy fields, restored on re-injection", None, "{}"),
    row(USER_VOLUME, Pod, Document, USER_VOLUME_FORMS, "extra pod volumes", None, "{\"extra\":{\"emptyDir\":{}}}"),
    row(USER_VOLUME_MOUNT, Pod, Document, USER_VOLUME_MOUNT_FORMS, "extra mounts for `istio-proxy`", None, "{\"extra\":{\"mountPath\":\"/extra\"}}"),
    row(PROMETHEUS_SCRAPE, Pod, Bool, BOOL, "the app's metrics, merged into the agent's (`false` opts out)", Some("enablePrometheusMerge"), "true"),
    row(PROMETHEUS_PORT, Pod, Port, "a port", "the app's metrics port", None, "8080"),
    row(PROMETHEUS_PATH, Pod, Text, "a URL path", "the app's metrics path", None, "/metrics"),
    row(PROMETHEUS_SCRAPE_TARGETS, Pod, Text, "comma-separated port:path pairs", "several app metrics endpoints", None, "8080:/metrics"),
    row(PROMETHEUS_MERGE_METRICS, Pod, Bool, BOOL, "`false` opts out of metrics merging", Some("enablePrometheusMerge"), "false"),
    row(MULTUS_NETWORKS, Pod, Text, "Multus network list, flat or JSON", "kept, with Istio CNI's attachment added (`cniProvider: multus`)", None, "macvlan"),
    row(OPENSHIFT_UID_RANGE, Namespace, Text, "start/size", "OpenShift: the proxy runs as the range's last UID (`platform: openshift`)", None, "1000620000/10000"),
    row(OPENSHIFT_SUPPLEMENTAL_GROUPS, Namespace, Text, "start/size", "OpenShift: the proxy's group", None, "1000620000/10000"),
];

/// The registry row for `key`.
pub fn spec(key: &str) -> Option<&'static AnnotationSpec> {
    REGISTRY.iter().find(|row| row.key == key)
}

/// The key domains (the part before `/`) of every pod annotation the engine reads or checks
/// for, in the registry or not (`kubectl.kubernetes.io/default-container`, `istio.io/rev`);
/// besides these, every domain ending in `istio.io`.
const READ_DOMAINS: [&str; 5] = [
    "sidecar-injector.io",
    "prometheus.io",
    "kubectl.kubernetes.io",
    "k8s.v1.cni.cncf.io",
    "openshift.io",
];

/// Whether the engine may read the pod annotation `key`. A reader that leaves the others out
/// of the pod it gives the engine, counting their bytes
/// ([`crate::PodRequest::unread_annotation_bytes`]), gets the same answer.
pub fn read_by_engine(key: &str) -> bool {
    let Some((domain, _)) = key.split_once('/') else {
        return key == PROMETHEUS_SCRAPE_DOTTED;
    };
    domain.ends_with("istio.io") || READ_DOMAINS.contains(&domain)
}

/// The README's annotation reference, as a Markdown table.
pub fn reference_table() -> String {
    let mut table =
        String::from("| annotation | on | value | effect | config default |\n| --- | --- | --- | --- | --- |\n");
    for row in REGISTRY {
        let default = row
            .config_default
            .map_or_else(|| "-".to_string(), |key| format!("`{key}`"));
        table.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            row.key,
            row.scope,
            row.accepted.replace('|', "\\|"),
            row.doc.replace('|', "\\|"),
            default
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const START: &str = "<!-- annotations:start (generated from engine/src/annotations.rs) -->\n";
    const END: &str = "<!-- annotations:end -->";

    #[test]
    fn keys_are_unique() {
        for (index, row) in REGISTRY.iter().enumerate() {
            assert!(
                REGISTRY[index + 1..].iter().all(|other| other.key != row.key),
                "{} is listed twice",
                row.key
            );
        }
    }

    #[test]
    fn readme_reference_is_generated_from_the_registry() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let (before, rest) = readme
            .split_once(START)
            .expect("README has the annotations:start marker");
        let (current, after) = rest.split_once(END).expect("README has the annotations:end marker");
        let generated = reference_table();
        if std::env::var_os("SIDECAR_INJECTOR_REGENERATE").is_some() {
            std::fs::write(&path, format!("{before}{START}{generated}{END}{after}")).unwrap();
            return;
        }
        assert_eq!(
            current, generated,
            "README's annotation table differs from the registry; run SIDECAR_INJECTOR_REGENERATE=1 cargo test -p sidecar-injector-engine readme"
        );
    }

    /// Every annotation-like literal in the engine's sources is a registry key or one the
    /// injector only writes, so a new annotation cannot skip the table.
    #[test]
    fn no_annotation_key_outside_the_registry() {
        const WRITTEN_ONLY: &[&str] = &[
            "istio.io/rev",
            "security.istio.io/tlsMode",
            "topology.istio.io/network",
            "service.istio.io/canonical-name",
            "service.istio.io/canonical-revision",
            "kubectl.kubernetes.io/default-container",
            "kubectl.kubernetes.io/default-logs-container",
            "openshift.io/build.name",
            "app.kubernetes.io/name",
            "app.kubernetes.io/version",
            "istio.io/dataplane-mode",
        ];
        let prefixes = [
            "sidecar.istio.io/",
            "sidecar-injector.io/",
            "traffic.sidecar.istio.io/",
            "status.sidecar.istio.io/",
            "readiness.status.sidecar.istio.io/",
            "proxy.istio.io/",
            "prometheus.io/",
            "prometheus.istio.io/",
            "openshift.io/sa.",
            "k8s.v1.cni.cncf.io/",
        ];
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stray = Vec::new();
        visit(&src, &mut |path, text| {
            if path.ends_with("annotations.rs") {
                return;
            }
            for (index, _) in text.match_indices('"') {
                let literal: String = text[index + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "./-_".contains(*c))
                    .collect();
                if prefixes
                    .iter()
                    .any(|prefix| literal.starts_with(prefix) && literal.len() > prefix.len())
                    && text[index + 1 + literal.len()..].starts_with('"')
                    && spec(&literal).is_none()
                    && !WRITTEN_ONLY.contains(&literal.as_str())
                {
                    stray.push(format!("{}: {literal}", path.display()));
                }
            }
        });
        assert!(stray.is_empty(), "annotation keys outside the registry: {stray:#?}");
    }

    /// Every pod annotation the engine reads is one a reader keeps: the registry's keys and
    /// those it only checks for; an unrelated annotation is left out.
    #[test]
    fn every_annotation_the_engine_reads_is_kept_by_readers() {
        let checked_only = [
            "kubectl.kubernetes.io/default-container",
            "kubectl.kubernetes.io/default-logs-container",
            "istio.io/rev",
            STATUS,
            PROMETHEUS_SCRAPE_DOTTED,
        ];
        let registry = REGISTRY
            .iter()
            .filter(|row| row.scope != Scope::Namespace)
            .map(|row| row.key);
        for key in registry.chain(checked_only) {
            assert!(
                read_by_engine(key),
                "{key} would be left out of the pod the engine reads"
            );
        }
        for key in [
            "checksum/config",
            "team.example.com/owner",
            "note",
            "prometheus.io.port",
            "deployment.kubernetes.io/revision",
        ] {
            assert!(!read_by_engine(key), "{key}");
        }
    }

    /// The fuzz target's `all` seed holds every fuzzed key's sample, in registry order.
    #[test]
    fn fuzz_seed_holds_every_sample() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/annotations/all");
        let seed: Vec<&str> = REGISTRY
            .iter()
            .filter(|row| row.scope != Scope::Namespace && row.key != STATUS)
            .map(|row| row.sample)
            .collect();
        let seed = seed.join("\0");
        if std::env::var_os("SIDECAR_INJECTOR_REGENERATE").is_some() {
            std::fs::write(&path, &seed).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            seed,
            "regenerate with SIDECAR_INJECTOR_REGENERATE=1"
        );
    }

    fn visit(dir: &Path, check: &mut dyn FnMut(&Path, &str)) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, check);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                check(&path, &std::fs::read_to_string(&path).unwrap());
            }
        }
    }
}
