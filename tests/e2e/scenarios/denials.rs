//! Scenarios 3 and 4: annotations we refuse. The user must see the API server's
//! `admission webhook "<name>" denied the request: <our message>`, naming the annotation,
//! and no pod may be stored. A request above its limit must be refused by us, with our
//! message, before the API server's own validation would reject the pod less clearly.

use crate::check::{Outcome, ensure};
use crate::cluster::api_message;
use crate::harness::Harness;
use crate::pods::{layout, test_pod};

const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
/// The webhook that selects pods in an `istio-injection=enabled` namespace.
const WEBHOOK: &str = "namespace.sidecar-injector.istio.io";

pub async fn invalid_annotation(harness: &Harness) -> Outcome {
    let message = denied(harness, "e2e-invalid", "abc").await?;
    ensure!(
        message.contains("\"abc\""),
        "the message does not quote the value: {message}"
    );
    Ok(message)
}

pub async fn request_above_limit(harness: &Harness) -> Outcome {
    // Request 3 CPUs; the default limit is 2. The API server would say
    // "must be less than or equal to cpu limit" had we let the pod through.
    let message = denied(harness, "e2e-above-limit", "3").await?;
    ensure!(
        !message.contains("must be less than or equal to"),
        "the API server's validation answered, not us: {message}"
    );
    ensure!(
        message.contains("limit"),
        "the message does not mention the limit: {message}"
    );
    Ok(message)
}

/// Creates a pod with `proxyCPU: value` in a new injected namespace; returns the denial.
async fn denied(harness: &Harness, namespace: &str, value: &str) -> Result<String, String> {
    harness.injected_namespace(namespace, &[]).await?;
    let pod = test_pod("denied", &[], &[(PROXY_CPU, value)]);
    let message = match harness.cluster.create_pod(namespace, &pod).await {
        Ok(stored) => return Err(format!("the pod was admitted: {}", layout(&stored))),
        Err(error) => api_message(&error),
    };
    let prefix = format!("admission webhook \"{WEBHOOK}\" denied the request: ");
    ensure!(message.contains(&prefix), "expected {prefix:?} in: {message}");
    ensure!(
        message.contains(PROXY_CPU),
        "the message does not name {PROXY_CPU}: {message}"
    );
    let stored = harness.cluster.get_pod(namespace, "denied").await?;
    ensure!(stored.is_none(), "a denied pod was stored");
    Ok(message)
}
