//! What `--version` prints: the package version and the git commit it was built from.
//!
//! The commit is recorded by `build.rs` (from `SIDECAR_INJECTOR_COMMIT`, else `git`), so a
//! running image can be traced to its source.

/// The package version, as in `Cargo.toml`.
pub const PACKAGE: &str = env!("CARGO_PKG_VERSION");

/// The git commit the binary was built from, or `unknown` when neither the build argument nor
/// a git checkout gave one.
pub const COMMIT: &str = env!("SIDECAR_INJECTOR_COMMIT");

/// The `--version` text after the program name: `0.1.0 (commit 0123abcd...)`.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SIDECAR_INJECTOR_COMMIT"),
    ")"
);
