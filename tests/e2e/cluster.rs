//! The API server as the scenarios use it: namespaces, service accounts, LimitRanges, pods
//! (with the admission warnings when asked), webhook configurations, through the `kube` crate.
//!
//! Every pod is created through the API and read back from it, so what a scenario checks is
//! what the API server stored after all of admission (our webhook, then LimitRanger,
//! PodSecurity, ResourceQuota and validation). Against an existing cluster, what the run
//! created is deleted at the end ([`Cluster::clean_up`]); a throwaway control plane is simply
//! stopped.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use http_body_util::BodyExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::check::Context;

/// A client for the cluster, from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client, String> {
    let config = config_from_kubeconfig(path).await?;
    Client::try_from(config).context("building the Kubernetes client")
}

/// A client with the kubeconfig's credentials that acts as `user` (impersonation, as
/// `kubectl --as`), so the API server authorizes every call as that user: for a
/// ServiceAccount, `system:serviceaccount:NS:NAME`, with its groups added by the API server.
pub async fn client_as(path: &Path, user: &str) -> Result<Client, String> {
    let mut config = config_from_kubeconfig(path).await?;
    config.auth_info.impersonate = Some(user.to_string());
    Client::try_from(config).context(format!("building a Kubernetes client acting as {user}"))
}

async fn config_from_kubeconfig(path: &Path) -> Result<Config, String> {
    let kubeconfig = Kubeconfig::read_from(path).context(format!("reading {}", path.display()))?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context(format!("using {}", path.display()))
}

/// The message of an API error (the `Status.message` the API server sent), or the error.
pub fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Something the run created in a cluster that outlives it.
enum Created {
    Namespace(String),
    Pod { namespace: String, name: String },
    WebhookConfiguration(String),
}

/// The client, and what to delete afterwards on an existing cluster.
pub struct Cluster {
    client: Client,
    created: Mutex<Vec<Created>>,
}

// === impl Cluster ===

impl Cluster {
    /// Wraps a client.
    pub fn new(client: Client) -> Self {
        Cluster {
            client,
            created: Mutex::new(Vec::new()),
        }
    }

    /// The client, for APIs the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn remember(&self, created: Created) {
        if let Ok(mut list) = self.created.lock() {
            list.push(created);
        }
    }

    /// Creates a namespace with `labels` and its `default` ServiceAccount, which the
    /// ServiceAccount admission plugin requires of every pod and which no controller-manager
    /// makes here.
    pub async fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) -> Result<(), String> {
        self.create_namespace_with(name, labels, &[]).await
    }

    /// Like [`Cluster::create_namespace`], with `annotations` too.
    pub async fn create_namespace_with(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
    ) -> Result<(), String> {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(string_map(labels)),
                annotations: (!annotations.is_empty()).then(|| string_map(annotations)),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .context(format!("creating namespace {name}"))?;
        self.remember(Created::Namespace(name.to_string()));
        self.ensure_service_account(name, "default").await
    }

    /// Sets annotation `key` of namespace `name` to `value` (a merge patch).
    pub async fn annotate_namespace(&self, name: &str, key: &str, value: &str) -> Result<(), String> {
        self.set_namespace_metadata(name, "annotations", key, value).await
    }

    /// Sets label `key` of namespace `name` to `value` (a merge patch).
    pub async fn label_namespace(&self, name: &str, key: &str, value: &str) -> Result<(), String> {
        self.set_namespace_metadata(name, "labels", key, value).await
    }

    /// Sets `metadata.<map>.<key>` of namespace `name` to `value` (a merge patch).
    async fn set_namespace_metadata(&self, name: &str, map: &str, key: &str, value: &str) -> Result<(), String> {
        let patch = serde_json::json!({"metadata": {map: {key: value}}});
        Api::<Namespace>::all(self.client.clone())
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .context(format!("setting {map} {key}={value} on namespace {name}"))
    }

    /// Creates LimitRange `name` in `namespace` with `items`.
    pub async fn create_limit_range(
        &self,
        namespace: &str,
        name: &str,
        items: Vec<LimitRangeItem>,
    ) -> Result<(), String> {
        let limit_range = LimitRange {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            spec: Some(LimitRangeSpec { limits: items }),
        };
        Api::<LimitRange>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &limit_range)
            .await
            .map(drop)
            .context(format!("creating LimitRange {namespace}/{name}"))
    }

    /// Creates ServiceAccount `name` in `namespace` unless it exists.
    pub async fn ensure_service_account(&self, namespace: &str, name: &str) -> Result<(), String> {
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match Api::<ServiceAccount>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &account)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(error) => Err(format!("creating service account {namespace}/{name}: {error}")),
        }
    }

    /// Creates `pod` in `namespace` and reads it back from the API server.
    pub async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod, kube::Error> {
        let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let created = api.create(&PostParams::default(), pod).await?;
        let name = created.metadata.name.clone().unwrap_or_default();
        self.remember_pod(namespace, &name);
        api.get(&name).await
    }

    /// Creates `pod` like [`Cluster::create_pod`] and also returns the admission warnings,
    /// the `Warning` headers of the answer, which `Api::create` drops. `Err` is the API
    /// server's message (a denial) or what went wrong on the way.
    pub async fn create_pod_with_warnings(&self, namespace: &str, pod: &Pod) -> Result<(Pod, Vec<String>), String> {
        let body = serde_json::to_vec(pod).context("encoding the pod")?;
        let request = kube::core::Request::new(format!("/api/v1/namespaces/{namespace}/pods"))
            .create(&PostParams::default(), body)
            .context("building the request")?;
        let response = self
            .client
            .send(request.map(kube::client::Body::from))
            .await
            .context(format!("creating a pod in {namespace}"))?;
        let warnings = response
            .headers()
            .get_all("warning")
            .iter()
            .map(|value| warning_text(&String::from_utf8_lossy(value.as_bytes())))
            .collect();
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context(format!("reading the answer to a pod creation in {namespace}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(match serde_json::from_slice::<kube::core::Status>(&bytes) {
                Ok(status) => status.message,
                Err(_) => format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)),
            });
        }
        let created: Pod = serde_json::from_slice(&bytes).context("decoding the created pod")?;
        let name = created.metadata.name.unwrap_or_default();
        self.remember_pod(namespace, &name);
        let stored = self.get_pod(namespace, &name).await?;
        Ok((
            stored.ok_or_else(|| format!("pod {namespace}/{name} was created but is gone"))?,
            warnings,
        ))
    }

    /// Pods outside the namespaces the run created must be deleted one by one.
    fn remember_pod(&self, namespace: &str, name: &str) {
        if namespace == "kube-system" {
            self.remember(Created::Pod {
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
        }
    }

    /// Creates `pod` with `dryRun: All`: admitted and returned, never stored.
    pub async fn dry_run_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod, kube::Error> {
        let params = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .create(&params, pod)
            .await
    }

    /// Dry-runs `pod` until its answer carries one proxy: the API server has picked up a newly
    /// registered webhook (`what` names it in the error) and calls it.
    pub async fn until_injected(&self, what: &str, namespace: &str, pod: &Pod) -> Result<(), String> {
        crate::check::eventually(what, || async {
            let answer = self.dry_run_pod(namespace, pod).await.context("dry-run pod")?;
            match crate::pods::proxy_count(&answer) {
                1 => Ok(()),
                n => Err(format!("dry-run pod has {n} proxies")),
            }
        })
        .await
    }

    /// Reads a pod back; `None` if it was never stored.
    pub async fn get_pod(&self, namespace: &str, name: &str) -> Result<Option<Pod>, String> {
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .context(format!("reading pod {namespace}/{name}"))
    }

    /// Creates or replaces a MutatingWebhookConfiguration.
    pub async fn register_webhook(&self, configuration: &MutatingWebhookConfiguration) -> Result<(), String> {
        let api = Api::<MutatingWebhookConfiguration>::all(self.client.clone());
        let name = configuration.metadata.name.clone().unwrap_or_default();
        let result = match api
            .get_opt(&name)
            .await
            .context(format!("reading webhook configuration {name}"))?
        {
            None => api.create(&PostParams::default(), configuration).await,
            Some(existing) => {
                let mut replacement = configuration.clone();
                replacement.metadata.resource_version = existing.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &replacement).await
            }
        };
        result.context(format!("registering webhook configuration {name}"))?;
        self.remember(Created::WebhookConfiguration(name));
        Ok(())
    }

    /// Deletes a MutatingWebhookConfiguration.
    pub async fn unregister_webhook(&self, name: &str) -> Result<(), String> {
        Api::<MutatingWebhookConfiguration>::all(self.client.clone())
            .delete(name, &DeleteParams::default())
            .await
            .map(drop)
            .context(format!("deleting webhook configuration {name}"))
    }

    /// Deletes everything the run created, newest first; errors are reported, not fatal.
    pub async fn clean_up(&self) -> Vec<String> {
        let created = self
            .created
            .lock()
            .map(|mut list| std::mem::take(&mut *list))
            .unwrap_or_default();
        let mut errors = Vec::new();
        let params = DeleteParams::default();
        for item in created.into_iter().rev() {
            let (what, result) = match &item {
                Created::Namespace(name) => (
                    format!("namespace {name}"),
                    Api::<Namespace>::all(self.client.clone())
                        .delete(name, &params)
                        .await
                        .map(drop),
                ),
                Created::Pod { namespace, name } => (
                    format!("pod {namespace}/{name}"),
                    Api::<Pod>::namespaced(self.client.clone(), namespace)
                        .delete(name, &params)
                        .await
                        .map(drop),
                ),
                Created::WebhookConfiguration(name) => (
                    format!("webhook configuration {name}"),
                    Api::<MutatingWebhookConfiguration>::all(self.client.clone())
                        .delete(name, &params)
                        .await
                        .map(drop),
                ),
            };
            match result {
                Ok(()) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => errors.push(format!("deleting {what}: {error}")),
            }
        }
        errors
    }
}

/// A label or annotation map from pairs.
pub fn string_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The text of a `Warning` header as the API server writes it, `299 - "text"` with `\\` and
/// `\"` escaped; anything else is returned as it is.
fn warning_text(header: &str) -> String {
    let Some(quoted) = header
        .splitn(3, ' ')
        .nth(2)
        .and_then(|rest| rest.strip_prefix('"')?.strip_suffix('"'))
    else {
        return header.to_string();
    };
    let mut text = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.extend(chars.next()),
            c => text.push(c),
        }
    }
    text
}
