//! The `istio` config key: whether the injector reads the installed Istio's settings from the
//! cluster, and from which namespace.
//!
//! With `source: cluster` the server watches the istiod chart's ConfigMaps
//! (`istio-sidecar-injector[-<rev>]` and `istio[-<rev>]`) in `namespace` and lays their
//! settings under the config file's own keys ([`super::layers`]); `static` uses the file and
//! the built-in defaults alone, as offline commands always do.

use serde::{Deserialize, Serialize};

/// Where the installed Istio's settings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IstioSource {
    /// Only this config file and the built-in defaults.
    #[default]
    Static,
    /// The istiod chart's ConfigMaps in `istio.namespace`, watched while serving.
    Cluster,
}

/// The `istio` key of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct IstioSourceConfig {
    /// `static` or `cluster`.
    pub source: IstioSource,
    /// The namespace istiod is installed in.
    pub namespace: String,
}

impl Default for IstioSourceConfig {
    fn default() -> Self {
        IstioSourceConfig {
            source: IstioSource::Static,
            namespace: "istio-system".into(),
        }
    }
}

/// The names of the two ConfigMaps the istiod chart writes for `revision`: the injector's
/// (`values` and `config`) and the mesh config's (`mesh`). Revision `default` (or empty) is
/// the chart's unrevisioned install.
pub fn configmap_names(revision: &str) -> (String, String) {
    match revision {
        "" | "default" => ("istio-sidecar-injector".into(), "istio".into()),
        revision => (
            format!("istio-sidecar-injector-{revision}"),
            format!("istio-{revision}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmap_names_follow_the_chart() {
        assert_eq!(
            configmap_names("default"),
            ("istio-sidecar-injector".to_string(), "istio".to_string())
        );
        assert_eq!(
            configmap_names("canary"),
            ("istio-sidecar-injector-canary".to_string(), "istio-canary".to_string())
        );
    }
}
