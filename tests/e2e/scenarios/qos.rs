//! Scenario 13: the proxy does not change the pod's QoS class. The API server computes
//! `status.qosClass` when it stores the pod, from every container including ours: a Guaranteed
//! app pod stays Guaranteed only if the proxy and `istio-init` have limits equal to their
//! requests, which `preserveGuaranteedQoS` (on in deploy/config.yaml) gives them without
//! growing the requests. A Burstable app pod stays Burstable with the default sizes.

use crate::check::{Outcome, ensure};
use crate::harness::Harness;
use crate::sizing::{Sizes, app_pod, check_injected};

const NAMESPACE: &str = "e2e-qos";

/// (pod, app resources, expected proxy resources, expected QoS class, a warning to expect).
const CASES: [(&str, Sizes, Sizes, &str, Option<&str>); 2] = [
    (
        "guaranteed",
        Sizes {
            requests: &[("cpu", "500m"), ("memory", "256Mi")],
            limits: &[("cpu", "500m"), ("memory", "256Mi")],
        },
        Sizes {
            requests: &[("cpu", "100m"), ("memory", "128Mi")],
            limits: &[("cpu", "100m"), ("memory", "128Mi")],
        },
        "Guaranteed",
        Some("pod is QoS Guaranteed; to keep it so, proxy CPU limit 2 → 100m, memory limit 1Gi → 128Mi"),
    ),
    (
        "burstable",
        Sizes {
            requests: &[("cpu", "500m"), ("memory", "256Mi")],
            limits: &[("cpu", "1"), ("memory", "512Mi")],
        },
        Sizes {
            requests: &[("cpu", "100m"), ("memory", "128Mi")],
            limits: &[("cpu", "2"), ("memory", "1Gi")],
        },
        "Burstable",
        None,
    ),
];

pub async fn run(harness: &Harness) -> Outcome {
    harness.injected_namespace(NAMESPACE, &[]).await?;
    let mut notes = Vec::new();
    for (name, app, proxy, class, warning) in CASES {
        let (pod, warnings) = harness
            .cluster
            .create_pod_with_warnings(NAMESPACE, &app_pod(name, app))
            .await
            .map_err(|e| format!("{name}: not admitted: {e}"))?;
        check_injected(&pod, proxy).map_err(|e| format!("{name}: {e}"))?;
        let stored = pod
            .status
            .as_ref()
            .and_then(|s| s.qos_class.as_deref())
            .unwrap_or("none");
        ensure!(stored == class, "{name}: status.qosClass is {stored}, expected {class}");
        if let Some(warning) = warning {
            ensure!(
                warnings.iter().any(|w| w == warning),
                "{name}: expected the warning {warning:?}, got {warnings:?}"
            );
        }
        notes.push(format!("app {app} → {class}, proxy {proxy}"));
    }
    Ok(notes.join("; "))
}
