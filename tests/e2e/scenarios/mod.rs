//! The scenarios, run in order against one harness: 1 to 10 from issue 3 (the core
//! webhook), 11 to 13 from issue 4 (resource tuning), 14 and 15 from issue 7 (Pod Security,
//! mTLS from the API server), 16 from issue 12 (never admit what the API server refuses),
//! 38 to 40 from issue 16 (the Helm chart).

mod chart_agreement;
mod corpus_pods;
mod denials;
mod differential;
mod dry_run;
mod failure_policy;
mod helm_chart;
mod injection;
mod limit_ranges;
mod manifests;
mod mtls;
mod namespace_tuning;
mod pod_security;
mod qos;
mod reinvocation;
mod restricted;
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
        .run(11, "namespace annotation, then changed", namespace_tuning::run(harness))
        .await;
    report
        .run(12, "LimitRanges judged by LimitRanger", limit_ranges::run(harness))
        .await;
    report.run(13, "QoS class kept", qos::run(harness)).await;
    report
        .run(14, "Pod Security restricted, CNI + native", restricted::run(harness))
        .await;
    report.run(15, "mTLS: API server client cert", mtls::run(harness)).await;
    report
        .run(
            16,
            "differential: API server with and without us",
            differential::run(harness),
        )
        .await;
    report
        .run(
            38,
            "Helm chart defaults accepted by dry-run apply",
            helm_chart::defaults(harness),
        )
        .await;
    report
        .run(
            39,
            "Helm chart, every option, accepted",
            helm_chart::every_option(harness),
        )
        .await;
    report
        .run(40, "Helm chart agrees with kustomize", chart_agreement::run(harness))
        .await;
    report
}
