//! `advise` output: the text table, the JSON document, and YAML patches.
//!
//! The YAML holds one Namespace per namespace-level recommendation, with our
//! namespace-default annotations, and one apps/v1 object per workload recommendation,
//! with the same annotations on its pod template; `kubectl apply --server-side` takes
//! these partial objects as they are.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::sizing::ADVISED_FIELDS;
use super::{Advice, Recommendation};
use crate::quantity::Quantity;

/// Kinds whose pod template a patch can carry, and their apiVersion.
const TEMPLATE_KINDS: &[(&str, &str)] = &[
    ("Deployment", "apps/v1"),
    ("StatefulSet", "apps/v1"),
    ("DaemonSet", "apps/v1"),
    ("ReplicaSet", "apps/v1"),
];

fn show(value: Option<Quantity>) -> String {
    value.map_or_else(|| "-".to_string(), |q| q.to_canonical())
}

/// `(recommended - current) × pods`, summed per namespace, for the requests: millicores,
/// bytes and the pods counted.
fn change_per_namespace(recommendations: &[&Recommendation]) -> (i64, i64, usize) {
    let mut cpu = 0i64;
    let mut memory = 0i64;
    let mut pods = 0;
    for entry in recommendations.iter().filter(|r| r.workload.is_some()) {
        let (Some(values), [Some(cpu_now), Some(memory_now), _]) = (entry.values, entry.current) else {
            continue;
        };
        let count = i64::try_from(entry.pods).unwrap_or(0);
        cpu += (values[0].units() - cpu_now.units()) * count;
        memory += (values[1].units() - memory_now.units()) * count;
        pods += entry.pods;
    }
    (cpu, memory, pods)
}

/// A change as a signed quantity: `+50m`, `-172Mi`, `0`.
fn signed(units: i64, as_quantity: fn(i64) -> Quantity) -> String {
    let text = as_quantity(units.abs()).to_canonical();
    match units.signum() {
        1 => format!("+{text}"),
        -1 => format!("-{text}"),
        _ => text,
    }
}

impl Advice {
    /// The JSON document.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A table per namespace, then the summed change of its requests.
    pub fn to_text(&self) -> String {
        let header = [
            "NAMESPACE",
            "WORKLOAD",
            "FROM",
            "SAMPLES",
            "PODS",
            "CURRENT cpu/mem/lim",
            "OBSERVED cpu/mem",
            "RECOMMENDED cpu/mem/lim",
        ];
        let mut rows: Vec<[String; 8]> = vec![header.map(String::from)];
        let mut notes: Vec<Vec<String>> = vec![Vec::new()];
        for entry in &self.recommendations {
            let current = entry.current.map(show).join("/");
            let observed = entry
                .observed
                .as_ref()
                .map_or_else(|| "-".to_string(), |o| format!("{}/{}", o.cpu, o.memory));
            let recommended = entry.recommended.as_ref().map_or_else(
                || "-".to_string(),
                |r| format!("{}/{}/{}", r.cpu_request, r.memory_request, r.memory_limit),
            );
            rows.push([
                entry.namespace.clone(),
                entry.workload.clone().unwrap_or_else(|| "(namespace)".into()),
                entry.workload_from.unwrap_or("-").to_string(),
                entry.samples.to_string(),
                entry.pods.to_string(),
                current,
                observed,
                recommended,
            ]);
            let mut note: Vec<String> = entry.clamped.iter().map(|c| format!("clamped: {c}")).collect();
            note.extend(entry.reason.iter().map(|r| format!("no recommendation: {r}")));
            notes.push(note);
        }
        let widths: Vec<usize> = (0..8)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut text = String::new();
        for (row, note) in rows.iter().zip(&notes) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            let _ = writeln!(text, "{}", cells.join("  ").trim_end());
            for line in note {
                let _ = writeln!(text, "    {line}");
            }
        }
        let mut namespaces: Vec<&str> = self.recommendations.iter().map(|r| r.namespace.as_str()).collect();
        namespaces.dedup();
        let _ = writeln!(text);
        for namespace in namespaces {
            let entries: Vec<&Recommendation> = self
                .recommendations
                .iter()
                .filter(|r| r.namespace == namespace)
                .collect();
            let (cpu, memory, pods) = change_per_namespace(&entries);
            let _ = writeln!(
                text,
                "{namespace}: requested CPU {}, memory {} over {pods} running proxies (recommended − current, per workload × its pods)",
                signed(cpu, Quantity::from_millicores),
                signed(memory, Quantity::from_bytes)
            );
        }
        text
    }

    /// Patches as YAML documents, ready for `kubectl apply --server-side`.
    pub fn to_yaml(&self) -> Result<String, String> {
        let mut documents = Vec::new();
        for entry in &self.recommendations {
            let Some(values) = entry.values else { continue };
            let annotations: serde_json::Map<String, Value> = ADVISED_FIELDS
                .iter()
                .zip(values)
                .map(|(key, value)| (key.annotation().to_string(), json!(value.to_canonical())))
                .collect();
            let document = match &entry.workload {
                None => json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": entry.namespace, "annotations": annotations}}),
                Some(workload) => {
                    let (kind, name) = workload.split_once('/').unwrap_or(("", workload));
                    let Some((_, api_version)) = TEMPLATE_KINDS.iter().find(|(known, _)| *known == kind) else {
                        documents.push(format!(
                            "# {workload} in {}: no pod template to patch\n",
                            entry.namespace
                        ));
                        continue;
                    };
                    json!({"apiVersion": api_version, "kind": kind,
                        "metadata": {"name": name, "namespace": entry.namespace},
                        "spec": {"template": {"metadata": {"annotations": annotations}}}})
                }
            };
            documents.push(serde_saphyr::to_string(&document).map_err(|e| e.to_string())?);
        }
        Ok(documents.join("---\n"))
    }
}
