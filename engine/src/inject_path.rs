//! The parameters istiod reads from the webhook's URL path: `/inject/cluster/<c>/net/<n>`
//! (any `key/value` pairs, a `/` in a value written `--slash--`) or the older
//! `/inject/:ENV:cluster=<c>:ENV:net=<n>`.
//!
//! As in istiod's `parseInjectEnvs`: `cluster` becomes `ISTIO_META_CLUSTER_ID`, `net`
//! becomes `ISTIO_META_NETWORK`, any other key its upper-case self, and a last key without a
//! value is dropped. Every one is set as an environment variable of the proxy, and the
//! cluster and network replace the configured ones (so the pod's network label follows).

use std::collections::BTreeMap;

use crate::container::EnvVar;

use crate::config::InjectConfig;

/// The proxy environment a webhook path asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InjectPath {
    /// Variable name to value.
    pub envs: BTreeMap<String, String>,
}

/// The environment variable `cluster` sets.
pub const CLUSTER_ENV: &str = "ISTIO_META_CLUSTER_ID";
/// The environment variable `net` sets.
pub const NETWORK_ENV: &str = "ISTIO_META_NETWORK";

impl InjectPath {
    /// Reads the parameters of a request path such as `/inject/cluster/east/net/n1`; `/inject`
    /// has none.
    pub fn parse(path: &str) -> Self {
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut parts = path.splitn(3, '/');
        let rest = parts.nth(2).unwrap_or_default();
        let words: Vec<String> = if rest.is_empty() {
            Vec::new()
        } else if rest.starts_with(":ENV:") {
            rest.split(":ENV:")
                .skip(1)
                .filter_map(|pair| pair.split_once('='))
                .filter(|(name, _)| !name.is_empty())
                .flat_map(|(name, value)| [name.to_string(), value.to_string()])
                .collect()
        } else {
            rest.split('/')
                .enumerate()
                .map(|(index, word)| match index % 2 {
                    1 => word.replace("--slash--", "/"),
                    _ => word.to_string(),
                })
                .collect()
        };
        let envs = words
            .chunks_exact(2)
            .filter_map(|pair| {
                let name = match pair[0].as_str() {
                    "cluster" => CLUSTER_ENV.to_string(),
                    "net" => NETWORK_ENV.to_string(),
                    other => other.to_uppercase(),
                };
                (!name.is_empty()).then(|| (name, pair[1].clone()))
            })
            .collect();
        InjectPath { envs }
    }

    /// Whether the path sets nothing.
    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }
}

/// Istio's `updateClusterEnvs`, for a request whose path set variables: those variables,
/// the cluster ID (when not the default `Kubernetes`) and the network (when set) are taken out
/// of the proxy's environment and appended in name order, with the path's values (the
/// cluster and network as resolved into the config).
pub(crate) fn move_path_envs_last<'a>(env: &mut Vec<EnvVar<'a>>, config: &'a InjectConfig) {
    if config.path_envs.is_empty() {
        return;
    }
    let mut last: BTreeMap<&str, &str> = config
        .path_envs
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    if config.cluster_id != "Kubernetes" || last.contains_key(CLUSTER_ENV) {
        last.insert(CLUSTER_ENV, &config.cluster_id);
    }
    if !config.network.is_empty() {
        last.insert(NETWORK_ENV, &config.network);
    }
    env.retain(|var| !last.contains_key(var.name()));
    env.extend(last.into_iter().map(|(name, value)| EnvVar::literal(name, value)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs(path: &str) -> Vec<(String, String)> {
        InjectPath::parse(path).envs.into_iter().collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn paths_are_read_as_istiod_reads_them() {
        assert!(envs("/inject").is_empty());
        assert!(envs("/inject/").is_empty());
        assert_eq!(
            envs("/inject/cluster/east/net/network1"),
            pairs(&[(CLUSTER_ENV, "east"), (NETWORK_ENV, "network1")])
        );
        assert_eq!(
            envs("/inject/cluster/east/net/network1/"),
            pairs(&[(CLUSTER_ENV, "east"), (NETWORK_ENV, "network1")])
        );
        assert_eq!(envs("/inject/foo/a--slash--b"), pairs(&[("FOO", "a/b")]));
        assert_eq!(
            envs("/inject/cluster/east/net"),
            pairs(&[(CLUSTER_ENV, "east")]),
            "a last key alone is dropped"
        );
        assert_eq!(
            envs("/inject/:ENV:cluster=c1:ENV:net=n1:ENV:empty=:ENV:=bad:ENV:novalue"),
            pairs(&[("EMPTY", ""), (CLUSTER_ENV, "c1"), (NETWORK_ENV, "n1")])
        );
    }
}
