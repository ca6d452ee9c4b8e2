//! What the API server knows about namespaces: annotations, LimitRanges and ResourceQuotas,
//! from caches.
//!
//! Three `kube` reflectors keep local copies: namespaces (metadata only), LimitRanges and
//! ResourceQuotas (with their `used` figures, for quota foresight).
//! The webhook answers `/readyz` only after all have synced once, or after the cache-sync
//! timeout: an injector that never turns ready (say, the API server refuses our watch) would
//! block every pod creation in the mesh, while one that admits with config defaults and a
//! warning does not; `sidecar_injector_cache_synced` says which it is. The watchers re-list
//! after watch expiry and reconnect with backoff when the API server restarts. A
//! namespace missing from the cache (created a moment ago) is fetched live with a short
//! timeout. When neither works the pod is still admitted: the engine falls back to the
//! config defaults, the response carries a warning, and the fallback is counted.
//! VerticalPodAutoscaler recommendations come from [`super::vpa`]'s caches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use super::admin::Readiness;
use super::metrics::Metrics;
use super::vpa::{PodOwner, VpaCache};
use crate::engine::Recommendation;

/// How long a live namespace lookup may take on the request path.
const LIVE_LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);

/// What is known about one namespace when a pod arrives.
#[derive(Debug, Clone, Default)]
pub struct NamespaceSnapshot {
    /// The namespace's annotations; `None` when unknown.
    pub annotations: Option<BTreeMap<String, String>>,
    /// The namespace's labels (for `istio.io/rev`); `None` when unknown.
    pub labels: Option<BTreeMap<String, String>>,
    /// Its LimitRanges.
    pub limit_ranges: Vec<LimitRange>,
    /// Its ResourceQuotas.
    pub resource_quotas: Vec<ResourceQuota>,
    /// Why the snapshot is incomplete, for the user.
    pub warnings: Vec<String>,
    /// The pod owner's VerticalPodAutoscaler recommendation for `istio-proxy`, if any.
    pub recommendation: Option<Recommendation>,
}

/// Cached namespaces and LimitRanges, with a client for cache misses.
#[derive(Clone)]
pub struct ClusterCache {
    client: kube::Client,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    limit_ranges: Store<LimitRange>,
    resource_quotas: Store<ResourceQuota>,
    vpa: VpaCache,
}

impl std::fmt::Debug for ClusterCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCache").finish_non_exhaustive()
    }
}

// === impl ClusterCache ===

impl ClusterCache {
    /// Starts both reflectors; `readiness` is marked synced once both have listed once, or
    /// when `sync_timeout` passes first.
    pub fn start(
        client: kube::Client,
        readiness: Arc<Readiness>,
        metrics: Arc<Metrics>,
        sync_timeout: Duration,
    ) -> ClusterCache {
        let (namespaces, namespace_writer) = reflector::store();
        let namespace_events = watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff();
        tokio::spawn(drain(
            "namespaces",
            reflector::reflector(namespace_writer, namespace_events),
            metrics.clone(),
        ));

        let (limit_ranges, limit_range_writer) = reflector::store();
        let limit_range_events =
            watcher(Api::<LimitRange>::all(client.clone()), watcher::Config::default()).default_backoff();
        tokio::spawn(drain(
            "limitranges",
            reflector::reflector(limit_range_writer, limit_range_events),
            metrics.clone(),
        ));

        let (resource_quotas, resource_quota_writer) = reflector::store();
        let resource_quota_events =
            watcher(Api::<ResourceQuota>::all(client.clone()), watcher::Config::default()).default_backoff();
        tokio::spawn(drain(
            "resourcequotas",
            reflector::reflector(resource_quota_writer, resource_quota_events),
            metrics.clone(),
        ));

        let cache = ClusterCache {
            vpa: VpaCache::start(client.clone(), metrics.clone()),
            client,
            namespaces,
            limit_ranges,
            resource_quotas,
        };
        let synced = cache.clone();
        tokio::spawn(async move {
            let sync = async {
                let namespaces = synced.namespaces.wait_until_ready().await;
                let limit_ranges = synced.limit_ranges.wait_until_ready().await;
                let resource_quotas = synced.resource_quotas.wait_until_ready().await;
                namespaces.is_ok() && limit_ranges.is_ok() && resource_quotas.is_ok()
            };
            tokio::pin!(sync);
            match tokio::time::timeout(sync_timeout, &mut sync).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(_) => {
                    tracing::warn!(
                        ?sync_timeout,
                        "namespace and LimitRange caches not synced yet; reporting ready anyway \
                         (pods get config defaults and a warning until they sync)"
                    );
                    readiness.set_synced(true);
                    if !sync.await {
                        return;
                    }
                }
            }
            tracing::info!("namespace and LimitRange caches synced");
            metrics.set_cache_synced(true);
            readiness.set_synced(true);
        });
        cache
    }

    /// Adds the VPA recommendation for a pod of `owner` to `snapshot` (and a warning when
    /// the ReplicaSet was not in the cache).
    pub fn add_recommendation(&self, snapshot: &mut NamespaceSnapshot, namespace: &str, owner: &PodOwner) {
        let (recommendation, warning) = self.vpa.recommendation_for(namespace, owner);
        snapshot.recommendation = recommendation;
        snapshot.warnings.extend(warning);
    }

    /// The namespace's annotations and LimitRanges, never failing: what cannot be
    /// learned becomes a warning and a counted fallback.
    pub async fn snapshot(&self, namespace: &str, metrics: &Metrics) -> NamespaceSnapshot {
        let mut snapshot = NamespaceSnapshot {
            limit_ranges: self
                .limit_ranges
                .state()
                .iter()
                .filter(|lr| lr.metadata.namespace.as_deref() == Some(namespace))
                .map(|lr| lr.as_ref().clone())
                .collect(),
            resource_quotas: self
                .resource_quotas
                .state()
                .iter()
                .filter(|quota| quota.metadata.namespace.as_deref() == Some(namespace))
                .map(|quota| quota.as_ref().clone())
                .collect(),
            ..NamespaceSnapshot::default()
        };
        if let Some(cached) = self.namespaces.get(&ObjectRef::new(namespace)) {
            snapshot.annotations = Some(cached.metadata.annotations.clone().unwrap_or_default());
            snapshot.labels = Some(cached.metadata.labels.clone().unwrap_or_default());
            return snapshot;
        }
        let api = Api::<Namespace>::all(self.client.clone());
        match tokio::time::timeout(LIVE_LOOKUP_TIMEOUT, api.get_metadata_opt(namespace)).await {
            Ok(Ok(Some(live))) => {
                snapshot.annotations = Some(live.metadata.annotations.unwrap_or_default());
                snapshot.labels = Some(live.metadata.labels.unwrap_or_default());
            }
            Ok(Ok(None)) => {
                metrics.namespace_fallback("not-found");
                snapshot.warnings.push(format!(
                    "namespace {namespace} not found; namespace defaults not applied"
                ));
            }
            Ok(Err(error)) => {
                metrics.namespace_fallback("api-error");
                tracing::warn!(%namespace, %error, "namespace lookup failed; using config defaults");
                snapshot.warnings.push(format!(
                    "namespace {namespace} could not be read; namespace defaults not applied"
                ));
            }
            Err(_) => {
                metrics.namespace_fallback("timeout");
                tracing::warn!(%namespace, "namespace lookup timed out; using config defaults");
                snapshot.warnings.push(format!(
                    "namespace {namespace} lookup timed out; namespace defaults not applied"
                ));
            }
        }
        snapshot
    }
}

/// Runs a reflector stream forever, logging and counting errors (the backoff retries them).
pub(super) async fn drain<S, T, E>(what: &'static str, stream: S, metrics: Arc<Metrics>)
where
    S: futures_util::Stream<Item = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        if let Err(error) = event {
            metrics.watch_error(what);
            tracing::warn!(cache = what, %error, "watch error; retrying");
        }
    }
}
