//! Istio's own injection test corpus, run through the real HTTPS webhook.
//!
//! Inputs and expected outputs are read at test time from `../shared/corpus/istio-inject`
//! (Istio's `pkg/kube/inject/testdata/inject`, Apache-2.0, Copyright Istio Authors; see
//! `../shared/corpus/README.md`), or from `$SIDECAR_INJECTOR_CORPUS`. Each pod template
//! is wrapped in an AdmissionReview CREATE, the returned patch is applied, and the result
//! is compared with Istio's output on these fields:
//!
//! - container order: the names in `initContainers` and in `containers`;
//! - resources of `istio-proxy` and of `istio-init`/`istio-validation`, as quantities;
//! - the init container's arguments;
//! - the security context of `istio-proxy` and of the init container;
//! - the pod labels;
//! - the app containers' probes and lifecycle hooks (rewritten to the agent) and the
//!   proxy's `ISTIO_KUBE_APP_PROBERS`;
//! - the proxy's readiness probe;
//! - the proxy's `PROXY_CONFIG` and `ISTIO_PROMETHEUS_ANNOTATIONS` (as JSON) and the
//!   `proxy.istio.io/config` annotation;
//! - the interception annotations (`traffic.sidecar.istio.io/*`,
//!   `sidecar.istio.io/interceptionMode`) that Istio CNI reads;
//! - the `sidecar.istio.io/status` annotation, as JSON.
//!
//! Each case runs with the settings Istio's `inject_test.go` gives it. Istio's outputs
//! assume native sidecars and Istio's all-or-nothing resource rule, and istiod sets no
//! seccomp profile, so cases run with `nativeSidecars: true`, `resourceMerge: istio` and
//! `seccompRuntimeDefault: false` unless they say otherwise. Cases
//! that need behaviour this release does not have are listed with the reason; the test
//! prints a table of all cases and fails if any case expected to match does not.

mod common;

use std::path::{Path, PathBuf};

use common::{TestServer, apply_and_check, check_pod_valid, pod_review};
use serde::Deserialize;
use serde_json::{Value, json};
use sidecar_injector::config::{InjectConfig, InterceptionMode, ResourceAmounts, ResourceDefaults, ResourceMerge};
use sidecar_injector::quantity::{Quantity, ResourceKind};

/// What a case is expected to do.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// All compared fields equal Istio's.
    Match,
    /// Needs a feature outside this release; the reason is reported.
    Unsupported(&'static str),
}

struct Case {
    input: &'static str,
    expected: &'static str,
    settings: fn(&mut InjectConfig),
    expect: Expect,
}

fn defaults(_: &mut InjectConfig) {}
fn classic(config: &mut InjectConfig) {
    config.native_sidecars = false;
}
fn cni(config: &mut InjectConfig) {
    config.cni_enabled = true;
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
    }
}

const fn unsupported(input: &'static str, expected: &'static str, reason: &'static str) -> Case {
    Case {
        input,
        expected,
        settings: defaults,
        expect: Expect::Unsupported(reason),
    }
}

const MESH_PROXY_CONFIG: &str = "mesh-wide ProxyConfig fields other than interceptionMode (drainDuration, tracing) are not settings; PROXY_CONFIG differs";

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
        case("hello.yaml", "hello-cncf-networks.yaml.injected", cni),
        case("hello.yaml", "hello.proxyHoldsApplication.yaml.injected", hold),
        case("hello.yaml", "hello-template-in-values.yaml.injected", defaults),
        unsupported(
            "hello.yaml",
            "hello-image-secrets-in-values.yaml.injected",
            "global imagePullSecrets are not a setting yet",
        ),
        unsupported(
            "hello.yaml",
            "hello-mount-mtls-certs.yaml.injected",
            "mountMtlsCerts (istio-certs volume) is not a setting yet",
        ),
        case(
            "hello-existing-cncf-networks-json.yaml",
            "hello-existing-cncf-networks-json.yaml.injected",
            cni,
        ),
        unsupported(
            "format-duration.yaml",
            "format-duration.yaml.injected",
            MESH_PROXY_CONFIG,
        ),
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
            defaults,
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
        unsupported(
            "hello-tracing-disabled.yaml",
            "hello-tracing-disabled.yaml.injected",
            MESH_PROXY_CONFIG,
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
        unsupported(
            "hello-openshift.yaml",
            "hello-openshift.yaml.injected",
            "OpenShift uid ranges from namespace annotations are not supported",
        ),
        unsupported(
            "hello-openshift-tproxy.yaml",
            "hello-openshift-tproxy.yaml.injected",
            "OpenShift uid ranges from namespace annotations are not supported",
        ),
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
        unsupported(
            "gateway.yaml",
            "gateway.yaml.injected",
            "the gateway template is not supported",
        ),
        unsupported(
            "gateway-with-default-container.yaml",
            "gateway-with-default-container.yaml.injected",
            "the gateway template is not supported",
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

fn corpus_dir() -> PathBuf {
    std::env::var_os("SIDECAR_INJECTOR_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/istio-inject"))
}

fn read_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap())
        .filter(|value| !value.is_null())
        .collect()
}

/// A pod template with the workload it belongs to.
struct Template {
    label: String,
    namespace: String,
    owner: Option<(String, String, String)>,
    pod: Value,
}

fn templates(document: &Value) -> Vec<Template> {
    let kind = document["kind"].as_str().unwrap_or_default();
    if kind == "List" {
        return document["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(templates)
            .collect();
    }
    let Some(path) = sidecar_injector::offline::template_path(kind) else {
        return Vec::new();
    };
    let pointer: String = path.iter().map(|token| format!("/{token}")).collect();
    let Some(template) = document.pointer(&pointer) else {
        return Vec::new();
    };
    let name = document["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let owner = (kind != "Pod").then(|| {
        let api_version = document["apiVersion"].as_str().unwrap_or("v1").to_string();
        (api_version, kind.to_string(), name.clone())
    });
    vec![Template {
        label: format!("{kind}/{name}"),
        namespace: document["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
        owner,
        pod: json!({"apiVersion": "v1", "kind": "Pod", "metadata": template.get("metadata").cloned().unwrap_or(json!({})), "spec": template["spec"].clone()}),
    }]
}

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn find<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|list| pod["spec"][list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
}

/// Resources with quantities in canonical form, so `1000m` equals `1`.
fn canonical_resources(resources: &Value) -> Value {
    let mut out = json!({});
    for section in ["requests", "limits"] {
        let Some(map) = resources[section].as_object().filter(|m| !m.is_empty()) else {
            continue;
        };
        let mut canonical = serde_json::Map::new();
        for (name, value) in map {
            let kind = if name == "cpu" {
                ResourceKind::Cpu
            } else {
                ResourceKind::Memory
            };
            let text = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
            let shown = Quantity::parse(&text, kind)
                .map(|q| q.units().to_string())
                .unwrap_or(text);
            canonical.insert(name.clone(), json!(shown));
        }
        out[section] = Value::Object(canonical);
    }
    out
}

/// The probes and lifecycle hooks of the app containers.
fn app_probes(pod: &Value) -> Value {
    let containers = pod["spec"]["containers"].as_array().into_iter().flatten();
    let app_sidecars = pod["spec"]["initContainers"].as_array().into_iter().flatten();
    let probes: Vec<Value> = containers
        .chain(app_sidecars.filter(|c| c["restartPolicy"] == "Always"))
        .filter(|c| c["name"] != "istio-proxy")
        .map(|c| {
            json!({
                "readinessProbe": c["readinessProbe"],
                "livenessProbe": c["livenessProbe"],
                "startupProbe": c["startupProbe"],
                "lifecycle": c["lifecycle"],
            })
        })
        .collect();
    json!(probes)
}

/// An env value of a container, parsed as JSON when it is JSON.
fn env_json(container: &Value, name: &str) -> Value {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .map(|text| serde_json::from_str(text).unwrap_or(json!(text)))
        .unwrap_or(Value::Null)
}

/// The interception annotations Istio CNI reads.
fn traffic_annotations(pod: &Value) -> Value {
    let annotations = pod["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
    let traffic: serde_json::Map<String, Value> = annotations
        .into_iter()
        .filter(|(key, _)| key.starts_with("traffic.sidecar.istio.io/") || key == "sidecar.istio.io/interceptionMode")
        .collect();
    Value::Object(traffic)
}

/// The compared fields of a pod, as one JSON value per field.
fn compared_fields(pod: &Value) -> Vec<(&'static str, Value)> {
    let init_name = ["istio-init", "istio-validation"]
        .into_iter()
        .find(|n| find(pod, n).is_some());
    let init = init_name.and_then(|n| find(pod, n));
    let proxy = find(pod, "istio-proxy");
    let status = pod["metadata"]["annotations"]["sidecar.istio.io/status"]
        .as_str()
        .map(|s| serde_json::from_str::<Value>(s).unwrap_or(json!(s)))
        .unwrap_or(Value::Null);
    vec![
        ("initContainers order", json!(names(pod, "initContainers"))),
        ("containers order", json!(names(pod, "containers"))),
        (
            "istio-proxy resources",
            proxy
                .map(|c| canonical_resources(&c["resources"]))
                .unwrap_or(Value::Null),
        ),
        (
            "init resources",
            init.map(|c| canonical_resources(&c["resources"]))
                .unwrap_or(Value::Null),
        ),
        ("init args", init.map(|c| c["args"].clone()).unwrap_or(Value::Null)),
        (
            "istio-proxy securityContext",
            proxy.map(|c| c["securityContext"].clone()).unwrap_or(Value::Null),
        ),
        (
            "init securityContext",
            init.map(|c| c["securityContext"].clone()).unwrap_or(Value::Null),
        ),
        ("labels", pod["metadata"]["labels"].clone()),
        ("app probes and hooks", app_probes(pod)),
        (
            "ISTIO_KUBE_APP_PROBERS",
            proxy
                .map(|c| env_json(c, "ISTIO_KUBE_APP_PROBERS"))
                .unwrap_or(Value::Null),
        ),
        (
            "PROXY_CONFIG",
            proxy.map(|c| env_json(c, "PROXY_CONFIG")).unwrap_or(Value::Null),
        ),
        (
            "ISTIO_PROMETHEUS_ANNOTATIONS",
            proxy
                .map(|c| env_json(c, "ISTIO_PROMETHEUS_ANNOTATIONS"))
                .unwrap_or(Value::Null),
        ),
        (
            "proxy.istio.io/config",
            pod["metadata"]["annotations"]["proxy.istio.io/config"].clone(),
        ),
        (
            "istio-proxy readinessProbe",
            proxy.map(|c| c["readinessProbe"].clone()).unwrap_or(Value::Null),
        ),
        ("traffic annotations (Istio CNI)", traffic_annotations(pod)),
        ("status annotation", status),
    ]
}

async fn run_case(case: &Case, dir: &Path) -> Result<usize, String> {
    let inputs = read_documents(&dir.join(case.input));
    let expected_documents = read_documents(&dir.join(case.expected));
    let ours: Vec<Template> = inputs.iter().flat_map(templates).collect();
    let theirs: Vec<Template> = expected_documents.iter().flat_map(templates).collect();
    if ours.len() != theirs.len() || ours.is_empty() {
        return Err(format!(
            "{} pod templates in input, {} in expected output",
            ours.len(),
            theirs.len()
        ));
    }
    let mut config = InjectConfig {
        native_sidecars: true,
        resource_merge: ResourceMerge::Istio,
        seccomp_runtime_default: false,
        ..InjectConfig::default()
    };
    (case.settings)(&mut config);
    let server = TestServer::start(config).await;
    let mut failures = Vec::new();
    for (index, (template, expected)) in ours.iter().zip(&theirs).enumerate() {
        let mut pod = template.pod.clone();
        if let Some((api_version, kind, name)) = &template.owner {
            pod["metadata"]["ownerReferences"] = json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": "00000000-0000-0000-0000-000000000000", "controller": true}]);
        }
        let response = server
            .review(&pod_review(&format!("corpus-{index}"), &template.namespace, &pod))
            .await;
        if response["response"]["allowed"] != true {
            failures.push(format!(
                "{}: denied: {}",
                template.label, response["response"]["status"]["message"]
            ));
            continue;
        }
        let mut injected = apply_and_check(&pod, &response);
        if let Some(metadata) = injected["metadata"].as_object_mut() {
            metadata.remove("ownerReferences");
        }
        check_pod_valid(&injected);
        for ((field, got), (_, want)) in compared_fields(&injected)
            .into_iter()
            .zip(compared_fields(&expected.pod))
        {
            if got != want {
                failures.push(format!("{} {field}: got {got}, want {want}", template.label));
            }
        }
    }
    server.stop().await;
    if failures.is_empty() {
        Ok(ours.len())
    } else {
        Err(failures.join("\n      "))
    }
}

#[tokio::test]
async fn istio_corpus_cases_match_on_compared_fields() {
    let dir = corpus_dir();
    assert!(
        dir.is_dir(),
        "Istio corpus not found at {}; set SIDECAR_INJECTOR_CORPUS",
        dir.display()
    );
    let mut matched = 0;
    let mut regressions = Vec::new();
    let mut table = String::from(
        "\nIstio corpus (fields: container order, resources, init args, security contexts, labels, status)\n",
    );
    for case in cases() {
        let result = run_case(&case, &dir).await;
        let line = match (case.expect, &result) {
            (Expect::Match, Ok(pods)) => {
                matched += 1;
                format!("PASS         {} ({pods} pod templates)", case.expected)
            }
            (Expect::Match, Err(why)) => {
                regressions.push(case.expected);
                format!("FAIL         {}\n      {why}", case.expected)
            }
            (Expect::Unsupported(reason), Ok(_)) => {
                format!("PASS (unexp) {}: listed as unsupported ({reason})", case.expected)
            }
            (Expect::Unsupported(reason), Err(_)) => format!("UNSUPPORTED  {}: {reason}", case.expected),
        };
        table.push_str(&line);
        table.push('\n');
    }
    println!("{table}\n{matched} matched, {} failing", regressions.len());
    assert!(
        regressions.is_empty(),
        "corpus cases that must match do not: {regressions:?}\n{table}"
    );
    assert!(matched >= 30, "only {matched} corpus cases matched");
}
