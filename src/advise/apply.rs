//! `advise --kubeconfig`: namespace annotations and LimitRanges read for the policy, and
//! `--apply` writing the namespace-level recommendations as namespace-default annotations, a
//! diff first.
//!
//! `--dry-run` sends the same merge patches with the API server's `dryRun=All`, so
//! admission and validation run and nothing is stored.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use k8s_openapi::api::core::v1::{LimitRange, Namespace};
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::sizing::ADVISED_FIELDS;
use super::{Advice, NamespaceFacts};
use crate::quantity::Quantity;

/// A client for the cluster `path` names (its current context).
pub async fn client(path: &Path) -> Result<kube::Client, String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| format!("cannot read --kubeconfig {}: {e}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
    kube::Client::try_from(config).map_err(|e| format!("--kubeconfig {}: {e}", path.display()))
}

/// The annotations and LimitRanges of each of `names` that exists.
pub async fn namespace_facts(
    client: &kube::Client,
    names: impl IntoIterator<Item = &str>,
) -> Result<BTreeMap<String, NamespaceFacts>, String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut found = BTreeMap::new();
    for name in names {
        let namespace = api
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot read namespace {name}: {e}"))?;
        let Some(namespace) = namespace else { continue };
        let limit_ranges = Api::<LimitRange>::namespaced(client.clone(), name)
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("cannot list the LimitRanges of namespace {name}: {e}"))?;
        let facts = NamespaceFacts {
            annotations: namespace.metadata.annotations.unwrap_or_default(),
            limit_ranges: limit_ranges.items,
        };
        found.insert(name.to_string(), facts);
    }
    Ok(found)
}

/// One annotation that would change: key, value now, value wanted.
pub type Change = (&'static str, Option<String>, String);

/// The namespace-default annotations that differ from `values`.
pub fn namespace_diff(current: &BTreeMap<String, String>, values: [Quantity; 3]) -> Vec<Change> {
    ADVISED_FIELDS
        .iter()
        .zip(values)
        .filter_map(|(key, value)| {
            let wanted = value.to_canonical();
            let now = current.get(key.annotation()).cloned();
            (now.as_deref() != Some(wanted.as_str())).then_some((key.annotation(), now, wanted))
        })
        .collect()
}

/// Prints the diff of every namespace with a recommendation, then patches those that
/// differ (with `dryRun=All` when `dry_run`). Returns the text shown.
pub async fn apply(client: &kube::Client, advice: &Advice, dry_run: bool) -> Result<String, String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut text = String::new();
    for entry in advice.recommendations.iter().filter(|r| r.workload.is_none()) {
        let Some(values) = entry.values else {
            let _ = writeln!(text, "namespace {}: no recommendation, left as it is", entry.namespace);
            continue;
        };
        let name = &entry.namespace;
        let Some(namespace) = api
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot read namespace {name}: {e}"))?
        else {
            let _ = writeln!(text, "namespace {name}: not found in the cluster, left out");
            continue;
        };
        let changes = namespace_diff(&namespace.metadata.annotations.unwrap_or_default(), values);
        if changes.is_empty() {
            let _ = writeln!(text, "namespace {name}: unchanged");
            continue;
        }
        let _ = writeln!(text, "namespace {name}:");
        for (key, now, wanted) in &changes {
            let _ = writeln!(text, "  {key}: {} -> {wanted}", now.as_deref().unwrap_or("(unset)"));
        }
        let annotations: BTreeMap<&str, &str> =
            changes.iter().map(|(key, _, wanted)| (*key, wanted.as_str())).collect();
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        let params = PatchParams {
            dry_run,
            ..PatchParams::default()
        };
        api.patch(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("cannot patch namespace {name}: {e}"))?;
        let _ = writeln!(
            text,
            "  {}",
            if dry_run {
                "dry run: accepted, not written"
            } else {
                "written"
            }
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_names_only_what_changes() {
        let cpu = ADVISED_FIELDS[0].annotation();
        let memory = ADVISED_FIELDS[1].annotation();
        let current = BTreeMap::from([
            (cpu.to_string(), "30m".to_string()),
            (memory.to_string(), "1Gi".to_string()),
        ]);
        let values = [
            Quantity::from_millicores(30),
            Quantity::from_bytes(64 << 20),
            Quantity::from_bytes(64 << 20),
        ];
        let diff = namespace_diff(&current, values);
        assert_eq!(
            diff,
            [
                (memory, Some("1Gi".to_string()), "64Mi".to_string()),
                (ADVISED_FIELDS[2].annotation(), None, "64Mi".to_string())
            ]
        );
    }
}
