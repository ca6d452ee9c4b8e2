//! The response as the API server reads it: the AdmissionReview JSON written by hand, with
//! the patch as a base64 string (kube-core would write it as an array of numbers).

use kube_core::admission::AdmissionResponse;
use kube_core::response::Status;
use serde::Serialize;

/// The webhook's answer to one request, before it is written ([`WireReview`]). Built
/// field by field: kube-core's `AdmissionResponse` can only be started from a request of
/// its own type or from `invalid`, which allocates a failure status to be thrown away.
#[derive(Debug, Clone, Default)]
pub struct WebhookResponse {
    /// The request uid, echoed.
    pub uid: String,
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Why it is not, when denied.
    pub status: Status,
    /// The JSON Patch, when the object is changed.
    pub patch: Option<Vec<u8>>,
    /// Warnings shown to the user.
    pub warnings: Vec<String>,
}

impl WebhookResponse {
    /// A response allowing request `uid`, with no patch yet.
    pub fn allowed(uid: &str) -> Self {
        WebhookResponse {
            uid: uid.to_string(),
            allowed: true,
            ..WebhookResponse::default()
        }
    }

    /// Denies the request with `message`, as kube-core's `deny` does: the status keeps its
    /// defaults and carries the message.
    pub fn deny(&mut self, message: String) {
        self.allowed = false;
        self.status.message = message;
    }
}

/// An AdmissionReview response as the API server reads it, with the patch as base64.
pub struct WireReview<'a> {
    api_version: &'a str,
    uid: &'a str,
    allowed: bool,
    status: &'a Status,
    patch: Option<&'a [u8]>,
    warnings: &'a [String],
}

impl<'a> WireReview<'a> {
    /// Wraps the webhook's response.
    pub fn of(api_version: &'a str, response: &'a WebhookResponse) -> Self {
        WireReview {
            api_version,
            uid: &response.uid,
            allowed: response.allowed,
            status: &response.status,
            patch: response.patch.as_deref(),
            warnings: &response.warnings,
        }
    }

    /// Wraps a kube-core response (kube-core would write the patch as an array of numbers).
    pub fn new(api_version: &'a str, response: &'a AdmissionResponse) -> Self {
        WireReview {
            api_version,
            uid: &response.uid,
            allowed: response.allowed,
            status: &response.result,
            patch: response.patch.as_deref(),
            warnings: response.warnings.as_deref().unwrap_or_default(),
        }
    }

    /// The JSON body: `{"apiVersion", "kind", "response": {"uid", "allowed", "status"
    /// (when denied), "patch" and "patchType" (when patched), "warnings" (when any)}}`.
    /// Written by hand so the base64 patch is encoded straight into the body: base64 never
    /// needs JSON escaping.
    pub fn to_bytes(&self) -> Vec<u8> {
        let patch = self.patch.filter(|patch| !patch.is_empty());
        let mut out =
            Vec::with_capacity(256 + patch.map_or(0, |patch| base64_simd::STANDARD.encoded_length(patch.len())));
        out.extend_from_slice(b"{\"apiVersion\":");
        write_json(&mut out, self.api_version);
        out.extend_from_slice(b",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
        write_json(&mut out, self.uid);
        out.extend_from_slice(if self.allowed {
            b",\"allowed\":true"
        } else {
            b",\"allowed\":false,\"status\":"
        });
        if !self.allowed {
            write_json(&mut out, self.status);
        }
        if let Some(patch) = patch {
            out.extend_from_slice(b",\"patch\":\"");
            // Into the spare capacity reserved above: nothing is zeroed first.
            base64_simd::STANDARD.encode_append(patch, &mut out);
            out.extend_from_slice(b"\",\"patchType\":\"JSONPatch\"");
        }
        if !self.warnings.is_empty() {
            out.extend_from_slice(b",\"warnings\":");
            write_json(&mut out, self.warnings);
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
