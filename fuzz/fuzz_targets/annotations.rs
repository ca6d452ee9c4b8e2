//! Every annotation the engine parses (traffic ports, CIDRs and interfaces, status port,
//! interception mode, resources, ratios, profile, inject, native sidecar, and the
//! `proxy.istio.io/config` ProxyConfig), through the full engine: never panics, and an
//! injected pod's patch applies.
//!
//! The input is split on NUL bytes; the pieces become the values of the keys below, in order.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use sidecar_injector::config::InjectConfig;
use sidecar_injector::engine::Injector;
use sidecar_injector::review::review;

const KEYS: &[&str] = &[
    "traffic.sidecar.istio.io/includeOutboundIPRanges",
    "traffic.sidecar.istio.io/excludeOutboundIPRanges",
    "traffic.sidecar.istio.io/includeInboundPorts",
    "traffic.sidecar.istio.io/excludeInboundPorts",
    "traffic.sidecar.istio.io/includeOutboundPorts",
    "traffic.sidecar.istio.io/excludeOutboundPorts",
    "traffic.sidecar.istio.io/kubevirtInterfaces",
    "status.sidecar.istio.io/port",
    "sidecar.istio.io/interceptionMode",
    "proxy.istio.io/config",
    "sidecar.istio.io/proxyCPU",
    "sidecar.istio.io/proxyMemory",
    "sidecar.istio.io/proxyCPULimit",
    "sidecar.istio.io/proxyMemoryLimit",
    "sidecar-injector.io/proxyCPURatio",
    "sidecar-injector.io/proxyMemoryRatio",
    "sidecar-injector.io/profile",
    "sidecar.istio.io/inject",
    "sidecar.istio.io/nativeSidecar",
];

static INJECTOR: LazyLock<Injector> =
    LazyLock::new(|| Injector::new(InjectConfig::default()).expect("the default config is valid"));

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let annotations: serde_json::Map<String, serde_json::Value> = KEYS
        .iter()
        .zip(text.split('\0'))
        .map(|(key, value)| (key.to_string(), json!(value)))
        .collect();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "fuzz", "namespace": "apps", "annotations": annotations},
        "spec": {"containers": [{
            "name": "app",
            "image": "app",
            "ports": [{"containerPort": 8080}],
            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
        }]},
    });
    let body = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "fuzz",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "apps",
            "operation": "CREATE",
            "userInfo": {},
            "object": pod,
        },
    }))
    .expect("serialisable");
    let answer = review(&INJECTOR, &body).expect("a well-formed review is always answered");
    let response: serde_json::Value = serde_json::from_slice(&answer.body).expect("the answer is JSON");
    if let Some(patch) = response["response"]["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("patch is base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch is a JSON patch");
        let mut object = pod.clone();
        json_patch::patch(&mut object, &patch).expect("the patch applies to the pod");
    }
});
