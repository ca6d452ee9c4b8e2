//! Kubernetes Events on the workload when the webhook denies a pod or adjusts its proxy's
//! resources, as Linkerd's injector reports on the workload it injects.
//!
//! The admission answer never waits for an Event: [`EventSender::observe`] puts a notice on
//! a bounded channel with `try_send` and returns (a full channel drops the notice and counts
//! it). One background task turns notices into `events.k8s.io/v1` Events:
//!
//! - **On the workload.** The pod's controlling owner; a ReplicaSet owned by a Deployment is
//!   followed to the Deployment (one read, remembered for a while). A pod without an owner
//!   gets the Event itself, by name; one without an owner or a name (only `generateName`) gets
//!   none.
//! - **Deduplicated.** A notice with the same object, reason and message as one published in
//!   the last [`REMEMBERED_FOR`] raises that Event's `series.count` instead of making another;
//!   the count is written at most once per [`SERIES_WRITE_INTERVAL`].
//! - **Rate-limited.** New Events draw on a token bucket ([`BURST`], refilled at
//!   [`REFILL_EVERY`]); a notice finding it empty is dropped and counted.
//!
//! Dry-run requests make no Events (the registration says `sideEffects: None`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;

use self::book::{EventBook, EventKey, Step};
use super::metrics::Metrics;
use crate::review::ReviewSummary;

mod book;

/// Notices waiting for the publisher; more are dropped.
pub const CHANNEL_CAPACITY: usize = 1024;
/// How long a published Event is remembered for deduplication.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(10 * 60);
/// How often a repeated Event's count is written, at most.
pub const SERIES_WRITE_INTERVAL: Duration = Duration::from_secs(10);
/// New Events that may be made at once.
pub const BURST: u32 = 25;
/// One more new Event may be made this often.
pub const REFILL_EVERY: Duration = Duration::from_millis(200);
/// How long a ReplicaSet's owner is remembered.
const OWNER_REMEMBERED_FOR: Duration = Duration::from_secs(5 * 60);
/// How long the ReplicaSet read may take before the ReplicaSet itself is used.
const OWNER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// The API server's limit on `note`.
const NOTE_LIMIT: usize = 1024;
/// `reportingController` of our Events.
pub const REPORTING_CONTROLLER: &str = "sidecar-injector";
/// `action` of our Events.
const ACTION: &str = "Inject";

/// Why an Event is made; its `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventReason {
    /// The webhook denied the pod.
    InjectionDenied,
    /// The webhook clamped, fitted or lowered a proxy or pod-level resource value.
    ProxyResourcesAdjusted,
}

impl EventReason {
    /// The `reason` as written.
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::InjectionDenied => "InjectionDenied",
            EventReason::ProxyResourcesAdjusted => "ProxyResourcesAdjusted",
        }
    }
}

/// What the webhook saw, for the publisher.
#[derive(Debug, Clone)]
pub struct EventNotice {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name, when it has one before creation.
    pub pod: Option<String>,
    /// Its controlling owner.
    pub owner: Option<OwnerReference>,
    /// Why.
    pub reason: EventReason,
    /// The message.
    pub note: String,
}

/// The webhook's side of the channel.
#[derive(Debug, Clone)]
pub struct EventSender {
    notices: mpsc::Sender<EventNotice>,
    metrics: Arc<Metrics>,
}

// === impl EventSender ===

impl EventSender {
    /// Queues the Events a review calls for; never waits.
    pub fn observe(&self, summary: &ReviewSummary) {
        if summary.dry_run {
            return;
        }
        let notice = |reason, note: String| EventNotice {
            namespace: summary.namespace.clone(),
            pod: summary.named.then(|| summary.pod.clone()),
            owner: summary.owner.clone(),
            reason,
            note,
        };
        let mut notices = Vec::new();
        if let Some(denial) = &summary.denial {
            notices.push(notice(EventReason::InjectionDenied, denial.clone()));
        }
        if !summary.adjustments.is_empty() {
            notices.push(notice(
                EventReason::ProxyResourcesAdjusted,
                summary.adjustments.join("; "),
            ));
        }
        for notice in notices {
            if self.notices.try_send(notice).is_err() {
                self.metrics.event("dropped");
            }
        }
    }
}

/// Starts the publisher on the current runtime; it stops when every sender is dropped.
pub fn start(client: kube::Client, metrics: Arc<Metrics>) -> EventSender {
    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let instance = std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| REPORTING_CONTROLLER.to_string());
    let publisher = Publisher {
        client,
        metrics: metrics.clone(),
        instance,
        book: EventBook::new(Instant::now()),
        owners: HashMap::new(),
    };
    tokio::spawn(publisher.run(receiver));
    EventSender {
        notices: sender,
        metrics,
    }
}

/// The background task's state.
struct Publisher {
    client: kube::Client,
    metrics: Arc<Metrics>,
    instance: String,
    book: EventBook,
    /// ReplicaSet uid → the object its Events go on, and when that was learned.
    owners: HashMap<String, (ObjectReference, Instant)>,
}

// === impl Publisher ===

impl Publisher {
    async fn run(mut self, mut notices: mpsc::Receiver<EventNotice>) {
        let mut tick = tokio::time::interval(SERIES_WRITE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                notice = notices.recv() => match notice {
                    Some(notice) => self.publish(notice).await,
                    None => break,
                },
                _ = tick.tick() => self.write_series().await,
            }
        }
        self.write_series().await;
    }

    /// The object a notice's Event goes on.
    async fn regarding(&mut self, notice: &EventNotice) -> Option<ObjectReference> {
        let Some(owner) = &notice.owner else {
            return notice.pod.as_ref().map(|name| ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.clone()),
                namespace: Some(notice.namespace.clone()),
                ..ObjectReference::default()
            });
        };
        let reference = ObjectReference {
            api_version: Some(owner.api_version.clone()),
            kind: Some(owner.kind.clone()),
            name: Some(owner.name.clone()),
            namespace: Some(notice.namespace.clone()),
            uid: Some(owner.uid.clone()),
            ..ObjectReference::default()
        };
        if owner.kind != "ReplicaSet" || !owner.api_version.starts_with("apps/") {
            return Some(reference);
        }
        let now = Instant::now();
        self.owners
            .retain(|_, (_, learned)| now.duration_since(*learned) < OWNER_REMEMBERED_FOR);
        if let Some((known, _)) = self.owners.get(&owner.uid) {
            return Some(known.clone());
        }
        let replica_sets = Api::<ReplicaSet>::namespaced(self.client.clone(), &notice.namespace);
        let looked_up = tokio::time::timeout(OWNER_LOOKUP_TIMEOUT, replica_sets.get_metadata_opt(&owner.name)).await;
        let deployment = match looked_up {
            Ok(Ok(Some(replica_set))) => replica_set.metadata.owner_references.and_then(|owners| {
                owners
                    .into_iter()
                    .find(|o| o.controller == Some(true) && o.kind == "Deployment")
            }),
            Ok(Ok(None)) => None,
            Ok(Err(error)) => {
                tracing::debug!(%error, replica_set = %owner.name, "cannot read the ReplicaSet; the Event goes on it");
                None
            }
            Err(_) => None,
        };
        let resolved = deployment.map_or(reference, |deployment| ObjectReference {
            api_version: Some(deployment.api_version),
            kind: Some(deployment.kind),
            name: Some(deployment.name),
            namespace: Some(notice.namespace.clone()),
            uid: Some(deployment.uid),
            ..ObjectReference::default()
        });
        self.owners.insert(owner.uid.clone(), (resolved.clone(), now));
        Some(resolved)
    }

    async fn publish(&mut self, notice: EventNotice) {
        let Some(regarding) = self.regarding(&notice).await else {
            self.metrics.event("no-object");
            return;
        };
        let note = truncate(&notice.note, NOTE_LIMIT);
        let key = EventKey {
            kind: regarding.kind.clone().unwrap_or_default(),
            namespace: notice.namespace.clone(),
            name: regarding.name.clone().unwrap_or_default(),
            reason: notice.reason,
            note: note.clone(),
        };
        let now = Instant::now();
        match self.book.on_notice(&key, now) {
            Step::Counted => return self.metrics.event("deduplicated"),
            Step::Drop => return self.metrics.event("rate-limited"),
            Step::Create => {}
        }
        let stamp = Timestamp::now();
        let object_name = truncate(&key.name, 200);
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{object_name}.{:x}", stamp.as_nanosecond())),
                namespace: Some(notice.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(stamp)),
            action: Some(ACTION.into()),
            reason: Some(notice.reason.as_str().into()),
            note: Some(note),
            regarding: Some(regarding),
            reporting_controller: Some(REPORTING_CONTROLLER.into()),
            reporting_instance: Some(truncate(&self.instance, 128)),
            type_: Some("Warning".into()),
            ..Event::default()
        };
        let api = Api::<Event>::namespaced(self.client.clone(), &notice.namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(created) => {
                self.metrics.event("created");
                let name = created.metadata.name.unwrap_or_default();
                self.book.created(key, notice.namespace, name, now);
            }
            Err(error) => {
                self.metrics.event("failed");
                tracing::warn!(%error, namespace = %notice.namespace, reason = notice.reason.as_str(), "cannot create an Event");
            }
        }
    }

    /// Writes the counts of repeated Events.
    async fn write_series(&mut self) {
        for (namespace, name, count) in self.book.due(Instant::now()) {
            let api = Api::<Event>::namespaced(self.client.clone(), &namespace);
            let patch = serde_json::json!({
                "series": {"count": count, "lastObservedTime": MicroTime(Timestamp::now())}
            });
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => self.metrics.event("updated"),
                Err(error) => {
                    self.metrics.event("failed");
                    tracing::warn!(%error, %namespace, event = %name, "cannot update an Event's count");
                }
            }
        }
    }
}

/// `text` cut to at most `limit` bytes, on a character boundary.
fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting_and_a_dry_run_queues_nothing() {
        let metrics = Arc::new(Metrics::new());
        let (notices, mut queued) = mpsc::channel(1);
        let sender = EventSender {
            notices,
            metrics: metrics.clone(),
        };
        let mut summary = ReviewSummary {
            uid: "u".into(),
            namespace: "team".into(),
            pod: "web-1".into(),
            decision: "deny",
            denial: Some("annotation x is wrong".into()),
            resources: None,
            owner: None,
            adjustments: vec!["istio-proxy cpu.limit clamped to 1 (cluster max)".into()],
            dry_run: true,
            named: true,
        };
        sender.observe(&summary);
        assert!(queued.try_recv().is_err(), "a dry run queued a notice");
        summary.dry_run = false;
        // Two notices (the denial and the adjustment) into a queue of one: the second is dropped.
        sender.observe(&summary);
        let first = queued.try_recv().unwrap();
        assert_eq!(
            (first.reason, first.pod.as_deref()),
            (EventReason::InjectionDenied, Some("web-1"))
        );
        assert!(queued.try_recv().is_err());
        assert!(
            metrics
                .encode()
                .contains("sidecar_injector_events_total{result=\"dropped\"} 1"),
            "{}",
            metrics.encode()
        );
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("ab", 5), "ab");
        assert_eq!(truncate("aé", 2), "a");
    }
}
