//! Each namespace's injection state: which of our webhooks the API server sends its pods to
//! (by the registration's namespace and object selectors), for which revision, and what the
//! engine then decides for a plain pod ([`Injector::inject`], as admission does).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use serde::Serialize;

use super::selectors::{excludes_by_name, namespace_labels, required_values, selects};
use super::{CheckOptions, ClusterView, Status};
use crate::engine::annotations::INJECT;
use crate::engine::{Decision, Injector, NamespaceContext, PodRequest};

/// The namespace label that turns injection on or off, as Istio spells it.
pub const INJECTION_LABEL: &str = "istio-injection";
/// The label that picks an Istio revision or tag, on a namespace or a pod.
pub const REVISION_LABEL: &str = "istio.io/rev";
/// The revision that `istio-injection=enabled` means.
const DEFAULT_REVISION: &str = "default";

/// Whether a namespace's pods get a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Injection {
    /// Every pod not opting out.
    Enabled,
    /// Only pods that ask (a pod label).
    OptIn,
    /// None: no webhook selects it, or the engine skips it.
    Disabled,
    /// None, on purpose: the injector's own namespace or a system namespace.
    Excluded,
}

/// One namespace in the report.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceReport {
    /// The namespace.
    pub name: String,
    /// Whether its pods are injected.
    pub injection: Injection,
    /// The revision or tag that injects them, when some are.
    pub revision: Option<String>,
    /// Its injection labels (`istio-injection`, `istio.io/rev`).
    pub labels: BTreeMap<String, String>,
    /// The webhooks that receive its pods (for `opt-in`, the opted-in ones).
    pub webhooks: Vec<String>,
    /// The engine's decision for a pod sent from here, e.g. `inject:policy-enabled`.
    pub decision: String,
    /// Why, in words.
    pub reason: String,
    /// `error` when its pods are denied or the injector's own namespace is injected.
    pub status: Status,
}

/// The injector's namespace: the Service's the registration calls, else `--injector-namespace`.
pub(crate) fn injector_namespace(view: &ClusterView, options: &CheckOptions) -> String {
    view.configurations
        .iter()
        .flat_map(|configuration| configuration.webhooks.iter().flatten())
        .find_map(|webhook| webhook.client_config.service.as_ref())
        .map_or_else(
            || options.injector_namespace.clone(),
            |service| service.namespace.clone(),
        )
}

/// The webhooks (`configuration/webhook`) the API server sends a pod with `pod_labels` in a
/// namespace with `namespace_labels` to.
pub(crate) fn sending_webhooks(
    view: &ClusterView,
    namespace_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let mut sending = Vec::new();
    for configuration in &view.configurations {
        let configuration_name = configuration.metadata.name.as_deref().unwrap_or_default();
        for webhook in configuration.webhooks.iter().flatten() {
            if selects(webhook.namespace_selector.as_ref(), namespace_labels)?
                && selects(webhook.object_selector.as_ref(), pod_labels)?
            {
                sending.push(format!("{configuration_name}/{}", webhook.name));
            }
        }
    }
    Ok(sending)
}

/// The engine's decision word for a one-container pod with `labels` in `namespace`.
fn engine_decision(
    injector: &Injector,
    view: &ClusterView,
    namespace: &Namespace,
    labels: &BTreeMap<String, String>,
) -> Result<Decision, String> {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let pod = Pod {
        metadata: kube::api::ObjectMeta {
            generate_name: Some("check-".into()),
            labels: (!labels.is_empty()).then(|| labels.clone()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("app".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let request = PodRequest {
        pod: &pod,
        namespace: &name,
        workload: None,
        has_metadata: true,
        unread_annotation_bytes: 0,
        namespace_context: NamespaceContext {
            annotations: namespace.metadata.annotations.as_ref(),
            limit_ranges: view.limit_ranges_of(&name),
            // Quotas and VPA recommendations are not read by `check`: drift is judged on
            // the layers every pod shares.
            ..NamespaceContext::default()
        },
        app_amounts: None,
        reinjection: false,
    };
    injector
        .inject(&request)
        .map(|outcome| outcome.decision)
        .map_err(|denial| denial.error.to_string())
}

/// The pod label sets that can opt a pod in: `sidecar.istio.io/inject=true` and each
/// `istio.io/rev` value an object selector asks for.
fn opt_in_labels(view: &ClusterView) -> Vec<BTreeMap<String, String>> {
    let mut probes = vec![BTreeMap::from([(INJECT.to_string(), "true".to_string())])];
    for webhook in view.configurations.iter().flat_map(|c| c.webhooks.iter().flatten()) {
        for revision in required_values(webhook.object_selector.as_ref(), REVISION_LABEL) {
            let probe = BTreeMap::from([(REVISION_LABEL.to_string(), revision)]);
            if !probes.contains(&probe) {
                probes.push(probe);
            }
        }
    }
    probes
}

/// One namespace's row.
fn namespace_report(injector: &Injector, view: &ClusterView, namespace: &Namespace, own: &str) -> NamespaceReport {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let labels = namespace_labels(&name, namespace.metadata.labels.as_ref());
    let shown: BTreeMap<String, String> = labels
        .iter()
        .filter(|(key, _)| [INJECTION_LABEL, REVISION_LABEL].contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let label_words = if shown.is_empty() {
        "no injection label".to_string()
    } else {
        let pairs: Vec<String> = shown.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("label {}", pairs.join(", "))
    };
    let namespace_revision = labels.get(REVISION_LABEL).cloned();
    let mut report = NamespaceReport {
        name: name.clone(),
        injection: Injection::Disabled,
        revision: None,
        labels: shown,
        webhooks: Vec::new(),
        decision: String::new(),
        reason: String::new(),
        status: Status::Ok,
    };
    let row = RowInputs {
        injector,
        view,
        namespace,
        own,
        name,
        labels,
        label_words,
        namespace_revision,
    };
    let mut probes = vec![BTreeMap::new()];
    probes.extend(opt_in_labels(view));
    for (index, probe) in probes.iter().enumerate() {
        if let Probed::Settled = row.probe(index, probe, &mut report) {
            return report;
        }
    }
    row.not_injected(report)
}

/// One namespace and what its labels say, while its row is worked out.
struct RowInputs<'a> {
    injector: &'a Injector,
    view: &'a ClusterView,
    namespace: &'a Namespace,
    /// The injector's own namespace.
    own: &'a str,
    name: String,
    /// The namespace's labels, with `kubernetes.io/metadata.name`.
    labels: BTreeMap<String, String>,
    /// The injection labels as reasons begin: `label istio-injection=enabled` or
    /// `no injection label`.
    label_words: String,
    /// The namespace's `istio.io/rev`.
    namespace_revision: Option<String>,
}

/// Whether a probe pod's labels settled the row.
enum Probed {
    /// The row is final: an error, a denial, or injection.
    Settled,
    /// No webhook sends such a pod, or the engine does not inject it.
    NotInjected,
}

impl RowInputs<'_> {
    /// Tries a pod with `probe`'s labels (index 0: no labels) against the webhooks and the
    /// engine.
    fn probe(&self, index: usize, probe: &BTreeMap<String, String>, report: &mut NamespaceReport) -> Probed {
        let label_words = &self.label_words;
        let sending = match sending_webhooks(self.view, &self.labels, probe) {
            Ok(sending) => sending,
            Err(error) => {
                report.status = Status::Error;
                report.reason = format!("a webhook selector does not compile: {error}");
                return Probed::Settled;
            }
        };
        if sending.is_empty() {
            return Probed::NotInjected;
        }
        let decision = match engine_decision(self.injector, self.view, self.namespace, probe) {
            Ok(decision) => decision,
            Err(denial) => {
                report.injection = Injection::Enabled;
                report.webhooks = sending;
                report.decision = "deny".into();
                report.status = Status::Error;
                report.reason = format!("{label_words}; every pod is denied: {denial}");
                return Probed::Settled;
            }
        };
        if index == 0 {
            report.decision = decision.as_str().to_string();
        }
        if !matches!(decision, Decision::Inject(_)) {
            return Probed::NotInjected;
        }
        self.injected(index, probe, sending, decision.as_str(), report);
        Probed::Settled
    }

    /// The row of a namespace whose pods (those with `probe`'s labels, past index 0) are
    /// sent to `sending` and injected with `decision`.
    fn injected(
        &self,
        index: usize,
        probe: &BTreeMap<String, String>,
        sending: Vec<String>,
        decision: &str,
        report: &mut NamespaceReport,
    ) {
        let label_words = &self.label_words;
        let pod_revision = probe.get(REVISION_LABEL).cloned();
        report.revision = pod_revision
            .clone()
            .or_else(|| self.namespace_revision.clone())
            .or_else(|| Some(DEFAULT_REVISION.to_string()));
        report.injection = if index == 0 {
            Injection::Enabled
        } else {
            Injection::OptIn
        };
        let asked: Vec<String> = probe.iter().map(|(k, v)| format!("{k}={v}")).collect();
        report.reason = if index == 0 {
            format!(
                "{label_words}: pods are sent to {}; engine: {}",
                sending.join(", "),
                decision
            )
        } else {
            format!(
                "{label_words}: only pods labelled {} are injected (sent to {}; engine: {})",
                asked.join(","),
                sending.join(", "),
                decision
            )
        };
        report.webhooks = sending;
        if self.name == self.own {
            report.status = Status::Error;
            report.reason = format!("the injector's own namespace is injected: {}", report.reason);
        }
    }

    /// The row of a namespace no probe pod is injected in: why, and whether it is excluded.
    fn not_injected(&self, mut report: NamespaceReport) -> NamespaceReport {
        let (name, own, label_words) = (&self.name, self.own, &self.label_words);
        if report.decision.is_empty() {
            report.decision = match engine_decision(self.injector, self.view, self.namespace, &BTreeMap::new()) {
                Ok(decision) => decision.as_str().to_string(),
                Err(_) => "deny".into(),
            };
        }
        let by_name = self
            .view
            .configurations
            .iter()
            .flat_map(|c| c.webhooks.iter().flatten())
            .any(|webhook| excludes_by_name(webhook.namespace_selector.as_ref(), name));
        let ignored = report.decision == Decision::Skip(crate::engine::SkipReason::IgnoredNamespace).as_str();
        report.injection = if name == own || by_name || ignored {
            Injection::Excluded
        } else {
            Injection::Disabled
        };
        report.reason = if name == own {
            format!("the injector's own namespace ({label_words}); no webhook selects it")
        } else if by_name {
            format!("{label_words}; excluded by name in the webhooks' namespaceSelector")
        } else if ignored {
            format!("{label_words}; a system namespace the engine never injects")
        } else if self.labels.get(INJECTION_LABEL).is_some_and(|value| value != "enabled") {
            format!("{label_words}: no webhook selects it")
        } else if let Some(revision) = &self.namespace_revision {
            format!("{label_words}: no webhook of this injector selects revision {revision}")
        } else {
            format!(
                "{label_words}: no webhook sends its pods, even opted in; engine: {}",
                report.decision
            )
        };
        report
    }
}

/// A row per namespace read.
pub(crate) fn report(injector: &Injector, view: &ClusterView, options: &CheckOptions) -> Vec<NamespaceReport> {
    let own = injector_namespace(view, options);
    view.namespaces
        .iter()
        .map(|namespace| namespace_report(injector, view, namespace, &own))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::check::shipped_view;
    use crate::config::InjectConfig;

    #[test]
    fn each_label_gives_its_state_revision_and_webhook() {
        let ns = |name: &str, labels: serde_json::Value| json!({"metadata": {"name": name, "labels": labels}});
        let view = shipped_view(json!([
            ns("on", json!({"istio-injection": "enabled"})),
            ns("rev", json!({"istio.io/rev": "default"})),
            ns("canary", json!({"istio.io/rev": "canary"})),
            ns("off", json!({"istio-injection": "disabled"})),
            ns("plain", json!({})),
            ns("sidecar-injector", json!({"istio-injection": "enabled"})),
            ns("kube-system", json!({})),
        ]));
        let injector = Injector::new(InjectConfig::default()).unwrap();
        let options = CheckOptions::default();
        let rows = report(&injector, &view, &options);
        let got: Vec<(&str, Injection, Option<&str>, Vec<&str>)> = rows
            .iter()
            .map(|row| {
                (
                    row.name.as_str(),
                    row.injection,
                    row.revision.as_deref(),
                    row.webhooks.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        let webhook = "sidecar-injector/namespace.sidecar-injector.istio.io";
        assert_eq!(
            got,
            [
                ("on", Injection::Enabled, Some("default"), vec![webhook]),
                (
                    "rev",
                    Injection::Enabled,
                    Some("default"),
                    vec!["sidecar-injector/rev.namespace.sidecar-injector.istio.io"]
                ),
                ("canary", Injection::Disabled, None, vec![]),
                ("off", Injection::Disabled, None, vec![]),
                (
                    "plain",
                    Injection::OptIn,
                    Some("default"),
                    vec!["sidecar-injector/object.sidecar-injector.istio.io"]
                ),
                ("sidecar-injector", Injection::Excluded, None, vec![]),
                ("kube-system", Injection::Excluded, None, vec![]),
            ]
        );
        assert!(rows.iter().all(|row| row.status == Status::Ok), "{rows:#?}");
        assert!(
            rows[2]
                .reason
                .contains("no webhook of this injector selects revision canary"),
            "{}",
            rows[2].reason
        );

        // A namespace whose pods would all be denied is an error, with the denial.
        let view = shipped_view(
            json!([{"metadata": {"name": "bad", "labels": {"istio-injection": "enabled"},
            "annotations": {"sidecar.istio.io/proxyCPU": "lots"}}}]),
        );
        let rows = report(&injector, &view, &options);
        assert_eq!((rows[0].status, rows[0].decision.as_str()), (Status::Error, "deny"));
        assert!(
            rows[0].reason.contains("sidecar.istio.io/proxyCPU"),
            "{}",
            rows[0].reason
        );
    }
}
