//! Scenario 46: the RBAC that `deploy/rbac.yaml` grants is enough, and no more.
//!
//! Every other scenario's injector uses the admin client, so a missing grant would pass them
//! all. Here deploy/rbac.yaml's ServiceAccount, ClusterRole and ClusterRoleBinding are applied
//! (the ServiceAccount in deploy/'s namespace), and an injector runs deploy/config.yaml
//! (`istio.source: cluster`) with a client that impersonates that ServiceAccount, so the API
//! server authorizes each of its calls as it would in production:
//! - the installed Istio's ConfigMaps are read (a reload is counted) and a pod gets their
//!   settings; the namespace, LimitRange and ResourceQuota caches sync; a VPA targeting a
//!   Deployment sizes its pod (VPAs and ReplicaSets watched); and
//!   `sidecar_injector_watch_errors_total` stays at 0 for every cache;
//! - a denied pod gets its Event, read back from `events.k8s.io/v1`, and no Event write
//!   failed (`sidecar_injector_events_total{result="failed"}` is 0).
//!
//! First, the same injector with an account that has no grants must count watch errors: the
//! counter is what would show a missing grant. Then SubjectAccessReviews pin the grant down:
//! the account may do each thing above, and may not create or list pods, read or list
//! Secrets, change namespaces, ConfigMaps or webhook configurations, or delete Events. That the chart's RBAC equals deploy/rbac.yaml is
//! scenario 40's (every object compared field by field).

use std::cell::Cell;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, PatchParams, PostParams};
use serde_json::{Value, json};
use sidecar_injector::manifest::read_documents;

use super::events::{EVENT_TRIES, events_on};
use super::installed_istio::{FIRST, Installed};
use super::manifests::{apply_with, kind, name};
use crate::check::{Context, Outcome, ensure, eventually, poll};
use crate::cluster::client_as;
use crate::deploy;
use crate::harness::Harness;
use crate::injector::RunningInjector;
use crate::pods::{PROXY, container, test_pod};
use crate::vpa::{create_vpa, deployment_chain, owned_pod};

/// The revision this scenario's injector serves (its namespaces are named after it).
const REVISION: &str = "e2e-rbac";
/// Failed list and watch calls, by cache.
const WATCH_ERRORS: &str = "sidecar_injector_watch_errors_total";
/// Every cache the server keeps with deploy/config.yaml, as the counter names them.
const CACHES: [&str; 6] = [
    "namespaces",
    "limitranges",
    "resourcequotas",
    "verticalpodautoscalers",
    "replicasets",
    "istio-configmaps",
];
/// Event writes the API server refused.
const EVENTS_FAILED: &str = "sidecar_injector_events_total{result=\"failed\"}";

/// A ServiceAccount, as RBAC names its user and groups.
struct Account {
    namespace: String,
    name: String,
}

impl Account {
    fn user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    fn groups(&self) -> Vec<String> {
        vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", self.namespace),
            "system:authenticated".into(),
        ]
    }
}

pub async fn run(harness: &Harness) -> Outcome {
    let objects = rbac_objects()?;
    let account = bound_account(&objects, &harness.injector_namespace)?;
    let params = PatchParams::apply("sidecar-injector-e2e").force();
    for object in &objects {
        apply_with(harness, object, &params).await.context(format!(
            "applying deploy/rbac.yaml's {} {}",
            kind(object),
            name(object)
        ))?;
    }
    let result = async {
        let detector = missing_grants_are_counted(harness, &account).await?;
        let reviews = access_reviews(harness, &account).await?;
        let served = serve_as(harness, &account).await?;
        Ok::<String, String>(format!("{detector}; {reviews}; {served}"))
    }
    .await;
    let removed = remove_cluster_objects(harness, &objects).await;
    let message = result?;
    removed?;
    Ok(message)
}

/// deploy/rbac.yaml's objects.
fn rbac_objects() -> Result<Vec<Value>, String> {
    let path = deploy::deploy_dir().join("rbac.yaml");
    let text = std::fs::read_to_string(&path).context(format!("reading {}", path.display()))?;
    read_documents(&text).context(format!("parsing {}", path.display()))
}

/// The ServiceAccount of deploy/rbac.yaml, which must be in deploy/'s namespace and be the
/// subject of its ClusterRoleBinding.
fn bound_account(objects: &[Value], namespace: &str) -> Result<Account, String> {
    let account = objects
        .iter()
        .find(|object| kind(object) == "ServiceAccount")
        .ok_or("deploy/rbac.yaml has no ServiceAccount")?;
    let found = Account {
        namespace: account["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        name: name(account).to_string(),
    };
    ensure!(
        found.namespace == namespace,
        "deploy/rbac.yaml's ServiceAccount is in {:?}, deploy/'s namespace is {namespace}",
        found.namespace
    );
    let subject = json!({"kind": "ServiceAccount", "name": found.name, "namespace": found.namespace});
    let bound = objects
        .iter()
        .filter(|object| kind(object) == "ClusterRoleBinding")
        .any(|binding| binding["subjects"].as_array().is_some_and(|s| s.contains(&subject)));
    ensure!(
        bound,
        "no ClusterRoleBinding in deploy/rbac.yaml names {}",
        found.user()
    );
    Ok(found)
}

/// An injector acting as an account of `account`'s namespace that nothing grants anything
/// counts its namespace watch's errors: the counter detects a missing grant.
async fn missing_grants_are_counted(harness: &Harness, account: &Account) -> Result<String, String> {
    let nobody = Account {
        namespace: account.namespace.clone(),
        name: "e2e-no-grants".into(),
    };
    let client = client_as(harness.kubeconfig(), &nobody.user()).await?;
    let injector = RunningInjector::start_with_cluster(deploy::injector_config()?, client).await?;
    let series = format!("{WATCH_ERRORS}{{cache=\"namespaces\"}}");
    let counted = eventually("a forbidden namespace watch is counted", || async {
        match injector.counter(&series).await? {
            0 => Err(format!("{series} is 0")),
            n => Ok(n),
        }
    })
    .await;
    injector.stop().await?;
    Ok(format!("without grants: {} namespace watch errors counted", counted?))
}

/// What the ServiceAccount must be allowed (`true`) and refused (`false`):
/// (verb, API group, resource, namespace (`None`: all)).
const REVIEWS: &[(&str, &str, &str, Option<&str>, bool)] = &[
    ("get", "", "namespaces", None, true),
    ("list", "", "namespaces", None, true),
    ("watch", "", "namespaces", None, true),
    ("list", "", "limitranges", None, true),
    ("watch", "", "limitranges", None, true),
    ("list", "", "resourcequotas", None, true),
    ("watch", "", "resourcequotas", None, true),
    ("list", "", "configmaps", Some("istio-system"), true),
    ("watch", "", "configmaps", Some("istio-system"), true),
    ("list", "autoscaling.k8s.io", "verticalpodautoscalers", None, true),
    ("watch", "autoscaling.k8s.io", "verticalpodautoscalers", None, true),
    ("list", "apps", "replicasets", None, true),
    ("watch", "apps", "replicasets", None, true),
    ("create", "events.k8s.io", "events", Some("default"), true),
    ("patch", "events.k8s.io", "events", Some("default"), true),
    ("create", "", "pods", None, false),
    ("list", "", "pods", None, false),
    ("get", "", "secrets", None, false),
    ("list", "", "secrets", None, false),
    ("update", "", "namespaces", None, false),
    ("patch", "", "namespaces", None, false),
    ("update", "", "configmaps", Some("istio-system"), false),
    ("delete", "events.k8s.io", "events", Some("default"), false),
    (
        "update",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        None,
        false,
    ),
];

/// Asks the API server, with a SubjectAccessReview each, whether `account` may do each of
/// [`REVIEWS`]; every answer must be the expected one.
async fn access_reviews(harness: &Harness, account: &Account) -> Result<String, String> {
    let api = Api::<SubjectAccessReview>::all(harness.cluster.client().clone());
    let mut wrong = Vec::new();
    for &(verb, group, resource, namespace, expected) in REVIEWS {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(account.user()),
                groups: Some(account.groups()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    namespace: namespace.map(str::to_string),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .context(format!("SubjectAccessReview {verb} {group}/{resource}"))?;
        let allowed = answer.status.is_some_and(|status| status.allowed);
        if allowed != expected {
            let scope = namespace.unwrap_or("all namespaces");
            wrong.push(format!("{verb} {group}/{resource} in {scope}: allowed {allowed}"));
        }
    }
    ensure!(wrong.is_empty(), "{}: {}", account.user(), wrong.join("; "));
    let allowed = REVIEWS.iter().filter(|review| review.4).count();
    let refused: Vec<String> = REVIEWS
        .iter()
        .filter(|review| !review.4)
        .map(|(verb, _, resource, _, _)| format!("{verb} {resource}"))
        .collect();
    Ok(format!(
        "{} SubjectAccessReviews as expected ({allowed} allowed; refused: {})",
        REVIEWS.len(),
        refused.join(", ")
    ))
}

/// The injector acting as `account`: it reads the installed Istio, syncs, follows a VPA,
/// emits a denial's Event, and none of its watches or Event writes failed.
async fn serve_as(harness: &Harness, account: &Account) -> Result<String, String> {
    let client = client_as(harness.kubeconfig(), &account.user()).await?;
    let installed = Installed::start_with_client(harness, REVISION, client).await?;
    let result = async {
        installed.injector.wait_synced().await?;
        let plain = installed.settings_of(&installed.create("plain").await?)?;
        ensure!(plain == FIRST, "the first pod has {plain:?}, expected {FIRST:?}");
        let vpa = follows_a_vpa(harness, &installed).await?;
        let event = denial_event(harness, &installed).await?;
        let mut failed = Vec::new();
        for cache in CACHES {
            let series = format!("{WATCH_ERRORS}{{cache=\"{cache}\"}}");
            match installed.injector.counter(&series).await? {
                0 => {}
                n => failed.push(format!("{series} {n}")),
            }
        }
        ensure!(failed.is_empty(), "watches failed: {}", failed.join(", "));
        let event_failures = installed.injector.counter(EVENTS_FAILED).await?;
        ensure!(event_failures == 0, "{EVENTS_FAILED} is {event_failures}");
        Ok(format!(
            "as {}: installed Istio read (image tag {}), caches synced, {vpa}, {event}, 0 watch errors in {} caches, \
             0 failed Event writes",
            account.user(),
            FIRST.tag,
            CACHES.len()
        ))
    }
    .await;
    installed.finish(result).await
}

/// A VPA on a Deployment of the app namespace sizes the proxy of a pod of its ReplicaSet:
/// the VPA and ReplicaSet watches work with the account's grants.
async fn follows_a_vpa(harness: &Harness, installed: &Installed<'_>) -> Result<String, String> {
    let client = harness.cluster.client();
    let namespace = &installed.app_namespace;
    let owner = deployment_chain(client, namespace, "web", "web-rbac", "6f7d8c").await?;
    let target = json!([{"containerName": PROXY, "target": {"cpu": "35m", "memory": "80Mi"}}]);
    create_vpa(
        client,
        namespace,
        "web",
        "web",
        json!({"updatePolicy": {"updateMode": "Off"}}),
        target,
    )
    .await?;
    let made = Cell::new(0);
    eventually("a pod of the VPA's Deployment gets its 35m", || async {
        let index = made.replace(made.get() + 1);
        let pod = owned_pod(&format!("web-rbac-{index}"), &owner, "6f7d8c", &[]);
        let pod = harness
            .cluster
            .create_pod(namespace, &pod)
            .await
            .context("creating a pod of the VPA's Deployment")?;
        let cpu = container(&pod, PROXY)
            .and_then(|proxy| proxy.resources.as_ref()?.requests.as_ref()?.get("cpu").cloned())
            .map(|quantity| quantity.0);
        match cpu.as_deref() {
            Some("35m") => Ok(()),
            other => Err(format!("proxy CPU request {other:?}")),
        }
    })
    .await?;
    Ok(format!(
        "VPA target 35m taken (pod {} of ReplicaSet web-rbac)",
        made.get()
    ))
}

/// A pod with a bad annotation is denied, and the denial's Event on it is read back.
async fn denial_event(harness: &Harness, installed: &Installed<'_>) -> Result<String, String> {
    let namespace = &installed.app_namespace;
    let pod = test_pod("denied", &[], &[("sidecar.istio.io/proxyCPU", "abc")]);
    ensure!(
        harness.cluster.create_pod(namespace, &pod).await.is_err(),
        "the pod with proxyCPU=abc was admitted"
    );
    let event = poll("the denial Event on Pod denied", EVENT_TRIES, || async {
        let events = events_on(harness, namespace, ("Pod", "denied"), "InjectionDenied").await?;
        events.into_iter().next().ok_or_else(|| "none yet".to_string())
    })
    .await?;
    let note = event.note.unwrap_or_default();
    ensure!(
        note.contains("sidecar.istio.io/proxyCPU"),
        "denial Event note: {note:?}"
    );
    Ok("denial Event on Pod denied read back".to_string())
}

/// Deletes the cluster-scoped objects applied (the ServiceAccount goes with its namespace).
async fn remove_cluster_objects(harness: &Harness, objects: &[Value]) -> Result<(), String> {
    let client = harness.cluster.client();
    let params = DeleteParams::default();
    for object in objects {
        let deleted = match kind(object) {
            "ClusterRole" => Api::<ClusterRole>::all(client.clone())
                .delete(name(object), &params)
                .await
                .map(drop),
            "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(client.clone())
                .delete(name(object), &params)
                .await
                .map(drop),
            _ => Ok(()),
        };
        deleted.context(format!("deleting {} {}", kind(object), name(object)))?;
    }
    Ok(())
}
