//! Test support: inject a pod through the public [`Injector::inject`] and apply the patch.

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::config::InjectConfig;
use crate::{Denial, Injector, NamespaceContext, Outcome, PodRequest};

/// Injects `pod` with `config` in namespace `default`, applies the returned patch to the
/// pod's JSON and returns the result with the outcome.
pub(crate) fn inject_and_apply(
    config: InjectConfig,
    pod: &Value,
    context: NamespaceContext<'_>,
) -> Result<(Value, Outcome), Denial> {
    let injector = Injector::new(config).expect("test config compiles");
    let typed: Pod = serde_json::from_value(pod.clone()).expect("test pod parses");
    let outcome = injector.inject(&PodRequest {
        pod: &typed,
        namespace: "default",
        workload: None,
        has_metadata: pod.get("metadata").is_some(),
        unread_annotation_bytes: 0,
        namespace_context: context,
        app_amounts: None,
        reinjection: false,
    })?;
    let mut patched = pod.clone();
    if !outcome.patch.is_empty() {
        let patch = outcome.patch.to_patch().expect("patch parses");
        json_patch::patch(&mut patched, &patch).expect("patch applies to the original pod");
    }
    Ok((patched, outcome))
}

/// The container named `name` in `spec.containers` or `spec.initContainers` of `pod`.
pub(crate) fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    ["containers", "initContainers"]
        .into_iter()
        .filter_map(|list| pod["spec"][list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod}"))
}
