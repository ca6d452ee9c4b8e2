//! Which setting wins: the config file's own keys, then the installed Istio's settings, then
//! the built-in defaults, decided key by key.
//!
//! The config file is read twice: once against the schema ([`InjectConfig::from_yaml`]) and
//! once as a plain tree, to learn which top-level keys the user wrote. [`UserConfig::compose`]
//! starts from [`InjectConfig::default`], lays the installed Istio's settings over it, then
//! the user's keys, and records in [`Provenance`] where each key's value came from, for
//! `explain`. A key the user wrote replaces the installed value whole (as the file alone
//! does today: `resources` with only `limits` has no requests), so a file that names a key
//! means exactly what it says whatever Istio is installed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use super::{ConfigError, InjectConfig};

/// Where one setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingSource {
    /// The built-in default.
    Default,
    /// The injector's own config file.
    Config,
    /// The `values` of the `istio-sidecar-injector` ConfigMap, at this path.
    IstioValues(String),
    /// The `config` of the `istio-sidecar-injector` ConfigMap, at this key.
    IstioConfig(String),
    /// The `mesh` of the `istio` ConfigMap, at this path.
    MeshConfig(String),
}

impl SettingSource {
    /// Whether the value comes from the installed Istio.
    pub fn is_installed(&self) -> bool {
        matches!(
            self,
            SettingSource::IstioValues(_) | SettingSource::IstioConfig(_) | SettingSource::MeshConfig(_)
        )
    }
}

impl fmt::Display for SettingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingSource::Default => f.write_str("default"),
            SettingSource::Config => f.write_str("config"),
            SettingSource::IstioValues(path) => write!(f, "istio values {path}"),
            SettingSource::IstioConfig(key) => write!(f, "istio config {key}"),
            SettingSource::MeshConfig(path) => write!(f, "mesh config {path}"),
        }
    }
}

/// One setting taken from the installed Istio: a top-level config key, its value in the
/// config file's form, and where in Istio's ConfigMaps it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct InstalledSetting {
    /// The config key it sets, e.g. `proxyLogLevel`.
    pub key: &'static str,
    /// The value, as the config file would write it.
    pub value: Value,
    /// Where it was read.
    pub source: SettingSource,
}

/// The source of every top-level config key that is not a built-in default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    sources: BTreeMap<String, SettingSource>,
}

impl Provenance {
    /// Where `key` (a top-level config key, or a dotted path under one) came from.
    pub fn source_of(&self, key: &str) -> &SettingSource {
        let top = key.split(['.', '[']).next().unwrap_or(key);
        self.sources.get(top).unwrap_or(&SettingSource::Default)
    }

    /// Every key whose value is not the built-in default, with its source.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &SettingSource)> {
        self.sources.iter().map(|(key, source)| (key.as_str(), source))
    }
}

/// The config file as the user wrote it: the checked config and the keys it names.
#[derive(Debug, Clone)]
pub struct UserConfig {
    /// The file checked against the schema, with built-in defaults for what it leaves out.
    pub config: InjectConfig,
    /// The top-level keys the file sets, with their values in the schema's form.
    explicit: Map<String, Value>,
}

// === impl UserConfig ===

impl UserConfig {
    /// Reads a config file ([`InjectConfig::load`]) and notes which keys it sets.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (text, display) = super::read_config_file(path)?;
        Self::from_yaml(&text, &display)
    }

    /// Parses config YAML ([`InjectConfig::from_yaml`]) and notes which keys it sets.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config = InjectConfig::from_yaml(text, origin)?;
        let written: Value = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_saphyr::from_str(text).map_err(|error| ConfigError::Schema {
                path: origin.to_string(),
                message: error.to_string(),
            })?
        };
        let typed = schema_tree(&config)?;
        let explicit = match written {
            Value::Object(written) => written
                .keys()
                .filter_map(|key| Some((key.clone(), typed.get(key)?.clone())))
                .collect(),
            _ => Map::new(),
        };
        Ok(UserConfig { config, explicit })
    }

    /// A config built in code: every key counts as written by the user.
    pub fn explicit(config: InjectConfig) -> Result<Self, ConfigError> {
        let explicit = schema_tree(&config)?;
        Ok(UserConfig { config, explicit })
    }

    /// The same file for another served revision: `revision` is `revision`, whatever the
    /// file or the installed Istio says.
    pub fn for_revision(&self, revision: &str) -> Self {
        let mut user = self.clone();
        // The same set of served revisions, seen from this one.
        let default = std::mem::replace(&mut user.config.revision, revision.to_string());
        let served = &mut user.config.istio.revisions;
        served.retain(|name| name != revision);
        served.push(default);
        if let Some(Value::Object(istio)) = user.explicit.get_mut("istio") {
            istio.insert("revisions".into(), Value::from(served.clone()));
        }
        user.explicit.insert("revision".into(), Value::from(revision));
        user
    }

    /// The built-in defaults, with no key written.
    pub fn defaults() -> Self {
        UserConfig {
            config: InjectConfig::default(),
            explicit: Map::new(),
        }
    }

    /// The config in force: the built-in defaults, then `installed`, then the user's keys,
    /// with the source of each key. The `istio` key itself is always the user's.
    pub fn compose(&self, installed: &[InstalledSetting]) -> Result<(InjectConfig, Provenance), ConfigError> {
        if installed.is_empty() {
            let sources = self
                .explicit
                .keys()
                .map(|key| (key.clone(), SettingSource::Config))
                .collect();
            return Ok((self.config.clone(), Provenance { sources }));
        }
        let mut tree = schema_tree(&InjectConfig::default())?;
        let mut sources = BTreeMap::new();
        for setting in installed {
            tree.insert(setting.key.to_string(), setting.value.clone());
            sources.insert(setting.key.to_string(), setting.source.clone());
        }
        for (key, value) in &self.explicit {
            tree.insert(key.clone(), value.clone());
            sources.insert(key.clone(), SettingSource::Config);
        }
        let mut config: InjectConfig =
            serde_json::from_value(Value::Object(tree)).map_err(|error| ConfigError::Schema {
                path: "installed Istio settings".into(),
                message: error.to_string(),
            })?;
        config.istio = self.config.istio.clone();
        Ok((config, Provenance { sources }))
    }
}

/// The config as a JSON object with the file's key names.
fn schema_tree(config: &InjectConfig) -> Result<Map<String, Value>, ConfigError> {
    match serde_json::to_value(config) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Ok(Map::new()),
        Err(error) => Err(ConfigError::Schema {
            path: "config".into(),
            message: error.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::InjectionPolicy;

    fn installed(key: &'static str, value: Value) -> InstalledSetting {
        InstalledSetting {
            key,
            value,
            source: SettingSource::IstioValues(format!("global.{key}")),
        }
    }

    #[test]
    fn the_files_keys_win_then_installed_istio_then_defaults() {
        let user =
            UserConfig::from_yaml("proxyLogLevel: error\nresources:\n  limits:\n    cpu: 3\n", "c.yaml").unwrap();
        let settings = [
            installed("proxyLogLevel", json!("debug")),
            installed("agentLogLevel", json!("default:debug")),
            installed("resources", json!({"requests": {"cpu": "250m"}})),
        ];
        let (config, provenance) = user.compose(&settings).unwrap();
        assert_eq!(config.proxy_log_level, "error");
        assert_eq!(config.agent_log_level, "default:debug");
        assert_eq!(config.proxy_component_log_level, "misc:error");
        // The file's `resources` replaces the installed one whole, as the file alone would.
        assert_eq!(config.resources.limits.cpu.as_deref(), Some("3"));
        assert_eq!(config.resources.requests.cpu, None);
        assert_eq!(provenance.source_of("proxyLogLevel"), &SettingSource::Config);
        assert_eq!(
            provenance.source_of("agentLogLevel").to_string(),
            "istio values global.agentLogLevel"
        );
        assert_eq!(provenance.source_of("resources.limits.cpu"), &SettingSource::Config);
        assert_eq!(provenance.source_of("policy"), &SettingSource::Default);
    }

    #[test]
    fn without_installed_settings_the_file_reads_as_before() {
        let text = "policy: disabled\nresources:\n  limits:\n    cpu: '1'\n";
        let user = UserConfig::from_yaml(text, "c.yaml").unwrap();
        let (config, provenance) = user.compose(&[]).unwrap();
        let alone = InjectConfig::from_yaml(text, "c.yaml").unwrap();
        assert_eq!(config.policy, InjectionPolicy::Disabled);
        assert_eq!(config.resources, alone.resources);
        let keys: Vec<&str> = provenance.entries().map(|(key, _)| key).collect();
        assert_eq!(keys, ["policy", "resources"]);
    }

    #[test]
    fn an_installed_value_of_the_wrong_type_is_refused_naming_the_source() {
        let error = UserConfig::defaults()
            .compose(&[installed("statusPort", json!("many"))])
            .unwrap_err();
        assert!(error.to_string().contains("installed Istio settings"), "{error}");
    }
}
