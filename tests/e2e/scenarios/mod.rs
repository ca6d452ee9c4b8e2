//! The scenarios, run in order against one harness: 1 to 10 from issue 3 (the core
//! webhook), 11 to 13 from issue 4 (resource tuning), 14 and 15 from issue 7 (Pod Security,
//! mTLS from the API server), 16 from issue 12 (never admit what the API server refuses), 17 to
//! 22 from issue 13 (in-place resize and ResourceQuota), 23 to 27 from issue 14
//! (VPA recommendations as a sizing layer; `advise --apply`), 28 to 33 from issue 15 (the
//! installed Istio: its ConfigMaps, revisions, paths, templates), 34 from issue 15 (the live
//! side-by-side with a real istiod), 35 to 37 from issue 15 (live: chart values changed, a
//! canary moved by a tag, the takeover overlay with istiod registered), 38 to 40 from issue 16 (the Helm chart), 41 to 45 from
//! issue 16 (`check` on a live cluster, Events), 46 from issue 16 (deploy/'s RBAC exercised:
//! an injector acting as its ServiceAccount), 47 from issue 12 (the API server's limit on a pod's
//! annotations, met to the byte).

mod advise_apply;
mod annotation_limit;
mod chart_agreement;
mod check_cluster;
mod corpus_pods;
mod denials;
mod differential;
mod dry_run;
mod events;
mod failure_policy;
mod helm_chart;
mod injection;
mod installed_istio;
mod limit_ranges;
mod live_istiod;
mod live_istiod_next;
mod live_verdict;
mod manifests;
mod mtls;
mod namespace_tuning;
mod paths_and_templates;
mod pod_security;
mod qos;
mod quota;
mod rbac;
mod reinvocation;
mod resize;
mod restricted;
mod revisions;
mod selectors;
mod takeover;
mod vpa;

use std::time::Duration;

use crate::harness::Harness;
use crate::report::Report;

/// Runs every scenario and returns the table.
pub async fn run_all(harness: &Harness) -> Report {
    let mut report = Report::default();
    // One async fn per group, each boxed: a debug build gives every scenario future its own
    // stack slot in the poll frame, and all of them in one function overflow the test thread.
    Box::pin(group_1(harness, &mut report)).await;
    Box::pin(group_2(harness, &mut report)).await;
    Box::pin(group_3(harness, &mut report)).await;
    Box::pin(group_4(harness, &mut report)).await;
    report
}

/// Scenarios 1 to 15: the core webhook (issue 3), tuning (issue 4), Pod Security and mTLS (issue 7).
async fn group_1(harness: &Harness, report: &mut Report) {
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
}

/// Scenarios 16 to 22: never admit what the API server refuses (issue 12), resize and quota (issue 13).
async fn group_2(harness: &Harness, report: &mut Report) {
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
}

/// Scenarios 23 to 40: VPA and advise (issue 14), the installed Istio and istiod (issue 15),
/// the Helm chart (issue 16).
async fn group_3(harness: &Harness, report: &mut Report) {
    report
        .run(
            23,
            "VPA target sizes the proxy (Deployment chain)",
            vpa::follows_the_vpa(harness),
        )
        .await;
    report
        .run(
            24,
            "VPA within bounds; pod annotation wins",
            vpa::within_bounds(harness),
        )
        .await;
    report
        .run(
            25,
            "no istio-proxy entry (mode Off): fallback",
            vpa::falls_back_without_a_proxy_entry(harness),
        )
        .await;
    report
        .run(26, "advise --apply: diff, dry run, written", advise_apply::run(harness))
        .await;
    report
        .run(
            27,
            "VPA: ReplicaSet cache miss, warned",
            vpa::replica_set_cache_miss(harness),
        )
        .await;
    report
        .run(
            28,
            "installed Istio: ConfigMap change, next pod",
            installed_istio::change_applies_to_next_pod(harness),
        )
        .await;
    report
        .run(
            29,
            "installed Istio: bad ConfigMap keeps last good",
            installed_istio::bad_configmap_keeps_last_good(harness),
        )
        .await;
    report
        .run(
            30,
            "path parameters cluster/net",
            paths_and_templates::path_parameters(harness),
        )
        .await;
    report
        .run(
            31,
            "gateway template admitted",
            paths_and_templates::gateway_template(harness),
        )
        .await;
    report
        .run(32, "revisions and a tag, own ConfigMaps", revisions::run(harness))
        .await;
    report
        .run(33, "two injecting webhooks, one proxy", takeover::run(harness))
        .await;
    report
        .run_within(
            34,
            "live side-by-side with istiod",
            Duration::from_secs(300),
            // Boxed: their futures are large, and the test thread's stack is not.
            Box::pin(live_istiod::run(harness)),
        )
        .await;
    report
        .run_within(
            35,
            "live: chart values changed, next pod both",
            Duration::from_secs(180),
            Box::pin(live_istiod_next::chart_values_change(harness)),
        )
        .await;
    report
        .run_within(
            36,
            "live: canary, tag moved a → b, istiod and ours",
            Duration::from_secs(240),
            Box::pin(live_istiod_next::canary_with_tag(harness)),
        )
        .await;
    report
        .run_within(
            37,
            "live: takeover overlay, istiod registered",
            Duration::from_secs(120),
            Box::pin(live_istiod_next::takeover_with_istiod_registered(harness)),
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
}

/// Scenarios 41 to 47: check, Events and deploy/'s RBAC (issue 16); the annotation limit (issue 12).
async fn group_4(harness: &Harness, report: &mut Report) {
    report
        .run(41, "check: healthy registration", check_cluster::healthy(harness))
        .await;
    report
        .run(42, "check: wrong caBundle", check_cluster::wrong_ca_bundle(harness))
        .await;
    report
        .run(
            43,
            "check: namespace injection states",
            check_cluster::namespace_states(harness),
        )
        .await;
    report
        .run(44, "check: drift with sources", check_cluster::drift(harness))
        .await;
    report.run(45, "Events on the workload", events::run(harness)).await;
    report
        .run(46, "deploy/rbac.yaml: enough, and no more", rbac::run(harness))
        .await;
    report
        .run(
            47,
            "annotations at the API server's limit",
            annotation_limit::run(harness),
        )
        .await;
}
