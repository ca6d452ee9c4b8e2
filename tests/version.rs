//! `--version` names the package version and the git commit the binary was built from.

use std::process::Command;

/// The commit `build.rs` should have recorded: the build argument when set, else git's HEAD.
fn expected_commit() -> Option<String> {
    if let Ok(commit) = std::env::var("SIDECAR_INJECTOR_COMMIT")
        && !commit.trim().is_empty()
    {
        return Some(commit.trim().to_string());
    }
    let output = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[test]
fn version_prints_the_package_version_and_the_commit() {
    let output = Command::new(env!("CARGO_BIN_EXE_sidecar-injector"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let commit = expected_commit().unwrap_or_else(|| "unknown".to_string());
    assert_eq!(
        printed,
        format!("sidecar-injector {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
}
