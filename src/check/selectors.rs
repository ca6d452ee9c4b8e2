//! The webhook configuration's label selectors, evaluated as the API server evaluates them
//! before it calls us, with the `kube_core::Selector` the engine compiles its own selectors
//! to (`neverInjectSelector`, `alwaysInjectSelector`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube_core::{Selector, SelectorExt};

/// The label every namespace carries with its own name (set by the API server).
pub(crate) const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Whether `selector` selects `labels`; an absent selector selects everything, as in a
/// webhook configuration. A selector that does not compile selects nothing, with the reason.
pub(crate) fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> Result<bool, String> {
    let Some(selector) = selector else {
        return Ok(true);
    };
    let compiled = Selector::try_from(selector.clone()).map_err(|error| error.to_string())?;
    Ok(compiled.matches(labels))
}

/// The namespace's labels as the API server matches them: its own, plus
/// `kubernetes.io/metadata.name`, which the API server always sets.
pub(crate) fn namespace_labels(name: &str, labels: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let mut all = labels.cloned().unwrap_or_default();
    all.entry(NAME_LABEL.to_string()).or_insert_with(|| name.to_string());
    all
}

/// The values a selector requires `key` to be `In`, e.g. the revisions of `istio.io/rev In [..]`.
pub(crate) fn required_values(selector: Option<&LabelSelector>, key: &str) -> Vec<String> {
    let Some(selector) = selector else {
        return Vec::new();
    };
    let from_expressions = selector
        .match_expressions
        .iter()
        .flatten()
        .filter(|requirement| requirement.key == key && requirement.operator == "In")
        .flat_map(|requirement| requirement.values.iter().flatten().cloned());
    let from_labels = selector
        .match_labels
        .iter()
        .flatten()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.clone());
    from_expressions.chain(from_labels).collect()
}

/// Whether a selector excludes the namespace `name` by name (`kubernetes.io/metadata.name NotIn`).
pub(crate) fn excludes_by_name(selector: Option<&LabelSelector>, name: &str) -> bool {
    selector
        .and_then(|selector| selector.match_expressions.as_ref())
        .into_iter()
        .flatten()
        .any(|requirement| {
            requirement.key == NAME_LABEL
                && requirement.operator == "NotIn"
                && requirement.values.iter().flatten().any(|value| value == name)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn selectors_match_as_the_api_server_does() {
        let selector = LabelSelector {
            match_expressions: Some(vec![
                requirement("istio.io/rev", "In", &["default", "canary"]),
                requirement("istio-injection", "DoesNotExist", &[]),
                requirement(NAME_LABEL, "NotIn", &["kube-system", "sidecar-injector"]),
            ]),
            ..Default::default()
        };
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let team = namespace_labels("team", Some(&labels(&[("istio.io/rev", "canary")])));
        assert_eq!(selects(Some(&selector), &team), Ok(true));
        let own = namespace_labels("sidecar-injector", Some(&labels(&[("istio.io/rev", "default")])));
        assert_eq!(selects(Some(&selector), &own), Ok(false));
        let both = labels(&[("istio.io/rev", "default"), ("istio-injection", "enabled")]);
        assert_eq!(selects(Some(&selector), &both), Ok(false));
        assert_eq!(selects(None, &both), Ok(true));
        assert_eq!(required_values(Some(&selector), "istio.io/rev"), ["default", "canary"]);
        assert!(excludes_by_name(Some(&selector), "sidecar-injector"));
        assert!(!excludes_by_name(Some(&selector), "team"));
        let broken = LabelSelector {
            match_expressions: Some(vec![requirement("a", "Sometimes", &["x"])]),
            ..Default::default()
        };
        assert!(selects(Some(&broken), &both).is_err());
    }
}
