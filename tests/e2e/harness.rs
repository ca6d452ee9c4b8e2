//! Everything the scenarios share: the cluster, our webhook registered with it, a scratch folder.
//!
//! The cluster is a throwaway control plane started from `KUBEBUILDER_ASSETS`, or, when only
//! `SIDECAR_INJECTOR_E2E_KUBECONFIG` is set, an existing cluster (see `tests/e2e/README.md`).
//! Neither set is a failure: a skipped e2e is not a pass. Setup registers the webhook
//! configuration from `deploy/webhook/` pointed at the in-process injector, and waits until
//! the API server actually calls it.

use std::path::{Path, PathBuf};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use sidecar_injector::certs::CertBundle;

use crate::check::{Context, eventually};
use crate::cluster::{self, Cluster};
use crate::control_plane::{Binaries, ControlPlane};
use crate::deploy;
use crate::injector::RunningInjector;
use crate::pods::test_pod;
use crate::process::WorkDir;

/// The namespace label that turns injection on, as Istio spells it.
pub const INJECTION_ENABLED: (&str, &str) = ("istio-injection", "enabled");

/// The set-up world the scenarios run in. Fields drop in order: the server, then the cluster
/// processes, then the scratch folder.
pub struct Harness {
    /// The API server.
    pub cluster: Cluster,
    /// Our webhook, registered as deploy/'s configuration with an `-e2e` suffix, reading
    /// namespace annotations and LimitRanges through the cluster's API.
    pub injector: RunningInjector,
    /// The injector's own namespace (from deploy/), which must never be sent to it.
    pub injector_namespace: String,
    /// A kubeconfig for the cluster (for commands run against it).
    pub kubeconfig: PathBuf,
    control_plane: Option<ControlPlane>,
    workdir: WorkDir,
}

/// Where the cluster comes from.
enum Target {
    /// `kube-apiserver` and `etcd` from a `KUBEBUILDER_ASSETS` folder.
    Assets(Binaries),
    /// A kubeconfig for an existing cluster.
    Existing(PathBuf),
}

fn target() -> Result<Target, String> {
    let set = |name: &str| {
        std::env::var_os(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    if let Some(assets) = set("KUBEBUILDER_ASSETS") {
        return Binaries::find(&assets).map(Target::Assets);
    }
    if let Some(kubeconfig) = set("SIDECAR_INJECTOR_E2E_KUBECONFIG") {
        return Ok(Target::Existing(kubeconfig));
    }
    Err(
        "KUBEBUILDER_ASSETS is not set, so there is no kube-apiserver and etcd to test against. Run\n  \
         export KUBEBUILDER_ASSETS=\"$(bash tests/e2e/scripts/ensure-control-plane.sh | tail -1)\"\n\
         or set SIDECAR_INJECTOR_E2E_KUBECONFIG to test against an existing cluster (tests/e2e/README.md)."
            .into(),
    )
}

// === impl Harness ===

impl Harness {
    /// Starts or connects to the cluster, starts our webhook and registers it.
    pub async fn start() -> Result<Self, String> {
        let target = target()?;
        let mut workdir = WorkDir::create()?;
        let (control_plane, kubeconfig) = match target {
            Target::Assets(binaries) => match ControlPlane::start(&binaries, workdir.path()).await {
                Ok(control_plane) => {
                    let kubeconfig = control_plane.kubeconfig().to_path_buf();
                    (Some(control_plane), kubeconfig)
                }
                Err(error) => {
                    workdir.keep();
                    return Err(format!(
                        "the control plane did not start (logs kept in {}):\n{error}",
                        workdir.path().display()
                    ));
                }
            },
            Target::Existing(kubeconfig) => (None, kubeconfig),
        };
        let existing = control_plane.is_none();
        let client = cluster::client_from_kubeconfig(&kubeconfig).await?;
        // Before the injector starts: it looks for the VPA CRD once, at start-up.
        crate::vpa::install_crds(&client).await?;
        // With the namespace and LimitRange caches, as `serve` runs in a cluster.
        let injector = RunningInjector::start_with_cluster(deploy::injector_config()?, client.clone()).await?;
        let mut harness = Harness {
            cluster: Cluster::new(client),
            injector,
            injector_namespace: deploy::injector_namespace()?,
            kubeconfig,
            control_plane,
            workdir,
        };
        if let Err(error) = harness.register(existing).await {
            harness.keep_logs();
            let leftovers = harness.clean_up().await.join("\n");
            return Err(format!("{error}\n{}{leftovers}", harness.log_tails()));
        }
        Ok(harness)
    }

    async fn register(&self, existing: bool) -> Result<(), String> {
        let configuration = deploy::webhook_configuration()?;
        let name = configuration.metadata.name.clone().unwrap_or_default();
        let client = self.cluster.client();
        if existing {
            refuse_to_overwrite(client, &name, &self.injector_namespace).await?;
        }
        // No controller-manager makes the system namespaces' service accounts.
        eventually("namespace kube-system exists", || async {
            Api::<Namespace>::all(client.clone())
                .get("kube-system")
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await?;
        self.cluster.ensure_service_account("kube-system", "default").await?;
        // Labelled for injection, so only the webhook's exclusion by name keeps it from us.
        self.cluster
            .create_namespace(&self.injector_namespace, &[INJECTION_ENABLED])
            .await?;
        let mut configuration = deploy::pointed_at(configuration, &self.injector.url(), self.injector.ca_pem());
        // Its own name, so that scenario 10 can dry-run deploy/'s as a new object.
        configuration.metadata.name = Some(format!("{name}-e2e"));
        self.cluster.register_webhook(&configuration).await?;
        self.injector.wait_synced().await?;
        let namespace = "e2e-ready";
        self.cluster.create_namespace(namespace, &[INJECTION_ENABLED]).await?;
        let probe = test_pod("probe", &[], &[]);
        self.cluster
            .until_injected("the API server calls the webhook", namespace, &probe)
            .await
    }

    /// The kubeconfig the test's client uses (admin), for programs the scenarios start
    /// against the same API server (istiod).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A scratch folder for this run.
    pub fn workdir(&self) -> &Path {
        self.workdir.path()
    }

    /// Creates namespace `name` labelled `istio-injection=enabled` plus `labels`.
    pub async fn injected_namespace(&self, name: &str, labels: &[(&str, &str)]) -> Result<(), String> {
        let mut all = vec![INJECTION_ENABLED];
        all.extend_from_slice(labels);
        self.cluster.create_namespace(name, &all).await
    }

    /// The client certificate (and its CA) the API server presents to webhooks that ask for
    /// one; `None` on an existing cluster, whose API server the test does not configure.
    pub fn webhook_client(&self) -> Option<&CertBundle> {
        self.control_plane.as_ref().map(ControlPlane::webhook_client)
    }

    /// Keeps the scratch folder with the logs after the run.
    pub fn keep_logs(&mut self) {
        self.workdir.keep();
    }

    /// The end of the control plane's logs, and where they are.
    pub fn log_tails(&self) -> String {
        match &self.control_plane {
            Some(control_plane) => format!(
                "{}\n(logs and kubeconfig kept in {})",
                control_plane.log_tails(40),
                self.workdir.path().display()
            ),
            None => String::new(),
        }
    }

    /// Checks the control plane is still up, after the scenarios.
    pub fn check_running(&mut self) -> Result<(), String> {
        self.control_plane.as_mut().map_or(Ok(()), ControlPlane::check_running)
    }

    /// On an existing cluster, deletes what the run created; returns what could not be.
    pub async fn clean_up(&self) -> Vec<String> {
        if self.control_plane.is_some() {
            return Vec::new();
        }
        self.cluster.clean_up().await
    }
}

/// On an existing cluster, refuses to touch an installed injector.
async fn refuse_to_overwrite(client: &kube::Client, webhook: &str, namespace: &str) -> Result<(), String> {
    let configurations = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let namespaces = Api::<Namespace>::all(client.clone());
    let webhook_exists = configurations
        .get_opt(webhook)
        .await
        .context("reading webhook configurations")?
        .is_some();
    let namespace_exists = namespaces
        .get_opt(namespace)
        .await
        .context("reading namespaces")?
        .is_some();
    if webhook_exists || namespace_exists {
        return Err(format!(
            "this cluster already has MutatingWebhookConfiguration {webhook} or namespace {namespace}; \
             the e2e registers and deletes both, so run it on a throwaway cluster"
        ));
    }
    Ok(())
}
