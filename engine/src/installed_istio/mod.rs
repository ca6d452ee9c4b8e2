//! The installed Istio, as the istiod chart writes it into two ConfigMaps: the
//! `istio-sidecar-injector[-<rev>]` ConfigMap's `values` (the chart's Helm values, JSON) and
//! `config` (the injector's policy, selectors and templates, YAML), and the `istio[-<rev>]`
//! ConfigMap's `mesh` (MeshConfig, YAML).
//!
//! [`InstalledIstio::parse`] reads the ConfigMaps' data and [`InstalledIstio::settings`]
//! maps them onto this injector's config keys (its `mapping` module), each with the path it was read
//! from. Nothing here reads the cluster: the server's watcher hands the data in.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use serde_json::Value;

use crate::config::layers::InstalledSetting;

mod mapping;

/// Why an installed Istio ConfigMap cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ConfigMap {configmap} key {key}: {message}")]
pub struct InstalledIstioError {
    /// The ConfigMap's name.
    pub configmap: String,
    /// The data key.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The `config` key of the injector ConfigMap: what this injector reads of it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct InjectorPolicy {
    /// `enabled` or `disabled`.
    pub policy: Option<String>,
    /// Pods injected unless they opt out.
    pub always_inject_selector: Option<Vec<LabelSelector>>,
    /// Pods not injected unless they opt in.
    pub never_inject_selector: Option<Vec<LabelSelector>>,
    /// Templates used when a pod names none.
    #[serde(deserialize_with = "null_as_default")]
    pub default_templates: Vec<String>,
    /// Annotations istiod adds to every injected pod.
    #[serde(deserialize_with = "null_as_default")]
    pub injected_annotations: BTreeMap<String, String>,
    /// The templates the ConfigMap defines, by name (their Go template text is not used).
    #[serde(deserialize_with = "null_as_default")]
    pub templates: BTreeMap<String, Value>,
}

/// The three documents of an installed Istio revision; each is absent when its ConfigMap
/// (or key) is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstalledIstio {
    /// The chart's Helm values.
    pub values: Option<Value>,
    /// The injector's policy and selectors.
    pub injector: Option<InjectorPolicy>,
    /// The mesh config.
    pub mesh: Option<Value>,
}

// === impl InstalledIstio ===

impl InstalledIstio {
    /// Parses the data of the injector ConfigMap (`injector`, named `injector_name`) and of
    /// the mesh ConfigMap (`mesh`, named `mesh_name`); either may be absent. A key that is
    /// present but does not parse is an error naming the ConfigMap and key.
    pub fn parse(
        injector_name: &str,
        injector: Option<&BTreeMap<String, String>>,
        mesh_name: &str,
        mesh: Option<&BTreeMap<String, String>>,
    ) -> Result<Self, InstalledIstioError> {
        let values = injector
            .and_then(|data| data.get("values"))
            .map(|text| serde_json::from_str::<Value>(text).map_err(|e| fail(injector_name, "values")(e.to_string())))
            .transpose()?;
        if let Some(values) = &values
            && !values.is_object()
        {
            return Err(fail(injector_name, "values")("is not a JSON object".into()));
        }
        let policy = injector
            .and_then(|data| data.get("config"))
            .map(|text| parse_yaml::<InjectorPolicy>(text).map_err(fail(injector_name, "config")))
            .transpose()?;
        let mesh = mesh
            .and_then(|data| data.get("mesh"))
            .map(|text| parse_yaml::<Value>(text).map_err(fail(mesh_name, "mesh")))
            .transpose()?
            .map(|mesh| {
                if mesh.is_null() {
                    Value::Object(Default::default())
                } else {
                    mesh
                }
            });
        if let Some(mesh) = &mesh
            && !mesh.is_object()
        {
            return Err(fail(mesh_name, "mesh")("is not a YAML mapping".into()));
        }
        Ok(InstalledIstio {
            values,
            injector: policy,
            mesh,
        })
    }

    /// Whether none of the three documents was found.
    pub fn is_empty(&self) -> bool {
        self.values.is_none() && self.injector.is_none() && self.mesh.is_none()
    }

    /// This injector's config keys as the installed Istio sets them, each with where it was
    /// read; what the ConfigMaps leave out is not listed.
    pub fn settings(&self) -> Result<Vec<InstalledSetting>, InstalledIstioError> {
        mapping::settings(self)
    }
}

/// Reads an empty YAML value (`injectedAnnotations:` with nothing under it, as the chart
/// writes it) as the empty collection.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An error maker for one ConfigMap key.
fn fail<'a>(configmap: &'a str, key: &'static str) -> impl Fn(String) -> InstalledIstioError + 'a {
    move |message| InstalledIstioError {
        configmap: configmap.to_string(),
        key,
        message,
    }
}

/// Parses YAML, keeping serde's message.
fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    if text.trim().is_empty() {
        return serde_json::from_value(Value::Object(Default::default())).map_err(|e| e.to_string());
    }
    serde_saphyr::from_str(text).map_err(|error| error.to_string())
}
