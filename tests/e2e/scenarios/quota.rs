//! Scenarios 20 to 22: ResourceQuota foresight, each pod read back after the API server's own
//! quota admission.
//!
//! No kube-controller-manager runs here, so each quota's `status` (hard and used) is written
//! by the test through the `status` subresource, as the quota controller would; the API
//! server's quota admission then charges each admitted pod to `used` itself. Each case waits
//! until the injector's ResourceQuota cache has the status (a dry run of its pod comes back
//! adjusted or denied by us) before creating the pod.

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::check::{Outcome, ensure, eventually};
use crate::cluster::api_message;
use crate::harness::Harness;
use crate::pods::{INIT, PROXY, container};
use crate::sizing::{Sizes, app_pod};

const WEBHOOK: &str = "namespace.sidecar-injector.istio.io";
const APP: Sizes = Sizes {
    requests: &[("cpu", "500m"), ("memory", "256Mi")],
    limits: &[("cpu", "1"), ("memory", "512Mi")],
};

/// Creates quota `name` with `spec` and writes its `status` (`hard` from the spec, `used`).
async fn create_quota(harness: &Harness, namespace: &str, name: &str, spec: Value, used: Value) -> Result<(), String> {
    let api = Api::<ResourceQuota>::namespaced(harness.cluster.client().clone(), namespace);
    let quota: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).map_err(|e| e.to_string())?;
    api.create(&PostParams::default(), &quota)
        .await
        .map_err(|e| format!("creating ResourceQuota {name}: {}", api_message(&e)))?;
    let status = json!({"status": {"hard": spec["hard"], "used": used}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(|e| format!("writing the status of ResourceQuota {name}: {}", api_message(&e)))?;
    Ok(())
}

fn cpu_request(pod: &Pod, name: &str) -> String {
    container(pod, name)
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|m| m.get("cpu"))
        .map_or_else(|| "-".into(), |q| q.0.clone())
}

fn limits(pod: &Pod, name: &str) -> String {
    let limits = container(pod, name)
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.limits.as_ref());
    limits.map_or_else(
        || "-".into(),
        |m| {
            format!(
                "{:?}",
                m.iter().map(|(k, v)| format!("{k}={}", v.0)).collect::<Vec<_>>()
            )
        },
    )
}

/// Dry-runs `pod` until the injector's answer reflects the quota: `check` holds for the
/// stored pod, or the denial names the quota.
async fn until_seen(
    harness: &Harness,
    namespace: &str,
    pod: &Pod,
    quota: &str,
    check: impl Fn(&Pod) -> bool,
) -> Result<(), String> {
    eventually("the injector sees the quota status", || async {
        match harness.cluster.dry_run_pod(namespace, pod).await {
            Ok(stored) if check(&stored) => Ok(()),
            Ok(stored) => Err(format!("not yet: proxy CPU request {}", cpu_request(&stored, PROXY))),
            Err(error) => {
                let message = api_message(&error);
                ensure!(message.contains(&format!("ResourceQuota {quota}:")), "{message}");
                Ok(())
            }
        }
    })
    .await
}

/// Dry-runs `pod` until it is denied for quota `team`'s `requests.cpu`; the denial's message.
/// An admission (the injector has not seen the quota yet) is retried, any other denial fails.
async fn until_denied_by_team_quota(
    harness: &Harness,
    namespace: &str,
    pod: &Pod,
    what: &str,
) -> Result<String, String> {
    eventually(what, || async {
        match harness.cluster.dry_run_pod(namespace, pod).await {
            Ok(stored) => Err(format!("admitted with proxy limits {}", limits(&stored, PROXY))),
            Err(error) => {
                let message = api_message(&error);
                ensure!(
                    message.contains("ResourceQuota team: requests.cpu would be exceeded"),
                    "{message}"
                );
                Ok(message)
            }
        }
    })
    .await
}

/// Scenario 20: a quota on limits: every container, ours included, has the limits.
pub async fn limits_required(harness: &Harness) -> Outcome {
    let namespace = "e2e-quota-limits";
    harness.injected_namespace(namespace, &[]).await?;
    let hard = json!({"limits.cpu": "10", "limits.memory": "10Gi", "requests.cpu": "10", "requests.memory": "10Gi"});
    let zero = json!({"limits.cpu": "0", "limits.memory": "0", "requests.cpu": "0", "requests.memory": "0"});
    create_quota(harness, namespace, "limits", json!({"hard": hard}), zero).await?;
    let pod = harness
        .cluster
        .create_pod(namespace, &app_pod("limited", APP))
        .await
        .map_err(|e| format!("not admitted: {}", api_message(&e)))?;
    for name in [PROXY, INIT] {
        let stored = limits(&pod, name);
        ensure!(
            stored.contains("cpu=") && stored.contains("memory="),
            "{name} limits {stored}"
        );
    }
    let shipped = format!(
        "admitted; proxy limits {}, init limits {}",
        limits(&pod, PROXY),
        limits(&pod, INIT)
    );
    let policy = with_policy(harness).await?;
    Ok(format!("shipped config: {shipped}; {policy}"))
}

const CONFIGURATION: &str = "sidecar-injector-e2e-quota";
/// The revision the second injector serves.
const REVISION: &str = "e2e-quota";

/// A second injector whose config sets no limits, no limit bounds and `onQuota: deny`,
/// serving a revision of its own (as scenario 14's): a nearly full quota denies instead of
/// fitting, and a quota requiring limits gets them filled from the requests. The
/// registration is deleted and the injector stopped whatever the outcome.
async fn with_policy(harness: &Harness) -> Result<String, String> {
    let namespace = "e2e-quota-policy";
    harness
        .cluster
        .create_namespace(namespace, &[(crate::deploy::REVISION_LABEL, REVISION)])
        .await?;
    let mut config = crate::deploy::injector_config()?;
    config.resources.limits = Default::default();
    config.bounds.retain(|field, _| !field.ends_with(".limit"));
    config.on_quota = sidecar_injector::config::OnQuota::Deny;
    config.revision = REVISION.to_string();
    let injector =
        crate::injector::RunningInjector::start_with_cluster(config, harness.cluster.client().clone()).await?;
    let configuration = crate::deploy::for_revision(
        crate::deploy::pointed_at(
            crate::deploy::webhook_configuration()?,
            &injector.url(),
            injector.ca_pem(),
        ),
        CONFIGURATION,
        REVISION,
    );
    let outcome = match harness.cluster.register_webhook(&configuration).await {
        Ok(()) => policy_cases(harness, &injector, namespace).await,
        Err(error) => Err(error),
    };
    let unregistered = harness.cluster.unregister_webhook(CONFIGURATION).await;
    let stopped = injector.stop().await;
    let outcome = outcome?;
    unregistered?;
    stopped?;
    Ok(outcome)
}

async fn policy_cases(
    harness: &Harness,
    injector: &crate::injector::RunningInjector,
    namespace: &str,
) -> Result<String, String> {
    injector.wait_synced().await?;
    let pod = app_pod("filled", APP);
    harness
        .cluster
        .until_injected("the API server calls the revision's injector", namespace, &pod)
        .await?;
    let unfilled = harness
        .cluster
        .dry_run_pod(namespace, &pod)
        .await
        .map_err(|e| api_message(&e))?;
    ensure!(
        limits(&unfilled, PROXY) == "-",
        "without a quota the proxy has limits {}",
        limits(&unfilled, PROXY)
    );
    let hard = json!({"limits.cpu": "10", "limits.memory": "10Gi", "requests.cpu": "2"});
    let used = json!({"limits.cpu": "0", "limits.memory": "0", "requests.cpu": "1450m"});
    create_quota(harness, namespace, "team", json!({"hard": hard}), used).await?;
    // The app requests 500m and the proxy 100m: 600m, with 550m left, so the pod is denied
    // once the injector sees the quota.
    let message = until_denied_by_team_quota(harness, namespace, &pod, "the injector sees the quota").await?;
    let expected = "ResourceQuota team: requests.cpu would be exceeded: the pod needs 600m, of which the injected containers add 100m, and 550m is left (hard 2, used 1450m)";
    ensure!(message.contains(expected), "expected {expected:?} in {message}");
    // Room again: the limits are filled from the requests and the pod is stored.
    let api = Api::<ResourceQuota>::namespaced(harness.cluster.client().clone(), namespace);
    let status = json!({"status": {"used": {"limits.cpu": "0", "limits.memory": "0", "requests.cpu": "0"}}});
    api.patch_status("team", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(|e| format!("writing the quota status: {}", api_message(&e)))?;
    let (stored, warnings) = eventually("the injector sees the new used figure", || async {
        harness.cluster.create_pod_with_warnings(namespace, &pod).await
    })
    .await?;
    for name in [PROXY, INIT] {
        let found = limits(&stored, name);
        ensure!(
            found.contains("cpu=100m") && found.contains("memory=128Mi"),
            "{name} limits {found}"
        );
    }
    let warning = warnings
        .iter()
        .find(|w| w.contains("ResourceQuota team requires limits.cpu"))
        .ok_or(format!("no fill warning in {warnings:?}"))?;
    Ok(format!(
        "no limits in the config: onQuota deny: {message}; then limits filled from the requests (proxy and init 100m/128Mi): {warning}"
    ))
}

/// Scenario 21: a nearly full quota: the proxy shrinks to fit; a pod that cannot fit is
/// denied with our message.
pub async fn nearly_full(harness: &Harness) -> Outcome {
    let namespace = "e2e-quota-full";
    harness.injected_namespace(namespace, &[]).await?;
    // 2 CPU, 1450m used: 550m left; the app requests 500m, the proxy 100m.
    create_quota(
        harness,
        namespace,
        "team",
        json!({"hard": {"requests.cpu": "2"}}),
        json!({"requests.cpu": "1450m"}),
    )
    .await?;
    let pod = app_pod("fits", APP);
    until_seen(harness, namespace, &pod, "team", |stored| {
        cpu_request(stored, PROXY) == "50m"
    })
    .await?;
    let (stored, warnings) = harness
        .cluster
        .create_pod_with_warnings(namespace, &pod)
        .await
        .map_err(|e| format!("fit: not admitted: {e}"))?;
    ensure!(
        cpu_request(&stored, PROXY) == "50m",
        "proxy CPU request {}",
        cpu_request(&stored, PROXY)
    );
    let warning = warnings
        .iter()
        .find(|w| w.contains("ResourceQuota team"))
        .ok_or(format!("no quota warning in {warnings:?}"))?;
    ensure!(warning.contains("the API server has the last word"), "{warning}");
    // The API server charged 550m: 2 of 2 are used. The next pod cannot fit.
    let full = app_pod("too-many", APP);
    let message =
        until_denied_by_team_quota(harness, namespace, &full, "the injector sees the new used figure").await?;
    let prefix = format!(
        "admission webhook \"{WEBHOOK}\" denied the request: ResourceQuota team: requests.cpu would be exceeded"
    );
    ensure!(message.starts_with(&prefix), "expected {prefix:?}, got {message}");
    ensure!(
        harness.cluster.create_pod(namespace, &full).await.is_err(),
        "the pod that cannot fit was stored"
    );
    Ok(format!("fit: proxy 100m → 50m ({warning}); deny: {message}"))
}

/// Scenario 22: a quota scoped to Terminating pods applies only to them.
pub async fn scoped(harness: &Harness) -> Outcome {
    let namespace = "e2e-quota-scoped";
    harness.injected_namespace(namespace, &[]).await?;
    create_quota(
        harness,
        namespace,
        "jobs",
        json!({"hard": {"requests.cpu": "2"}, "scopes": ["Terminating"]}),
        json!({"requests.cpu": "1450m"}),
    )
    .await?;
    let mut job = app_pod("job", APP);
    if let Some(spec) = job.spec.as_mut() {
        spec.active_deadline_seconds = Some(600);
    }
    until_seen(harness, namespace, &job, "jobs", |stored| {
        cpu_request(stored, PROXY) == "50m"
    })
    .await?;
    let stored_job = harness
        .cluster
        .create_pod(namespace, &job)
        .await
        .map_err(|e| format!("job: {}", api_message(&e)))?;
    ensure!(
        cpu_request(&stored_job, PROXY) == "50m",
        "terminating pod: proxy {}",
        cpu_request(&stored_job, PROXY)
    );
    let service = harness
        .cluster
        .create_pod(namespace, &app_pod("service", APP))
        .await
        .map_err(|e| format!("service: {}", api_message(&e)))?;
    ensure!(
        cpu_request(&service, PROXY) == "100m",
        "non-terminating pod: proxy {}",
        cpu_request(&service, PROXY)
    );
    Ok("Terminating pod: proxy 50m to fit; NotTerminating pod: proxy 100m, quota not applied".into())
}
