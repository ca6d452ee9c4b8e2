//! Scenario 5: a server-side dry run (`dryRun: All`) is sent to us (the webhook declares
//! `sideEffects: None`, without which the API server refuses dry runs), comes back injected,
//! and stores nothing.

use crate::check::{Context, Outcome, ensure};
use crate::harness::Harness;
use crate::injector::REQUESTS;
use crate::pods::{layout, proxy_count, test_pod};

pub async fn run(harness: &Harness) -> Outcome {
    let namespace = "e2e-dry-run";
    harness.injected_namespace(namespace, &[]).await?;
    let before = harness.injector.counter(REQUESTS).await?;
    let pod = harness
        .cluster
        .dry_run_pod(namespace, &test_pod("dry", &[], &[]))
        .await
        .context("dry-run create")?;
    let after = harness.injector.counter(REQUESTS).await?;
    ensure!(
        proxy_count(&pod) == 1,
        "the dry-run answer is not injected: {}",
        layout(&pod)
    );
    ensure!(after > before, "the dry run did not reach the webhook");
    let stored = harness.cluster.get_pod(namespace, "dry").await?;
    ensure!(stored.is_none(), "the dry run stored the pod");
    Ok(format!("answer injected ({}), nothing stored", layout(&pod)))
}
