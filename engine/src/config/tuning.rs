//! The resource policy of the config file (`resources`, `profiles`, `bounds`,
//! `onViolation`, `resourceMerge`, `preserveGuaranteedQoS`), parsed once into exact
//! quantities when the config is compiled.

use std::collections::BTreeMap;

use super::{
    BoundSpec, ConfigError, InjectConfig, OnQuota, OnViolation, ResourceDefaults, ResourceMerge, examples_for,
};
use crate::fields::{Bound, FieldBounds, FieldKey, FieldValues, Range, Resource, Side};
use crate::quantity::{Quantity, ResourceKind};

/// The resource policy from config, parsed once at start-up.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Defaults per field.
    pub defaults: FieldValues,
    /// The init container's own values per field (`initResources`); `None` copies the proxy.
    pub init_defaults: FieldValues,
    /// Named profiles.
    pub profiles: BTreeMap<String, FieldValues>,
    /// Cluster bounds per field.
    pub bounds: FieldBounds,
    /// What to do with a value out of bounds.
    pub on_violation: OnViolation,
    /// How annotations combine with defaults.
    pub merge: ResourceMerge,
    /// Keep QoS Guaranteed pods Guaranteed.
    pub preserve_guaranteed_qos: bool,
    /// What to do when a ResourceQuota would be exceeded.
    pub on_quota: OnQuota,
    /// `quotaLimits`: per CPU and memory, the configured limit, or `None` for the request.
    pub quota_limits: [Option<Quantity>; 2],
}

impl Tuning {
    /// Parses the resource policy from config, naming the key of any bad value.
    pub fn from_config(config: &InjectConfig) -> Result<Tuning, ConfigError> {
        let defaults = parse_amounts("resources", &config.resources)?;
        let profiles = config
            .profiles
            .iter()
            .map(|(name, amounts)| Ok((name.clone(), parse_amounts(&format!("profiles.{name}"), amounts)?)))
            .collect::<Result<_, ConfigError>>()?;
        let bounds = parse_bounds(&config.bounds)?;
        let init_defaults = parse_amounts("initResources", &config.init_resources)?;
        let quota_limits = [
            parse_quota_limit("quotaLimits.cpu", &config.quota_limits.cpu, ResourceKind::Cpu)?,
            parse_quota_limit("quotaLimits.memory", &config.quota_limits.memory, ResourceKind::Memory)?,
        ];
        let tuning = Tuning {
            defaults,
            init_defaults,
            profiles,
            bounds,
            on_violation: config.on_violation,
            merge: config.resource_merge,
            preserve_guaranteed_qos: config.preserve_guaranteed_qos,
            on_quota: config.on_quota,
            quota_limits,
        };
        let init = ("initResources".to_string(), &tuning.init_defaults);
        for (name, values) in [("resources".to_string(), &tuning.defaults), init].into_iter().chain(
            tuning
                .profiles
                .iter()
                .map(|(name, values)| (format!("profiles.{name}"), values)),
        ) {
            for resource in Resource::ALL {
                let request = values[FieldKey::new(resource, Side::Request).index()];
                let limit = values[FieldKey::new(resource, Side::Limit).index()];
                if let (Some(request), Some(limit)) = (request, limit)
                    && request.units() > limit.units()
                {
                    return Err(ConfigError::RequestAboveLimit {
                        key: format!("{name}.requests.{}", resource.name()),
                        request: request.to_string(),
                        limit: limit.to_string(),
                    });
                }
            }
        }
        Ok(tuning)
    }
}

/// `request`, or a quantity.
fn parse_quota_limit(key: &str, text: &str, kind: ResourceKind) -> Result<Option<Quantity>, ConfigError> {
    if text.trim() == "request" {
        return Ok(None);
    }
    Quantity::parse(text, kind)
        .map(Some)
        .map_err(|reason| ConfigError::Quantity {
            key: key.into(),
            value: text.into(),
            reason,
            examples: examples_for(kind),
        })
}

/// Parses config amounts (`requests`/`limits` maps) into per-field values.
fn parse_amounts(prefix: &str, amounts: &ResourceDefaults) -> Result<FieldValues, ConfigError> {
    let mut values: FieldValues = [None; 6];
    for key in FieldKey::ALL {
        let (side_name, side) = match key.side {
            Side::Request => ("requests", &amounts.requests),
            Side::Limit => ("limits", &amounts.limits),
        };
        let text = match key.resource {
            Resource::Cpu => &side.cpu,
            Resource::Memory => &side.memory,
            Resource::EphemeralStorage => &side.ephemeral_storage,
        };
        if let Some(text) = text {
            let kind = key.resource.kind();
            values[key.index()] = Some(Quantity::parse(text, kind).map_err(|reason| ConfigError::Quantity {
                key: format!("{prefix}.{side_name}.{}", key.resource.name()),
                value: text.clone(),
                reason,
                examples: examples_for(kind),
            })?);
        }
    }
    Ok(values)
}

/// Parses the config's `bounds`.
fn parse_bounds(specs: &BTreeMap<String, BoundSpec>) -> Result<FieldBounds, ConfigError> {
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
        bounds.set_range(key, range);
    }
    Ok(bounds)
}
