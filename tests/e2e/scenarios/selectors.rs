//! Scenario 2: which pods the API server sends to us, by Istio's selectors for the default
//! revision (see deploy/webhook/mutatingwebhookconfiguration.yaml), and that the injector's
//! own namespace and kube-system are never sent, even when their pods ask for injection.
//!
//! "Not sent" is read from our `/metrics` request counter, since the engine would also skip
//! a kube-system pod that did reach it. Scenarios run one at a time, so nothing else moves it.

use crate::check::{Context, Outcome, ensure};
use crate::harness::Harness;
use crate::injector::REQUESTS;
use crate::pods::{layout, proxy_count, test_pod};

const INJECT: &str = "sidecar.istio.io/inject";
const REV: &str = "istio.io/rev";

const UNLABELLED: &str = "e2e-sel-unlabelled";
const DISABLED: &str = "e2e-sel-disabled";
const ENABLED: &str = "e2e-sel-enabled";
const REV_DEFAULT: &str = "e2e-sel-rev-default";
const REV_CANARY: &str = "e2e-sel-rev-canary";
const ENABLED_REV_CANARY: &str = "e2e-sel-enabled-rev-canary";

type Labels = &'static [(&'static str, &'static str)];

/// The namespaces and their labels.
const NAMESPACES: [(&str, Labels); 6] = [
    (UNLABELLED, &[]),
    (DISABLED, &[("istio-injection", "disabled")]),
    (ENABLED, &[("istio-injection", "enabled")]),
    (REV_DEFAULT, &[(REV, "default")]),
    (REV_CANARY, &[(REV, "canary")]),
    (ENABLED_REV_CANARY, &[("istio-injection", "enabled"), (REV, "canary")]),
];

/// One pod each: namespace, pod labels, whether it must come back injected, and what it shows.
#[rustfmt::skip]
const CASES: [(&str, Labels, bool, &str); 12] = [
    (UNLABELLED, &[], false, "unlabelled namespace"),
    (DISABLED, &[(INJECT, "true")], false, "istio-injection=disabled, pod inject=true"),
    (ENABLED, &[(INJECT, "false")], false, "istio-injection=enabled, pod inject=false"),
    (ENABLED, &[], true, "istio-injection=enabled"),
    (REV_DEFAULT, &[], true, "namespace rev=default"),
    (REV_DEFAULT, &[(INJECT, "false")], false, "namespace rev=default, pod inject=false"),
    (REV_CANARY, &[], false, "namespace rev=canary (another revision's)"),
    (UNLABELLED, &[(REV, "default")], true, "unlabelled namespace, pod rev=default"),
    (UNLABELLED, &[(REV, "canary")], false, "unlabelled namespace, pod rev=canary"),
    (UNLABELLED, &[(INJECT, "true")], true, "unlabelled namespace, pod inject=true"),
    (UNLABELLED, &[(INJECT, "true"), (REV, "canary")], false, "unlabelled namespace, pod inject=true rev=canary"),
    (ENABLED_REV_CANARY, &[], true, "istio-injection=enabled wins over rev=canary"),
];

pub async fn run(harness: &Harness) -> Outcome {
    for (name, labels) in NAMESPACES {
        harness.cluster.create_namespace(name, labels).await?;
    }
    let mut wrong = Vec::new();
    for (index, (namespace, labels, expected, what)) in CASES.into_iter().enumerate() {
        let pod = test_pod(&format!("case-{index}"), labels, &[]);
        let stored = harness
            .cluster
            .create_pod(namespace, &pod)
            .await
            .context(format!("{what}: creating the pod"))?;
        let injected = proxy_count(&stored) == 1;
        if injected != expected {
            wrong.push(format!("{what} (injected: {injected}; {})", layout(&stored)));
        }
    }
    ensure!(wrong.is_empty(), "selected wrongly: {}", wrong.join("; "));
    let excluded = never_sent(harness).await?;
    Ok(format!("{} selector cases as Istio; {excluded}", CASES.len()))
}

/// Pods in the injector's namespace (labelled istio-injection=enabled) and in kube-system
/// (asking for injection through both object paths) are stored without a request reaching us.
async fn never_sent(harness: &Harness) -> Result<String, String> {
    let injector_namespace = harness.injector_namespace.as_str();
    let pods: [(&str, Labels); 3] = [
        (injector_namespace, &[]),
        ("kube-system", &[(INJECT, "true")]),
        ("kube-system", &[(REV, "default")]),
    ];
    let before = harness.injector.counter(REQUESTS).await?;
    for (index, (namespace, labels)) in pods.iter().enumerate() {
        let pod = test_pod(&format!("e2e-excluded-{index}"), labels, &[]);
        let stored = harness
            .cluster
            .create_pod(namespace, &pod)
            .await
            .context(format!("creating a pod in {namespace}"))?;
        ensure!(
            proxy_count(&stored) == 0,
            "{namespace}: pod injected: {}",
            layout(&stored)
        );
    }
    let after = harness.injector.counter(REQUESTS).await?;
    ensure!(
        after == before,
        "{} requests reached the webhook for pods in {injector_namespace} and kube-system",
        after - before
    );
    // The counter does move for a selected pod, so "no request" above means something.
    let control = harness
        .cluster
        .create_pod(ENABLED, &test_pod("counted", &[], &[]))
        .await
        .context("creating the control pod")?;
    let counted = harness.injector.counter(REQUESTS).await? - after;
    ensure!(
        counted > 0 && proxy_count(&control) == 1,
        "control pod: {counted} requests, {}",
        layout(&control)
    );
    Ok(format!(
        "{injector_namespace} and kube-system: {} pods stored, 0 requests sent (a selected control pod: {counted})",
        pods.len()
    ))
}
