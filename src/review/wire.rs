//! The response as the API server reads it: the AdmissionReview JSON written by hand, with
//! the patch as a base64 string (kube-core would write it as an array of numbers).

use kube_core::admission::AdmissionResponse;
use serde::Serialize;

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
        let mut out =
            Vec::with_capacity(256 + patch.map_or(0, |patch| base64_simd::STANDARD.encoded_length(patch.len())));
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
            // Into the spare capacity reserved above: nothing is zeroed first.
            base64_simd::STANDARD.encode_append(patch, &mut out);
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
