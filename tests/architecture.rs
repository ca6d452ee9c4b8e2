//! The shape of the code, checked: no module imports another in a circle, and the engine
//! crate depends on no async runtime, HTTP, TLS or Kubernetes client crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates the pure engine must never reach, directly or through another crate.
const FORBIDDEN_IN_ENGINE: &[&str] = &[
    "tokio",
    "hyper",
    "hyper-util",
    "axum",
    "rustls",
    "tokio-rustls",
    "kube",
    "kube-client",
    "kube-runtime",
    "reqwest",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `src`, keyed by its module path (`resources::bounds`).
fn modules(src: &Path) -> BTreeMap<Vec<String>, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                module.pop();
            }
            found.insert(module, std::fs::read_to_string(&path).unwrap());
        }
    }
    found
}

/// Edges between top-level modules (`config` → `quantity`) from `crate::` and `super::` paths.
fn top_level_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules(src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &modules {
        let Some(top) = module.first() else { continue };
        // Doc links name modules without importing them; only code counts.
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (index, _) in code.match_indices("crate::").chain(code.match_indices("super::")) {
            let path: String = code[index..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut parts: Vec<&str> = path.split("::").filter(|part| !part.is_empty()).collect();
            // `super` is the parent of the file's module (an inline `mod tests` stays
            // within its top-level module, so the approximation cannot add a false edge).
            let mut target: Vec<String> = if parts.first() == Some(&"crate") {
                parts.remove(0);
                Vec::new()
            } else {
                let mut base = module.clone();
                while parts.first() == Some(&"super") {
                    parts.remove(0);
                    base.pop();
                }
                base
            };
            target.extend(parts.iter().map(|part| part.to_string()));
            if let Some(first) = target.first()
                && first != top
                && modules.contains_key(&vec![first.clone()])
            {
                edges.entry(top.clone()).or_default().insert(first.clone());
            }
        }
    }
    edges
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|seen| seen == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_another_in_a_circle() {
    for crate_src in [root().join("engine/src"), root().join("src")] {
        let edges = top_level_edges(&crate_src);
        assert!(!edges.is_empty(), "no module edges found in {}", crate_src.display());
        if let Some(cycle) = find_cycle(&edges) {
            panic!("import cycle in {}: {}", crate_src.display(), cycle.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("config".to_string(), BTreeSet::from(["resources".to_string()])),
        ("resources".to_string(), BTreeSet::from(["config".to_string()])),
    ]
    .into();
    assert_eq!(find_cycle(&edges).unwrap(), ["config", "resources", "config"]);
}

/// Packages in Cargo.lock and what each depends on (all dependency kinds, so this is
/// stricter than `cargo tree -e normal`).
fn lock_graph() -> BTreeMap<String, Vec<String>> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let mut graph = BTreeMap::new();
    for package in lock.split("[[package]]").skip(1) {
        let name = package
            .lines()
            .find_map(|line| line.strip_prefix("name = \""))
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap()
            .to_string();
        let dependencies = package
            .split_once("dependencies = [")
            .map(|(_, rest)| {
                rest.split(']')
                    .next()
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|line| line.trim().strip_prefix('"'))
                    .map(|dep| dep.split([' ', '"']).next().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        graph
            .entry(name)
            .or_insert_with(Vec::new)
            .extend::<Vec<String>>(dependencies);
    }
    graph
}

#[test]
fn engine_crate_reaches_no_runtime_http_tls_or_client_crate() {
    let graph = lock_graph();
    let mut seen = BTreeSet::new();
    let mut stack = vec!["sidecar-injector-engine".to_string()];
    while let Some(name) = stack.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        stack.extend(graph.get(&name).cloned().unwrap_or_default());
    }
    assert!(
        seen.contains("serde"),
        "the lock file walk found the engine's dependencies"
    );
    let reached: Vec<&&str> = FORBIDDEN_IN_ENGINE
        .iter()
        .filter(|name| seen.contains(**name))
        .collect();
    assert!(reached.is_empty(), "the engine crate reaches {reached:?}");
    assert!(
        graph["sidecar-injector"].iter().any(|dep| dep == "tokio"),
        "the walk reads dependencies"
    );
}
