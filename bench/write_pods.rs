//! Writes every benchmark pod shape as an AdmissionReview JSON file, plus `index.json`
//! listing them, so that the Istio peer (bench/istio-peer) injects exactly the same pods
//! as the Rust engine benchmark.
//!
//! Usage: `cargo run --release --example write-pods -- DIR`

use std::path::PathBuf;
use std::process::ExitCode;

#[path = "pods.rs"]
mod pods;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: write-pods DIR");
        return ExitCode::FAILURE;
    };
    match write_all(&dir) {
        Ok(count) => {
            eprintln!("wrote {count} AdmissionReviews and index.json to {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("write-pods: {error}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(dir: &std::path::Path) -> Result<usize, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut index = Vec::new();
    for shape in pods::all_shapes() {
        let file = format!("{}.json", shape.name);
        let path = dir.join(&file);
        std::fs::write(&path, shape.review_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        index.push(serde_json::json!({"name": shape.name, "file": file, "bytes": shape.pod_bytes()}));
    }
    let path = dir.join("index.json");
    let text = serde_json::to_string_pretty(&index).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(index.len())
}
