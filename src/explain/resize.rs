//! `explain --resize`: the resize guard's answer for a stored pod and a proposed resize,
//! through the same engine call as the webhook.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod};
use serde::Serialize;
use serde_json::Value;

use super::{ExplainError, FieldExplanation, field_row};
use crate::engine::{FieldKey, Injector, NamespaceContext};

/// The explanation of a proposed `pods/resize`.
#[derive(Debug, Clone, Serialize)]
pub struct ResizeExplanation {
    /// e.g. `resize:clamped`, `resize:followed` or `resize:deny`.
    pub decision: String,
    /// The refusal, when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied: Option<String>,
    /// The proxy's fields as the resize would store them, with what the guard changed.
    pub resources: Vec<FieldExplanation>,
    /// Warnings the webhook would return.
    pub warnings: Vec<String>,
}

/// Explains the resize of the stored pod `old` to `new`, through the same guard as the
/// webhook.
pub fn explain_resize(
    injector: &Injector,
    old: &Value,
    new: &Value,
    namespace: Option<&Namespace>,
    limit_ranges: &[LimitRange],
) -> Result<ResizeExplanation, ExplainError> {
    let read = |value: &Value| -> Result<Pod, ExplainError> {
        serde_json::from_value(value.clone()).map_err(|e| ExplainError::InvalidPod(e.to_string()))
    };
    let (old, new) = (read(old)?, read(new)?);
    let request = crate::engine::ResizeRequest {
        old: &old,
        new: &new,
        namespace_context: NamespaceContext {
            annotations: namespace.and_then(|ns| ns.metadata.annotations.as_ref()),
            limit_ranges,
            ..NamespaceContext::default()
        },
    };
    Ok(match injector.judge_resize(&request) {
        Ok(outcome) => ResizeExplanation {
            decision: outcome.verdict.as_str().to_string(),
            denied: None,
            resources: outcome
                .proxy
                .iter()
                .flat_map(|proxy| {
                    FieldKey::ALL
                        .into_iter()
                        .map(move |key| field_row(&key.to_string(), proxy.field(key)))
                })
                .filter(|field| field.value != "-")
                .collect(),
            warnings: outcome.warnings,
        },
        Err(denial) => ResizeExplanation {
            decision: "resize:deny".into(),
            denied: Some(denial.error.to_string()),
            resources: Vec::new(),
            warnings: denial.warnings,
        },
    })
}

impl ResizeExplanation {
    /// A human-readable table.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "decision:  {}", self.decision);
        if let Some(reason) = &self.denied {
            let _ = writeln!(text, "denied:    {reason}");
        }
        for field in &self.resources {
            let _ = writeln!(text, "{:<24} {}", field.field, field.value);
            for adjustment in &field.adjustments {
                let _ = writeln!(text, "{:<24}   then {adjustment}", "");
            }
        }
        for warning in &self.warnings {
            let _ = writeln!(text, "warning: {warning}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InjectConfig;
    use serde_json::json;

    #[test]
    fn explains_a_resize_decision() {
        let injector =
            Injector::new(InjectConfig::from_yaml("bounds:\n  memory.request: {max: 512Mi}\n", "t").unwrap()).unwrap();
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "app", "image": "x"},
            {"name": "istio-proxy", "image": "proxy", "resources": {"requests": {"memory": "128Mi"}}},
        ]}});
        let mut new = pod.clone();
        new["spec"]["containers"][1]["resources"]["requests"]["memory"] = json!("1Gi");
        let explanation = explain_resize(&injector, &pod, &new, None, &[]).unwrap();
        assert_eq!(explanation.decision, "resize:clamped");
        let row = explanation
            .resources
            .iter()
            .find(|f| f.field == "memory.request")
            .unwrap();
        assert_eq!(row.value, "512Mi");
        assert!(explanation.to_text().contains("then clamped to 512Mi (cluster max)"));
    }
}
