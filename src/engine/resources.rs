//! Proxy CPU and memory, resolved field by field from annotations and config defaults.
//!
//! Istio's four annotations each set one field: `proxyCPU` and `proxyMemory` the
//! requests, `proxyCPULimit` and `proxyMemoryLimit` the limits. With the default
//! [`ResourceMerge::PerField`], an annotation overrides only its own field and the others
//! keep their defaults. [`ResourceMerge::Istio`] restores Istio's rule, where any
//! annotation drops every default. Either way a request above its limit is refused here,
//! where the message can say where each value came from, rather than by the API server.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use super::error::{InjectError, quoted};
use crate::config::{DefaultQuantities, ResourceMerge, examples_for};
use crate::quantity::{Quantity, ResourceKind};

/// Annotation for the proxy CPU request.
pub const PROXY_CPU: &str = "sidecar.istio.io/proxyCPU";
/// Annotation for the proxy memory request.
pub const PROXY_MEMORY: &str = "sidecar.istio.io/proxyMemory";
/// Annotation for the proxy CPU limit.
pub const PROXY_CPU_LIMIT: &str = "sidecar.istio.io/proxyCPULimit";
/// Annotation for the proxy memory limit.
pub const PROXY_MEMORY_LIMIT: &str = "sidecar.istio.io/proxyMemoryLimit";

/// Where a resolved value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A pod annotation.
    PodAnnotation(&'static str),
    /// The config file's `resources`.
    ConfigDefault,
    /// Nothing set it.
    Unset,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::PodAnnotation(key) => write!(f, "pod annotation {key}"),
            Source::ConfigDefault => f.write_str("config default"),
            Source::Unset => f.write_str("unset"),
        }
    }
}

/// One resolved field: its value, if any, and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedField {
    /// The value; `None` leaves the field out.
    pub value: Option<Quantity>,
    /// Where it came from.
    pub source: Source,
}

/// The proxy's four resource fields after resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyResources {
    /// CPU request.
    pub cpu_request: ResolvedField,
    /// CPU limit.
    pub cpu_limit: ResolvedField,
    /// Memory request.
    pub memory_request: ResolvedField,
    /// Memory limit.
    pub memory_limit: ResolvedField,
}

// === impl ProxyResources ===

impl ProxyResources {
    /// The Kubernetes form, with canonical quantities and empty maps left out.
    pub fn to_requirements(&self) -> ResourceRequirements {
        let map = |cpu: &ResolvedField, memory: &ResolvedField| {
            let mut map = BTreeMap::new();
            if let Some(value) = cpu.value {
                map.insert("cpu".to_string(), ApiQuantity(value.to_canonical()));
            }
            if let Some(value) = memory.value {
                map.insert("memory".to_string(), ApiQuantity(value.to_canonical()));
            }
            (!map.is_empty()).then_some(map)
        };
        ResourceRequirements {
            requests: map(&self.cpu_request, &self.memory_request),
            limits: map(&self.cpu_limit, &self.memory_limit),
            ..Default::default()
        }
    }

    /// Envoy worker threads: the CPU limit rounded up to whole cores, at least 1; 2 with no limit.
    pub fn concurrency(&self) -> i64 {
        match self.cpu_limit.value {
            Some(limit) => ((limit.units() + 999) / 1000).max(1),
            None => 2,
        }
    }
}

impl fmt::Display for ProxyResources {
    /// `cpu=100m/2 memory=128Mi/1Gi` (request/limit, `-` when unset), for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |field: &ResolvedField| field.value.map_or_else(|| "-".to_string(), |q| q.to_string());
        write!(
            f,
            "cpu={}/{} memory={}/{}",
            show(&self.cpu_request),
            show(&self.cpu_limit),
            show(&self.memory_request),
            show(&self.memory_limit)
        )
    }
}

/// Resolves the proxy's resources from pod annotations over the config defaults.
pub fn resolve_resources(
    annotations: Option<&BTreeMap<String, String>>,
    defaults: &DefaultQuantities,
    merge: ResourceMerge,
) -> Result<ProxyResources, InjectError> {
    let annotation = |key: &'static str, kind| -> Result<Option<Quantity>, InjectError> {
        annotations
            .and_then(|map| map.get(key))
            .map(|text| {
                Quantity::parse(text, kind).map_err(|reason| InjectError::InvalidQuantity {
                    annotation: key.into(),
                    value: quoted(text),
                    reason,
                    examples: examples_for(kind),
                })
            })
            .transpose()
    };
    let annotated = [
        (PROXY_CPU, annotation(PROXY_CPU, ResourceKind::Cpu)?),
        (PROXY_CPU_LIMIT, annotation(PROXY_CPU_LIMIT, ResourceKind::Cpu)?),
        (PROXY_MEMORY, annotation(PROXY_MEMORY, ResourceKind::Memory)?),
        (
            PROXY_MEMORY_LIMIT,
            annotation(PROXY_MEMORY_LIMIT, ResourceKind::Memory)?,
        ),
    ];
    let any_annotated = annotated.iter().any(|(_, value)| value.is_some());
    let use_defaults = merge == ResourceMerge::PerField || !any_annotated;
    let field = |index: usize, default: Option<Quantity>| {
        let (key, value) = annotated[index];
        match (value, default) {
            (Some(value), _) => ResolvedField {
                value: Some(value),
                source: Source::PodAnnotation(key),
            },
            (None, Some(default)) if use_defaults => ResolvedField {
                value: Some(default),
                source: Source::ConfigDefault,
            },
            _ => ResolvedField {
                value: None,
                source: Source::Unset,
            },
        }
    };
    let resources = ProxyResources {
        cpu_request: field(0, defaults.cpu_request),
        cpu_limit: field(1, defaults.cpu_limit),
        memory_request: field(2, defaults.memory_request),
        memory_limit: field(3, defaults.memory_limit),
    };
    check_request_within_limit("CPU", &resources.cpu_request, &resources.cpu_limit)?;
    check_request_within_limit("memory", &resources.memory_request, &resources.memory_limit)?;
    Ok(resources)
}

fn check_request_within_limit(
    resource: &'static str,
    request: &ResolvedField,
    limit: &ResolvedField,
) -> Result<(), InjectError> {
    match (request.value, limit.value) {
        (Some(request_value), Some(limit_value)) if request_value.units() > limit_value.units() => {
            Err(InjectError::RequestAboveLimit {
                resource,
                request: request_value.to_string(),
                request_source: request.source.to_string(),
                limit: limit_value.to_string(),
                limit_source: limit.source.to_string(),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InjectConfig;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn resolve(pairs: &[(&str, &str)], merge: ResourceMerge) -> Result<ProxyResources, InjectError> {
        let defaults = InjectConfig::default().default_quantities().unwrap();
        resolve_resources(Some(&annotations(pairs)), &defaults, merge)
    }

    fn shown(field: &ResolvedField) -> Option<String> {
        field.value.map(|q| q.to_string())
    }

    #[test]
    fn no_annotations_gives_defaults() {
        let resources = resolve(&[], ResourceMerge::PerField).unwrap();
        assert_eq!(resources.to_string(), "cpu=100m/2 memory=128Mi/1Gi");
        assert_eq!(resources.cpu_limit.source, Source::ConfigDefault);
        assert_eq!(resources.concurrency(), 2);
    }

    #[test]
    fn each_annotation_overrides_only_its_field() {
        let table = [
            (PROXY_CPU, "200m", "cpu=200m/2 memory=128Mi/1Gi"),
            (PROXY_CPU_LIMIT, "1500m", "cpu=100m/1500m memory=128Mi/1Gi"),
            (PROXY_MEMORY, "256Mi", "cpu=100m/2 memory=256Mi/1Gi"),
            (PROXY_MEMORY_LIMIT, "2Gi", "cpu=100m/2 memory=128Mi/2Gi"),
        ];
        for (key, value, expected) in table {
            let resources = resolve(&[(key, value)], ResourceMerge::PerField).unwrap();
            assert_eq!(resources.to_string(), expected, "{key}");
        }
    }

    #[test]
    fn istio_merge_drops_all_defaults_when_any_annotation_is_set() {
        let resources = resolve(&[(PROXY_CPU, "4000m")], ResourceMerge::Istio).unwrap();
        assert_eq!(resources.to_string(), "cpu=4/- memory=-/-");
        let requirements = resources.to_requirements();
        assert!(requirements.limits.is_none());
        assert_eq!(requirements.requests.unwrap()["cpu"].0, "4");
        let untouched = resolve(&[], ResourceMerge::Istio).unwrap();
        assert_eq!(untouched.to_string(), "cpu=100m/2 memory=128Mi/1Gi");
    }

    #[test]
    fn request_above_limit_names_both_sources() {
        let error = resolve(&[(PROXY_CPU, "4")], ResourceMerge::PerField).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("request 4 (from pod annotation sidecar.istio.io/proxyCPU)"),
            "{message}"
        );
        assert!(message.contains("limit 2 (from config default)"), "{message}");
        let error = resolve(
            &[(PROXY_MEMORY, "2Gi"), (PROXY_MEMORY_LIMIT, "1Gi")],
            ResourceMerge::Istio,
        )
        .unwrap_err();
        assert!(error.to_string().contains("memory request 2Gi"), "{error}");
    }

    #[test]
    fn invalid_value_names_annotation_value_and_form() {
        let error = resolve(&[(PROXY_MEMORY_LIMIT, "lots")], ResourceMerge::PerField).unwrap_err();
        assert_eq!(
            error.to_string(),
            "annotation sidecar.istio.io/proxyMemoryLimit has value \"lots\", which is not a Kubernetes quantity (examples: 128Mi, 1Gi)"
        );
    }

    #[test]
    fn concurrency_rounds_cpu_limit_up() {
        let at = |limit: &str| {
            resolve(&[(PROXY_CPU_LIMIT, limit), (PROXY_CPU, "1m")], ResourceMerge::PerField)
                .unwrap()
                .concurrency()
        };
        assert_eq!(at("100m"), 1);
        assert_eq!(at("1"), 1);
        assert_eq!(at("1001m"), 2);
        assert_eq!(at("3500m"), 4);
        let unlimited = resolve(&[(PROXY_CPU, "1")], ResourceMerge::Istio).unwrap();
        assert_eq!(unlimited.concurrency(), 2);
        assert_eq!(shown(&unlimited.cpu_request).as_deref(), Some("1"));
    }
}
