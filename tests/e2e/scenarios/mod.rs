//! The ten scenarios of issue 3, run in order against one harness.

mod corpus_pods;
mod denials;
mod dry_run;
mod failure_policy;
mod injection;
mod manifests;
mod pod_security;
mod reinvocation;
mod selectors;

use crate::harness::Harness;
use crate::report::Report;

/// Runs every scenario and returns the table.
pub async fn run_all(harness: &Harness) -> Report {
    let mut report = Report::default();
    report
        .run(
            1,
            "injection, resources read back",
            injection::annotated_resources(harness),
        )
        .await;
    report
        .run(2, "namespace and object selectors", selectors::run(harness))
        .await;
    report
        .run(3, "invalid annotation denied", denials::invalid_annotation(harness))
        .await;
    report
        .run(
            4,
            "request above limit denied by us",
            denials::request_above_limit(harness),
        )
        .await;
    report.run(5, "server-side dry run", dry_run::run(harness)).await;
    report
        .run(6, "reinvocation keeps one proxy", reinvocation::run(harness))
        .await;
    report
        .run(7, "failurePolicy Fail, webhook down", failure_policy::run(harness))
        .await;
    report
        .run(8, "Pod Security baseline vs istio-init", pod_security::run(harness))
        .await;
    report
        .run(9, "Istio corpus pods admitted", corpus_pods::run(harness))
        .await;
    report
        .run(10, "deploy/ accepted by dry-run apply", manifests::run(harness))
        .await;
    report
}
