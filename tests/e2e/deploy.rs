//! `deploy/` as the e2e reads it, and the e2e overlay of its webhook registration.
//!
//! The registration under test is the one in `deploy/webhook/` (the files its
//! kustomization lists), changed only where a test cluster must differ: each webhook calls
//! the in-process server at `https://127.0.0.1:PORT/inject` and trusts its CA, instead of the
//! Service. Selectors, rules, policies and timeouts are those shipped.

use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, WebhookClientConfig};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use serde::Deserialize;
use sidecar_injector::config::InjectConfig;
use sidecar_injector::manifest::read_documents;

use crate::check::Context;

/// The label that selects an Istio revision, on a namespace or a pod.
pub const REVISION_LABEL: &str = "istio.io/rev";

/// The part of a kustomization.yaml the e2e reads.
#[derive(Debug, Default, Deserialize)]
pub struct Kustomization {
    /// Files and folders it includes.
    #[serde(default)]
    pub resources: Vec<String>,
    /// The namespace it puts namespaced objects in.
    pub namespace: Option<String>,
}

// === impl Kustomization ===

impl Kustomization {
    /// Reads `dir/kustomization.yaml`.
    pub fn read(dir: &Path) -> Result<Self, String> {
        let path = dir.join("kustomization.yaml");
        let text = std::fs::read_to_string(&path).context(format!("reading {}", path.display()))?;
        let document = read_documents(&text)
            .context(format!("parsing {}", path.display()))?
            .into_iter()
            .next()
            .unwrap_or_default();
        serde_json::from_value(document).context(format!("reading {} as a kustomization", path.display()))
    }
}

/// The repository's `deploy/` folder.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The shipped `deploy/config.yaml`, which the in-process injector runs with.
pub fn injector_config() -> Result<InjectConfig, String> {
    InjectConfig::load(&deploy_dir().join("config.yaml")).map_err(|e| e.to_string())
}

/// The injector's own namespace: the `namespace` of the base kustomization.
pub fn injector_namespace() -> Result<String, String> {
    Kustomization::read(&deploy_dir())?
        .namespace
        .ok_or_else(|| "deploy/kustomization.yaml sets no namespace".to_string())
}

/// The MutatingWebhookConfiguration among the files `deploy/webhook/kustomization.yaml` lists.
pub fn webhook_configuration() -> Result<MutatingWebhookConfiguration, String> {
    let dir = deploy_dir().join("webhook");
    for resource in Kustomization::read(&dir)?.resources {
        let path = dir.join(&resource);
        let text = std::fs::read_to_string(&path).context(format!("reading {}", path.display()))?;
        for value in read_documents(&text).context(format!("parsing {}", path.display()))? {
            if value.get("kind").and_then(serde_json::Value::as_str) == Some("MutatingWebhookConfiguration") {
                return serde_json::from_value(value)
                    .context(format!("reading {} as a webhook configuration", path.display()));
            }
        }
    }
    Err(format!("no MutatingWebhookConfiguration in {}", dir.display()))
}

/// The e2e overlay: every webhook calls `url` and trusts `ca_pem`, instead of the Service.
pub fn pointed_at(
    mut configuration: MutatingWebhookConfiguration,
    url: &str,
    ca_pem: &str,
) -> MutatingWebhookConfiguration {
    for webhook in configuration.webhooks.iter_mut().flatten() {
        webhook.client_config = WebhookClientConfig {
            url: Some(url.to_string()),
            ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
            service: None,
        };
    }
    configuration
}

/// A copy named `name` whose webhooks also require the namespace label `key=value`, so it acts
/// only on a scenario's own namespaces.
pub fn scoped_to(
    mut configuration: MutatingWebhookConfiguration,
    name: &str,
    (key, value): (&str, &str),
) -> MutatingWebhookConfiguration {
    configuration.metadata.name = Some(name.to_string());
    for webhook in configuration.webhooks.iter_mut().flatten() {
        let selector = webhook.namespace_selector.get_or_insert_with(Default::default);
        selector
            .match_expressions
            .get_or_insert_with(Vec::new)
            .push(LabelSelectorRequirement {
                key: key.to_string(),
                operator: "In".to_string(),
                values: Some(vec![value.to_string()]),
            });
    }
    configuration
}

/// A copy named `name` for the Istio revision `revision`, registered beside the default one
/// as a canary control plane is: only the webhooks that select `istio.io/rev In [default]`
/// (on the namespace or the pod), with `revision` in its place.
pub fn for_revision(
    mut configuration: MutatingWebhookConfiguration,
    name: &str,
    revision: &str,
) -> MutatingWebhookConfiguration {
    let retarget = |requirements: Option<&mut Vec<LabelSelectorRequirement>>| {
        let mut selects_revision = false;
        for requirement in requirements.into_iter().flatten() {
            if requirement.key == REVISION_LABEL && requirement.operator == "In" {
                requirement.values = Some(vec![revision.to_string()]);
                selects_revision = true;
            }
        }
        selects_revision
    };
    configuration.metadata.name = Some(name.to_string());
    let webhooks = configuration.webhooks.take().unwrap_or_default();
    configuration.webhooks = Some(
        webhooks
            .into_iter()
            .filter_map(|mut webhook| {
                let by_namespace = retarget(
                    webhook
                        .namespace_selector
                        .as_mut()
                        .and_then(|s| s.match_expressions.as_mut()),
                );
                let by_object = retarget(
                    webhook
                        .object_selector
                        .as_mut()
                        .and_then(|s| s.match_expressions.as_mut()),
                );
                (by_namespace || by_object).then_some(webhook)
            })
            .collect(),
    );
    configuration
}

/// Copies `deploy/` into `dest` (without certificates a developer may have in an `out/`), so
/// that an overlay can be built with certificates made for this run.
pub fn copy_to(dest: &Path) -> Result<PathBuf, String> {
    let target = dest.join("deploy");
    copy_tree(&deploy_dir(), &target)?;
    Ok(target)
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).context(format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).context(format!("reading {}", from.display()))? {
        let entry = entry.context(format!("reading {}", from.display()))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if source.is_dir() {
            if entry.file_name() != "out" {
                copy_tree(&source, &target)?;
            }
        } else {
            std::fs::copy(&source, &target).context(format!("copying {}", source.display()))?;
        }
    }
    Ok(())
}
