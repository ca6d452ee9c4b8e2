//! Scenarios 35 to 37: the rest of the live acceptance against a real istiod. Our side runs
//! with `istio.source: cluster` and reads the ConfigMaps the istiod chart installed for the
//! same revision, in `istio-system` ([`cluster_config`]), so what the chart sets reaches both.
//!
//! - 35 [`chart_values_change`]: changing the chart's values (the proxy tag,
//!   `global.proxy.resources`, the log levels) changes the next pod the same way in both, with
//!   neither restarted.
//! - 36 [`canary_with_tag`]: two istiod revisions and a revision tag moved from one to the
//!   other, as `istioctl tag set` does; the tag's namespace follows the move. Then one injector
//!   of ours serving both revisions, its tag moved by a config reload, follows the same way and
//!   injects what each istiod injected.
//! - 37 [`takeover_with_istiod_registered`]: istiod's webhook stays registered while
//!   deploy/overlays/takeover moves namespaces to us (the revision tag `sidecar-injector`),
//!   with our registration sorting before istiod's, then after it; each pod gets exactly one
//!   proxy, from the injector its namespace is moved to. The order deploy/ gives by default
//!   (ours after istiod's, both on istiod's revision) is checked too.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use sidecar_injector::config::UserConfig;
use sidecar_injector::engine::annotations::PROVENANCE;

use crate::check::{Context, Outcome, ensure, eventually, poll};
use crate::deploy::{self, REVISION_LABEL};
use crate::harness::Harness;
use crate::injector::RunningInjector;
use crate::istio_install::{self, ISTIO_NAMESPACE, IstioAssets};
use crate::kustomize::Kustomize;
use crate::live_istiod::LiveIstiod;
use crate::pods::{PROXY, proxy_count, test_pod};
use crate::scenarios::live_istiod::{
    Fate, OurSide, dry_run, side_by_side_namespaces, start_istiod, unexplained, with_ca_bundle,
};

/// Polls for a ConfigMap change to reach istiod's (or our) informer: 30 s at most.
const FOLLOW_TRIES: u32 = 600;
/// Times the installed Istio's ConfigMaps were taken into use by our injector.
const RELOADS: &str = "sidecar_injector_istio_config_reloads_total";
/// The chart values scenario 35 changes, as istioctl `--set` paths, and what each must do to
/// the next pod's `istio-proxy`.
const CHANGED_VALUES: [&str; 5] = [
    "values.global.tag=1.28.1-e2e",
    "values.global.proxy.resources.requests.cpu=250m",
    "values.global.proxy.resources.requests.memory=200Mi",
    "values.global.proxy.logLevel=debug",
    "values.global.logging.level=default:debug",
];

/// The tag [`CHANGED_VALUES`] sets, as the image ends with it.
const NEW_TAG: &str = ":1.28.1-e2e";
/// Scenario 36's revision tag, and the proxy tag its second revision installs.
const CANARY_TAG: &str = "prod";
const CANARY_B_IMAGE_TAG: &str = "1.28.1-canary-b";
/// The revision tag deploy/overlays/takeover registers us for.
const TAKEOVER_TAG: &str = "sidecar-injector";

/// Our config for `revision` under `istio.source: cluster`: deploy/istio-identical.yaml (which
/// sets none of the image, log level or resources keys, so the installed values reach us),
/// `istio.source: cluster` in `istio-system` with `istio_lines` under `istio:`, and
/// `goMaxProcsFromLimit` (Istio after 1.28, the module compared, writes GOMAXPROCS).
fn cluster_config_text(revision: &str, istio_lines: &str) -> Result<String, String> {
    let path = deploy::deploy_dir().join("istio-identical.yaml");
    let identical = std::fs::read_to_string(&path).context(format!("reading {}", path.display()))?;
    Ok(format!(
        "{identical}\nistio:\n  source: cluster\n  namespace: {ISTIO_NAMESPACE}\n{istio_lines}\
         revision: {revision}\ngoMaxProcsFromLimit: true\n"
    ))
}

/// [`cluster_config_text`], parsed.
fn cluster_config(revision: &str) -> Result<UserConfig, String> {
    let text = cluster_config_text(revision, "")?;
    let user = UserConfig::from_yaml(&text, "deploy/istio-identical.yaml, istio.source: cluster")
        .map_err(|e| e.to_string())?;
    ensure!(
        user.config.revision == revision,
        "our config serves {:?}, not {revision}",
        user.config.revision
    );
    Ok(user)
}

/// Waits until `injector` has taken the installed ConfigMaps into use `times` times.
async fn until_reloaded(injector: &RunningInjector, times: u64) -> Result<(), String> {
    eventually("our injector reads the installed Istio", || async {
        match injector.counter(RELOADS).await? {
            n if n >= times => Ok(()),
            n => Err(format!("{RELOADS} is {n}")),
        }
    })
    .await
}

/// 35: the chart's values changed under a running istiod and our injector.
pub async fn chart_values_change(harness: &Harness) -> Outcome {
    const REVISION: &str = "values";
    let assets = IstioAssets::find()?;
    let istiod = start_istiod(harness, &assets, REVISION, &[]).await?;
    let user = cluster_config(REVISION)?;
    let injector = RunningInjector::start_with_user_config(user, harness.cluster.client().clone()).await?;
    let ready = async {
        injector.wait_synced().await?;
        until_reloaded(&injector, 1).await
    }
    .await;
    let ours = match ready {
        Ok(()) => OurSide::register(harness, injector, "values-ours").await?,
        Err(error) => {
            injector.stop().await?;
            return Err(error);
        }
    };
    let result = values_follow(harness, &assets, &istiod, &ours, REVISION).await;
    let stopped = ours.stop(harness).await;
    let unregistered = harness
        .cluster
        .unregister_webhook(&format!("istio-sidecar-injector-{REVISION}"))
        .await;
    let note = result.map_err(|e| format!("{e}\n{}", istiod.log_tail(30)))?;
    stopped?;
    unregistered?;
    Ok(note)
}

async fn values_follow(
    harness: &Harness,
    assets: &IstioAssets,
    istiod: &LiveIstiod,
    ours: &OurSide,
    revision: &str,
) -> Outcome {
    let (istiod_namespace, our_namespace) = ("e2e-values-istiod", "e2e-values-ours");
    side_by_side_namespaces(harness, (istiod_namespace, revision), (our_namespace, ours.label)).await?;
    let pod = test_pod("values", &[], &[]);
    let client = harness.cluster.client();
    let before = both(client, istiod_namespace, our_namespace, &pod).await?;

    let changed: Vec<String> = CHANGED_VALUES.iter().map(|set| set.to_string()).collect();
    apply_chart(harness, assets, istiod, revision, &changed).await?;
    let istiod_after = until_image(client, istiod_namespace, &pod, NEW_TAG).await?;
    let ours_after = until_image(client, our_namespace, &pod, NEW_TAG).await?;
    for (side, stored) in [("istiod", &istiod_after), ("ours", &ours_after)] {
        let proxy = proxy_of(stored).ok_or(format!("{side}: no {PROXY}"))?;
        let requests = &proxy["resources"]["requests"];
        ensure!(
            requests["cpu"] == "250m" && requests["memory"] == "200Mi",
            "{side}: requests {requests} after global.proxy.resources changed"
        );
        let args = proxy["args"].to_string();
        ensure!(
            args.contains("--proxyLogLevel=debug") && args.contains("default:debug"),
            "{side}: args {args} after the log levels changed"
        );
    }
    let different = unexplained(&ours_after, &istiod_after);
    ensure!(
        different.is_empty(),
        "after the change, ours and istiod's differ: {}",
        different.join("; ")
    );
    Ok(format!(
        "before: {before}; after {}: both pods changed the same way ({}), neither restarted",
        CHANGED_VALUES.join(", "),
        proxy_image(&ours_after)
    ))
}

/// 36: a canary upgrade: revisions `canary-a` and `canary-b` (its own proxy tag), and the tag
/// `prod` moved from a to b. Pods of a namespace labelled `istio.io/rev=prod` are injected by
/// a, then by b; then the same by our injector, compared with what each istiod injected.
pub async fn canary_with_tag(harness: &Harness) -> Outcome {
    let assets = IstioAssets::find()?;
    let tag = format!("values.revisionTags[0]={CANARY_TAG}");
    let b_image = format!("values.global.tag={CANARY_B_IMAGE_TAG}");
    let a = start_istiod(harness, &assets, "canary-a", std::slice::from_ref(&tag)).await?;
    let b = start_istiod(harness, &assets, "canary-b", std::slice::from_ref(&b_image)).await?;
    let namespace = "e2e-canary-prod";
    harness
        .cluster
        .create_namespace(namespace, &[(REVISION_LABEL, CANARY_TAG)])
        .await?;
    let pod = test_pod("canary", &[], &[]);
    let client = harness.cluster.client();
    let istiod_tag = format!("istio-revision-tag-{CANARY_TAG}");
    let result = async {
        let by_a = until_served_by(client, namespace, &pod, "canary-a").await?;
        // `istioctl tag set prod --revision canary-b`: the tag's webhook now calls b.
        apply_chart(harness, &assets, &b, "canary-b", &[tag.clone(), b_image.clone()]).await?;
        let by_b = until_served_by(client, namespace, &pod, "canary-b").await?;
        ensure!(
            proxy_image(&by_a) != proxy_image(&by_b) && proxy_image(&by_b).ends_with(CANARY_B_IMAGE_TAG),
            "istiod: images {} then {}, expected canary-b's tag {CANARY_B_IMAGE_TAG} after the move",
            proxy_image(&by_a),
            proxy_image(&by_b)
        );
        // The namespace goes to us: istiod's tag webhook out, ours in.
        harness.cluster.unregister_webhook(&istiod_tag).await?;
        let ours = canary_ours(harness, namespace, &pod, (&by_a, &by_b)).await?;
        Ok::<String, String>(format!(
            "istiod: {namespace} served by canary-a ({}), tag moved, then canary-b ({}); ours: {ours}",
            proxy_image(&by_a),
            proxy_image(&by_b)
        ))
    }
    .await;
    for name in ["istio-sidecar-injector-canary-a", "istio-sidecar-injector-canary-b"] {
        harness.cluster.unregister_webhook(name).await?;
    }
    if result.is_err() {
        let _ = harness.cluster.unregister_webhook(&istiod_tag).await;
    }
    result.map_err(|e| format!("{e}\n{}\n{}", a.log_tail(20), b.log_tail(20)))
}

/// Our half of the canary: one injector serving `canary-a` (its `revision`) and `canary-b`
/// (`istio.revisions`), each from its own installed ConfigMaps, registered for the tag as the
/// `tag` command prints it. The tag means canary-a in `istio.tags`, then canary-b after the
/// config file is rewritten (the injector re-reads it, no restart); each time the namespace's
/// next pod must be what that revision's istiod injected (`istiod`: a's pod, b's pod).
async fn canary_ours(harness: &Harness, namespace: &str, pod: &Pod, istiod: (&Value, &Value)) -> Outcome {
    let path = harness.workdir().join("canary-ours.yaml");
    let write = |target: &str| {
        let lines = format!("  revisions: [canary-b]\n  tags: {{{CANARY_TAG}: {target}}}\n");
        std::fs::write(&path, cluster_config_text("canary-a", &lines)?).context(format!("writing {}", path.display()))
    };
    write("canary-a")?;
    let client = harness.cluster.client();
    let injector = RunningInjector::start_with_config_file(&path, client.clone()).await?;
    let tagged = sidecar_injector::tag::tag_webhook(CANARY_TAG).map_err(|e| e.to_string());
    let registration = tagged.map(|tagged| deploy::pointed_at(tagged, &injector.url(), injector.ca_pem()));
    let name = registration
        .as_ref()
        .ok()
        .and_then(|r| r.metadata.name.clone())
        .unwrap_or_default();
    let result = async {
        until_reloaded(&injector, 2).await?;
        harness.cluster.register_webhook(&registration?).await?;
        let ours_a = until_served_by(client, namespace, pod, "canary-a").await?;
        same_as(&ours_a, istiod.0, "canary-a")?;
        write("canary-b")?;
        let ours_b = until_served_by(client, namespace, pod, "canary-b").await?;
        same_as(&ours_b, istiod.1, "canary-b")?;
        Ok::<String, String>(format!(
            "one injector, tag {CANARY_TAG} → canary-a then (config reloaded) → canary-b: {namespace} \
             served by a ({}), then b ({}), each identical to that istiod's pod",
            proxy_image(&ours_a),
            proxy_image(&ours_b)
        ))
    }
    .await;
    let unregistered = harness.cluster.unregister_webhook(&name).await;
    let stopped = injector.stop().await;
    let note = result?;
    unregistered?;
    stopped?;
    Ok(note)
}

/// Our normalised pod for `revision` against istiod's: no unexplained difference.
fn same_as(ours: &Value, istiod: &Value, revision: &str) -> Result<(), String> {
    let different = unexplained(ours, istiod);
    ensure!(
        different.is_empty(),
        "{revision}: ours and istiod's differ: {}",
        different.join("; ")
    );
    Ok(())
}

/// 37: istiod's webhook registered for its revision `takeover`, and ours as
/// deploy/overlays/takeover registers it (the tag `sidecar-injector`), named to sort before
/// istiod's, then after it (the API server calls webhooks in name order). A namespace labelled
/// with the tag gets our proxy, one; a namespace on istiod's revision gets istiod's, one; the
/// tagged namespace relabelled back to istiod's revision gets istiod's again. Then deploy/'s
/// own registration for istiod's revision (sorting after istiod's, as deploy/ names it): istiod
/// injects and we add nothing; and sorting before istiod's: refused ([`default_order`]).
pub async fn takeover_with_istiod_registered(harness: &Harness) -> Outcome {
    const REVISION: &str = "takeover";
    let assets = IstioAssets::find()?;
    let overlay = takeover_overlay()?;
    let istiod = start_istiod(harness, &assets, REVISION, &[]).await?;
    let (moved, kept) = ("e2e-takeover-moved", "e2e-takeover-istiod");
    harness
        .cluster
        .create_namespace(moved, &[(REVISION_LABEL, TAKEOVER_TAG)])
        .await?;
    harness
        .cluster
        .create_namespace(kept, &[(REVISION_LABEL, REVISION)])
        .await?;
    let injector = RunningInjector::start(deploy::injector_config()?).await?;
    let result = async {
        let mut notes = Vec::new();
        for name in ["a-sidecar-injector-takeover", "zz-sidecar-injector-takeover"] {
            let mut configuration = deploy::pointed_at(overlay.clone(), &injector.url(), injector.ca_pem());
            configuration.metadata.name = Some(name.to_string());
            harness.cluster.register_webhook(&configuration).await?;
            let checked = takeover_round(harness, &injector, (moved, kept), name, REVISION).await;
            harness.cluster.unregister_webhook(name).await?;
            notes.push(checked?);
        }
        notes.push(default_order(harness, &injector, kept, REVISION).await?);
        Ok::<String, String>(notes.join("; "))
    }
    .await;
    let stopped = injector.stop().await;
    harness
        .cluster
        .unregister_webhook(&format!("istio-sidecar-injector-{REVISION}"))
        .await?;
    let note = result.map_err(|e| format!("{e}\n{}", istiod.log_tail(30)))?;
    stopped?;
    Ok(note)
}

/// deploy/overlays/takeover built with kustomize: its MutatingWebhookConfiguration, checked to
/// select what the `tag` command's registration for [`TAKEOVER_TAG`] selects.
fn takeover_overlay() -> Result<MutatingWebhookConfiguration, String> {
    let dir = deploy::deploy_dir().join("overlays").join("takeover");
    let objects = Kustomize::find()?.build(&dir)?;
    let object = objects
        .into_iter()
        .find(|object| object["kind"] == "MutatingWebhookConfiguration")
        .ok_or("deploy/overlays/takeover builds no MutatingWebhookConfiguration")?;
    let overlay: MutatingWebhookConfiguration =
        serde_json::from_value(object).context("deploy/overlays/takeover's registration")?;
    let tagged = sidecar_injector::tag::tag_webhook(TAKEOVER_TAG).map_err(|e| e.to_string())?;
    let selectors = |configuration: &MutatingWebhookConfiguration| -> Vec<String> {
        configuration
            .webhooks
            .iter()
            .flatten()
            .map(|w| format!("{:?} {:?}", w.namespace_selector, w.object_selector))
            .collect()
    };
    ensure!(
        selectors(&overlay) == selectors(&tagged),
        "deploy/overlays/takeover selects {:?}, `tag {TAKEOVER_TAG}` selects {:?}",
        selectors(&overlay),
        selectors(&tagged)
    );
    Ok(overlay)
}

/// One registration order: pods in the moved namespace are ours (one proxy, our provenance
/// annotation, and our injector called), pods in istiod's namespace are istiod's (one proxy,
/// none of ours); then the moved namespace is put back on istiod's revision and its next pod
/// is istiod's, then moved to us again.
async fn takeover_round(
    harness: &Harness,
    injector: &RunningInjector,
    (moved, kept): (&str, &str),
    name: &str,
    revision: &str,
) -> Outcome {
    until_from(harness, moved, true, name).await?;
    let requests = || injector.counter(crate::injector::REQUESTS);
    let start = requests().await?;
    for index in 0..3 {
        let pod = create(harness, moved, &format!("{name}-{index}")).await?;
        one_proxy_from(&pod, true, &format!("{name}: {moved}"))?;
    }
    let called = requests().await? - start;
    ensure!(called >= 3, "{name}: our injector was called {called} times for 3 pods");
    let pod = create(harness, kept, &format!("{name}-istiod")).await?;
    one_proxy_from(&pod, false, &format!("{name}: {kept}"))?;
    harness.cluster.label_namespace(moved, REVISION_LABEL, revision).await?;
    let back = until_from(
        harness,
        moved,
        false,
        &format!("{name}, {moved} put back on {revision}"),
    )
    .await;
    harness
        .cluster
        .label_namespace(moved, REVISION_LABEL, TAKEOVER_TAG)
        .await?;
    back?;
    until_from(harness, moved, true, &format!("{name}, {moved} moved to us again")).await?;
    Ok(format!(
        "{name}: 3 pods in the moved namespace ours, one proxy each ({called} calls), istiod's \
         namespace istiod's, put back → istiod's, moved again → ours"
    ))
}

/// deploy/'s registration for istiod's revision, under a name sorting after istiod's as
/// deploy/'s own does: istiod injects first and we see its status annotation and add nothing.
/// Then under a name sorting before istiod's: istiod merges its sidecar over ours and the API
/// server refuses the pod (README, "Taking over from istiod"), the order deploy/ must not use.
async fn default_order(harness: &Harness, injector: &RunningInjector, namespace: &str, revision: &str) -> Outcome {
    let register = |name: &str| -> Result<MutatingWebhookConfiguration, String> {
        Ok(deploy::for_revision(
            deploy::pointed_at(deploy::webhook_configuration()?, &injector.url(), injector.ca_pem()),
            name,
            revision,
        ))
    };
    let name = "sidecar-injector-e2e-takeover";
    harness.cluster.register_webhook(&register(name)?).await?;
    let skipped = injector.counter(crate::injector::SKIPPED_ALREADY_INJECTED).await?;
    let pod = create(harness, namespace, "default-order").await;
    let after = injector.counter(crate::injector::SKIPPED_ALREADY_INJECTED).await;
    harness.cluster.unregister_webhook(name).await?;
    one_proxy_from(&pod?, false, "deploy/'s order, both on istiod's revision")?;
    ensure!(
        after? > skipped,
        "deploy/'s order: our injector did not see istiod's pod as already injected"
    );
    let first = "a-sidecar-injector-e2e-takeover";
    harness.cluster.register_webhook(&register(first)?).await?;
    let refused = create(harness, namespace, "ours-first").await;
    harness.cluster.unregister_webhook(first).await?;
    let message = match refused {
        Ok(pod) => {
            return Err(format!(
                "ours sorting before istiod's on its revision: admitted with {} proxies; README says istiod's \
             merge over our sidecar is refused, update it",
                proxy_count(&pod)
            ));
        }
        Err(message) => message,
    };
    ensure!(
        message.contains("valueFrom") && message.contains("may not be specified when `value` is not empty"),
        "ours sorting before istiod's: refused, but not for the merged env var the README names: {message}"
    );
    Ok(
        "deploy/'s order (istiod's name first, ours on its revision): istiod's proxy, ours skipped; \
        ours named first on istiod's revision: refused, istiod's sidecar merged over ours (an env var \
        with value and valueFrom), as the README warns"
            .into(),
    )
}

/// Dry-runs pods in `namespace` until one has one proxy from us (`ours`) or from istiod: the
/// API server reads namespace labels through an informer, so a relabel takes a moment.
async fn until_from(harness: &Harness, namespace: &str, ours: bool, what: &str) -> Result<(), String> {
    poll(what, FOLLOW_TRIES, || async {
        let pod = harness
            .cluster
            .dry_run_pod(namespace, &test_pod("settled", &[], &[]))
            .await
            .context(format!("dry-running a pod in {namespace}"))?;
        one_proxy_from(&pod, ours, what)
    })
    .await
}

async fn create(harness: &Harness, namespace: &str, name: &str) -> Result<Pod, String> {
    harness
        .cluster
        .create_pod(namespace, &test_pod(name, &[], &[]))
        .await
        .context(format!(
            "creating pod {name} in {namespace} with istiod and ours registered"
        ))
}

/// `pod` has one proxy, injected by us (`ours`: our provenance annotation) or by istiod.
fn one_proxy_from(pod: &Pod, ours: bool, what: &str) -> Result<(), String> {
    let count = proxy_count(pod);
    ensure!(count == 1, "{what}: {count} proxies, expected one");
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    ensure!(
        annotations.contains_key(PROVENANCE) == ours,
        "{what}: expected the proxy from {}, annotations {:?}",
        if ours { "us" } else { "istiod" },
        annotations.keys().collect::<Vec<_>>()
    );
    Ok(())
}

// === helpers ===

/// Dry-runs `pod` until its proxy image ends with `suffix`; the normalised pod.
async fn until_image(client: &kube::Client, namespace: &str, pod: &Pod, suffix: &str) -> Result<Value, String> {
    poll(
        &format!("the next pod in {namespace} has the new tag"),
        FOLLOW_TRIES,
        || async {
            match dry_run(client, namespace, pod).await {
                Fate::Admitted(stored) if proxy_image(&stored).ends_with(suffix) => Ok(stored),
                Fate::Admitted(stored) => Err(format!("image {}", proxy_image(&stored))),
                Fate::Refused(message) => Err(message),
            }
        },
    )
    .await
}

/// Dry-runs `pod` until the status annotation names `revision`; the normalised pod.
async fn until_served_by(client: &kube::Client, namespace: &str, pod: &Pod, revision: &str) -> Result<Value, String> {
    poll(
        &format!("{namespace} is served by {revision}"),
        FOLLOW_TRIES,
        || async {
            match dry_run(client, namespace, pod).await {
                Fate::Admitted(stored) if injected_by(&stored) == revision => Ok(stored),
                Fate::Admitted(stored) => Err(format!("injected by {:?}", injected_by(&stored))),
                Fate::Refused(message) => Err(message),
            }
        },
    )
    .await
}

/// Renders the charts for `revision` with `sets` and applies the ConfigMaps and webhooks
/// again (the injection URL and CA of the running istiod kept): what `helm upgrade` does.
async fn apply_chart(
    harness: &Harness,
    assets: &IstioAssets,
    istiod: &LiveIstiod,
    revision: &str,
    sets: &[String],
) -> Result<(), String> {
    let mut all = vec![
        format!("revision={revision}"),
        format!("values.istiodRemote.injectionURL={}", istiod.ports().injection_url()),
    ];
    all.extend_from_slice(sets);
    let out = crate::live_istiod::istiod_dir(harness.workdir(), &format!("{revision}-upgrade"));
    let rendered = assets.render(&out, &all)?;
    istio_install::apply(harness.cluster.client(), &with_ca_bundle(&rendered, istiod.ca_pem())).await
}

/// Dry-runs `pod` on both sides; a one-line note, or the unexplained differences.
async fn both(client: &kube::Client, istiod_namespace: &str, our_namespace: &str, pod: &Pod) -> Outcome {
    let (istiod, ours) = (
        dry_run(client, istiod_namespace, pod).await,
        dry_run(client, our_namespace, pod).await,
    );
    match (ours, istiod) {
        (Fate::Admitted(ours), Fate::Admitted(istiod)) => {
            let different = unexplained(&ours, &istiod);
            ensure!(
                different.is_empty(),
                "ours and istiod's differ: {}",
                different.join("; ")
            );
            Ok(format!("identical ({})", proxy_image(&ours)))
        }
        (ours, istiod) => Err(format!("not both admitted: ours {ours:?}, istiod {istiod:?}")),
    }
}

/// The normalised pod's `istio-proxy`, in containers or (native) initContainers.
fn proxy_of(pod: &Value) -> Option<&Value> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod["spec"][list].as_array())
        .flatten()
        .find(|container| container["name"] == PROXY)
}

fn proxy_image(pod: &Value) -> String {
    proxy_of(pod)
        .and_then(|proxy| proxy["image"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The revision named in the normalised pod's `sidecar.istio.io/status` annotation.
fn injected_by(pod: &Value) -> String {
    pod["metadata"]["annotations"]["sidecar.istio.io/status"]["revision"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
