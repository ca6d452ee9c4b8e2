//! The AdmissionReview wire format: bytes in, bytes out, around the pure engine.
//!
//! Requests are read in one pass into exactly what the engine needs: the envelope's fields,
//! then (for Pod CREATEs, and both objects of a `pods/resize` UPDATE) the object's metadata
//! fields the engine reads and its spec. Everything else, such as `managedFields` or
//! `status`, is skipped without being allocated. Operation and kind use kube-core's types.
//! Responses are written in the form the API server requires, with the patch as a base64
//! string ([`WireReview`]).
//!
//! The parts: `scan` checks the body's grammar and finds the values the one-pass read can
//! leave out, `parse` reads the envelope, `object` the objects in it, `answer` runs the
//! engine on a Pod CREATE, `resize` the resize guard on a `pods/resize` UPDATE, and `wire`
//! writes the response.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::engine::{Injector, NamespaceContext, ProxyResources};

mod annotations;
mod answer;
mod object;
mod parse;
mod pod_spec;
mod resize;
mod scan;
mod wire;

pub use answer::answer_review;
pub use object::controller_owner;
pub use parse::{ParsedReview, parse_review};
pub use wire::{WebhookResponse, WireReview};

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

/// Answers one AdmissionReview body with no namespace knowledge.
pub fn review(injector: &Injector, body: &[u8]) -> Result<ReviewAnswer, ReviewError> {
    answer_review(injector, parse_review(body)?, &NamespaceContext::default(), Vec::new())
}
