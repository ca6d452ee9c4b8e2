//! Scenario 33: two injecting webhooks registered for the same pods (ours and an istiod stand-in,
//! here a second injector of ours with another proxy image) give each pod exactly one proxy,
//! whichever runs first.
//!
//! The API server calls mutating webhooks in the order of their configurations' names, then
//! calls again (`reinvocationPolicy: IfNeeded`) those that ran before a later one changed the
//! pod. The first injector adds the proxy and `sidecar.istio.io/status`; the second, and the
//! reinvoked first, see the status and skip, as istiod does. The registrations are named so
//! that ours sorts first, then swapped: the stored pod carries the proxy image of whichever
//! sorted first, and one proxy both times.

use crate::check::{Context, Outcome, ensure};
use crate::deploy::{self, REVISION_LABEL};
use crate::harness::Harness;
use crate::injector::RunningInjector;
use crate::pods::{PROXY, container, layout, proxy_count, test_pod};

const REVISION: &str = "e2e-takeover";
const OURS: &str = "docker.io/istio/proxyv2:1.28.0-ours";
const STAND_IN: &str = "docker.io/istio/proxyv2:1.28.0-istiod";

pub async fn run(harness: &Harness) -> Outcome {
    let namespace = "e2e-takeover";
    harness
        .cluster
        .create_namespace(namespace, &[(REVISION_LABEL, REVISION)])
        .await?;
    let start = |image: &'static str| async move {
        let mut config = deploy::injector_config()?;
        config.revision = REVISION.to_string();
        config.proxy_image = image.to_string();
        RunningInjector::start(config).await
    };
    let ours = start(OURS).await?;
    let stand_in = start(STAND_IN).await?;
    let register = |name: &str, injector: &RunningInjector| -> Result<_, String> {
        Ok(deploy::for_revision(
            deploy::pointed_at(deploy::webhook_configuration()?, &injector.url(), injector.ca_pem()),
            name,
            REVISION,
        ))
    };
    let mut names: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let result = async {
        for (round, (first, second, expected)) in [
            ((&ours, "ours"), (&stand_in, "istiod"), OURS),
            ((&stand_in, "istiod"), (&ours, "ours"), STAND_IN),
        ]
        .into_iter()
        .enumerate()
        {
            for name in names.drain(..) {
                harness.cluster.unregister_webhook(&name).await?;
            }
            for (prefix, (injector, who)) in [("a", first), ("b", second)] {
                let name = format!("{prefix}-e2e-takeover-{who}");
                harness.cluster.register_webhook(&register(&name, injector)?).await?;
                names.push(name);
            }
            let pod = harness
                .cluster
                .create_pod(namespace, &test_pod(&format!("round-{round}"), &[], &[]))
                .await
                .context(format!("creating the pod of round {round}"))?;
            ensure!(
                proxy_count(&pod) == 1,
                "round {round}: {} proxies: {}",
                proxy_count(&pod),
                layout(&pod)
            );
            let image = container(&pod, PROXY).and_then(|c| c.image.clone()).unwrap_or_default();
            ensure!(
                image == expected,
                "round {round}: proxy image {image}, expected {expected} (the first webhook's)"
            );
            seen.push(format!("{} first → one proxy, its image", first.1));
        }
        Ok::<(), String>(())
    }
    .await;
    for name in &names {
        let _ = harness.cluster.unregister_webhook(name).await;
    }
    let stopped = (ours.stop().await, stand_in.stop().await);
    result?;
    stopped.0?;
    stopped.1?;
    Ok(format!(
        "two injecting webhooks on the same pods, called in name order: {}",
        seen.join("; ")
    ))
}
