//! Scenario 40: the Helm chart and the kustomize manifests agree on everything both express.
//!
//! Both are rendered with real tools and compared object by object, field by field:
//! - chart defaults (`namespace.create=true`) against the base plus `overlays/cert-manager`;
//! - chart `certificates.source=files`, given the files that `sidecar-injector certs` wrote,
//!   against the base plus `overlays/certs` built from the same files.
//!
//! Every field kustomize renders must be in the chart's object with the same value, and every
//! object on one side must be on the other. The chart may add only what [`chart_only`] lists,
//! each with its reason. Config files are compared as parsed YAML, so the chart's `config`
//! values must equal deploy/config.yaml key for key.

use std::collections::BTreeMap;

use serde_json::Value;
use sidecar_injector::manifest::read_documents;

use super::manifests::{describe, kind, make_certs_for};
use crate::check::{Context, Outcome, ensure};
use crate::deploy;
use crate::harness::Harness;
use crate::helm::{Helm, Values};
use crate::kustomize::Kustomize;

/// What the chart adds that kustomize does not express, and why: (label or annotation key,
/// reason), allowed only inside a `labels` or `annotations` map. Anything else on one side
/// only is a disagreement.
const CHART_ONLY: &[(&str, &str)] = &[
    (
        "app.kubernetes.io/instance",
        "Helm's recommended label: the release name",
    ),
    (
        "app.kubernetes.io/version",
        "Helm's recommended label: the chart's appVersion",
    ),
    ("app.kubernetes.io/managed-by", "Helm's recommended label: Helm"),
    ("helm.sh/chart", "Helm's recommended label: chart name and version"),
    (
        "checksum/config",
        "pod template annotation that rolls the pods on a config change, where kustomize hashes the ConfigMap name",
    ),
];

/// The name the chart gives the ConfigMap; kustomize's generator adds a content hash to it.
const CONFIG_MAP: &str = "sidecar-injector-config";

pub async fn run(harness: &Harness) -> Outcome {
    let helm = Helm::find(harness.workdir())?;
    let kustomize = Kustomize::find()?;
    let namespace = &harness.injector_namespace;
    let deploy_copy = deploy::copy_to(&harness.workdir().join("chart-agreement"))?;
    let out = deploy_copy.join("overlays/certs/out");
    make_certs_for(&out, "sidecar-injector", namespace)?;
    let base = kustomize.build(&deploy_copy).context("base")?;
    let mut compared = 0;
    for (overlay, chart_values) in [
        (
            "overlays/cert-manager",
            Values {
                set: vec![("namespace.create", "true")],
                ..Values::default()
            },
        ),
        (
            "overlays/certs",
            Values {
                set: vec![("namespace.create", "true"), ("certificates.source", "files")],
                set_files: vec![
                    ("certificates.files.caCrt", out.join("ca.crt")),
                    ("certificates.files.tlsCrt", out.join("tls.crt")),
                    ("certificates.files.tlsKey", out.join("tls.key")),
                ],
                ..Values::default()
            },
        ),
    ] {
        let mut kustomized = base.clone();
        kustomized.extend(kustomize.build(&deploy_copy.join(overlay)).context(overlay)?);
        let chart = helm
            .template(namespace, &chart_values)
            .context(format!("chart for {overlay}"))?;
        compared += agree(&kustomized, &chart).context(format!("chart vs base + {overlay}"))?;
    }
    let chart_only: Vec<&str> = CHART_ONLY.iter().map(|(key, _)| *key).collect();
    Ok(format!(
        "chart = base + cert-manager, chart(files) = base + certs: {compared} kustomize fields equal in the chart; \
         chart-only: {}",
        chart_only.join(", ")
    ))
}

/// Compares the two renderings object by object; the number of leaf fields compared.
fn agree(kustomized: &[Value], chart: &[Value]) -> Result<usize, String> {
    let kustomized = by_identity(kustomized.iter().map(normalize_kustomize));
    let chart = by_identity(chart.iter().cloned().map(normalize));
    let only_kustomize: Vec<&String> = kustomized.keys().filter(|key| !chart.contains_key(*key)).collect();
    let only_chart: Vec<&String> = chart.keys().filter(|key| !kustomized.contains_key(*key)).collect();
    ensure!(
        only_kustomize.is_empty() && only_chart.is_empty(),
        "objects only in kustomize: {only_kustomize:?}; only in the chart: {only_chart:?}"
    );
    let mut differences = Vec::new();
    let mut compared = 0;
    for (identity, expected) in &kustomized {
        compare(
            expected,
            &chart[identity],
            identity.clone(),
            &mut differences,
            &mut compared,
        );
    }
    ensure!(
        differences.is_empty(),
        "{} differences:\n  {}",
        differences.len(),
        differences.join("\n  ")
    );
    Ok(compared)
}

fn by_identity(objects: impl Iterator<Item = Value>) -> BTreeMap<String, Value> {
    objects.map(|object| (describe_in(&object), object)).collect()
}

fn describe_in(object: &Value) -> String {
    match object["metadata"]["namespace"].as_str() {
        Some(namespace) => format!("{namespace}/{}", describe(object)),
        None => describe(object),
    }
}

/// kustomize's object with the generated ConfigMap name's hash dropped, then [`normalize`].
fn normalize_kustomize(object: &Value) -> Value {
    let text = object.to_string();
    let plain = without_config_map_hash(&text);
    normalize(serde_json::from_str(&plain).unwrap_or_else(|_| object.clone()))
}

/// Replaces `sidecar-injector-config-<hash>` (kustomize's generated name) by the plain name.
fn without_config_map_hash(text: &str) -> String {
    let prefix = format!("\"{CONFIG_MAP}-");
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(&prefix) {
        result.push_str(&rest[..at]);
        let after = &rest[at + prefix.len()..];
        match after.find('"') {
            Some(end) if end > 0 && after[..end].chars().all(|c| c.is_ascii_alphanumeric()) => {
                result.push_str(&format!("\"{CONFIG_MAP}\""));
                rest = &after[end + 1..];
            }
            _ => {
                result.push_str(&prefix);
                rest = after;
            }
        }
    }
    result.push_str(rest);
    result
}

/// Parses config files and drops the whitespace kustomize folds into base64, so that equal
/// content compares equal.
fn normalize(mut object: Value) -> Value {
    if kind(&object) == "ConfigMap"
        && let Some(data) = object["data"].as_object_mut()
    {
        for value in data.values_mut() {
            if let Some(parsed) = value
                .as_str()
                .and_then(|text| read_documents(text).ok())
                .and_then(|documents| documents.into_iter().next())
            {
                *value = parsed;
            }
        }
    }
    if kind(&object) == "Secret"
        && let Some(data) = object["data"].as_object_mut()
    {
        for value in data.values_mut() {
            *value = unfold(value);
        }
    }
    if let Some(webhooks) = object["webhooks"].as_array_mut() {
        for webhook in webhooks {
            let bundle = &mut webhook["clientConfig"]["caBundle"];
            if !bundle.is_null() {
                *bundle = unfold(bundle);
            }
        }
    }
    object
}

fn unfold(value: &Value) -> Value {
    Value::String(value.as_str().unwrap_or_default().split_whitespace().collect())
}

/// Every field of `expected` (kustomize) must be in `actual` (the chart) with the same value;
/// fields of `actual` not in `expected` must be listed in [`CHART_ONLY`].
fn compare(expected: &Value, actual: &Value, path: String, differences: &mut Vec<String>, compared: &mut usize) {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                let child = format!("{path}.{key}");
                match actual.get(key) {
                    Some(other) => compare(value, other, child, differences, compared),
                    None => differences.push(format!("{child}: {value} in kustomize, absent from the chart")),
                }
            }
            let metadata_map = path.ends_with(".labels") || path.ends_with(".annotations");
            for (key, value) in actual {
                let listed = metadata_map && CHART_ONLY.iter().any(|(allowed, _)| allowed == key);
                if !expected.contains_key(key) && !listed {
                    differences.push(format!("{path}.{key}: {value} only in the chart"));
                }
            }
        }
        (Value::Array(expected), Value::Array(actual)) if expected.len() == actual.len() => {
            for (index, (value, other)) in expected.iter().zip(actual).enumerate() {
                compare(value, other, format!("{path}[{index}]"), differences, compared);
            }
        }
        _ => {
            *compared += 1;
            if !same_scalar(expected, actual) {
                differences.push(format!("{path}: kustomize {expected}, chart {actual}"));
            }
        }
    }
}

/// Equal, counting `2` and `"2"` as different but `1` and `1.0` (Helm's numbers) as the same.
fn same_scalar(expected: &Value, actual: &Value) -> bool {
    match (expected.as_f64(), actual.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => expected == actual,
    }
}
