//! Scenarios 30 and 31: what istiod reads from outside the pod spec.
//!
//! 30: path parameters. A second injector runs deploy/config.yaml for a revision of its own,
//! registered (deploy/'s `istio.io/rev` webhooks, retargeted) at
//! `https://127.0.0.1:PORT/inject/cluster/e2e-east/net/e2e-net1/extra/a--slash--b`, then
//! re-registered at the older `/inject/:ENV:cluster=e2e-west:ENV:net=e2e-net2`: the stored
//! pods carry that cluster and network in `ISTIO_META_CLUSTER_ID` and `ISTIO_META_NETWORK`,
//! the extra variable (`EXTRA=a/b`), last in name order as istiod appends them, and the
//! `topology.istio.io/network` label.
//!
//! 31: the gateway template. Istio's corpus gateway pods (`inject.istio.io/templates:
//! gateway`, one container `istio-proxy` with `image: auto`) are created through the
//! harness's injector, which runs native sidecars: each is stored as istiod's gateway template
//! lays it out: one `istio-proxy` among the containers (not a native sidecar) with a real image
//! and `proxy router`, no init container (no capture) and no startup probe, no
//! `security.istio.io/tlsMode` label, the pod sysctl `net.ipv4.ip_unprivileged_port_start=0`,
//! and a status annotation with no init containers.

use k8s_openapi::api::core::v1::Pod;

use crate::check::{Context, Outcome, ensure};
use crate::corpus::{corpus_dir, pods_in};
use crate::deploy::{self, REVISION_LABEL};
use crate::harness::Harness;
use crate::injector::RunningInjector;
use crate::pods::{PROXY, container, layout, proxy_count, test_pod};

const REVISION: &str = "e2e-paths";
const CONFIGURATION: &str = "sidecar-injector-e2e-paths";
const NETWORK_LABEL: &str = "topology.istio.io/network";

pub async fn path_parameters(harness: &Harness) -> Outcome {
    let namespace = "e2e-paths";
    harness
        .cluster
        .create_namespace(namespace, &[(REVISION_LABEL, REVISION)])
        .await?;
    let mut config = deploy::injector_config()?;
    config.revision = REVISION.to_string();
    let injector = RunningInjector::start(config).await?;
    let cases = [
        (
            "/cluster/e2e-east/net/e2e-net1/extra/a--slash--b",
            "e2e-east",
            "e2e-net1",
            Some("a/b"),
        ),
        ("/:ENV:cluster=e2e-west:ENV:net=e2e-net2", "e2e-west", "e2e-net2", None),
    ];
    let mut seen = Vec::new();
    let mut result = Ok(());
    for (index, (suffix, cluster, network, extra)) in cases.into_iter().enumerate() {
        let url = format!("{}{suffix}", injector.url());
        let configuration = deploy::for_revision(
            deploy::pointed_at(deploy::webhook_configuration()?, &url, injector.ca_pem()),
            CONFIGURATION,
            REVISION,
        );
        result = async {
            harness.cluster.register_webhook(&configuration).await?;
            let pod = harness
                .cluster
                .create_pod(namespace, &test_pod(&format!("path-{index}"), &[], &[]))
                .await
                .context(format!("creating a pod through {url}"))?;
            check_path_env(&pod, cluster, network, extra).map_err(|e| format!("{suffix}: {e}"))?;
            seen.push(format!("{suffix} → cluster {cluster}, network {network}"));
            Ok::<(), String>(())
        }
        .await;
        if result.is_err() {
            break;
        }
    }
    let unregistered = harness.cluster.unregister_webhook(CONFIGURATION).await;
    let stopped = injector.stop().await;
    result?;
    unregistered?;
    stopped?;
    Ok(format!(
        "{}; each in ISTIO_META_CLUSTER_ID / ISTIO_META_NETWORK (last, name order), label {NETWORK_LABEL}",
        seen.join("; ")
    ))
}

fn check_path_env(pod: &Pod, cluster: &str, network: &str, extra: Option<&str>) -> Result<(), String> {
    let proxy = container(pod, PROXY).ok_or_else(|| format!("no {PROXY}: {}", layout(pod)))?;
    let env: Vec<(&str, &str)> = proxy
        .env
        .iter()
        .flatten()
        .map(|var| (var.name.as_str(), var.value.as_deref().unwrap_or_default()))
        .collect();
    let mut expected = Vec::new();
    if let Some(extra) = extra {
        expected.push(("EXTRA", extra));
    }
    expected.extend([("ISTIO_META_CLUSTER_ID", cluster), ("ISTIO_META_NETWORK", network)]);
    ensure!(
        env.len() >= expected.len() && env[env.len() - expected.len()..] == expected[..],
        "proxy env ends {:?}, expected {expected:?}",
        &env[env.len().saturating_sub(expected.len())..]
    );
    let clusters = env.iter().filter(|(name, _)| *name == "ISTIO_META_CLUSTER_ID").count();
    ensure!(clusters == 1, "ISTIO_META_CLUSTER_ID set {clusters} times");
    let label = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(NETWORK_LABEL))
        .map(String::as_str);
    ensure!(
        label == Some(network),
        "label {NETWORK_LABEL} is {label:?}, expected {network}"
    );
    Ok(())
}

pub async fn gateway_template(harness: &Harness) -> Outcome {
    let namespace = "e2e-gateway";
    harness.injected_namespace(namespace, &[]).await?;
    let dir = corpus_dir();
    let mut stored = Vec::new();
    for file in ["gateway.yaml", "gateway-with-default-container.yaml"] {
        for item in pods_in(&dir.join(file))? {
            let pod = harness
                .cluster
                .create_pod(namespace, &item.pod)
                .await
                .context(format!("creating {file}"))?;
            check_gateway_pod(&pod).map_err(|e| format!("{file}: {e}"))?;
            stored.push(format!("{file}: {}", layout(&pod)));
        }
    }
    Ok(format!(
        "stored as istiod's gateway template lays them out (proxy router among the containers, \
         no init container, no capture, unprivileged ports): {}",
        stored.join("; ")
    ))
}

/// What istiod's gateway template gives a stored pod: one `istio-proxy` among the containers
/// running `proxy router` with a real image, no init container, no tlsMode label, the
/// unprivileged-ports sysctl, and a status annotation naming no init container.
fn check_gateway_pod(pod: &Pod) -> Result<(), String> {
    let spec = pod.spec.as_ref().ok_or("stored without a spec")?;
    let containers: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    ensure!(
        containers.contains(&PROXY) && proxy_count(pod) == 1,
        "stored as {}; the gateway proxy must stay among the containers",
        layout(pod)
    );
    ensure!(
        spec.init_containers.as_ref().is_none_or(Vec::is_empty),
        "stored as {}; the gateway template adds no init container",
        layout(pod)
    );
    let proxy = container(pod, PROXY).ok_or("no istio-proxy")?;
    let image = proxy.image.clone().unwrap_or_default();
    ensure!(
        image != "auto" && image.contains("proxyv2"),
        "proxy image {image:?} was not filled in"
    );
    let args = proxy.args.clone().unwrap_or_default();
    ensure!(
        args.get(..2) == Some(&["proxy".to_string(), "router".to_string()][..]),
        "proxy args {args:?}, expected proxy router"
    );
    ensure!(proxy.startup_probe.is_none(), "the gateway proxy has a startup probe");
    let sysctls = spec.security_context.as_ref().and_then(|s| s.sysctls.as_ref());
    ensure!(
        sysctls.is_some_and(|list| list
            .iter()
            .any(|s| s.name == "net.ipv4.ip_unprivileged_port_start" && s.value == "0")),
        "pod sysctls {sysctls:?} lack net.ipv4.ip_unprivileged_port_start=0"
    );
    let labels = pod.metadata.labels.as_ref();
    ensure!(
        labels.is_none_or(|l| !l.contains_key("security.istio.io/tlsMode")),
        "the gateway pod is labelled security.istio.io/tlsMode"
    );
    let status = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("sidecar.istio.io/status"))
        .ok_or("no sidecar.istio.io/status")?;
    let status: serde_json::Value = serde_json::from_str(status).map_err(|e| e.to_string())?;
    ensure!(
        status["initContainers"].is_null() && status["containers"] == serde_json::json!([PROXY]),
        "status annotation {status}"
    );
    Ok(())
}
