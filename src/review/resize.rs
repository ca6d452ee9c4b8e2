//! The answer to a `pods/resize` UPDATE: both pods decoded, the engine's resize guard
//! ([`crate::engine::Injector::judge_resize`]), and the response.

use super::object::ReviewObject;
use super::wire::WebhookResponse;
use super::{ReviewError, ReviewSummary};
use crate::engine::{Injector, NamespaceContext, ResizeRequest};

/// Judges the resize from `old_object` to `object`; fills `response` and `summary`.
pub(super) fn answer_resize(
    injector: &Injector,
    uid: &str,
    objects: (Option<&ReviewObject>, Option<&ReviewObject>),
    context: &NamespaceContext<'_>,
    mut warnings: Vec<String>,
    response: &mut WebhookResponse,
    summary: &mut ReviewSummary,
) -> Result<(), ReviewError> {
    let missing = || ReviewError::MissingObject { uid: uid.to_string() };
    let invalid = |reason: String| ReviewError::InvalidPod {
        uid: uid.to_string(),
        reason,
    };
    let (old, new) = (objects.0.ok_or_else(missing)?, objects.1.ok_or_else(missing)?);
    let old = old.to_pod().map_err(invalid)?.pod;
    let new = new.to_pod().map_err(invalid)?.pod;
    if summary.pod.is_empty() {
        summary.pod = new.metadata.name.clone().unwrap_or_default();
    }
    let request = ResizeRequest {
        old: &old,
        new: &new,
        namespace_context: *context,
    };
    match injector.judge_resize(&request) {
        Ok(outcome) => {
            summary.decision = outcome.verdict.as_str();
            summary.resources = outcome.proxy;
            warnings.extend(outcome.warnings);
            response.warnings = warnings;
            if !outcome.patch.is_empty() {
                response.patch = Some(outcome.patch.into_bytes());
            }
        }
        Err(denial) => {
            summary.decision = "resize:deny";
            summary.denial = Some(denial.error.to_string());
            warnings.extend(denial.warnings);
            response.warnings = warnings;
            response.deny(denial.error.to_string());
        }
    }
    Ok(())
}
