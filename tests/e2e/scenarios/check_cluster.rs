//! Scenarios 41 to 44: `sidecar-injector check` run as a user runs it, the built binary with
//! the run's kubeconfig, against the e2e registration (`sidecar-injector-e2e`, calling the
//! in-process injector on a loopback url) and namespaces made here. Each reads the JSON
//! report and the exit status: 0 healthy, 1 something wrong.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use sidecar_injector::certs::CertBundle;
use sidecar_injector::config::InjectConfig;
use sidecar_injector::engine::Injector;

use crate::check::{Context, Outcome, ensure};
use crate::deploy;
use crate::harness::Harness;
use crate::pods::{proxy_count, test_pod};

/// The registration the harness made.
const E2E_WEBHOOK: &str = "sidecar-injector-e2e";

/// `check`'s exit status, stdout and stderr.
pub struct CheckRun {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CheckRun {
    /// The JSON report.
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.stdout).context(format!("check's output is not JSON ({})", self.stderr.trim()))
    }
}

/// Runs the binary's `check` with the run's kubeconfig, the shipped config, the injector's
/// `/readyz`, and `args`.
pub async fn run_check(harness: &Harness, args: &[&str]) -> Result<CheckRun, String> {
    let readyz = format!("http://{}/readyz", harness.injector.admin_addr());
    let config = deploy::deploy_dir().join("config.yaml");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sidecar-injector"))
        .arg("check")
        .arg("--kubeconfig")
        .arg(&harness.kubeconfig)
        .arg("--config")
        .arg(config)
        .args(["--readyz", &readyz, "--injector-namespace", &harness.injector_namespace])
        .args(args)
        .output()
        .await
        .context("running sidecar-injector check")?;
    Ok(CheckRun {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect();
    keys.sort_unstable();
    keys
}

/// The report's documented shape (README, "check"): every key, and the status words.
fn check_shape(report: &Value) -> Result<(), String> {
    ensure!(
        keys(report) == ["drift", "healthy", "namespaces", "pods_checked", "registration"],
        "report keys: {:?}",
        keys(report)
    );
    ensure!(
        report["healthy"].is_boolean() && report["pods_checked"].is_u64(),
        "healthy/pods_checked: {report}"
    );
    for finding in report["registration"].as_array().into_iter().flatten() {
        ensure!(
            keys(finding) == ["check", "message", "status", "subject"],
            "finding: {finding}"
        );
        ensure!(
            ["ok", "warn", "error"].contains(&finding["status"].as_str().unwrap_or_default()),
            "finding status: {finding}"
        );
    }
    for namespace in report["namespaces"].as_array().into_iter().flatten() {
        ensure!(
            keys(namespace)
                == [
                    "decision",
                    "injection",
                    "labels",
                    "name",
                    "reason",
                    "revision",
                    "status",
                    "webhooks"
                ],
            "namespace row: {namespace}"
        );
    }
    for pod in report["drift"].as_array().into_iter().flatten() {
        ensure!(keys(pod) == ["differences", "namespace", "pod"], "drift row: {pod}");
        for difference in pod["differences"].as_array().into_iter().flatten() {
            ensure!(
                keys(difference) == ["expected", "field", "running", "source"],
                "difference: {difference}"
            );
        }
    }
    Ok(())
}

/// The findings of `report` with `check` name `check`: `(subject, status)`.
fn findings<'a>(report: &'a Value, check: &str) -> Vec<(&'a str, &'a str)> {
    report["registration"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|finding| finding["check"] == check)
        .map(|finding| {
            (
                finding["subject"].as_str().unwrap_or_default(),
                finding["status"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}

/// Scenario 41: the healthy registration: every webhook's caBundle verifies the served
/// certificate, settings and exclusions are ok, `/readyz` answers; exit 0; the JSON shape.
pub async fn healthy(harness: &Harness) -> Outcome {
    let namespace = "e2e-check-healthy";
    harness.injected_namespace(namespace, &[]).await?;
    let stored = harness
        .cluster
        .create_pod(namespace, &test_pod("fresh", &[], &[]))
        .await
        .context("creating a pod")?;
    ensure!(proxy_count(&stored) == 1, "the pod was not injected");
    let run = run_check(harness, &["--webhook", E2E_WEBHOOK, "-n", namespace, "-o", "json"]).await?;
    let report = run.json()?;
    check_shape(&report)?;
    ensure!(
        run.status == 0,
        "exit {} (expected 0): {}{}",
        run.status,
        run.stdout,
        run.stderr
    );
    ensure!(report["healthy"] == true, "not healthy: {report}");
    let ca = findings(&report, "caBundle");
    let webhooks = deploy::webhook_configuration()?.webhooks.unwrap_or_default().len();
    ensure!(
        ca.len() == webhooks && ca.iter().all(|(_, status)| *status == "ok"),
        "caBundle findings: {ca:?}"
    );
    ensure!(findings(&report, "readyz") == [("injector", "ok")], "readyz: {report}");
    let own = findings(&report, "ownNamespaceExcluded");
    ensure!(
        own.len() == webhooks && own.iter().all(|(_, status)| *status == "ok"),
        "own namespace: {own:?}"
    );
    ensure!(
        report["pods_checked"] == 1 && report["drift"].as_array().is_some_and(Vec::is_empty),
        "drift: {report}"
    );
    let text = run_check(harness, &["--webhook", E2E_WEBHOOK, "-n", namespace]).await?;
    ensure!(
        text.status == 0 && text.stdout.contains("healthy: 0 errors"),
        "text output (exit {}): {}",
        text.status,
        text.stdout
    );
    let unreadable = tokio::process::Command::new(env!("CARGO_BIN_EXE_sidecar-injector"))
        .args(["check", "--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .await
        .context("running check without a kubeconfig")?;
    ensure!(
        unreadable.status.code() == Some(2),
        "an unreadable kubeconfig: {:?} {}",
        unreadable.status,
        String::from_utf8_lossy(&unreadable.stderr)
    );
    let findings_total = report["registration"].as_array().map_or(0, Vec::len);
    Ok(format!(
        "exit 0, {findings_total} findings all ok/warn, {webhooks} caBundles verified, /readyz 200, JSON shape as documented; no kubeconfig: exit 2"
    ))
}

/// Scenario 42: a registration whose caBundle is another CA's: each webhook's caBundle finding
/// is an error naming the verification failure, and `check` exits 1. (Scoped to a namespace
/// label nothing carries, so no pod is ever sent through it.)
pub async fn wrong_ca_bundle(harness: &Harness) -> Outcome {
    let name = "sidecar-injector-e2e-wrong-ca";
    let other = CertBundle::generate(&["127.0.0.1".to_string()]).context("making another CA")?;
    let configuration = deploy::scoped_to(deploy::webhook_configuration()?, name, ("e2e-scope", "wrong-ca"));
    let configuration = deploy::pointed_at(configuration, &harness.injector.url(), &other.ca_pem);
    harness.cluster.register_webhook(&configuration).await?;
    let run = run_check(harness, &["--webhook", name, "-n", "default", "-o", "json"]).await;
    harness.cluster.unregister_webhook(name).await?;
    let run = run?;
    let report = run.json()?;
    check_shape(&report)?;
    ensure!(run.status == 1, "exit {} (expected 1): {}", run.status, run.stderr);
    ensure!(report["healthy"] == false, "healthy: {report}");
    let errors: Vec<&str> = report["registration"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|finding| finding["check"] == "caBundle" && finding["status"] == "error")
        .filter_map(|finding| finding["message"].as_str())
        .collect();
    let webhooks = configuration.webhooks.as_ref().map_or(0, Vec::len);
    ensure!(
        errors.len() == webhooks
            && errors
                .iter()
                .all(|m| m.contains("does not verify against the caBundle")),
        "caBundle errors: {errors:?}"
    );
    Ok(format!("exit 1, {webhooks} caBundle errors: {}", errors[0]))
}

/// A namespace, its labels, and the injection state and revision `check` must report.
type StateCase = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    Option<&'static str>,
);

/// The revision tag scenario 43 registers, as `sidecar-injector tag` makes its webhook.
const TAG: &str = "e2e-check-prod";

/// Scenario 43: one namespace of each injection state, with revision and reason, and one
/// labelled with a revision tag whose webhook is registered as the `tag` command prints it.
pub async fn namespace_states(harness: &Harness) -> Outcome {
    let tagged = deploy::pointed_at(
        sidecar_injector::tag::tag_webhook(TAG).map_err(|e| e.to_string())?,
        &harness.injector.url(),
        harness.injector.ca_pem(),
    );
    let tag_configuration = tagged.metadata.name.clone().unwrap_or_default();
    harness.cluster.register_webhook(&tagged).await?;
    let result = namespace_states_with_tag(harness, &tagged).await;
    let unregistered = harness.cluster.unregister_webhook(&tag_configuration).await;
    let message = result?;
    unregistered?;
    Ok(message)
}

/// The webhooks (`configuration/webhook`) of `configuration` that select namespaces by
/// `istio.io/rev`: those a namespace labelled with the tag is sent to.
fn revision_webhooks(configuration: &MutatingWebhookConfiguration) -> Vec<String> {
    let configuration_name = configuration.metadata.name.as_deref().unwrap_or_default();
    configuration
        .webhooks
        .iter()
        .flatten()
        .filter(|webhook| {
            let expressions = webhook
                .namespace_selector
                .as_ref()
                .and_then(|s| s.match_expressions.as_ref());
            expressions
                .into_iter()
                .flatten()
                .any(|e| e.key == deploy::REVISION_LABEL && e.operator == "In")
        })
        .map(|webhook| format!("{configuration_name}/{}", webhook.name))
        .collect()
}

async fn namespace_states_with_tag(harness: &Harness, tagged: &MutatingWebhookConfiguration) -> Outcome {
    let tag_configuration = tagged.metadata.name.as_deref().unwrap_or_default();
    let cases: [StateCase; 6] = [
        (
            "e2e-check-enabled",
            &[("istio-injection", "enabled")],
            "enabled",
            Some("default"),
        ),
        (
            "e2e-check-rev",
            &[("istio.io/rev", "default")],
            "enabled",
            Some("default"),
        ),
        ("e2e-check-canary", &[("istio.io/rev", "canary")], "disabled", None),
        (
            "e2e-check-disabled",
            &[("istio-injection", "disabled")],
            "disabled",
            None,
        ),
        ("e2e-check-unlabelled", &[], "opt-in", Some("default")),
        ("e2e-check-tagged", &[("istio.io/rev", TAG)], "enabled", Some(TAG)),
    ];
    let mut args = vec!["--webhook", E2E_WEBHOOK, "--webhook", tag_configuration, "-o", "json"];
    for (name, labels, _, _) in &cases {
        harness.cluster.create_namespace(name, labels).await?;
        args.extend(["-n", name]);
    }
    let own = harness.injector_namespace.as_str();
    args.extend(["-n", own, "-n", "kube-system"]);
    let run = run_check(harness, &args).await?;
    let report = run.json()?;
    check_shape(&report)?;
    let rows: BTreeMap<&str, &Value> = report["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| (row["name"].as_str().unwrap_or_default(), row))
        .collect();
    let mut expected: Vec<(&str, &str, Option<&str>)> = cases
        .iter()
        .map(|(name, _, injection, revision)| (*name, *injection, *revision))
        .collect();
    expected.push((own, "excluded", None));
    expected.push(("kube-system", "excluded", None));
    let mut wrong = Vec::new();
    for (name, injection, revision) in &expected {
        let Some(row) = rows.get(name) else {
            wrong.push(format!("{name}: no row"));
            continue;
        };
        if row["injection"] != *injection || row["revision"].as_str() != *revision || row["status"] != "ok" {
            wrong.push(format!("{name}: {row}"));
        }
    }
    ensure!(wrong.is_empty(), "namespace rows: {}", wrong.join("; "));
    let reason = |name: &str| rows[name]["reason"].as_str().unwrap_or_default().to_string();
    ensure!(
        reason("e2e-check-canary").contains("no webhook of this injector selects revision canary"),
        "canary reason: {}",
        reason("e2e-check-canary")
    );
    ensure!(
        reason("e2e-check-unlabelled").contains("only pods labelled sidecar.istio.io/inject=true"),
        "unlabelled reason: {}",
        reason("e2e-check-unlabelled")
    );
    ensure!(
        reason(own).contains("the injector's own namespace"),
        "own: {}",
        reason(own)
    );
    ensure!(
        rows["e2e-check-enabled"]["webhooks"]
            == serde_json::json!([format!("{E2E_WEBHOOK}/namespace.sidecar-injector.istio.io")])
            && rows["e2e-check-rev"]["webhooks"]
                == serde_json::json!([format!("{E2E_WEBHOOK}/rev.namespace.sidecar-injector.istio.io")]),
        "webhooks: {report}"
    );
    let tag_webhooks = revision_webhooks(tagged);
    ensure!(
        !tag_webhooks.is_empty() && rows["e2e-check-tagged"]["webhooks"] == serde_json::json!(tag_webhooks),
        "tagged namespace's webhooks, expected {tag_webhooks:?}: {}",
        rows["e2e-check-tagged"]
    );
    ensure!(run.status == 0, "exit {}: {}", run.status, run.stderr);
    Ok(format!(
        "{} namespaces, each in its state with its revision and reason (tag {TAG}: revision {TAG}, sent to {}); exit 0",
        expected.len(),
        tag_webhooks.join(", ")
    ))
}

/// A pod as an older policy injected it: the shipped config with another proxy image and
/// other default resources, through offline injection (the engine, not a hand-made proxy).
fn stale_pod(name: &str, labels: &[(&str, &str)]) -> Result<Pod, String> {
    let mut config: InjectConfig = deploy::injector_config()?;
    config.proxy_image = "docker.io/istio/proxyv2:1.20.0".into();
    config.resources.requests.cpu = Some("300m".into());
    config.resources.limits.memory = Some("2Gi".into());
    let injector = Injector::new(config).context("the older config")?;
    let pod = serde_json::to_string(&test_pod(name, labels, &[])).context("pod as JSON")?;
    let injected = sidecar_injector::offline::inject_yaml(&injector, &pod, "default").context("offline injection")?;
    let document = sidecar_injector::manifest::read_documents(&injected)
        .context("reading the injected pod")?
        .into_iter()
        .next()
        .ok_or("offline injection returned nothing")?;
    serde_json::from_value(document).context("the injected pod")
}

/// Scenario 44: drift. In a namespace the webhook does not select, a pod injected by an older
/// policy and a pod without a proxy are stored; the namespace is then labelled for injection
/// and given a memory annotation. `check` reports the image and each changed resource field
/// with its source, and the missing proxy; exit 1.
pub async fn drift(harness: &Harness) -> Outcome {
    let namespace = "e2e-check-drift";
    harness.cluster.create_namespace(namespace, &[]).await?;
    let stale = harness
        .cluster
        .create_pod(namespace, &stale_pod("stale", &[("app", "stale")])?)
        .await
        .context("storing the stale pod")?;
    ensure!(proxy_count(&stale) == 1, "the stale pod has no proxy");
    harness
        .cluster
        .create_pod(namespace, &test_pod("bare", &[("app", "bare")], &[]))
        .await
        .context("storing the bare pod")?;
    harness
        .cluster
        .label_namespace(namespace, "istio-injection", "enabled")
        .await?;
    harness
        .cluster
        .annotate_namespace(namespace, "sidecar.istio.io/proxyMemory", "200Mi")
        .await?;
    let run = run_check(harness, &["--webhook", E2E_WEBHOOK, "-n", namespace, "-o", "json"]).await?;
    let report = run.json()?;
    check_shape(&report)?;
    ensure!(run.status == 1, "exit {} (expected 1): {}", run.status, run.stderr);
    let differences = |pod: &str| -> BTreeMap<String, (String, String, String)> {
        report["drift"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|row| row["pod"] == pod)
            .flat_map(|row| row["differences"].as_array().cloned().unwrap_or_default())
            .map(|d| {
                let text = |key: &str| d[key].as_str().unwrap_or_default().to_string();
                (text("field"), (text("running"), text("expected"), text("source")))
            })
            .collect()
    };
    let image = "docker.io/istio/proxyv2:";
    let expected_stale: BTreeMap<String, (String, String, String)> = [
        (
            "image",
            (format!("{image}1.20.0"), format!("{image}1.28.0"), "config proxyImage"),
        ),
        ("cpu.request", ("300m".into(), "100m".into(), "config default")),
        (
            "memory.request",
            (
                "128Mi".into(),
                "200Mi".into(),
                "namespace annotation sidecar.istio.io/proxyMemory",
            ),
        ),
        ("memory.limit", ("2Gi".into(), "1Gi".into(), "config default")),
    ]
    .into_iter()
    .map(|(field, (running, expected, source))| (field.to_string(), (running, expected, source.to_string())))
    .collect();
    ensure!(
        differences("stale") == expected_stale,
        "stale pod: {:?}\nexpected {:?}",
        differences("stale"),
        expected_stale
    );
    let bare = differences("bare");
    ensure!(
        bare.len() == 1
            && bare
                .get("proxy")
                .is_some_and(|(running, expected, _)| running == "none" && expected == "istio-proxy"),
        "bare pod: {bare:?}"
    );
    let selected = run_check(
        harness,
        &[
            "--webhook",
            E2E_WEBHOOK,
            "-n",
            namespace,
            "-l",
            "app=stale",
            "-o",
            "json",
        ],
    )
    .await?;
    let selected = selected.json()?;
    let pods: Vec<&str> = selected["drift"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row["pod"].as_str())
        .collect();
    ensure!(
        selected["pods_checked"] == 1 && pods == ["stale"],
        "-l app=stale: {selected}"
    );
    let refused = run_check(harness, &["--webhook", E2E_WEBHOOK, "-n", namespace, "-l", "app in (("]).await?;
    ensure!(
        refused.status == 2 && refused.stderr.contains("cannot read pods in e2e-check-drift"),
        "a selector the API server refuses: exit {}: {}",
        refused.status,
        refused.stderr
    );
    let text = run_check(harness, &["--webhook", E2E_WEBHOOK, "-n", namespace]).await?;
    eprintln!(
        "check on the e2e cluster (scenario 44):\n$ sidecar-injector check --webhook {E2E_WEBHOOK} -n {namespace}\n{}",
        text.stdout
    );
    ensure!(
        text.status == 1 && text.stdout.contains("drift (2 of 2 pods differ)"),
        "text: {}",
        text.stdout
    );
    Ok("stale pod: image, cpu.request, memory.request (namespace annotation), memory.limit with sources; bare pod: proxy missing; exit 1; -l app=stale: 1 pod; a bad selector: exit 2".into())
}
