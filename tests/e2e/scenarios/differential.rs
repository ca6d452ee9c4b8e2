//! Scenario 16: a differential test against the API server's own validation.
//!
//! Thousands of seeded pods ([`crate::pod_generator`]) are each dry-run (`dryRun=All`) twice
//! through one client: in a namespace the webhook ignores, then in one it injects. Every pod
//! the API server accepts on its own must, with the webhook, be admitted with exactly one
//! proxy (a Guaranteed pod still Guaranteed), be deliberately skipped (the engine says so),
//! or be denied by our webhook. An API-server rejection after our patch, or a failed webhook
//! call, fails the scenario. A second pass runs the pods with pod-level resources, and every
//! fourth other one, beside a LimitRange `type: Pod` max, which LimitRanger judges after us.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::{LimitRangeItem, Pod};
use kube::api::{Api, PostParams};
use sidecar_injector::engine::Decision;
use sidecar_injector::engine::NamespaceContext;
use sidecar_injector::engine::annotations::PROVENANCE;
use sidecar_injector::engine::{Injector, PodRequest};
use tokio::task::JoinSet;

use crate::check::{Context, Outcome, ensure};
use crate::cluster::api_message;
use crate::harness::Harness;
use crate::pod_generator;
use crate::pods::proxy_count;

/// The seed; change it to explore, keep it to replay.
const SEED: u64 = 0x5EED_0012;
/// Pods generated; some are invalid on their own, and at least [`MINIMUM_VALID`] are not.
const PODS: usize = 2400;
/// The issue asks for at least this many pods the API server accepts without the webhook.
const MINIMUM_VALID: usize = 2000;
/// Requests in flight at once.
const IN_FLIGHT: usize = 8;
/// Failures quoted in the scenario's message.
const QUOTED_FAILURES: usize = 8;

/// What became of one pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    /// The API server refuses it even without the webhook (its message): no verdict on us.
    InvalidOnItsOwn(String),
    /// Admitted with exactly one `istio-proxy`.
    Injected,
    /// Admitted untouched, as the engine decided.
    Skipped,
    /// Refused by our webhook with its own message.
    Denied(String),
    /// Anything else: an API-server rejection after our patch, a failed webhook call, a pod
    /// with no proxy or two. Fails the scenario.
    Wrong(String),
}

impl Fate {
    fn label(&self) -> &'static str {
        match self {
            Fate::InvalidOnItsOwn(_) => "invalid on its own",
            Fate::Injected => "injected with one proxy",
            Fate::Skipped => "skipped",
            Fate::Denied(_) => "denied by the webhook",
            Fate::Wrong(_) => "wrong (refused after our patch, a failed webhook call, or a wrong proxy count)",
        }
    }
}

pub async fn run(harness: &Harness) -> Outcome {
    let injector = Injector::new(crate::deploy::injector_config()?).context("compiling deploy/config.yaml")?;
    let pods = pod_generator::generate(SEED, PODS);
    let started = Instant::now();
    let (plain, injected) = namespaces(harness, "e2e-diff", None).await?;
    let everything: Vec<usize> = (0..pods.len()).collect();
    let fates = dry_run_all(harness, &injector, &plain, &injected, &pods, &everything).await?;
    let (summary, mut wrong) = summarize("all pods", &fates, &pods, started);
    let invalid = fates
        .iter()
        .filter(|(_, fate)| matches!(fate, Fate::InvalidOnItsOwn(_)))
        .count();
    let valid = pods.len() - invalid;
    let near_limit = near_annotation_limit(&fates, &pods)?;
    // Again beside a LimitRange `type: Pod` max, which LimitRanger compares with the
    // pod-level values when a pod sets them and with the containers' totals otherwise: every
    // pod with pod-level resources and every fourth other one.
    let started_limited = Instant::now();
    let (plain, injected) = namespaces(harness, "e2e-diff-lr", Some(POD_MAX)).await?;
    limit_range_in_effect(harness, &injected).await?;
    let some: Vec<usize> = (0..pods.len())
        .filter(|&i| i % 4 == 0 || pods[i].spec.as_ref().is_some_and(|s| s.resources.is_some()))
        .collect();
    let limited = dry_run_all(harness, &injector, &plain, &injected, &pods, &some).await?;
    let (limited_summary, limited_wrong) = summarize("beside a Pod max", &limited, &pods, started_limited);
    wrong.extend(limited_wrong);
    ensure!(
        wrong.is_empty(),
        "{} pods went wrong (all: {summary}; beside a Pod max: {limited_summary}); first: {}",
        wrong.len(),
        wrong
            .iter()
            .take(QUOTED_FAILURES)
            .cloned()
            .collect::<Vec<_>>()
            .join(" | ")
    );
    ensure!(
        valid >= MINIMUM_VALID,
        "only {valid} generated pods are valid on their own, expected at least {MINIMUM_VALID} ({summary})"
    );
    Ok(format!(
        "{} pods in {:.1} s: {summary}; {near_limit}; {} again beside a LimitRange Pod max: {limited_summary}",
        pods.len(),
        started.elapsed().as_secs_f64(),
        some.len()
    ))
}

/// The fates of the pods whose annotations come near the API server's limit: both sides of
/// it must be met, some injected within it and some denied by us for going past it.
fn near_annotation_limit(fates: &[(usize, Fate)], pods: &[Pod]) -> Result<String, String> {
    let filled = |index: usize| {
        pods[index]
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|annotations| annotations.contains_key(pod_generator::FILLER))
    };
    let (mut injected, mut over, mut invalid, mut other) = (0, 0, 0, 0);
    for (_, fate) in fates.iter().filter(|(index, _)| filled(*index)) {
        match fate {
            Fate::Injected => injected += 1,
            Fate::Denied(message) if message.contains("metadata.annotations:") => over += 1,
            Fate::InvalidOnItsOwn(_) => invalid += 1,
            _ => other += 1,
        }
    }
    ensure!(
        injected > 0 && over > 0,
        "pods near the annotation limit: {injected} injected and {over} denied for it; both sides must be met"
    );
    Ok(format!(
        "{} near the annotation limit: {injected} injected, {over} denied for it, {invalid} invalid on their own, {other} otherwise",
        injected + over + invalid + other
    ))
}

/// The LimitRange of the second pass: `type: Pod` max CPU 3, memory 3Gi.
const POD_MAX: (&str, &str) = ("3", "3Gi");

/// A namespace with injection off and an injected one, each with the Pod max when given.
async fn namespaces(harness: &Harness, stem: &str, pod_max: Option<(&str, &str)>) -> Result<(String, String), String> {
    let (plain, injected) = (format!("{stem}-plain"), format!("{stem}-injected"));
    // Labelled off: unlabelled, Istio's object selectors would still send pods that ask for
    // injection (label sidecar.istio.io/inject=true) to us.
    harness
        .cluster
        .create_namespace(&plain, &[("istio-injection", "disabled")])
        .await?;
    harness.injected_namespace(&injected, &[]).await?;
    if let Some((cpu, memory)) = pod_max {
        for namespace in [&plain, &injected] {
            let item: LimitRangeItem = serde_json::from_value(serde_json::json!({
                "type": "Pod", "max": {"cpu": cpu, "memory": memory},
            }))
            .context("a LimitRange item")?;
            harness
                .cluster
                .create_limit_range(namespace, "pod-max", vec![item])
                .await?;
        }
    }
    Ok((plain, injected))
}

/// Waits until the injector's cache has the Pod max, and checks both of its outcomes: a
/// pod-level value it would pass is lowered to it (and LimitRanger accepts the pod), and a
/// pod whose containers cannot fit is denied naming the LimitRange.
async fn limit_range_in_effect(harness: &Harness, namespace: &str) -> Result<(), String> {
    // Pod-level limits too: without them our check sums the containers' limits, and the app
    // sets none (a limit we treat as unbounded).
    let pod = |pod_level: &str, app: &str| -> Result<Pod, String> {
        let sizes = serde_json::json!({"cpu": pod_level, "memory": "1Gi"});
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pod-max"},
            "spec": {
                "resources": {"requests": sizes, "limits": sizes},
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": app}}}],
            },
        }))
        .context("the LimitRange probe pod")
    };
    let lowered = pod("2950m", "2900m")?;
    let answer = crate::check::eventually("the injector sees LimitRange pod-max", || async {
        let answer = harness
            .cluster
            .dry_run_pod(namespace, &lowered)
            .await
            .map_err(|e| api_message(&e))?;
        let provenance = answer
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROVENANCE))
            .cloned()
            .unwrap_or_default();
        ensure!(provenance.contains("LimitRange pod-max"), "provenance {provenance}");
        Ok(answer)
    })
    .await?;
    let grown = answer
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("cpu"))
        .map(|q| q.0.clone());
    ensure!(
        grown.as_deref() == Some("3"),
        "pod-level CPU request {grown:?}, expected 3 (the Pod max)"
    );
    let full = pod("3", "3")?;
    match harness.cluster.dry_run_pod(namespace, &full).await {
        Ok(_) => Err("a pod whose containers need more than the Pod max was admitted".into()),
        Err(error) => {
            let message = api_message(&error);
            ensure!(
                message.contains("denied the request") && message.contains("LimitRange pod-max"),
                "expected our denial naming LimitRange pod-max: {message}"
            );
            Ok(())
        }
    }
}

/// Dry-runs the pods at `indices`, [`IN_FLIGHT`] at a time, and judges each.
async fn dry_run_all(
    harness: &Harness,
    injector: &Injector,
    plain: &str,
    injected: &str,
    pods: &[Pod],
    indices: &[usize],
) -> Result<Vec<(usize, Fate)>, String> {
    let plain_api = Api::<Pod>::namespaced(harness.cluster.client().clone(), plain);
    let injected_api = Api::<Pod>::namespaced(harness.cluster.client().clone(), injected);
    let mut in_flight = JoinSet::new();
    let mut fates = Vec::with_capacity(indices.len());
    for &index in indices {
        if in_flight.len() >= IN_FLIGHT
            && let Some(done) = in_flight.join_next().await
        {
            fates.push(done.context("a dry-run task")?);
        }
        let skipped = engine_skips(injector, &pods[index], injected);
        let (plain_api, injected_api, pod) = (plain_api.clone(), injected_api.clone(), pods[index].clone());
        in_flight.spawn(async move { (index, judge(&plain_api, &injected_api, &pod, skipped).await) });
    }
    while let Some(done) = in_flight.join_next().await {
        fates.push(done.context("a dry-run task")?);
    }
    fates.sort_by_key(|(index, _)| *index);
    Ok(fates)
}

/// Prints the counts of each outcome and the denials by kind; returns the counts and the
/// wrong outcomes, each with its pod.
fn summarize(pass: &str, fates: &[(usize, Fate)], pods: &[Pod], started: Instant) -> (String, Vec<String>) {
    // The wrong outcomes are always counted, so a pass prints "0 wrong (...)".
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::from([(Fate::Wrong(String::new()).label(), 0)]);
    for (_, fate) in fates {
        *counts.entry(fate.label()).or_default() += 1;
    }
    let summary = counts
        .iter()
        .map(|(label, count)| format!("{count} {label}"))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "differential, {pass}: {} pods (seed {SEED:#x}) in {:.1} s: {summary}",
        fates.len(),
        started.elapsed().as_secs_f64()
    );
    for (what, reasons) in [
        ("denials", kinds(fates, |fate| matches!(fate, Fate::Denied(_)))),
        (
            "invalid on their own",
            kinds(fates, |fate| matches!(fate, Fate::InvalidOnItsOwn(_))),
        ),
    ] {
        eprintln!("differential, {pass}: {what} by kind: {reasons}");
    }
    let wrong: Vec<String> = fates
        .iter()
        .filter_map(|(index, fate)| match fate {
            Fate::Wrong(why) => Some(format!("{pass}: pod {index} {}: {why}", describe(&pods[*index]))),
            _ => None,
        })
        .collect();
    for line in &wrong {
        eprintln!("differential: {line}");
    }
    (summary, wrong)
}

/// Whether the engine leaves `pod` alone in `namespace` (no namespace annotations there).
fn engine_skips(injector: &Injector, pod: &Pod, namespace: &str) -> bool {
    let request = PodRequest {
        pod,
        namespace,
        workload: None,
        has_metadata: true,
        unread_annotation_bytes: 0,
        namespace_context: NamespaceContext::default(),
        app_amounts: None,
        reinjection: false,
    };
    matches!(injector.inject(&request), Ok(outcome) if matches!(outcome.decision, Decision::Skip(_)))
}

async fn judge(plain: &Api<Pod>, injected: &Api<Pod>, pod: &Pod, engine_skips: bool) -> Fate {
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let alone = match plain.create(&dry_run, pod).await {
        Ok(answer) => answer,
        Err(kube::Error::Api(status)) => return Fate::InvalidOnItsOwn(status.message),
        Err(error) => return Fate::Wrong(format!("dry run without the webhook failed: {error}")),
    };
    match injected.create(&dry_run, pod).await {
        Ok(answer) => match (proxy_count(&answer), engine_skips) {
            // Skipped: the pod keeps what it brought (its own proxy, if any), nothing added.
            (n, true) if n == proxy_count(&alone) => Fate::Skipped,
            (n, true) => Fate::Wrong(format!(
                "skipped by the engine, yet stored with {n} proxies (it brought {})",
                proxy_count(&alone)
            )),
            (1, false) if qos(&alone) == "Guaranteed" && qos(&answer) != "Guaranteed" => {
                Fate::Wrong(format!("Guaranteed on its own, {} with the proxy", qos(&answer)))
            }
            (1, false) => Fate::Injected,
            (n, _) => Fate::Wrong(format!("admitted with {n} proxies")),
        },
        Err(error) => {
            let message = api_message(&error);
            if message.contains("failed calling webhook") {
                Fate::Wrong(format!("webhook call failed: {message}"))
            } else if message.starts_with("admission webhook \"") && message.contains("denied the request") {
                Fate::Denied(message)
            } else {
                Fate::Wrong(format!("refused by the API server after our patch: {message}"))
            }
        }
    }
}

/// The QoS class the API server gave the pod.
fn qos(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.qos_class.as_deref())
        .unwrap_or("none")
}

/// How many of the `selected` fates' messages start alike (their first words, numbers and
/// quoted values left out), most first.
fn kinds(fates: &[(usize, Fate)], selected: impl Fn(&Fate) -> bool) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, fate) in fates.iter().filter(|(_, fate)| selected(fate)) {
        let (Fate::Denied(message) | Fate::InvalidOnItsOwn(message)) = fate else {
            continue;
        };
        let reason = message.split("denied the request: ").last().unwrap_or(message);
        let kind: Vec<&str> = reason
            .split_whitespace()
            .filter(|word| !word.starts_with('"') && !word.starts_with(|c: char| c.is_ascii_digit()))
            .take(4)
            .collect();
        *counts.entry(kind.join(" ")).or_default() += 1;
    }
    let mut sorted: Vec<(String, usize)> = counts.into_iter().collect();
    sorted.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    sorted
        .iter()
        .map(|(kind, count)| format!("{count}× {kind}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The parts of a generated pod that tell failures apart.
fn describe(pod: &Pod) -> String {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let names = |list: Option<&Vec<k8s_openapi::api::core::v1::Container>>| {
        list.map(|l| {
            l.iter()
                .map(|c| c.name.chars().take(12).collect::<String>())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
    };
    format!(
        "(annotations {annotations:?}; containers {:?}; init {:?}; pod resources {})",
        names(spec.map(|s| &s.containers)),
        names(spec.and_then(|s| s.init_containers.as_ref())),
        spec.and_then(|s| s.resources.as_ref())
            .map_or("none".into(), |r| serde_json::to_string(r).unwrap_or_default())
    )
}
