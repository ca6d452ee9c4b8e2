//! Whether a pod gets a sidecar, by Istio's rules and in Istio's order.
//!
//! 1. host-network pods are skipped;
//! 2. system namespaces are skipped;
//! 3. pods already injected are skipped (the API server may call us twice);
//! 4. the pod label `sidecar.istio.io/inject`, else the annotation of that name, decides:
//!    `true` or `false` exactly, as istiod reads it; empty is unset; any other value is
//!    denied (istiod would silently use the default, which may be the opposite of what
//!    `yes` or `off` meant);
//! 5. else `neverInjectSelector`, then `alwaysInjectSelector`;
//! 6. else the configured `policy`.
//!
//! Namespace labels (`istio-injection`, `istio.io/rev`) are matched by the webhook
//! configuration's selectors before the API server calls us, as with istiod.

use k8s_openapi::api::core::v1::Pod;

use crate::config::{CompiledConfig, InjectionPolicy};
use crate::error::{InjectError, quoted};

/// The label, and annotation, through which a pod opts in or out.
pub use crate::annotations::INJECT as INJECT_KEY;
/// The annotation that marks a pod as injected.
pub use crate::annotations::STATUS as STATUS_ANNOTATION;
/// The name of the proxy container.
pub const PROXY_CONTAINER: &str = "istio-proxy";

/// Namespaces whose pods are never injected.
pub const IGNORED_NAMESPACES: [&str; 4] = ["kube-system", "kube-public", "kube-node-lease", "local-path-storage"];

/// The outcome of the decision, with the reason kept for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Add the sidecar, for this reason.
    Inject(InjectReason),
    /// Leave the pod alone, for this reason.
    Skip(SkipReason),
}

/// Why a pod is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectReason {
    /// The pod asked for it.
    PodOptIn,
    /// It matched `alwaysInjectSelector`.
    AlwaysInjectSelector,
    /// The policy is `enabled`.
    PolicyEnabled,
}

/// Why a pod is not injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// `spec.hostNetwork` is true.
    HostNetwork,
    /// The namespace is a system namespace.
    IgnoredNamespace,
    /// The pod already carries a proxy.
    AlreadyInjected,
    /// The pod asked not to be injected.
    PodOptOut,
    /// It matched `neverInjectSelector`.
    NeverInjectSelector,
    /// The policy is `disabled` and the pod did not opt in.
    PolicyDisabled,
    /// It names an injection template not rendered here, and `unknownTemplates` is `skip`.
    UnknownTemplate,
    /// The pod has no spec or no `spec.containers`: the API server refuses it with a clearer
    /// message than a patch could give.
    NoContainers,
}

impl Decision {
    /// A short word for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Inject(InjectReason::PodOptIn) => "inject:pod-opt-in",
            Decision::Inject(InjectReason::AlwaysInjectSelector) => "inject:always-inject-selector",
            Decision::Inject(InjectReason::PolicyEnabled) => "inject:policy-enabled",
            Decision::Skip(SkipReason::HostNetwork) => "skip:host-network",
            Decision::Skip(SkipReason::IgnoredNamespace) => "skip:ignored-namespace",
            Decision::Skip(SkipReason::AlreadyInjected) => "skip:already-injected",
            Decision::Skip(SkipReason::PodOptOut) => "skip:pod-opt-out",
            Decision::Skip(SkipReason::NeverInjectSelector) => "skip:never-inject-selector",
            Decision::Skip(SkipReason::PolicyDisabled) => "skip:policy-disabled",
            Decision::Skip(SkipReason::UnknownTemplate) => "skip:unknown-template",
            Decision::Skip(SkipReason::NoContainers) => "skip:no-containers",
        }
    }
}

/// Decides whether to inject `pod` in `namespace`; a `sidecar.istio.io/inject` value istiod
/// does not read is refused, naming where it was set.
pub fn should_inject(pod: &Pod, namespace: &str, compiled: &CompiledConfig) -> Result<Decision, InjectError> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|spec| spec.host_network).unwrap_or(false) {
        return Ok(Decision::Skip(SkipReason::HostNetwork));
    }
    if IGNORED_NAMESPACES.contains(&namespace) {
        return Ok(Decision::Skip(SkipReason::IgnoredNamespace));
    }
    if is_injected(pod) {
        return Ok(Decision::Skip(SkipReason::AlreadyInjected));
    }
    let metadata = &pod.metadata;
    let explicit = metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(INJECT_KEY).map(|value| ("label", value)))
        .or_else(|| {
            metadata
                .annotations
                .as_ref()
                .and_then(|annotations| annotations.get(INJECT_KEY).map(|value| ("annotation", value)))
        });
    if let Some((place, value)) = explicit {
        match read_switch(place, INJECT_KEY, value)? {
            Some(true) => return Ok(Decision::Inject(InjectReason::PodOptIn)),
            Some(false) => return Ok(Decision::Skip(SkipReason::PodOptOut)),
            None => {}
        }
    }
    let empty = Default::default();
    let labels = metadata.labels.as_ref().unwrap_or(&empty);
    if compiled.never_injects(labels) {
        return Ok(Decision::Skip(SkipReason::NeverInjectSelector));
    }
    if compiled.always_injects(labels) {
        return Ok(Decision::Inject(InjectReason::AlwaysInjectSelector));
    }
    Ok(match compiled.raw.policy {
        InjectionPolicy::Enabled => Decision::Inject(InjectReason::PolicyEnabled),
        InjectionPolicy::Disabled => Decision::Skip(SkipReason::PolicyDisabled),
    })
}

/// Whether the pod was already injected: it carries the status annotation. An
/// `istio-proxy` container without it is a user override, merged onto ours.
pub fn is_injected(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| annotations.contains_key(STATUS_ANNOTATION))
}

/// Whether a container is one the injector adds (or a user override of one).
pub fn is_injected_container(name: &str) -> bool {
    matches!(name, PROXY_CONTAINER | "istio-init" | "istio-validation")
}

/// Reads an on/off switch istiod compares with the literal strings `"true"` and `"false"`
/// (`sidecar.istio.io/inject`, `sidecar.istio.io/nativeSidecar`): those two, or empty for
/// unset (`None`). Anything else (`True`, `yes`, `off`, ...) is refused rather than read as
/// istiod would: it ignores such a value for `inject` and takes every non-empty value but
/// `false` as on for `nativeSidecar`, so `off` would silently turn native sidecars on.
pub(crate) fn read_switch(place: &'static str, key: &'static str, value: &str) -> Result<Option<bool>, InjectError> {
    match value {
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        "" => Ok(None),
        _ => Err(InjectError::InvalidSwitch {
            place,
            key,
            value: quoted(value),
        }),
    }
}

/// Reads a boolean the way Go's `strconv.ParseBool` does, as istiod reads
/// `sidecar.istio.io/rewriteAppHTTPProbers`: `1`, `t`, `true` (or `T`, `TRUE`, `True`) and their
/// false forms; `None` for anything else, `on` and `off` included, which istiod ignores.
pub fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InjectConfig;

    #[test]
    fn go_booleans_are_read_as_go_reads_them() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("off"), None);
        assert_eq!(parse_go_bool("yes"), None);
    }
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    struct Case {
        name: &'static str,
        labels: &'static [(&'static str, &'static str)],
        annotations: &'static [(&'static str, &'static str)],
        namespace: &'static str,
        host_network: bool,
        policy: InjectionPolicy,
        expected: Decision,
        denied: bool,
    }

    const BASE: Case = Case {
        name: "",
        labels: &[],
        annotations: &[],
        namespace: "default",
        host_network: false,
        policy: InjectionPolicy::Enabled,
        expected: Decision::Inject(InjectReason::PolicyEnabled),
        denied: false,
    };

    fn pod(case: &Case) -> Pod {
        let map = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        let mut pod = Pod::default();
        pod.metadata.labels = map(case.labels);
        pod.metadata.annotations = map(case.annotations);
        pod.spec = Some(PodSpec {
            host_network: Some(case.host_network),
            containers: vec![Container {
                name: "app".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        pod
    }

    fn config(policy: InjectionPolicy) -> InjectConfig {
        let selector = |key: &str, value: &str| LabelSelector {
            match_labels: Some([(key.to_string(), value.to_string())].into()),
            ..Default::default()
        };
        InjectConfig {
            policy,
            never_inject_selector: vec![selector("openshift.io/build.name", "build")],
            always_inject_selector: vec![selector("mesh", "always")],
            ..InjectConfig::default()
        }
    }

    #[test]
    fn decision_table() {
        use Decision::*;
        let cases = [
            Case {
                name: "default policy injects",
                ..BASE
            },
            Case {
                name: "host network skips",
                host_network: true,
                labels: &[(INJECT_KEY, "true")],
                expected: Skip(SkipReason::HostNetwork),
                ..BASE
            },
            Case {
                name: "kube-system skips",
                namespace: "kube-system",
                expected: Skip(SkipReason::IgnoredNamespace),
                ..BASE
            },
            Case {
                name: "kube-public skips",
                namespace: "kube-public",
                expected: Skip(SkipReason::IgnoredNamespace),
                ..BASE
            },
            Case {
                name: "kube-node-lease skips",
                namespace: "kube-node-lease",
                expected: Skip(SkipReason::IgnoredNamespace),
                ..BASE
            },
            Case {
                name: "local-path-storage skips",
                namespace: "local-path-storage",
                expected: Skip(SkipReason::IgnoredNamespace),
                ..BASE
            },
            Case {
                name: "label false skips",
                labels: &[(INJECT_KEY, "false")],
                expected: Skip(SkipReason::PodOptOut),
                ..BASE
            },
            Case {
                name: "annotation false skips",
                annotations: &[(INJECT_KEY, "false")],
                expected: Skip(SkipReason::PodOptOut),
                ..BASE
            },
            Case {
                name: "label beats annotation",
                labels: &[(INJECT_KEY, "true")],
                annotations: &[(INJECT_KEY, "false")],
                expected: Inject(InjectReason::PodOptIn),
                ..BASE
            },
            Case {
                name: "label true beats disabled policy",
                labels: &[(INJECT_KEY, "true")],
                policy: InjectionPolicy::Disabled,
                expected: Inject(InjectReason::PodOptIn),
                ..BASE
            },
            Case {
                name: "disabled policy skips",
                policy: InjectionPolicy::Disabled,
                expected: Skip(SkipReason::PolicyDisabled),
                ..BASE
            },
            Case {
                name: "a label istiod does not read is refused",
                labels: &[(INJECT_KEY, "maybe")],
                denied: true,
                ..BASE
            },
            Case {
                name: "an annotation istiod does not read is refused under a disabled policy too",
                annotations: &[(INJECT_KEY, "sure")],
                policy: InjectionPolicy::Disabled,
                denied: true,
                ..BASE
            },
            Case {
                name: "an empty label is unset and hides the annotation, as in istiod",
                labels: &[(INJECT_KEY, "")],
                annotations: &[(INJECT_KEY, "false")],
                ..BASE
            },
            Case {
                name: "an empty annotation is unset",
                annotations: &[(INJECT_KEY, "")],
                policy: InjectionPolicy::Disabled,
                expected: Skip(SkipReason::PolicyDisabled),
                ..BASE
            },
            Case {
                name: "a bad value on a host-network pod is never read",
                host_network: true,
                labels: &[(INJECT_KEY, "maybe")],
                expected: Skip(SkipReason::HostNetwork),
                ..BASE
            },
            Case {
                name: "never selector skips",
                labels: &[("openshift.io/build.name", "build")],
                expected: Skip(SkipReason::NeverInjectSelector),
                ..BASE
            },
            Case {
                name: "explicit true beats never selector",
                labels: &[("openshift.io/build.name", "build"), (INJECT_KEY, "true")],
                expected: Inject(InjectReason::PodOptIn),
                ..BASE
            },
            Case {
                name: "always selector injects under disabled policy",
                labels: &[("mesh", "always")],
                policy: InjectionPolicy::Disabled,
                expected: Inject(InjectReason::AlwaysInjectSelector),
                ..BASE
            },
            Case {
                name: "explicit false beats always selector",
                labels: &[("mesh", "always"), (INJECT_KEY, "false")],
                expected: Skip(SkipReason::PodOptOut),
                ..BASE
            },
            Case {
                name: "never selector wins over always selector",
                labels: &[("mesh", "always"), ("openshift.io/build.name", "build")],
                expected: Skip(SkipReason::NeverInjectSelector),
                ..BASE
            },
            Case {
                name: "status annotation skips",
                annotations: &[(STATUS_ANNOTATION, "{}")],
                expected: Skip(SkipReason::AlreadyInjected),
                ..BASE
            },
        ];
        for case in &cases {
            let decision = should_inject(&pod(case), case.namespace, &config(case.policy).compile().unwrap());
            match decision {
                Ok(decision) => {
                    assert!(!case.denied, "{}: {decision:?}", case.name);
                    assert_eq!(decision, case.expected, "{}", case.name);
                }
                Err(error) => assert!(case.denied, "{}: {error}", case.name),
            }
        }
    }

    /// istiod compares `sidecar.istio.io/inject` with the literal words: YAML's and Go's
    /// other spellings, which istiod would silently ignore, are refused, naming the place.
    #[test]
    fn only_istiods_two_words_are_read() {
        for (value, expected) in [("true", Some(true)), ("false", Some(false)), ("", None)] {
            assert_eq!(read_switch("label", INJECT_KEY, value), Ok(expected), "{value:?}");
        }
        for value in [
            "True", "TRUE", "yes", "y", "on", "off", "no", "1", "0", " true", "maybe",
        ] {
            let error = read_switch("label", INJECT_KEY, value).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("label {INJECT_KEY} has value {value:?}, which is not valid")),
                "{error}"
            );
            assert!(error.contains(crate::annotations::SWITCH_FORMS), "{error}");
        }
        let mut annotated = pod(&BASE);
        annotated.metadata.annotations = Some([(INJECT_KEY.to_string(), "on".to_string())].into());
        let error = should_inject(&annotated, "default", &InjectConfig::default().compile().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("annotation sidecar.istio.io/inject has value \"on\""),
            "{error}"
        );
    }

    #[test]
    fn proxy_container_without_status_is_an_override() {
        let mut pod = pod(&BASE);
        if let Some(spec) = pod.spec.as_mut() {
            spec.init_containers = Some(vec![Container {
                name: PROXY_CONTAINER.into(),
                ..Default::default()
            }]);
        }
        let decision = should_inject(&pod, "default", &InjectConfig::default().compile().unwrap());
        assert_eq!(decision, Ok(Decision::Inject(InjectReason::PolicyEnabled)));
    }
}
