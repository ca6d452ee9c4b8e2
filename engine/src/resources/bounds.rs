//! Step 3: per-field min and max from config, which a namespace may tighten, never widen.
//!
//! Config: `bounds: {cpu.limit: {min: 100m, max: "2"}, ...}`. Namespace: the annotation
//! `sidecar-injector.io/bounds` with the same shape as JSON. A value outside the
//! effective range is clamped with a warning (`onViolation: clamp`, the default) or
//! denied (`onViolation: deny`). A limit nothing set is set to the max, and a request
//! nothing set to the min, since an absent value is unbounded.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{FieldKey, ProxyResources, Side};
use crate::config::{BoundSpec, ConfigError, OnViolation, examples_for};
use crate::error::{InjectError, quoted};
use crate::quantity::Quantity;

/// Namespace annotation tightening the bounds.
pub const BOUNDS_ANNOTATION: &str = "sidecar-injector.io/bounds";

/// One end of a range and who set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The value.
    pub value: Quantity,
    /// `cluster` or `namespace`.
    pub origin: &'static str,
}

/// A field's allowed range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Range {
    /// Smallest allowed value.
    pub min: Option<Bound>,
    /// Largest allowed value.
    pub max: Option<Bound>,
}

/// A range per field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldBounds {
    ranges: [Range; 6],
}

impl FieldBounds {
    /// The range of one field.
    pub fn range(&self, key: FieldKey) -> &Range {
        &self.ranges[key.index()]
    }

    /// Parses the config's `bounds`.
    pub fn from_config(specs: &BTreeMap<String, BoundSpec>) -> Result<FieldBounds, ConfigError> {
        let mut bounds = FieldBounds::default();
        for (name, spec) in specs {
            let key = FieldKey::parse(name).ok_or_else(|| ConfigError::Invalid {
                key: format!("bounds.{name}"),
                value: name.clone(),
                reason: "is not a field; use cpu.request, cpu.limit, memory.request, memory.limit, ephemeral-storage.request or ephemeral-storage.limit".into(),
            })?;
            let parse = |end: &str, text: &Option<String>| -> Result<Option<Bound>, ConfigError> {
                text.as_deref()
                    .map(|text| {
                        let kind = key.resource.kind();
                        Quantity::parse(text, kind)
                            .map(|value| Bound {
                                value,
                                origin: "cluster",
                            })
                            .map_err(|reason| ConfigError::Quantity {
                                key: format!("bounds.{name}.{end}"),
                                value: text.into(),
                                reason,
                                examples: examples_for(kind),
                            })
                    })
                    .transpose()
            };
            let range = Range {
                min: parse("min", &spec.min)?,
                max: parse("max", &spec.max)?,
            };
            if let (Some(min), Some(max)) = (&range.min, &range.max)
                && min.value.units() > max.value.units()
            {
                return Err(ConfigError::Invalid {
                    key: format!("bounds.{name}"),
                    value: format!("min {} max {}", min.value, max.value),
                    reason: "min is above max".into(),
                });
            }
            bounds.ranges[key.index()] = range;
        }
        Ok(bounds)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceBound {
    min: Option<String>,
    max: Option<String>,
}

/// The cluster bounds tightened by the namespace's annotation.
pub fn effective_bounds(
    cluster: &FieldBounds,
    namespace_annotations: Option<&BTreeMap<String, String>>,
) -> Result<FieldBounds, InjectError> {
    let Some(text) = namespace_annotations.and_then(|map| map.get(BOUNDS_ANNOTATION)) else {
        return Ok(cluster.clone());
    };
    let invalid = |reason: String| InjectError::InvalidAnnotation {
        annotation: format!("{BOUNDS_ANNOTATION} (on the namespace)"),
        value: quoted(text),
        reason,
        accepted: "JSON like {\"cpu.limit\":{\"max\":\"2\"},\"memory.request\":{\"min\":\"64Mi\"}}",
    };
    let parsed: BTreeMap<String, NamespaceBound> =
        serde_json::from_str(text).map_err(|error| invalid(error.to_string()))?;
    let mut bounds = cluster.clone();
    for (name, spec) in parsed {
        let key = FieldKey::parse(&name).ok_or_else(|| invalid(format!("{} is not a field", quoted(&name))))?;
        let parse = |text: Option<String>| -> Result<Option<Quantity>, InjectError> {
            text.map(|text| {
                Quantity::parse(&text, key.resource.kind())
                    .map_err(|reason| invalid(format!("{name}: {} {reason}", quoted(&text))))
            })
            .transpose()
        };
        let range = &mut bounds.ranges[key.index()];
        if let Some(min) = parse(spec.min)?
            && range
                .min
                .as_ref()
                .is_none_or(|current| min.units() > current.value.units())
        {
            range.min = Some(Bound {
                value: min,
                origin: "namespace",
            });
        }
        if let Some(max) = parse(spec.max)?
            && range
                .max
                .as_ref()
                .is_none_or(|current| max.units() < current.value.units())
        {
            range.max = Some(Bound {
                value: max,
                origin: "namespace",
            });
        }
    }
    Ok(bounds)
}

/// Clamps (or denies) every field into its range.
pub fn apply_bounds(
    resources: &mut ProxyResources,
    bounds: &FieldBounds,
    on_violation: OnViolation,
    warnings: &mut Vec<String>,
) -> Result<(), InjectError> {
    for key in FieldKey::ALL {
        let range = bounds.range(key);
        let field = resources.field(key).clone();
        let Some(value) = field.value else {
            let fill = match key.side {
                Side::Limit => range.max.as_ref().map(|b| (b, "max")),
                Side::Request => range.min.as_ref().map(|b| (b, "min")),
            };
            if let Some((bound, end)) = fill {
                resources.adjust(
                    key,
                    bound.value,
                    format!("set to {} {end} (nothing else set it)", bound.origin),
                );
            }
            continue;
        };
        let violation = match (&range.min, &range.max) {
            (Some(min), _) if value.units() < min.value.units() => Some((min, "min", "below", "raised")),
            (_, Some(max)) if value.units() > max.value.units() => Some((max, "max", "above", "clamped")),
            _ => None,
        };
        let Some((bound, end, direction, verb)) = violation else {
            continue;
        };
        if on_violation == OnViolation::Deny {
            return Err(InjectError::OutOfBounds {
                field: key.describe(),
                value: value.to_string(),
                origin: field.source.to_string(),
                direction,
                bound: format!("{} {end} {}", bound.origin, bound.value),
            });
        }
        let why = format!("{verb} to {} ({} {end})", bound.value, bound.origin);
        warnings.push(format!("proxy {} {value} {why}", key.describe()));
        resources.adjust(key, bound.value, why);
    }
    Ok(())
}
