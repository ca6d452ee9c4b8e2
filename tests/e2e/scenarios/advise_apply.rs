//! Scenario 26: `advise --apply --kubeconfig` writes the namespace-level recommendation as
//! the namespace's default annotations, with a diff first, and `--dry-run` stores nothing;
//! and `advise -o yaml` is accepted by the API server as the README says, "ready for
//! `kubectl apply --server-side`".
//!
//! Usage comes from a real Prometheus over the `advise` test's data (`tests/advise/`), whose
//! namespace `shop` has the known recommendation 175m / 116Mi / 116Mi. The namespace starts
//! with `proxyCPU: 100m`, so the diff shows a change, two additions, then nothing to do.
//! For the YAML, each workload a document patches is stored first (0 replicas, as a user's
//! would exist), then every document is server-side applied with `dryRun: All` under a field
//! manager of its own, without forcing, as `kubectl apply --server-side` sends it. Last, a
//! LimitRange with a Container CPU max of 150m is stored in the namespace: `advise` reads it
//! and clamps the namespace's CPU request to it, as admission would.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::{LimitRange, Namespace};
use kube::api::{Api, DeleteParams, PatchParams, PostParams};
use serde_json::{Value, json};
use sidecar_injector::manifest::read_documents;

use super::manifests::{apply_with, describe, kind, name};
use crate::check::{Context, Outcome, ensure};
use crate::harness::Harness;
use crate::prometheus::RunningPrometheus;

const NAMESPACE: &str = "shop";
const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
const PROXY_MEMORY_LIMIT: &str = "sidecar.istio.io/proxyMemoryLimit";

/// `advise` over the scenario's Prometheus, window and namespace.
fn advise_command(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sidecar-injector"));
    command.args(["advise", "--prometheus", url, "--window", "6h", "-n", NAMESPACE]);
    command
}

fn advise(harness: &Harness, url: &str, extra: &[&str]) -> Result<Output, String> {
    advise_command(url)
        .args(["-o", "json", "--kubeconfig"])
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
    let yaml = yaml_accepted(harness, &url).await?;
    let clamped = clamped_by_limit_range(harness, &url).await?;
    Ok(format!(
        "dry run showed the diff (proxyCPU 100m -> 175m, proxyMemory and proxyMemoryLimit set to 116Mi) and stored \
         nothing; --apply wrote the three annotations; a second --apply found nothing to change; {yaml}; {clamped}"
    ))
}

/// Stores a LimitRange capping a container's CPU at 150m and checks that `advise` clamps the
/// namespace's recommendation to it, naming it; the LimitRange is removed afterwards.
async fn clamped_by_limit_range(harness: &Harness, url: &str) -> Result<String, String> {
    let api = Api::<LimitRange>::namespaced(harness.cluster.client().clone(), NAMESPACE);
    let limit_range: LimitRange = serde_json::from_value(json!({
        "metadata": {"name": "advise-max"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "150m", "memory": "1Gi"}}]}
    }))
    .context("the LimitRange")?;
    api.create(&PostParams::default(), &limit_range)
        .await
        .context("storing LimitRange advise-max")?;
    let output = advise_command(url)
        .args(["-o", "json", "--kubeconfig"])
        .arg(&harness.kubeconfig)
        .output()
        .context("running sidecar-injector advise -o json --kubeconfig");
    api.delete("advise-max", &DeleteParams::default())
        .await
        .context("deleting LimitRange advise-max")?;
    let output = output?;
    stderr_of(&output)?;
    let advice: Value = serde_json::from_slice(&output.stdout).context("advise -o json is not JSON")?;
    let entry = advice["recommendations"]
        .as_array()
        .and_then(|entries| entries.iter().find(|entry| entry["workload"].is_null()))
        .ok_or_else(|| format!("no namespace entry in {advice}"))?;
    let clamp = "cpu.request 175m lowered to 150m (LimitRange advise-max max)";
    ensure!(
        entry["recommended"]["cpu.request"] == "150m" && entry["clamped"] == json!([clamp]),
        "with LimitRange advise-max, expected cpu.request 150m clamped as {clamp:?}, got {entry}"
    );
    Ok(format!(
        "with a LimitRange Container max of 150m, advise recommended 150m: {clamp}"
    ))
}

/// Runs `advise -o yaml`, stores the workloads its documents patch, and server-side applies
/// every document with `dryRun: All`; each must be accepted.
async fn yaml_accepted(harness: &Harness, url: &str) -> Result<String, String> {
    let output = advise_command(url)
        .args(["-o", "yaml"])
        .output()
        .context("running sidecar-injector advise -o yaml")?;
    stderr_of(&output)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let documents: Vec<Value> = read_documents(&text)
        .context("advise -o yaml is not YAML")?
        .into_iter()
        .filter(Value::is_object)
        .collect();
    let workloads: Vec<&Value> = documents.iter().filter(|d| kind(d) != "Namespace").collect();
    ensure!(
        documents.iter().any(|d| kind(d) == "Namespace") && !workloads.is_empty(),
        "advise -o yaml has no Namespace or no workload document:\n{text}"
    );
    let store = PatchParams::apply("sidecar-injector-e2e");
    for workload in &workloads {
        apply_with(harness, &stored_workload(workload), &store)
            .await
            .context(format!("storing {}", describe(workload)))?;
    }
    let patch = PatchParams::apply("sidecar-injector-e2e-advise").dry_run();
    let mut accepted = Vec::new();
    for document in &documents {
        let served = apply_with(harness, document, &patch)
            .await
            .context(format!("the API server refused advise's {}", describe(document)))?;
        ensure!(served, "{} is not served", describe(document));
        accepted.push(format!("{}/{}", kind(document), name(document)));
    }
    Ok(format!(
        "advise -o yaml: all {} documents accepted by server-side dry-run apply ({})",
        accepted.len(),
        accepted.join(", ")
    ))
}

/// A minimal workload of the kind and name a patch document names: 0 replicas (a DaemonSet
/// has none), a selector and a one-container template, so no controller makes pods from it.
fn stored_workload(document: &Value) -> Value {
    let app = name(document);
    let mut spec = json!({"replicas": 0, "selector": {"matchLabels": {"app": app}},
        "template": {"metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}});
    if kind(document) == "DaemonSet" {
        spec.as_object_mut().map(|spec| spec.remove("replicas"));
    }
    json!({"apiVersion": document["apiVersion"], "kind": kind(document),
        "metadata": {"name": app, "namespace": document["metadata"]["namespace"]}, "spec": spec})
}
