//! Rewriting app probes through the agent, as istiod does.
//!
//! With mutual TLS the kubelet cannot reach an app's HTTP or TCP probe port through the
//! proxy. Each `httpGet`, `tcpSocket` or `grpc` readiness, liveness and startup probe of
//! an app container is pointed at the agent's status port as
//! `/app-health/<container>/{readyz,livez,startupz}`, and the original goes into the
//! proxy's `ISTIO_KUBE_APP_PROBERS` environment variable, named ports resolved to numbers.

use std::fmt;

use crate::json_text::JsonText;
use crate::json_write::{JsonObject, WriteJson, write_json_string_of};
use crate::patch::sorted_last_wins;
use k8s_openapi::api::core::v1::{
    Container, GRPCAction, HTTPGetAction, HTTPHeader, LifecycleHandler, Pod, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::decision::parse_go_bool;

/// Annotation turning probe rewriting on or off for one pod.
pub use crate::annotations::REWRITE_PROBES;

/// One probe to rewrite.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRewrite<'a> {
    /// `containers`, or `initContainers` for a native sidecar of the app.
    pub list: &'static str,
    /// Index in that list.
    pub container: usize,
    /// Path of the probe or hook in the container, e.g. `["readinessProbe"]` or
    /// `["lifecycle", "preStop"]`.
    pub probe: &'static [&'static str],
    /// The handler being replaced: `httpGet`, `tcpSocket` or `grpc`.
    pub handler: &'static str,
    /// The new `httpGet`.
    pub http_get: AgentHttpGet<'a>,
}

/// `/app-health/<container>/<probe>` or `/app-lifecycle/<container>/<hook>`: the agent's path
/// for one probe or hook, written from its parts (never built as a `String`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentPath<'a> {
    /// `app-health` or `app-lifecycle`.
    prefix: &'static str,
    /// The app container's name.
    container: &'a str,
    /// `readyz`, `livez`, `startupz`, `poststartz` or `prestopz`.
    suffix: &'static str,
}

impl AgentPath<'_> {
    /// The path's bytes, in order.
    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        [
            b"/",
            self.prefix.as_bytes(),
            b"/",
            self.container.as_bytes(),
            b"/",
            self.suffix.as_bytes(),
        ]
        .into_iter()
        .flatten()
        .copied()
    }
}

impl Ord for AgentPath<'_> {
    /// The order of the paths as strings.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes().cmp(other.bytes())
    }
}

impl PartialOrd for AgentPath<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for AgentPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/{}/{}", self.prefix, self.container, self.suffix)
    }
}

impl WriteJson for AgentPath<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_string_of(out, &["/", self.prefix, "/", self.container, "/", self.suffix]);
    }
}

impl Serialize for AgentPath<'_> {
    /// Serialized as a string assembled on the stack: a formatted key costs a serializer
    /// far more. A path longer than any valid container name allows is formatted instead.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0u8; 128];
        let mut len = 0;
        for part in ["/", self.prefix, "/", self.container, "/", self.suffix] {
            let Some(slot) = buffer.get_mut(len..len + part.len()) else {
                return serializer.collect_str(self);
            };
            slot.copy_from_slice(part.as_bytes());
            len += part.len();
        }
        match std::str::from_utf8(&buffer[..len]) {
            Ok(path) => serializer.serialize_str(path),
            Err(_) => serializer.collect_str(self),
        }
    }
}

/// The `httpGet` that points a probe at the agent (fields in name order, as the API server
/// writes them).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentHttpGet<'a> {
    /// The agent's path for the probe.
    pub path: AgentPath<'a>,
    /// The agent's status port.
    pub port: u16,
    /// `HTTP`, when the original set a scheme.
    pub scheme: Option<&'a str>,
}

impl WriteJson for AgentHttpGet<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut object = JsonObject::new(out);
        object.item("path", &self.path);
        object.number("port", self.port);
        if let Some(scheme) = self.scheme {
            object.string("scheme", scheme);
        }
        object.end();
    }
}

/// A probe's original handler as the agent reads it from `ISTIO_KUBE_APP_PROBERS`, named
/// ports resolved (fields in name order, as istiod writes them).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
enum OriginalHandler<'a> {
    HttpGet {
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<&'a str>,
        #[serde(rename = "httpHeaders", skip_serializing_if = "Option::is_none")]
        http_headers: Option<&'a [HTTPHeader]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<&'a str>,
        port: i32,
        #[serde(skip_serializing_if = "Option::is_none")]
        scheme: Option<&'a str>,
    },
    TcpSocket {
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<&'a str>,
        port: i32,
    },
    Grpc {
        port: i32,
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<&'a str>,
    },
}

impl OriginalHandler<'_> {
    /// The handler's field name in a probe.
    fn name(&self) -> &'static str {
        match self {
            OriginalHandler::HttpGet { .. } => "httpGet",
            OriginalHandler::TcpSocket { .. } => "tcpSocket",
            OriginalHandler::Grpc { .. } => "grpc",
        }
    }

    /// Whether the original sets a scheme (only an `httpGet` can), so the agent's gets one.
    fn sets_scheme(&self) -> bool {
        matches!(self, OriginalHandler::HttpGet { scheme: Some(_), .. })
    }
}

/// One entry of `ISTIO_KUBE_APP_PROBERS`: the handler under its name, then the timeout.
struct AppProber<'a> {
    handler: OriginalHandler<'a>,
    timeout_seconds: Option<i32>,
}

impl Serialize for AppProber<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Every handler's name sorts before `timeoutSeconds`, so the entry is in name order.
        let mut map = serializer.serialize_map(Some(1 + usize::from(self.timeout_seconds.is_some())))?;
        map.serialize_entry(self.handler.name(), &self.handler)?;
        if let Some(timeout) = self.timeout_seconds {
            map.serialize_entry("timeoutSeconds", &timeout)?;
        }
        map.end()
    }
}

/// The rewrites and the `ISTIO_KUBE_APP_PROBERS` value, when any probe is rewritten.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProbePlan<'a> {
    /// Probes to point at the agent.
    pub rewrites: Vec<ProbeRewrite<'a>>,
    /// JSON for `ISTIO_KUBE_APP_PROBERS`.
    pub app_probers: Option<JsonText>,
}

/// Whether rewriting is on for this pod: the annotation when it is a Go boolean (as istiod
/// reads it: `off` or `no` keep the default), else the config.
pub fn rewrite_enabled(pod: &Pod, default: bool) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(REWRITE_PROBES))
        .and_then(|value| parse_go_bool(value))
        .unwrap_or(default)
}

/// Plans the rewrites for every app container and app native sidecar; nothing when
/// `status_port` is 0. Indices are those of the original pod, so the operations must come
/// before any that insert containers.
pub fn plan_probe_rewrites(pod: &Pod, status_port: u16) -> ProbePlan<'_> {
    let Some(spec) = pod.spec.as_ref().filter(|_| status_port != 0) else {
        return ProbePlan::default();
    };
    let mut rewrites = Vec::new();
    let mut probers = Vec::new();
    let app_sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, c)| c.restart_policy.as_deref() == Some("Always"))
        .map(|(index, c)| ("initContainers", index, c));
    let containers = spec
        .containers
        .iter()
        .enumerate()
        .map(|(index, c)| ("containers", index, c));
    let app = |(_, _, c): &(&'static str, usize, &Container)| !super::decision::is_injected_container(&c.name);
    for (list, index, container) in containers.chain(app_sidecars).filter(app) {
        for (field, prefix, suffix, handlers) in container_handlers(container) {
            let Some(probe) = handlers else { continue };
            let Some(original) = original_handler(&probe, container) else {
                continue;
            };
            let handler = original.name();
            let path = AgentPath {
                prefix,
                container: &container.name,
                suffix,
            };
            let http_get = AgentHttpGet {
                path,
                port: status_port,
                scheme: original.sets_scheme().then_some("HTTP"),
            };
            let prober = AppProber {
                handler: original,
                timeout_seconds: probe.timeout_seconds.filter(|t| *t > 0),
            };
            if rewrites.is_empty() {
                // Room for two probes a container (liveness and readiness, the usual pair)
                // at once, once there is one.
                let room = 2 * spec.containers.len();
                rewrites.reserve(room);
                probers.reserve(room);
            }
            probers.push((path, prober));
            rewrites.push(ProbeRewrite {
                list,
                container: index,
                probe: field,
                handler,
                http_get,
            });
        }
    }
    let app_probers = (!probers.is_empty()).then(|| JsonText::of(&AppProbers(sorted_last_wins(probers))));
    ProbePlan { rewrites, app_probers }
}

/// `ISTIO_KUBE_APP_PROBERS`: each prober under its path, in path order.
struct AppProbers<'a>(Vec<(AgentPath<'a>, AppProber<'a>)>);

impl Serialize for AppProbers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (path, prober) in &self.0 {
            map.serialize_entry(path, prober)?;
        }
        map.end()
    }
}

/// A container's probes and hooks: where each sits, the agent path it gets, and its handlers.
type ContainerHandler<'a> = (
    &'static [&'static str],
    &'static str,
    &'static str,
    Option<Handlers<'a>>,
);

fn container_handlers(container: &Container) -> [ContainerHandler<'_>; 5] {
    let lifecycle = container.lifecycle.as_ref();
    [
        (
            &["readinessProbe"][..],
            "app-health",
            "readyz",
            container.readiness_probe.as_ref().map(Handlers::of_probe),
        ),
        (
            &["livenessProbe"][..],
            "app-health",
            "livez",
            container.liveness_probe.as_ref().map(Handlers::of_probe),
        ),
        (
            &["startupProbe"][..],
            "app-health",
            "startupz",
            container.startup_probe.as_ref().map(Handlers::of_probe),
        ),
        (
            &["lifecycle", "postStart"][..],
            "app-lifecycle",
            "poststartz",
            lifecycle.and_then(|l| l.post_start.as_ref()).map(Handlers::of_hook),
        ),
        (
            &["lifecycle", "preStop"][..],
            "app-lifecycle",
            "prestopz",
            lifecycle.and_then(|l| l.pre_stop.as_ref()).map(Handlers::of_hook),
        ),
    ]
}

/// The network handlers of a probe or lifecycle hook, which are the ones rewritten.
struct Handlers<'a> {
    http_get: Option<&'a HTTPGetAction>,
    tcp_socket: Option<&'a TCPSocketAction>,
    grpc: Option<&'a GRPCAction>,
    timeout_seconds: Option<i32>,
}

impl<'a> Handlers<'a> {
    fn of_probe(probe: &'a Probe) -> Self {
        Handlers {
            http_get: probe.http_get.as_ref(),
            tcp_socket: probe.tcp_socket.as_ref(),
            grpc: probe.grpc.as_ref(),
            timeout_seconds: probe.timeout_seconds,
        }
    }

    fn of_hook(hook: &'a LifecycleHandler) -> Self {
        Handlers {
            http_get: hook.http_get.as_ref(),
            tcp_socket: hook.tcp_socket.as_ref(),
            grpc: None,
            timeout_seconds: None,
        }
    }
}

/// The handler's original form for the agent.
fn original_handler<'a>(probe: &Handlers<'a>, container: &'a Container) -> Option<OriginalHandler<'a>> {
    if let Some(http) = probe.http_get {
        return Some(OriginalHandler::HttpGet {
            host: http.host.as_deref(),
            http_headers: http.http_headers.as_deref(),
            path: http.path.as_deref(),
            port: resolve_port(&http.port, container)?,
            scheme: http.scheme.as_deref(),
        });
    }
    if let Some(tcp) = probe.tcp_socket {
        return Some(OriginalHandler::TcpSocket {
            host: tcp.host.as_deref(),
            port: resolve_port(&tcp.port, container)?,
        });
    }
    probe.grpc.map(|grpc| OriginalHandler::Grpc {
        port: grpc.port,
        service: grpc.service.as_deref(),
    })
}

/// A port number, or a named port looked up in the container's ports.
fn resolve_port(port: &IntOrString, container: &Container) -> Option<i32> {
    match port {
        IntOrString::Int(number) => Some(*number),
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(number) => Some(number),
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn pod(containers: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})).unwrap()
    }

    #[test]
    fn rewrites_http_tcp_and_grpc_probes_like_istio() {
        let pod = pod(json!([
            {"name": "hello", "ports": [{"name": "http", "containerPort": 80}],
             "livenessProbe": {"httpGet": {"port": "http"}},
             "readinessProbe": {"httpGet": {"port": 3333, "scheme": "HTTPS"}, "timeoutSeconds": 2}},
            {"name": "world", "livenessProbe": {"tcpSocket": {"port": 90}},
             "startupProbe": {"grpc": {"port": 9000}},
             "readinessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}}},
        ]));
        let plan = plan_probe_rewrites(&pod, 15020);
        assert_eq!(plan.rewrites.len(), 4);
        assert_eq!(plan.rewrites[0].probe, ["readinessProbe"]);
        assert_eq!(
            crate::container::written(&plan.rewrites[0].http_get),
            json!({"path": "/app-health/hello/readyz", "port": 15020, "scheme": "HTTP"})
        );
        assert_eq!(plan.rewrites[2].handler, "tcpSocket");
        assert_eq!(
            plan.app_probers.unwrap().to_json(),
            r#"{"/app-health/hello/livez":{"httpGet":{"port":80}},"/app-health/hello/readyz":{"httpGet":{"port":3333,"scheme":"HTTPS"},"timeoutSeconds":2},"/app-health/world/livez":{"tcpSocket":{"port":90}},"/app-health/world/startupz":{"grpc":{"port":9000}}}"#
        );
    }

    #[test]
    fn a_container_name_longer_than_the_stack_path_is_still_written_whole() {
        let name = "n".repeat(200);
        let pod = pod(json!([{"name": name, "readinessProbe": {"tcpSocket": {"port": 80}}}]));
        let plan = plan_probe_rewrites(&pod, 15020);
        let path = format!("/app-health/{name}/readyz");
        let probers: Value = serde_json::from_str(&plan.app_probers.unwrap().to_json()).unwrap();
        assert_eq!(probers, json!({path.clone(): {"tcpSocket": {"port": 80}}}));
        assert_eq!(crate::container::written(&plan.rewrites[0].http_get)["path"], path);
    }

    #[test]
    fn no_status_port_or_unknown_named_port_means_no_rewrite() {
        let probed = pod(json!([{"name": "a", "readinessProbe": {"httpGet": {"port": 8080}}}]));
        assert_eq!(plan_probe_rewrites(&probed, 0), ProbePlan::default());
        let unknown = pod(json!([{"name": "a", "readinessProbe": {"httpGet": {"port": "missing"}}}]));
        assert!(plan_probe_rewrites(&unknown, 15020).rewrites.is_empty());
    }
}
