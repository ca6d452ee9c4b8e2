//! Scenario 32: one injector serves two revisions and a tag, each revision with the settings
//! of its own installed ConfigMaps.
//!
//! The Istio namespace holds the chart's ConfigMaps for revisions `e2e-stable` (values
//! [`FIRST`]) and `e2e-canary` (values [`SECOND`]). The injector runs deploy/config.yaml with
//! `revision: e2e-stable`, `istio.revisions: [e2e-canary]` and the tag `e2e-prod` →
//! `e2e-stable`, registered once per revision and tag (deploy/'s `istio.io/rev` webhooks,
//! retargeted; the tag's as the `tag` command prints it). Pods in namespaces labelled with each revision get that
//! revision's image, CPU request and log level, and the revision in `sidecar.istio.io/status`; the tagged
//! namespace gets the stable revision's; a pod labelled `istio.io/rev=e2e-canary` in a
//! namespace without the label gets the canary's.

use k8s_openapi::api::core::v1::Pod;
use sidecar_injector::config::UserConfig;

use super::installed_istio::{FIRST, SECOND, Settings, create_chart_configmaps, describe, matches};
use crate::check::{Context, Outcome, ensure, eventually};
use crate::deploy::{self, REVISION_LABEL};
use crate::harness::Harness;
use crate::injector::RunningInjector;
use crate::pods::{PROXY, container, test_pod};

const ISTIO_NAMESPACE: &str = "e2e-revisions-istio";
const STABLE: &str = "e2e-stable";
const CANARY: &str = "e2e-canary";
const TAG: &str = "e2e-prod";

pub async fn run(harness: &Harness) -> Outcome {
    harness.cluster.create_namespace(ISTIO_NAMESPACE, &[]).await?;
    for (revision, settings) in [(STABLE, FIRST), (CANARY, SECOND)] {
        create_chart_configmaps(harness, ISTIO_NAMESPACE, revision, settings).await?;
    }
    let text =
        std::fs::read_to_string(deploy::deploy_dir().join("config.yaml")).context("reading deploy/config.yaml")?;
    let text = text
        .replace(
            "  namespace: istio-system",
            &format!("  namespace: {ISTIO_NAMESPACE}\n  revisions: [{CANARY}]\n  tags: {{{TAG}: {STABLE}}}"),
        )
        .replace("\nrevision: default\n", &format!("\nrevision: {STABLE}\n"));
    let user = UserConfig::from_yaml(&text, "deploy/config.yaml").map_err(|e| e.to_string())?;
    ensure!(
        user.config.istio.revisions == [CANARY] && user.config.revision == STABLE,
        "could not point deploy/config.yaml at the revisions"
    );
    let injector = RunningInjector::start_with_user_config(user, harness.cluster.client().clone()).await?;
    eventually("both revisions read their ConfigMaps", || async {
        match injector.counter("sidecar_injector_istio_config_reloads_total").await? {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} reloads")),
        }
    })
    .await?;
    let mut registered = Vec::new();
    let result = async {
        for selected in [STABLE, CANARY] {
            let name = format!("sidecar-injector-{selected}");
            let configuration = deploy::for_revision(
                deploy::pointed_at(deploy::webhook_configuration()?, &injector.url(), injector.ca_pem()),
                &name,
                selected,
            );
            harness.cluster.register_webhook(&configuration).await?;
            registered.push(name);
        }
        // The tag's registration as the `tag` command prints it.
        let tagged = sidecar_injector::tag::tag_webhook(TAG).map_err(|e| e.to_string())?;
        let tagged = deploy::pointed_at(tagged, &injector.url(), injector.ca_pem());
        registered.push(tagged.metadata.name.clone().unwrap_or_default());
        harness.cluster.register_webhook(&tagged).await?;
        let mut seen = Vec::new();
        for (label, settings, revision) in [(STABLE, FIRST, STABLE), (CANARY, SECOND, CANARY), (TAG, FIRST, STABLE)] {
            let namespace = format!("e2e-rev-{label}");
            harness
                .cluster
                .create_namespace(&namespace, &[(REVISION_LABEL, label)])
                .await?;
            let pod = create(harness, &namespace, "p", &[]).await?;
            check(&pod, settings, revision).map_err(|e| format!("namespace labelled {label}: {e}"))?;
            seen.push(format!("namespace {label} → {revision} (tag {})", settings.tag));
        }
        let plain = "e2e-rev-pod-label";
        harness.cluster.create_namespace(plain, &[]).await?;
        let pod = create(harness, plain, "p", &[(REVISION_LABEL, CANARY)]).await?;
        check(&pod, SECOND, CANARY).map_err(|e| format!("pod labelled {CANARY}: {e}"))?;
        seen.push(format!("pod label {CANARY} → {CANARY}"));
        Ok::<String, String>(seen.join("; "))
    }
    .await;
    let mut cleanup = Vec::new();
    for name in &registered {
        cleanup.push(harness.cluster.unregister_webhook(name).await);
    }
    let stopped = injector.stop().await;
    let message = result?;
    cleanup.into_iter().collect::<Result<Vec<_>, _>>()?;
    stopped?;
    Ok(format!(
        "one injector, two revisions and a tag, each revision's own ConfigMaps: {message}"
    ))
}

async fn create(harness: &Harness, namespace: &str, name: &str, labels: &[(&str, &str)]) -> Result<Pod, String> {
    harness
        .cluster
        .create_pod(namespace, &test_pod(name, labels, &[]))
        .await
        .context(format!("creating pod {name} in {namespace}"))
}

fn check(pod: &Pod, settings: Settings, revision: &str) -> Result<(), String> {
    let proxy = container(pod, PROXY).ok_or_else(|| "no proxy".to_string())?;
    ensure!(matches(proxy, &settings), "{}", describe(proxy));
    let status = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(sidecar_injector::engine::annotations::STATUS))
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .unwrap_or_default();
    ensure!(
        status["revision"] == revision,
        "status annotation names revision {}, expected {revision}",
        status["revision"]
    );
    Ok(())
}
