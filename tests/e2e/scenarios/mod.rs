//! The scenarios, run in order against one harness: 1 to 10 from issue 3 (the core
//! webhook), 11 to 13 from issue 4 (resource tuning), 14 and 15 from issue 7 (Pod Security,
//! mTLS from the API server), 16 from issue 12 (never admit what the API server refuses), 17 to
//! 22 from issue 13 (in-place resize and ResourceQuota).

mod corpus_pods;
mod denials;
mod differential;
mod dry_run;
mod failure_policy;
mod injection;
mod limit_ranges;
mod manifests;
mod mtls;
mod namespace_tuning;
mod pod_security;
mod qos;
mod quota;
mod reinvocation;
mod resize;
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
        .run(17, "resize proxy within bounds: stored", resize::within_bounds(harness))
        .await;
    report
        .run(
            18,
            "resize proxy past bounds: clamped, denied",
            resize::past_bounds(harness),
        )
        .await;
    report
        .run(
            19,
            "resize app of ratio-sized pod: proxy follows",
            resize::app_with_ratio(harness),
        )
        .await;
    report
        .run(20, "quota limits filled; onQuota deny", quota::limits_required(harness))
        .await;
    report
        .run(21, "quota nearly full: fit, then deny", quota::nearly_full(harness))
        .await;
    report
        .run(22, "quota scoped to Terminating", quota::scoped(harness))
        .await;
    report
}
