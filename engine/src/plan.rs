//! Stage 1, `plan`: the decision, the validated per-pod settings and the resolved resources.
//!
//! Every denial that depends on the pod's settings happens here. What comes out is typed and
//! final: [`crate::render`] and [`crate::emit`] never read an annotation again or return an
//! error. The one check after them is a size: the annotations the patch leaves the pod must
//! fit the API server's limit ([`crate::annotation_size`]), and the status annotation lists
//! what render added.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::annotations::{CAP_NET_BIND_SERVICE, NATIVE_SIDECAR, PROXY_IMAGE, PROXY_IMAGE_TYPE};
use crate::config::{InjectConfig, InterceptionMode, Platform};
use crate::container::ReadinessProbe;
use crate::decision::{Decision, SkipReason, read_switch, should_inject};
use crate::error::{InjectError, quoted};
use crate::log_levels::LogLevels;
use crate::overrides::Overrides;
use crate::probes::ProbePlan;
use crate::prometheus::PrometheusMerge;
use crate::proxy_config::ProxyConfig;
use crate::resize_policy::ProxyResizePolicy;
use crate::resources::bounds::effective_bounds;
use crate::resources::init::resolve_init;
use crate::resources::pod_level::{Placement, PodLevelChange, grow_pod_level};
use crate::resources::quota::{QuotaInputs, apply_quotas};
use crate::resources::{
    AppAmounts, PodView, ProxyResources, Resolution, Tuning, resolve_proxy_override, resolve_resources,
};
use crate::sidecar::init_container_name;
use crate::templates::Template;
use crate::traffic::TrafficSettings;
use crate::user_volumes::{Surroundings, UserVolumes};
use crate::workload::Workload;
use crate::{
    Denial, Injector, PodRequest, istio_parts, openshift, probes, prometheus, sidecar, templates, traffic, user_volumes,
};
use k8s_openapi::api::core::v1::{Pod, PodSpec};

/// Everything decided about one pod that is injected.
#[derive(Debug, Clone)]
pub(crate) struct Plan<'a> {
    /// Why it is injected.
    pub decision: Decision,
    /// Messages for the user so far.
    pub warnings: Vec<String>,
    /// The pod.
    pub pod: &'a Pod,
    /// The namespace it is created in.
    pub namespace: &'a str,
    /// Whether the pod JSON has a `metadata` object at all.
    pub has_metadata: bool,
    /// Its spec.
    pub spec: &'a PodSpec,
    /// Its annotations.
    pub annotations: Option<&'a BTreeMap<String, String>>,
    /// Bytes of its annotations left out of `annotations` by the reader.
    pub unread_annotation_bytes: usize,
    /// The owning workload.
    pub workload: Cow<'a, Workload>,
    /// Native sidecar layout.
    pub native: bool,
    /// Resources of the init container (the layered resolution).
    pub init_resources: ProxyResources,
    /// Resources of the proxy (a user override's own, when it sets any).
    pub proxy_resources: ProxyResources,
    /// The pod-level values (`spec.resources`) that grow for the injected containers.
    pub pod_level: Vec<PodLevelChange>,
    /// Capture settings.
    pub traffic: TrafficSettings<'a>,
    /// The pod's ProxyConfig.
    pub proxy_config: ProxyConfig,
    /// Whether the app waits for the proxy.
    pub hold: bool,
    /// Volumes and mounts from annotations.
    pub user_volumes: UserVolumes,
    /// The Prometheus merge.
    pub prometheus: PrometheusMerge,
    /// The proxy's readiness probe.
    pub readiness_probe: Option<ReadinessProbe>,
    /// The proxy image.
    pub proxy_image: Cow<'a, str>,
    /// The init container's image.
    pub init_image: Cow<'a, str>,
    /// `sidecar.istio.io/capNetBindService: "true"`.
    pub cap_net_bind_service: bool,
    /// The ConfigMap of `sidecar.istio.io/bootstrapOverride`.
    pub bootstrap_override: Option<&'a str>,
    /// Log levels of the proxy and agent.
    pub log_levels: LogLevels<'a>,
    /// The template the pod is rendered with.
    pub template: Template,
    /// Whether an init container is added.
    pub with_init: bool,
    /// Its name.
    pub init_name: &'static str,
    /// The user's own proxy and init containers.
    pub overrides: Overrides,
    /// The proxy's uid and gid.
    pub proxy_ids: (i64, i64),
    /// App probes pointed at the agent.
    pub probe_plan: ProbePlan<'a>,
    /// The proxy's `resizePolicy`, when the config writes one.
    pub resize_policy: Option<ProxyResizePolicy>,
}

/// The plan, or the answer for a pod that is not injected.
#[derive(Debug)]
pub(crate) enum Planned<'a> {
    /// Nothing to add, and why, with the warnings so far.
    Skip(Decision, Vec<String>),
    /// Inject with this plan.
    Inject(Box<Plan<'a>>),
}

/// Decides on the pod and, when injecting, validates and resolves everything it needs.
pub(crate) fn plan<'a>(injector: &'a Injector, request: &PodRequest<'a>) -> Result<Planned<'a>, Denial> {
    let pod = request.pod;
    let config = injector.config();
    let (decision, spec, mut warnings) = match decide(injector, request) {
        Ok(Decided::Inject(decision, spec, warnings)) => (decision, spec, warnings),
        Ok(Decided::Skip(skip, warnings)) => return Ok(Planned::Skip(skip, warnings)),
        Err(error) => return Err(Denial::new(error, Vec::new())),
    };
    let checked = match check(injector, request, spec, &mut warnings) {
        Ok(checked) => checked,
        Err(error) => return Err(Denial::new(error, warnings)),
    };
    let settings = checked.settings;
    let annotations = pod.metadata.annotations.as_ref();
    let proxy_ids = proxy_ids(injector, request, &checked.overrides, settings.traffic.mode);
    let workload = match request.workload {
        Some(workload) => Cow::Borrowed(workload),
        None => Cow::Owned(Workload::of_pod(pod)),
    };
    let probe_plan = if probes::rewrite_enabled(pod, config.rewrite_app_probes) {
        probes::plan_probe_rewrites(pod, settings.traffic.status_port)
    } else {
        ProbePlan::default()
    };
    let hold = settings
        .proxy_config
        .hold_application
        .unwrap_or(config.hold_application_until_proxy_starts);
    Ok(Planned::Inject(Box::new(Plan {
        decision,
        warnings,
        pod,
        namespace: request.namespace,
        has_metadata: request.has_metadata,
        spec,
        annotations,
        unread_annotation_bytes: request.unread_annotation_bytes,
        workload,
        native: checked.native,
        init_resources: checked.init_resources,
        proxy_resources: checked.proxy_resources,
        pod_level: checked.pod_level,
        template: checked.template,
        with_init: checked.with_init,
        traffic: settings.traffic,
        proxy_config: settings.proxy_config,
        hold,
        user_volumes: settings.user_volumes,
        prometheus: settings.prometheus,
        readiness_probe: settings.readiness_probe,
        proxy_image: settings.proxy_image,
        init_image: settings.init_image,
        cap_net_bind_service: settings.cap_net_bind_service,
        bootstrap_override: settings.bootstrap_override,
        log_levels: settings.log_levels,
        init_name: checked.init_name,
        overrides: checked.overrides,
        proxy_ids,
        probe_plan,
        resize_policy: ProxyResizePolicy::for_pod(&config.resize_policy, pod),
    })))
}

/// What an injected pod's annotations and resources come to once every check has passed.
struct Checked<'a> {
    template: Template,
    with_init: bool,
    native: bool,
    settings: PodSettings<'a>,
    init_name: &'static str,
    overrides: Overrides,
    proxy_resources: ProxyResources,
    init_resources: ProxyResources,
    pod_level: Vec<PodLevelChange>,
}

/// Reads and checks the pod's settings and resolves the proxy's and init container's
/// resources, adding to `warnings`. The first bad value found is the one the error names.
fn check<'a>(
    injector: &'a Injector,
    request: &PodRequest<'a>,
    spec: &'a PodSpec,
    warnings: &mut Vec<String>,
) -> Result<Checked<'a>, InjectError> {
    let pod = request.pod;
    let read_amounts;
    let amounts = match request.app_amounts {
        Some(amounts) => amounts,
        None => {
            read_amounts = AppAmounts::of(pod);
            &read_amounts
        }
    };
    let view = PodView { pod, amounts };
    let config = injector.config();
    let annotations = pod.metadata.annotations.as_ref();
    let template = Template::of_pod(annotations);
    // istiod's gateway template keeps the proxy among the containers whatever
    // `ENABLE_NATIVE_SIDECARS` says (a gateway pod has no other container to keep running).
    let native = native_sidecar(annotations, config.native_sidecars)? && template == Template::Sidecar;
    // Resources first, then the annotations, then the override: the first bad value found is
    // the one the denial names.
    let tuning = injector.tuning(template);
    let resolution = resolve_resources(view, &request.namespace_context, tuning, native)?;
    warnings.extend(resolution.warnings);
    let settings = PodSettings::read(injector, annotations)?;
    if let Some(image) = settings.unused_proxy_image {
        warnings.push(format!(
            "annotation {PROXY_IMAGE} {} is not used: it has no '/', and istiod takes only a registry path (e.g. docker.io/istio/proxyv2:1.28.0) from it; the configured image is injected",
            quoted(image)
        ));
    }
    let init_name = init_container_name(config);
    let overrides = Overrides::find(spec, init_name);
    let mut init_resources = resolve_init(
        pod,
        &resolution.resources,
        tuning,
        request.namespace_context.limit_ranges,
        resolution.guaranteed,
        warnings,
    )?;
    let layered = resolution.resources;
    let guaranteed = resolution.guaranteed;
    let mut proxy_resources = override_resources(tuning, request, view, &overrides, native)?
        .map_or(layered, |own| with_warnings(own, warnings));
    let with_init = template.captures() && settings.traffic.mode != InterceptionMode::None;
    let placement = Placement {
        native,
        with_init,
        init_first: config.cni_enabled,
    };
    apply_quota_foresight(
        tuning,
        request,
        view,
        placement,
        guaranteed,
        (&mut proxy_resources, &mut init_resources),
        warnings,
    )?;
    let resources = (&proxy_resources, &init_resources);
    let pod_level = check_and_grow(
        config, request, view, &settings, &overrides, placement, resources, warnings,
    )?;
    Ok(Checked {
        template,
        with_init,
        native,
        settings,
        init_name,
        overrides,
        proxy_resources,
        init_resources,
        pod_level,
    })
}

/// The decision, with the spec to inject into when injecting, and the warnings so far.
enum Decided<'a> {
    /// Inject into this spec.
    Inject(Decision, &'a PodSpec, Vec<String>),
    /// Leave the pod alone.
    Skip(Decision, Vec<String>),
}

/// The decision, with the spec to inject into; or the skip with its warnings. A pod without a
/// spec or containers is skipped: the API server refuses it.
fn decide<'a>(injector: &Injector, request: &PodRequest<'a>) -> Result<Decided<'a>, InjectError> {
    let decision = should_inject(request.pod, request.namespace, &injector.compiled)?;
    if matches!(decision, Decision::Skip(_)) {
        return Ok(Decided::Skip(decision, Vec::new()));
    }
    let annotations = request.pod.metadata.annotations.as_ref();
    if let Some(name) = templates::unrendered_template(annotations, injector.config().unknown_templates)? {
        let warning = format!("the pod names the injection template {name}, which this injector does not render");
        return Ok(Decided::Skip(
            Decision::Skip(SkipReason::UnknownTemplate),
            vec![warning],
        ));
    }
    let Some(spec) = request.pod.spec.as_ref() else {
        let warning = "the pod has no spec; nothing to inject".to_string();
        return Ok(Decided::Skip(Decision::Skip(SkipReason::NoContainers), vec![warning]));
    };
    if spec.containers.is_empty() && !request.reinjection {
        let warning = "the pod has no spec.containers; nothing to inject".to_string();
        return Ok(Decided::Skip(Decision::Skip(SkipReason::NoContainers), vec![warning]));
    }
    Ok(Decided::Inject(decision, spec, Vec::new()))
}

/// What the pod's own containers and the user's volumes must satisfy once placed, then the
/// pod-level values injection grows; `resources` is (proxy, init).
#[allow(clippy::too_many_arguments)]
fn check_and_grow(
    config: &InjectConfig,
    request: &PodRequest<'_>,
    view: PodView<'_>,
    settings: &PodSettings<'_>,
    overrides: &Overrides,
    placement: Placement,
    resources: (&ProxyResources, &ProxyResources),
    warnings: &mut Vec<String>,
) -> Result<Vec<PodLevelChange>, InjectError> {
    overrides.check_placement(placement.native)?;
    overrides.check_proxy_ports()?;
    if !settings.user_volumes.is_empty()
        && let Some(spec) = request.pod.spec.as_ref()
    {
        let bootstrap = settings.bootstrap_override.is_some();
        settings
            .user_volumes
            .check(&surroundings(config, spec, overrides, bootstrap))?;
    }
    let limit_ranges = request.namespace_context.limit_ranges;
    grow_pod_level(view, resources.0, resources.1, placement, limit_ranges, warnings)
}

/// ResourceQuota foresight ([`crate::resources::quota`]) on the proxy and init container.
fn apply_quota_foresight(
    tuning: &Tuning,
    request: &PodRequest<'_>,
    view: PodView<'_>,
    placement: Placement,
    guaranteed: bool,
    resources: (&mut ProxyResources, &mut ProxyResources),
    warnings: &mut Vec<String>,
) -> Result<(), InjectError> {
    let context = &request.namespace_context;
    if context.resource_quotas.is_empty() {
        return Ok(());
    }
    let bounds = effective_bounds(&tuning.bounds, context.annotations)?;
    let inputs = QuotaInputs {
        pod: view,
        placement,
        tuning,
        bounds: &bounds,
        limit_ranges: context.limit_ranges,
        guaranteed,
    };
    apply_quotas(&inputs, context.resource_quotas, resources.0, resources.1, warnings)
}

/// The pod annotations that shape the sidecar, each parsed once.
struct PodSettings<'a> {
    traffic: TrafficSettings<'a>,
    proxy_config: ProxyConfig,
    user_volumes: UserVolumes,
    prometheus: PrometheusMerge,
    readiness_probe: Option<ReadinessProbe>,
    proxy_image: Cow<'a, str>,
    init_image: Cow<'a, str>,
    cap_net_bind_service: bool,
    /// A `sidecar.istio.io/proxyImage` that is not used: it has no `/`.
    unused_proxy_image: Option<&'a str>,
    bootstrap_override: Option<&'a str>,
    log_levels: LogLevels<'a>,
}

/// The pod's `sidecar.istio.io/proxyImage`: the image to use, or the value that is not used.
/// istiod's template takes the annotation as the image only when it holds a '/' (a registry
/// path); otherwise it builds the configured image, and so do we. Empty means unset.
fn pod_proxy_image(
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<(Option<&str>, Option<&str>), InjectError> {
    match annotations.and_then(|map| map.get(PROXY_IMAGE)) {
        Some(image) if image.trim().is_empty() => Ok((None, None)),
        Some(image) if image.trim() != image => Err(InjectError::InvalidAnnotation {
            annotation: PROXY_IMAGE.into(),
            value: quoted(image),
            reason: "it has leading or trailing whitespace, which the API server refuses in an image".into(),
            accepted: "an image reference without surrounding whitespace, e.g. docker.io/istio/proxyv2:1.28.0",
        }),
        Some(image) if image.contains('/') => Ok((Some(image), None)),
        Some(image) => Ok((None, Some(image))),
        None => Ok((None, None)),
    }
}

impl<'a> PodSettings<'a> {
    fn read(injector: &'a Injector, annotations: Option<&'a BTreeMap<String, String>>) -> Result<Self, InjectError> {
        let config = injector.config();
        let traffic = TrafficSettings::from_annotations(annotations, config)?;
        let proxy_config = ProxyConfig::from_annotations(annotations)?;
        crate::overrides::check_recorded(annotations)?;
        let user_volumes = user_volumes::user_volumes(annotations)?;
        let prometheus = prometheus::plan_merge(annotations, config.enable_prometheus_merge)?;
        let readiness_probe = sidecar::readiness_probe(annotations, config, traffic.status_port)?;
        let (pod_image, unused_proxy_image) = pod_proxy_image(annotations)?;
        let proxy_image = pod_image.unwrap_or(&config.proxy_image);
        let named_by_pod = pod_image.is_some();
        let (proxy_image, init_image) = match annotations.and_then(|map| map.get(PROXY_IMAGE_TYPE)) {
            Some(image_type) if image_type.chars().any(char::is_whitespace) => {
                return Err(InjectError::InvalidAnnotation {
                    annotation: PROXY_IMAGE_TYPE.into(),
                    value: quoted(image_type),
                    reason: "it contains whitespace, which the API server refuses in an image tag".into(),
                    accepted: "an image type: distroless, debug or default",
                });
            }
            Some(image_type) => (
                if named_by_pod {
                    Cow::Borrowed(proxy_image)
                } else {
                    Cow::Owned(crate::image_type::with_image_type(proxy_image, image_type))
                },
                Cow::Owned(crate::image_type::with_image_type(&config.proxy_init_image, image_type)),
            ),
            None if named_by_pod && config.init_image_from_proxy_image_annotation => {
                (Cow::Borrowed(proxy_image), Cow::Borrowed(proxy_image))
            }
            None => (
                Cow::Borrowed(proxy_image),
                Cow::Borrowed(config.proxy_init_image.as_str()),
            ),
        };
        let cap_net_bind_service = annotations
            .and_then(|map| map.get(CAP_NET_BIND_SERVICE))
            .is_some_and(|value| value == "true");
        let log_levels = LogLevels::from_annotations(
            annotations,
            (
                &config.proxy_log_level,
                &config.proxy_component_log_level,
                &config.agent_log_level,
            ),
        )?;
        Ok(PodSettings {
            traffic,
            proxy_config,
            user_volumes,
            prometheus,
            readiness_probe,
            proxy_image,
            init_image,
            cap_net_bind_service,
            unused_proxy_image,
            bootstrap_override: crate::bootstrap_override::read(annotations)?,
            log_levels,
        })
    }
}

/// The proxy's own resolution when the user's `istio-proxy` sets resources, with its warnings.
fn override_resources(
    tuning: &Tuning,
    request: &PodRequest<'_>,
    view: PodView<'_>,
    overrides: &Overrides,
    native: bool,
) -> Result<Option<Resolution>, InjectError> {
    let overridden = overrides
        .proxy_container()
        .is_some_and(|c| c.resources.is_some_and(|r| r.requests.is_some() || r.limits.is_some()));
    if !overridden {
        return Ok(None);
    }
    resolve_proxy_override(view, &request.namespace_context, tuning, native).map(Some)
}

/// The override's resources, its warnings added to `warnings` unless already there.
fn with_warnings(own: Resolution, warnings: &mut Vec<String>) -> ProxyResources {
    for warning in own.warnings {
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    own.resources
}

/// What the user's volumes and mounts land beside: the pod's volumes, ours (with the custom
/// bootstrap's when `bootstrap`) and the proxy's own mounts.
fn surroundings<'a>(
    config: &InjectConfig,
    spec: &'a PodSpec,
    overrides: &Overrides,
    bootstrap: bool,
) -> Surroundings<'a> {
    let mtls = config.mount_mtls_certs;
    let mut our_mounts = istio_parts::PROXY_MOUNTS.to_vec();
    if mtls {
        our_mounts.push((istio_parts::MTLS_CERTS_VOLUME, istio_parts::MTLS_CERTS_MOUNT_PATH));
    }
    if bootstrap {
        our_mounts.push((crate::bootstrap_override::VOLUME, crate::bootstrap_override::MOUNT_PATH));
    }
    let privileged = overrides
        .proxy_container()
        .and_then(|c| c.security_context)
        .and_then(|s| s.privileged)
        .unwrap_or(false);
    Surroundings {
        pod_volumes: spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect(),
        our_volumes: istio_parts::VOLUME_NAMES
            .into_iter()
            .chain(mtls.then_some(istio_parts::MTLS_CERTS_VOLUME))
            .chain(bootstrap.then_some(crate::bootstrap_override::VOLUME))
            .collect(),
        our_mounts,
        privileged,
    }
}

/// The proxy's uid and gid: a user override's, else OpenShift's range, else 1337. A TPROXY
/// proxy runs as root, outside any range, so OpenShift's UID is not used for it.
fn proxy_ids(
    injector: &Injector,
    request: &PodRequest<'_>,
    overrides: &Overrides,
    mode: InterceptionMode,
) -> (i64, i64) {
    let platform_ids = match injector.config().platform {
        Platform::Openshift if mode != InterceptionMode::Tproxy => {
            openshift::proxy_ids(request.namespace_context.annotations)
        }
        _ => None,
    }
    .unwrap_or((traffic::PROXY_UID, traffic::PROXY_UID));
    let user_security = overrides.proxy_container().and_then(|c| c.security_context);
    let user_security = user_security.as_ref();
    (
        user_security.and_then(|s| s.run_as_user).unwrap_or(platform_ids.0),
        user_security.and_then(|s| s.run_as_group).unwrap_or(platform_ids.1),
    )
}

/// `sidecar.istio.io/nativeSidecar` (`true` or `false`, as istiod compares it; empty keeps the
/// config's default), else the config; any other value is refused.
fn native_sidecar(annotations: Option<&BTreeMap<String, String>>, default: bool) -> Result<bool, InjectError> {
    let value = annotations.and_then(|map| map.get(NATIVE_SIDECAR));
    let chosen = match value {
        Some(value) => read_switch("annotation", NATIVE_SIDECAR, value)?,
        None => None,
    };
    Ok(chosen.unwrap_or(default))
}
