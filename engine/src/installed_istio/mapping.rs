//! From the istiod chart's values, injector config and mesh config to this injector's config
//! keys, reading each value where istiod's injection template (or webhook) reads it.
//!
//! Only what the ConfigMaps say is mapped; a value they leave out keeps the config file's or
//! the built-in default. Where the template prefers one document over another (the trust
//! domain, `holdApplicationUntilProxyStarts`), so does the mapping.

use serde_json::{Map, Value, json};

use super::{InstalledIstio, InstalledIstioError};
use crate::config::layers::{InstalledSetting, SettingSource};

/// Istio's published image types that a tag may already end in.
const KNOWN_IMAGE_TYPES: [&str; 2] = ["distroless", "debug"];

/// Every config key the installed Istio sets.
pub(super) fn settings(installed: &InstalledIstio) -> Result<Vec<InstalledSetting>, InstalledIstioError> {
    let mut out = Settings::default();
    if let Some(values) = &installed.values {
        from_values(values, installed.mesh.as_ref(), &mut out);
    }
    if let Some(policy) = &installed.injector {
        if let Some(text) = &policy.policy {
            let value = match text.as_str() {
                "enabled" | "disabled" => text.clone(),
                other => {
                    return Err(InstalledIstioError {
                        configmap: "istio-sidecar-injector".into(),
                        key: "config",
                        message: format!("policy has value {other:?}; accepted: enabled, disabled"),
                    });
                }
            };
            out.config("policy", json!(value), "policy");
        }
        if let Some(selectors) = &policy.always_inject_selector {
            out.config("alwaysInjectSelector", json!(selectors), "alwaysInjectSelector");
        }
        if let Some(selectors) = &policy.never_inject_selector {
            out.config("neverInjectSelector", json!(selectors), "neverInjectSelector");
        }
    }
    if let Some(mesh) = &installed.mesh {
        from_mesh(mesh, installed.values.as_ref(), &mut out);
    }
    Ok(out.0)
}

/// The settings found so far.
#[derive(Default)]
struct Settings(Vec<InstalledSetting>);

impl Settings {
    fn values(&mut self, key: &'static str, value: Value, path: &str) {
        self.push(key, value, SettingSource::IstioValues(path.into()));
    }

    fn config(&mut self, key: &'static str, value: Value, path: &str) {
        self.push(key, value, SettingSource::IstioConfig(path.into()));
    }

    fn mesh(&mut self, key: &'static str, value: Value, path: &str) {
        self.push(key, value, SettingSource::MeshConfig(path.into()));
    }

    fn push(&mut self, key: &'static str, value: Value, source: SettingSource) {
        self.0.retain(|setting| setting.key != key);
        self.0.push(InstalledSetting { key, value, source });
    }
}

/// The value at a dotted path.
fn at<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(root, |value, key| value.get(key))
}

/// A scalar as text, as Helm prints it into the template.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// A non-empty scalar at `path`, as text.
fn non_empty(root: &Value, path: &str) -> Option<String> {
    at(root, path).and_then(text).filter(|text| !text.is_empty())
}

/// A boolean at `path`, written as a boolean or as `"true"`/`"false"`.
fn flag(root: &Value, path: &str) -> Option<bool> {
    match at(root, path)? {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

/// The Helm values' mapping.
fn from_values(values: &Value, mesh: Option<&Value>, out: &mut Settings) {
    images_from_values(values, mesh, out);
    copied_strings_from_values(values, out);
    copied_numbers_and_flags_from_values(values, out);
    cni_and_identity_from_values(values, out);
    revision_and_ca_from_values(values, out);
}

/// The proxy and init images, their pull policy and secrets, and the proxy resources.
fn images_from_values(values: &Value, mesh: Option<&Value>, out: &mut Settings) {
    let image_type = mesh
        .and_then(|mesh| non_empty(mesh, "defaultConfig.image.imageType"))
        .or_else(|| non_empty(values, "global.variant"));
    for (key, path, image_type) in [
        ("proxyImage", "global.proxy.image", image_type.as_deref()),
        (
            "proxyInitImage",
            "global.proxy_init.image",
            non_empty(values, "global.variant").as_deref(),
        ),
    ] {
        if let Some(image) = image_url(values, path, image_type) {
            out.values(key, json!(image), &format!("global.hub, global.tag, {path}"));
        }
    }
    if let Some(policy) = non_empty(values, "global.imagePullPolicy") {
        out.values("imagePullPolicy", json!(policy), "global.imagePullPolicy");
    }
    if let Some(Value::Array(secrets)) = at(values, "global.imagePullSecrets") {
        let names: Vec<String> = secrets
            .iter()
            .filter_map(|secret| text(secret).or_else(|| secret.get("name").and_then(text)))
            .collect();
        out.values("imagePullSecrets", json!(names), "global.imagePullSecrets");
    }
    if let Some(resources) = at(values, "global.proxy.resources").and_then(resource_amounts) {
        out.values("resources", resources, "global.proxy.resources");
    }
}

/// The values copied as they are: strings when not empty, capture lists even when empty.
fn copied_strings_from_values(values: &Value, out: &mut Settings) {
    let strings = [
        ("proxyLogLevel", "global.proxy.logLevel"),
        ("proxyComponentLogLevel", "global.proxy.componentLogLevel"),
        ("agentLogLevel", "global.logging.level"),
        ("clusterDomain", "global.proxy.clusterDomain"),
        ("clusterId", "global.multiCluster.clusterName"),
        ("meshId", "global.meshID"),
        ("compliancePolicy", "pilot.env.COMPLIANCE_POLICY"),
    ];
    for (key, path) in strings {
        if let Some(value) = non_empty(values, path) {
            out.values(key, json!(value), path);
        }
    }
    // Written even when empty: an empty list turns that capture off, as in the template.
    let lists = [
        ("includeOutboundIPRanges", "global.proxy.includeIPRanges"),
        ("excludeOutboundIPRanges", "global.proxy.excludeIPRanges"),
        ("excludeInboundPorts", "global.proxy.excludeInboundPorts"),
        ("excludeOutboundPorts", "global.proxy.excludeOutboundPorts"),
        ("network", "global.network"),
    ];
    for (key, path) in lists {
        if let Some(value) = at(values, path).and_then(text) {
            out.values(key, json!(value), path);
        }
    }
}

/// The numbers and flags copied as they are.
fn copied_numbers_and_flags_from_values(values: &Value, out: &mut Settings) {
    let numbers = [
        ("statusPort", "global.proxy.statusPort"),
        (
            "readinessInitialDelaySeconds",
            "global.proxy.readinessInitialDelaySeconds",
        ),
        ("readinessPeriodSeconds", "global.proxy.readinessPeriodSeconds"),
        ("readinessFailureThreshold", "global.proxy.readinessFailureThreshold"),
    ];
    for (key, path) in numbers {
        if let Some(value) = at(values, path).filter(|value| !value.is_null()) {
            out.values(key, value.clone(), path);
        }
    }
    let flags = [
        ("mountMtlsCerts", "global.mountMtlsCerts"),
        ("cniEnabled", "pilot.cni.enabled"),
        ("rewriteAppProbes", "sidecarInjectorWebhook.rewriteAppHTTPProbe"),
        (
            "holdApplicationUntilProxyStarts",
            "global.proxy.holdApplicationUntilProxyStarts",
        ),
    ];
    for (key, path) in flags {
        if let Some(value) = flag(values, path) {
            out.values(key, json!(value), path);
        }
    }
}

/// The CNI provider, native sidecars, and the trust domain (also the mesh id when
/// `global.meshID` is unset).
fn cni_and_identity_from_values(values: &Value, out: &mut Settings) {
    if let Some(provider) = non_empty(values, "pilot.cni.provider") {
        let provider = if provider == "multus" { "multus" } else { "default" };
        out.values("cniProvider", json!(provider), "pilot.cni.provider");
    }
    if let Some(mode) = non_empty(values, "pilot.env.ENABLE_NATIVE_SIDECARS") {
        // istiod: "true" on, "auto" on where the nodes support it (this injector's default,
        // on), anything else off with a warning.
        if mode != "auto" {
            out.values(
                "nativeSidecars",
                json!(mode == "true"),
                "pilot.env.ENABLE_NATIVE_SIDECARS",
            );
        }
    }
    if let Some(domain) = non_empty(values, "global.trustDomain") {
        out.values("trustDomain", json!(domain), "global.trustDomain");
        if non_empty(values, "global.meshID").is_none() {
            out.values("meshId", json!(domain), "global.trustDomain");
        }
    }
}

/// The revision (`default` when unset) and the CA address, istiod's for the revision unless
/// `global.caAddress` names one.
fn revision_and_ca_from_values(values: &Value, out: &mut Settings) {
    let revision = non_empty(values, "revision");
    out.values(
        "revision",
        json!(revision.clone().unwrap_or_else(|| "default".into())),
        "revision",
    );
    match non_empty(values, "global.caAddress") {
        Some(address) => out.values("caAddress", json!(address), "global.caAddress"),
        None => {
            let namespace = non_empty(values, "global.istioNamespace").unwrap_or_else(|| "istio-system".into());
            let service = match &revision {
                Some(revision) => format!("istiod-{revision}"),
                None => "istiod".into(),
            };
            out.values(
                "caAddress",
                json!(format!("{service}.{namespace}.svc:15012")),
                "revision, global.istioNamespace",
            );
        }
    }
}

/// The mesh config's mapping.
fn from_mesh(mesh: &Value, values: Option<&Value>, out: &mut Settings) {
    if let Some(domain) = non_empty(mesh, "trustDomain") {
        out.mesh("trustDomain", json!(domain), "trustDomain");
        // The template's ISTIO_META_MESH_ID: global.meshID, else the trust domain.
        if values.and_then(|values| non_empty(values, "global.meshID")).is_none() {
            out.mesh("meshId", json!(domain), "trustDomain");
        }
    }
    if let Some(merge) = flag(mesh, "enablePrometheusMerge") {
        out.mesh("enablePrometheusMerge", json!(merge), "enablePrometheusMerge");
    }
    if let Some(mode) = non_empty(mesh, "inboundTrafficPolicy.mode") {
        let mode = if mode == "LOCALHOST" {
            "localhost"
        } else {
            "passthrough"
        };
        out.mesh("inboundTrafficPolicy", json!(mode), "inboundTrafficPolicy.mode");
    }
    let Some(Value::Object(default_config)) = at(mesh, "defaultConfig") else {
        return;
    };
    let mut proxy_config: Map<String, Value> = default_config.clone();
    if let Some(mode) = proxy_config.remove("interceptionMode").as_ref().and_then(text) {
        out.mesh("interceptionMode", json!(mode), "defaultConfig.interceptionMode");
    }
    // The template holds the app when either document asks for it.
    if flag(mesh, "defaultConfig.holdApplicationUntilProxyStarts") == Some(true) {
        out.mesh(
            "holdApplicationUntilProxyStarts",
            json!(true),
            "defaultConfig.holdApplicationUntilProxyStarts",
        );
    }
    out.mesh("meshDefaultConfig", Value::Object(proxy_config), "defaultConfig");
}

/// `{hub}/{image}:{tag}` with the image type applied to the tag, as istiod builds it; an
/// image naming a registry (`/`) is used as written. `None` without an image or hub.
fn image_url(values: &Value, path: &str, image_type: Option<&str>) -> Option<String> {
    let image = non_empty(values, path)?;
    if image.contains('/') {
        return Some(image);
    }
    let hub = non_empty(values, "global.hub")?;
    let mut tag = non_empty(values, "global.tag").unwrap_or_default();
    if let Some(image_type) = image_type {
        if let Some(known) = KNOWN_IMAGE_TYPES
            .iter()
            .find(|known| tag.ends_with(&format!("-{known}")))
        {
            tag.truncate(tag.len() - known.len() - 1);
        }
        if image_type != "default" {
            tag = format!("{tag}-{image_type}");
        }
    }
    Some(format!("{hub}/{image}:{tag}"))
}

/// `global.proxy.resources` in the config file's form (quantities as text).
fn resource_amounts(resources: &Value) -> Option<Value> {
    let resources = resources.as_object()?;
    let mut out = Map::new();
    for side in ["requests", "limits"] {
        let mut amounts = Map::new();
        if let Some(Value::Object(given)) = resources.get(side) {
            for name in ["cpu", "memory", "ephemeral-storage"] {
                if let Some(amount) = given.get(name).and_then(text) {
                    amounts.insert(name.into(), json!(amount));
                }
            }
        }
        out.insert(side.into(), Value::Object(amounts));
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests;
