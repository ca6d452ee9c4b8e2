//! Stage 2, `render`: the containers and volumes to add, from a [`Plan`].
//!
//! Nothing here fails or reads an annotation: every value was validated by
//! [`crate::plan`]. The user's own `istio-proxy`/`istio-init` fields are laid over ours here.

use serde_json::Value;

use crate::config::{InjectConfig, InterceptionMode};
use crate::overrides;
use crate::plan::Plan;
use crate::resources::ConcurrencyPolicy;
use crate::sidecar::{self, SidecarInputs, build_init_container, build_proxy_container, mtls_certs_volume};
use crate::template::{SidecarTemplate, VolumeItem};

/// What the sidecar adds to the pod.
#[derive(Debug, Clone)]
pub(crate) struct Rendered<'t> {
    /// The `istio-proxy` container.
    pub proxy: Value,
    /// The init container, unless capture is off.
    pub init: Option<Value>,
    /// Volumes to add (ours the pod lacks, then the user's that clash with nothing).
    pub volumes: Vec<VolumeItem<'t>>,
    /// The names of our volumes, for the status annotation.
    pub volume_names: Vec<String>,
}

/// Renders the sidecar for `plan`.
pub(crate) fn render<'t>(
    plan: &Plan<'_>,
    config: &InjectConfig,
    concurrency: &ConcurrencyPolicy,
    template: &'t SidecarTemplate,
) -> Rendered<'t> {
    let inputs = SidecarInputs {
        pod: plan.pod,
        namespace: plan.namespace,
        workload: &plan.workload,
        resources: &plan.proxy_resources,
        concurrency,
        traffic: &plan.traffic,
        native: plan.native,
        hold: plan.hold,
        proxy_config: &plan.proxy_config,
        prometheus_original: plan.prometheus.original.as_deref(),
        readiness_probe: plan.readiness_probe.clone(),
        proxy_image: &plan.proxy_image,
        init_image: &plan.init_image,
        cap_net_bind_service: plan.cap_net_bind_service,
        proxy_ids: plan.proxy_ids,
        config,
        mesh_proxy_config: &template.mesh_proxy_config,
        log_levels: &plan.log_levels,
        resize_policy: plan.resize_policy,
    };
    let init = plan.with_init.then(|| render_init(plan, &inputs));
    let (volumes, volume_names) = render_volumes(plan, config, template);
    Rendered {
        proxy: render_proxy(plan, &inputs),
        init,
        volumes,
        volume_names,
    }
}

/// The proxy: our container, the user's mounts, the user's overrides, the app probers.
fn render_proxy(plan: &Plan<'_>, inputs: &SidecarInputs<'_>) -> Value {
    let mut proxy = build_proxy_container(inputs);
    if let Some(mounts) = proxy.get_mut("volumeMounts").and_then(|m| m.as_array_mut()) {
        for mount in &plan.user_volumes.mounts {
            let clashes = mounts
                .iter()
                .any(|ours| ours["mountPath"] == mount["mountPath"] || ours["name"] == mount["name"]);
            if !clashes {
                mounts.push(mount.clone());
            }
        }
    }
    if let Some(user) = &plan.overrides.proxy {
        overrides::merge_container(&mut proxy, &user.container);
        proxy["resources"] = serde_json::to_value(plan.proxy_resources.to_requirements()).unwrap_or_default();
        if plan.traffic.mode == InterceptionMode::Tproxy {
            sidecar::enforce_tproxy(&mut proxy);
        }
    }
    if let (Some(value), Some(env)) = (
        &plan.probe_plan.app_probers,
        proxy.get_mut("env").and_then(|e| e.as_array_mut()),
    ) {
        env.push(serde_json::json!({"name": "ISTIO_KUBE_APP_PROBERS", "value": value}));
    }
    proxy
}

/// The init container, with the user's overrides and the layered resources.
fn render_init(plan: &Plan<'_>, inputs: &SidecarInputs<'_>) -> Value {
    let mut init = build_init_container(inputs);
    if let Some(user) = &plan.overrides.init {
        overrides::merge_container(&mut init, &user.container);
    }
    init["resources"] = serde_json::to_value(plan.init_resources.to_requirements()).unwrap_or_default();
    init
}

/// Our volumes the pod lacks, then the user's whose names clash with neither; and the names
/// the status annotation lists (ours, then the user's).
fn render_volumes<'t>(
    plan: &Plan<'_>,
    config: &InjectConfig,
    template: &'t SidecarTemplate,
) -> (Vec<VolumeItem<'t>>, Vec<String>) {
    let existing = plan.spec.volumes.as_ref();
    let exists = |name: &str| existing.is_some_and(|list| list.iter().any(|v| v.name == name));
    let mtls = mtls_certs_volume(config, plan.pod);
    let mut names: Vec<String> = template.volumes.iter().map(|(name, _)| name.to_string()).collect();
    names.extend(mtls.iter().map(|(name, _)| name.to_string()));
    let ours = template
        .volumes
        .iter()
        .filter(|(name, _)| !exists(name))
        .map(|(_, raw)| VolumeItem::Compiled(raw))
        .chain(
            mtls.filter(|(name, _)| !exists(name))
                .map(|(_, volume)| VolumeItem::Built(volume)),
        );
    let users = plan
        .user_volumes
        .volumes
        .iter()
        .filter(|volume| {
            !volume["name"]
                .as_str()
                .is_some_and(|name| exists(name) || names.iter().any(|ours| ours == name))
        })
        .cloned()
        .map(VolumeItem::Built);
    let volumes = ours.chain(users).collect();
    // The status annotation names the user's volumes too, after ours, as istiod's does.
    for volume in &plan.user_volumes.volumes {
        if let Some(name) = volume["name"].as_str()
            && !names.iter().any(|listed| listed == name)
        {
            names.push(name.to_string());
        }
    }
    (volumes, names)
}
