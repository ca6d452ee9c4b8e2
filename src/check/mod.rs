//! `check`: what an operator asks of a live cluster, answered from the API server.
//!
//! Three parts, each its own module: the webhook registration ([`registration`]: settings,
//! our namespace excluded, the caBundle against the certificate the endpoint presents, and
//! `/readyz`), each namespace's injection state ([`namespaces`]: which webhook selects it,
//! by which revision, and the engine's decision for a plain pod), and drift ([`drift`]:
//! running pods whose proxy differs from what the engine would inject today). Everything the
//! engine decides goes through [`crate::engine::Injector::inject`], so `check` cannot disagree
//! with admission. [`CheckReport`] is the JSON shape; [`CheckReport::to_text`] the table.

pub mod drift;
pub mod namespaces;
pub mod registration;
mod selectors;
mod text;
mod tls_probe;

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod};
use kube::api::{Api, DynamicObject, ListParams, PartialObjectMeta};
use serde::Serialize;

use crate::engine::{Injector, Recommendation};
use crate::server::vpa::{PodOwner, controller_of, recommendation_among, vpa_resource};

pub use self::drift::{Difference, PodDrift};
pub use self::namespaces::{Injection, NamespaceReport};
pub use self::registration::Finding;

/// The label deploy/ puts on our webhook configurations; without `--webhook`, every
/// configuration carrying it is checked.
pub const WEBHOOK_LABEL: (&str, &str) = ("app.kubernetes.io/name", "sidecar-injector");

/// The registration's name in `deploy/webhook/`, looked up when none carries [`WEBHOOK_LABEL`].
pub const DEFAULT_WEBHOOK_NAME: &str = "sidecar-injector";

/// Why `check` could not answer at all (exit status 2), as opposed to finding problems.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The API server did not answer a read.
    #[error("cannot read {what} from the API server: {error}")]
    Api {
        /// What was being read.
        what: String,
        /// The client's error.
        error: kube::Error,
    },
    /// No configuration to check.
    #[error("no MutatingWebhookConfiguration {wanted} found; pass --webhook NAME for the injector's registration")]
    NoRegistration {
        /// The names asked for, or the label looked for.
        wanted: String,
    },
}

/// How bad a finding is: `error` makes `check` exit 1, `warn` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Worth a look, or could not be checked from here.
    Warn,
    /// Wrong: pods are or will be mis-injected, or the webhook cannot be called.
    Error,
}

/// What to check, from the command line.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// MutatingWebhookConfiguration names; empty: those labelled [`WEBHOOK_LABEL`], else the
    /// one named [`DEFAULT_WEBHOOK_NAME`].
    pub webhooks: Vec<String>,
    /// Only these namespaces (namespace report and drift); empty: all.
    pub namespaces: Vec<String>,
    /// Only pods matching this label selector (drift).
    pub selector: Option<String>,
    /// Dial this address instead of the webhook's URL host or Service DNS name (the TLS name
    /// checked stays the registration's), e.g. a `kubectl port-forward`.
    pub connect: Option<String>,
    /// The injector's `/readyz` URL; without it, a Service registration's pods are asked
    /// through the API server's pod proxy.
    pub readyz: Option<String>,
    /// The injector's namespace when the registration names it nowhere (a URL registration).
    pub injector_namespace: String,
}

/// Everything `check` found; the JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// No finding is an error and no pod drifted.
    pub healthy: bool,
    /// Findings about the webhook registration and the injector's endpoint.
    pub registration: Vec<Finding>,
    /// One row per namespace.
    pub namespaces: Vec<NamespaceReport>,
    /// Pods whose proxy differs from what injection would give today.
    pub drift: Vec<PodDrift>,
    /// How many pods were compared.
    pub pods_checked: usize,
}

/// The namespace-scoped objects the engine reads, per namespace.
#[derive(Debug, Default)]
pub(crate) struct ClusterView {
    pub(crate) configurations: Vec<MutatingWebhookConfiguration>,
    pub(crate) namespaces: Vec<Namespace>,
    pub(crate) limit_ranges: BTreeMap<String, Vec<LimitRange>>,
    pub(crate) pods: Vec<Pod>,
    /// The VerticalPodAutoscalers of the namespaces read (none without the CRD).
    pub(crate) vpas: Vec<DynamicObject>,
    /// The ReplicaSets' metadata, read in namespaces that have a VPA (the pod owner's
    /// ReplicaSet → Deployment step).
    pub(crate) replica_sets: Vec<PartialObjectMeta<ReplicaSet>>,
}

impl ClusterView {
    /// The LimitRanges of `namespace`.
    pub(crate) fn limit_ranges_of(&self, namespace: &str) -> &[LimitRange] {
        self.limit_ranges.get(namespace).map_or(&[], Vec::as_slice)
    }

    /// The recommendation today's injection would take for `pod` (as JSON) from a VPA
    /// targeting its owner, as the server's VPA layer resolves it.
    pub(crate) fn recommendation_for(&self, pod: &serde_json::Value) -> Option<Recommendation> {
        let owner = PodOwner::from_metadata(&pod["metadata"])?;
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let replica_set_owner = |name: &str| {
            self.replica_sets
                .iter()
                .find(|rs| {
                    rs.metadata.namespace.as_deref() == Some(namespace) && rs.metadata.name.as_deref() == Some(name)
                })
                .map(|rs| controller_of(&rs.metadata))
        };
        recommendation_among(&self.vpas, replica_set_owner, namespace, &owner).0
    }

    /// The namespace object named `name`, when it was read.
    pub(crate) fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces
            .iter()
            .find(|namespace| namespace.metadata.name.as_deref() == Some(name))
    }
}

/// The shipped registration (`deploy/webhook/`) and `namespaces` as a view, for tests.
#[cfg(test)]
pub(crate) fn shipped_view(namespaces: serde_json::Value) -> ClusterView {
    let text = include_str!("../../deploy/webhook/mutatingwebhookconfiguration.yaml");
    let document = crate::manifest::read_documents(text)
        .expect("the shipped registration is YAML")
        .remove(0);
    ClusterView {
        configurations: vec![serde_json::from_value(document).expect("a MutatingWebhookConfiguration")],
        namespaces: serde_json::from_value(namespaces).expect("namespaces"),
        ..ClusterView::default()
    }
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> CheckError {
    let what = what.into();
    move |error| CheckError::Api { what, error }
}

/// Our webhook configurations: those labelled [`WEBHOOK_LABEL`] (else the one named
/// [`DEFAULT_WEBHOOK_NAME`]), or each `--webhook` name; at least one.
async fn read_configurations(
    client: &kube::Client,
    options: &CheckOptions,
) -> Result<Vec<MutatingWebhookConfiguration>, CheckError> {
    let configurations_api = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let configurations = if options.webhooks.is_empty() {
        let (key, value) = WEBHOOK_LABEL;
        let params = ListParams::default().labels(&format!("{key}={value}"));
        let listed = configurations_api
            .list(&params)
            .await
            .map_err(api_error("MutatingWebhookConfigurations"))?;
        if listed.items.is_empty() {
            let named = configurations_api
                .get_opt(DEFAULT_WEBHOOK_NAME)
                .await
                .map_err(api_error(format!(
                    "MutatingWebhookConfiguration {DEFAULT_WEBHOOK_NAME}"
                )))?;
            named.into_iter().collect()
        } else {
            listed.items
        }
    } else {
        let mut found = Vec::new();
        for name in &options.webhooks {
            let configuration = configurations_api
                .get_opt(name)
                .await
                .map_err(api_error(format!("MutatingWebhookConfiguration {name}")))?;
            found.extend(configuration);
        }
        found
    };
    if configurations.is_empty() {
        let wanted = if options.webhooks.is_empty() {
            format!(
                "labelled {}={} or named {DEFAULT_WEBHOOK_NAME}",
                WEBHOOK_LABEL.0, WEBHOOK_LABEL.1
            )
        } else {
            options.webhooks.join(", ")
        };
        return Err(CheckError::NoRegistration { wanted });
    }
    Ok(configurations)
}

/// Reads what the report needs: our configurations, the namespaces, their LimitRanges, the pods.
async fn read_cluster(client: &kube::Client, options: &CheckOptions) -> Result<ClusterView, CheckError> {
    let configurations = read_configurations(client, options).await?;
    let all_namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(api_error("namespaces"))?
        .items;
    let namespaces: Vec<Namespace> = all_namespaces
        .into_iter()
        .filter(|namespace| {
            options.namespaces.is_empty()
                || namespace
                    .metadata
                    .name
                    .as_ref()
                    .is_some_and(|name| options.namespaces.contains(name))
        })
        .collect();
    let mut view = ClusterView {
        configurations,
        ..ClusterView::default()
    };
    // The API server parses the selector; a bad one is its 400, named in the error.
    let pod_params = match &options.selector {
        Some(selector) => ListParams::default().labels(selector),
        None => ListParams::default(),
    };
    let mut vpa_installed = true;
    for namespace in &namespaces {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let limit_ranges = Api::<LimitRange>::namespaced(client.clone(), &name)
            .list(&ListParams::default())
            .await
            .map_err(api_error(format!("LimitRanges in {name}")))?
            .items;
        view.limit_ranges.insert(name.clone(), limit_ranges);
        if vpa_installed {
            vpa_installed = read_vpas(client, &name, &mut view).await?;
        }
        let pods = Api::<Pod>::namespaced(client.clone(), &name)
            .list(&pod_params)
            .await
            .map_err(api_error(format!("pods in {name}")))?
            .items;
        view.pods.extend(pods);
    }
    view.namespaces = namespaces;
    Ok(view)
}

/// Adds `namespace`'s VPAs to `view`, and its ReplicaSets when it has any; `false` when the
/// VPA CRD is not installed (the API server answers 404), so that the layer is off as in the
/// server.
async fn read_vpas(client: &kube::Client, namespace: &str, view: &mut ClusterView) -> Result<bool, CheckError> {
    let vpas = match Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &vpa_resource())
        .list(&ListParams::default())
        .await
    {
        Ok(listed) => listed.items,
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(false),
        Err(error) => return Err(api_error(format!("VerticalPodAutoscalers in {namespace}"))(error)),
    };
    if !vpas.is_empty() {
        let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), namespace)
            .list_metadata(&ListParams::default())
            .await
            .map_err(api_error(format!("ReplicaSets in {namespace}")))?
            .items;
        view.replica_sets.extend(replica_sets);
        view.vpas.extend(vpas);
    }
    Ok(true)
}

/// Runs every check against the cluster `client` talks to, judging pods by `injector`, the
/// config the injector runs with.
pub async fn check(
    client: &kube::Client,
    injector: &Injector,
    options: &CheckOptions,
) -> Result<CheckReport, CheckError> {
    let view = read_cluster(client, options).await?;
    let registration = registration::check_registration(client, &view, options).await;
    let namespaces = namespaces::report(injector, &view, options);
    let (drift, pods_checked) = drift::find_drift(injector, &view, &namespaces);
    let healthy = registration.iter().all(|finding| finding.status != Status::Error)
        && namespaces.iter().all(|namespace| namespace.status != Status::Error)
        && drift.is_empty();
    Ok(CheckReport {
        healthy,
        registration,
        namespaces,
        drift,
        pods_checked,
    })
}
