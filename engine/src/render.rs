//! Stage 2, `render`: the containers and volumes to add, from a [`Plan`].
//!
//! Nothing here fails or reads an annotation: every value was validated by
//! [`crate::plan`], which also chose the template ([`Template`]): the sidecar, or the
//! gateway ([`crate::gateway`]). The user's own `istio-proxy`/`istio-init` fields are laid
//! over ours here.

use serde_json::Value;
use serde_json::value::RawValue;

use crate::bootstrap_override;
use crate::config::{InjectConfig, InterceptionMode};
use crate::container::{EnvVar, Fragment, ProxyContainer, SidecarContainer};
use crate::gateway::{GatewayTemplate, build_gateway_container};
use crate::overrides;
use crate::plan::Plan;
use crate::resources::ConcurrencyPolicy;
use crate::sidecar::{
    self, SidecarInputs, build_init_container, build_proxy_container, clashes_with_proxy_mount, mtls_certs_volume,
};
use crate::template::SidecarTemplate;
use crate::templates::Template;

/// The compiled templates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Templates<'t> {
    /// Istio's `sidecar` template's parts (the gateway shares its env, ports and domain).
    pub sidecar: &'t SidecarTemplate,
    /// Istio's `gateway` template's own parts.
    pub gateway: &'t GatewayTemplate,
}

/// What the sidecar adds to the pod.
#[derive(Debug, Clone)]
pub(crate) struct Rendered<'t> {
    /// The `istio-proxy` container.
    pub proxy: SidecarContainer<'t>,
    /// The init container, unless capture is off.
    pub init: Option<SidecarContainer<'t>>,
    /// Volumes to add (ours the pod lacks, then the user's that clash with nothing).
    pub volumes: Vec<Fragment<'t>>,
    /// The names of our volumes, for the status annotation.
    pub volume_names: Vec<&'t str>,
}

/// Renders the sidecar for `plan`.
pub(crate) fn render<'t>(
    plan: &'t Plan<'_>,
    config: &'t InjectConfig,
    concurrency: &'t ConcurrencyPolicy,
    templates: Templates<'t>,
) -> Rendered<'t> {
    let template = templates.sidecar;
    let inputs = SidecarInputs {
        pod: plan.pod,
        namespace: plan.namespace,
        workload: &plan.workload,
        resources: &plan.proxy_resources,
        init_resources: &plan.init_resources,
        concurrency,
        traffic: &plan.traffic,
        native: plan.native,
        hold: plan.hold,
        proxy_config: &plan.proxy_config,
        prometheus_original: plan.prometheus.original.as_ref(),
        readiness_probe: plan.readiness_probe.as_ref(),
        proxy_image: &plan.proxy_image,
        init_image: &plan.init_image,
        cap_net_bind_service: plan.cap_net_bind_service,
        bootstrap_override: plan.bootstrap_override,
        proxy_ids: plan.proxy_ids,
        config,
        template,
        log_levels: &plan.log_levels,
        resize_policy: plan.resize_policy,
    };
    let init = plan.with_init.then(|| render_init(plan, &inputs));
    let (proxy, volumes) = match plan.template {
        Template::Sidecar => (build_proxy_container(&inputs), &template.volumes),
        Template::Gateway => (
            build_gateway_container(&inputs, templates.gateway),
            &templates.gateway.volumes,
        ),
    };
    let (volumes, volume_names) = render_volumes(plan, config, volumes);
    Rendered {
        proxy: render_proxy(plan, &inputs, proxy),
        init,
        volumes,
        volume_names,
    }
}

/// The proxy: our container, the user's mounts, the app probers, the user's overrides.
fn render_proxy<'t>(
    plan: &'t Plan<'_>,
    inputs: &SidecarInputs<'t>,
    mut proxy: ProxyContainer<'t>,
) -> SidecarContainer<'t> {
    for mount in &plan.user_volumes.mounts {
        let clashes = clashes_with_proxy_mount(inputs.config, mount)
            || proxy
                .volume_mounts
                .user
                .iter()
                .any(|added| added["mountPath"] == mount["mountPath"] || added["name"] == mount["name"]);
        if !clashes {
            proxy.volume_mounts.user.push(mount);
        }
    }
    let app_probers = plan.probe_plan.app_probers.as_ref();
    let Some(user) = &plan.overrides.proxy else {
        if let Some(value) = app_probers {
            proxy.env.push(EnvVar::Json(APP_PROBERS_ENV, value));
        }
        return SidecarContainer::Proxy(Box::new(proxy));
    };
    // The user's fields are laid over ours first; the probers are added to what results.
    let mut proxy = SidecarContainer::Proxy(Box::new(proxy)).into_value();
    overrides::merge_container(&mut proxy, &user.container);
    proxy["resources"] = serde_json::to_value(plan.proxy_resources.to_requirements()).unwrap_or_default();
    if plan.traffic.mode == InterceptionMode::Tproxy && plan.template.captures() {
        sidecar::enforce_tproxy(&mut proxy);
    }
    if let (Some(value), Some(env)) = (app_probers, proxy.get_mut("env").and_then(Value::as_array_mut)) {
        env.push(serde_json::json!({"name": APP_PROBERS_ENV, "value": value.to_json()}));
    }
    SidecarContainer::Merged(proxy)
}

/// The variable through which the agent learns the app's rewritten probes.
const APP_PROBERS_ENV: &str = "ISTIO_KUBE_APP_PROBERS";

/// The init container, with the user's overrides and the layered resources.
fn render_init<'t>(plan: &'t Plan<'_>, inputs: &SidecarInputs<'t>) -> SidecarContainer<'t> {
    let init = SidecarContainer::Init(Box::new(build_init_container(inputs)));
    let Some(user) = &plan.overrides.init else {
        return init;
    };
    let mut init = init.into_value();
    overrides::merge_container(&mut init, &user.container);
    init["resources"] = serde_json::to_value(plan.init_resources.to_requirements()).unwrap_or_default();
    SidecarContainer::Merged(init)
}

/// Our volumes the pod lacks, then the user's whose names clash with neither; and the names
/// the status annotation lists (ours, then the user's).
fn render_volumes<'t>(
    plan: &'t Plan<'_>,
    config: &InjectConfig,
    template_volumes: &'t [(&'static str, Box<RawValue>)],
) -> (Vec<Fragment<'t>>, Vec<&'t str>) {
    let existing = plan.spec.volumes.as_ref();
    let exists = |name: &str| existing.is_some_and(|list| list.iter().any(|v| v.name == name));
    let mtls = mtls_certs_volume(config, plan.pod);
    let bootstrap = plan.bootstrap_override.map(bootstrap_override::volume);
    let mut names: Vec<&'t str> = Vec::with_capacity(template_volumes.len() + 2);
    let mut volumes = Vec::with_capacity(template_volumes.len() + 2 + plan.user_volumes.volumes.len());
    for (name, raw) in template_volumes {
        names.push(name);
        if !exists(name) {
            volumes.push(Fragment::Compiled(raw));
        }
        // The custom bootstrap's volume stands where istiod's template puts it.
        if *name == bootstrap_override::AFTER_VOLUME
            && let Some(volume) = &bootstrap
        {
            names.push(bootstrap_override::VOLUME);
            if !exists(bootstrap_override::VOLUME) {
                volumes.push(Fragment::Built(volume.clone()));
            }
        }
    }
    names.extend(mtls.iter().map(|&(name, _)| name));
    volumes.extend(
        mtls.filter(|(name, _)| !exists(name))
            .map(|(_, volume)| Fragment::Built(volume)),
    );
    let users = plan
        .user_volumes
        .volumes
        .iter()
        .filter(|volume| {
            !volume["name"]
                .as_str()
                .is_some_and(|name| exists(name) || names.contains(&name))
        })
        .cloned()
        .map(Fragment::Built);
    volumes.extend(users);
    // The status annotation names the user's volumes too, after ours, as istiod's does.
    for volume in &plan.user_volumes.volumes {
        if let Some(name) = volume["name"].as_str()
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    (volumes, names)
}
