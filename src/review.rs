//! The AdmissionReview wire format: bytes in, bytes out, around the pure engine.
//!
//! Requests are parsed with kube-core's admission types. Responses are built with
//! [`AdmissionResponse::from`] (which echoes the uid) and `deny()`, then written in the
//! form the API server requires: kube-core serialises `patch` as an array of numbers,
//! but the API wants a base64 string, so [`WireReview`] writes it as one.

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube_core::response::Status;
use serde::Serialize;

use crate::engine::resources::{NamespaceContext, ProxyResources};
use crate::engine::{Injector, PodRequest};

/// API versions of AdmissionReview we answer.
const SUPPORTED_VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// Why a request body is not a usable AdmissionReview; each maps to HTTP 400.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The body is not JSON or not an AdmissionReview.
    #[error("body is not a valid AdmissionReview: {0}")]
    Malformed(String),
    /// The envelope names another type or version.
    #[error("unsupported {field} {value:?}; expected {expected}")]
    Unsupported {
        /// `apiVersion` or `kind`.
        field: &'static str,
        /// What was sent.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The review carries no `request`.
    #[error("AdmissionReview has no request")]
    MissingRequest,
    /// A CREATE carries no `object`.
    #[error("AdmissionReview request {uid} has no object")]
    MissingObject {
        /// The request uid.
        uid: String,
    },
    /// The object cannot be read as a Pod.
    #[error("request {uid}: object is not a valid Pod: {reason}")]
    InvalidPod {
        /// The request uid.
        uid: String,
        /// The decoding error.
        reason: String,
    },
}

/// What happened to one review, for logs and metrics.
#[derive(Debug, Clone)]
pub struct ReviewSummary {
    /// The request uid.
    pub uid: String,
    /// The namespace.
    pub namespace: String,
    /// The pod name, or its generateName.
    pub pod: String,
    /// The decision word, e.g. `inject:policy-enabled`, `skip:not-a-pod` or `deny`.
    pub decision: &'static str,
    /// The denial message, when denied.
    pub denial: Option<String>,
    /// The proxy resources, when injected.
    pub resources: Option<ProxyResources>,
}

impl ReviewSummary {
    /// Whether a sidecar was added.
    pub fn injected(&self) -> bool {
        self.decision.starts_with("inject")
    }
}

/// The response body and what it decided.
#[derive(Debug)]
pub struct ReviewAnswer {
    /// The JSON AdmissionReview to send back.
    pub body: Vec<u8>,
    /// What happened.
    pub summary: ReviewSummary,
}

/// An AdmissionReview response as the API server reads it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireReview<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: WireResponse<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a Vec<String>>,
}

impl<'a> WireReview<'a> {
    /// Wraps a kube-core response, with the patch as base64.
    pub fn new(api_version: &'a str, response: &'a AdmissionResponse) -> Self {
        let patch = response
            .patch
            .as_ref()
            .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes));
        WireReview {
            api_version,
            kind: "AdmissionReview",
            response: WireResponse {
                uid: &response.uid,
                allowed: response.allowed,
                status: (!response.allowed).then_some(&response.result),
                patch_type: patch.as_ref().map(|_| "JSONPatch"),
                patch,
                warnings: response.warnings.as_ref().filter(|w| !w.is_empty()),
            },
        }
    }
}

/// A parsed AdmissionReview, before the engine runs on it.
#[derive(Debug)]
pub struct ParsedReview {
    api_version: String,
    namespace: String,
    request: AdmissionRequest<DynamicObject>,
}

impl ParsedReview {
    /// The namespace the object is created in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether this is a Pod CREATE, the only request the engine looks at.
    pub fn is_pod_create(&self) -> bool {
        let request = &self.request;
        request.kind.group.is_empty()
            && request.kind.kind == "Pod"
            && request.sub_resource.is_none()
            && request.operation == Operation::Create
    }
}

/// Parses and checks an AdmissionReview body.
pub fn parse_review(body: &[u8]) -> Result<ParsedReview, ReviewError> {
    // serde_json skips unknown fields without checking their UTF-8; JSON must be UTF-8 throughout.
    if let Err(error) = std::str::from_utf8(body) {
        return Err(ReviewError::Malformed(format!(
            "not UTF-8 (invalid byte at offset {})",
            error.valid_up_to()
        )));
    }
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|error| ReviewError::Malformed(error.to_string()))?;
    if !SUPPORTED_VERSIONS.contains(&review.types.api_version.as_str()) {
        return Err(ReviewError::Unsupported {
            field: "apiVersion",
            value: review.types.api_version,
            expected: "admission.k8s.io/v1",
        });
    }
    if review.types.kind != "AdmissionReview" {
        return Err(ReviewError::Unsupported {
            field: "kind",
            value: review.types.kind,
            expected: "AdmissionReview",
        });
    }
    let request: AdmissionRequest<DynamicObject> = review.try_into().map_err(|_| ReviewError::MissingRequest)?;
    let namespace = request
        .namespace
        .clone()
        .or_else(|| request.object.as_ref().and_then(|o| o.metadata.namespace.clone()))
        .unwrap_or_default();
    Ok(ParsedReview {
        api_version: request.types.api_version.clone(),
        namespace,
        request,
    })
}

/// Answers one AdmissionReview body with no namespace knowledge.
pub fn review(injector: &Injector, body: &[u8]) -> Result<ReviewAnswer, ReviewError> {
    answer_review(injector, parse_review(body)?, &NamespaceContext::default(), Vec::new())
}

/// Runs the engine on a parsed review with what is known about its namespace;
/// `context_warnings` (e.g. a cache fallback) are passed on to the user.
pub fn answer_review(
    injector: &Injector,
    parsed: ParsedReview,
    context: &NamespaceContext<'_>,
    context_warnings: Vec<String>,
) -> Result<ReviewAnswer, ReviewError> {
    let is_pod_create = parsed.is_pod_create();
    let ParsedReview {
        api_version,
        namespace,
        request,
    } = parsed;
    let mut summary = ReviewSummary {
        uid: request.uid.clone(),
        namespace: namespace.clone(),
        pod: request.name.clone(),
        decision: "skip:not-a-pod",
        denial: None,
        resources: None,
    };
    let mut response = AdmissionResponse::from(&request);
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod" && request.sub_resource.is_none();
    if !is_pod {
        return Ok(answer(&api_version, &response, summary));
    }
    if !is_pod_create {
        summary.decision = "skip:not-a-create";
        return Ok(answer(&api_version, &response, summary));
    }
    let uid = request.uid.clone();
    let object = request
        .object
        .ok_or_else(|| ReviewError::MissingObject { uid: uid.clone() })?;
    let (pod, has_metadata, has_containers) =
        into_pod(object).map_err(|reason| ReviewError::InvalidPod { uid, reason })?;
    if summary.pod.is_empty() {
        summary.pod = pod
            .metadata
            .name
            .clone()
            .or_else(|| pod.metadata.generate_name.clone())
            .unwrap_or_default();
    }
    if pod.spec.is_some() && !has_containers {
        // The API server refuses such a pod after admission, with a clearer message than a
        // patch that cannot apply to a missing array would give.
        summary.decision = "skip:no-containers";
        let mut warnings = context_warnings;
        warnings.push("the pod has no spec.containers; nothing to inject".into());
        response.warnings = Some(warnings);
        return Ok(answer(&api_version, &response, summary));
    }
    let pod_request = PodRequest {
        pod: &pod,
        namespace: &namespace,
        workload: None,
        has_metadata,
        namespace_context: *context,
    };
    let mut warnings = context_warnings;
    match injector.inject(&pod_request) {
        Ok(outcome) => {
            summary.decision = outcome.decision.as_str();
            summary.resources = outcome.resources;
            warnings.extend(outcome.warnings);
            response.warnings = Some(warnings);
            if !outcome.patch.0.is_empty() {
                let unpatched = response.clone();
                response = match response.with_patch(outcome.patch) {
                    Ok(response) => response,
                    Err(error) => {
                        let message = format!("cannot serialise patch: {error}");
                        summary.decision = "deny";
                        summary.denial = Some(message.clone());
                        unpatched.deny(message)
                    }
                };
            }
        }
        Err(denial) => {
            summary.decision = "deny";
            summary.denial = Some(denial.error.to_string());
            warnings.extend(denial.warnings);
            response.warnings = Some(warnings);
            response = response.deny(denial.error.to_string());
        }
    }
    Ok(answer(&api_version, &response, summary))
}

fn answer(api_version: &str, response: &AdmissionResponse, summary: ReviewSummary) -> ReviewAnswer {
    let body = serde_json::to_vec(&WireReview::new(api_version, response)).unwrap_or_default();
    ReviewAnswer { body, summary }
}

/// Reads the object as a Pod; the flags say whether it had a `metadata` object and a
/// `spec.containers` array (k8s-openapi reads a missing one as empty).
fn into_pod(object: DynamicObject) -> Result<(Pod, bool, bool), String> {
    let has_metadata = object.metadata != Default::default();
    let mut data = object.data;
    let has_containers = data
        .pointer("/spec/containers")
        .is_some_and(serde_json::Value::is_array);
    let spec = match data.get_mut("spec").map(serde_json::Value::take) {
        None | Some(serde_json::Value::Null) => None,
        Some(spec) => Some(serde_json::from_value::<PodSpec>(spec).map_err(|error| format!("spec: {error}"))?),
    };
    Ok((
        Pod {
            metadata: object.metadata,
            spec,
            status: None,
        },
        has_metadata,
        has_containers,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::config::InjectConfig;

    fn answer_for(object: Value) -> Value {
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
                "object": object,
            }
        });
        let injector = Injector::new(InjectConfig::default()).unwrap();
        let answer = review(&injector, &serde_json::to_vec(&body).unwrap()).unwrap();
        serde_json::from_slice(&answer.body).unwrap()
    }

    #[test]
    fn injected_pod_gets_a_base64_patch_and_its_uid() {
        let response = answer_for(json!({"spec": {"containers": [{"name": "a", "image": "b"}]}}));
        assert_eq!(response["response"]["uid"], "u1");
        assert_eq!(response["response"]["patchType"], "JSONPatch");
        assert!(response["response"]["patch"].is_string(), "{response}");
    }

    #[test]
    fn invalid_utf8_is_refused_even_in_an_unknown_field() {
        // Found by fuzz/review: serde_json skips unknown fields without checking them.
        let body = b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"x\":\"\xff\"}";
        let error = parse_review(body).unwrap_err();
        assert!(
            error.to_string().contains("not UTF-8 (invalid byte at offset 66)"),
            "{error}"
        );
    }

    #[test]
    fn spec_without_containers_is_left_to_api_validation() {
        // A patch adding to a missing array would not apply; found by fuzz/review.
        for spec in [json!({}), json!({"containers": null}), json!({"initContainers": []})] {
            let response = answer_for(json!({"spec": spec}));
            assert_eq!(response["response"]["allowed"], true);
            assert!(response["response"].get("patch").is_none(), "{response}");
            assert!(
                response["response"]["warnings"][0]
                    .as_str()
                    .unwrap()
                    .contains("no spec.containers")
            );
        }
    }
}
