//! Step 1: each field from the most specific source that sets it.
//!
//! Precedence, per field: pod annotation > recommendation (a VerticalPodAutoscaler's
//! target, requests only) > namespace annotation > profile > config default. At each annotation level a ratio annotation (`proxyCPURatio`,
//! `proxyMemoryRatio`) sizes a request from the app containers' requests when the plain
//! annotation is absent. With `resourceMerge: istio`, any resource annotation drops the
//! profile and config defaults for every field, as Istio does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::app_amounts::PodView;
use super::ratio::{RATIO_FORMS, Ratio, app_requests, ratio_annotation};
use super::{Field, FieldKey, FieldValues, ProxyResources, Recommendation, Resource, Side, Source, Tuning};
use crate::config::{ResourceMerge, examples_for};
use crate::error::{InjectError, quoted};
use crate::quantity::Quantity;

/// Annotation choosing a profile, on the pod or its namespace.
pub use crate::annotations::PROFILE;

/// Which object an annotation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Pod,
    Namespace,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Pod => "pod",
            Level::Namespace => "namespace",
        }
    }

    fn source(self, annotation: &'static str) -> Source {
        match self {
            Level::Pod => Source::PodAnnotation(annotation),
            Level::Namespace => Source::NamespaceAnnotation(annotation),
        }
    }
}

/// Reads one field from one level's annotations: the plain annotation, else the ratio.
fn from_annotations(
    key: FieldKey,
    level: Level,
    annotations: Option<&BTreeMap<String, String>>,
    pod: PodView<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<Field>, InjectError> {
    let Some(annotations) = annotations else {
        return Ok(None);
    };
    let annotation = key.annotation();
    if let Some(text) = annotations.get(annotation) {
        let kind = key.resource.kind();
        let value = Quantity::parse(text, kind).map_err(|reason| InjectError::InvalidQuantity {
            annotation: qualified(level, annotation),
            value: quoted(text),
            reason,
            examples: examples_for(kind),
        })?;
        return Ok(Some(Field::from(value, level.source(annotation))));
    }
    let Some(ratio_key) = ratio_annotation(key.resource).filter(|_| key.side == Side::Request) else {
        return Ok(None);
    };
    let Some(text) = annotations.get(ratio_key) else {
        return Ok(None);
    };
    let ratio = Ratio::parse(text).ok_or_else(|| InjectError::InvalidAnnotation {
        annotation: qualified(level, ratio_key),
        value: quoted(text),
        reason: "it is not a ratio".into(),
        accepted: RATIO_FORMS,
    })?;
    let app_total = app_requests(pod, key.resource);
    if app_total == 0 {
        warnings.push(format!(
            "{} {ratio_key} ignored: the app containers request no {}",
            level.word(),
            key.resource.label()
        ));
        return Ok(None);
    }
    let units = ratio.apply(app_total);
    let value = match key.resource {
        Resource::Cpu => Quantity::from_millicores(units),
        Resource::Memory | Resource::EphemeralStorage => Quantity::from_bytes(units),
    };
    let mut field = Field::from(value, level.source(ratio_key));
    let app_value = match key.resource {
        Resource::Cpu => Quantity::from_millicores(app_total),
        Resource::Memory | Resource::EphemeralStorage => Quantity::from_bytes(app_total),
    };
    field
        .adjustments
        .push(format!("{} × app requests {app_value}", text.trim()));
    Ok(Some(field))
}

fn qualified(level: Level, annotation: &str) -> String {
    match level {
        Level::Pod => annotation.to_string(),
        Level::Namespace => format!("{annotation} (on the namespace)"),
    }
}

/// The profile the pod or its namespace chose, if any.
fn chosen_profile<'t>(
    tuning: &'t Tuning,
    pod_annotations: Option<&BTreeMap<String, String>>,
    namespace_annotations: Option<&BTreeMap<String, String>>,
) -> Result<Option<(&'t str, &'t FieldValues, &'static str)>, InjectError> {
    let choice = pod_annotations
        .and_then(|map| map.get(PROFILE))
        .map(|name| (name, Level::Pod))
        .or_else(|| {
            namespace_annotations
                .and_then(|map| map.get(PROFILE))
                .map(|name| (name, Level::Namespace))
        });
    let Some((name, level)) = choice else { return Ok(None) };
    match tuning.profiles.get_key_value(name.trim()) {
        Some((name, values)) => Ok(Some((name.as_str(), values, level.word()))),
        None => Err(InjectError::UnknownProfile {
            annotation: qualified(level, PROFILE),
            value: quoted(name),
            known: if tuning.profiles.is_empty() {
                "none are configured".to_string()
            } else {
                tuning.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        }),
    }
}

/// Resources set on the pod's own `istio-proxy` container, the most specific source.
fn override_resources(pod: &Pod) -> FieldValues {
    let mut values: FieldValues = [None; 6];
    let Some(spec) = pod.spec.as_ref() else { return values };
    let proxy = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == crate::decision::PROXY_CONTAINER);
    let Some(resources) = proxy.and_then(|c| c.resources.as_ref()) else {
        return values;
    };
    for key in FieldKey::ALL {
        let map = match key.side {
            Side::Request => resources.requests.as_ref(),
            Side::Limit => resources.limits.as_ref(),
        };
        values[key.index()] = map
            .and_then(|map| map.get(key.resource.name()))
            .and_then(|q| Quantity::parse(&q.0, key.resource.kind()).ok());
    }
    values
}

/// Resolves every field by precedence.
pub(crate) fn resolve_layers(
    pod: PodView<'_>,
    pod_annotations: Option<&BTreeMap<String, String>>,
    namespace_annotations: Option<&BTreeMap<String, String>>,
    recommendation: Option<&Recommendation>,
    tuning: &Tuning,
    include_override: bool,
    warnings: &mut Vec<String>,
) -> Result<ProxyResources, InjectError> {
    let mut resources = ProxyResources::unset();
    let mut any_annotated = false;
    let from_container = if include_override {
        override_resources(pod.pod)
    } else {
        [None; 6]
    };
    for key in FieldKey::ALL {
        if let Some(value) = from_container[key.index()] {
            *resources.field_mut(key) = Field::from(value, Source::ProxyContainer);
            continue;
        }
        if let Some(field) = from_annotations(key, Level::Pod, pod_annotations, pod, warnings)? {
            any_annotated = true;
            *resources.field_mut(key) = field;
            continue;
        }
        // Not an annotation: with `resourceMerge: istio` it keeps the defaults for the rest.
        if let Some((value, origin)) = recommendation.and_then(|r| Some((r.value(key)?, &r.origin))) {
            *resources.field_mut(key) = Field::from(value, Source::Recommendation(origin.clone()));
            continue;
        }
        let annotated = from_annotations(key, Level::Namespace, namespace_annotations, pod, warnings)?;
        if let Some(field) = annotated {
            any_annotated = true;
            *resources.field_mut(key) = field;
        }
    }
    if any_annotated && tuning.merge == ResourceMerge::Istio {
        return Ok(resources);
    }
    // The user's own container overlays Istio's template, so in Istio's mode the
    // defaults still fill the fields it leaves out.
    let profile = chosen_profile(tuning, pod_annotations, namespace_annotations)?;
    for key in FieldKey::ALL {
        if resources.value(key).is_some() {
            continue;
        }
        let from_profile = profile.and_then(|(name, values, chosen_by)| {
            values[key.index()].map(|value| {
                Field::from(
                    value,
                    Source::Profile {
                        name: name.to_string(),
                        chosen_by,
                    },
                )
            })
        });
        let field =
            from_profile.or_else(|| tuning.defaults[key.index()].map(|v| Field::from(v, Source::ConfigDefault)));
        if let Some(field) = field {
            *resources.field_mut(key) = field;
        }
    }
    Ok(resources)
}
