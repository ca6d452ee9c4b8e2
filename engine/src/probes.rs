//! Rewriting app probes through the agent, as istiod does.
//!
//! With mutual TLS the kubelet cannot reach an app's HTTP or TCP probe port through the
//! proxy. Each `httpGet`, `tcpSocket` or `grpc` readiness, liveness and startup probe of
//! an app container is pointed at the agent's status port as
//! `/app-health/<container>/{readyz,livez,startupz}`, and the original goes into the
//! proxy's `ISTIO_KUBE_APP_PROBERS` environment variable, named ports resolved to numbers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, GRPCAction, HTTPGetAction, LifecycleHandler, Pod, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value, json};

use super::decision::parse_go_bool;

/// Annotation turning probe rewriting on or off for one pod.
pub use crate::annotations::REWRITE_PROBES;

/// One probe to rewrite.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRewrite {
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
    pub http_get: Value,
}

/// The rewrites and the `ISTIO_KUBE_APP_PROBERS` value, when any probe is rewritten.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProbePlan {
    /// Probes to point at the agent.
    pub rewrites: Vec<ProbeRewrite>,
    /// JSON for `ISTIO_KUBE_APP_PROBERS`.
    pub app_probers: Option<String>,
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
pub fn plan_probe_rewrites(pod: &Pod, status_port: u16) -> ProbePlan {
    let Some(spec) = pod.spec.as_ref().filter(|_| status_port != 0) else {
        return ProbePlan::default();
    };
    let mut rewrites = Vec::new();
    let mut probers = BTreeMap::new();
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
            let Some((handler, original, had_scheme)) = original_handler(&probe, container) else {
                continue;
            };
            let path = format!("/{prefix}/{}/{suffix}", container.name);
            let mut http_get = json!({"path": path, "port": status_port});
            if had_scheme {
                http_get["scheme"] = json!("HTTP");
            }
            let mut entry = Map::new();
            entry.insert(handler.to_string(), original);
            if let Some(timeout) = probe.timeout_seconds.filter(|t| *t > 0) {
                entry.insert("timeoutSeconds".into(), json!(timeout));
            }
            probers.insert(path, Value::Object(entry));
            rewrites.push(ProbeRewrite {
                list,
                container: index,
                probe: field,
                handler,
                http_get,
            });
        }
    }
    let app_probers = (!probers.is_empty()).then(|| serde_json::to_string(&probers).unwrap_or_default());
    ProbePlan { rewrites, app_probers }
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

/// The handler's name, its original form for the agent, and whether it set a scheme.
fn original_handler(probe: &Handlers<'_>, container: &Container) -> Option<(&'static str, Value, bool)> {
    if let Some(http) = probe.http_get {
        let mut original = Map::new();
        if let Some(path) = &http.path {
            original.insert("path".into(), json!(path));
        }
        original.insert("port".into(), resolve_port(&http.port, container)?);
        if let Some(host) = &http.host {
            original.insert("host".into(), json!(host));
        }
        if let Some(scheme) = &http.scheme {
            original.insert("scheme".into(), json!(scheme));
        }
        if let Some(headers) = &http.http_headers {
            original.insert("httpHeaders".into(), serde_json::to_value(headers).ok()?);
        }
        return Some(("httpGet", Value::Object(original), http.scheme.is_some()));
    }
    if let Some(tcp) = probe.tcp_socket {
        let mut original = Map::new();
        if let Some(host) = &tcp.host {
            original.insert("host".into(), json!(host));
        }
        original.insert("port".into(), resolve_port(&tcp.port, container)?);
        return Some(("tcpSocket", Value::Object(original), false));
    }
    if let Some(grpc) = probe.grpc {
        let mut original = Map::new();
        original.insert("port".into(), json!(grpc.port));
        if let Some(service) = &grpc.service {
            original.insert("service".into(), json!(service));
        }
        return Some(("grpc", Value::Object(original), false));
    }
    None
}

/// A port number, or a named port looked up in the container's ports.
fn resolve_port(port: &IntOrString, container: &Container) -> Option<Value> {
    match port {
        IntOrString::Int(number) => Some(json!(number)),
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(number) => Some(json!(number)),
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| json!(p.container_port)),
        },
    }
}

#[cfg(test)]
mod tests {
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
            plan.rewrites[0].http_get,
            json!({"path": "/app-health/hello/readyz", "port": 15020, "scheme": "HTTP"})
        );
        assert_eq!(plan.rewrites[2].handler, "tcpSocket");
        assert_eq!(
            plan.app_probers.unwrap(),
            r#"{"/app-health/hello/livez":{"httpGet":{"port":80}},"/app-health/hello/readyz":{"httpGet":{"port":3333,"scheme":"HTTPS"},"timeoutSeconds":2},"/app-health/world/livez":{"tcpSocket":{"port":90}},"/app-health/world/startupz":{"grpc":{"port":9000}}}"#
        );
    }

    #[test]
    fn no_status_port_or_unknown_named_port_means_no_rewrite() {
        let probed = pod(json!([{"name": "a", "readinessProbe": {"httpGet": {"port": 8080}}}]));
        assert_eq!(plan_probe_rewrites(&probed, 0), ProbePlan::default());
        let unknown = pod(json!([{"name": "a", "readinessProbe": {"httpGet": {"port": "missing"}}}]));
        assert!(plan_probe_rewrites(&unknown, 15020).rewrites.is_empty());
    }
}
