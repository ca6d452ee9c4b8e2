//! The AdmissionReview wire format: bytes in, bytes out, around the pure engine.
//!
//! Requests are read in one pass into exactly what the engine needs: the envelope's fields,
//! then (for Pod CREATEs, and both objects of a `pods/resize` UPDATE) the object's metadata
//! fields the engine reads and its spec. Everything else, such as `managedFields` or
//! `status`, is skipped without being allocated. Operation and kind use kube-core's types. Responses are written in the
//! form the API server requires, with the patch as a base64 string ([`WireReview`]).

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube_core::GroupVersionKind;
use kube_core::admission::{AdmissionResponse, Operation};
use kube_core::response::Status;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::engine::{FieldKey, NamespaceContext, PodLevelChange, ProxyResources};
use crate::engine::{Injector, PodRequest};

mod resize;

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
    /// The pod's controlling owner (else its first owner), for Events on the workload.
    pub owner: Option<OwnerReference>,
    /// What the engine clamped, fitted or lowered, one line each (`cpu.limit clamped to 1
    /// (cluster max)`), from the resources' and pod-level provenance.
    pub adjustments: Vec<String>,
    /// The request is a dry run: nothing outside the answer may change (no Events).
    pub dry_run: bool,
    /// `pod` is the pod's own name, not its generateName.
    pub named: bool,
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

/// An AdmissionReview response as the API server reads it, with the patch as base64.
pub struct WireReview<'a> {
    api_version: &'a str,
    response: &'a AdmissionResponse,
}

impl<'a> WireReview<'a> {
    /// Wraps a kube-core response (kube-core would write the patch as an array of numbers).
    pub fn new(api_version: &'a str, response: &'a AdmissionResponse) -> Self {
        WireReview { api_version, response }
    }

    /// The JSON body: `{"apiVersion", "kind", "response": {"uid", "allowed", "status"
    /// (when denied), "patch" and "patchType" (when patched), "warnings" (when any)}}`.
    /// Written by hand so the base64 patch is encoded straight into the body: base64 never
    /// needs JSON escaping.
    pub fn to_bytes(&self) -> Vec<u8> {
        let response = self.response;
        let patch = response.patch.as_deref().filter(|patch| !patch.is_empty());
        let mut out = Vec::with_capacity(256 + patch.map_or(0, |patch| patch.len().div_ceil(3) * 4));
        out.extend_from_slice(b"{\"apiVersion\":");
        write_json(&mut out, self.api_version);
        out.extend_from_slice(b",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
        write_json(&mut out, &response.uid);
        out.extend_from_slice(if response.allowed {
            b",\"allowed\":true"
        } else {
            b",\"allowed\":false,\"status\":"
        });
        if !response.allowed {
            write_json(&mut out, &response.result);
        }
        if let Some(patch) = patch {
            out.extend_from_slice(b",\"patch\":\"");
            let start = out.len();
            out.resize(start + patch.len().div_ceil(3) * 4, 0);
            let written = base64::engine::general_purpose::STANDARD
                .encode_slice(patch, &mut out[start..])
                .unwrap_or(0);
            out.truncate(start + written);
            out.extend_from_slice(b"\",\"patchType\":\"JSONPatch\"");
        }
        if let Some(warnings) = response.warnings.as_ref().filter(|warnings| !warnings.is_empty()) {
            out.extend_from_slice(b",\"warnings\":");
            write_json(&mut out, warnings);
        }
        out.extend_from_slice(b"}}");
        out
    }
}

/// Appends `value` as JSON; the values written here (strings, a Status, a list of strings)
/// always serialize.
fn write_json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// The AdmissionReview envelope as sent (the type name appears in decoding errors), with the
/// request's objects read as `O`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound = "O: Deserialize<'de>")]
struct AdmissionReview<O> {
    api_version: String,
    kind: String,
    #[serde(default)]
    request: Option<Request<O>>,
}

/// The request fields the webhook reads; the object is kept raw until it is known to be a
/// Pod CREATE.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound = "O: Deserialize<'de>")]
struct Request<O> {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default = "none")]
    object: Option<O>,
    #[serde(default = "none")]
    old_object: Option<O>,
    #[serde(default, rename = "dryRun")]
    dry_run: Option<bool>,
}

fn none<O>() -> Option<O> {
    None
}

impl<O> Request<O> {
    /// The same request with its objects turned into `P`.
    fn map_objects<P>(self, into: impl Fn(O) -> P) -> Request<P> {
        Request {
            uid: self.uid,
            kind: self.kind,
            sub_resource: self.sub_resource,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            object: self.object.map(&into),
            old_object: self.old_object.map(&into),
            dry_run: self.dry_run,
        }
    }

    /// Whether this is a Pod CREATE, the only request the engine injects into.
    fn is_pod_create(&self) -> bool {
        self.kind.group.is_empty()
            && self.kind.kind == "Pod"
            && self.sub_resource.is_none()
            && self.operation == Operation::Create
    }
}

/// A request's object: read as a Pod in the one pass over the body (a Pod CREATE), or kept
/// raw until it is known to be one.
#[derive(Debug)]
enum ReviewObject {
    /// Read as a Pod.
    Pod(Box<PodObject>),
    /// As sent.
    Raw(Box<RawValue>),
}

impl ReviewObject {
    /// The object as a Pod, with whether it had a `metadata` object.
    fn to_pod(&self) -> Result<(Pod, bool), String> {
        match self {
            ReviewObject::Pod(object) => Ok(pod_of((**object).clone())),
            ReviewObject::Raw(raw) => into_pod(raw),
        }
    }

    /// The object's `metadata` as JSON.
    fn metadata(&self) -> Option<serde_json::Value> {
        #[derive(Deserialize)]
        struct OnlyMetadata {
            metadata: Option<serde_json::Value>,
        }
        match self {
            ReviewObject::Pod(object) => serde_json::to_value(object.metadata.as_ref()?).ok(),
            ReviewObject::Raw(raw) => serde_json::from_str::<OnlyMetadata>(raw.get()).ok()?.metadata,
        }
    }

    /// A label of the object.
    fn label(&self, key: &str) -> Option<String> {
        match self {
            ReviewObject::Pod(object) => object.metadata.as_ref()?.labels.as_ref()?.get(key).cloned(),
            ReviewObject::Raw(raw) => object_label(raw, key),
        }
    }

    /// `metadata.namespace`, when the object has one.
    fn namespace(&self) -> String {
        match self {
            ReviewObject::Pod(object) => object
                .metadata
                .as_ref()
                .and_then(|metadata| metadata.namespace.clone())
                .unwrap_or_default(),
            ReviewObject::Raw(raw) => object_namespace(raw),
        }
    }
}

/// The parts of a Pod the engine reads.
#[derive(Debug, Clone, Deserialize)]
struct PodObject {
    #[serde(default)]
    metadata: Option<PodMetadata>,
    #[serde(default)]
    spec: Option<PodSpec>,
}

/// The metadata fields the engine reads; the rest (`managedFields` above all) is skipped.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct PodMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generate_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner_references: Option<Vec<OwnerReference>>,
}

/// A parsed AdmissionReview, before the engine runs on it.
#[derive(Debug)]
pub struct ParsedReview {
    api_version: String,
    namespace: String,
    request: Request<ReviewObject>,
}

impl ParsedReview {
    /// The request uid, echoed in the response.
    pub fn uid(&self) -> &str {
        &self.request.uid
    }

    /// The AdmissionReview version, answered in kind.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// A label of the object (the pod's `istio.io/rev`, which picks the revision).
    pub fn object_label(&self, key: &str) -> Option<String> {
        self.request.object.as_ref()?.label(key)
    }

    /// The namespace the object is created in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The object's `metadata` as JSON (the VPA layer reads its owner and labels).
    pub fn object_metadata(&self) -> Option<serde_json::Value> {
        self.request.object.as_ref()?.metadata()
    }

    /// Whether this is a Pod CREATE, the only request the engine looks at.
    pub fn is_pod_create(&self) -> bool {
        self.request.is_pod_create()
    }
}

impl ParsedReview {
    /// Whether this is an UPDATE of a Pod's `resize` subresource, which the resize guard judges.
    pub fn is_pod_resize(&self) -> bool {
        let request = &self.request;
        request.kind.group.is_empty()
            && request.kind.kind == "Pod"
            && request.sub_resource.as_deref() == Some("resize")
            && request.operation == Operation::Update
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
    // A derived struct also reads a JSON array as its fields in order; an AdmissionReview is
    // only ever an object.
    if body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ReviewError::Malformed(
            "invalid type: sequence, expected struct AdmissionReview".into(),
        ));
    }
    check_nesting(body)?;
    // A Pod CREATE, nearly every request, is read in one pass with its object straight into
    // a Pod. Anything else, or a body that does not read so, is read again with the objects
    // kept raw, which also gives every error its usual wording.
    if let Ok(review) = serde_json::from_slice::<AdmissionReview<PodObject>>(body)
        && SUPPORTED_VERSIONS.contains(&review.api_version.as_str())
        && review.kind == "AdmissionReview"
        && let Some(request) = review.request
        && request.is_pod_create()
    {
        let request = request.map_objects(|pod| ReviewObject::Pod(Box::new(pod)));
        return Ok(parsed(review.api_version, request));
    }
    let review: AdmissionReview<Box<RawValue>> =
        serde_json::from_slice(body).map_err(|error| ReviewError::Malformed(error.to_string()))?;
    if !SUPPORTED_VERSIONS.contains(&review.api_version.as_str()) {
        return Err(ReviewError::Unsupported {
            field: "apiVersion",
            value: review.api_version,
            expected: "admission.k8s.io/v1",
        });
    }
    if review.kind != "AdmissionReview" {
        return Err(ReviewError::Unsupported {
            field: "kind",
            value: review.kind,
            expected: "AdmissionReview",
        });
    }
    let request = review.request.ok_or(ReviewError::MissingRequest)?;
    Ok(parsed(review.api_version, request.map_objects(ReviewObject::Raw)))
}

/// The parsed review, its namespace the request's or else the object's.
fn parsed(api_version: String, request: Request<ReviewObject>) -> ParsedReview {
    let namespace = match &request.namespace {
        Some(namespace) => namespace.clone(),
        None => request.object.as_ref().map(ReviewObject::namespace).unwrap_or_default(),
    };
    ParsedReview {
        api_version,
        namespace,
        request,
    }
}

/// serde_json's own depth limit for the values it builds, applied to the whole body: the
/// fields we skip are skipped without one, and no pod nests anywhere near this deep.
const MAX_NESTING: usize = 128;

/// Refuses bodies nested deeper than [`MAX_NESTING`] anywhere, with serde_json's wording.
/// One pass over the bytes; brackets inside strings do not count.
fn check_nesting(body: &[u8]) -> Result<(), ReviewError> {
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&byte) = body.get(at) {
        match byte {
            b'"' => {
                at = string_end(body, at + 1);
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(ReviewError::Malformed(format!(
                        "recursion limit exceeded: more than {MAX_NESTING} nested arrays or objects at byte {at}"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    Ok(())
}

/// The offset just past the string that starts at `start` (after its opening quote).
fn string_end(body: &[u8], start: usize) -> usize {
    let mut at = start;
    while let Some(&byte) = body.get(at) {
        match byte {
            b'"' => return at + 1,
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
    body.len()
}

/// The metadata fields read from a raw object before it is known to be a Pod.
#[derive(Deserialize, Default)]
struct RawMetadata {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// The object's namespace and labels, read from its metadata alone.
fn raw_metadata(object: &RawValue) -> RawMetadata {
    #[derive(Deserialize)]
    struct Object {
        #[serde(default)]
        metadata: Option<RawMetadata>,
    }
    serde_json::from_str::<Object>(object.get())
        .ok()
        .and_then(|object| object.metadata)
        .unwrap_or_default()
}

/// A label of the object.
fn object_label(object: &RawValue, key: &str) -> Option<String> {
    raw_metadata(object).labels?.remove(key)
}

/// `metadata.namespace` of a raw object, when it has one.
fn object_namespace(object: &RawValue) -> String {
    raw_metadata(object).namespace.unwrap_or_default()
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
    let is_pod_resize = parsed.is_pod_resize();
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
        owner: None,
        adjustments: Vec::new(),
        dry_run: request.dry_run.unwrap_or(false),
        named: !request.name.is_empty(),
    };
    let mut response = allowed(&request.uid);
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
        return Ok(answer(&api_version, &response, summary));
    }
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
    let (pod, has_metadata) = match object {
        ReviewObject::Pod(object) => pod_of(*object),
        ReviewObject::Raw(raw) => into_pod(&raw).map_err(|reason| ReviewError::InvalidPod { uid, reason })?,
    };
    if summary.pod.is_empty() {
        summary.named = pod.metadata.name.is_some();
        summary.pod = pod
            .metadata
            .name
            .clone()
            .or_else(|| pod.metadata.generate_name.clone())
            .unwrap_or_default();
    }
    summary.owner = pod.metadata.owner_references.as_ref().and_then(|owners| {
        owners
            .iter()
            .find(|owner| owner.controller == Some(true))
            .or_else(|| owners.first())
            .cloned()
    });
    let pod_request = PodRequest {
        pod: &pod,
        namespace: &namespace,
        workload: None,
        has_metadata,
        namespace_context: *context,
        reinjection: false,
    };
    let mut warnings = context_warnings;
    match injector.inject(&pod_request) {
        Ok(outcome) => {
            summary.decision = outcome.decision.as_str();
            summary.adjustments = adjustments(outcome.resources.as_ref(), &outcome.pod_level);
            summary.resources = outcome.resources;
            warnings.extend(outcome.warnings);
            response.warnings = Some(warnings);
            if !outcome.patch.is_empty() {
                // The engine serialized the patch as it built it; `WireReview` marks it
                // JSONPatch and writes it as base64.
                response.patch = Some(outcome.patch.into_bytes());
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

/// A response allowing request `uid`, with no patch yet. (kube-core's `AdmissionResponse::from`
/// needs its own request type, so this starts from `invalid` and sets the fields.)
pub fn allowed(uid: &str) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid("");
    response.uid = uid.to_string();
    response.allowed = true;
    response.result = Status::default();
    response
}

fn answer(api_version: &str, response: &AdmissionResponse, summary: ReviewSummary) -> ReviewAnswer {
    let body = WireReview::new(api_version, response).to_bytes();
    ReviewAnswer { body, summary }
}

/// Reads the object as a Pod; the flag says whether it had a `metadata` object. (A missing
/// or null `spec.containers` reads as empty; the engine skips such a pod.)
fn into_pod(object: &RawValue) -> Result<(Pod, bool), String> {
    let parsed: PodObject = serde_json::from_str(object.get()).map_err(|error| error.to_string())?;
    Ok(pod_of(parsed))
}

/// The Pod of the parts read, with whether it had a `metadata` object.
fn pod_of(parsed: PodObject) -> (Pod, bool) {
    let has_metadata = parsed.metadata.is_some();
    let metadata = parsed.metadata.map_or_else(ObjectMeta::default, |metadata| ObjectMeta {
        name: metadata.name,
        generate_name: metadata.generate_name,
        namespace: metadata.namespace,
        labels: metadata.labels,
        annotations: metadata.annotations,
        owner_references: metadata.owner_references,
        ..ObjectMeta::default()
    });
    (
        Pod {
            metadata,
            spec: parsed.spec,
            status: None,
        },
        has_metadata,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::config::InjectConfig;

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
    fn nesting_is_counted_outside_strings_only() {
        let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(check_nesting(deep(MAX_NESTING).as_bytes()).is_ok());
        let error = check_nesting(deep(MAX_NESTING + 1).as_bytes()).unwrap_err();
        assert!(error.to_string().contains("recursion limit exceeded"), "{error}");
        let in_strings = format!(r#"{{"a": "{}", "b": "\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(check_nesting(in_strings.as_bytes()).is_ok());
    }

    #[test]
    fn only_the_fields_the_engine_reads_are_kept() {
        let object = json!({
            "metadata": {
                "name": "web", "namespace": "apps", "labels": {"app": "web"},
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                "resourceVersion": "7",
            },
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            "status": {"phase": "Pending"},
        });
        let raw = serde_json::value::to_raw_value(&object).unwrap();
        let (pod, has_metadata) = into_pod(&raw).unwrap();
        assert!(has_metadata);
        assert_eq!(pod.metadata.name.as_deref(), Some("web"));
        assert_eq!(pod.metadata.labels.unwrap()["app"], "web");
        assert!(pod.metadata.managed_fields.is_none() && pod.metadata.resource_version.is_none());
        assert!(pod.status.is_none());
        assert_eq!(pod.spec.unwrap().containers[0].name, "app");
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
