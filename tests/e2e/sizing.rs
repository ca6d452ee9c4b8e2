//! The proxy's resources as the API server stored them, compared exactly, and the pods that
//! size it.
//!
//! Test pods here give their app container explicit requests and limits, so LimitRanger's
//! defaulting (which runs before the webhooks) leaves the app alone and every check is about
//! what we set. The checks read the stored containers, the `sidecar-injector.io/resources`
//! provenance annotation, and LimitRanger's own `kubernetes.io/limit-ranger` annotation, which
//! names every container it had to fill in.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use serde_json::{Map, Value};
use sidecar_injector::quantity::{Quantity, ResourceKind};

use crate::check::ensure;
use crate::pods::{INIT, PROXY, container, layout, test_pod};

/// The annotation where we record each field's value and source.
pub const PROVENANCE: &str = "sidecar-injector.io/resources";
/// The annotation where LimitRanger lists the containers whose resources it defaulted.
const LIMIT_RANGER: &str = "kubernetes.io/limit-ranger";

/// (resource, quantity) pairs, e.g. `[("cpu", "100m"), ("memory", "128Mi")]`.
pub type Amounts = &'static [(&'static str, &'static str)];

/// A container's requests and limits.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// The requests.
    pub requests: Amounts,
    /// The limits.
    pub limits: Amounts,
}

// === impl Sizes ===

impl Sizes {
    /// The Kubernetes form.
    pub fn requirements(&self) -> ResourceRequirements {
        let map = |amounts: Amounts| {
            let map: BTreeMap<String, ApiQuantity> = amounts
                .iter()
                .map(|(resource, value)| (resource.to_string(), ApiQuantity(value.to_string())))
                .collect();
            (!map.is_empty()).then_some(map)
        };
        ResourceRequirements {
            requests: map(self.requests),
            limits: map(self.limits),
            ..ResourceRequirements::default()
        }
    }
}

impl fmt::Display for Sizes {
    /// `cpu 100m/2 memory 128Mi/1Gi`: request/limit per resource, `-` when unset.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut resources: Vec<&str> = Vec::new();
        for (resource, _) in self.requests.iter().chain(self.limits) {
            if !resources.contains(resource) {
                resources.push(resource);
            }
        }
        let find = |amounts: Amounts, resource: &str| {
            amounts
                .iter()
                .find(|(r, _)| *r == resource)
                .map_or("-", |(_, value)| *value)
        };
        for (i, resource) in resources.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let (request, limit) = (find(self.requests, resource), find(self.limits, resource));
            write!(f, "{resource} {request}/{limit}")?;
        }
        Ok(())
    }
}

/// A pod whose `app` container has `app` as its resources.
pub fn app_pod(name: &str, app: Sizes) -> Pod {
    let mut pod = test_pod(name, &[], &[]);
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers[0].resources = Some(app.requirements());
    }
    pod
}

fn kind(resource: &str) -> ResourceKind {
    if resource == "cpu" {
        ResourceKind::Cpu
    } else {
        ResourceKind::Memory
    }
}

/// `stored` holds exactly the resources of `expected`, each an equal quantity.
fn check_map(
    container: &str,
    side: &str,
    stored: Option<&BTreeMap<String, ApiQuantity>>,
    expected: Amounts,
) -> Result<(), String> {
    let empty = BTreeMap::new();
    let stored = stored.unwrap_or(&empty);
    let names = |keys: Vec<&str>| keys.join(", ");
    let mut expected_keys: Vec<&str> = expected.iter().map(|(r, _)| *r).collect();
    expected_keys.sort_unstable();
    let stored_keys: Vec<&str> = stored.keys().map(String::as_str).collect();
    ensure!(
        stored_keys == expected_keys,
        "{container}: {side} has [{}], expected [{}]",
        names(stored_keys),
        names(expected_keys)
    );
    for (resource, value) in expected {
        let text = &stored[*resource].0;
        let parse = |text: &str| {
            Quantity::parse(text, kind(resource))
                .map(|q| q.units())
                .map_err(|e| format!("{container}: {side}.{resource} {text:?}: {e}"))
        };
        ensure!(
            parse(text)? == parse(value)?,
            "{container}: {side}.{resource} is {text}, expected {value}"
        );
    }
    Ok(())
}

/// Container `name` of `pod` has exactly `expected` as requests and limits.
pub fn check_container(pod: &Pod, name: &str, expected: Sizes) -> Result<(), String> {
    let found = container(pod, name).ok_or_else(|| format!("no {name}: {}", layout(pod)))?;
    let resources = found.resources.clone().unwrap_or_default();
    check_map(name, "requests", resources.requests.as_ref(), expected.requests)?;
    check_map(name, "limits", resources.limits.as_ref(), expected.limits)
}

/// `istio-proxy` and `istio-init` (sized like the proxy) have exactly `expected`.
pub fn check_injected(pod: &Pod, expected: Sizes) -> Result<(), String> {
    check_container(pod, PROXY, expected)?;
    check_container(pod, INIT, expected)
}

/// The provenance annotation, parsed.
pub fn provenance(pod: &Pod) -> Result<Map<String, Value>, String> {
    let text = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVENANCE))
        .ok_or_else(|| format!("no {PROVENANCE} annotation"))?;
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(format!("{PROVENANCE} is not a JSON object: {text}")),
    }
}

/// One field's entry in the provenance annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The value as we wrote it.
    pub value: String,
    /// Where it came from, e.g. `config default`.
    pub from: String,
    /// What adjusted it afterwards, if anything.
    pub adjusted: Option<String>,
}

/// The provenance entry of `field` (`cpu.limit`, ...).
pub fn provenance_of(pod: &Pod, field: &str) -> Result<Provenance, String> {
    let map = provenance(pod)?;
    let entry = map
        .get(field)
        .ok_or_else(|| format!("{PROVENANCE} has no {field}: {}", Value::Object(map.clone())))?;
    let text = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_string);
    let required = |key: &str| text(key).ok_or_else(|| format!("{PROVENANCE} {field} has no {key:?}: {entry}"));
    Ok(Provenance {
        value: required("value")?,
        from: required("from")?,
        adjusted: text("adjusted"),
    })
}

/// LimitRanger filled in nothing on our containers: its annotation, when present, names only
/// the app's.
pub fn limit_ranger_left_ours_alone(pod: &Pod) -> Result<(), String> {
    let noted = pod.metadata.annotations.as_ref().and_then(|a| a.get(LIMIT_RANGER));
    if let Some(noted) = noted {
        ensure!(
            !noted.contains("istio-"),
            "LimitRanger defaulted one of our containers: {LIMIT_RANGER}: {noted}"
        );
    }
    Ok(())
}
