//! Scenario 9: pods from Istio's own injection test inputs are admitted, stored, and carry
//! exactly one proxy, so the API server accepts our patch on real-world pod shapes (probes,
//! multiple containers, init containers, volumes, security contexts, Jobs, DaemonSets...).
//!
//! Every pod-bearing input is used. Inputs whose expected result is something else are
//! listed, with the reason, in [`EXPECTED_OTHERWISE`], and are checked for that result.

use crate::check::{Outcome, ensure};
use crate::cluster::api_message;
use crate::corpus::{corpus_dir, inputs, pods_in};
use crate::harness::Harness;
use crate::pods::{layout, proxy_count};

/// What became of a corpus pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Stored with exactly one proxy: what every input should come to unless listed below.
    Injected,
    /// Stored without a proxy.
    NotInjected,
    /// Refused by our webhook.
    Denied,
    /// Refused by the API server after our patch because `spec.containers` is empty.
    NoContainers,
}

/// Inputs that are not injected or are refused, and why.
#[rustfmt::skip]
const EXPECTED_OTHERWISE: [(&str, Fate, &str); 14] = [
    ("hello-host-network.yaml", Fate::NotInjected, "hostNetwork pods are skipped"),
    ("hello-host-network-with-ns.yaml", Fate::NotInjected, "hostNetwork pods are skipped"),
    ("hello-ignore.yaml", Fate::NotInjected, "the pod opts out"),
    ("traffic-annotations-bad-excludeinboundports.yaml", Fate::Denied, "bad port list, refused as by Istio"),
    ("traffic-annotations-bad-excludeipranges.yaml", Fate::Denied, "bad CIDR list, refused as by Istio"),
    ("traffic-annotations-bad-includeinboundports.yaml", Fate::Denied, "bad port list, refused as by Istio"),
    ("traffic-annotations-bad-includeipranges.yaml", Fate::Denied, "bad CIDR list, refused as by Istio"),
    // Istio drops every default once one resource annotation is set; deploy/config.yaml
    // merges per field (resourceMerge: perField), so the default CPU limit 2 stays.
    ("traffic-annotations.yaml", Fate::Denied, "proxyCPU 4 is above the default CPU limit 2"),
    // Its only container is istio-proxy; native sidecars (the default) move it to the init
    // containers, as Istio's golden output does (`containers: []`), which the API server refuses.
    ("only-proxy-container.yaml", Fate::NoContainers, "native layout leaves no container, as Istio's"),
    // Templates we do not render are refused (unknownTemplates: deny, README "Templates").
    ("custom-template.yaml", Fate::Denied, "names the custom template"),
    ("gateway-spire.yaml", Fate::Denied, "names the spire template"),
    ("sidecar-spire.yaml", Fate::Denied, "names the spire template"),
    ("grpc-agent.yaml", Fate::Denied, "names the grpc-agent template"),
    ("grpc-simple.yaml", Fate::Denied, "names the grpc-simple template"),
];
/// The issue asks for at least this many injected pods.
const MINIMUM_INJECTED: usize = 10;

pub async fn run(harness: &Harness) -> Outcome {
    let namespace = "e2e-corpus";
    harness.injected_namespace(namespace, &[]).await?;
    let dir = corpus_dir();
    let mut fates = Vec::new();
    let mut wrong = Vec::new();
    for path in inputs(&dir)? {
        for item in pods_in(&path)? {
            let (expected, why) = EXPECTED_OTHERWISE
                .iter()
                .find(|(file, _, _)| *file == item.file)
                .map_or((Fate::Injected, "not listed as an exception"), |(_, fate, why)| {
                    (*fate, *why)
                });
            let spec = item.pod.spec.as_ref();
            if let Some(account) = spec.and_then(|s| s.service_account_name.as_ref().or(s.service_account.as_ref())) {
                harness.cluster.ensure_service_account(namespace, account).await?;
            }
            let (fate, detail) = match harness.cluster.create_pod(namespace, &item.pod).await {
                Ok(pod) => match proxy_count(&pod) {
                    0 => (Some(Fate::NotInjected), layout(&pod)),
                    1 => (Some(Fate::Injected), layout(&pod)),
                    _ => (None, layout(&pod)),
                },
                Err(error) => {
                    let message = api_message(&error);
                    let fate = if message.contains("denied the request") {
                        Some(Fate::Denied)
                    } else if message.contains("spec.containers: Required value") {
                        Some(Fate::NoContainers)
                    } else {
                        None
                    };
                    (fate, message)
                }
            };
            if fate == Some(expected) {
                fates.push(expected);
            } else {
                wrong.push(format!("{} (expected {expected:?}: {why}): {detail}", item.file));
            }
        }
    }
    ensure!(
        wrong.is_empty(),
        "{} corpus pods went wrong: {}",
        wrong.len(),
        wrong.join("; ")
    );
    let count = |fate: Fate| fates.iter().filter(|f| **f == fate).count();
    let injected = count(Fate::Injected);
    ensure!(
        injected >= MINIMUM_INJECTED,
        "only {injected} corpus pods injected, expected at least {MINIMUM_INJECTED} (corpus: {})",
        dir.display()
    );
    Ok(format!(
        "{injected} pods stored with one proxy; {} stored uninjected, {} denied and {} refused for \
         having no container left (as Istio's native output), as expected",
        count(Fate::NotInjected),
        count(Fate::Denied),
        count(Fate::NoContainers)
    ))
}
