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
use crate::config::OnViolation;
use crate::error::{InjectError, quoted};
use crate::fields::{Bound, FieldBounds};
use crate::quantity::Quantity;

/// Namespace annotation tightening the bounds.
pub use crate::annotations::BOUNDS as BOUNDS_ANNOTATION;

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
        accepted: crate::annotations::BOUNDS_FORMS,
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
        let range = bounds.range_mut(key);
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
