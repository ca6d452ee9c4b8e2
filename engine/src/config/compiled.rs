//! The config after its checks: every value the schema alone cannot judge is checked once,
//! and quantities and label selectors are parsed into typed values, so no request ever meets
//! a bad default and nothing is parsed twice.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube_core::{Selector, SelectorExt};

use super::tuning::Tuning;
use super::{ConfigError, InjectConfig};
use crate::annotations::{AGENT_LOG_LEVEL_FORMS, COMPONENT_LOG_LEVEL_FORMS, LOG_LEVEL_FORMS};
use crate::capture_lists::{ListKind, check_list};
use crate::log_levels::{LevelCheck, check_agent_levels, check_component_levels, check_proxy_level};

/// A config whose values have all been checked and parsed.
#[derive(Debug, Clone)]
pub struct CompiledConfig {
    /// The config as written (strings passed through to the proxy verbatim).
    pub raw: InjectConfig,
    /// The resource policy, in exact quantities.
    pub tuning: Tuning,
    /// `neverInjectSelector`, compiled.
    pub never_inject: Vec<Selector>,
    /// `alwaysInjectSelector`, compiled.
    pub always_inject: Vec<Selector>,
}

impl CompiledConfig {
    /// Whether a pod with `labels` matches any `neverInjectSelector`.
    pub fn never_injects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.never_inject.iter().any(|selector| selector.matches(labels))
    }

    /// Whether a pod with `labels` matches any `alwaysInjectSelector`.
    pub fn always_injects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.always_inject.iter().any(|selector| selector.matches(labels))
    }
}

// === impl InjectConfig ===

impl InjectConfig {
    /// Checks every value and parses quantities and selectors, naming the key of the first
    /// bad value.
    pub fn compile(self) -> Result<CompiledConfig, ConfigError> {
        self.check_values()?;
        let tuning = Tuning::from_config(&self)?;
        let never_inject = compile_selectors("neverInjectSelector", &self.never_inject_selector)?;
        let always_inject = compile_selectors("alwaysInjectSelector", &self.always_inject_selector)?;
        Ok(CompiledConfig {
            raw: self,
            tuning,
            never_inject,
            always_inject,
        })
    }

    /// Checks the scalar values that the schema alone cannot.
    fn check_values(&self) -> Result<(), ConfigError> {
        if !(1..=100).contains(&self.go_mem_limit_percent) {
            return Err(ConfigError::Invalid {
                key: "goMemLimitPercent".into(),
                value: self.go_mem_limit_percent.to_string(),
                reason: "must be 1-100".into(),
            });
        }
        if self.concurrency.min < 1 || (self.concurrency.max != 0 && self.concurrency.max < self.concurrency.min) {
            return Err(ConfigError::Invalid {
                key: "concurrency".into(),
                value: format!("min {} max {}", self.concurrency.min, self.concurrency.max),
                reason: "min must be at least 1, and max 0 (none) or at least min".into(),
            });
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "maxBodyBytes".into(),
                value: self.max_body_bytes.to_string(),
                reason: "must be at least 1024 bytes".into(),
            });
        }
        if self.proxy_image.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "proxyImage".into(),
                value: self.proxy_image.clone(),
                reason: "must name an image".into(),
            });
        }
        if let Some(policy) = &self.image_pull_policy
            && !matches!(policy.as_str(), "Always" | "IfNotPresent" | "Never")
        {
            return Err(ConfigError::Invalid {
                key: "imagePullPolicy".into(),
                value: policy.clone(),
                reason: "must be Always, IfNotPresent or Never".into(),
            });
        }
        let levels: [(&str, &String, LevelCheck, &str); 3] = [
            (
                "proxyLogLevel",
                &self.proxy_log_level,
                check_proxy_level,
                LOG_LEVEL_FORMS,
            ),
            (
                "proxyComponentLogLevel",
                &self.proxy_component_log_level,
                check_component_levels,
                COMPONENT_LOG_LEVEL_FORMS,
            ),
            (
                "agentLogLevel",
                &self.agent_log_level,
                check_agent_levels,
                AGENT_LOG_LEVEL_FORMS,
            ),
        ];
        for (key, value, check, accepted) in levels {
            check(value).map_err(|reason| ConfigError::Invalid {
                key: key.into(),
                value: value.clone(),
                reason: format!("{reason} (accepted: {accepted})"),
            })?;
        }
        validate_capture_lists(self)?;
        self.istio
            .check(&self.revision)
            .map_err(|reason| ConfigError::Invalid {
                key: "istio.tags".into(),
                value: format!("{:?}", self.istio.tags),
                reason,
            })?;
        Ok(())
    }
}

/// Checks the traffic defaults in the config file with the same rules as annotations.
fn validate_capture_lists(config: &InjectConfig) -> Result<(), ConfigError> {
    let checks = [
        (
            "includeOutboundIPRanges",
            &config.include_outbound_ip_ranges,
            ListKind::Cidrs { wildcard: true },
        ),
        (
            "excludeOutboundIPRanges",
            &config.exclude_outbound_ip_ranges,
            ListKind::Cidrs { wildcard: false },
        ),
        (
            "excludeInboundPorts",
            &config.exclude_inbound_ports,
            ListKind::Ports { wildcard: false },
        ),
        (
            "excludeOutboundPorts",
            &config.exclude_outbound_ports,
            ListKind::Ports { wildcard: false },
        ),
    ];
    for (key, value, kind) in checks {
        check_list(value, kind).map_err(|reason| ConfigError::Invalid {
            key: key.into(),
            value: value.clone(),
            reason: format!("{reason} (accepted: {})", kind.accepted()),
        })?;
    }
    Ok(())
}

/// Parses label selectors with Kubernetes' rules: operators `In` and `NotIn` need values,
/// `Exists` and `DoesNotExist` take none, and any other operator is refused (it would
/// otherwise match nothing, silently).
fn compile_selectors(key: &str, selectors: &[LabelSelector]) -> Result<Vec<Selector>, ConfigError> {
    selectors
        .iter()
        .enumerate()
        .map(|(index, selector)| {
            for (position, requirement) in selector.match_expressions.iter().flatten().enumerate() {
                let has_values = requirement.values.as_ref().is_some_and(|values| !values.is_empty());
                let problem = match requirement.operator.as_str() {
                    "In" | "NotIn" if !has_values => Some("needs at least one value"),
                    "Exists" | "DoesNotExist" if has_values => Some("takes no values"),
                    "In" | "NotIn" | "Exists" | "DoesNotExist" => None,
                    _ => Some("is not an operator; use In, NotIn, Exists or DoesNotExist"),
                };
                if let Some(problem) = problem {
                    return Err(ConfigError::Invalid {
                        key: format!("{key}[{index}].matchExpressions[{position}].operator"),
                        value: requirement.operator.clone(),
                        reason: format!("operator {problem} (label key {:?})", requirement.key),
                    });
                }
            }
            Selector::try_from(selector.clone()).map_err(|error| ConfigError::Invalid {
                key: format!("{key}[{index}]"),
                value: format!("{selector:?}"),
                reason: error.0,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn with_expression(operator: &str, values: &[&str]) -> InjectConfig {
        InjectConfig {
            never_inject_selector: vec![LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: operator.into(),
                    values: Some(values.iter().map(|v| v.to_string()).collect()),
                }]),
                ..Default::default()
            }],
            ..InjectConfig::default()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_match_with_kubernetes_semantics() {
        let front = labels(&[("tier", "front")]);
        let cases: [(&str, &[&str], bool); 6] = [
            ("In", &["front", "back"], true),
            ("In", &["back"], false),
            ("NotIn", &["front"], false),
            ("NotIn", &["back"], true),
            ("Exists", &[], true),
            ("DoesNotExist", &[], false),
        ];
        for (operator, values, expected) in cases {
            let compiled = with_expression(operator, values).compile().unwrap();
            assert_eq!(compiled.never_injects(&front), expected, "{operator} {values:?}");
        }
        let compiled = with_expression("NotIn", &["x"]).compile().unwrap();
        assert!(compiled.never_injects(&labels(&[])), "NotIn matches a missing key");
        let by_label = InjectConfig {
            always_inject_selector: vec![LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            }],
            ..InjectConfig::default()
        }
        .compile()
        .unwrap();
        assert!(by_label.always_injects(&labels(&[("app", "web"), ("x", "y")])));
        assert!(!by_label.always_injects(&labels(&[("app", "db")])));
    }

    #[test]
    fn bad_selectors_are_refused_naming_the_key() {
        let cases: [(&str, &[&str], &str); 3] = [
            ("Near", &["x"], "not an operator"),
            ("In", &[], "needs at least one value"),
            ("Exists", &["x"], "takes no values"),
        ];
        for (operator, values, says) in cases {
            let error = with_expression(operator, values).compile().unwrap_err().to_string();
            assert!(
                error.contains("neverInjectSelector[0].matchExpressions[0].operator") && error.contains(says),
                "{error}"
            );
        }
    }
}
