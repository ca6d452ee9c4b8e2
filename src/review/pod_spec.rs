//! Reading a Pod's spec from a review in one pass: every field as k8s-openapi reads it,
//! except the fields of the pod's own app containers that the engine never reads.
//!
//! An app container's `env`, `envFrom`, `command`, `args`, `workingDir`, `volumeMounts`,
//! `volumeDevices`, `imagePullPolicy`, `securityContext`, `terminationMessage*`, `stdin*`,
//! `tty` and `restartPolicyRules` are skipped (the heaviest are not even in the text this
//! reads: `super::scan`). A container the engine merges with its own (`istio-proxy`,
//! `istio-init`, `istio-validation`, [`is_injected_container`]) needs them all, so this
//! reader refuses it ([`ReadInFull`]) and the pod is read again as k8s-openapi reads it. The
//! fields the engine reads of every container (name, image, ports, resources, resize and
//! restart policy, probes, lifecycle) are always typed. `tests/corpus.rs` checks that the engine's
//! answer through this reader equals its answer on the whole Pod for every pod of Istio's
//! corpus, its injected outputs included.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, ContainerResizePolicy, EphemeralContainer, EvictionResponder, HostAlias,
    Lifecycle, LocalObjectReference, PodDNSConfig, PodOS, PodReadinessGate, PodResourceClaim, PodSchedulingGate,
    PodSchedulingGroup, PodSecurityContext, PodSpec, Probe, ResourceRequirements, Toleration, TopologySpreadConstraint,
    Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::engine::is_injected_container;

/// `spec`, read as [`PodSpecDef`] reads it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ReadSpec(#[serde(with = "PodSpecDef")] PodSpec);

impl From<ReadSpec> for PodSpec {
    fn from(read: ReadSpec) -> Self {
        read.0
    }
}

/// k8s-openapi's `PodSpec`, field for field, with its containers read by [`containers`].
#[derive(Deserialize)]
#[serde(remote = "PodSpec", rename_all = "camelCase")]
struct PodSpecDef {
    active_deadline_seconds: Option<i64>,
    affinity: Option<Affinity>,
    automount_service_account_token: Option<bool>,
    #[serde(default, deserialize_with = "containers")]
    containers: Vec<Container>,
    dns_config: Option<PodDNSConfig>,
    dns_policy: Option<String>,
    enable_service_links: Option<bool>,
    ephemeral_containers: Option<Vec<EphemeralContainer>>,
    eviction_responders: Option<Vec<EvictionResponder>>,
    host_aliases: Option<Vec<HostAlias>>,
    #[serde(rename = "hostIPC")]
    host_ipc: Option<bool>,
    host_network: Option<bool>,
    #[serde(rename = "hostPID")]
    host_pid: Option<bool>,
    host_users: Option<bool>,
    hostname: Option<String>,
    hostname_override: Option<String>,
    image_pull_secrets: Option<Vec<LocalObjectReference>>,
    #[serde(default, deserialize_with = "container_list")]
    init_containers: Option<Vec<Container>>,
    node_name: Option<String>,
    node_selector: Option<BTreeMap<String, String>>,
    os: Option<PodOS>,
    overhead: Option<BTreeMap<String, Quantity>>,
    preemption_policy: Option<String>,
    priority: Option<i32>,
    priority_class_name: Option<String>,
    readiness_gates: Option<Vec<PodReadinessGate>>,
    resource_claims: Option<Vec<PodResourceClaim>>,
    resources: Option<ResourceRequirements>,
    restart_policy: Option<String>,
    runtime_class_name: Option<String>,
    scheduler_name: Option<String>,
    scheduling_gates: Option<Vec<PodSchedulingGate>>,
    scheduling_group: Option<PodSchedulingGroup>,
    security_context: Option<PodSecurityContext>,
    service_account: Option<String>,
    service_account_name: Option<String>,
    #[serde(rename = "setHostnameAsFQDN")]
    set_hostname_as_fqdn: Option<bool>,
    share_process_namespace: Option<bool>,
    subdomain: Option<String>,
    termination_grace_period_seconds: Option<i64>,
    tolerations: Option<Vec<Toleration>>,
    topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    volumes: Option<Vec<Volume>>,
}

/// `spec.containers`: missing or null reads as empty, as k8s-openapi reads it.
fn containers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Container>, D::Error> {
    Ok(container_list(deserializer)?.unwrap_or_default())
}

/// A list of containers (`spec.initContainers`, and `spec.containers` before its default),
/// each read by [`ReadContainer`].
fn container_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<Container>>, D::Error> {
    let read: Option<Vec<ReadContainer>> = Option::deserialize(deserializer)?;
    read.map(|containers| containers.into_iter().map(ReadContainer::into_container).collect())
        .transpose()
        .map_err(D::Error::custom)
}

/// One container as sent: the fields the engine reads of every container, typed; the rest
/// are skipped. A container the engine merges with its own is not read here at all.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadContainer {
    #[serde(default)]
    name: Option<String>,
    image: Option<String>,
    ports: Option<Vec<ContainerPort>>,
    resources: Option<ResourceRequirements>,
    resize_policy: Option<Vec<ContainerResizePolicy>>,
    restart_policy: Option<String>,
    liveness_probe: Option<Probe>,
    readiness_probe: Option<Probe>,
    startup_probe: Option<Probe>,
    lifecycle: Option<Lifecycle>,
}

/// Why a pod is read again in full: it carries a container the engine merges with its own,
/// whose every field the engine reads.
#[derive(Debug, thiserror::Error)]
#[error("container {0:?} is merged with the injected one and is read in full")]
pub(super) struct ReadInFull(String);

impl ReadContainer {
    /// The container, unless the engine merges it with its own ([`ReadInFull`]).
    fn into_container(self) -> Result<Container, ReadInFull> {
        let name = self.name.unwrap_or_default();
        if is_injected_container(&name) {
            return Err(ReadInFull(name));
        }
        Ok(Container {
            name,
            image: self.image,
            ports: self.ports,
            resources: self.resources,
            resize_policy: self.resize_policy,
            restart_policy: self.restart_policy,
            liveness_probe: self.liveness_probe,
            readiness_probe: self.readiness_probe,
            startup_probe: self.startup_probe,
            lifecycle: self.lifecycle,
            ..Container::default()
        })
    }
}
