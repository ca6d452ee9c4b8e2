//! Undoing an earlier injection, so offline `inject` can inject a workload again.
//!
//! What the `sidecar.istio.io/status` annotation lists (containers, init containers,
//! volumes, image pull secrets) is removed. Before that, what the injection changed on the
//! pod is put back from where istiod (and we) recorded it:
//!
//! - app probes rewritten to the agent, from the old proxy's `ISTIO_KUBE_APP_PROBERS`;
//! - Prometheus scrape annotations pointed at the agent, from its
//!   `ISTIO_PROMETHEUS_ANNOTATIONS`;
//! - the user's own `istio-proxy` and init containers, from `proxy.istio.io/overrides`.
//!
//! Injecting the result again then gives the same pod as the first injection.

use serde_json::Value;

use crate::decision::PROXY_CONTAINER;
use crate::overrides::OVERRIDES_ANNOTATION;
use crate::prometheus::{PATH, PORT, SCRAPE, SCRAPE_TARGETS};

use crate::annotations::STATUS as STATUS_ANNOTATION;

/// Removes a previous injection from a pod (or pod template) given as JSON, returning whether
/// there was one; a template without the status annotation is left as it is.
pub fn strip_injection(template: &mut Value) -> bool {
    let Some(status) = template
        .pointer("/metadata/annotations/sidecar.istio.io~1status")
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
    else {
        return false;
    };
    if let Some(proxy) = find_container(template, PROXY_CONTAINER).cloned() {
        restore_probes(template, &proxy);
        restore_prometheus(template, &proxy);
    }
    for list in ["containers", "initContainers", "volumes", "imagePullSecrets"] {
        remove_named(template, list, &listed(&status, list));
    }
    let overrides =
        annotation(template, OVERRIDES_ANNOTATION).and_then(|text| serde_json::from_str::<Value>(&text).ok());
    if let Some(annotations) = template
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(STATUS_ANNOTATION);
        annotations.remove(OVERRIDES_ANNOTATION);
    }
    if let Some(overrides) = overrides {
        restore_overrides(template, &overrides);
    }
    true
}

/// The names a status annotation lists under `key`.
fn listed(status: &Value, key: &str) -> Vec<String> {
    status[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|name| name.as_str().map(str::to_string))
        .collect()
}

fn remove_named(template: &mut Value, list: &str, names: &[String]) {
    if names.is_empty() {
        return;
    }
    if let Some(items) = template
        .pointer_mut(&format!("/spec/{list}"))
        .and_then(Value::as_array_mut)
    {
        items.retain(|item| {
            !item["name"]
                .as_str()
                .is_some_and(|name| names.iter().any(|n| n == name))
        });
    }
}

fn annotation(template: &Value, key: &str) -> Option<String> {
    template["metadata"]["annotations"][key].as_str().map(str::to_string)
}

fn find_container<'a>(template: &'a Value, name: &str) -> Option<&'a Value> {
    ["containers", "initContainers"]
        .into_iter()
        .filter_map(|list| template["spec"][list].as_array())
        .flatten()
        .find(|container| container["name"] == name)
}

/// The value of one of `container`'s env vars, parsed as JSON.
fn env_json(container: &Value, name: &str) -> Option<Value> {
    container["env"].as_array()?.iter().find(|env| env["name"] == name)?["value"]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
}

/// Puts the app probes and lifecycle hooks back as they were before the agent took them
/// over: `/app-health/<container>/{livez,readyz,startupz}` and
/// `/app-lifecycle/<container>/{poststartz,prestopz}`.
fn restore_probes(template: &mut Value, proxy: &Value) {
    let Some(Value::Object(probers)) = env_json(proxy, "ISTIO_KUBE_APP_PROBERS") else {
        return;
    };
    for (path, original) in probers {
        let Some((container, pointer)) = handler_location(&path) else {
            continue;
        };
        for list in ["containers", "initContainers"] {
            let Some(items) = template["spec"][list].as_array_mut() else {
                continue;
            };
            for item in items.iter_mut().filter(|item| item["name"] == container) {
                let Some(handler) = item.pointer_mut(pointer).and_then(Value::as_object_mut) else {
                    continue;
                };
                handler.remove("httpGet");
                if let Value::Object(fields) = &original {
                    handler.extend(fields.iter().map(|(key, value)| (key.clone(), value.clone())));
                }
            }
        }
    }
}

/// The container and the JSON pointer (within it) of the handler an agent path replaced.
fn handler_location(path: &str) -> Option<(&str, &'static str)> {
    let (prefix, rest) = path.trim_start_matches('/').split_once('/')?;
    let (container, kind) = rest.rsplit_once('/')?;
    let pointer = match (prefix, kind) {
        ("app-health", "livez") => "/livenessProbe",
        ("app-health", "readyz") => "/readinessProbe",
        ("app-health", "startupz") => "/startupProbe",
        ("app-lifecycle", "poststartz") => "/lifecycle/postStart",
        ("app-lifecycle", "prestopz") => "/lifecycle/preStop",
        _ => return None,
    };
    Some((container, pointer))
}

/// Puts the pod's own Prometheus scrape annotations back.
fn restore_prometheus(template: &mut Value, proxy: &Value) {
    let original = env_json(proxy, "ISTIO_PROMETHEUS_ANNOTATIONS").unwrap_or(Value::Null);
    let Some(annotations) = template
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let points_at_agent = annotations.get(PATH).is_some_and(|path| path == "/stats/prometheus");
    if !points_at_agent {
        return;
    }
    for (key, field) in [(SCRAPE, "scrape"), (PATH, "path"), (PORT, "port")] {
        match original[field].as_str() {
            Some(value) => annotations.insert(key.to_string(), Value::from(value)),
            None => annotations.remove(key),
        };
    }
    if let Some(targets) = original["targets"].as_array() {
        let joined: Vec<String> = targets
            .iter()
            .map(|target| {
                format!(
                    "{}:{}",
                    target["port"].as_str().unwrap_or_default(),
                    target["path"].as_str().unwrap_or_default()
                )
            })
            .collect();
        annotations.insert(SCRAPE_TARGETS.to_string(), Value::from(joined.join(",")));
    }
}

/// Puts the user's override containers back in the lists the annotation names.
fn restore_overrides(template: &mut Value, overrides: &Value) {
    let Some(lists) = overrides.as_object() else {
        return;
    };
    let Some(spec) = template.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for (list, containers) in lists {
        let Some(containers) = containers.as_array() else {
            continue;
        };
        let target = spec.entry(list.clone()).or_insert_with(|| Value::Array(Vec::new()));
        if let Some(items) = target.as_array_mut() {
            items.extend(containers.iter().cloned());
        }
    }
}
