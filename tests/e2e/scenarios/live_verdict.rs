//! The verdict of the live side-by-side (scenario 34): what each difference between our pod and
//! istiod's is.
//!
//! A difference is deliberate ([`DELIBERATE`], [`DELIBERATE_FATES`]: a setting or rule of ours,
//! documented in README's "Fidelity with Istio"), a known gap ([`KNOWN_GAPS`], [`KNOWN_BUGS`]:
//! named in the scenario's note until fixed), or wrong, which fails the scenario.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::check::{Outcome, ensure};
use crate::side_by_side::{NORMALISATION, differences, kind_of, shown};

/// One pod to compare, and where it comes from.
pub struct Case {
    /// `corpus <file>` or `generated #<n>`.
    pub origin: String,
    /// The pod as sent to both sides.
    pub pod: Pod,
}

/// The differences that are deliberate settings, by the [`kind_of`] their path is, each with
/// the setting or rule that makes it. README's "Fidelity with Istio" lists the same.
const DELIBERATE: [(&str, &str); 7] = [
    (
        "already injected",
        "a pod carrying sidecar.istio.io/status is skipped, so a reinvocation adds nothing (README, \
         When a pod is injected); istiod strips what the status lists and injects again",
    ),
    (
        "status.qosClass",
        "preserveGuaranteedQoS: a Guaranteed app pod stays Guaranteed",
    ),
    (
        "spec.initContainers[istio-proxy].resources.limits",
        "preserveGuaranteedQoS: proxy limits = requests beside Guaranteed apps",
    ),
    (
        "spec.initContainers[istio-init].resources.limits",
        "preserveGuaranteedQoS: init limits = requests beside Guaranteed apps",
    ),
    (
        "spec.resources.requests",
        "pod-level resources grow by the proxy's (README, Resources)",
    ),
    (
        "spec.resources.limits",
        "pod-level resources grow by the proxy's (README, Resources)",
    ),
    (
        GATEWAY_PROXY_RESOURCES,
        "our tuning sizes a gateway's proxy too, from the resource annotations (README, Templates); \
         istiod's gateway template writes no resources",
    ),
];

/// The kind of a difference in the proxy's resources of a pod that names the gateway template.
const GATEWAY_PROXY_RESOURCES: &str = "gateway pod: spec.containers[istio-proxy].resources";

/// Differences that are neither 0 nor a setting: bugs of ours, or behaviour istiod gained
/// after the 1.28 corpus our engine matches. Listed until fixed; the scenario's note names each
/// as a known gap, and any difference outside both tables fails it. None are known: what
/// istiod after 1.28 does differently is a setting of ours (`goMaxProcsFromLimit`,
/// `initImageFromProxyImageAnnotation`, `concurrencyArgFromProxyConfig`,
/// `otelResourceAttributes`), set in the comparison as that istiod behaves.
const KNOWN_GAPS: [(&str, &str); 0] = [];

/// Outcomes that differ on purpose: one side admits the pod, the other refuses it.
const DELIBERATE_FATES: [(FateDifference, &str); 2] = [
    (
        FateDifference::WeRefuseAnAnnotation,
        "we check every annotation's value (README, Annotations); istiod lets these through or ignores them",
    ),
    (
        FateDifference::ApiServerRefusesIstiods,
        "istiod's patch makes a pod the API server refuses (pod-level resources not grown, probes \
         of restartable init containers doubled, a user mount of an undeclared volume); ours is valid",
    ),
];

/// Values istiod refuses and we accept, by a phrase of istiod's message: bugs of ours, listed
/// until fixed, each shown in the scenario's note as a known gap. None are known.
const KNOWN_BUGS: [(&str, &str); 0] = [];

/// The annotation naming injection templates; pods naming one other than `sidecar` and
/// `gateway` (the two we render) are out of this comparison: custom, SPIRE and gRPC templates
/// are out of scope.
const TEMPLATES: &str = "inject.istio.io/templates";

/// The annotation injection writes, which marks a pod as injected.
const STATUS: &str = "sidecar.istio.io/status";

/// How the two outcomes of a pod differ, when one side admits it and the other does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FateDifference {
    /// Our webhook refuses an annotation value; istiod injects.
    WeRefuseAnAnnotation,
    /// We inject; the API server refuses the pod istiod's patch makes.
    ApiServerRefusesIstiods,
    /// We inject; istiod's webhook refuses.
    IstiodRefuses,
    /// Anything else.
    Other,
}

fn fate_difference(ours: &Fate, istiod: &Fate) -> Option<FateDifference> {
    let denied = |message: &str| message.contains("denied the request");
    Some(match (ours, istiod) {
        (Fate::Refused(message), Fate::Admitted(_))
            if denied(message) && (message.contains(": annotation ") || message.contains(": label ")) =>
        {
            FateDifference::WeRefuseAnAnnotation
        }
        (Fate::Admitted(_), Fate::Refused(message)) if !denied(message) && message.contains(" is invalid") => {
            FateDifference::ApiServerRefusesIstiods
        }
        (Fate::Admitted(_), Fate::Refused(message)) if denied(message) => FateDifference::IstiodRefuses,
        (Fate::Admitted(_), Fate::Admitted(_)) | (Fate::Refused(_), Fate::Refused(_)) => return None,
        _ => FateDifference::Other,
    })
}

/// The differences between our pod and istiod's (both [`normalised`]) that are not
/// [`DELIBERATE`], one line each.
pub fn unexplained(ours: &Value, istiod: &Value) -> Vec<String> {
    differences(ours, istiod)
        .into_iter()
        .filter(|(path, _)| deliberate(&kind_of(path)).is_none())
        .map(|(path, (a, b))| format!("{path}: ours {} / istiod {}", shown(&a), shown(&b)))
        .collect()
}

fn deliberate(kind: &str) -> Option<&'static str> {
    DELIBERATE
        .iter()
        .find(|(prefix, _)| kind.starts_with(prefix))
        .map(|(_, why)| *why)
}

/// What one side did with a pod.
#[derive(Debug, Clone)]
pub enum Fate {
    /// Admitted; the pod as the API server would store it, normalised.
    Admitted(Value),
    /// Refused (by the webhook or by the API server); the message.
    Refused(String),
}

/// Counts, classifies and fails on anything not deliberate; `generated` of the cases are
/// generated pods, the rest from the corpus.
pub fn judge(cases: &[Case], fates: &[(Fate, Fate)], generated: usize) -> Outcome {
    let mut identical = 0;
    let mut both_refused = 0;
    let mut differing = 0;
    let mut out_of_scope = 0;
    // Gateway pods: compared, identical, differing.
    let mut gateways = (0, 0, 0);
    let mut by_kind: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut by_fate: BTreeMap<FateDifference, usize> = BTreeMap::new();
    let mut bugs: BTreeMap<&str, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (case, (ours, istiod)) in cases.iter().zip(fates) {
        if names_another_template(&case.pod) {
            out_of_scope += 1;
            continue;
        }
        let gateway = names_gateway(&case.pod);
        gateways.0 += usize::from(gateway);
        if let Some(difference) = fate_difference(ours, istiod) {
            *by_fate.entry(difference).or_default() += 1;
            let message = match (ours, istiod) {
                (Fate::Refused(message), _) | (_, Fate::Refused(message)) => message.as_str(),
                _ => "",
            };
            let known = KNOWN_BUGS.iter().find(|(phrase, _)| message.contains(phrase));
            match (difference, known) {
                (FateDifference::IstiodRefuses, Some((_, bug))) => *bugs.entry(bug).or_default() += 1,
                (FateDifference::WeRefuseAnAnnotation | FateDifference::ApiServerRefusesIstiods, _) => {}
                _ => wrong.push(format!(
                    "{}: ours {} / istiod {}",
                    case.origin,
                    ours.summary(),
                    istiod.summary()
                )),
            }
            continue;
        }
        match (ours, istiod) {
            (Fate::Admitted(ours), Fate::Admitted(istiod)) => {
                if record_admitted(case, ours, istiod, &mut by_kind) {
                    identical += 1;
                    gateways.1 += usize::from(gateway);
                } else {
                    differing += 1;
                    gateways.2 += usize::from(gateway);
                }
            }
            _ => both_refused += 1,
        }
    }
    let mut listed = Vec::new();
    let mut gaps: BTreeMap<&str, usize> = BTreeMap::new();
    for (kind, (count, example)) in &by_kind {
        let gap = KNOWN_GAPS.iter().find(|(prefix, _)| kind.starts_with(prefix));
        match (deliberate(kind), gap) {
            (Some(why), _) => listed.push(format!("{kind} on {count} pods ({why})")),
            (None, Some((_, why))) => *gaps.entry(why).or_default() += count,
            (None, None) => wrong.push(format!("{kind} differs on {count} pods, e.g. {example}")),
        }
    }
    for (difference, count) in &by_fate {
        if let Some((_, why)) = DELIBERATE_FATES.iter().find(|(d, _)| d == difference) {
            listed.push(format!("{difference:?} on {count} pods ({why})"));
        }
    }
    let compared = cases.len() - out_of_scope;
    let counts = format!(
        "{} pods ({} corpus, {generated} generated; {} naming the gateway template ({} identical, {} differing); \
         {out_of_scope} naming another template left out): {identical} identical, {differing} differing, \
         {both_refused} refused by both, {} admitted by one side only",
        compared,
        cases.len() - generated,
        gateways.0,
        gateways.1,
        gateways.2,
        by_fate.values().sum::<usize>()
    );
    let bugs: Vec<String> = bugs
        .iter()
        .map(|(bug, count)| format!("{bug} ({count} pods)"))
        .chain(
            gaps.iter()
                .map(|(gap, count)| format!("{gap} ({count} field differences)")),
        )
        .collect();
    ensure!(
        wrong.is_empty(),
        "{counts}; {} findings not deliberate:\n  {}",
        wrong.len(),
        wrong.join("\n  ")
    );
    ensure!(identical + differing > 0, "{counts}: no pod was admitted by both");
    Ok(format!(
        "{counts}; deliberate: [{}]; KNOWN GAPS, not deliberate: [{}]; normalised: {}",
        listed.join("; "),
        bugs.join("; "),
        NORMALISATION.join("; ")
    ))
}

/// Records in `by_kind` (count and a first example per kind) how a pod both sides admitted
/// differs; whether it does not differ at all.
fn record_admitted(case: &Case, ours: &Value, istiod: &Value, by_kind: &mut BTreeMap<String, (usize, String)>) -> bool {
    let found = differences(ours, istiod);
    if found.is_empty() {
        return true;
    }
    let mut record = |kind: String, example: String| {
        let entry = by_kind.entry(kind).or_insert((0, String::new()));
        entry.0 += 1;
        if entry.1.is_empty() {
            entry.1 = example;
        }
    };
    if proxy_layout(ours) != proxy_layout(istiod) {
        let what = if proxy_layout(ours) == "none" && carries_status(&case.pod) {
            "already injected"
        } else {
            "injection decision or layout"
        };
        let kind = format!("{what} (ours {}, istiod {})", proxy_layout(ours), proxy_layout(istiod));
        record(
            kind,
            format!("{}: annotations {}", case.origin, annotations_of(&case.pod)),
        );
        return false;
    }
    let gateway = names_gateway(&case.pod);
    for (path, (a, b)) in found {
        let example = format!("{}: {path}: ours {} / istiod {}", case.origin, shown(&a), shown(&b));
        let kind = kind_of(&path);
        let kind = match kind.strip_prefix("spec.containers[istio-proxy].resources") {
            Some(rest) if gateway => format!("{GATEWAY_PROXY_RESOURCES}{rest}"),
            _ => kind,
        };
        record(kind, example);
    }
    false
}

/// Where the normalised pod has its `istio-proxy`: `none`, `classic` or `native`.
fn proxy_layout(pod: &Value) -> &'static str {
    let has_proxy = |list: &str| {
        pod["spec"][list]
            .as_array()
            .is_some_and(|containers| containers.iter().any(|c| c["name"] == crate::pods::PROXY))
    };
    match (has_proxy("containers"), has_proxy("initContainers")) {
        (true, _) => "classic",
        (false, true) => "native",
        (false, false) => "none",
    }
}

/// Whether the pod carries `sidecar.istio.io/status`, which we take as injected already.
fn carries_status(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| annotations.contains_key(STATUS))
}

fn annotations_of(pod: &Pod) -> String {
    serde_json::to_string(&pod.metadata.annotations).unwrap_or_default()
}

/// Whether the pod names the gateway template.
fn names_gateway(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(TEMPLATES))
        .is_some_and(|templates| templates.split(',').any(|name| name.trim() == "gateway"))
}

/// The templates we render, whose pods istiod judges.
const RENDERED_TEMPLATES: [&str; 2] = ["sidecar", "gateway"];

/// Whether the pod asks for an injection template other than those we render.
fn names_another_template(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(TEMPLATES))
        .is_some_and(|templates| {
            templates
                .split(',')
                .any(|name| !RENDERED_TEMPLATES.contains(&name.trim()))
        })
}

// === impl Fate ===

impl Fate {
    fn summary(&self) -> String {
        match self {
            Fate::Admitted(_) => "admitted".into(),
            Fate::Refused(message) => format!("refused: {message}"),
        }
    }
}
