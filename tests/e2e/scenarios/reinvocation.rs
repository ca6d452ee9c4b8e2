//! Scenario 6: reinvocation. A second mutating webhook, registered under a name that sorts
//! after ours, changes every pod after we inject it. With `reinvocationPolicy: IfNeeded` the
//! API server then calls us again; we must see our own status annotation and add nothing, so
//! the stored pod has exactly one proxy.
//!
//! The API server reinvokes a webhook at most once per request, after later webhooks and the
//! in-tree mutating plugins (run again because a webhook changed the pod: the ServiceAccount
//! plugin mounts its token into the containers we added) have changed the pod. So we expect
//! exactly two calls, the second counted as skipped because already injected.

use k8s_openapi::api::core::v1::Pod;

use crate::annotator::{Annotator, MARK};
use crate::check::{Context, Outcome, ensure, eventually};
use crate::harness::Harness;
use crate::injector::{REQUESTS, SKIPPED_ALREADY_INJECTED};
use crate::pods::{layout, proxy_count, test_pod};

/// Sorts after deploy/'s `sidecar-injector`: the API server calls configurations by name.
const CONFIGURATION: &str = "zz-e2e-annotator";
const SCENARIO_LABEL: (&str, &str) = ("e2e.sidecar-injector.dev/scenario", "reinvocation");

pub async fn run(harness: &Harness) -> Outcome {
    let namespace = "e2e-reinvocation";
    harness.injected_namespace(namespace, &[SCENARIO_LABEL]).await?;
    let annotator = Annotator::start().await?;
    harness
        .cluster
        .register_webhook(&annotator.configuration(CONFIGURATION, SCENARIO_LABEL))
        .await?;
    let marked = |pod: &Pod| pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MARK));
    let probe = test_pod("probe", &[], &[]);
    eventually("the API server calls the annotator", || async {
        let pod = harness
            .cluster
            .dry_run_pod(namespace, &probe)
            .await
            .context("dry-run pod")?;
        if marked(&pod) {
            Ok(())
        } else {
            Err("not annotated yet".to_string())
        }
    })
    .await?;

    let requests = harness.injector.counter(REQUESTS).await?;
    let skipped = harness.injector.counter(SKIPPED_ALREADY_INJECTED).await?;
    let pod = harness
        .cluster
        .create_pod(namespace, &test_pod("reinvoked", &[], &[]))
        .await
        .context("creating the pod");
    let unregistered = harness.cluster.unregister_webhook(CONFIGURATION).await;
    let pod = pod?;
    unregistered?;
    let calls = harness.injector.counter(REQUESTS).await? - requests;
    let reinvoked = harness.injector.counter(SKIPPED_ALREADY_INJECTED).await? - skipped;
    ensure!(marked(&pod), "the second webhook did not change the pod");
    ensure!(proxy_count(&pod) == 1, "expected one proxy: {}", layout(&pod));
    ensure!(
        calls == 2 && reinvoked == 1,
        "expected 2 calls to us, the second skipped as already injected; got {calls} calls, {reinvoked} skipped"
    );
    Ok(format!(
        "annotated after us, called twice (second: already injected), one proxy: {}",
        layout(&pod)
    ))
}
