//! `explain`: why a pod would be injected as it would, field by field.
//!
//! The answer comes from [`Injector::inject`], the same call the webhook makes, so explain
//! cannot disagree with admission. It shows the decision, each resource field's value,
//! source and adjustments, the warnings, the denial message when there is one, and every
//! annotation of the engine's registry that the pod or its namespace sets.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, ResourceQuota};
use serde::Serialize;
use serde_json::Value;

use crate::engine::annotations::{REGISTRY, Scope};
use crate::engine::{Field, FieldKey, NamespaceContext, PodLevelChange, ProxyResources, Source};
use crate::engine::{Injector, PodRequest};
use crate::manifest::{self, PodTemplate};

mod resize;

pub use self::resize::{ResizeExplanation, explain_resize};

/// Why a pod cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The document has no pod template.
    #[error("{0} has no pod template (expected one of: {kinds})", kinds = manifest::workload_kinds().collect::<Vec<_>>().join(", "))]
    NoPodTemplate(String),
    /// The template is not a valid Pod.
    #[error("the pod template is not a valid Pod: {0}")]
    InvalidPod(String),
}

/// One resource field in the explanation.
#[derive(Debug, Clone, Serialize)]
pub struct FieldExplanation {
    /// e.g. `cpu.limit`.
    pub field: String,
    /// The value, or `-` when unset.
    pub value: String,
    /// Where it came from.
    pub source: String,
    /// What changed it afterwards.
    pub adjustments: Vec<String>,
}

/// One annotation the injector read, from the registry.
#[derive(Debug, Clone, Serialize)]
pub struct AnnotationExplanation {
    /// The key.
    pub key: String,
    /// `pod`, `pod label` or `namespace`.
    pub on: &'static str,
    /// The value as written.
    pub value: String,
    /// What it does (the registry's doc).
    pub effect: &'static str,
}

/// One config key whose value is not the built-in default, and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct SettingExplanation {
    /// The config key, e.g. `proxyLogLevel`.
    pub key: String,
    /// Its value in force, as JSON.
    pub value: Value,
    /// `config`, `istio values <path>`, `istio config <key>` or `mesh config <path>`.
    pub source: String,
}

/// The whole explanation.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// `Kind/name` of the workload.
    pub workload: String,
    /// The namespace considered.
    pub namespace: String,
    /// e.g. `inject:policy-enabled`, `skip:pod-opt-out` or `deny`.
    pub decision: String,
    /// The denial message, when denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied: Option<String>,
    /// Resource fields, when injected.
    pub resources: Vec<FieldExplanation>,
    /// `--concurrency` given to the proxy, when injected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i64>,
    /// Warnings the webhook would return.
    pub warnings: Vec<String>,
    /// The registry's annotations set on the pod or its namespace.
    pub annotations: Vec<AnnotationExplanation>,
    /// The config keys not at their built-in default, with their sources.
    pub settings: Vec<SettingExplanation>,
}

/// The config keys the file or the installed Istio set, with their values in force.
fn settings_in_force(injector: &Injector) -> Vec<SettingExplanation> {
    let values = serde_json::to_value(injector.config()).unwrap_or_default();
    injector
        .provenance()
        .entries()
        .map(|(key, source)| SettingExplanation {
            key: key.to_string(),
            value: values.get(key).cloned().unwrap_or(Value::Null),
            source: source.to_string(),
        })
        .collect()
}

/// The registry's annotations present on the pod (and its labels, for the inject switch) and,
/// where the registry allows it, on the namespace.
fn annotations_read(pod: &Pod, namespace: Option<&Namespace>) -> Vec<AnnotationExplanation> {
    let pod_annotations = pod.metadata.annotations.as_ref();
    let pod_labels = pod.metadata.labels.as_ref();
    let namespace_annotations = namespace.and_then(|ns| ns.metadata.annotations.as_ref());
    let mut found = Vec::new();
    for row in REGISTRY {
        let places = [
            ("pod label", pod_labels, row.scope == Scope::PodLabelOrAnnotation),
            ("pod", pod_annotations, row.scope != Scope::Namespace),
            (
                "namespace",
                namespace_annotations,
                matches!(row.scope, Scope::Namespace | Scope::PodOrNamespace),
            ),
        ];
        for (on, map, read_there) in places {
            if let Some(value) = map.and_then(|map| map.get(row.key)).filter(|_| read_there) {
                found.push(AnnotationExplanation {
                    key: row.key.to_string(),
                    on,
                    value: value.clone(),
                    effect: row.doc,
                });
            }
        }
    }
    found
}

/// Explains one workload document in `namespace` with its LimitRanges and ResourceQuotas.
pub fn explain(
    injector: &Injector,
    document: &Value,
    namespace: Option<&Namespace>,
    limit_ranges: &[LimitRange],
    resource_quotas: &[ResourceQuota],
) -> Result<Explanation, ExplainError> {
    // A document without a kind is read as a Pod.
    let kind = document.get("kind").and_then(Value::as_str).unwrap_or("Pod");
    let found = PodTemplate::of_kind(document, kind).ok_or_else(|| {
        let name = document.pointer("/metadata/name").and_then(Value::as_str);
        ExplainError::NoPodTemplate(format!("{kind}/{}", name.unwrap_or_default()))
    })?;
    let (pod, has_metadata) =
        manifest::pod_from_template(found.template).map_err(|e| ExplainError::InvalidPod(e.to_string()))?;
    let namespace_name = namespace
        .and_then(|ns| ns.metadata.name.clone())
        .or_else(|| found.namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    let request = PodRequest {
        pod: &pod,
        namespace: &namespace_name,
        workload: found.workload(),
        has_metadata,
        unread_annotation_bytes: 0,
        namespace_context: NamespaceContext {
            annotations: namespace.and_then(|ns| ns.metadata.annotations.as_ref()),
            recommendation: None,
            limit_ranges,
            resource_quotas,
        },
        app_amounts: None,
        reinjection: false,
    };
    let mut explanation = Explanation {
        workload: found.label(),
        namespace: namespace_name.clone(),
        decision: String::new(),
        denied: None,
        resources: Vec::new(),
        concurrency: None,
        warnings: Vec::new(),
        annotations: annotations_read(&pod, namespace),
        settings: settings_in_force(injector),
    };
    match injector.inject(&request) {
        Ok(outcome) => {
            explanation.decision = outcome.decision.as_str().to_string();
            explanation.warnings = outcome.warnings;
            if let Some(resources) = outcome.resources {
                explanation.concurrency = resources.concurrency(injector.concurrency());
                explanation.resources = resource_rows(
                    injector,
                    &resources,
                    outcome.init_resources.as_ref(),
                    &outcome.pod_level,
                );
            }
        }
        Err(denial) => {
            explanation.decision = "deny".into();
            explanation.denied = Some(denial.error.to_string());
            explanation.warnings = denial.warnings;
        }
    }
    Ok(explanation)
}

/// The resource table: the proxy's fields that are set or sourced, the init container's
/// that are not a copy of the proxy's, then the pod-level values injection grows.
fn resource_rows(
    injector: &Injector,
    resources: &ProxyResources,
    init_resources: Option<&ProxyResources>,
    pod_level: &[PodLevelChange],
) -> Vec<FieldExplanation> {
    let defaults_source = injector.provenance().source_of("resources");
    // The init container's fields that are not a copy of the proxy's.
    let init_rows = init_resources.into_iter().flat_map(|init| {
        FieldKey::ALL
            .into_iter()
            .filter(|key| init.field(*key) != resources.field(*key))
            .map(|key| field_row(&format!("init.{key}"), init.field(key)))
    });
    FieldKey::ALL
        .into_iter()
        .map(|key| {
            let field = resources.field(key);
            let mut row = field_row(&key.to_string(), field);
            if matches!(field.source, Source::ConfigDefault) && defaults_source.is_installed() {
                row.source = format!("{} ({defaults_source})", field.source);
            }
            row
        })
        .filter(|field| field.value != "-" || field.source != "unset")
        .chain(init_rows)
        .chain(pod_level.iter().map(|change| {
            let (field, entry) = change.provenance();
            FieldExplanation {
                field,
                value: change.to.to_string(),
                source: entry["from"].as_str().unwrap_or_default().to_string(),
                adjustments: change.note.iter().cloned().collect(),
            }
        }))
        .collect()
}

/// One row of the resource table.
pub(crate) fn field_row(name: &str, field: &Field) -> FieldExplanation {
    FieldExplanation {
        field: name.to_string(),
        value: field.value.map_or_else(|| "-".to_string(), |q| q.to_string()),
        source: field.source.to_string(),
        adjustments: field.adjustments.clone(),
    }
}

impl Explanation {
    /// A human-readable table.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "workload:  {} in namespace {}", self.workload, self.namespace);
        let _ = writeln!(text, "decision:  {}", self.decision);
        if let Some(reason) = &self.denied {
            let _ = writeln!(text, "denied:    {reason}");
        }
        if !self.resources.is_empty() {
            let width = self.resources.iter().map(|f| f.value.len()).max().unwrap_or(5).max(5);
            let _ = writeln!(text, "\n{:<24} {:<width$} source", "field", "value");
            for field in &self.resources {
                let _ = writeln!(text, "{:<24} {:<width$} {}", field.field, field.value, field.source);
                for adjustment in &field.adjustments {
                    let _ = writeln!(text, "{:<24} {:<width$}   then {adjustment}", "", "");
                }
            }
        }
        if let Some(concurrency) = self.concurrency {
            let _ = writeln!(text, "\nconcurrency: {concurrency}");
        }
        if !self.annotations.is_empty() {
            let _ = writeln!(text, "\nannotations read:");
            for read in &self.annotations {
                let _ = writeln!(text, "  {} ({}) = {:?}: {}", read.key, read.on, read.value, read.effect);
            }
        }
        if !self.settings.is_empty() {
            let _ = writeln!(text, "\nsettings not at their default:");
            for setting in &self.settings {
                let _ = writeln!(text, "  {} = {} ({})", setting.key, setting.value, setting.source);
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
    fn explains_sources_and_adjustments_like_admission() {
        let injector =
            Injector::new(InjectConfig::from_yaml("bounds:\n  cpu.limit: {max: '1'}\n", "t").unwrap()).unwrap();
        let pod = json!({"kind": "Pod", "metadata": {"name": "p", "annotations": {"sidecar.istio.io/proxyCPULimit": "3"}},
            "spec": {"containers": [{"name": "app", "image": "x"}]}});
        let namespace: Namespace = serde_json::from_value(
            json!({"metadata": {"name": "team", "annotations": {"sidecar.istio.io/proxyMemory": "300Mi"}}}),
        )
        .unwrap();
        let explanation = explain(&injector, &pod, Some(&namespace), &[], &[]).unwrap();
        assert_eq!(explanation.decision, "inject:policy-enabled");
        let field = |name: &str| explanation.resources.iter().find(|f| f.field == name).unwrap().clone();
        assert_eq!(field("cpu.limit").value, "1");
        assert_eq!(
            field("cpu.limit").source,
            "pod annotation sidecar.istio.io/proxyCPULimit"
        );
        assert_eq!(field("cpu.limit").adjustments, ["clamped to 1 (cluster max)"]);
        assert_eq!(
            field("memory.request").source,
            "namespace annotation sidecar.istio.io/proxyMemory"
        );
        assert_eq!(explanation.concurrency, Some(1));
        let read: Vec<(&str, &str)> = explanation.annotations.iter().map(|a| (a.key.as_str(), a.on)).collect();
        assert_eq!(
            read,
            [
                ("sidecar.istio.io/proxyMemory", "namespace"),
                ("sidecar.istio.io/proxyCPULimit", "pod")
            ]
        );
        let text = explanation.to_text();
        assert!(text.contains("then clamped to 1 (cluster max)"), "{text}");
        assert!(
            text.contains("sidecar.istio.io/proxyCPULimit (pod) = \"3\": CPU limit"),
            "{text}"
        );

        let denied = json!({"kind": "Pod", "metadata": {"name": "p", "annotations": {"sidecar.istio.io/proxyCPU": "x"}},
            "spec": {"containers": [{"name": "app", "image": "x"}]}});
        let explanation = explain(&injector, &denied, None, &[], &[]).unwrap();
        assert_eq!(explanation.decision, "deny");
        assert!(explanation.denied.unwrap().contains("sidecar.istio.io/proxyCPU"));

        let kindless = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "x"}]}});
        assert_eq!(explain(&injector, &kindless, None, &[], &[]).unwrap().workload, "Pod/p");
        let service = json!({"kind": "Service", "metadata": {"name": "web"}});
        let error = explain(&injector, &service, None, &[], &[]).unwrap_err().to_string();
        assert!(
            error.starts_with("Service/web has no pod template (expected one of: Pod, Deployment,"),
            "{error}"
        );

        let pod_level = json!({"kind": "Pod", "metadata": {"name": "p"},
            "spec": {"resources": {"requests": {"cpu": "1"}},
                     "containers": [{"name": "app", "image": "x", "resources": {"requests": {"cpu": "500m"}}}]}});
        let explanation = explain(
            &Injector::new(InjectConfig::default()).unwrap(),
            &pod_level,
            None,
            &[],
            &[],
        )
        .unwrap();
        let row = explanation
            .resources
            .iter()
            .find(|f| f.field == "pod.cpu.request")
            .expect("a pod-level row");
        // The proxy adds 100m to the containers; the init container runs before them, alone.
        assert_eq!(row.value, "1100m", "{row:?}");
        assert!(row.source.contains("pod spec.resources 1"), "{row:?}");
    }

    #[test]
    fn explains_a_quota_fit_with_the_quota_that_made_it() {
        let injector = Injector::new(InjectConfig::default()).unwrap();
        let pod = json!({"kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "image": "x", "resources": {"requests": {"cpu": "500m"}}}]}});
        let quota: ResourceQuota = serde_json::from_value(json!({"metadata": {"name": "team"},
            "spec": {"hard": {"requests.cpu": "2"}}, "status": {"used": {"requests.cpu": "1450m"}}}))
        .unwrap();
        let explanation = explain(&injector, &pod, None, &[], &[quota]).unwrap();
        let row = explanation.resources.iter().find(|f| f.field == "cpu.request").unwrap();
        assert_eq!(row.value, "50m", "{row:?}");
        assert!(
            row.adjustments.iter().any(|a| a.contains("to fit ResourceQuota team")),
            "{row:?}"
        );
        assert!(
            explanation
                .to_text()
                .contains("then lowered to 50m to fit ResourceQuota team")
        );
    }

    #[test]
    fn explains_the_init_containers_own_fields_only() {
        let injector = Injector::new(InjectConfig::default()).unwrap();
        let pod = json!({"kind": "Pod", "metadata": {"name": "p", "annotations": {"sidecar-injector.io/initCPU": "10m"}},
            "spec": {"containers": [{"name": "app", "image": "x"}]}});
        let explanation = explain(&injector, &pod, None, &[], &[]).unwrap();
        let init: Vec<(&str, &str, &str)> = explanation
            .resources
            .iter()
            .filter(|f| f.field.starts_with("init."))
            .map(|f| (f.field.as_str(), f.value.as_str(), f.source.as_str()))
            .collect();
        assert_eq!(
            init,
            [("init.cpu.request", "10m", "pod annotation sidecar-injector.io/initCPU")]
        );
        let plain =
            json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "x"}]}});
        let explanation = explain(&injector, &plain, None, &[], &[]).unwrap();
        assert!(explanation.resources.iter().all(|f| !f.field.starts_with("init.")));
    }

    #[test]
    fn names_the_source_of_each_setting() {
        let fixture = |suffix: &str| {
            let path = format!(
                "{}/tests/fixtures/istio-install/canary.{suffix}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read_to_string(&path).unwrap()
        };
        let injector_data = std::collections::BTreeMap::from([
            ("values".to_string(), fixture("values.json")),
            ("config".to_string(), fixture("config.yaml")),
        ]);
        let mesh_data = std::collections::BTreeMap::from([("mesh".to_string(), fixture("mesh.yaml"))]);
        let installed = crate::engine::installed_istio::InstalledIstio::parse(
            "istio-sidecar-injector-canary",
            Some(&injector_data),
            "istio-canary",
            Some(&mesh_data),
        )
        .unwrap();
        let user = crate::config::UserConfig::from_yaml("proxyComponentLogLevel: misc:warning\n", "c.yaml").unwrap();
        let injector = Injector::compose(&user, &installed.settings().unwrap()).unwrap();
        let pod = json!({"kind": "Pod", "metadata": {"name": "p", "labels": {"sidecar.istio.io/inject": "true"}},
            "spec": {"containers": [{"name": "app", "image": "x"}]}});
        let explanation = explain(&injector, &pod, None, &[], &[]).unwrap();
        let source = |key: &str| {
            explanation
                .settings
                .iter()
                .find(|setting| setting.key == key)
                .map(|setting| setting.source.clone())
                .unwrap_or_default()
        };
        assert_eq!(source("proxyLogLevel"), "istio values global.proxy.logLevel");
        assert_eq!(source("proxyComponentLogLevel"), "config");
        assert_eq!(source("trustDomain"), "mesh config trustDomain");
        assert_eq!(source("policy"), "istio config policy");
        let cpu = explanation.resources.iter().find(|f| f.field == "cpu.request").unwrap();
        assert_eq!(cpu.value, "250m");
        assert_eq!(cpu.source, "config default (istio values global.proxy.resources)");
        let text = explanation.to_text();
        assert!(
            text.contains("proxyLogLevel = \"debug\" (istio values global.proxy.logLevel)"),
            "{text}"
        );
    }
}
