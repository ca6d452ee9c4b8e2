//! Comparing a pod as istiod injected it with the same pod as we injected it.
//!
//! Both pods come back from the same API server, from two namespaces, so everything the API
//! server adds (defaults, the service account token volume, LimitRanger) is there on both
//! sides. The normalisation is kept as small as it can be; it is the list in
//! [`NORMALISATION`], which README's "Fidelity with Istio" section repeats:
//!
//! - the fields the API server makes per object: `metadata.namespace`, `uid`,
//!   `resourceVersion`, `creationTimestamp`, `generation`, `managedFields`;
//! - the namespace's name where the injected values quote it (`ISTIO_META_OWNER`,
//!   `OTEL_RESOURCE_ATTRIBUTES`), written `<namespace>`;
//! - the random five-character suffix of the projected token volume `kube-api-access-xxxxx`;
//! - JSON held in a string (env values such as `PROXY_CONFIG` and `ISTIO_META_POD_PORTS`,
//!   the `sidecar.istio.io/status` annotation) is compared as JSON, so key order and spacing
//!   do not count.
//!
//! What is left is compared leaf by leaf. A difference is named by its path, with list items
//! named by their `name` where they have one (`spec.containers[istio-proxy].args[3]`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

/// What [`normalised`] removes or rewrites, one line each, for the scenario's note.
pub const NORMALISATION: [&str; 4] = [
    "per-object API server fields (metadata.namespace, uid, resourceVersion, creationTimestamp, generation, managedFields)",
    "the namespace's name inside values (ISTIO_META_OWNER, OTEL_RESOURCE_ATTRIBUTES) as <namespace>",
    "the random suffix of the projected token volume kube-api-access-xxxxx",
    "JSON held in strings (env values, annotations) compared as JSON",
];

/// The metadata fields the API server makes for each object.
const PER_OBJECT: [&str; 6] = [
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
];
/// The projected service account token volume's name, before its random suffix.
const TOKEN_VOLUME: &str = "kube-api-access-";

/// The pod as JSON with the normalisation applied.
pub fn normalised(pod: &Pod) -> Value {
    let mut value = serde_json::to_value(pod).unwrap_or_default();
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in PER_OBJECT {
            metadata.remove(field);
        }
    }
    normalise(&mut value, pod.metadata.namespace.as_deref().unwrap_or_default());
    value
}

fn normalise(value: &mut Value, namespace: &str) {
    match value {
        Value::Object(map) => map.values_mut().for_each(|member| normalise(member, namespace)),
        Value::Array(items) => items.iter_mut().for_each(|item| normalise(item, namespace)),
        Value::String(text) => {
            if !namespace.is_empty() && text.contains(namespace) {
                *text = text.replace(namespace, "<namespace>");
            }
            if let Some(suffix) = text.strip_prefix(TOKEN_VOLUME)
                && suffix.len() == 5
                && suffix.chars().all(|c| c.is_ascii_alphanumeric())
            {
                *text = format!("{TOKEN_VOLUME}xxxxx");
            } else if let Some(mut parsed) = json_text(text) {
                normalise(&mut parsed, namespace);
                *value = parsed;
            }
        }
        _ => {}
    }
}

/// A JSON object or array held in a string, parsed.
fn json_text(text: &str) -> Option<Value> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Each leaf path where `ours` and `istiod` differ, with both values (`None` when absent).
pub fn differences(ours: &Value, istiod: &Value) -> BTreeMap<String, (Option<Value>, Option<Value>)> {
    let mut found = BTreeMap::new();
    walk(Some(ours), Some(istiod), String::new(), &mut found);
    found
}

type Found = BTreeMap<String, (Option<Value>, Option<Value>)>;

fn walk(ours: Option<&Value>, istiod: Option<&Value>, path: String, found: &mut Found) {
    match (ours, istiod) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                walk(a.get(key), b.get(key), join(&path, key), found);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            let (a, b) = (keyed(a), keyed(b));
            let mut keys: Vec<&String> = a.iter().map(|(k, _)| k).collect();
            keys.extend(b.iter().map(|(k, _)| k).filter(|k| !a.iter().any(|(x, _)| x == *k)));
            for key in keys {
                walk(item(&a, key), item(&b, key), format!("{path}[{key}]"), found);
            }
        }
        (a, b) if a == b => {}
        (a, b) => {
            found.insert(path, (a.cloned(), b.cloned()));
        }
    }
}

fn item<'a>(list: &[(String, &'a Value)], key: &str) -> Option<&'a Value> {
    list.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// List items by `name` when every item has a distinct one, otherwise by index.
fn keyed(items: &[Value]) -> Vec<(String, &Value)> {
    let names: Vec<Option<&str>> = items
        .iter()
        .map(|item| item.get("name").and_then(Value::as_str))
        .collect();
    let distinct = names.iter().all(Option::is_some)
        && names.iter().collect::<std::collections::BTreeSet<_>>().len() == names.len();
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match names[index] {
            Some(name) if distinct => (name.to_string(), item),
            _ => (index.to_string(), item),
        })
        .collect()
}

/// A difference's path with the names of the pod's own containers, volumes and env entries
/// replaced by `*`, so the same difference on many pods counts as one kind.
pub fn kind_of(path: &str) -> String {
    const OURS_AND_ISTIOS: [&str; 4] = ["istio-proxy", "istio-init", "istio-validation", "istio-envoy"];
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..=open]);
        let Some(close) = rest[open..].find(']') else { break };
        let key = &rest[open + 1..open + close];
        let kept = OURS_AND_ISTIOS.contains(&key)
            || key.starts_with("ISTIO_")
            || key.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            || key.chars().all(|c| c.is_ascii_digit()) && out.ends_with("args[");
        out.push_str(if kept { key } else { "*" });
        rest = &rest[open + close..];
    }
    out.push_str(rest);
    out
}

/// A value for a message, short.
pub fn shown(value: &Option<Value>) -> String {
    match value {
        None => "absent".into(),
        Some(value) => {
            let text = value.to_string();
            if text.chars().count() > 160 {
                format!("{}...", text.chars().take(160).collect::<String>())
            } else {
                text
            }
        }
    }
}

/// The pod without annotations whose key starts with `prefix` (the generated pods' own
/// `sidecar-injector.io/*` annotations, which istiod has no equivalent of).
pub fn without_annotations(mut pod: Pod, prefix: &str) -> Pod {
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        annotations.retain(|key, _| !key.starts_with(prefix));
    }
    pod
}
