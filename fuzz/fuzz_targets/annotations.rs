//! Every pod annotation in the engine's registry (`engine/src/annotations.rs`), through the
//! full engine: never panics, and an injected pod's patch applies.
//!
//! The input is split on NUL bytes; the pieces become the values of the registry keys, in
//! registry order. The `all` seed holds every key's sample value.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use sidecar_injector::config::InjectConfig;
use sidecar_injector::engine::annotations::{self, REGISTRY, Scope};
use sidecar_injector::engine::Injector;
use sidecar_injector::review::review;

/// Every pod annotation in the registry except the status marker (which only skips).
static KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    REGISTRY
        .iter()
        .filter(|row| row.scope != Scope::Namespace && row.key != annotations::STATUS)
        .map(|row| row.key)
        .collect()
});

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
