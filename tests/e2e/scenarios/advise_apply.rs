//! Scenario 26: `advise --apply --kubeconfig` writes the namespace-level recommendation as
//! the namespace's default annotations, with a diff first, and `--dry-run` stores nothing.
//!
//! Usage comes from a real Prometheus over the `advise` test's data (`tests/advise/`), whose
//! namespace `shop` has the known recommendation 175m / 116Mi / 116Mi. The namespace starts
//! with `proxyCPU: 100m`, so the diff shows a change, two additions, then nothing to do.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;

use crate::check::{Context, Outcome, ensure};
use crate::harness::Harness;
use crate::prometheus::RunningPrometheus;

const NAMESPACE: &str = "shop";
const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
const PROXY_MEMORY_LIMIT: &str = "sidecar.istio.io/proxyMemoryLimit";

fn advise(harness: &Harness, url: &str, extra: &[&str]) -> Result<Output, String> {
    Command::new(env!("CARGO_BIN_EXE_sidecar-injector"))
        .args([
            "advise",
            "--prometheus",
            url,
            "--window",
            "6h",
            "-n",
            NAMESPACE,
            "-o",
            "json",
            "--kubeconfig",
        ])
        .arg(&harness.kubeconfig)
        .args(["--apply"])
        .args(extra)
        .output()
        .context("running sidecar-injector advise")
}

async fn annotations(harness: &Harness) -> Result<BTreeMap<String, String>, String> {
    let namespace = Api::<Namespace>::all(harness.cluster.client().clone())
        .get(NAMESPACE)
        .await
        .context(format!("reading namespace {NAMESPACE}"))?;
    Ok(namespace.metadata.annotations.unwrap_or_default())
}

fn stderr_of(output: &Output) -> Result<String, String> {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure!(output.status.success(), "advise failed ({}): {stderr}", output.status);
    Ok(stderr)
}

pub async fn run(harness: &Harness) -> Outcome {
    let prometheus = RunningPrometheus::start()?;
    let url = prometheus.url();
    harness
        .cluster
        .create_namespace_with(NAMESPACE, &[], &[(PROXY_CPU, "100m")])
        .await?;
    let before = annotations(harness).await?;

    let dry = stderr_of(&advise(harness, &url, &["--dry-run"])?)?;
    let diff = format!(
        "namespace {NAMESPACE}:\n  {PROXY_CPU}: 100m -> 175m\n  {PROXY_MEMORY}: (unset) -> 116Mi\n  {PROXY_MEMORY_LIMIT}: (unset) -> 116Mi\n"
    );
    ensure!(dry.contains(&diff), "the dry run's diff, expected\n{diff}in\n{dry}");
    ensure!(dry.contains("dry run: accepted, not written"), "{dry}");
    let after_dry = annotations(harness).await?;
    ensure!(
        after_dry == before,
        "--dry-run changed the namespace: {before:?} -> {after_dry:?}"
    );

    let applied = stderr_of(&advise(harness, &url, &[])?)?;
    ensure!(applied.contains(&diff) && applied.contains("  written"), "{applied}");
    let written = annotations(harness).await?;
    for (key, value) in [
        (PROXY_CPU, "175m"),
        (PROXY_MEMORY, "116Mi"),
        (PROXY_MEMORY_LIMIT, "116Mi"),
    ] {
        ensure!(
            written.get(key).map(String::as_str) == Some(value),
            "{key} is {:?} after --apply, expected {value}",
            written.get(key)
        );
    }
    let again = stderr_of(&advise(harness, &url, &[])?)?;
    ensure!(again.contains(&format!("namespace {NAMESPACE}: unchanged")), "{again}");
    Ok(
        "dry run showed the diff (proxyCPU 100m -> 175m, proxyMemory and proxyMemoryLimit set to 116Mi) and stored \
         nothing; --apply wrote the three annotations; a second --apply found nothing to change"
            .to_string(),
    )
}
