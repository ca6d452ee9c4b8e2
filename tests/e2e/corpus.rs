//! Pods built from Istio's injection test inputs (`../shared/corpus/istio-inject`).
//!
//! Each input is a workload (Deployment, DaemonSet, Job, ReplicaSet, ReplicationController,
//! OpenShift DeploymentConfig, a List of them) or a Pod. Its pod template becomes a Pod
//! named after the file, so the API server sees what a controller would create from it.
//! The folder is `$SIDECAR_INJECTOR_CORPUS`, or `../shared/corpus/istio-inject` beside the
//! repository; see `../shared/corpus/README.md` for its source and licence (Apache-2.0,
//! Copyright Istio Authors).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use sidecar_injector::manifest::{pod_templates, read_documents, template_as_pod};

use crate::check::Context;

/// One pod from the corpus.
pub struct CorpusPod {
    /// The input file's name.
    pub file: String,
    /// The pod, with a name and without a namespace.
    pub pod: Pod,
}

/// The corpus folder.
pub fn corpus_dir() -> PathBuf {
    match std::env::var_os("SIDECAR_INJECTOR_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/istio-inject"),
    }
}

/// The input files (`*.yaml`, not Helm values `*.iop.yaml`), by name.
pub fn inputs(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).context(format!(
        "reading the corpus {} (set SIDECAR_INJECTOR_CORPUS to its folder)",
        dir.display()
    ))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".yaml") && !name.ends_with(".iop.yaml")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The pods an input file describes; empty for files with no pod template (a Service).
pub fn pods_in(path: &Path) -> Result<Vec<CorpusPod>, String> {
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let text = std::fs::read_to_string(path).context(format!("reading {}", path.display()))?;
    let documents = read_documents(&text).context(format!("parsing {file}"))?;
    let templates: Vec<&Value> = documents
        .iter()
        .flat_map(pod_templates)
        .map(|found| found.template)
        .filter(|template| template.get("spec").is_some())
        .collect();
    let stem = dns_label(file.trim_end_matches(".yaml"));
    let many = templates.len() > 1;
    templates
        .into_iter()
        .enumerate()
        .map(|(index, template)| {
            let name = if many { format!("{stem}-{index}") } else { stem.clone() };
            let mut pod = template_as_pod(template);
            if let Some(map) = pod["metadata"].as_object_mut() {
                map.remove("namespace");
                map.remove("creationTimestamp");
                map.insert("name".into(), json!(name));
            }
            let pod = serde_json::from_value(pod).context(format!("{file}: pod template is not a Pod"))?;
            Ok(CorpusPod {
                file: file.clone(),
                pod,
            })
        })
        .collect()
}

/// `name` as a DNS label: lowercase letters, digits and dashes, at most 63 characters.
fn dns_label(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    mapped.trim_matches('-').to_string()
}
