//! Log levels of the proxy and its agent: `sidecar.istio.io/logLevel`, `componentLogLevel`
//! and `agentLogLevel` over the config's `proxyLogLevel`, `proxyComponentLogLevel` and
//! `agentLogLevel`, each checked, since Envoy or pilot-agent refuse to start on a level
//! they do not know.

use std::collections::BTreeMap;

use crate::annotations::{
    AGENT_LOG_LEVEL, AGENT_LOG_LEVEL_FORMS, COMPONENT_LOG_LEVEL, COMPONENT_LOG_LEVEL_FORMS, LOG_LEVEL, LOG_LEVEL_FORMS,
};
use crate::error::{InjectError, quoted};

/// A check of one level setting, returning what is wrong.
pub(crate) type LevelCheck = fn(&str) -> Result<(), String>;

/// Envoy's log levels (`--proxyLogLevel`, and each component's).
const ENVOY_LEVELS: [&str; 8] = ["trace", "debug", "info", "warning", "warn", "error", "critical", "off"];
/// pilot-agent's log levels (`--log_output_level`).
const AGENT_LEVELS: [&str; 6] = ["debug", "info", "warn", "error", "fatal", "none"];

/// The three levels for one pod, borrowed from its annotations or the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogLevels<'a> {
    /// Envoy's level.
    pub proxy: &'a str,
    /// Envoy's per-component levels, `component:level,...`.
    pub components: &'a str,
    /// pilot-agent's and istio-iptables' `--log_output_level`.
    pub agent: &'a str,
}

impl<'a> LogLevels<'a> {
    /// The pod's annotations over the config's levels (already checked when it compiled).
    pub(crate) fn from_annotations(
        annotations: Option<&'a BTreeMap<String, String>>,
        defaults: (&'a str, &'a str, &'a str),
    ) -> Result<Self, InjectError> {
        let read = |key: &'static str, default: &'a str, check: LevelCheck, accepted| {
            let Some(value) = annotations.and_then(|map| map.get(key)) else {
                return Ok(default);
            };
            check(value).map_err(|reason| InjectError::InvalidAnnotation {
                annotation: key.into(),
                value: quoted(value),
                reason,
                accepted,
            })?;
            Ok(value.as_str())
        };
        Ok(LogLevels {
            proxy: read(LOG_LEVEL, defaults.0, check_proxy_level, LOG_LEVEL_FORMS)?,
            components: read(
                COMPONENT_LOG_LEVEL,
                defaults.1,
                check_component_levels,
                COMPONENT_LOG_LEVEL_FORMS,
            )?,
            agent: read(AGENT_LOG_LEVEL, defaults.2, check_agent_levels, AGENT_LOG_LEVEL_FORMS)?,
        })
    }
}

/// One of Envoy's levels.
pub(crate) fn check_proxy_level(value: &str) -> Result<(), String> {
    if ENVOY_LEVELS.contains(&value) {
        Ok(())
    } else {
        Err(format!("{} is not an Envoy log level", quoted(value)))
    }
}

/// `component:level` pairs, comma-separated, each level one of Envoy's.
pub(crate) fn check_component_levels(value: &str) -> Result<(), String> {
    pairs(value, &ENVOY_LEVELS, false)
}

/// `scope:level` pairs, comma-separated, or one bare level, each one of pilot-agent's.
pub(crate) fn check_agent_levels(value: &str) -> Result<(), String> {
    pairs(value, &AGENT_LEVELS, true)
}

fn pairs(value: &str, levels: &[&str], bare_level: bool) -> Result<(), String> {
    if bare_level && levels.contains(&value) {
        return Ok(());
    }
    for item in value.split(',') {
        let (name, level) = item
            .split_once(':')
            .ok_or_else(|| format!("{} is not a name:level pair", quoted(item)))?;
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !name_ok {
            return Err(format!("{} is not a component or scope name", quoted(name)));
        }
        if !levels.contains(&level) {
            return Err(format!("{} is not a log level here", quoted(level)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proxy's, the components' and the agent's levels for a pod annotated with `pairs`.
    fn levels(pairs: &[(&str, &str)]) -> Result<[String; 3], InjectError> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let levels = LogLevels::from_annotations(Some(&map), ("warning", "misc:error", "default:info"))?;
        Ok([levels.proxy, levels.components, levels.agent].map(str::to_string))
    }

    #[test]
    fn annotations_override_the_config_and_bad_levels_are_denied() {
        assert_eq!(levels(&[]).unwrap(), ["warning", "misc:error", "default:info"]);
        let set = levels(&[
            (LOG_LEVEL, "debug"),
            (COMPONENT_LOG_LEVEL, "misc:error,rbac:debug"),
            (AGENT_LOG_LEVEL, "default:debug,xdsproxy:warn"),
        ])
        .unwrap();
        assert_eq!(set, ["debug", "misc:error,rbac:debug", "default:debug,xdsproxy:warn"]);
        assert_eq!(levels(&[(AGENT_LOG_LEVEL, "info")]).unwrap()[2], "info");
        for (key, bad) in [
            (LOG_LEVEL, "loud"),
            (LOG_LEVEL, "debug --foo"),
            (COMPONENT_LOG_LEVEL, "misc"),
            (COMPONENT_LOG_LEVEL, "misc:verbose"),
            (COMPONENT_LOG_LEVEL, "mi sc:error"),
            (AGENT_LOG_LEVEL, "default:trace"),
            (AGENT_LOG_LEVEL, ""),
        ] {
            let error = levels(&[(key, bad)]).unwrap_err().to_string();
            assert!(error.contains(key) && error.contains("accepted:"), "{error}");
        }
    }
}
