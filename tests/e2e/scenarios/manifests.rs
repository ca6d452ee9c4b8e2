//! Scenario 10: the API server accepts every manifest in deploy/, as
//! `kubectl apply --dry-run=server -k` would: each kustomization is built with a real
//! kustomize and every object is server-side applied with `dryRun: All`, through discovery.
//!
//! - the base (`deploy/`);
//! - `deploy/overlays/certs`, with certificates made by the real binary's `certs` command:
//!   its Secret must be the one the Deployment mounts, and every webhook must carry the
//!   caBundle that `certs` printed;
//! - `deploy/overlays/cert-manager`: cert-manager's kinds are not served here (no CRDs), so
//!   its Issuers and Certificates are reported as such and the rest is applied; its wiring
//!   (inject-ca-from → Certificate → Secret the Deployment mounts, Service name) is checked.
//!
//! The Deployment's pod template is also created (dry run) in a namespace enforcing Pod
//! Security `restricted`, which the injector's own namespace enforces.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Value, json};

use crate::check::{Context, Outcome, ensure};
use crate::cluster::api_message;
use crate::deploy;
use crate::harness::Harness;
use crate::kustomize::Kustomize;

/// The kinds that a cluster without cert-manager does not serve.
const CERT_MANAGER_GROUP: &str = "cert-manager.io";
/// The Service the webhook is reached by (deploy/service.yaml).
const SERVICE: &str = "sidecar-injector";

pub async fn run(harness: &Harness) -> Outcome {
    let kustomize = Kustomize::find()?;
    let deploy_copy = deploy::copy_to(harness.workdir())?;
    let certs_dir = deploy_copy.join("overlays/certs");
    let ca_bundle = make_certs(&certs_dir.join("out"), &harness.injector_namespace)?;
    let base = kustomize.build(&deploy_copy).context("base")?;
    let certs = kustomize.build(&certs_dir).context("overlays/certs")?;
    let cert_manager = kustomize
        .build(&deploy_copy.join("overlays/cert-manager"))
        .context("overlays/cert-manager")?;

    let deployment = find(&base, "Deployment").ok_or("the base has no Deployment")?;
    let secrets = mounted_secrets(deployment);
    check_certs_overlay(&certs, &ca_bundle, &secrets).context("overlays/certs")?;
    check_cert_manager_overlay(&cert_manager, &secrets).context("overlays/cert-manager")?;

    let mut applied = 0;
    let mut not_served = Vec::new();
    for (name, objects) in [
        ("base", &base),
        ("overlays/certs", &certs),
        ("overlays/cert-manager", &cert_manager),
    ] {
        for object in objects {
            let served = dry_run_apply(harness, object)
                .await
                .context(format!("{name}: {}", describe(object)))?;
            if served {
                applied += 1;
            } else {
                not_served.push(describe(object));
            }
        }
    }
    restricted_pod(harness, deployment).await?;
    Ok(format!(
        "{applied} objects accepted (built with {}); not served here: {}; overlays wired to the mounted Secret, \
         `certs` caBundle in every webhook; Deployment pod passes Pod Security restricted",
        kustomize.describe(),
        not_served.join(", ")
    ))
}

/// Runs `sidecar-injector certs` into `out` and returns the caBundle it printed, checked
/// against the ca.crt it wrote.
fn make_certs(out: &Path, namespace: &str) -> Result<String, String> {
    make_certs_for(out, SERVICE, namespace)
}

/// [`make_certs`] for the Service `service`.
pub(super) fn make_certs_for(out: &Path, service: &str, namespace: &str) -> Result<String, String> {
    let binary = env!("CARGO_BIN_EXE_sidecar-injector");
    let output = Command::new(binary)
        .args(["certs", "--service", service, "--namespace", namespace, "--out"])
        .arg(out)
        .output()
        .context(format!("running {binary} certs"))?;
    ensure!(
        output.status.success(),
        "sidecar-injector certs failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let ca = std::fs::read(out.join("ca.crt")).context("reading ca.crt")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&printed)
        .context(format!(
            "sidecar-injector certs printed {printed:?}, which is not base64"
        ))?;
    ensure!(decoded == ca, "the caBundle printed by `certs` is not ca.crt");
    ensure!(
        String::from_utf8_lossy(&ca).starts_with("-----BEGIN CERTIFICATE-----"),
        "ca.crt is not a PEM certificate"
    );
    Ok(printed)
}

/// The Secret the overlay makes is the one the Deployment mounts, and every webhook carries
/// the caBundle that `certs` printed.
pub(super) fn check_certs_overlay(objects: &[Value], ca_bundle: &str, mounted: &[String]) -> Result<(), String> {
    let secret = find(objects, "Secret").ok_or("no Secret")?;
    ensure!(
        mounted.iter().any(|m| m == name(secret)),
        "Secret {} is not the one the Deployment mounts ({mounted:?})",
        name(secret)
    );
    let configuration = find(objects, "MutatingWebhookConfiguration").ok_or("no webhook configuration")?;
    let webhooks = configuration["webhooks"].as_array().ok_or("no webhooks")?;
    for webhook in webhooks {
        // kustomize folds long base64 over lines, which the API server accepts.
        let bundle: String = webhook["clientConfig"]["caBundle"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        ensure!(
            bundle == ca_bundle,
            "webhook {} has caBundle {bundle:?}",
            webhook["name"]
        );
    }
    Ok(())
}

/// What no cert-manager checks here: the inject-ca-from annotation names a Certificate of the
/// overlay, whose Secret the Deployment mounts and whose names include the Service's.
pub(super) fn check_cert_manager_overlay(objects: &[Value], mounted: &[String]) -> Result<(), String> {
    let configuration = find(objects, "MutatingWebhookConfiguration").ok_or("no webhook configuration")?;
    let source = configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        .as_str()
        .ok_or("no cert-manager.io/inject-ca-from annotation")?;
    let certificate = objects
        .iter()
        .find(|object| kind(object) == "Certificate" && format!("{}/{}", namespace(object), name(object)) == source)
        .ok_or(format!(
            "inject-ca-from names {source}, which is no Certificate of the overlay"
        ))?;
    let secret = certificate["spec"]["secretName"].as_str().unwrap_or_default();
    ensure!(
        mounted.iter().any(|m| m == secret),
        "Certificate {source} writes Secret {secret}, which the Deployment does not mount ({mounted:?})"
    );
    let service_name = format!("{SERVICE}.{}.svc", namespace(certificate));
    let names = &certificate["spec"]["dnsNames"];
    ensure!(
        names
            .as_array()
            .is_some_and(|list| list.iter().any(|n| *n == service_name.as_str())),
        "Certificate {source} is not for {service_name}: {names}"
    );
    Ok(())
}

/// The Secrets a Deployment mounts, directly or through a projected volume.
pub(super) fn mounted_secrets(deployment: &Value) -> Vec<String> {
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array();
    let mut names = Vec::new();
    for volume in volumes.into_iter().flatten() {
        names.extend(volume["secret"]["secretName"].as_str().map(String::from));
        for source in volume["projected"]["sources"].as_array().into_iter().flatten() {
            names.extend(source["secret"]["name"].as_str().map(String::from));
        }
    }
    names
}

/// Server-side applies `object` with `dryRun: All`; `false` if its kind is cert-manager's and
/// not served here.
pub(super) async fn dry_run_apply(harness: &Harness, object: &Value) -> Result<bool, String> {
    let params = PatchParams::apply("sidecar-injector-e2e").dry_run().force();
    apply_with(harness, object, &params).await
}

/// Server-side applies `object` with `params` (field manager, dry run, force), through
/// discovery; `false` if its kind is cert-manager's and not served here.
pub(super) async fn apply_with(harness: &Harness, object: &Value, params: &PatchParams) -> Result<bool, String> {
    let typed: DynamicObject = serde_json::from_value(object.clone()).context("not a Kubernetes object")?;
    let types = typed.types.as_ref().ok_or("no apiVersion/kind")?;
    let gvk = GroupVersionKind::try_from(types).map_err(|e| e.to_string())?;
    let client = harness.cluster.client();
    let (resource, capabilities) = match pinned_kind(client, &gvk).await {
        Ok(found) => found,
        Err(_) if gvk.group == CERT_MANAGER_GROUP => return Ok(false),
        Err(error) => return Err(format!("{} is not served: {error}", types.api_version)),
    };
    let api: Api<DynamicObject> = match (&capabilities.scope, typed.metadata.namespace.as_deref()) {
        (Scope::Namespaced, Some(namespace)) => Api::namespaced_with(client.clone(), namespace, &resource),
        (Scope::Namespaced, None) => return Err("namespaced but has no namespace".into()),
        (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    };
    let name = typed.metadata.name.as_deref().ok_or("no name")?;
    api.patch(name, params, &Patch::Apply(object))
        .await
        .map_err(|error| api_message(&error))?;
    Ok(true)
}

/// The Deployment's pod template, created (dry run) under Pod Security `restricted`.
async fn restricted_pod(harness: &Harness, deployment: &Value) -> Result<(), String> {
    restricted_pod_in(harness, deployment, "e2e-restricted").await
}

/// [`restricted_pod`] in a namespace of the caller's choosing, which this creates.
pub(super) async fn restricted_pod_in(harness: &Harness, deployment: &Value, namespace: &str) -> Result<(), String> {
    harness
        .cluster
        .create_namespace(namespace, &[("pod-security.kubernetes.io/enforce", "restricted")])
        .await?;
    let template = &deployment["spec"]["template"];
    let account = template["spec"]["serviceAccountName"].as_str().unwrap_or("default");
    harness.cluster.ensure_service_account(namespace, account).await?;
    let mut metadata = template["metadata"].clone();
    metadata["name"] = json!("injector");
    let pod: Pod = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}),
    )
    .context("the Deployment's pod template is not a Pod")?;
    harness
        .cluster
        .dry_run_pod(namespace, &pod)
        .await
        .map(drop)
        .map_err(|error| {
            format!(
                "the Deployment's pod under Pod Security restricted: {}",
                api_message(&error)
            )
        })
}

pub(super) fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

pub(super) fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

pub(super) fn find<'a>(objects: &'a [Value], wanted: &str) -> Option<&'a Value> {
    objects.iter().find(|object| kind(object) == wanted)
}

pub(super) fn describe(object: &Value) -> String {
    format!("{}/{}", kind(object), name(object))
}
