//! Scenario 7: `failurePolicy: Fail` with our webhook down blocks pod creation, with an
//! error that names the webhook and why it could not be called.
//!
//! A second injector serves a copy of deploy/'s registration (policies as shipped) narrowed
//! to this scenario's namespaces, so stopping it leaves the other scenarios' webhook alone.
//! Pods in namespaces the copy does not select are unaffected while it is down.

use crate::check::{Context, Outcome, ensure, eventually};
use crate::cluster::api_message;
use crate::deploy;
use crate::harness::Harness;
use crate::injector::{REQUESTS, RunningInjector};
use crate::pods::{layout, test_pod};

const CONFIGURATION: &str = "sidecar-injector-failure-policy";
const SCENARIO_LABEL: (&str, &str) = ("e2e.sidecar-injector.dev/scenario", "failure-policy");

pub async fn run(harness: &Harness) -> Outcome {
    let shipped = deploy::webhook_configuration()?;
    let policies: Vec<String> = shipped
        .webhooks
        .iter()
        .flatten()
        .map(|w| w.failure_policy.clone().unwrap_or_default())
        .collect();
    ensure!(
        policies.iter().all(|p| p == "Fail"),
        "deploy/ webhooks have failurePolicy {policies:?}; this scenario tests Fail"
    );
    let namespace = "e2e-failure-policy";
    let unselected = "e2e-failure-policy-other";
    harness.injected_namespace(namespace, &[SCENARIO_LABEL]).await?;
    harness.injected_namespace(unselected, &[]).await?;
    let doomed = RunningInjector::start(deploy::injector_config()?).await?;
    let configuration = deploy::scoped_to(
        deploy::pointed_at(shipped, &doomed.url(), doomed.ca_pem()),
        CONFIGURATION,
        SCENARIO_LABEL,
    );
    harness.cluster.register_webhook(&configuration).await?;
    let probe = test_pod("probe", &[], &[]);
    eventually("the API server calls the second injector", || async {
        harness
            .cluster
            .dry_run_pod(namespace, &probe)
            .await
            .context("dry-run pod")?;
        match doomed.counter(REQUESTS).await? {
            0 => Err("no request yet".to_string()),
            _ => Ok(()),
        }
    })
    .await?;
    let address = doomed.webhook_addr().to_string();
    doomed.stop().await?;

    let outcome = harness
        .cluster
        .create_pod(namespace, &test_pod("blocked", &[], &[]))
        .await;
    let elsewhere = harness
        .cluster
        .create_pod(unselected, &test_pod("unaffected", &[], &[]))
        .await
        .context("creating a pod in another namespace while the webhook is down");
    harness.cluster.unregister_webhook(CONFIGURATION).await?;
    let message = match outcome {
        Ok(pod) => return Err(format!("the pod was admitted with the webhook down: {}", layout(&pod))),
        Err(error) => api_message(&error),
    };
    elsewhere?;
    for expected in ["failed calling webhook", address.as_str(), "connection refused"] {
        ensure!(message.contains(expected), "expected {expected:?} in: {message}");
    }
    ensure!(
        harness.cluster.get_pod(namespace, "blocked").await?.is_none(),
        "the blocked pod was stored"
    );
    Ok(message)
}
