//! Istio's own objects for the live side-by-side: rendered from its charts, applied to the API server.
//!
//! `tests/e2e/scripts/ensure-istiod.sh` builds istiod (`pilot-discovery`) and `istio-render`
//! from the `istio.io/istio` module pinned in `tests/e2e/istiod/go.mod`, and prints their
//! folder. The scenarios render the charts again for each setting they need (a revision, a
//! tag, changed values) with istioctl's `--set` paths, and apply what comes out with
//! server-side apply: Istio's CRDs, the `istio[-<rev>]` and `istio-sidecar-injector[-<rev>]`
//! ConfigMaps, and the chart's MutatingWebhookConfigurations, pointed at istiod on loopback
//! through the chart's own `istiodRemote.injectionURL` value.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use sidecar_injector::manifest::read_documents;

use crate::check::Context;

/// The environment variable naming the folder `ensure-istiod.sh` printed.
pub const ASSETS_VARIABLE: &str = "SIDECAR_INJECTOR_ISTIOD";
/// The namespace istiod runs in, as the chart installs it.
pub const ISTIO_NAMESPACE: &str = "istio-system";
/// The field manager of everything applied here.
const FIELD_MANAGER: &str = "sidecar-injector-e2e";

/// The folder holding `pilot-discovery` and `istio-render`.
pub struct IstioAssets {
    dir: PathBuf,
}

/// One rendering of the charts.
pub struct Rendered {
    /// Istio's CustomResourceDefinitions.
    pub crds: Vec<Value>,
    /// The ConfigMaps and MutatingWebhookConfigurations of the `istio-discovery` chart.
    pub objects: Vec<Value>,
    /// The environment the chart gives istiod's container (literal values only).
    pub env: Vec<(String, String)>,
}

// === impl IstioAssets ===

impl IstioAssets {
    /// `$SIDECAR_INJECTOR_ISTIOD`, or the folder `ensure-istiod.sh` prints (quick once
    /// cached; the first build takes minutes, which `.ci/run` does before the e2e).
    pub fn find() -> Result<Self, String> {
        let dir = match std::env::var_os(ASSETS_VARIABLE).filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => run_ensure_script()?,
        };
        for program in ["pilot-discovery", "istio-render"] {
            if !dir.join(program).is_file() {
                return Err(format!(
                    "{} has no {program}; run `bash tests/e2e/scripts/ensure-istiod.sh` and set {ASSETS_VARIABLE} to the folder it prints",
                    dir.display()
                ));
            }
        }
        Ok(IstioAssets { dir })
    }

    /// istiod.
    pub fn pilot_discovery(&self) -> PathBuf {
        self.dir.join("pilot-discovery")
    }

    /// Renders the charts with istioctl `--set` values into `out` and reads the result.
    pub fn render(&self, out: &Path, sets: &[String]) -> Result<Rendered, String> {
        let mut command = Command::new(self.dir.join("istio-render"));
        command.arg("-out").arg(out);
        for set in sets {
            command.arg("-set").arg(set);
        }
        let output = command.output().context("running istio-render")?;
        if !output.status.success() {
            return Err(format!(
                "istio-render {} failed ({}): {}",
                sets.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let documents = |file: &str| -> Result<Vec<Value>, String> {
            let path = out.join(file);
            let text = std::fs::read_to_string(&path).context(format!("reading {}", path.display()))?;
            Ok(read_documents(&text)
                .context(format!("parsing {}", path.display()))?
                .into_iter()
                .filter(|document| document.get("kind").is_some())
                .collect())
        };
        let env_path = out.join("istiod.env");
        let env_text = std::fs::read_to_string(&env_path).context(format!("reading {}", env_path.display()))?;
        let env = env_text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        Ok(Rendered {
            crds: documents("crds.yaml")?,
            objects: documents("istiod.yaml")?,
            env,
        })
    }
}

fn run_ensure_script() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/scripts/ensure-istiod.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .context(format!("running {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().last().filter(|_| output.status.success()) {
        Some(dir) => Ok(PathBuf::from(dir.trim())),
        None => Err(format!(
            "{} failed ({}), so there is no istiod to compare with; set {ASSETS_VARIABLE} to a folder it made: {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}

// === impl Rendered ===

impl Rendered {
    /// The rendered objects of `kind`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |object| object.get("kind").and_then(Value::as_str) == Some(kind))
    }

    /// The `data` key `key` of the rendered ConfigMap `name`.
    pub fn config_map_data(&self, name: &str, key: &str) -> Option<&str> {
        self.of_kind("ConfigMap")
            .find(|object| object["metadata"]["name"] == name)
            .and_then(|object| object["data"][key].as_str())
    }
}

/// Creates `istio-system` (once) and applies `objects` with server-side apply.
pub async fn apply(client: &kube::Client, objects: &[Value]) -> Result<(), String> {
    let namespaces = Api::<Namespace>::all(client.clone());
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ISTIO_NAMESPACE}});
    namespaces
        .patch(ISTIO_NAMESPACE, &apply_params(), &Patch::Apply(&namespace))
        .await
        .context(format!("creating namespace {ISTIO_NAMESPACE}"))?;
    for object in objects {
        apply_one(client, object).await?;
    }
    Ok(())
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

async fn apply_one(client: &kube::Client, object: &Value) -> Result<(), String> {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind, name) = (text("/apiVersion"), text("/kind"), text("/metadata/name"));
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let api: Api<DynamicObject> = match object.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(name, &apply_params(), &Patch::Apply(object))
        .await
        .map(drop)
        .context(format!("applying {kind} {name}"))
}
