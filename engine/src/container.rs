//! The sidecar's containers as typed values that serialize straight into the patch.
//!
//! What is the same for every pod under one config (the port, the probes, the mounts, the
//! downward-API variables, the usual security contexts) is serialized once by
//! [`crate::template`] and written as it is; everything else borrows from the plan and the
//! config. Each type writes its own JSON into the patch ([`WriteJson`]), with no serializer in
//! between; fields are written in name order, so a container reads exactly as the same
//! container built as a `serde_json::Value` would.

use std::borrow::Cow;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::fields::{FieldKey, Resource, Side};
use crate::json_text::JsonText;
use crate::json_write::{JsonObject, WriteJson, write_array, write_json_string, write_json_string_of};
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

impl WriteJson for Fragment<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Fragment::Compiled(raw) => raw.write_json(out),
            Fragment::Built(value) => value.write_json(out),
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
    /// `name` set to a JSON document, escaped already.
    Json(&'static str, &'a JsonText),
}

impl<'a> EnvVar<'a> {
    /// A literal variable.
    pub(crate) fn literal(name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) -> Self {
        EnvVar::Literal(name.into(), value.into())
    }

    /// The variable's name.
    pub(crate) fn name(&self) -> &str {
        match self {
            EnvVar::Compiled(name, _) | EnvVar::Json(name, _) => name,
            EnvVar::Literal(name, _) => name,
        }
    }
}

impl WriteJson for EnvVar<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            EnvVar::Compiled(_, raw) => raw.write_json(out),
            EnvVar::Literal(name, value) => {
                let mut object = JsonObject::new(out);
                object.string("name", name);
                if !value.is_empty() {
                    object.string("value", value);
                }
                object.end();
            }
            EnvVar::Json(name, json) => {
                let mut object = JsonObject::new(out);
                object.string("name", name);
                object.item("value", *json);
                object.end();
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
    pub log_levels: &'a LogLevels<'a>,
    /// Envoy worker threads, unless the agent chooses.
    pub concurrency: Option<i64>,
}

impl WriteJson for ProxyArgs<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let levels = self.log_levels;
        out.extend_from_slice(b"[\"proxy\",");
        write_json_string(out, self.role.as_str());
        out.extend_from_slice(b",\"--domain\",");
        write_json_string(out, self.domain);
        out.push(b',');
        write_json_string_of(out, &["--proxyLogLevel=", levels.proxy]);
        out.push(b',');
        write_json_string_of(out, &["--proxyComponentLogLevel=", levels.components]);
        out.push(b',');
        write_json_string_of(out, &["--log_output_level=", levels.agent]);
        if let Some(workers) = self.concurrency {
            out.extend_from_slice(b",\"--concurrency\",");
            write_json_string(out, itoa::Buffer::new().format(workers));
        }
        out.push(b']');
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

impl WriteJson for SideValues<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut object = JsonObject::new(out);
        for resource in RESOURCES_BY_NAME {
            if let Some(value) = self.0.value(FieldKey::new(resource, self.1)) {
                object.string(resource.name(), &value.text());
            }
        }
        object.end();
    }
}

impl WriteJson for Requirements<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut object = JsonObject::new(out);
        for (key, side) in [("limits", Side::Limit), ("requests", Side::Request)] {
            if self.has(side) {
                object.item(key, &SideValues(self.0, side));
            }
        }
        object.end();
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

impl WriteJson for Mounts<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let inserted = self.inserted.as_ref();
        let mounts = self.compiled.iter().enumerate().flat_map(|(index, mount)| {
            let after = inserted
                .filter(|(at, _)| *at == index)
                .map(|(_, value)| value as &dyn WriteJson);
            std::iter::once(mount as &dyn WriteJson).chain(after)
        });
        out.push(b'[');
        let user = self.user.iter().map(|mount| mount as &dyn WriteJson);
        for (index, mount) in mounts.chain(user).enumerate() {
            if index > 0 {
                out.push(b',');
            }
            mount.write_json(out);
        }
        out.push(b']');
    }
}

impl WriteJson for ProxyResizePolicy {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (index, (resource, restart)) in [("cpu", self.cpu), ("memory", self.memory)].into_iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            let mut object = JsonObject::new(out);
            object.string("resourceName", resource);
            object.string("restartPolicy", restart.as_str());
            object.end();
        }
        out.push(b']');
    }
}

/// The proxy's readiness probe: `/healthz/ready` on the agent's port, with the timings of
/// the `readiness.status.sidecar.istio.io/*` annotations or the config (fields in name
/// order, as istiod's template writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadinessProbe {
    /// `failureThreshold`.
    pub failure_threshold: u32,
    /// `initialDelaySeconds`, written only when above 0.
    pub initial_delay_seconds: u32,
    /// `periodSeconds`.
    pub period_seconds: u32,
}

impl ReadinessProbe {
    /// The agent's port the probe asks, whatever the status port (as istiod's template).
    const PORT: u16 = 15021;
    /// `timeoutSeconds`, fixed in istiod's template.
    const TIMEOUT_SECONDS: u32 = 3;
}

impl WriteJson for ReadinessProbe {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut object = JsonObject::new(out);
        object.number("failureThreshold", self.failure_threshold);
        object.key("httpGet");
        let mut http_get = JsonObject::new(object.out());
        http_get.string("path", "/healthz/ready");
        http_get.number("port", Self::PORT);
        http_get.end();
        if self.initial_delay_seconds > 0 {
            object.number("initialDelaySeconds", self.initial_delay_seconds);
        }
        object.number("periodSeconds", self.period_seconds);
        object.number("timeoutSeconds", Self::TIMEOUT_SECONDS);
        object.end();
    }
}

/// The `istio-proxy` container.
#[derive(Debug, Clone)]
pub(crate) struct ProxyContainer<'a> {
    pub args: ProxyArgs<'a>,
    pub env: Vec<EnvVar<'a>>,
    pub image: &'a str,
    pub image_pull_policy: Option<&'a str>,
    pub lifecycle: Option<Fragment<'a>>,
    pub name: &'static str,
    pub ports: &'a RawValue,
    pub readiness_probe: Option<&'a ReadinessProbe>,
    pub resize_policy: Option<ProxyResizePolicy>,
    pub resources: Requirements<'a>,
    pub restart_policy: Option<&'static str>,
    pub security_context: Fragment<'a>,
    pub startup_probe: Option<&'a RawValue>,
    pub volume_mounts: Mounts<'a>,
}

impl WriteJson for ProxyContainer<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut object = JsonObject::new(out);
        object.item("args", &self.args);
        object.key("env");
        write_array(object.out(), &self.env);
        object.string("image", self.image);
        if let Some(policy) = self.image_pull_policy {
            object.string("imagePullPolicy", policy);
        }
        if let Some(lifecycle) = &self.lifecycle {
            object.item("lifecycle", lifecycle);
        }
        object.string("name", self.name);
        object.item("ports", self.ports);
        if let Some(probe) = self.readiness_probe {
            object.item("readinessProbe", probe);
        }
        if let Some(policy) = &self.resize_policy {
            object.item("resizePolicy", policy);
        }
        object.item("resources", &self.resources);
        if let Some(policy) = self.restart_policy {
            object.string("restartPolicy", policy);
        }
        object.item("securityContext", &self.security_context);
        if let Some(probe) = self.startup_probe {
            object.item("startupProbe", probe);
        }
        object.item("volumeMounts", &self.volume_mounts);
        object.end();
    }
}

/// The init container (`istio-init`, or `istio-validation` under Istio CNI).
#[derive(Debug, Clone)]
pub(crate) struct InitContainer<'a> {
    pub args: Vec<Cow<'a, str>>,
    pub env: Vec<EnvVar<'a>>,
    pub image: &'a str,
    pub image_pull_policy: Option<&'a str>,
    pub name: &'static str,
    pub resources: Requirements<'a>,
    pub security_context: Fragment<'a>,
}

impl WriteJson for InitContainer<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut object = JsonObject::new(out);
        object.key("args");
        write_array(object.out(), &self.args);
        if !self.env.is_empty() {
            object.key("env");
            write_array(object.out(), &self.env);
        }
        object.string("image", self.image);
        if let Some(policy) = self.image_pull_policy {
            object.string("imagePullPolicy", policy);
        }
        object.string("name", self.name);
        object.item("resources", &self.resources);
        object.item("securityContext", &self.security_context);
        object.end();
    }
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

impl WriteJson for SidecarContainer<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            SidecarContainer::Proxy(proxy) => proxy.write_json(out),
            SidecarContainer::Init(init) => init.write_json(out),
            SidecarContainer::Merged(value) => value.write_json(out),
        }
    }
}

impl SidecarContainer<'_> {
    /// The container as a JSON value, to merge a user's override into.
    pub(crate) fn into_value(self) -> Value {
        match self {
            SidecarContainer::Merged(value) => value,
            typed => written(&typed),
        }
    }
}

/// What `value` writes, read back as a `serde_json::Value`.
pub(crate) fn written(value: &impl WriteJson) -> Value {
    let mut out = Vec::new();
    value.write_json(&mut out);
    serde_json::from_slice(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_probe_is_written_as_istiods_template_writes_it() {
        let probe = ReadinessProbe {
            failure_threshold: 4,
            initial_delay_seconds: 0,
            period_seconds: 15,
        };
        assert_eq!(
            written(&probe),
            serde_json::json!({"failureThreshold": 4, "httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 15, "timeoutSeconds": 3})
        );
        let delayed = ReadinessProbe {
            initial_delay_seconds: 2,
            ..probe
        };
        let mut out = Vec::new();
        delayed.write_json(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"failureThreshold":4,"httpGet":{"path":"/healthz/ready","port":15021},"initialDelaySeconds":2,"periodSeconds":15,"timeoutSeconds":3}"#
        );
    }
    use crate::quantity::{Quantity, ResourceKind};
    use serde_json::json;

    #[test]
    fn env_vars_leave_empty_values_out() {
        let vars = [EnvVar::literal("A", "1"), EnvVar::literal("B", "")];
        assert_eq!(
            written(&vars.as_slice()),
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
        let text = |value: &dyn WriteJson| {
            let mut out = Vec::new();
            value.write_json(&mut out);
            String::from_utf8(out).unwrap()
        };
        let api = serde_json::to_string(&serde_json::to_value(resources.to_requirements()).unwrap()).unwrap();
        assert_eq!(text(&Requirements(&resources)), api);
        assert_eq!(text(&Requirements(&ProxyResources::unset())), "{}");
    }

    #[test]
    fn args_name_the_concurrency_only_when_chosen() {
        let levels = LogLevels {
            proxy: "warning",
            components: "misc:error",
            agent: "default:info",
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
        assert_eq!(written(&args), expected);
        args.concurrency = Some(2);
        let with_concurrency = written(&args);
        assert_eq!(with_concurrency[7], "--concurrency");
        assert_eq!(with_concurrency[8], "2");
        args.role = ProxyRole::Router;
        assert_eq!(written(&args)[1], "router");
    }
}
