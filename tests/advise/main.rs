//! `advise` against a real Prometheus (Debian's `prometheus` package; `.ci/run` installs it
//! with `tests/advise/scripts/ensure-prometheus.sh`). The test writes usage with known
//! percentiles ([`data`]) as OpenMetrics, turns it into TSDB blocks with `promtool tsdb
//! create-blocks-from openmetrics`, starts Prometheus over them on a loopback port and runs
//! the `sidecar-injector advise` binary. A missing `prometheus` or `promtool` fails the
//! test; it is never skipped.
//!
//! Run: `cargo test --features e2e --test advise -- --nocapture`.

// Shared with the e2e tests; not every helper is needed here.
#[allow(dead_code)]
#[path = "../e2e/process.rs"]
mod process;

mod data;
mod prometheus;

use std::process::{Command, Output};

use serde_json::{Value, json};

use self::prometheus::RunningPrometheus;

/// The config the runs use: a `cpu.request` floor that clamps `Deployment/api`.
const CONFIG: &str = "bounds:\n  cpu.request: {min: 25m}\n";

fn advise(url: &str, config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sidecar-injector"))
        .arg("advise")
        .arg("--prometheus")
        .arg(url)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("the sidecar-injector binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn entry<'a>(document: &'a Value, namespace: &str, workload: Option<&str>) -> &'a Value {
    document["recommendations"]
        .as_array()
        .expect("a recommendations array")
        .iter()
        .find(|r| r["namespace"] == namespace && r["workload"].as_str() == workload)
        .unwrap_or_else(|| panic!("no entry for {namespace} {workload:?} in {document:#}"))
}

/// Fails with the command's output unless it exited 2 with one `error: ` line naming `needle`.
fn assert_one_line_failure(output: &Output, needle: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "no recommendation on failure: {}",
        text(&output.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(needle),
        "{needle:?} in {stderr}"
    );
}

#[test]
fn advise_against_a_real_prometheus() {
    let prometheus = RunningPrometheus::start().unwrap_or_else(|e| panic!("{e}"));
    let config = prometheus.dir().join("config.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let url = prometheus.url();

    // --- JSON against the known answer ---------------------------------------------
    let output = advise(&url, &config, &["--window", "6h", "-n", "shop", "-o", "json"]);
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stderr),
        prometheus.log_tail()
    );
    let document: Value = serde_json::from_slice(&output.stdout).expect("advise -o json is JSON");
    println!("advise -o json (namespace shop):\n{}", text(&output.stdout));
    assert_eq!(document["window"], "6h");
    assert_eq!(
        document["recommendations"].as_array().unwrap().len(),
        4,
        "shop, web, api, db and not pay: {document:#}"
    );
    // Two ReplicaSets of one Deployment; 1m…200m once each with a counter restart: p90 180m.
    assert_eq!(
        entry(&document, "shop", Some("Deployment/web")),
        &json!({"namespace": "shop", "workload": "Deployment/web", "samples": 200,
            "observed": {"cpu": "180m", "memory": "50Mi"},
            "recommended": {"cpu.request": "200m", "memory.request": "60Mi", "memory.limit": "60Mi"},
            "clamped": [], "reason": null, "workloadFrom": "kube_pod_owner"})
    );
    // Named from the pod; 8m rounds to 10m, then the config's min raises it.
    assert_eq!(
        entry(&document, "shop", Some("Deployment/api")),
        &json!({"namespace": "shop", "workload": "Deployment/api", "samples": 200,
            "observed": {"cpu": "8m", "memory": "20Mi"},
            "recommended": {"cpu.request": "25m", "memory.request": "24Mi", "memory.limit": "24Mi"},
            "clamped": ["cpu.request 10m raised to 25m (cluster min)"], "reason": null, "workloadFrom": "pod name"})
    );
    assert_eq!(
        entry(&document, "shop", Some("StatefulSet/db")),
        &json!({"namespace": "shop", "workload": "StatefulSet/db", "samples": 30,
            "observed": {"cpu": "50m", "memory": "100Mi"}, "recommended": null, "clamped": [],
            "reason": "30 samples (30 CPU, 31 memory), fewer than --min-samples 100", "workloadFrom": "pod name"})
    );
    // All 430 rates of the namespace: rank 387 is 157m; the peak is db's 100Mi.
    assert_eq!(
        entry(&document, "shop", None),
        &json!({"namespace": "shop", "workload": null, "samples": 430,
            "observed": {"cpu": "157m", "memory": "100Mi"},
            "recommended": {"cpu.request": "175m", "memory.request": "116Mi", "memory.limit": "116Mi"},
            "clamped": [], "reason": null, "workloadFrom": null})
    );

    // --- the flags move the answer ----------------------------------------------------
    let output = advise(
        &url,
        &config,
        &[
            "--window",
            "6h",
            "-n",
            "pay",
            "-n",
            "shop",
            "-o",
            "json",
            "--cpu-percentile",
            "50",
            "--memory-percentile",
            "50",
            "--memory-margin",
            "0",
            "--min-samples",
            "10",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    let web = entry(&document, "shop", Some("Deployment/web"));
    assert_eq!(web["observed"], json!({"cpu": "100m", "memory": "36Mi"}), "{web:#}");
    assert_eq!(web["recommended"]["cpu.request"], "100m");
    assert_eq!(web["recommended"]["memory.request"], "36Mi");
    let db = entry(&document, "shop", Some("StatefulSet/db"));
    assert_eq!(db["recommended"]["cpu.request"], "50m", "{db:#}");
    assert_eq!(
        entry(&document, "pay", None)["observed"],
        json!({"cpu": "5m", "memory": "10Mi"})
    );

    // --- text: current sizing as explain computes it, and the summed change ------------
    let output = advise(&url, &config, &["--window", "6h", "-n", "shop"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    println!("advise -o text:\n{table}");
    let row = |workload: &str| {
        table
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some(workload))
            .unwrap_or_else(|| panic!("no {workload} row in\n{table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    // web's newest pod annotates proxyCPU 150m; the rest comes from the config defaults.
    assert_eq!(
        row("Deployment/web"),
        [
            "shop",
            "Deployment/web",
            "kube_pod_owner",
            "200",
            "1",
            "150m/128Mi/1Gi",
            "180m/50Mi",
            "200m/60Mi/60Mi"
        ]
    );
    assert_eq!(row("Deployment/api")[2..5], ["pod", "name", "200"]);
    assert_eq!(row("Deployment/api")[6], "100m/128Mi/1Gi");
    assert!(
        table.contains("    clamped: cpu.request 10m raised to 25m (cluster min)\n"),
        "{table}"
    );
    assert!(
        table.contains("    no recommendation: 30 samples (30 CPU, 31 memory), fewer than --min-samples 100\n"),
        "{table}"
    );
    // web +50m and api -75m; web -68Mi and api -104Mi, one running proxy each.
    assert!(
        table.contains("shop: requested CPU -25m, memory -172Mi over 2 running proxies"),
        "{table}"
    );

    // --- YAML patches --------------------------------------------------------------
    let output = advise(&url, &config, &["--window", "6h", "-n", "shop", "-o", "yaml"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let yaml = text(&output.stdout);
    let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let cpu_key = sidecar_injector::engine::annotations::PROXY_CPU;
    let memory_key = sidecar_injector::engine::annotations::PROXY_MEMORY_LIMIT;
    assert_eq!(documents.len(), 3, "namespace, web and api; db has none: {yaml}");
    assert_eq!(documents[0]["kind"], "Namespace");
    assert_eq!(documents[0]["metadata"]["annotations"][cpu_key], "175m");
    let web = documents
        .iter()
        .find(|d| d["metadata"] == json!({"name": "web", "namespace": "shop"}))
        .unwrap_or_else(|| panic!("a patch of Deployment web: {yaml}"));
    assert_eq!(web["kind"], "Deployment");
    assert_eq!(web["apiVersion"], "apps/v1");
    assert_eq!(web["spec"]["template"]["metadata"]["annotations"][memory_key], "60Mi");

    // --- failures: one line, exit status 2 ---------------------------------------------
    let output = advise(&url, &config, &["--window", "6h", "-n", "nowhere"]);
    assert_one_line_failure(
        &output,
        "has no container_cpu_usage_seconds_total or container_memory_working_set_bytes series",
    );
    let output = advise(&url, &config, &["--window", "6h", "-n", "("]);
    assert_one_line_failure(&output, "answered 400");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let output = advise(&closed_url, &config, &["--window", "6h"]);
    assert_one_line_failure(&output, "is unreachable");
    // A server that is not Prometheus.
    let output = advise(&format!("{url}/nothing-here"), &config, &["--window", "6h"]);
    assert_one_line_failure(&output, "answered 404");

    // Data outside the window: none of the series.
    let output = advise(&url, &config, &["--window", "30m", "-n", "shop"]);
    assert_one_line_failure(&output, "in the last 30m in namespaces shop");
}
