//! Scenarios 35 to 37: the rest of the live acceptance against a real istiod, written against
//! `istio.source: cluster` (issue 15, part A), under which our injector reads the installed
//! Istio's ConfigMaps itself.
//!
//! - 35 [`chart_values_change`]: changing the chart's values (the proxy tag,
//!   `global.proxy.resources`, the log levels) changes the next pod the same way in both.
//! - 36 [`canary_with_tag`]: two istiod revisions and a revision tag moved from one to the
//!   other, as `istioctl tag set` does; the tag's namespace follows the move.
//! - 37 [`takeover_with_istiod_registered`]: istiod's webhook and ours both select the same
//!   namespace, in either order; each pod gets exactly one proxy.
//!
//! 35 and 36 take the config our injector runs with (`ours`), so that the part-A keys
//! (`istio.source: cluster`, its revisions and tags) can be set where they are registered. 37
//! runs deploy/config.yaml with deploy/'s registration for istiod's revision; once part A's
//! takeover overlay lands, that overlay is what it should register.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use sidecar_injector::config::InjectConfig;

use crate::check::{Context, Outcome, ensure, poll};
use crate::deploy::{self, REVISION_LABEL};
use crate::harness::Harness;
use crate::injector::RunningInjector;
use crate::istio_install::{self, IstioAssets};
use crate::live_istiod::LiveIstiod;
use crate::pods::{PROXY, proxy_count, test_pod};
use crate::scenarios::live_istiod::{
    Fate, OurSide, dry_run, side_by_side_namespaces, start_istiod, unexplained, with_ca_bundle,
};

/// Polls for a ConfigMap change to reach istiod's (or our) informer: 30 s at most.
const FOLLOW_TRIES: u32 = 600;
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

/// 35: the chart's values changed under a running istiod and our injector.
pub async fn chart_values_change(harness: &Harness, ours: InjectConfig) -> Outcome {
    const REVISION: &str = "values";
    let assets = IstioAssets::find()?;
    let istiod = start_istiod(harness, &assets, REVISION, &[]).await?;
    let injector = RunningInjector::start_with_cluster(ours, harness.cluster.client().clone()).await?;
    injector.wait_synced().await?;
    let ours = OurSide::register(harness, injector, "values-ours").await?;
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
        "before: {before}; after {}: both pods changed the same way ({})",
        CHANGED_VALUES.join(", "),
        proxy_image(&ours_after)
    ))
}

/// 36: a canary upgrade: revisions `canary-a` and `canary-b`, and the tag `prod` moved from
/// a to b. Pods of a namespace labelled `istio.io/rev=prod` are injected by a, then by b.
pub async fn canary_with_tag(harness: &Harness, ours: InjectConfig) -> Outcome {
    const TAG: &str = "prod";
    let assets = IstioAssets::find()?;
    let tag = format!("values.revisionTags[0]={TAG}");
    let a = start_istiod(harness, &assets, "canary-a", std::slice::from_ref(&tag)).await?;
    let b = start_istiod(harness, &assets, "canary-b", &[]).await?;
    let namespace = "e2e-canary-prod";
    harness
        .cluster
        .create_namespace(namespace, &[(REVISION_LABEL, TAG)])
        .await?;
    let pod = test_pod("canary", &[], &[]);
    let client = harness.cluster.client();
    let result = async {
        until_served_by(client, namespace, &pod, "canary-a").await?;
        // `istioctl tag set prod --revision canary-b`: the tag's webhook now calls b.
        apply_chart(harness, &assets, &b, "canary-b", std::slice::from_ref(&tag)).await?;
        until_served_by(client, namespace, &pod, "canary-b").await?;
        canary_ours(harness, ours).await
    }
    .await;
    for name in [
        "istio-sidecar-injector-canary-a",
        "istio-sidecar-injector-canary-b",
        &format!("istio-revision-tag-{TAG}"),
    ] {
        harness.cluster.unregister_webhook(name).await?;
    }
    result.map_err(|e| format!("{e}\n{}\n{}", a.log_tail(20), b.log_tail(20)))
}

/// Our half of the canary: the same two revisions and the tag, served by one injector
/// (part A's revisions and `tag` command). Until those land there is nothing to drive.
async fn canary_ours(_harness: &Harness, _ours: InjectConfig) -> Outcome {
    Err("our side of the canary needs part A's revisions, tags and `tag` command; wire it here".into())
}

/// 37: istiod's webhook and ours registered for the same namespace; whichever runs first, the
/// other adds nothing: each pod has exactly one `istio-proxy`. Run with our registration named
/// to sort before istiod's, then after it (the API server calls webhooks in name order).
pub async fn takeover_with_istiod_registered(harness: &Harness) -> Outcome {
    let ours = deploy::injector_config()?;
    const REVISION: &str = "takeover";
    let assets = IstioAssets::find()?;
    let istiod = start_istiod(harness, &assets, REVISION, &[]).await?;
    let namespace = "e2e-takeover";
    harness
        .cluster
        .create_namespace(namespace, &[(REVISION_LABEL, REVISION)])
        .await?;
    let injector = RunningInjector::start(ours).await?;
    let mut notes = Vec::new();
    let mut result = Ok(());
    for name in ["a-sidecar-injector-e2e-takeover", "zz-sidecar-injector-e2e-takeover"] {
        let configuration = deploy::for_revision(
            deploy::pointed_at(deploy::webhook_configuration()?, &injector.url(), injector.ca_pem()),
            name,
            REVISION,
        );
        harness.cluster.register_webhook(&configuration).await?;
        let checked = one_proxy_each(harness, &injector, namespace, name).await;
        harness.cluster.unregister_webhook(name).await?;
        match checked {
            Ok(note) => notes.push(note),
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    let stopped = injector.stop().await;
    harness
        .cluster
        .unregister_webhook(&format!("istio-sidecar-injector-{REVISION}"))
        .await?;
    result.map_err(|e| format!("{e}\n{}", istiod.log_tail(30)))?;
    stopped?;
    Ok(notes.join("; "))
}

/// Pods created in `namespace` with both webhooks registered: until our injector is called
/// (its request counter moves), then a few more; each must have one proxy.
async fn one_proxy_each(harness: &Harness, injector: &RunningInjector, namespace: &str, name: &str) -> Outcome {
    let requests = || injector.counter(crate::injector::REQUESTS);
    let start = requests().await?;
    let mut proxies = Vec::new();
    for index in 0..5 {
        let pod = test_pod(&format!("{name}-{index}"), &[], &[]);
        let stored = harness
            .cluster
            .create_pod(namespace, &pod)
            .await
            .context(format!("creating a pod with istiod and {name} registered"))?;
        proxies.push(proxy_count(&stored));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let called = requests().await? - start;
    ensure!(
        proxies.iter().all(|&n| n == 1),
        "{name}: proxies per pod {proxies:?}, expected one each"
    );
    ensure!(called > 0, "{name}: our injector was never called");
    Ok(format!(
        "{name}: 5 pods with one proxy each, we were called {called} times"
    ))
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

/// Dry-runs `pod` until the status annotation names `revision`.
async fn until_served_by(client: &kube::Client, namespace: &str, pod: &Pod, revision: &str) -> Result<(), String> {
    poll(
        &format!("{namespace} is served by {revision}"),
        FOLLOW_TRIES,
        || async {
            match dry_run(client, namespace, pod).await {
                Fate::Admitted(stored) if injected_by(&stored) == revision => Ok(()),
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
