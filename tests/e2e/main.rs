//! End-to-end tests: our webhook behind a real kube-apiserver.
//!
//! Unit and loopback tests cannot show that the real caller accepts our patches: the API
//! server re-validates the mutated pod and runs LimitRanger, PodSecurity and ResourceQuota
//! after us. So this target starts etcd and kube-apiserver (from `KUBEBUILDER_ASSETS`, the
//! envtest convention), runs the injector in-process on a loopback port, registers it with
//! the webhook configuration from `deploy/` (pointed at `https://127.0.0.1:PORT/inject`), and
//! drives the API with the `kube` crate through the scenarios of issues 3, 4 and 7. It prints a
//! PASS/FAIL table with timings and fails if any scenario failed, or if the control plane
//! cannot start: a skipped e2e is not a pass.
//!
//! ```sh
//! export KUBEBUILDER_ASSETS="$(bash tests/e2e/scripts/ensure-control-plane.sh | tail -1)"
//! cargo test --features e2e --test e2e -- --nocapture
//! ```
//!
//! See `tests/e2e/README.md` for the layout and for running against an existing cluster.

mod annotator;
mod check;
mod cluster;
#[path = "../common/mod.rs"]
mod common;
mod control_plane;
mod corpus;
mod deploy;
mod harness;
mod helm;
mod injector;
mod istio_install;
mod kustomize;
mod live_istiod;
mod loopback_http;
mod pod_generator;
mod pods;
mod process;
mod report;
mod scenarios;
mod side_by_side;
mod sizing;
mod vpa;
// The `advise` test's Prometheus and data, for scenario 26.
#[path = "../advise/data.rs"]
mod data;
#[allow(dead_code)]
#[path = "../advise/prometheus.rs"]
mod prometheus;

use std::time::Instant;

use harness::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e() {
    let started = Instant::now();
    let mut harness = match Harness::start().await {
        Ok(harness) => harness,
        Err(error) => panic!("e2e setup failed:\n{error}"),
    };
    let setup = started.elapsed();
    let report = scenarios::run_all(&harness).await;
    let still_running = harness.check_running();
    let leftovers = harness.clean_up().await;
    eprintln!("{}", report.table(setup, started.elapsed()));
    for leftover in &leftovers {
        eprintln!("clean-up: {leftover}");
    }
    if report.failed() || still_running.is_err() {
        harness.keep_logs();
        eprintln!("{}", harness.log_tails());
        if let Err(error) = still_running {
            panic!("the control plane stopped during the run: {error}");
        }
        panic!("e2e: some scenarios failed (table above)");
    }
}
