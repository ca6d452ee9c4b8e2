//! The sidecar's containers as typed values that serialize straight into the patch.
//!
//! What is the same for every pod under one config (the port, the probes, the mounts, the
//! downward-API variables, the usual security contexts) is serialized once by
//! [`crate::template`] and written as it is; everything else borrows from the plan and the
//! config. Fields are declared in name order, so a container serializes exactly as the same
//! container built as a `serde_json::Value` would.

use std::borrow::Cow;

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::fields::{FieldKey, Resource, Side};
use crate::log_levels::LogLevels;
use crate::resize_policy::ProxyResizePolicy;
use crate::resources::ProxyResources;

/// A JSON value serialized once by the template, or built for this pod.
#[derive(Debug, Clone)]
pub(crate) enum Fragment<'t> {
    /// From the template.
    Compiled(&'t RawValue),
    /// Built for this pod.
    Built(Value),
}

impl Serialize for Fragment<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Fragment::Compiled(raw) => raw.serialize(serializer),
            Fragment::Built(value) => value.serialize(serializer),
        }
    }
}

/// One environment variable of a container.
#[derive(Debug, Clone)]
pub(crate) enum EnvVar<'a> {
    /// A variable the template serialized (the downward-API ones), with its name.
    Compiled(&'static str, &'a RawValue),
    /// `name` set to `value`; an empty value is left out, as the API server stores it.
    Literal(Cow<'a, str>, Cow<'a, str>),
}

impl<'a> EnvVar<'a> {
    /// A literal variable.
    pub(crate) fn literal(name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) -> Self {
        EnvVar::Literal(name.into(), value.into())
    }

    /// The variable's name.
    pub(crate) fn name(&self) -> &str {
        match self {
            EnvVar::Compiled(name, _) => name,
            EnvVar::Literal(name, _) => name,
        }
    }
}

impl Serialize for EnvVar<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            EnvVar::Compiled(_, raw) => raw.serialize(serializer),
            EnvVar::Literal(name, value) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("name", name)?;
                if !value.is_empty() {
                    map.serialize_entry("value", value)?;
                }
                map.end()
            }
        }
    }
}

/// The proxy's role, its second argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyRole {
    /// `sidecar`: beside an app, capturing its traffic.
    Sidecar,
    /// `router`: a gateway.
    Router,
}

impl ProxyRole {
    /// The argument.
    fn as_str(self) -> &'static str {
        match self {
            ProxyRole::Sidecar => "sidecar",
            ProxyRole::Router => "router",
        }
    }
}

/// `proxy <role>` with the domain, the log levels and, when chosen, `--concurrency`.
#[derive(Debug, Clone)]
pub(crate) struct ProxyArgs<'a> {
    /// `sidecar` or `router`.
    pub role: ProxyRole,
    /// `$(POD_NAMESPACE).svc.<cluster domain>`.
    pub domain: &'a str,
    /// The proxy's and agent's log levels.
    pub log_levels: &'a LogLevels,
    /// Envoy worker threads, unless the agent chooses.
    pub concurrency: Option<i64>,
}

impl Serialize for ProxyArgs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let levels = self.log_levels;
        let mut seq = serializer.serialize_seq(Some(if self.concurrency.is_some() { 9 } else { 7 }))?;
        seq.serialize_element("proxy")?;
        seq.serialize_element(self.role.as_str())?;
        seq.serialize_element("--domain")?;
        seq.serialize_element(self.domain)?;
        seq.serialize_element(&format_args!("--proxyLogLevel={}", levels.proxy))?;
        seq.serialize_element(&format_args!("--proxyComponentLogLevel={}", levels.components))?;
        seq.serialize_element(&format_args!("--log_output_level={}", levels.agent))?;
        if let Some(workers) = self.concurrency {
            seq.serialize_element("--concurrency")?;
            seq.serialize_element(&format_args!("{workers}"))?;
        }
        seq.end()
    }
}

/// A container's `resources`, written from the resolved values with no intermediate map.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Requirements<'a>(pub &'a ProxyResources);

/// The resources in the order their names sort, as a JSON object keeps them.
const RESOURCES_BY_NAME: [Resource; 3] = [Resource::Cpu, Resource::EphemeralStorage, Resource::Memory];

impl Requirements<'_> {
    fn has(&self, side: Side) -> bool {
        Resource::ALL
            .into_iter()
            .any(|resource| self.0.value(FieldKey::new(resource, side)).is_some())
    }
}

/// One side (`limits` or `requests`) of [`Requirements`].
struct SideValues<'a>(&'a ProxyResources, Side);

impl Serialize for SideValues<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for resource in RESOURCES_BY_NAME {
            if let Some(value) = self.0.value(FieldKey::new(resource, self.1)) {
                map.serialize_entry(resource.name(), &*value.text())?;
            }
        }
        map.end()
    }
}

impl Serialize for Requirements<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, side) in [("limits", Side::Limit), ("requests", Side::Request)] {
            if self.has(side) {
                map.serialize_entry(key, &SideValues(self.0, side))?;
            }
        }
        map.end()
    }
}

/// The proxy's mounts: the template's, then the user's that clash with none of them.
#[derive(Debug, Clone)]
pub(crate) struct Mounts<'a> {
    /// The template's, serialized.
    pub compiled: &'a [Box<RawValue>],
    /// A mount of this pod's written right after the template's mount at that index (the
    /// custom bootstrap's, after `istio-data`).
    pub inserted: Option<(usize, Value)>,
    /// The user's (`sidecar.istio.io/userVolumeMount`).
    pub user: Vec<&'a Value>,
}

impl Serialize for Mounts<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let count = self.compiled.len() + usize::from(self.inserted.is_some()) + self.user.len();
        let mut seq = serializer.serialize_seq(Some(count))?;
        for (index, mount) in self.compiled.iter().enumerate() {
            seq.serialize_element(mount)?;
            if let Some((_, inserted)) = self.inserted.as_ref().filter(|(at, _)| *at == index) {
                seq.serialize_element(inserted)?;
            }
        }
        for mount in &self.user {
            seq.serialize_element(mount)?;
        }
        seq.end()
    }
}

/// The `istio-proxy` container.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProxyContainer<'a> {
    pub args: ProxyArgs<'a>,
    pub env: Vec<EnvVar<'a>>,
    pub image: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Fragment<'a>>,
    pub name: &'static str,
    pub ports: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize_policy: Option<ProxyResizePolicy>,
    pub resources: Requirements<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<&'static str>,
    pub security_context: Fragment<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<&'a RawValue>,
    pub volume_mounts: Mounts<'a>,
}

/// The init container (`istio-init`, or `istio-validation` under Istio CNI).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InitContainer<'a> {
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar<'a>>,
    pub image: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<&'a str>,
    pub name: &'static str,
    pub resources: Requirements<'a>,
    pub security_context: Fragment<'a>,
}

/// A container to add: typed, or a `Value` once a user's override was merged into it.
#[derive(Debug, Clone)]
pub(crate) enum SidecarContainer<'a> {
    /// The proxy as rendered.
    Proxy(Box<ProxyContainer<'a>>),
    /// The init container as rendered.
    Init(Box<InitContainer<'a>>),
    /// Either, with the user's own fields laid over it.
    Merged(Value),
}

impl Serialize for SidecarContainer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SidecarContainer::Proxy(proxy) => proxy.serialize(serializer),
            SidecarContainer::Init(init) => init.serialize(serializer),
            SidecarContainer::Merged(value) => value.serialize(serializer),
        }
    }
}

impl SidecarContainer<'_> {
    /// The container as a JSON value, to merge a user's override into.
    pub(crate) fn into_value(self) -> Value {
        match self {
            SidecarContainer::Merged(value) => value,
            typed => serde_json::to_value(&typed).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantity::{Quantity, ResourceKind};
    use serde_json::json;

    #[test]
    fn env_vars_leave_empty_values_out() {
        let vars = [EnvVar::literal("A", "1"), EnvVar::literal("B", "")];
        assert_eq!(
            serde_json::to_value(vars).unwrap(),
            json!([{"name": "A", "value": "1"}, {"name": "B"}])
        );
    }

    #[test]
    fn requirements_serialize_as_the_api_type() {
        let mut resources = ProxyResources::unset();
        for (resource, side, value) in [
            (Resource::Memory, Side::Request, "128Mi"),
            (Resource::Cpu, Side::Request, "100m"),
            (Resource::EphemeralStorage, Side::Limit, "1Gi"),
        ] {
            let kind = if resource == Resource::Cpu {
                ResourceKind::Cpu
            } else {
                ResourceKind::Memory
            };
            let quantity = Quantity::parse(value, kind).unwrap();
            resources.adjust(FieldKey::new(resource, side), quantity, "test".into());
        }
        let typed = serde_json::to_string(&Requirements(&resources)).unwrap();
        let api = serde_json::to_string(&serde_json::to_value(resources.to_requirements()).unwrap()).unwrap();
        assert_eq!(typed, api);
        assert_eq!(
            serde_json::to_string(&Requirements(&ProxyResources::unset())).unwrap(),
            "{}"
        );
    }

    #[test]
    fn args_name_the_concurrency_only_when_chosen() {
        let levels = LogLevels {
            proxy: "warning".into(),
            components: "misc:error".into(),
            agent: "default:info".into(),
        };
        let mut args = ProxyArgs {
            role: ProxyRole::Sidecar,
            domain: "$(POD_NAMESPACE).svc.cluster.local",
            log_levels: &levels,
            concurrency: None,
        };
        let expected = json!([
            "proxy",
            "sidecar",
            "--domain",
            "$(POD_NAMESPACE).svc.cluster.local",
            "--proxyLogLevel=warning",
            "--proxyComponentLogLevel=misc:error",
            "--log_output_level=default:info"
        ]);
        assert_eq!(serde_json::to_value(&args).unwrap(), expected);
        args.concurrency = Some(2);
        let written = serde_json::to_value(&args).unwrap();
        assert_eq!(written[7], "--concurrency");
        assert_eq!(written[8], "2");
        args.role = ProxyRole::Router;
        assert_eq!(serde_json::to_value(&args).unwrap()[1], "router");
    }
}
