//! Istio's own injection test corpus: every case with a `.injected` file, compared whole.
//!
//! Inputs and expected outputs are read at test time from `../shared/corpus/istio-inject`
//! (Istio's `pkg/kube/inject/testdata/inject`, Apache-2.0, Copyright Istio Authors; see
//! `../shared/corpus/README.md`), or from `$SIDECAR_INJECTOR_CORPUS`. Each case runs twice,
//! through one engine:
//!
//! - through the HTTPS webhook: each pod template is wrapped in an AdmissionReview CREATE,
//!   the returned patch is applied, and the whole injected pod (metadata and spec) is
//!   compared with Istio's;
//! - through offline `inject`: the whole input file goes in, and every document that comes
//!   out, in order, is compared with Istio's file. Pod templates are compared with Istio's;
//!   the rest of each document must equal the input, since Istio's file holds its Go round
//!   trip there (`status: {}`, typed zero values) and we pass it through as given.
//!
//! The base settings are `deploy/istio-identical.yaml`; each case adds the flags Istio's
//! `inject_test.go` gives it. Before comparing, both sides get one normalisation:
//!
//! - images of `istio-proxy`, `istio-init` and `istio-validation` become `<proxy image>`
//!   (Istio's test build uses its own registry and tag);
//! - `null` and `{}` members are dropped, as the API server treats them as absent (Go
//!   writes `resources: {}` and `creationTimestamp: null`; a volume with no source is an
//!   `emptyDir`);
//! - resource quantities are compared in canonical form (`3000m` equals `3`);
//! - env values and annotations that hold JSON are compared as JSON values, so Go's
//!   indentation of `ISTIO_META_POD_PORTS` does not count.
//!
//! Mesh addresses (`CA_ADDR`, trust domain, cluster ID) are our defaults and equal Istio's
//! test values, so they need no normalisation. Cases that need Istio features outside our
//! scope are listed with the reason; the tests print a per-case table and fail on any case
//! expected to match that does not.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{TestServer, apply_and_check, check_pod_valid, pod_review};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use sidecar_injector::config::{
    CniProvider, InboundTrafficPolicy, InjectConfig, InterceptionMode, Platform, ResourceAmounts, ResourceDefaults,
};
use sidecar_injector::engine::Injector;
use sidecar_injector::engine::NamespaceContext;
use sidecar_injector::engine::PodRequest;
use sidecar_injector::engine::Workload;
use sidecar_injector::manifest::{pod_templates, pod_templates_mut, read_documents, template_as_pod};
use sidecar_injector::offline::inject_yaml;
use sidecar_injector::quantity::{Quantity, ResourceKind};
use sidecar_injector::review::{answer_review, parse_review};

/// What a case is expected to do.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// All compared fields equal Istio's.
    Match,
    /// Needs a feature outside this release; the reason is reported.
    Unsupported(&'static str),
    /// Matches through offline `inject`; holds no pod, so the webhook never sees it.
    OfflineOnly,
    /// Matches through the webhook; not run offline, for the reason given.
    WebhookOnly(&'static str),
}

/// Which way a case's pods go through the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Webhook,
    Offline,
}

struct Case {
    input: &'static str,
    expected: &'static str,
    settings: fn(&mut InjectConfig),
    expect: Expect,
    /// Annotations of the pods' namespace, as the server's namespace cache would give them.
    namespace_annotations: &'static [(&'static str, &'static str)],
}

fn defaults(_: &mut InjectConfig) {}
fn classic(config: &mut InjectConfig) {
    config.native_sidecars = false;
}
fn cni(config: &mut InjectConfig) {
    config.cni_enabled = true;
}
fn cni_multus(config: &mut InjectConfig) {
    config.cni_enabled = true;
    config.cni_provider = CniProvider::Multus;
}
fn inbound_localhost(config: &mut InjectConfig) {
    config.inbound_traffic_policy = InboundTrafficPolicy::Localhost;
}
/// The namespace Istio's OpenShift cases run in (`test-ns` in `inject_test.go`).
const OPENSHIFT_NAMESPACE: &[(&str, &str)] = &[
    ("openshift.io/sa.scc.uid-range", "1000620000/10000"),
    ("openshift.io/sa.scc.supplemental-groups", "1000620000/10000"),
];
const OPENSHIFT_WEBHOOK_ONLY: &str = "Istio runs its OpenShift cases through the webhook only: offline inject has no namespace to read the UID range from";
fn openshift(config: &mut InjectConfig) {
    config.platform = Platform::Openshift;
    config.cni_enabled = true;
}
fn pull_secret(config: &mut InjectConfig) {
    config.image_pull_secrets = vec!["barSecret".into()];
}
fn mtls_certs(config: &mut InjectConfig) {
    config.mount_mtls_certs = true;
}
fn drain_duration(config: &mut InjectConfig) {
    config.mesh_default_config.insert("drainDuration".into(), json!("23s"));
}
fn tracing_off(config: &mut InjectConfig) {
    config.mesh_default_config.insert("tracing".into(), json!({}));
}
fn fips(config: &mut InjectConfig) {
    config.compliance_policy = "fips-140-3".into();
}
fn cni_network(config: &mut InjectConfig) {
    config.cni_enabled = true;
    config.network = "network1".into();
}
fn tproxy(config: &mut InjectConfig) {
    config.interception_mode = InterceptionMode::Tproxy;
}
fn pull_always(config: &mut InjectConfig) {
    config.image_pull_policy = Some("Always".into());
}
fn pull_never(config: &mut InjectConfig) {
    config.image_pull_policy = Some("Never".into());
}
fn traffic_params(config: &mut InjectConfig) {
    config.include_outbound_ip_ranges = "127.0.0.1/24,10.96.0.1/24".into();
    config.exclude_outbound_ip_ranges = "10.96.0.2/24,10.96.0.3/24".into();
    config.exclude_inbound_ports = "4,5,6".into();
    config.status_port = 0;
}
fn hold(config: &mut InjectConfig) {
    config.hold_application_until_proxy_starts = true;
}
fn status_port_123(config: &mut InjectConfig) {
    config.status_port = 123;
    config.readiness_initial_delay_seconds = 100;
    config.readiness_period_seconds = 200;
    config.readiness_failure_threshold = 300;
}
fn resources(requests: (Option<&str>, Option<&str>), limits: (Option<&str>, Option<&str>)) -> ResourceDefaults {
    let amounts = |(cpu, memory): (Option<&str>, Option<&str>)| ResourceAmounts {
        cpu: cpu.map(Into::into),
        memory: memory.map(Into::into),
        ephemeral_storage: None,
    };
    ResourceDefaults {
        requests: amounts(requests),
        limits: amounts(limits),
    }
}
fn resources_memory_null(config: &mut InjectConfig) {
    config.resources = resources((Some("50m"), None), (Some("100m"), None));
}
fn resources_cpu_null(config: &mut InjectConfig) {
    config.resources = resources((None, Some("150Mi")), (None, Some("500Mi")));
}
fn resources_zero(config: &mut InjectConfig) {
    config.resources = resources((Some("0"), Some("150Mi")), (Some("0"), Some("500Mi")));
}

const fn case(input: &'static str, expected: &'static str, settings: fn(&mut InjectConfig)) -> Case {
    Case {
        input,
        expected,
        settings,
        expect: Expect::Match,
        namespace_annotations: &[],
    }
}

const fn unsupported(input: &'static str, expected: &'static str, reason: &'static str) -> Case {
    Case {
        input,
        expected,
        settings: defaults,
        expect: Expect::Unsupported(reason),
        namespace_annotations: &[],
    }
}

fn cases() -> Vec<Case> {
    vec![
        case("hello.yaml", "hello.yaml.injected", defaults),
        case("hello.yaml", "hello-old-version.yaml.injected", classic),
        case("hello.yaml", "hello.yaml.cni.injected", cni_network),
        case("hello.yaml", "hello.yaml.proxyImageName.injected", defaults),
        case("hello.yaml", "hello.yaml.proxyInitImageName.injected", defaults),
        case("hello.yaml", "hello-tproxy.yaml.injected", tproxy),
        case("hello.yaml", "hello-always.yaml.injected", pull_always),
        case("hello.yaml", "hello-never.yaml.injected", pull_never),
        case("hello.yaml", "hello-cncf-networks.yaml.injected", cni_multus),
        case("hello.yaml", "hello.proxyHoldsApplication.yaml.injected", hold),
        case("hello.yaml", "hello-template-in-values.yaml.injected", defaults),
        case("hello.yaml", "hello-fips-140-3.yaml.injected", fips),
        Case {
            expect: Expect::OfflineOnly,
            ..case("hello-service.yaml", "hello-service.yaml.injected", defaults)
        },
        case("hello.yaml", "hello-image-secrets-in-values.yaml.injected", pull_secret),
        case("hello.yaml", "hello-mount-mtls-certs.yaml.injected", mtls_certs),
        case(
            "hello-existing-cncf-networks-json.yaml",
            "hello-existing-cncf-networks-json.yaml.injected",
            cni_multus,
        ),
        case("format-duration.yaml", "format-duration.yaml.injected", drain_duration),
        case("traffic-params.yaml", "traffic-params.yaml.injected", traffic_params),
        case(
            "traffic-params-empty-includes.yaml",
            "traffic-params-empty-includes.yaml.injected",
            defaults,
        ),
        case(
            "traffic-annotations.yaml",
            "traffic-annotations.yaml.injected",
            defaults,
        ),
        case(
            "traffic-annotations-empty-includes.yaml",
            "traffic-annotations-empty-includes.yaml.injected",
            defaults,
        ),
        case(
            "kubevirtInterfaces.yaml",
            "kubevirtInterfaces.yaml.injected",
            status_port_123,
        ),
        case(
            "kubevirtInterfaces_list.yaml",
            "kubevirtInterfaces_list.yaml.injected",
            defaults,
        ),
        case(
            "reroute-virtual-interfaces.yaml",
            "reroute-virtual-interfaces.yaml.injected",
            status_port_123,
        ),
        case(
            "reroute-virtual-interfaces_list.yaml",
            "reroute-virtual-interfaces_list.yaml.injected",
            defaults,
        ),
        case(
            "resource_annotations.yaml",
            "resource_annotations.yaml.injected",
            defaults,
        ),
        case(
            "proxy-resources-memory-null.yaml",
            "proxy-resources-memory-null.yaml.injected",
            resources_memory_null,
        ),
        case(
            "proxy-resources-null.yaml",
            "proxy-resources-null.yaml.injected",
            resources_cpu_null,
        ),
        case(
            "proxy-resources-null-no-init.yaml",
            "proxy-resources-null-no-init.yaml.injected",
            resources_cpu_null,
        ),
        case(
            "proxy-resources-zero.yaml",
            "proxy-resources-zero.yaml.injected",
            resources_zero,
        ),
        case("auth.yaml", "auth.yaml.injected", defaults),
        case(
            "auth.non-default-service-account.yaml",
            "auth.non-default-service-account.yaml.injected",
            defaults,
        ),
        case("daemonset.yaml", "daemonset.yaml.injected", defaults),
        case("daemonset.yaml", "daemonset-old-version.yaml.injected", classic),
        case("deploymentconfig.yaml", "deploymentconfig.yaml.injected", defaults),
        case(
            "deploymentconfig-multi.yaml",
            "deploymentconfig-multi.yaml.injected",
            defaults,
        ),
        case(
            "deploymentconfig-with-canonical-service-label.yaml",
            "deploymentconfig-with-canonical-service-label.yaml.injected",
            defaults,
        ),
        case("frontend.yaml", "frontend.yaml.injected", defaults),
        case("hello-host-network.yaml", "hello-host-network.yaml.injected", defaults),
        case(
            "hello-host-network-with-ns.yaml",
            "hello-host-network-with-ns.yaml.injected",
            defaults,
        ),
        case("hello-ignore.yaml", "hello-ignore.yaml.injected", defaults),
        case(
            "hello-mtls-not-ready.yaml",
            "hello-mtls-not-ready.yaml.injected",
            defaults,
        ),
        case(
            "hello-multiport-metrics.yaml",
            "hello-multiport-metrics.yaml.injected",
            defaults,
        ),
        case("hello-namespace.yaml", "hello-namespace.yaml.injected", defaults),
        case("hello-otel-semconv.yaml", "hello-otel-semconv.yaml.injected", defaults),
        case("hello-probes.yaml", "hello-probes.yaml.injected", defaults),
        case(
            "hello-probes.yaml",
            "hello-probes.proxyHoldsApplication.yaml.injected",
            hold,
        ),
        case(
            "hello-probes-localhost.yaml",
            "hello-probes-localhost.yaml.injected",
            inbound_localhost,
        ),
        case(
            "hello-probes-noProxyHoldApplication-ProxyConfig.yaml",
            "hello-probes-noProxyHoldApplication-ProxyConfig.yaml.injected",
            hold,
        ),
        case(
            "hello-probes-proxyHoldApplication-ProxyConfig.yaml",
            "hello-probes-proxyHoldApplication-ProxyConfig.yaml.injected",
            defaults,
        ),
        case(
            "hello-probes-with-flag-set-in-annotation.yaml",
            "hello-probes-with-flag-set-in-annotation.yaml.injected",
            defaults,
        ),
        case(
            "hello-probes-with-flag-unset-in-annotation.yaml",
            "hello-probes-with-flag-unset-in-annotation.yaml.injected",
            defaults,
        ),
        case("hello-readiness.yaml", "hello-readiness.yaml.injected", defaults),
        case(
            "hello-tracing-disabled.yaml",
            "hello-tracing-disabled.yaml.injected",
            tracing_off,
        ),
        case("https-probes.yaml", "https-probes.yaml.injected", defaults),
        case(
            "init-no-intercept-no-native-sidecar.yaml",
            "init-no-intercept-no-native-sidecar.yaml.injected",
            defaults,
        ),
        case("job.yaml", "job.yaml.injected", defaults),
        case("job.yaml", "job-old-version.yaml.injected", classic),
        case("list.yaml", "list.yaml.injected", defaults),
        case("list-frontend.yaml", "list-frontend.yaml.injected", defaults),
        case("multi-container.yaml", "multi-container.yaml.injected", defaults),
        case("multiple-templates.yaml", "multiple-templates.yaml.injected", defaults),
        case("native-sidecar.yaml", "native-sidecar.yaml.injected", defaults),
        case(
            "native-sidecar.yaml",
            "native-sidecar-old-version.yaml.injected",
            classic,
        ),
        case(
            "native-sidecar-opt-in.yaml",
            "native-sidecar-opt-in.yaml.injected",
            classic,
        ),
        case("one_container.yaml", "one_container.yaml.injected", defaults),
        case("pod.yaml", "pod.yaml.injected", defaults),
        case("pod.yaml", "pod-old-version.yaml.injected", classic),
        case("prometheus-scrape.yaml", "prometheus-scrape.yaml.injected", defaults),
        case("prometheus-scrape2.yaml", "prometheus-scrape2.yaml.injected", defaults),
        case("ready_live.yaml", "ready_live.yaml.injected", defaults),
        case("ready_only.yaml", "ready_only.yaml.injected", defaults),
        case("replicaset.yaml", "replicaset.yaml.injected", defaults),
        case("replicaset.yaml", "replicaset-old-version.yaml.injected", classic),
        case(
            "replicationcontroller.yaml",
            "replicationcontroller.yaml.injected",
            defaults,
        ),
        case("startup_live.yaml", "startup_live.yaml.injected", defaults),
        case("startup_only.yaml", "startup_only.yaml.injected", defaults),
        case("status_annotations.yaml", "status_annotations.yaml.injected", defaults),
        case(
            "status_annotations_zeroport.yaml",
            "status_annotations_zeroport.yaml.injected",
            defaults,
        ),
        case("tcp-probes.yaml", "tcp-probes.yaml.injected", defaults),
        case(
            "truncate-canonical-name-custom-controller-pod.yaml",
            "truncate-canonical-name-custom-controller-pod.yaml.injected",
            defaults,
        ),
        case(
            "hello-proxy-override.yaml",
            "hello-proxy-override.yaml.injected",
            defaults,
        ),
        case("proxy-override.yaml", "proxy-override.yaml.injected", defaults),
        case(
            "proxy-override-args.yaml",
            "proxy-override-args.yaml.injected",
            defaults,
        ),
        case(
            "proxy-override-args.yaml",
            "proxy-override-args-native.yaml.injected",
            defaults,
        ),
        case(
            "proxy-override-runas.yaml",
            "proxy-override-runas.yaml.injected",
            defaults,
        ),
        case(
            "proxy-override-runas.yaml",
            "proxy-override-runas.yaml.cni.injected",
            cni,
        ),
        case(
            "proxy-override-runas.yaml",
            "proxy-override-runas.yaml.tproxy.injected",
            tproxy,
        ),
        case(
            "only-proxy-container.yaml",
            "only-proxy-container.yaml.injected",
            defaults,
        ),
        case("enable-core-dump.yaml", "enable-core-dump.yaml.injected", defaults),
        Case {
            expect: Expect::WebhookOnly(OPENSHIFT_WEBHOOK_ONLY),
            namespace_annotations: OPENSHIFT_NAMESPACE,
            ..case("hello-openshift.yaml", "hello-openshift.yaml.injected", openshift)
        },
        Case {
            expect: Expect::WebhookOnly(OPENSHIFT_WEBHOOK_ONLY),
            namespace_annotations: OPENSHIFT_NAMESPACE,
            ..case(
                "hello-openshift-tproxy.yaml",
                "hello-openshift-tproxy.yaml.injected",
                openshift,
            )
        },
        unsupported(
            "hello-openshift-custom-injection.yaml",
            "hello-openshift-custom-injection.yaml.injected",
            "OpenShift and custom templates are not supported",
        ),
        unsupported(
            "custom-template.yaml",
            "custom-template.yaml.injected",
            "custom injection templates are not supported",
        ),
        case("gateway.yaml", "gateway.yaml.injected", defaults),
        case(
            "gateway-with-default-container.yaml",
            "gateway-with-default-container.yaml.injected",
            defaults,
        ),
        unsupported(
            "gateway-spire.yaml",
            "gateway-spire.yaml.injected",
            "the gateway and SPIRE templates are not supported",
        ),
        unsupported(
            "sidecar-spire.yaml",
            "sidecar-spire.yaml.injected",
            "the SPIRE template is not supported",
        ),
        unsupported(
            "grpc-agent.yaml",
            "grpc-agent.yaml.injected",
            "the gRPC agent template is not supported",
        ),
        unsupported(
            "grpc-simple.yaml",
            "grpc-simple.yaml.injected",
            "the gRPC templates are not supported",
        ),
    ]
}

/// The corpus folder; a missing corpus fails the test rather than skipping it.
/// Expected outputs whose inputs are not in the corpus selection: run as re-injection only.
fn reinjection_only_cases() -> Vec<Case> {
    vec![
        unsupported(
            "cronjob-old-version.yaml.injected",
            "cronjob-old-version.yaml.injected",
            "istioctl writes a CronJob's pod labels and annotations on jobTemplate.metadata, where \
             pods never see them; we write them on the pod template, so re-injecting Istio's file \
             finds no status annotation on the pod template",
        ),
        case(
            "statefulset-old-version.yaml.injected",
            "statefulset-old-version.yaml.injected",
            classic,
        ),
        case(
            "hello-multiple-image-secrets.yaml.injected",
            "hello-multiple-image-secrets.yaml.injected",
            pull_secret,
        ),
    ]
}

fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("SIDECAR_INJECTOR_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/istio-inject"));
    assert!(
        dir.is_dir(),
        "Istio corpus not found at {}; set SIDECAR_INJECTOR_CORPUS",
        dir.display()
    );
    dir
}

fn read_file_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    read_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A pod template with the workload it belongs to.
struct Template {
    label: String,
    namespace: String,
    /// The workload holding the template; `None` for a bare Pod.
    owner: Option<Workload>,
    pod: Value,
}

fn templates(document: &Value) -> Vec<Template> {
    pod_templates(document)
        .into_iter()
        .map(|found| Template {
            label: found.label(),
            namespace: found.namespace.clone().unwrap_or_else(|| "default".to_string()),
            owner: found.workload().cloned(),
            pod: template_as_pod(found.template),
        })
        .collect()
}

/// The normalisation applied to both sides before comparing; see the module docs.
fn normalise(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, member) in map.iter_mut() {
                normalise(member);
                if key == "resources" {
                    canonicalise_resources(member);
                }
            }
            map.retain(|_, member| !is_empty(member));
            if is_injected_container(map) {
                map.insert("image".into(), json!("<proxy image>"));
            }
            // Env values are compared as JSON but otherwise as given: in `PROXY_CONFIG`,
            // `"tracing": {}` (tracing off) is not the same as no `tracing`.
            if let Some(Value::String(text)) = map.get("value")
                && let Some(parsed) = json_text(text)
            {
                map.insert("value".into(), parsed);
            }
            if let Some(Value::Object(annotations)) = map.get_mut("annotations") {
                for annotation in annotations.values_mut() {
                    if let Some(mut parsed) = annotation.as_str().and_then(json_text) {
                        normalise(&mut parsed);
                        *annotation = parsed;
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

/// Absent, `null` and `{}` mean the same to the API server (Go writes `strategy: {}`,
/// `status: {}` and `creationTimestamp: null`; a volume with no source is an `emptyDir`).
fn is_empty(value: &Value) -> bool {
    value.is_null() || value.as_object().is_some_and(serde_json::Map::is_empty)
}

fn is_injected_container(container: &serde_json::Map<String, Value>) -> bool {
    container.contains_key("image")
        && container
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|name| ["istio-proxy", "istio-init", "istio-validation"].contains(&name))
}

/// A JSON object or array held in a string (env values, annotations), parsed.
fn json_text(text: &str) -> Option<Value> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Resource quantities in canonical form, so `1000m` equals `1`.
fn canonicalise_resources(resources: &mut Value) {
    for section in ["requests", "limits"] {
        let Some(map) = resources.get_mut(section).and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, value) in map.iter_mut() {
            let kind = if name == "cpu" {
                ResourceKind::Cpu
            } else {
                ResourceKind::Memory
            };
            let text = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
            if let Ok(quantity) = Quantity::parse(&text, kind) {
                *value = json!(quantity.units().to_string());
            }
        }
    }
}

/// Every place where `got` and `want` differ, as JSON pointers with both values.
fn differences(got: &Value, want: &Value, path: &str, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(ours), Value::Object(theirs)) => {
            let keys: std::collections::BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
            for key in keys {
                let child = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                differences(
                    ours.get(key).unwrap_or(&Value::Null),
                    theirs.get(key).unwrap_or(&Value::Null),
                    &child,
                    out,
                );
            }
        }
        (Value::Array(ours), Value::Array(theirs)) if ours.len() == theirs.len() => {
            for (index, (a, b)) in ours.iter().zip(theirs).enumerate() {
                differences(a, b, &format!("{path}/{index}"), out);
            }
        }
        (Value::Array(ours), Value::Array(theirs)) if named(ours).is_some() && named(theirs).is_some() => {
            out.push(format!(
                "{path}: got names {:?}, want names {:?}",
                named(ours).unwrap_or_default(),
                named(theirs).unwrap_or_default()
            ));
            for item in ours {
                if let Some(same) = theirs.iter().find(|other| other["name"] == item["name"]) {
                    differences(item, same, &format!("{path}/{}", item["name"]), out);
                }
            }
        }
        _ if got != want => out.push(format!("{path}: got {got}, want {want}")),
        _ => {}
    }
}

/// The `name` of each item, when every item has one (containers, env, volumes).
fn named(items: &[Value]) -> Option<Vec<&str>> {
    items.iter().map(|item| item["name"].as_str()).collect()
}

/// The differences between our normalised output and Istio's.
fn compare(mut got: Value, mut want: Value, label: &str, failures: &mut Vec<String>) {
    normalise(&mut got);
    normalise(&mut want);
    let mut found = Vec::new();
    differences(&got, &want, "", &mut found);
    failures.extend(found.into_iter().map(|difference| format!("{label} {difference}")));
}

fn corpus_config(case: &Case) -> InjectConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/istio-identical.yaml");
    let mut config = InjectConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    (case.settings)(&mut config);
    config
}

/// Runs a case's pod templates through the HTTPS webhook and compares each injected pod
/// with Istio's.
async fn run_case(case: &Case, dir: &Path) -> Result<usize, String> {
    let inputs = read_file_documents(&dir.join(case.input));
    let expected_documents = read_file_documents(&dir.join(case.expected));
    let ours: Vec<Template> = inputs.iter().flat_map(templates).collect();
    let theirs: Vec<Template> = expected_documents.iter().flat_map(templates).collect();
    if ours.len() != theirs.len() || ours.is_empty() {
        return Err(format!(
            "{} pod templates in input, {} in expected output",
            ours.len(),
            theirs.len()
        ));
    }
    let server = TestServer::start(corpus_config(case)).await;
    let mut failures = Vec::new();
    for (index, (template, expected)) in ours.iter().zip(&theirs).enumerate() {
        let mut pod = template.pod.clone();
        if let Some(owner) = &template.owner {
            pod["metadata"]["ownerReferences"] = json!([{"apiVersion": owner.api_version, "kind": owner.kind, "name": owner.name, "uid": "00000000-0000-0000-0000-000000000000", "controller": true}]);
        }
        let review = pod_review(&format!("corpus-{index}"), &template.namespace, &pod);
        let response = if case.namespace_annotations.is_empty() {
            server.review(&review).await
        } else {
            review_with_namespace(&corpus_config(case), &review, case.namespace_annotations)
        };
        if response["response"]["allowed"] != true {
            failures.push(format!(
                "{}: denied: {}",
                template.label, response["response"]["status"]["message"]
            ));
            continue;
        }
        let mut injected = apply_and_check(&pod, &response);
        if template.owner.is_some()
            && let Some(metadata) = injected["metadata"].as_object_mut()
        {
            metadata.remove("ownerReferences");
        }
        check_pod_valid(&injected);
        compare(injected, expected.pod.clone(), &template.label, &mut failures);
    }
    server.stop().await;
    if failures.is_empty() {
        Ok(ours.len())
    } else {
        Err(failures.join("\n      "))
    }
}

/// Answers `review` as the server does when its namespace cache holds `annotations` for the
/// pod's namespace: the HTTPS test server runs without a cluster, so this calls the
/// server's own `answer_review` with that namespace context.
fn review_with_namespace(config: &InjectConfig, review: &Value, annotations: &[(&str, &str)]) -> Value {
    let injector = Injector::new(config.clone()).unwrap_or_else(|e| panic!("{e}"));
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    let context = NamespaceContext {
        annotations: Some(&annotations),
        recommendation: None,
        limit_ranges: &[],
        resource_quotas: &[],
    };
    let body = serde_json::to_vec(review).unwrap_or_default();
    let parsed = parse_review(&body).unwrap_or_else(|e| panic!("{e}"));
    let answer = answer_review(&injector, parsed, &context, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_slice(&answer.body).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a case's whole input file through offline `inject` and compares every document,
/// in order, with Istio's.
fn run_offline_case(case: &Case, dir: &Path, input_file: &str) -> Result<usize, String> {
    let input = std::fs::read_to_string(dir.join(input_file)).map_err(|e| e.to_string())?;
    let injector = Injector::new(corpus_config(case)).map_err(|e| e.to_string())?;
    let output = inject_yaml(&injector, &input, "default").map_err(|e| format!("inject failed: {e}"))?;
    let ours = read_documents(&output).map_err(|e| e.to_string())?;
    let theirs = read_file_documents(&dir.join(case.expected));
    if ours.len() != theirs.len() {
        return Err(format!("{} documents out, Istio has {}", ours.len(), theirs.len()));
    }
    let inputs = read_file_documents(&dir.join(input_file));
    let mut failures = Vec::new();
    for (index, ((mut got, mut want), mut input)) in ours.into_iter().zip(theirs).zip(inputs.clone()).enumerate() {
        let label = format!("document {}", index + 1);
        let (ours, theirs, given) = (
            take_templates(&mut got),
            take_templates(&mut want),
            take_templates(&mut input),
        );
        if ours.len() != given.len() || ours.len() != theirs.len() {
            failures.push(format!(
                "{label}: {} pod templates out, {} in the input, {} in Istio's file",
                ours.len(),
                given.len(),
                theirs.len()
            ));
        }
        for (ours, theirs) in ours.into_iter().zip(theirs) {
            compare(ours, theirs, &label, &mut failures);
        }
        // Outside pod templates Istio's file holds its Go round trip of the input (`status: {}`,
        // typed zero values); we must pass the input through as given.
        if got != input {
            compare(
                got,
                input,
                &format!("{label} (outside pod templates, against the input)"),
                &mut failures,
            );
        }
    }
    if failures.is_empty() {
        Ok(inputs.len())
    } else {
        Err(failures.join("\n      "))
    }
}

/// Takes the pod templates out of a document (one per `List` item), leaving `null` behind.
fn take_templates(document: &mut Value) -> Vec<Value> {
    pod_templates_mut(document)
        .into_iter()
        .map(|found| found.template.take())
        .collect()
}

/// The per-case table, and the cases expected to match that did not.
struct Table {
    text: String,
    matched: usize,
    out_of_scope: usize,
    not_applicable: usize,
    regressions: Vec<&'static str>,
}

impl Table {
    fn new(title: &str) -> Table {
        Table {
            text: format!("\n{title}\n"),
            matched: 0,
            out_of_scope: 0,
            not_applicable: 0,
            regressions: Vec::new(),
        }
    }

    fn record(&mut self, case: &Case, result: Result<usize, String>, route: Route) {
        let unit = match route {
            Route::Webhook => "pod templates",
            Route::Offline => "documents",
        };
        let expect = match (case.expect, route) {
            (Expect::OfflineOnly, Route::Offline) | (Expect::WebhookOnly(_), Route::Webhook) => Expect::Match,
            (expect, _) => expect,
        };
        let line = match (expect, &result) {
            (Expect::OfflineOnly, _) => {
                self.not_applicable += 1;
                format!("N/A          {}: no pod template, offline only", case.expected)
            }
            (Expect::WebhookOnly(reason), _) => {
                self.not_applicable += 1;
                format!("N/A          {}: {reason}", case.expected)
            }
            (Expect::Match, Ok(count)) => {
                self.matched += 1;
                format!("PASS         {} ({count} {unit})", case.expected)
            }
            (Expect::Match, Err(why)) => {
                self.regressions.push(case.expected);
                format!("FAIL         {}\n      {why}", case.expected)
            }
            (Expect::Unsupported(reason), Ok(_)) => {
                format!("PASS (unexp) {}: listed as unsupported ({reason})", case.expected)
            }
            (Expect::Unsupported(reason), Err(_)) => {
                self.out_of_scope += 1;
                format!("UNSUPPORTED  {}: {reason}", case.expected)
            }
        };
        self.text.push_str(&line);
        self.text.push('\n');
    }

    fn finish(self) {
        println!(
            "{}\n{} matched, {} out of scope, {} not applicable, {} failing",
            self.text,
            self.matched,
            self.out_of_scope,
            self.not_applicable,
            self.regressions.len()
        );
        assert!(
            self.regressions.is_empty(),
            "corpus cases that must match do not: {:?}\n{}",
            self.regressions,
            self.text
        );
        assert!(self.matched >= 80, "only {} corpus cases matched", self.matched);
    }
}

#[tokio::test]
async fn istio_corpus_pods_through_the_webhook_match_istio() {
    let dir = corpus_dir();
    let mut table = Table::new("Istio corpus through the HTTPS webhook (whole pods, normalised)");
    for case in cases() {
        let result = run_case(&case, &dir).await;
        table.record(&case, result, Route::Webhook);
    }
    table.finish();
}

#[test]
fn istio_corpus_files_through_offline_inject_match_istio() {
    let dir = corpus_dir();
    let mut table = Table::new("Istio corpus through offline inject (whole documents, normalised)");
    for case in cases() {
        let result = run_offline_case(&case, &dir, case.input);
        table.record(&case, result, Route::Offline);
    }
    table.finish();
}

/// Re-injection: Istio's injected output, injected again with the same settings, comes out
/// unchanged. This also runs the three expected outputs whose inputs the corpus lacks.
#[test]
fn istio_injected_outputs_reinject_to_themselves() {
    let dir = corpus_dir();
    let mut table = Table::new("Istio corpus outputs re-injected through offline inject (whole documents, normalised)");
    for case in cases().iter().chain(&reinjection_only_cases()) {
        let result = run_offline_case(case, &dir, case.expected);
        table.record(case, result, Route::Offline);
    }
    table.finish();
}

/// The webhook reads a review's pod without the app containers' fields the engine never
/// reads (`review/pod_spec.rs`). Its answer must equal the engine's answer on the whole,
/// typed Pod, for every pod template of the corpus, inputs and Istio's outputs alike. The
/// outputs are taken with their `sidecar.istio.io/status` removed, so their `istio-proxy`
/// and `istio-init` (env, args, mounts and all) are merged as the pod's own containers.
#[test]
fn the_review_reader_keeps_everything_the_engine_reads() {
    let dir = corpus_dir();
    let (mut compared, mut injected, mut denied) = (0, 0, 0);
    let mut failures = Vec::new();
    for case in cases() {
        let injector = Injector::new(corpus_config(&case)).unwrap_or_else(|e| panic!("{e}"));
        let annotations: BTreeMap<String, String> = case
            .namespace_annotations
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let context = NamespaceContext {
            annotations: (!annotations.is_empty()).then_some(&annotations),
            ..NamespaceContext::default()
        };
        let mut documents = read_file_documents(&dir.join(case.input));
        documents.extend(read_file_documents(&dir.join(case.expected)));
        for template in documents.iter().flat_map(templates) {
            let mut pod = template.pod.clone();
            if let Some(annotations) = pod.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
                annotations.remove("sidecar.istio.io/status");
            }
            let label = format!("{} ({})", template.label, case.expected);
            match reader_and_engine_agree(&injector, &context, &template.namespace, &pod) {
                Ok(true) => injected += 1,
                Ok(false) => denied += 1,
                Err(difference) => failures.push(format!("{label}: {difference}")),
            }
            compared += 1;
        }
    }
    println!(
        "{compared} pods compared: {injected} allowed, {denied} denied, {} differing",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        compared >= 200 && injected >= 100,
        "{compared} pods compared, {injected} allowed"
    );
}

/// Whether the answer through `parse_review` and `answer_review` equals `Injector::inject`
/// on `pod` read whole: the same patch and warnings, or the same denial. `Ok(true)` when
/// allowed.
fn reader_and_engine_agree(
    injector: &Injector,
    context: &NamespaceContext<'_>,
    namespace: &str,
    pod: &Value,
) -> Result<bool, String> {
    let body = serde_json::to_vec(&pod_review("equal", namespace, pod)).unwrap_or_default();
    let parsed = parse_review(&body).map_err(|e| format!("parse: {e}"))?;
    let answer = answer_review(injector, parsed, context, Vec::new()).map_err(|e| format!("answer: {e}"))?;
    let response: Value = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
    let response = &response["response"];
    let whole: Pod = serde_json::from_value(pod.clone()).map_err(|e| format!("whole pod: {e}"))?;
    let request = PodRequest {
        pod: &whole,
        namespace,
        workload: None,
        has_metadata: true,
        unread_annotation_bytes: 0,
        namespace_context: *context,
        app_amounts: None,
        reinjection: false,
    };
    let warnings = response["warnings"].as_array().cloned().unwrap_or_default();
    match injector.inject(&request) {
        Ok(outcome) => {
            let patch = response["patch"].as_str().map(|p| BASE64.decode(p).unwrap_or_default());
            let expected = (!outcome.patch.is_empty()).then(|| outcome.patch.into_bytes());
            if response["allowed"] != true || patch != expected {
                return Err(format!(
                    "the whole pod's patch differs; the reader's answer: {response}"
                ));
            }
            if warnings != outcome.warnings {
                return Err(format!("warnings {warnings:?} against {:?}", outcome.warnings));
            }
            Ok(true)
        }
        Err(denial) => {
            if response["allowed"] != false || response["status"]["message"] != denial.error.to_string() {
                return Err(format!(
                    "the whole pod is denied ({}); the reader's answer: {response}",
                    denial.error
                ));
            }
            Ok(false)
        }
    }
}
