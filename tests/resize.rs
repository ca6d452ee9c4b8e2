//! The resize guard over HTTPS: a pod injected at CREATE, then `pods/resize` UPDATEs of it
//! on the same `/inject` path; every patch is applied to the proposed pod.

mod common;

use common::{TestServer, apply_and_check, container, patch_of, pod_review, simple_pod};
use serde_json::{Value, json};
use sidecar_injector::config::InjectConfig;

/// A `pods/resize` UPDATE review from `old` to `new`.
fn resize_review(uid: &str, old: &Value, new: &Value) -> Value {
    let mut review = pod_review(uid, "apps", new);
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["subResource"] = json!("resize");
    review["request"]["requestSubResource"] = json!("resize");
    review["request"]["oldObject"] = old.clone();
    review["request"]["name"] = json!("web");
    review
}

fn with_proxy(pod: &Value, side: &str, resource: &str, value: &str) -> Value {
    let mut new = pod.clone();
    // The proxy is a native sidecar (an init container) by default, else a container.
    let is_proxy = |c: &Value| c["name"] == "istio-proxy";
    let list = ["initContainers", "containers"]
        .into_iter()
        .find(|list| new["spec"][list].as_array().is_some_and(|c| c.iter().any(is_proxy)))
        .unwrap();
    let proxy = new["spec"][list]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| is_proxy(c))
        .unwrap();
    proxy["resources"][side][resource] = json!(value);
    new
}

#[tokio::test]
async fn resizes_of_the_proxy_are_judged_and_other_updates_left_alone() {
    let config = InjectConfig::from_yaml("bounds:\n  memory.request: {max: 512Mi}\n", "test").unwrap();
    let server = TestServer::start(config).await;
    let pod = simple_pod(json!({"sidecar-injector.io/proxyCPURatio": "10%"}));
    let mut pod = pod;
    pod["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "1"}});
    let injected = apply_and_check(&pod, &server.review(&pod_review("create", "apps", &pod)).await);
    assert_eq!(
        container(&injected, "istio-proxy").unwrap()["resources"]["requests"]["cpu"],
        "100m"
    );

    // Within bounds: stored as proposed.
    let within = with_proxy(&injected, "requests", "memory", "256Mi");
    let response = server.review(&resize_review("within", &injected, &within)).await;
    assert_eq!(response["response"]["allowed"], true);
    assert!(patch_of(&response).is_none(), "{response}");

    // Past the bound: clamped in the patch, with a warning.
    let past = with_proxy(&injected, "requests", "memory", "900Mi");
    let response = server.review(&resize_review("past", &injected, &past)).await;
    let stored = apply_and_check(&past, &response);
    assert_eq!(
        container(&stored, "istio-proxy").unwrap()["resources"]["requests"]["memory"],
        "512Mi"
    );
    let warnings = response["response"]["warnings"].to_string();
    assert!(warnings.contains("clamped to 512Mi (cluster max)"), "{warnings}");

    // Denied: GOMEMLIMIT is a number fixed at start.
    let limit = with_proxy(&injected, "limits", "memory", "2Gi");
    let response = server.review(&resize_review("limit", &injected, &limit)).await;
    assert_eq!(response["response"]["allowed"], false);
    let message = response["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("resize of istio-proxy refused: GOMEMLIMIT="),
        "{message}"
    );

    // The app resized: the ratio-sized proxy follows in the same patch.
    let mut app = injected.clone();
    app["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("2");
    let response = server.review(&resize_review("app", &injected, &app)).await;
    let stored = apply_and_check(&app, &response);
    assert_eq!(
        container(&stored, "istio-proxy").unwrap()["resources"]["requests"]["cpu"],
        "200m"
    );

    // A pod UPDATE that is not a resize gets no patch.
    let mut update = resize_review("update", &injected, &app);
    update["request"]["subResource"] = Value::Null;
    let response = server.review(&update).await;
    assert_eq!(response["response"]["allowed"], true);
    assert!(patch_of(&response).is_none());
    server.stop().await;
}
