//! Scenarios 38 and 39: the Helm chart in `deploy/helm/sidecar-injector` is lint-clean and the
//! API server accepts what it renders, as `helm template | kubectl apply --dry-run=server -f -`
//! would: every object server-side applied with `dryRun: All`, through discovery.
//!
//! - 38, default values: `helm lint --strict` clean; the chart's versions follow Cargo.toml;
//!   the cert-manager wiring (inject-ca-from → Certificate → mounted Secret, Service name)
//!   holds; every object is accepted except cert-manager's kinds, which are not served here;
//!   the ConfigMap's config.yaml loads as the injector's config; the Deployment's pod passes
//!   Pod Security `restricted`; NOTES.txt gives the next steps.
//! - 39, `ci/every-option-values.yaml`: the file sets every key of values.yaml (outside
//!   `config`, whose keys are checked by loading the result); lint-clean; certificates from
//!   the real `certs` command (`--set-file`); each option shows in the objects; all accepted.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use sidecar_injector::config::InjectConfig;
use sidecar_injector::manifest::read_documents;

use super::manifests::{
    check_cert_manager_overlay, check_certs_overlay, describe, dry_run_apply, find, kind, make_certs_for,
    mounted_secrets, name, restricted_pod_in,
};
use crate::check::{Context, Outcome, ensure};
use crate::harness::Harness;
use crate::helm::{Helm, Values};

/// Scenario 38.
pub async fn defaults(harness: &Harness) -> Outcome {
    let helm = Helm::find(harness.workdir())?;
    check_chart_versions()?;
    let advice = helm.lint(&Values::default()).context("default values")?;
    let objects = helm.template(&harness.injector_namespace, &Values::default())?;
    let deployment = find(&objects, "Deployment").ok_or("no Deployment")?;
    check_cert_manager_overlay(&objects, &mounted_secrets(deployment)).context("cert-manager wiring")?;
    let config = rendered_config(&objects)?;
    ensure!(config.revision == "default", "config.revision is {}", config.revision);
    let (applied, not_served) = apply_all(harness, &objects).await?;
    restricted_pod_in(harness, deployment, "e2e-helm-restricted").await?;
    let notes = helm.notes(&harness.injector_namespace, &Values::default())?;
    for next_step in [
        "kubectl label namespace sidecar-injector istio-injection=disabled",
        "rollout status deployment/sidecar-injector",
        "kubectl label namespace NAME istio-injection=enabled",
    ] {
        ensure!(
            notes.contains(next_step),
            "NOTES.txt does not say `{next_step}`:\n{notes}"
        );
    }
    Ok(format!(
        "helm lint --strict clean (advice: {advice:?}); {applied} objects accepted; not served here: {}; \
         config.yaml loads; Deployment pod passes Pod Security restricted; NOTES.txt gives the next steps",
        not_served.join(", ")
    ))
}

/// Scenario 39.
pub async fn every_option(harness: &Harness) -> Outcome {
    let helm = Helm::find(harness.workdir())?;
    let values_file = Helm::chart_dir().join("ci/every-option-values.yaml");
    let uncovered = uncovered_keys(&Helm::chart_dir().join("values.yaml"), &values_file)?;
    ensure!(
        uncovered.is_empty(),
        "ci/every-option-values.yaml does not set {uncovered:?}"
    );
    let namespace = &harness.injector_namespace;
    let out = harness.workdir().join("helm-every-option-certs");
    // `--service` is the chart's Service name for revision `canary`.
    let ca_bundle = make_certs_for(&out, "sidecar-injector-canary", namespace)?;
    let values = Values {
        files: vec![values_file],
        set_files: vec![
            ("certificates.files.caCrt", out.join("ca.crt")),
            ("certificates.files.tlsCrt", out.join("tls.crt")),
            ("certificates.files.tlsKey", out.join("tls.key")),
        ],
        set: Vec::new(),
    };
    helm.lint(&values).context("every-option values")?;
    let objects = helm.template(namespace, &values)?;
    let deployment = find(&objects, "Deployment").ok_or("no Deployment")?;
    check_certs_overlay(&objects, &ca_bundle, &mounted_secrets(deployment)).context("Secret and caBundle")?;
    let webhooks = check_webhooks(&objects, namespace)?;
    check_deployment(deployment)?;
    let config = rendered_config(&objects)?;
    ensure!(
        config.revision == "canary",
        "config.revision is {}, not the chart's revision",
        config.revision
    );
    let namespace_object = find(&objects, "Namespace").ok_or("namespace.create rendered no Namespace")?;
    ensure!(
        namespace_object["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline",
        "the Namespace does not enforce namespace.podSecurity: {namespace_object}"
    );
    let (applied, _) = apply_all(harness, &objects).await?;
    restricted_pod_in(harness, deployment, "e2e-helm-every-option").await?;
    let notes = helm.notes(namespace, &values)?;
    for next_step in [
        "kubectl label namespace NAME istio.io/rev=canary",
        "kubectl label namespace NAME istio.io/rev=stable",
        "rollout status deployment/sidecar-injector-canary",
    ] {
        ensure!(
            notes.contains(next_step),
            "NOTES.txt does not say `{next_step}`:\n{notes}"
        );
    }
    Ok(format!(
        "every values.yaml key set; lint clean; {applied} objects accepted; {webhooks}; options seen in the \
         Deployment, Secret, Namespace and config"
    ))
}

/// The chart's version and appVersion are the package's.
fn check_chart_versions() -> Result<(), String> {
    let path = Helm::chart_dir().join("Chart.yaml");
    let text = std::fs::read_to_string(&path).context(format!("reading {}", path.display()))?;
    let chart = read_documents(&text).context("parsing Chart.yaml")?;
    let chart = chart.first().ok_or("Chart.yaml is empty")?;
    let package = env!("CARGO_PKG_VERSION");
    for key in ["version", "appVersion"] {
        ensure!(
            chart[key] == package,
            "Chart.yaml {key} is {}, Cargo.toml's version is {package}",
            chart[key]
        );
    }
    Ok(())
}

/// Server-side applies every object (dry run); how many were accepted, and which are
/// cert-manager's kinds that this API server does not serve.
async fn apply_all(harness: &Harness, objects: &[Value]) -> Result<(usize, Vec<String>), String> {
    let mut applied = 0;
    let mut not_served = Vec::new();
    for object in objects {
        if dry_run_apply(harness, object).await.context(describe(object))? {
            applied += 1;
        } else {
            not_served.push(describe(object));
        }
    }
    Ok((applied, not_served))
}

/// The ConfigMap's config.yaml, loaded as the injector loads it.
fn rendered_config(objects: &[Value]) -> Result<InjectConfig, String> {
    let config_map = find(objects, "ConfigMap").ok_or("no ConfigMap")?;
    let text = config_map["data"]["config.yaml"]
        .as_str()
        .ok_or("the ConfigMap has no config.yaml")?;
    InjectConfig::from_yaml(text, "the chart's config.yaml").map_err(|error| error.to_string())
}

/// Paths of values.yaml's leaves (outside `config`) that `values_file` does not set.
fn uncovered_keys(defaults: &Path, values_file: &Path) -> Result<BTreeSet<String>, String> {
    let read = |path: &Path| -> Result<Value, String> {
        let text = std::fs::read_to_string(path).context(format!("reading {}", path.display()))?;
        Ok(read_documents(&text)
            .context(format!("parsing {}", path.display()))?
            .into_iter()
            .next()
            .unwrap_or_default())
    };
    let defaults = read(defaults)?;
    let set = read(values_file)?;
    let mut missing = BTreeSet::new();
    collect_uncovered(&defaults, &set, String::new(), &mut missing);
    missing.remove("config");
    Ok(missing
        .into_iter()
        .filter(|path| !path.starts_with("config."))
        .collect())
}

fn collect_uncovered(defaults: &Value, set: &Value, path: String, missing: &mut BTreeSet<String>) {
    match (defaults, set) {
        (Value::Object(defaults), Value::Object(set)) if !defaults.is_empty() => {
            for (key, default) in defaults {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match set.get(key) {
                    Some(value) => collect_uncovered(default, value, child, missing),
                    None => {
                        missing.insert(child);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The webhook configurations of `revision: canary` and `revisionTags: [default, stable]`,
/// each carrying every webhook option; a summary.
fn check_webhooks(objects: &[Value], namespace: &str) -> Result<String, String> {
    let configurations: Vec<&Value> = objects
        .iter()
        .filter(|object| kind(object) == "MutatingWebhookConfiguration")
        .collect();
    let expected: [(&str, &str, &[&str]); 3] = [
        ("sidecar-injector-canary", "canary", &["rev.namespace.", "rev.object."]),
        (
            "sidecar-injector-tag-default",
            "default",
            &["rev.namespace.", "rev.object.", "namespace.", "object.", "auto."],
        ),
        (
            "sidecar-injector-tag-stable",
            "stable",
            &["rev.namespace.", "rev.object."],
        ),
    ];
    ensure!(
        configurations.len() == expected.len(),
        "{} webhook configurations: {:?}",
        configurations.len(),
        configurations.iter().map(|c| name(c)).collect::<Vec<_>>()
    );
    let mut total = 0;
    for (configuration_name, revision, prefixes) in expected {
        let configuration = configurations
            .iter()
            .find(|c| name(c) == configuration_name)
            .ok_or(format!("no MutatingWebhookConfiguration {configuration_name}"))?;
        ensure!(
            configuration["metadata"]["annotations"]["example.com/owner"] == "platform",
            "{configuration_name} lacks sidecarInjectorWebhook.annotations"
        );
        let webhooks = configuration["webhooks"].as_array().ok_or("no webhooks")?;
        let names: Vec<&str> = webhooks.iter().filter_map(|w| w["name"].as_str()).collect();
        let wanted: Vec<String> = prefixes
            .iter()
            .map(|p| format!("{p}sidecar-injector.istio.io"))
            .collect();
        ensure!(
            names == wanted,
            "{configuration_name} has webhooks {names:?}, expected {wanted:?}"
        );
        for webhook in webhooks {
            check_webhook(webhook, revision, namespace).context(format!("{configuration_name} {}", webhook["name"]))?;
        }
        total += webhooks.len();
    }
    Ok(format!(
        "3 webhook configurations (revision canary, tags default and stable), {total} webhooks"
    ))
}

fn check_webhook(webhook: &Value, revision: &str, namespace: &str) -> Result<(), String> {
    for (field, want) in [
        ("failurePolicy", "Ignore"),
        ("reinvocationPolicy", "Never"),
        ("matchPolicy", "Exact"),
    ] {
        ensure!(webhook[field] == want, "{field} is {}", webhook[field]);
    }
    ensure!(
        webhook["timeoutSeconds"] == 5,
        "timeoutSeconds is {}",
        webhook["timeoutSeconds"]
    );
    ensure!(
        webhook["clientConfig"]["service"]["name"] == "sidecar-injector-canary",
        "calls {}",
        webhook["clientConfig"]["service"]
    );
    let namespace_expressions = webhook["namespaceSelector"]["matchExpressions"].to_string();
    let object_expressions = webhook["objectSelector"]["matchExpressions"].to_string();
    for excluded in ["kube-system", "istio-system", namespace] {
        ensure!(
            namespace_expressions.contains(&format!("\"{excluded}\"")),
            "namespace {excluded} not excluded: {namespace_expressions}"
        );
    }
    ensure!(
        namespace_expressions.contains("\"team\""),
        "no extra namespace expression"
    );
    ensure!(
        object_expressions.contains("app.kubernetes.io/part-of"),
        "no extra object expression"
    );
    let name = webhook["name"].as_str().unwrap_or_default();
    if name.starts_with("rev.") {
        let selector = if name.starts_with("rev.namespace.") {
            &namespace_expressions
        } else {
            &object_expressions
        };
        ensure!(
            selector.contains(&format!("\"values\":[\"{revision}\"]")),
            "does not select istio.io/rev={revision}: {selector}"
        );
    }
    Ok(())
}

/// The Deployment options of ci/every-option-values.yaml, as rendered.
fn check_deployment(deployment: &Value) -> Result<(), String> {
    let spec = &deployment["spec"];
    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];
    let checks: [(&str, &Value, Value); 12] = [
        ("replicas", &spec["replicas"], 3.into()),
        ("revisionHistoryLimit", &spec["revisionHistoryLimit"], 2.into()),
        (
            "maxUnavailable",
            &spec["strategy"]["rollingUpdate"]["maxUnavailable"],
            1.into(),
        ),
        (
            "image",
            &container["image"],
            "registry.example.com/mesh/sidecar-injector-custom:0.1.0-rc.1".into(),
        ),
        ("imagePullPolicy", &container["imagePullPolicy"], "Always".into()),
        (
            "imagePullSecrets",
            &pod["imagePullSecrets"][0]["name"],
            "registry-credentials".into(),
        ),
        (
            "memory limit",
            &container["resources"]["limits"]["memory"],
            "256Mi".into(),
        ),
        (
            "priorityClassName",
            &pod["priorityClassName"],
            "system-cluster-critical".into(),
        ),
        ("grace period", &pod["terminationGracePeriodSeconds"], 20.into()),
        ("nodeSelector", &pod["nodeSelector"]["kubernetes.io/os"], "linux".into()),
        (
            "pod label",
            &spec["template"]["metadata"]["labels"]["example.com/team"],
            "platform".into(),
        ),
        ("tolerations", &pod["tolerations"][0]["key"], "dedicated".into()),
    ];
    for (what, got, want) in checks {
        ensure!(*got == want, "{what} is {got}, expected {want}");
    }
    ensure!(
        pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"].is_array(),
        "podAntiAffinity required is not rendered: {}",
        pod["affinity"]
    );
    let args = container["args"].to_string();
    ensure!(
        args.contains("--drain-delay=5s") && args.contains("--drain-timeout=10s"),
        "drain flags: {args}"
    );
    let env = container["env"].to_string();
    ensure!(
        env.contains("SIDECAR_INJECTOR_EXAMPLE") && env.contains("\"debug\"") && env.contains("\"text\""),
        "env: {env}"
    );
    Ok(())
}
