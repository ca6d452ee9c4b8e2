//! Reading a request body: UTF-8, grammar and nesting checked over the bytes ([`scan`]),
//! then the AdmissionReview envelope and its request, with a Pod CREATE's object read
//! straight into a Pod and any other object kept raw.

use std::borrow::Cow;

use kube_core::admission::Operation;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::ReviewError;
use super::object::{PodObject, ReviewObject};
use super::scan::{self, MAX_NESTING, Scanned};

/// API versions of AdmissionReview we answer.
const SUPPORTED_VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// The AdmissionReview envelope as sent (the type name appears in decoding errors), with the
/// request's objects read as `O`.
///
/// `apiVersion` and `kind` are borrowed from the body where they have no escapes: only one
/// of [`SUPPORTED_VERSIONS`] is kept.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound = "O: Deserialize<'de>")]
struct AdmissionReview<'a, O> {
    #[serde(borrow)]
    api_version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    request: Option<Request<O>>,
}

/// `request.kind`, as far as the webhook reads it: whether it names the core group's `Pod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RequestKind {
    /// The group is the core one (`""`) and the kind `Pod`.
    pub(super) core_pod: bool,
}

impl<'de> Deserialize<'de> for RequestKind {
    /// Read as kube-core's `GroupVersionKind` is (its name is in decoding errors), with its
    /// strings borrowed from the body and none kept.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct GroupVersionKind<'a> {
            #[serde(borrow)]
            group: Cow<'a, str>,
            #[serde(borrow, rename = "version")]
            _version: Cow<'a, str>,
            #[serde(borrow)]
            kind: Cow<'a, str>,
        }
        let sent = GroupVersionKind::deserialize(deserializer)?;
        Ok(RequestKind {
            core_pod: sent.group.is_empty() && sent.kind == "Pod",
        })
    }
}

/// The request fields the webhook reads; the object is kept raw until it is known to be a
/// Pod CREATE.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound = "O: Deserialize<'de>")]
pub(super) struct Request<O> {
    pub(super) uid: String,
    pub(super) kind: RequestKind,
    #[serde(default)]
    pub(super) sub_resource: Option<String>,
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) namespace: Option<String>,
    pub(super) operation: Operation,
    #[serde(default)]
    pub(super) object: Option<O>,
    #[serde(default)]
    pub(super) old_object: Option<O>,
    #[serde(default, rename = "dryRun")]
    pub(super) dry_run: Option<bool>,
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
        self.kind.core_pod && self.sub_resource.is_none() && self.operation == Operation::Create
    }
}

/// A parsed AdmissionReview, before the engine runs on it.
#[derive(Debug)]
pub struct ParsedReview {
    pub(super) api_version: &'static str,
    pub(super) namespace: String,
    pub(super) request: Request<ReviewObject>,
}

impl ParsedReview {
    /// The request uid, echoed in the response.
    pub fn uid(&self) -> &str {
        &self.request.uid
    }

    /// The AdmissionReview version, answered in kind.
    pub fn api_version(&self) -> &str {
        self.api_version
    }

    /// A label of the object (the pod's `istio.io/rev`, which picks the revision).
    pub fn object_label(&self, key: &str) -> Option<String> {
        self.request.object.as_ref()?.label(key)
    }

    /// The namespace the object is created in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The kind and name of the object's controlling owner, with the value of its label
    /// `label` (the VPA layer's start).
    pub fn controller_owner(&self, label: &str) -> Option<(String, String, Option<String>)> {
        self.request.object.as_ref()?.controller_owner(label)
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
        request.kind.core_pod
            && request.sub_resource.as_deref() == Some("resize")
            && request.operation == Operation::Update
    }
}

/// Parses and checks an AdmissionReview body.
pub fn parse_review(body: &[u8]) -> Result<ParsedReview, ReviewError> {
    // serde_json skips unknown fields without checking their UTF-8; JSON must be UTF-8
    // throughout. Checked once here, the body is then read as a `str`, so serde_json does
    // not check each string again.
    let text = match simdutf8::compat::from_utf8(body) {
        Ok(text) => text,
        Err(error) => {
            return Err(ReviewError::Malformed(format!(
                "not UTF-8 (invalid byte at offset {})",
                error.valid_up_to()
            )));
        }
    };
    // A derived struct also reads a JSON array as its fields in order; an AdmissionReview is
    // only ever an object.
    if body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ReviewError::Malformed(
            "invalid type: sequence, expected struct AdmissionReview".into(),
        ));
    }
    // A Pod CREATE, nearly every request, is read in one pass with its object straight into
    // a Pod, from the body without the values that read never uses ([`scan`]). Anything
    // else, or a body that does not read so, is read again as sent with the objects kept
    // raw, which also gives every error its usual wording.
    let omitted = match scan::scan(body) {
        Scanned::Json(omitted) => omitted,
        Scanned::TooDeep(at) => return Err(too_deep(at)),
        Scanned::NotJson => {
            check_nesting(body)?;
            Vec::new()
        }
    };
    let shortened = if omitted.is_empty() {
        None
    } else {
        scan::without(text, &omitted)
    };
    if let Ok(review) = serde_json::from_str::<AdmissionReview<PodObject>>(shortened.as_deref().unwrap_or(text))
        && let Some(api_version) = supported_version(&review.api_version)
        && review.kind == "AdmissionReview"
        && let Some(request) = review.request
        && request.is_pod_create()
    {
        let request = request.map_objects(|pod| ReviewObject::Pod(Box::new(pod)));
        return Ok(parsed(api_version, request));
    }
    let review: AdmissionReview<Box<RawValue>> =
        serde_json::from_str(text).map_err(|error| ReviewError::Malformed(error.to_string()))?;
    let Some(api_version) = supported_version(&review.api_version) else {
        return Err(ReviewError::Unsupported {
            field: "apiVersion",
            value: review.api_version.into_owned(),
            expected: "admission.k8s.io/v1",
        });
    };
    if review.kind != "AdmissionReview" {
        return Err(ReviewError::Unsupported {
            field: "kind",
            value: review.kind.into_owned(),
            expected: "AdmissionReview",
        });
    }
    let request = review.request.ok_or(ReviewError::MissingRequest)?;
    Ok(parsed(api_version, request.map_objects(ReviewObject::Raw)))
}

/// The one of [`SUPPORTED_VERSIONS`] that `sent` names.
fn supported_version(sent: &str) -> Option<&'static str> {
    SUPPORTED_VERSIONS.into_iter().find(|version| *version == sent)
}

/// The parsed review, its namespace the request's or else the object's.
fn parsed(api_version: &'static str, mut request: Request<ReviewObject>) -> ParsedReview {
    let namespace = match request.namespace.take() {
        Some(namespace) => namespace,
        None => request.object.as_ref().map(ReviewObject::namespace).unwrap_or_default(),
    };
    ParsedReview {
        api_version,
        namespace,
        request,
    }
}

/// The refusal of a body nested deeper than [`MAX_NESTING`], in serde_json's wording.
fn too_deep(at: usize) -> ReviewError {
    ReviewError::Malformed(format!(
        "recursion limit exceeded: more than {MAX_NESTING} nested arrays or objects at byte {at}"
    ))
}

/// Refuses a body that is not JSON but nests deeper than [`MAX_NESTING`] somewhere, as
/// [`scan`] refuses a JSON one. Brackets inside strings do not count.
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
                    return Err(too_deep(at));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    Ok(())
}

/// The offset just past the string that starts at `start` (after its opening quote). Most
/// of a pod's bytes are inside strings, so they are searched for the next quote or escape
/// rather than walked byte by byte.
fn string_end(body: &[u8], start: usize) -> usize {
    let mut at = start;
    while let Some(found) = body.get(at..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) {
        let index = at + found;
        if body.get(index) == Some(&b'"') {
            return index + 1;
        }
        at = index + 2;
    }
    body.len()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
