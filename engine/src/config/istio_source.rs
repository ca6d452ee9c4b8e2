//! The `istio` config key: whether the injector reads the installed Istio's settings from the
//! cluster, and from which namespace.
//!
//! With `source: cluster` the server watches the istiod chart's ConfigMaps
//! (`istio-sidecar-injector[-<rev>]` and `istio[-<rev>]`) in `namespace` and lays their
//! settings under the config file's own keys ([`super::layers`]); `static` uses the file and
//! the built-in defaults alone, as offline commands always do.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The label that names a pod's or namespace's revision (or tag).
pub const REVISION_LABEL: &str = "istio.io/rev";

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
    /// Revisions served besides the config's own `revision` (the default one), each with its
    /// own ConfigMaps (`istio-sidecar-injector-<rev>`, `istio-<rev>`) when `source: cluster`.
    pub revisions: Vec<String>,
    /// Revision tags, tag → revision, as `istioctl tag set <tag> --revision <rev>` makes them:
    /// a namespace or pod labelled `istio.io/rev=<tag>` is injected by that revision.
    pub tags: BTreeMap<String, String>,
}

impl Default for IstioSourceConfig {
    fn default() -> Self {
        IstioSourceConfig {
            source: IstioSource::Static,
            namespace: "istio-system".into(),
            revisions: Vec::new(),
            tags: BTreeMap::new(),
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

impl IstioSourceConfig {
    /// The revision that injects a pod, as Istio's webhook selectors choose it: the
    /// namespace's `istio.io/rev`, else the pod's, each read through the tags; a namespace
    /// with neither (`istio-injection=enabled`) or a revision not served gets `default`.
    pub fn revision_for<'a>(
        &'a self,
        namespace_rev: Option<&'a str>,
        pod_rev: Option<&'a str>,
        default: &'a str,
    ) -> &'a str {
        let Some(named) = namespace_rev.or(pod_rev).filter(|name| !name.is_empty()) else {
            return default;
        };
        let revision = self.tags.get(named).map_or(named, String::as_str);
        if revision == default || self.revisions.iter().any(|served| served == revision) {
            revision
        } else {
            default
        }
    }

    /// Checks that every tag names a served revision and no tag shadows a revision.
    pub fn check(&self, default: &str) -> Result<(), String> {
        for (tag, revision) in &self.tags {
            if revision != default && !self.revisions.contains(revision) {
                return Err(format!(
                    "tag {tag:?} points at revision {revision:?}, which is neither `revision` ({default:?}) nor in istio.revisions"
                ));
            }
            if tag == default || self.revisions.contains(tag) {
                return Err(format!("tag {tag:?} has the name of a served revision"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_chosen_as_istios_selectors_choose_them() {
        let source = IstioSourceConfig {
            revisions: vec!["canary".into()],
            tags: BTreeMap::from([
                ("prod".to_string(), "canary".to_string()),
                ("stable".to_string(), "default".to_string()),
            ]),
            ..IstioSourceConfig::default()
        };
        assert_eq!(source.revision_for(None, None, "default"), "default");
        assert_eq!(source.revision_for(Some("canary"), None, "default"), "canary");
        assert_eq!(source.revision_for(None, Some("canary"), "default"), "canary");
        assert_eq!(
            source.revision_for(Some("default"), Some("canary"), "default"),
            "default",
            "the namespace wins"
        );
        assert_eq!(source.revision_for(Some("prod"), None, "default"), "canary");
        assert_eq!(source.revision_for(None, Some("stable"), "default"), "default");
        assert_eq!(source.revision_for(Some("unknown"), None, "default"), "default");
        assert!(source.check("default").is_ok());
        let dangling = IstioSourceConfig {
            tags: BTreeMap::from([("prod".to_string(), "gone".to_string())]),
            ..IstioSourceConfig::default()
        };
        assert!(dangling.check("default").unwrap_err().contains("gone"));
    }

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
