//! Scenario 8: Pod Security `baseline` rejects the classic `istio-init`, which adds the
//! NET_ADMIN and NET_RAW capabilities to set up iptables. PodSecurity admission runs after
//! the mutating webhooks, so it judges the injected pod; the rejection must name the
//! container and the capabilities. The same pod opted out of injection is admitted, which
//! shows it is the injected init container that is refused. (Passing baseline needs the
//! CNI mode's `istio-validation`, which comes with the hardening work.)

use crate::check::{Context, Outcome, ensure};
use crate::cluster::api_message;
use crate::harness::Harness;
use crate::pods::{INIT, layout, test_pod};

pub async fn run(harness: &Harness) -> Outcome {
    let namespace = "e2e-pod-security-baseline";
    harness
        .injected_namespace(namespace, &[("pod-security.kubernetes.io/enforce", "baseline")])
        .await?;
    let message = match harness
        .cluster
        .create_pod(namespace, &test_pod("classic", &[], &[]))
        .await
    {
        Ok(pod) => return Err(format!("the injected pod was admitted: {}", layout(&pod))),
        Err(error) => api_message(&error),
    };
    for expected in ["violates PodSecurity \"baseline", INIT, "NET_ADMIN", "NET_RAW"] {
        ensure!(message.contains(expected), "expected {expected:?} in: {message}");
    }
    let opted_out = test_pod("opted-out", &[("sidecar.istio.io/inject", "false")], &[]);
    harness
        .cluster
        .create_pod(namespace, &opted_out)
        .await
        .context("the same pod without injection should be admitted")?;
    Ok(message)
}
