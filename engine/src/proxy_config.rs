//! `proxy.istio.io/config`: per-pod ProxyConfig overrides, as YAML or JSON.
//!
//! The fields the injector acts on are `concurrency` (overrides the derived worker
//! count when above 0), `holdApplicationUntilProxyStarts` and `proxyMetadata` (extra
//! environment for the proxy and init container). The object is passed to the agent in
//! `PROXY_CONFIG` as istiod passes it: only the fields `ProxyConfig` has, under their JSON
//! names ([`crate::proxy_config_fields`]). Anything that is not a YAML or JSON mapping is
//! denied.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::{InjectError, quoted};
use crate::proxy_config_fields::known_fields;

/// Per-pod ProxyConfig annotation.
pub use crate::annotations::PROXY_CONFIG;

/// The parsed annotation and the settings read from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyConfig {
    /// The annotation as istiod keeps it (empty when absent): `ProxyConfig`'s own fields,
    /// under their JSON names.
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
        let written = match value {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => return Err(invalid("it is not a mapping".into())),
        };
        let raw = known_fields(&written);
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
        // Judged as written, so `statsEvictionInterval`/`statsFlushInterval` are still checked
        // though the ProxyConfig message lacks them (they never reach PROXY_CONFIG), and as kept,
        // so a protobuf-named `proxy_stats_matcher` is checked too.
        check_stats(&written)
            .and_then(|()| check_stats(&raw))
            .map_err(invalid)?;
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

/// Envoy's stats flush interval when ProxyConfig sets none.
const DEFAULT_STATS_FLUSH_NANOS: u128 = 5_000_000_000;

/// Settings the agent would accept but the proxy then cannot start with: a
/// `proxyStatsMatcher.inclusionRegexps` entry that is not a regular expression, and a
/// `statsEvictionInterval` that is not a whole multiple of `statsFlushInterval` (Envoy
/// refuses it, istio#58500).
fn check_stats(raw: &Map<String, Value>) -> Result<(), String> {
    let regexps = raw
        .get("proxyStatsMatcher")
        .and_then(|matcher| matcher.get("inclusionRegexps"));
    for (index, pattern) in regexps.and_then(Value::as_array).into_iter().flatten().enumerate() {
        let pattern = pattern
            .as_str()
            .ok_or_else(|| format!("proxyStatsMatcher.inclusionRegexps[{index}] must be a string"))?;
        regex_syntax::Parser::new().parse(pattern).map_err(|error| {
            let detail = error.to_string().lines().last().unwrap_or_default().to_string();
            format!(
                "proxyStatsMatcher.inclusionRegexps[{index}] {} is not a regular expression: {detail}",
                quoted(pattern)
            )
        })?;
    }
    let Some(eviction) = raw.get("statsEvictionInterval") else {
        return Ok(());
    };
    let eviction = duration_nanos("statsEvictionInterval", eviction)?;
    let flush = match raw.get("statsFlushInterval") {
        Some(flush) => duration_nanos("statsFlushInterval", flush)?,
        None => DEFAULT_STATS_FLUSH_NANOS,
    };
    if flush == 0 || eviction % flush != 0 {
        return Err(format!(
            "statsEvictionInterval {}s is not a whole multiple of statsFlushInterval {}s",
            eviction as f64 / 1e9,
            flush as f64 / 1e9
        ));
    }
    Ok(())
}

/// A protobuf duration as ProxyConfig writes it (`60s`, `1.5s`), in nanoseconds.
fn duration_nanos(field: &str, value: &Value) -> Result<u128, String> {
    let invalid = || {
        format!(
            "{field} {} is not a duration in seconds, e.g. 60s or 1.5s",
            quoted(&value.to_string())
        )
    };
    let text = value.as_str().ok_or_else(invalid)?;
    let seconds = text.strip_suffix('s').ok_or_else(invalid)?;
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
    let digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || whole.len() > 12 || fraction.len() > 9 || !digits(whole) || !digits(fraction) {
        return Err(invalid());
    }
    let whole: u128 = whole.parse().map_err(|_| invalid())?;
    let fraction: u128 = format!("{fraction:0<9}").parse().map_err(|_| invalid())?;
    Ok(whole * 1_000_000_000 + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProxyConfig, InjectError> {
        let annotations = BTreeMap::from([(PROXY_CONFIG.to_string(), text.to_string())]);
        ProxyConfig::from_annotations(Some(&annotations))
    }

    #[test]
    fn stats_settings_the_proxy_cannot_start_with_are_denied() {
        assert!(
            parse(r#"{"proxyStatsMatcher": {"inclusionRegexps": [".*outlier_detection.*", "^cluster\\..*"]}}"#).is_ok()
        );
        assert!(parse(r#"{"statsEvictionInterval": "60s"}"#).is_ok());
        assert!(parse(r#"{"statsEvictionInterval": "3s", "statsFlushInterval": "1.5s"}"#).is_ok());
        for (bad, says) in [
            (
                r#"{"proxyStatsMatcher": {"inclusionRegexps": ["(unclosed"]}}"#,
                "is not a regular expression",
            ),
            (
                r#"{"proxyStatsMatcher": {"inclusionRegexps": [3]}}"#,
                "must be a string",
            ),
            (
                r#"{"statsEvictionInterval": "7s"}"#,
                "not a whole multiple of statsFlushInterval 5s",
            ),
            (
                r#"{"statsEvictionInterval": "10s", "statsFlushInterval": "3s"}"#,
                "not a whole multiple",
            ),
            (r#"{"statsEvictionInterval": "1m"}"#, "not a duration in seconds"),
        ] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains(PROXY_CONFIG) && error.contains(says), "{error}");
        }
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

    /// istiod writes `PROXY_CONFIG` from the decoded protobuf: what `ProxyConfig` lacks is
    /// gone, and fields named the protobuf way count and come out under their JSON names.
    #[test]
    fn fields_proxy_config_lacks_do_not_reach_the_agent() {
        let config = parse(r#"{"a": 1, "concurrency": 2, "tracing": {"sampling": 5, "b": 2}}"#).unwrap();
        assert_eq!(
            config.agent_json(&Map::new()),
            "{\"concurrency\":2,\"tracing\":{\"sampling\":5}}\n"
        );
        let mesh: Map<String, Value> = [("discoveryAddress".to_string(), Value::from("istiod:15012"))]
            .into_iter()
            .collect();
        assert_eq!(
            parse("a: 1").unwrap().agent_json(&mesh),
            "{\"discoveryAddress\":\"istiod:15012\"}\n"
        );
        // A null field is unset, so the mesh-wide value stays.
        assert_eq!(
            parse("discoveryAddress: null").unwrap().agent_json(&mesh),
            "{\"discoveryAddress\":\"istiod:15012\"}\n"
        );
        let snake = parse("hold_application_until_proxy_starts: true\nproxy_metadata:\n  FOO: bar\n").unwrap();
        assert_eq!(snake.hold_application, Some(true));
        assert_eq!(snake.metadata["FOO"], "bar");
        assert!(
            snake
                .agent_json(&Map::new())
                .contains("\"holdApplicationUntilProxyStarts\":true")
        );
        assert!(parse("hold_application_until_proxy_starts: maybe").is_err());
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
