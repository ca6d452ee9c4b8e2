//! Kubernetes label selector matching for `neverInjectSelector` and `alwaysInjectSelector`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` satisfy `selector`, with Kubernetes' semantics.
///
/// An empty selector matches everything; an operator Kubernetes does not know matches nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    labels_match
        && selector.match_expressions.iter().flatten().all(|requirement| {
            let value = labels.get(&requirement.key);
            let values = requirement.values.as_deref().unwrap_or_default();
            match requirement.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn match_labels_and_expressions() {
        let pod = labels(&[("app", "web"), ("tier", "front")]);
        let by_label = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        };
        assert!(selector_matches(&by_label, &pod));
        assert!(!selector_matches(&by_label, &labels(&[("app", "db")])));
        assert!(selector_matches(&LabelSelector::default(), &pod));
        assert!(selector_matches(&expression("tier", "In", &["front", "back"]), &pod));
        assert!(!selector_matches(&expression("tier", "NotIn", &["front"]), &pod));
        assert!(selector_matches(&expression("missing", "NotIn", &["x"]), &pod));
        assert!(selector_matches(&expression("app", "Exists", &[]), &pod));
        assert!(!selector_matches(&expression("app", "DoesNotExist", &[]), &pod));
        assert!(!selector_matches(&expression("app", "Near", &[]), &pod));
    }
}
