//! `proxy.istio.io/config`: per-pod ProxyConfig overrides, as YAML or JSON.
//!
//! The fields the injector acts on are `concurrency` (overrides the derived worker
//! count when above 0), `holdApplicationUntilProxyStarts` and `proxyMetadata` (extra
//! environment for the proxy and init container). The whole object is passed to the
//! agent in `PROXY_CONFIG`. Anything that is not a YAML or JSON mapping is denied.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::{InjectError, quoted};

/// Per-pod ProxyConfig annotation.
pub use crate::annotations::PROXY_CONFIG;

/// The parsed annotation and the settings read from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyConfig {
    /// The annotation as a JSON object (empty when absent).
    pub raw: Map<String, Value>,
    /// `concurrency`, when set above 0.
    pub concurrency: Option<i64>,
    /// `holdApplicationUntilProxyStarts`.
    pub hold_application: Option<bool>,
    /// `proxyMetadata`, as environment variables.
    pub metadata: BTreeMap<String, String>,
}

impl ProxyConfig {
    /// Reads the annotation from the pod's annotations.
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Result<ProxyConfig, InjectError> {
        let Some(text) = annotations.and_then(|map| map.get(PROXY_CONFIG)) else {
            return Ok(ProxyConfig::default());
        };
        let invalid = |reason: String| InjectError::InvalidAnnotation {
            annotation: PROXY_CONFIG.into(),
            value: quoted(text),
            reason,
            accepted: crate::annotations::PROXY_CONFIG_FORMS,
        };
        let value: Value = serde_saphyr::from_str(text).map_err(|error| invalid(error.to_string()))?;
        let raw = match value {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => return Err(invalid("it is not a mapping".into())),
        };
        let concurrency =
            match raw.get("concurrency") {
                None | Some(Value::Null) => None,
                Some(value) => Some(value.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                    invalid("concurrency must be a whole number of worker threads, 0 or more".into())
                })?),
            }
            .filter(|n| *n > 0);
        let hold_application = match raw.get("holdApplicationUntilProxyStarts") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_bool()
                    .ok_or_else(|| invalid("holdApplicationUntilProxyStarts must be true or false".into()))?,
            ),
        };
        let metadata = match raw.get("proxyMetadata") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(key, value)| match value {
                    Value::String(text) => Ok((key.clone(), text.clone())),
                    other => Ok((key.clone(), other.to_string())),
                })
                .collect::<Result<_, InjectError>>()?,
            Some(_) => return Err(invalid("proxyMetadata must be a mapping of strings".into())),
        };
        Ok(ProxyConfig {
            raw,
            concurrency,
            hold_application,
            metadata,
        })
    }

    /// `PROXY_CONFIG` for the agent: the mesh-wide settings that differ from Istio's
    /// defaults (`mesh`), overlaid by the annotation, as compact JSON.
    pub fn agent_json(&self, mesh: &Map<String, Value>) -> String {
        let mut merged = mesh.clone();
        merged.extend(self.raw.iter().map(|(k, v)| (k.clone(), v.clone())));
        format!("{}\n", Value::Object(merged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProxyConfig, InjectError> {
        let annotations = BTreeMap::from([(PROXY_CONFIG.to_string(), text.to_string())]);
        ProxyConfig::from_annotations(Some(&annotations))
    }

    #[test]
    fn reads_yaml_and_json() {
        let yaml = parse("discoveryAddress: foo:123\nconcurrency: 3\nproxyMetadata:\n  FOO: bar\n").unwrap();
        assert_eq!(yaml.concurrency, Some(3));
        assert_eq!(yaml.metadata["FOO"], "bar");
        let json = parse(r#"{ "holdApplicationUntilProxyStarts": true, "concurrency": 0 }"#).unwrap();
        assert_eq!(json.hold_application, Some(true));
        assert_eq!(json.concurrency, None);
        assert_eq!(ProxyConfig::default().agent_json(&Map::new()), "{}\n");
        let tproxy: Map<String, Value> = [("interceptionMode".to_string(), Value::from("TPROXY"))]
            .into_iter()
            .collect();
        assert_eq!(
            json.agent_json(&tproxy),
            "{\"concurrency\":0,\"holdApplicationUntilProxyStarts\":true,\"interceptionMode\":\"TPROXY\"}\n"
        );
    }

    #[test]
    fn rejects_non_mappings_and_bad_fields() {
        for bad in [
            "[1, 2]",
            "concurrency: lots",
            "holdApplicationUntilProxyStarts: maybe",
            "proxyMetadata: 3",
            "{",
        ] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("proxy.istio.io/config"), "{bad}: {error}");
        }
    }
}
