//! Renders and lints the Helm chart in `deploy/helm/sidecar-injector` with a real `helm`.
//!
//! Looked up in order: `$HELM`, `helm` in `$KUBEBUILDER_ASSETS` (where `ensure-helm.sh`
//! links the one it builds), then `helm` on `PATH`. None found is a failure with the fix in
//! the message, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sidecar_injector::manifest::read_documents;

use crate::check::Context;

/// The release name the scenarios render with.
pub const RELEASE: &str = "sidecar-injector";

/// A `helm` binary.
pub struct Helm {
    program: PathBuf,
    /// Helm's cache, config and data folders, inside the run's scratch folder.
    home: PathBuf,
}

/// What `helm template` is given besides the chart: values files and `--set-file` pairs.
#[derive(Default)]
pub struct Values<'a> {
    /// `--values FILE`, in order.
    pub files: Vec<PathBuf>,
    /// `--set-file KEY=PATH`.
    pub set_files: Vec<(&'a str, PathBuf)>,
    /// `--set KEY=VALUE`.
    pub set: Vec<(&'a str, &'a str)>,
}

// === impl Helm ===

impl Helm {
    /// Finds a helm to use, keeping its state under `scratch`.
    pub fn find(scratch: &Path) -> Result<Self, String> {
        let home = scratch.join("helm-home");
        if let Some(path) = std::env::var_os("HELM") {
            return Ok(Helm {
                program: path.into(),
                home,
            });
        }
        if let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS") {
            let path = Path::new(&assets).join("helm");
            if path.is_file() {
                return Ok(Helm { program: path, home });
            }
        }
        let on_path = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("helm"))
                .find(|candidate| candidate.is_file())
        });
        on_path.map(|program| Helm { program, home }).ok_or_else(|| {
            "no helm: run `bash tests/e2e/scripts/ensure-helm.sh \"$KUBEBUILDER_ASSETS\"` (it builds one and \
             links it into the KUBEBUILDER_ASSETS folder), or set HELM, or put helm on PATH"
                .to_string()
        })
    }

    /// The repository's chart.
    pub fn chart_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/sidecar-injector")
    }

    /// `helm lint --strict` of the chart with `values`: its `[INFO]` lines (advice, such as
    /// "icon is recommended"), or why it is not clean (any warning or error).
    pub fn lint(&self, values: &Values<'_>) -> Result<Vec<String>, String> {
        let output = self.run("lint", &["--strict"], values)?;
        // --strict already fails on warnings; checked here too, so no helm version's
        // exit status can hide one.
        if output.contains("[WARNING]") || output.contains("[ERROR]") {
            return Err(format!("helm lint --strict is not clean:\n{output}"));
        }
        Ok(output
            .lines()
            .filter(|line| line.contains("[INFO]"))
            .map(|line| line.trim().to_string())
            .collect())
    }

    /// `helm template` of the chart into `namespace` with `values`, as objects.
    pub fn template(&self, namespace: &str, values: &Values<'_>) -> Result<Vec<Value>, String> {
        let output = self.run("template", &[RELEASE, "--namespace", namespace], values)?;
        read_documents(&output).context("parsing the output of helm template")
    }

    /// The chart's NOTES.txt as `helm install` would print it for `values`. `helm template`
    /// leaves NOTES.txt out, so a copy of the chart gets it as a partial and a ConfigMap
    /// template that includes it, and that ConfigMap is rendered.
    pub fn notes(&self, namespace: &str, values: &Values<'_>) -> Result<String, String> {
        let copy = crate::deploy::copy_to(&self.home.join("notes"))?.join("helm/sidecar-injector");
        let templates = copy.join("templates");
        let notes = std::fs::read_to_string(templates.join("NOTES.txt")).context("reading NOTES.txt")?;
        let partial = format!("{{{{- define \"notes-preview\" }}}}\n{notes}{{{{- end }}}}\n");
        std::fs::write(templates.join("_notes-preview.tpl"), partial).context("writing the NOTES partial")?;
        let config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-preview\ndata:\n  notes: |\n    \
                          {{- include \"notes-preview\" . | nindent 4 }}\n";
        std::fs::write(templates.join("notes-preview.yaml"), config_map).context("writing the NOTES template")?;
        let output = self.run_on(
            &copy,
            "template",
            &[
                RELEASE,
                "--namespace",
                namespace,
                "--show-only",
                "templates/notes-preview.yaml",
            ],
            values,
        )?;
        let documents = read_documents(&output).context("parsing the rendered NOTES")?;
        documents
            .first()
            .and_then(|config_map| config_map["data"]["notes"].as_str())
            .map(String::from)
            .ok_or_else(|| format!("no NOTES in {output}"))
    }

    fn run(&self, command: &str, leading: &[&str], values: &Values<'_>) -> Result<String, String> {
        self.run_on(&Self::chart_dir(), command, leading, values)
    }

    fn run_on(&self, chart: &Path, command: &str, leading: &[&str], values: &Values<'_>) -> Result<String, String> {
        let mut cmd = Command::new(&self.program);
        cmd.arg(command);
        // `helm template NAME CHART`; `helm lint CHART`.
        let (release, rest) = match command {
            "template" => (leading.first().copied(), &leading[1..]),
            _ => (None, leading),
        };
        cmd.args(release).arg(chart).args(rest);
        for file in &values.files {
            cmd.arg("--values").arg(file);
        }
        for (key, path) in &values.set_files {
            cmd.arg("--set-file").arg(format!("{key}={}", path.display()));
        }
        for (key, value) in &values.set {
            cmd.arg("--set").arg(format!("{key}={value}"));
        }
        // No repositories, no plugins, no state outside the test: helm reads only the chart.
        cmd.env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"));
        let output = cmd
            .output()
            .context(format!("running {} {command}", self.program.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            return Err(format!(
                "helm {command} failed ({}): {}{}",
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(stdout)
    }
}
