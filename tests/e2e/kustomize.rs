//! Renders a kustomization the way `kubectl apply -k` would, with a real kustomize.
//!
//! Looked up in order: `$KUSTOMIZE`, `kustomize` in `$KUBEBUILDER_ASSETS` (where
//! `ensure-control-plane.sh` puts the one it builds), `kustomize` on `PATH`, then
//! `kubectl kustomize` (envtest's asset folders ship kubectl). None found is a failure with
//! the fix in the message, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sidecar_injector::manifest::read_documents;

use crate::check::Context;

/// A kustomize command line, without the folder.
pub struct Kustomize {
    program: PathBuf,
    args: Vec<&'static str>,
}

// === impl Kustomize ===

impl Kustomize {
    /// Finds a kustomize to use.
    pub fn find() -> Result<Self, String> {
        let standalone = |program: PathBuf| Kustomize {
            program,
            args: vec!["build"],
        };
        if let Some(path) = std::env::var_os("KUSTOMIZE") {
            return Ok(standalone(path.into()));
        }
        if let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS") {
            let path = Path::new(&assets).join("kustomize");
            if path.is_file() {
                return Ok(standalone(path));
            }
        }
        if let Some(path) = on_path("kustomize") {
            return Ok(standalone(path));
        }
        if let Some(path) = on_path("kubectl") {
            return Ok(Kustomize {
                program: path,
                args: vec!["kustomize"],
            });
        }
        Err(
            "no kustomize: run `bash tests/e2e/scripts/ensure-control-plane.sh` (it builds one into the \
             KUBEBUILDER_ASSETS folder), or set KUSTOMIZE, or put kustomize or kubectl on PATH"
                .into(),
        )
    }

    /// What runs, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.program.display(), self.args.join(" "))
    }

    /// Builds `dir` and returns its objects.
    pub fn build(&self, dir: &Path) -> Result<Vec<Value>, String> {
        let output = Command::new(&self.program)
            .args(&self.args)
            .arg(dir)
            .output()
            .context(format!("running {}", self.describe()))?;
        if !output.status.success() {
            return Err(format!(
                "{} {} failed ({}): {}",
                self.describe(),
                dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        read_documents(&text).context(format!("parsing the build of {}", dir.display()))
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
