//! Proxy resources: every field resolved by precedence, then held within policy.
//!
//! Six fields are resolved independently: CPU, memory and ephemeral-storage, each a
//! request and a limit. The pipeline, each step in its own module:
//!
//! 1. [`layers`]: pod annotation > [`recommendation`] (a VerticalPodAutoscaler's) >
//!    namespace annotation > profile > config default, with proportional sizing
//!    (`proxyCPURatio`, `proxyMemoryRatio`) at the annotation levels;
//! 2. [`qos`]: a pod whose app containers are all Guaranteed keeps QoS Guaranteed;
//! 3. [`bounds`]: config min/max per field, which a namespace may tighten, clamped or denied;
//! 4. [`limit_range`]: LimitRange defaults, container min/max and ratio, and pod max,
//!    as the API server's LimitRanger will judge them after us;
//! 5. a final request ≤ limit check;
//! 6. [`pod_level`]: a pod that sets `spec.resources` gets them grown by what injection adds.
//!
//! Each field keeps where its value came from and what adjusted it, which becomes the
//! `sidecar-injector.io/resources` annotation and the `explain` table.

pub mod app_amounts;
pub mod bounds;
pub mod init;
pub mod layers;
pub mod limit_range;
pub mod pod_level;
pub mod qos;
pub mod quota;
pub mod ratio;
pub mod recommendation;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

pub(crate) use self::app_amounts::PodView;
pub use self::app_amounts::{AppAmounts, ContainerAmounts, ListAmounts};
pub use self::recommendation::Recommendation;
use super::error::InjectError;
use crate::config::ConcurrencyFrom;
pub use crate::config::tuning::Tuning;
pub use crate::fields::{FieldBounds, FieldKey, FieldValues, Resource, Side};
use crate::json_text::JsonText;
use crate::quantity::Quantity;

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The pod's own `istio-proxy` container (a user override).
    ProxyContainer,
    /// A pod annotation.
    PodAnnotation(&'static str),
    /// A namespace annotation.
    NamespaceAnnotation(&'static str),
    /// A recommendation for the pod's owner, e.g. `vpa shop/web`.
    Recommendation(String),
    /// A named profile, chosen by the pod or its namespace.
    Profile {
        /// The profile.
        name: String,
        /// `pod` or `namespace`.
        chosen_by: &'static str,
    },
    /// The config file's `resources`.
    ConfigDefault,
    /// The config file's `initResources` (the init container only).
    InitConfig,
    /// A LimitRange's `default` or `defaultRequest`.
    LimitRangeDefault(String),
    /// Set to the other side to keep QoS Guaranteed.
    GuaranteedQos,
    /// A bound's min or max, for a field nothing else set.
    Bound(String),
    /// Nothing set it.
    Unset,
}

impl Source {
    /// How the provenance annotation names this source; borrowed unless it has a name in it.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Source::ProxyContainer => Cow::Borrowed("the pod's istio-proxy container"),
            Source::PodAnnotation(key) => Cow::Owned(format!("pod annotation {key}")),
            Source::NamespaceAnnotation(key) => Cow::Owned(format!("namespace annotation {key}")),
            Source::Recommendation(origin) => Cow::Borrowed(origin),
            Source::Profile { name, chosen_by } => {
                Cow::Owned(format!("profile {name} (chosen by {chosen_by} annotation)"))
            }
            Source::ConfigDefault => Cow::Borrowed("config default"),
            Source::InitConfig => Cow::Borrowed("config initResources"),
            Source::LimitRangeDefault(name) => Cow::Owned(format!("LimitRange {name} default")),
            Source::GuaranteedQos => Cow::Borrowed("QoS Guaranteed"),
            Source::Bound(which) => Cow::Borrowed(which),
            Source::Unset => Cow::Borrowed("unset"),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// One resolved field: its value, where it came from, and what changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The value; `None` leaves the field out.
    pub value: Option<Quantity>,
    /// Where the value was first taken from.
    pub source: Source,
    /// Adjustments made after that, in order.
    pub adjustments: Vec<String>,
}

impl Field {
    /// An unset field.
    pub fn unset() -> Self {
        Field {
            value: None,
            source: Source::Unset,
            adjustments: Vec::new(),
        }
    }

    /// A field set from `source`.
    pub fn from(value: Quantity, source: Source) -> Self {
        Field {
            value: Some(value),
            source,
            adjustments: Vec::new(),
        }
    }
}

/// How Envoy's worker count is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyPolicy {
    /// Which CPU field it follows.
    pub from: ConcurrencyFrom,
    /// Fewest workers.
    pub floor: i64,
    /// Most workers; 0 for no ceiling.
    pub ceiling: i64,
}

impl Default for ConcurrencyPolicy {
    fn default() -> Self {
        ConcurrencyPolicy {
            from: ConcurrencyFrom::Limit,
            floor: 1,
            ceiling: 0,
        }
    }
}

/// The proxy's resource fields after resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyResources {
    fields: [Field; 6],
}

// === impl ProxyResources ===

impl ProxyResources {
    /// All fields unset.
    pub fn unset() -> Self {
        ProxyResources {
            fields: std::array::from_fn(|_| Field::unset()),
        }
    }

    /// One field.
    pub fn field(&self, key: FieldKey) -> &Field {
        &self.fields[key.index()]
    }

    /// One field, to change.
    pub fn field_mut(&mut self, key: FieldKey) -> &mut Field {
        &mut self.fields[key.index()]
    }

    /// A field's value.
    pub fn value(&self, key: FieldKey) -> Option<Quantity> {
        self.field(key).value
    }

    /// Replaces a value, recording why.
    pub fn adjust(&mut self, key: FieldKey, value: Quantity, why: String) {
        let field = self.field_mut(key);
        if field.value.is_none() && field.source == Source::Unset {
            field.source = Source::Bound(why.clone());
        }
        field.value = Some(value);
        field.adjustments.push(why);
    }

    /// The request as the API server will see it: an unset request defaults to the limit.
    pub fn effective_request(&self, resource: Resource) -> Option<Quantity> {
        self.value(FieldKey::new(resource, Side::Request))
            .or_else(|| self.value(FieldKey::new(resource, Side::Limit)))
    }

    /// The Kubernetes form, with canonical quantities and empty maps left out.
    pub fn to_requirements(&self) -> ResourceRequirements {
        let map = |side: Side| {
            let map: BTreeMap<String, ApiQuantity> = Resource::ALL
                .into_iter()
                .filter_map(|resource| {
                    let value = self.value(FieldKey::new(resource, side))?;
                    Some((resource.name().to_string(), ApiQuantity(value.to_canonical())))
                })
                .collect();
            (!map.is_empty()).then_some(map)
        };
        ResourceRequirements {
            requests: map(Side::Request),
            limits: map(Side::Limit),
            ..Default::default()
        }
    }

    /// Envoy worker threads: the chosen CPU field rounded up to whole cores, within the
    /// policy's floor and ceiling; 2 when that field is unset. `None` when the policy leaves
    /// the choice to pilot-agent.
    pub fn concurrency(&self, policy: &ConcurrencyPolicy) -> Option<i64> {
        let side = match policy.from {
            ConcurrencyFrom::Limit => Side::Limit,
            ConcurrencyFrom::Request => Side::Request,
            ConcurrencyFrom::Agent => return None,
        };
        let workers = match self.value(FieldKey::new(Resource::Cpu, side)) {
            Some(cpu) => (cpu.units() + 999) / 1000,
            None => 2,
        };
        let workers = workers.max(policy.floor.max(1));
        Some(if policy.ceiling > 0 {
            workers.min(policy.ceiling)
        } else {
            workers
        })
    }

    /// `GOMEMLIMIT` in bytes: `percent` of the memory limit, when there is one.
    pub fn go_memory_limit(&self, percent: u8) -> Option<i64> {
        let limit = self.value(FieldKey::new(Resource::Memory, Side::Limit))?;
        let bytes = i128::from(limit.units()) * i128::from(percent) / 100;
        i64::try_from(bytes).ok().filter(|bytes| *bytes > 0)
    }

    /// The provenance annotation: compact JSON with each set field's value and source.
    pub fn provenance(&self) -> String {
        self.provenance_with(std::iter::empty())
    }

    /// [`ProxyResources::provenance`] with more entries, e.g. the pod-level values injection
    /// changed.
    pub fn provenance_with(&self, extra: impl IntoIterator<Item = (String, Value)>) -> String {
        serde_json::to_string(&self.provenance_annotation(extra)).unwrap_or_default()
    }

    /// [`ProxyResources::provenance_with`], escaped for the patch in one pass.
    pub(crate) fn provenance_text_with(&self, extra: impl IntoIterator<Item = (String, Value)>) -> JsonText {
        JsonText::of(&self.provenance_annotation(extra))
    }

    fn provenance_annotation(&self, extra: impl IntoIterator<Item = (String, Value)>) -> ProvenanceAnnotation<'_> {
        ProvenanceAnnotation {
            resources: self,
            extra: crate::patch::sorted_last_wins(extra.into_iter().collect()),
        }
    }
}

/// The provenance annotation's object: each set field by name, then the extra entries, in
/// name order (as a JSON object built from them keeps its keys), written with no
/// intermediate map.
struct ProvenanceAnnotation<'a> {
    resources: &'a ProxyResources,
    extra: Vec<(String, Value)>,
}

impl Serialize for ProvenanceAnnotation<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for key in FIELDS_BY_NAME {
            let field = self.resources.field(key);
            if let Some(value) = field.value {
                map.serialize_entry(key.name(), &FieldProvenance { field, value })?;
            }
        }
        for (key, value) in &self.extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// The six fields in the order their names sort, as a JSON object keeps them.
const FIELDS_BY_NAME: [FieldKey; 6] = [
    FieldKey::new(Resource::Cpu, Side::Limit),
    FieldKey::new(Resource::Cpu, Side::Request),
    FieldKey::new(Resource::EphemeralStorage, Side::Limit),
    FieldKey::new(Resource::EphemeralStorage, Side::Request),
    FieldKey::new(Resource::Memory, Side::Limit),
    FieldKey::new(Resource::Memory, Side::Request),
];

/// One field's entry: its value, where it came from and, when adjusted, how.
struct FieldProvenance<'a> {
    field: &'a Field,
    value: Quantity,
}

impl Serialize for FieldProvenance<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.field.adjustments.is_empty() {
            map.serialize_entry("adjusted", &Joined(&self.field.adjustments))?;
        }
        map.serialize_entry("from", &self.field.source.text())?;
        map.serialize_entry("value", &*self.value.text())?;
        map.end()
    }
}

/// Adjustments joined by `; `.
struct Joined<'a>(&'a [String]);

impl Serialize for Joined<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, adjustment) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            f.write_str(adjustment)?;
        }
        Ok(())
    }
}

impl fmt::Display for ProxyResources {
    /// `cpu=100m/2 memory=128Mi/1Gi` (request/limit, `-` when unset), for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |key: FieldKey| self.value(key).map_or_else(|| "-".to_string(), |q| q.to_string());
        write!(
            f,
            "cpu={}/{} memory={}/{}",
            show(FieldKey::ALL[0]),
            show(FieldKey::ALL[1]),
            show(FieldKey::ALL[2]),
            show(FieldKey::ALL[3])
        )?;
        if self.value(FieldKey::ALL[4]).is_some() || self.value(FieldKey::ALL[5]).is_some() {
            write!(
                f,
                " ephemeral-storage={}/{}",
                show(FieldKey::ALL[4]),
                show(FieldKey::ALL[5])
            )?;
        }
        Ok(())
    }
}

/// What the resolution knows about the pod's namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamespaceContext<'a> {
    /// The namespace's annotations, when known.
    pub annotations: Option<&'a BTreeMap<String, String>>,
    /// The namespace's LimitRanges.
    pub limit_ranges: &'a [LimitRange],
    /// The namespace's ResourceQuotas, with the `used` figures last seen.
    pub resource_quotas: &'a [ResourceQuota],
    /// A recommendation for the pod's owner (a VerticalPodAutoscaler's), when one is known.
    pub recommendation: Option<&'a Recommendation>,
}

/// The resolved resources and the warnings resolution produced.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The fields.
    pub resources: ProxyResources,
    /// Messages for the user (clamps, QoS changes).
    pub warnings: Vec<String>,
    /// Whether the proxy was kept QoS Guaranteed (its limits equal its requests).
    pub guaranteed: bool,
}

/// Runs the whole pipeline for one pod; `native` tells the pod-level LimitRange check
/// where the proxy sits.
pub(crate) fn resolve_resources(
    pod: PodView<'_>,
    namespace: &NamespaceContext<'_>,
    tuning: &Tuning,
    native: bool,
) -> Result<Resolution, InjectError> {
    resolve_for(pod, namespace, tuning, native, false)
}

/// Like [`resolve_resources`], with the pod's own `istio-proxy` container resources as the
/// most specific source: the proxy of a pod that overrides it.
pub(crate) fn resolve_proxy_override(
    pod: PodView<'_>,
    namespace: &NamespaceContext<'_>,
    tuning: &Tuning,
    native: bool,
) -> Result<Resolution, InjectError> {
    resolve_for(pod, namespace, tuning, native, true)
}

fn resolve_for(
    pod: PodView<'_>,
    namespace: &NamespaceContext<'_>,
    tuning: &Tuning,
    native: bool,
    include_override: bool,
) -> Result<Resolution, InjectError> {
    let pod_annotations = pod.pod.metadata.annotations.as_ref();
    let mut warnings = Vec::new();
    let mut resources = layers::resolve_layers(
        pod,
        pod_annotations,
        namespace.annotations,
        namespace.recommendation,
        tuning,
        include_override,
        &mut warnings,
    )?;
    let guaranteed = tuning.preserve_guaranteed_qos && qos::keep_guaranteed(pod, &mut resources, &mut warnings);
    let field_bounds = bounds::effective_bounds(&tuning.bounds, namespace.annotations)?;
    bounds::apply_bounds(&mut resources, &field_bounds, tuning.on_violation, &mut warnings)?;
    limit_range::apply_container_limits(&mut resources, namespace.limit_ranges, &field_bounds, &mut warnings)?;
    reconcile_adjusted(&mut resources, &field_bounds);
    check_requests_within_limits(&resources)?;
    limit_range::apply_pod_limits(
        pod,
        &mut resources,
        namespace.limit_ranges,
        &field_bounds,
        native,
        &mut warnings,
    )?;
    if guaranteed {
        qos::equalize(&mut resources, None);
    }
    check_requests_within_limits(&resources)?;
    Ok(Resolution {
        resources,
        warnings,
        guaranteed,
    })
}

/// When a clamp, not the user, put a request above its limit, raises the limit to the
/// request if its bounds allow, else lowers the request to the limit.
fn reconcile_adjusted(resources: &mut ProxyResources, bounds: &FieldBounds) {
    for resource in Resource::ALL {
        let request_key = FieldKey::new(resource, Side::Request);
        let limit_key = FieldKey::new(resource, Side::Limit);
        let (Some(request), Some(limit)) = (resources.value(request_key), resources.value(limit_key)) else {
            continue;
        };
        let adjusted =
            !resources.field(request_key).adjustments.is_empty() || !resources.field(limit_key).adjustments.is_empty();
        if request.units() <= limit.units() || !adjusted {
            continue;
        }
        let limit_max = bounds.range(limit_key).max.as_ref().map(|b| b.value.units());
        if limit_max.is_none_or(|max| request.units() <= max) {
            resources.adjust(limit_key, request, "raised to the request".into());
        } else {
            resources.adjust(request_key, limit, "lowered to the limit".into());
        }
    }
}

fn check_requests_within_limits(resources: &ProxyResources) -> Result<(), InjectError> {
    for resource in Resource::ALL {
        let request = resources.field(FieldKey::new(resource, Side::Request));
        let limit = resources.field(FieldKey::new(resource, Side::Limit));
        if let (Some(request_value), Some(limit_value)) = (request.value, limit.value)
            && request_value.units() > limit_value.units()
        {
            return Err(InjectError::RequestAboveLimit {
                subject: format!("proxy {}", resource.label()),
                request: request_value.to_string(),
                request_source: request.source.to_string(),
                limit: limit_value.to_string(),
                limit_source: limit.source.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
