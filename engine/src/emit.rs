//! Stage 3, `emit`: the RFC 6902 operations that add a [`Rendered`] sidecar to the pod of a
//! [`Plan`], in istiod's order and layout.
//!
//! Operations only ever add to or remove from what the pod has; no existing map or list is
//! replaced whole (see [`crate::patch::PatchBuilder`]).

use std::borrow::Cow;

use crate::annotation_size::{AnnotationBytes, ReadAnnotations, annotations_over_limit};
use crate::annotations::{MULTUS_NETWORKS, OVERRIDES, PROVENANCE};
use crate::config::{CniProvider, InjectConfig};
use crate::container::SidecarContainer;
use crate::decision::PROXY_CONTAINER;
use crate::metadata::{SidecarStatus, annotations_to_add, labels_to_add};
use crate::patch::{Entry, EntryValue, PatchBuilder, SerializedPatch};
use crate::plan::Plan;
use crate::render::Rendered;
use crate::resources::pod_level::PodLevelChange;
use crate::templates::Template;
use crate::{gateway, traffic};

/// The patch, with the size of the annotations it leaves the pod when that is over the API
/// server's limit (the one limit that depends on what was rendered:
/// [`crate::annotation_size`]).
pub(crate) struct Emitted {
    /// The operations.
    pub patch: SerializedPatch,
    /// The patched pod's annotations, when they are over the limit.
    pub annotations_over_limit: Option<AnnotationBytes>,
}

/// The patch that adds `rendered` to the pod of `plan`.
pub(crate) fn emit(plan: &Plan<'_>, rendered: Rendered<'_>, config: &InjectConfig) -> Emitted {
    let mut builder = PatchBuilder::new();
    if !plan.has_metadata {
        builder.add(&["metadata"], serde_json::json!({}));
    }
    emit_probe_rewrites(plan, &mut builder);
    for (list, index) in plan.overrides.removals() {
        builder.remove(&["spec", list, itoa::Buffer::new().format(index)]);
    }
    let Rendered {
        proxy,
        init,
        volumes,
        volume_names,
    } = rendered;
    let (added_init, added_containers) = emit_containers(plan, proxy, init, config, &mut builder);
    // Each pod-level value is already there: `add` on an object member replaces just it.
    for change in &plan.pod_level {
        let value = serde_json::json!(change.to.to_string());
        builder.add(&["spec", "resources", change.list(), change.resource.name()], value);
    }
    emit_pull_secrets(plan, config, &mut builder);
    // istiod puts its volumes and pull secrets ahead of the pod's own.
    builder.insert_items(
        &["spec", "volumes"],
        plan.spec.volumes.as_ref().map(Vec::len),
        Some(0),
        &volumes,
    );
    let status = SidecarStatus {
        init_containers: (!added_init.is_empty()).then_some(added_init),
        containers: (!added_containers.is_empty()).then_some(added_containers),
        volumes: Some(volume_names),
        image_pull_secrets: (!config.image_pull_secrets.is_empty()).then_some(&config.image_pull_secrets[..]),
        revision: &config.revision,
    };
    builder.set_entries(
        &["metadata", "labels"],
        plan.pod.metadata.labels.as_ref(),
        labels_to_add(plan.pod, &plan.workload, &config.network, plan.template.captures()),
    );
    if plan.template == Template::Gateway {
        gateway::emit_unprivileged_ports(plan.spec, &mut builder);
    }
    let annotations_over_limit = emit_annotations(plan, &status, config, &mut builder);
    Emitted {
        patch: builder.build(),
        annotations_over_limit,
    }
}

/// App probes and lifecycle hooks pointed at the agent.
fn emit_probe_rewrites(plan: &Plan<'_>, builder: &mut PatchBuilder) {
    for rewrite in &plan.probe_plan.rewrites {
        let mut index = itoa::Buffer::new();
        let container = ["spec", rewrite.list, index.format(rewrite.container)];
        if rewrite.handler != "httpGet" {
            builder.remove_at(&[&container, rewrite.probe, &[rewrite.handler]]);
        }
        builder.add_written_at(&[&container, rewrite.probe, &["httpGet"]], &rewrite.http_get);
    }
}

/// The proxy and init container in the classic or native layout; returns the names added to
/// `initContainers` and to `containers`.
fn emit_containers(
    plan: &Plan<'_>,
    proxy: SidecarContainer<'_>,
    init: Option<SidecarContainer<'_>>,
    config: &InjectConfig,
    builder: &mut PatchBuilder,
) -> (Vec<&'static str>, Vec<&'static str>) {
    let spec = plan.spec;
    let init_len = spec
        .init_containers
        .as_ref()
        .map(|list| list.len() - plan.overrides.removed_from("initContainers"));
    let containers_len = spec.containers.len() - plan.overrides.removed_from("containers");
    let mut added_init = Vec::new();
    let mut added_containers = Vec::new();
    if plan.native {
        let init_containers = ["spec", "initContainers"];
        if let Some(init) = init {
            builder.insert_items(&init_containers, init_len, Some(0), &[init, proxy]);
            added_init.push(plan.init_name);
        } else {
            builder.insert_items(&init_containers, init_len, Some(0), &[proxy]);
        }
        added_init.push(PROXY_CONTAINER);
    } else {
        if let Some(init) = init {
            let position = if config.cni_enabled { Some(0) } else { None };
            builder.insert_items(&["spec", "initContainers"], init_len, position, &[init]);
            added_init.push(plan.init_name);
        }
        let position = if plan.hold { Some(0) } else { None };
        builder.insert_items(&["spec", "containers"], Some(containers_len), position, &[proxy]);
        added_containers.push(PROXY_CONTAINER);
    }
    (added_init, added_containers)
}

/// The config's pull secrets the pod does not already name, first.
fn emit_pull_secrets(plan: &Plan<'_>, config: &InjectConfig, builder: &mut PatchBuilder) {
    let existing = plan.spec.image_pull_secrets.as_ref();
    let missing: Vec<serde_json::Value> = config
        .image_pull_secrets
        .iter()
        .filter(|name| !existing.into_iter().flatten().any(|secret| &secret.name == *name))
        .map(|name| serde_json::json!({ "name": name }))
        .collect();
    builder.insert_items(&["spec", "imagePullSecrets"], existing.map(Vec::len), Some(0), &missing);
}

/// Status, revision, container defaults, Prometheus, overrides, CNI and provenance; returns
/// the size of the annotations the pod is left with when it is over the limit.
fn emit_annotations(
    plan: &Plan<'_>,
    status: &SidecarStatus<'_>,
    config: &InjectConfig,
    builder: &mut PatchBuilder,
) -> Option<AnnotationBytes> {
    let mut extra: Vec<Entry<'_>> = plan
        .prometheus
        .annotations
        .iter()
        .map(|&(key, value)| (Cow::Borrowed(key), EntryValue::from(value)))
        .collect();
    if let Some(recorded) = plan.overrides.annotation(plan.native) {
        extra.push((OVERRIDES.into(), recorded.into()));
    }
    if config.cni_enabled && plan.with_init {
        extra.extend(
            plan.traffic
                .cni_annotations()
                .into_iter()
                .map(|(key, value)| (Cow::Owned(key), value.into())),
        );
    }
    if config.cni_enabled && config.cni_provider == CniProvider::Multus {
        let existing = plan.annotations.and_then(|map| map.get(MULTUS_NETWORKS));
        extra.push((
            MULTUS_NETWORKS.into(),
            traffic::multus_networks(existing.map(String::as_str), plan.namespace).into(),
        ));
    }
    let mut added = annotations_to_add(plan.pod, status, extra);
    if config.provenance_annotation {
        let pod_level = plan.pod_level.iter().map(PodLevelChange::provenance);
        added.push((
            PROVENANCE.into(),
            plan.proxy_resources.provenance_text_with(pod_level).into(),
        ));
    }
    let existing = ReadAnnotations {
        read: plan.annotations,
        unread_bytes: plan.unread_annotation_bytes,
    };
    let size = annotations_over_limit(existing, &added, &plan.prometheus.remove);
    builder.set_entries(&["metadata", "annotations"], plan.annotations, added);
    for key in &plan.prometheus.remove {
        builder.remove(&["metadata", "annotations", key]);
    }
    size
}
