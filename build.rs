//! Build script: records the git commit the binary is built from, for `--version`.
//!
//! The commit comes from `SIDECAR_INJECTOR_COMMIT` when set (the container recipe passes it
//! as a build argument, because its build context has no `.git`), else from
//! `git rev-parse HEAD` in the source tree, else `unknown`. The script runs again when that
//! variable changes or when `HEAD` moves, so the recorded commit never goes stale.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SIDECAR_INJECTOR_COMMIT");
    let commit = match std::env::var("SIDECAR_INJECTOR_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_string(),
        _ => {
            watch_git_head();
            git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
        }
    };
    println!("cargo:rustc-env=SIDECAR_INJECTOR_COMMIT={commit}");
}

/// Reruns this script when HEAD or the branch it points to moves (worktrees included).
fn watch_git_head() {
    let mut watched = vec!["HEAD".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    watched.push("packed-refs".to_string());
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path = PathBuf::from(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}

/// Runs git in the package's directory; `None` when git or the repository is missing.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let output = Command::new("git").arg("-C").arg(&dir).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}
