//! The answer to a review: the engine run on a Pod CREATE (or the resize guard on a
//! `pods/resize` UPDATE), its outcome recorded in the response and the [`ReviewSummary`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::object::{ReadPod, ReviewObject, into_pod, pod_of};
use super::parse::{ParsedReview, Request};
use super::wire::{WebhookResponse, WireReview};
use super::{ReviewAnswer, ReviewError, ReviewSummary, resize};
use crate::engine::{FieldKey, Injector, NamespaceContext, PodLevelChange, PodRequest, ProxyResources};

/// Runs the engine on a parsed review with what is known about its namespace;
/// `context_warnings` (e.g. a cache fallback) are passed on to the user.
pub fn answer_review(
    injector: &Injector,
    parsed: ParsedReview,
    context: &NamespaceContext<'_>,
    context_warnings: Vec<String>,
) -> Result<ReviewAnswer, ReviewError> {
    let is_pod_create = parsed.is_pod_create();
    let is_pod_resize = parsed.is_pod_resize();
    let ParsedReview {
        api_version,
        namespace,
        request,
    } = parsed;
    let mut summary = first_summary(&request, &namespace);
    let mut response = WebhookResponse::allowed(&request.uid);
    if is_pod_resize {
        let objects = (request.old_object.as_ref(), request.object.as_ref());
        resize::answer_resize(
            injector,
            &request.uid,
            objects,
            context,
            context_warnings,
            &mut response,
            &mut summary,
        )?;
        return Ok(answer(api_version, &response, summary));
    }
    let is_pod = request.kind.core_pod && request.sub_resource.is_none();
    if !is_pod {
        return Ok(answer(api_version, &response, summary));
    }
    if !is_pod_create {
        summary.decision = "skip:not-a-create";
        return Ok(answer(api_version, &response, summary));
    }
    let ReadPod {
        pod,
        has_metadata,
        unread_annotation_bytes,
        app_amounts,
    } = created_pod(request)?;
    let pod_request = PodRequest {
        pod: &pod,
        namespace: &namespace,
        workload: None,
        has_metadata,
        unread_annotation_bytes,
        namespace_context: *context,
        app_amounts: app_amounts.as_ref(),
        reinjection: false,
    };
    let response = inject(injector, &pod_request, context_warnings, response, &mut summary);
    name_and_owner(&mut summary, pod.metadata);
    Ok(answer(api_version, &response, summary))
}

/// The summary before the engine runs: the request's uid, namespace and name, not yet a pod.
fn first_summary(request: &Request<ReviewObject>, namespace: &str) -> ReviewSummary {
    ReviewSummary {
        uid: request.uid.clone(),
        namespace: namespace.to_string(),
        pod: request.name.clone(),
        decision: "skip:not-a-pod",
        denial: None,
        resources: None,
        owner: None,
        adjustments: Vec::new(),
        dry_run: request.dry_run.unwrap_or(false),
        named: !request.name.is_empty(),
    }
}

/// The Pod a CREATE carries.
fn created_pod(request: Request<ReviewObject>) -> Result<ReadPod, ReviewError> {
    let uid = request.uid;
    let object = request
        .object
        .ok_or_else(|| ReviewError::MissingObject { uid: uid.clone() })?;
    Ok(match object {
        ReviewObject::Pod(object) => pod_of(*object),
        ReviewObject::Raw(raw) => into_pod(&raw).map_err(|reason| ReviewError::InvalidPod { uid, reason })?,
    })
}

/// Names the pod in the summary (when the request did not) and records its controlling
/// owner, else its first; both are moved out of the pod's metadata, which is not read again.
fn name_and_owner(summary: &mut ReviewSummary, metadata: ObjectMeta) {
    if summary.pod.is_empty() {
        summary.named = metadata.name.is_some();
        summary.pod = metadata.name.or(metadata.generate_name).unwrap_or_default();
    }
    summary.owner = metadata.owner_references.and_then(|mut owners| {
        let controller = owners.iter().position(|owner| owner.controller == Some(true));
        (!owners.is_empty()).then(|| owners.swap_remove(controller.unwrap_or(0)))
    });
}

/// Runs the engine on the pod: the patch or the denial goes into `response`, with the
/// engine's warnings after `warnings`, and the outcome into `summary`.
fn inject(
    injector: &Injector,
    pod_request: &PodRequest<'_>,
    mut warnings: Vec<String>,
    mut response: WebhookResponse,
    summary: &mut ReviewSummary,
) -> WebhookResponse {
    match injector.inject(pod_request) {
        Ok(outcome) => {
            summary.decision = outcome.decision.as_str();
            summary.adjustments = adjustments(outcome.resources.as_ref(), &outcome.pod_level);
            summary.resources = outcome.resources;
            warnings.extend(outcome.warnings);
            response.warnings = warnings;
            if !outcome.patch.is_empty() {
                // The engine serialized the patch as it built it; `WireReview` marks it
                // JSONPatch and writes it as base64.
                response.patch = Some(outcome.patch.into_bytes());
            }
            response
        }
        Err(denial) => {
            summary.decision = "deny";
            summary.denial = Some(denial.error.to_string());
            warnings.extend(denial.warnings);
            response.warnings = warnings;
            response.deny(denial.error.to_string());
            response
        }
    }
}

/// One line per adjusted resource value, from the engine's provenance.
fn adjustments(resources: Option<&ProxyResources>, pod_level: &[PodLevelChange]) -> Vec<String> {
    let fields = resources.into_iter().flat_map(|resources| {
        FieldKey::ALL.into_iter().flat_map(move |key| {
            resources
                .field(key)
                .adjustments
                .iter()
                .map(move |adjustment| format!("istio-proxy {key} {adjustment}"))
        })
    });
    let pod = pod_level.iter().filter_map(|change| {
        let note = change.note.as_ref()?;
        let (field, _) = change.provenance();
        Some(format!("{field} {note}"))
    });
    fields.chain(pod).collect()
}

fn answer(api_version: &str, response: &WebhookResponse, summary: ReviewSummary) -> ReviewAnswer {
    let body = WireReview::of(api_version, response).to_bytes();
    ReviewAnswer { body, summary }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::config::InjectConfig;
    use crate::review::review;

    /// A pod CREATE review of `object`, as the API server sends it.
    fn review_body(object: Value, dry_run: bool) -> Vec<u8> {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "apps",
                "operation": "CREATE",
                "userInfo": {},
                "dryRun": dry_run,
                "object": object,
            }
        });
        serde_json::to_vec(&body).unwrap()
    }

    fn answer_for(object: Value) -> Value {
        let injector = Injector::new(InjectConfig::default()).unwrap();
        let answer = review(&injector, &review_body(object, false)).unwrap();
        serde_json::from_slice(&answer.body).unwrap()
    }

    /// The summary of a review of `object` with `dry_run`, under `config`.
    fn summary_for(config: &str, object: Value, dry_run: bool) -> ReviewSummary {
        let injector = Injector::new(InjectConfig::from_yaml(config, "t").unwrap()).unwrap();
        review(&injector, &review_body(object, dry_run)).unwrap().summary
    }

    #[test]
    fn the_summary_carries_what_events_need() {
        let owned = json!({"metadata": {"generateName": "web-7d-", "annotations": {"sidecar.istio.io/proxyCPULimit": "3"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "1"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d", "uid": "2", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": "x"}]}});
        let summary = summary_for("bounds:\n  cpu.limit: {max: '1'}\n", owned.clone(), false);
        assert_eq!(
            summary.owner.as_ref().map(|o| o.name.as_str()),
            Some("web-7d"),
            "the controller, not the first"
        );
        assert_eq!(
            summary.adjustments,
            ["istio-proxy cpu.limit clamped to 1 (cluster max)"]
        );
        assert!(!summary.dry_run && !summary.named, "{summary:?}");
        assert_eq!(summary.pod, "web-7d-");
        assert!(summary_for("{}", owned, true).dry_run);
        let uncontrolled = json!({"metadata": {"name": "job-1", "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "first", "uid": "1"},
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "second", "uid": "2"}]},
            "spec": {"containers": [{"name": "app", "image": "x"}]}});
        let summary = summary_for("{}", uncontrolled, false);
        assert_eq!(
            summary.owner.as_ref().map(|o| o.name.as_str()),
            Some("first"),
            "with no controller, the first"
        );
        let named = json!({"metadata": {"name": "lone", "annotations": {"sidecar.istio.io/proxyCPU": "x"}},
            "spec": {"containers": [{"name": "app", "image": "x"}]}});
        let summary = summary_for("{}", named, false);
        assert!(
            summary.named && summary.owner.is_none() && summary.denial.is_some(),
            "{summary:?}"
        );
        assert!(summary.adjustments.is_empty());
    }

    #[test]
    fn injected_pod_gets_a_base64_patch_and_its_uid() {
        let response = answer_for(json!({"spec": {"containers": [{"name": "a", "image": "b"}]}}));
        assert_eq!(response["response"]["uid"], "u1");
        assert_eq!(response["response"]["patchType"], "JSONPatch");
        assert!(response["response"]["patch"].is_string(), "{response}");
    }

    #[test]
    fn spec_without_containers_is_left_to_api_validation() {
        // A patch adding to a missing array would not apply; found by fuzz/review.
        for spec in [json!({}), json!({"containers": null}), json!({"initContainers": []})] {
            let response = answer_for(json!({"spec": spec}));
            assert_eq!(response["response"]["allowed"], true);
            assert!(response["response"].get("patch").is_none(), "{response}");
            let explained = crate::explain::explain(
                &Injector::new(InjectConfig::default()).unwrap(),
                &json!({"kind": "Pod", "spec": spec}),
                None,
                &[],
                &[],
            )
            .unwrap();
            assert_eq!(
                explained.decision, "skip:no-containers",
                "explain agrees with the webhook"
            );
            assert!(
                response["response"]["warnings"][0]
                    .as_str()
                    .unwrap()
                    .contains("no spec.containers")
            );
        }
    }
}
