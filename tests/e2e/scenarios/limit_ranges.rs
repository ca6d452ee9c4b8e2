//! Scenario 12: LimitRanges, one namespace per rule, judged by the API server's own
//! LimitRanger.
//!
//! LimitRanger defaults containers before the mutating webhooks run and validates the pod
//! after them, so the proxy and `istio-init` we add must satisfy every LimitRange by
//! themselves. Each case creates its LimitRanges, waits until the injector's LimitRange cache
//! has them (a dry-run of the case's pod whose answer names every LimitRange), then creates
//! the pod and reads back each field of both injected containers exactly, the provenance of
//! the fields the rule moved, and the admission warnings. The app container has explicit
//! requests and limits within every rule, so LimitRanger's defaults never touch it.
//!
//! Defaults are exercised on ephemeral storage: deploy/config.yaml sets CPU and memory but
//! no ephemeral storage, so with the shipped config that is the field nothing else sets, and
//! the LimitRange's `default`/`defaultRequest` must fill it (while its CPU and memory
//! defaults lose to the config's). LimitRanger's annotation must not name our containers,
//! which shows the values are ours, not LimitRanger's own defaulting.

use k8s_openapi::api::core::v1::{LimitRangeItem, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use crate::check::{Outcome, ensure, eventually};
use crate::harness::Harness;
use crate::sizing::{
    PROVENANCE, Sizes, app_pod, check_container, check_injected, limit_ranger_left_ours_alone, provenance_of,
};

/// The webhook that selects pods in an `istio-injection=enabled` namespace.
const WEBHOOK: &str = "namespace.sidecar-injector.istio.io";
/// The app container, within every rule below.
const APP: Sizes = Sizes {
    requests: &[("cpu", "500m"), ("memory", "256Mi")],
    limits: &[("cpu", "1"), ("memory", "512Mi")],
};
/// The app for the per-Pod cases: a CPU limit of 2.
const APP_LIMIT_2: Sizes = Sizes {
    requests: &[("cpu", "500m"), ("memory", "256Mi")],
    limits: &[("cpu", "2"), ("memory", "512Mi")],
};

/// One LimitRange item: its type and (field, [(resource, quantity)]) for each field set.
type Item = (
    &'static str,
    &'static [(&'static str, &'static [(&'static str, &'static str)])],
);

/// What the case's pod must come to.
enum Expect {
    /// Stored with these proxy sizes; each (field, LimitRange) in `adjusted` must name the
    /// LimitRange in the field's provenance (`from` or `adjusted`); each text in `warnings`
    /// must be among the admission warnings.
    Admitted {
        proxy: Sizes,
        adjusted: &'static [(&'static str, &'static str)],
        warnings: &'static [&'static str],
    },
    /// Denied by us with a message containing each text.
    Denied { mentions: &'static [&'static str] },
}

struct Case {
    rule: &'static str,
    namespace: &'static str,
    limit_ranges: &'static [(&'static str, &'static [Item])],
    app: Sizes,
    expect: Expect,
}

const CASES: [Case; 7] = [
    Case {
        rule: "Container max cpu 1, memory 512Mi",
        namespace: "e2e-lr-container-max",
        limit_ranges: &[(
            "container-max",
            &[("Container", &[("max", &[("cpu", "1"), ("memory", "512Mi")])])],
        )],
        app: APP,
        expect: Expect::Admitted {
            proxy: Sizes {
                requests: &[("cpu", "100m"), ("memory", "128Mi")],
                limits: &[("cpu", "1"), ("memory", "512Mi")],
            },
            adjusted: &[("cpu.limit", "container-max"), ("memory.limit", "container-max")],
            warnings: &[
                "proxy CPU limit 2 lowered to 1 (LimitRange container-max max)",
                "proxy memory limit 1Gi lowered to 512Mi (LimitRange container-max max)",
            ],
        },
    },
    Case {
        rule: "Container min cpu 200m",
        namespace: "e2e-lr-container-min",
        limit_ranges: &[("container-min", &[("Container", &[("min", &[("cpu", "200m")])])])],
        app: APP,
        expect: Expect::Admitted {
            proxy: Sizes {
                requests: &[("cpu", "200m"), ("memory", "128Mi")],
                limits: &[("cpu", "2"), ("memory", "1Gi")],
            },
            adjusted: &[("cpu.request", "container-min")],
            warnings: &["proxy CPU request 100m raised to 200m (LimitRange container-min min)"],
        },
    },
    Case {
        rule: "maxLimitRequestRatio cpu 4",
        namespace: "e2e-lr-ratio",
        limit_ranges: &[("ratio", &[("Container", &[("maxLimitRequestRatio", &[("cpu", "4")])])])],
        app: APP,
        expect: Expect::Admitted {
            proxy: Sizes {
                requests: &[("cpu", "100m"), ("memory", "128Mi")],
                limits: &[("cpu", "400m"), ("memory", "1Gi")],
            },
            adjusted: &[("cpu.limit", "ratio")],
            warnings: &["proxy CPU limit 2 lowered to 400m (LimitRange ratio maxLimitRequestRatio)"],
        },
    },
    Case {
        rule: "Container default/defaultRequest",
        namespace: "e2e-lr-defaults",
        limit_ranges: &[(
            "defaults",
            &[(
                "Container",
                &[
                    (
                        "default",
                        &[("cpu", "300m"), ("memory", "256Mi"), ("ephemeral-storage", "1Gi")],
                    ),
                    (
                        "defaultRequest",
                        &[("cpu", "150m"), ("memory", "64Mi"), ("ephemeral-storage", "256Mi")],
                    ),
                ],
            )],
        )],
        app: Sizes {
            requests: &[("cpu", "500m"), ("memory", "256Mi"), ("ephemeral-storage", "128Mi")],
            limits: &[("cpu", "1"), ("memory", "512Mi"), ("ephemeral-storage", "512Mi")],
        },
        expect: Expect::Admitted {
            proxy: Sizes {
                requests: &[("cpu", "100m"), ("memory", "128Mi"), ("ephemeral-storage", "256Mi")],
                limits: &[("cpu", "2"), ("memory", "1Gi"), ("ephemeral-storage", "1Gi")],
            },
            adjusted: &[
                ("ephemeral-storage.request", "defaults"),
                ("ephemeral-storage.limit", "defaults"),
            ],
            warnings: &[],
        },
    },
    Case {
        rule: "Pod max cpu 3, app limit 2",
        namespace: "e2e-lr-pod-max",
        limit_ranges: &[("pod-max", &[("Pod", &[("max", &[("cpu", "3")])])])],
        app: APP_LIMIT_2,
        expect: Expect::Admitted {
            proxy: Sizes {
                requests: &[("cpu", "100m"), ("memory", "128Mi")],
                limits: &[("cpu", "1"), ("memory", "1Gi")],
            },
            adjusted: &[("cpu.limit", "pod-max")],
            warnings: &["proxy CPU limit 2 lowered to 1 (LimitRange pod-max per-Pod max)"],
        },
    },
    Case {
        rule: "Pod max cpu 2, app limit 2",
        namespace: "e2e-lr-pod-max-full",
        limit_ranges: &[("pod-max-full", &[("Pod", &[("max", &[("cpu", "2")])])])],
        app: APP_LIMIT_2,
        expect: Expect::Denied {
            mentions: &["LimitRange pod-max-full per-Pod max 2", "CPU limit"],
        },
    },
    Case {
        rule: "two LimitRanges, tightest max wins",
        namespace: "e2e-lr-combined",
        limit_ranges: &[
            (
                "team",
                &[("Container", &[("max", &[("cpu", "1500m"), ("memory", "768Mi")])])],
            ),
            (
                "cluster",
                &[("Container", &[("max", &[("cpu", "1"), ("memory", "1Gi")])])],
            ),
        ],
        app: APP,
        expect: Expect::Admitted {
            proxy: Sizes {
                requests: &[("cpu", "100m"), ("memory", "128Mi")],
                limits: &[("cpu", "1"), ("memory", "768Mi")],
            },
            adjusted: &[("cpu.limit", "cluster"), ("memory.limit", "team")],
            warnings: &[
                "proxy CPU limit 2 lowered to 1 (LimitRange cluster max)",
                "proxy memory limit 1Gi lowered to 768Mi (LimitRange team max)",
            ],
        },
    },
];

pub async fn run(harness: &Harness) -> Outcome {
    let mut notes = Vec::new();
    for case in &CASES {
        let note = run_case(harness, case)
            .await
            .map_err(|e| format!("{} ({}): {e}", case.rule, case.namespace))?;
        notes.push(format!("{}: {note}", case.rule));
    }
    Ok(notes.join("; "))
}

async fn run_case(harness: &Harness, case: &Case) -> Result<String, String> {
    harness.injected_namespace(case.namespace, &[]).await?;
    for (name, items) in case.limit_ranges {
        let items = items.iter().map(|item| limit_range_item(*item)).collect();
        harness.cluster.create_limit_range(case.namespace, name, items).await?;
    }
    let pod = app_pod("sized", case.app);
    wait_for_cache(harness, case, &pod).await?;
    let outcome = harness.cluster.create_pod_with_warnings(case.namespace, &pod).await;
    match (&case.expect, outcome) {
        (Expect::Denied { mentions }, Err(message)) => {
            let prefix = format!("admission webhook \"{WEBHOOK}\" denied the request: ");
            ensure!(message.contains(&prefix), "expected {prefix:?} in: {message}");
            for text in *mentions {
                ensure!(message.contains(text), "expected {text:?} in: {message}");
            }
            ensure!(
                harness.cluster.get_pod(case.namespace, "sized").await?.is_none(),
                "a denied pod was stored"
            );
            Ok(format!("denied: {message}"))
        }
        (Expect::Denied { .. }, Ok((pod, _))) => Err(format!(
            "admitted, expected a denial; {PROVENANCE}: {:?}",
            pod.metadata.annotations.unwrap_or_default().get(PROVENANCE)
        )),
        (Expect::Admitted { .. }, Err(message)) => Err(format!("not admitted: {message}")),
        (
            Expect::Admitted {
                proxy,
                adjusted,
                warnings,
            },
            Ok((pod, sent)),
        ) => {
            check_injected(&pod, *proxy)?;
            check_container(&pod, "app", case.app)?;
            limit_ranger_left_ours_alone(&pod)?;
            for (field, limit_range) in *adjusted {
                let found = provenance_of(&pod, field)?;
                let named = format!("LimitRange {limit_range} ");
                let mentioned =
                    found.from.contains(&named) || found.adjusted.as_ref().is_some_and(|a| a.contains(&named));
                ensure!(mentioned, "provenance of {field} does not name {named:?}: {found:?}");
            }
            for text in *warnings {
                ensure!(
                    sent.iter().any(|w| w == text),
                    "expected the warning {text:?}, got {sent:?}"
                );
            }
            Ok(format!("proxy {proxy}"))
        }
    }
}

/// Dry-runs the case's pod until the answer names every one of its LimitRanges: in the
/// provenance annotation when admitted, in our denial otherwise. Until the injector's cache
/// has them, the pod gets the config defaults (and the real LimitRanger may refuse it).
async fn wait_for_cache(harness: &Harness, case: &Case, pod: &Pod) -> Result<(), String> {
    eventually("the injector sees the LimitRanges", || async {
        let answer = match harness.cluster.dry_run_pod(case.namespace, pod).await {
            Ok(pod) => pod
                .metadata
                .annotations
                .and_then(|mut a| a.remove(PROVENANCE))
                .unwrap_or_default(),
            Err(error) => crate::cluster::api_message(&error),
        };
        for (name, _) in case.limit_ranges {
            let named = format!("LimitRange {name} ");
            ensure!(answer.contains(&named), "the answer does not name {named:?}: {answer}");
        }
        Ok(())
    })
    .await
}

fn limit_range_item((kind, fields): Item) -> LimitRangeItem {
    let map = |field: &str| {
        fields.iter().find(|(name, _)| *name == field).map(|(_, amounts)| {
            amounts
                .iter()
                .map(|(resource, value)| (resource.to_string(), ApiQuantity(value.to_string())))
                .collect()
        })
    };
    LimitRangeItem {
        type_: kind.to_string(),
        max: map("max"),
        min: map("min"),
        default: map("default"),
        default_request: map("defaultRequest"),
        max_limit_request_ratio: map("maxLimitRequestRatio"),
    }
}
