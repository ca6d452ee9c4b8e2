//! AdmissionReview bytes → response: never panics, always answers with JSON, echoes the
//! uid, and any patch it returns applies to the object it was computed from.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sidecar_injector::config::InjectConfig;
use sidecar_injector::engine::Injector;
use sidecar_injector::review::review;

static INJECTOR: LazyLock<Injector> =
    LazyLock::new(|| Injector::new(InjectConfig::default()).expect("the default config is valid"));

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = review(&INJECTOR, data) else {
        return;
    };
    let response: serde_json::Value = serde_json::from_slice(&answer.body).expect("the answer is JSON");
    let sent: serde_json::Value = serde_json::from_slice(data).expect("a reviewed body is JSON");
    assert_eq!(response["response"]["uid"], sent["request"]["uid"], "uid not echoed");
    if let Some(patch) = response["response"]["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("patch is base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch is a JSON patch");
        let mut object = sent["request"]["object"].clone();
        json_patch::patch(&mut object, &patch).expect("the patch applies to the object");
    }
});
