//! `istio.source: cluster`: a `kube` reflector on the ConfigMaps of the Istio namespace,
//! reading the istiod chart's `istio-sidecar-injector[-<rev>]` (`values`, `config`) and
//! `istio[-<rev>]` (`mesh`) for the configured revision.
//!
//! Whenever their data changes the settings are mapped ([`InstalledIstio::settings`]) and
//! laid under the config file's keys ([`ConfigLayers::set_installed`]), so the next pod
//! sees them without a restart. Data that does not parse or validate keeps the last good
//! settings, is logged, and is counted in `sidecar_injector_istio_config_failures`; no pod
//! ever fails for it. ConfigMaps that are absent mean no installed settings: the config
//! file and the built-in defaults.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use super::layers::ConfigLayers;
use super::metrics::{Metrics, ReloadKind};
use crate::config::istio_source::configmap_names;
use crate::engine::installed_istio::InstalledIstio;

/// What to watch.
#[derive(Debug, Clone)]
pub struct InstalledIstioSource {
    /// The Istio namespace (`istio.namespace`).
    pub namespace: String,
    /// The revision whose ConfigMaps are read (`revision`).
    pub revision: String,
}

/// The data of the two ConfigMaps, as last acted on.
type Seen = (Option<BTreeMap<String, String>>, Option<BTreeMap<String, String>>);

/// Starts the reflector; it runs until the task is aborted.
pub fn spawn(
    client: kube::Client,
    source: InstalledIstioSource,
    layers: Arc<ConfigLayers>,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (store, writer) = reflector::store();
        let api = Api::<ConfigMap>::namespaced(client, &source.namespace);
        let events = reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
        let mut events = std::pin::pin!(events);
        let mut listed = false;
        let mut seen: Option<Seen> = None;
        while let Some(event) = events.next().await {
            match event {
                Err(error) => {
                    metrics.watch_error("istio-configmaps");
                    tracing::warn!(cache = "istio configmaps", %error, "watch error; retrying");
                    continue;
                }
                Ok(watcher::Event::InitDone) => listed = true,
                Ok(_) => {}
            }
            if listed {
                apply_if_changed(&store, &source, &layers, &metrics, &mut seen);
            }
        }
    })
}

/// Reads the revision's ConfigMaps from the store and, when their data differs from what was
/// last acted on, takes them into use or counts why not.
fn apply_if_changed(
    store: &Store<ConfigMap>,
    source: &InstalledIstioSource,
    layers: &ConfigLayers,
    metrics: &Metrics,
    seen: &mut Option<Seen>,
) {
    let (injector_name, mesh_name) = configmap_names(&source.revision);
    let data = |name: &str| {
        store
            .get(&ObjectRef::new(name).within(&source.namespace))
            .map(|configmap| configmap.data.clone().unwrap_or_default())
    };
    let current: Seen = (data(&injector_name), data(&mesh_name));
    if seen.as_ref() == Some(&current) {
        return;
    }
    let result = InstalledIstio::parse(&injector_name, current.0.as_ref(), &mesh_name, current.1.as_ref())
        .and_then(|installed| installed.settings())
        .map_err(|error| error.to_string())
        .and_then(|settings| layers.set_installed(settings));
    let namespace = &source.namespace;
    match result {
        Ok(()) => {
            metrics.reloaded(ReloadKind::Istio);
            if current.0.is_none() && current.1.is_none() {
                tracing::warn!(%namespace, %injector_name, %mesh_name, "installed Istio ConfigMaps not found; using the config file and built-in defaults");
            } else {
                tracing::info!(%namespace, %injector_name, %mesh_name, "installed Istio settings taken into use");
            }
        }
        Err(error) => {
            metrics.reload_failed(ReloadKind::Istio);
            tracing::warn!(%namespace, %injector_name, %mesh_name, %error, "installed Istio settings refused; the last good settings stay in use");
        }
    }
    *seen = Some(current);
}
