//! The real HTTPS server on an ephemeral port: injection, resources, denials, bad input,
//! idempotency and the admin endpoints. Every patch is applied to the original pod.

mod common;

use common::{TestServer, apply_and_check, container, patch_of, pod_review, simple_pod};
use serde_json::{Value, json};
use sidecar_injector::config::{InjectConfig, ResourceMerge, UnknownTemplates};

fn resources_of(pod: &Value, name: &str) -> Value {
    container(pod, name).unwrap_or_else(|| panic!("no {name}"))["resources"].clone()
}

#[tokio::test]
async fn injects_proxy_and_init_with_default_resources() {
    let server = TestServer::start(InjectConfig::default()).await;
    let pod = simple_pod(json!({}));
    let response = server.review(&pod_review("uid-1", "apps", &pod)).await;
    assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(response["kind"], "AdmissionReview");
    assert_eq!(response["response"]["uid"], "uid-1");
    assert_eq!(response["response"]["allowed"], true);
    let injected = apply_and_check(&pod, &response);
    let names: Vec<&str> = injected["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // Native sidecars, the default: istio-init, then istio-proxy with restartPolicy Always.
    assert_eq!(names, ["app"]);
    assert_eq!(injected["spec"]["initContainers"][0]["name"], "istio-init");
    assert_eq!(injected["spec"]["initContainers"][1]["name"], "istio-proxy");
    assert_eq!(injected["spec"]["initContainers"][1]["restartPolicy"], "Always");
    let expected = json!({"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}});
    assert_eq!(resources_of(&injected, "istio-proxy"), expected);
    assert_eq!(resources_of(&injected, "istio-init"), expected);
    let proxy = container(&injected, "istio-proxy").unwrap();
    let args: Vec<&str> = proxy["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&args[..2], ["proxy", "sidecar"]);
    assert!(args.windows(2).any(|w| w == ["--concurrency", "2"]), "{args:?}");
    assert_eq!(
        proxy["ports"][0],
        json!({"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"})
    );
    assert_eq!(
        proxy["readinessProbe"]["httpGet"],
        json!({"path": "/healthz/ready", "port": 15021})
    );
    let security = &proxy["securityContext"];
    assert_eq!(security["runAsUser"], 1337);
    assert_eq!(security["runAsGroup"], 1337);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"], json!({"type": "RuntimeDefault"}));
    let env = proxy["env"].as_array().unwrap();
    let env_named = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
    assert_eq!(
        env_named("ISTIO_CPU_LIMIT").unwrap()["valueFrom"]["resourceFieldRef"],
        json!({"divisor": "1", "resource": "limits.cpu"})
    );
    assert!(env_named("GOMEMLIMIT").is_some());
    assert_eq!(
        env_named("POD_NAME").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    let labels = &injected["metadata"]["labels"];
    assert_eq!(labels["security.istio.io/tlsMode"], "istio");
    assert_eq!(labels["service.istio.io/canonical-name"], "web");
    assert_eq!(labels["service.istio.io/canonical-revision"], "latest");
    let status: Value = serde_json::from_str(
        injected["metadata"]["annotations"]["sidecar.istio.io/status"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    // As istiod writes it for native sidecars: the proxy is listed among the init containers.
    assert_eq!(status["containers"], Value::Null);
    assert_eq!(status["initContainers"], json!(["istio-init", "istio-proxy"]));
    assert_eq!(status["volumes"].as_array().unwrap().len(), 9);
    let volumes = injected["spec"]["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 9);
    server.stop().await;
}

#[tokio::test]
async fn each_resource_annotation_overrides_only_its_field() {
    let server = TestServer::start(InjectConfig::default()).await;
    let cases = [
        (
            "sidecar.istio.io/proxyCPU",
            "250m",
            json!({"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "250m", "memory": "128Mi"}}),
        ),
        (
            "sidecar.istio.io/proxyMemory",
            "0.25Gi",
            json!({"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}),
        ),
        (
            "sidecar.istio.io/proxyCPULimit",
            "3000m",
            json!({"limits": {"cpu": "3", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}),
        ),
        (
            "sidecar.istio.io/proxyMemoryLimit",
            "2048Mi",
            json!({"limits": {"cpu": "2", "memory": "2Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}),
        ),
    ];
    for (index, (key, value, expected)) in cases.into_iter().enumerate() {
        let pod = simple_pod(json!({ key: value }));
        let response = server.review(&pod_review(&format!("uid-{index}"), "apps", &pod)).await;
        let injected = apply_and_check(&pod, &response);
        assert_eq!(resources_of(&injected, "istio-proxy"), expected, "{key}");
        assert_eq!(resources_of(&injected, "istio-init"), expected, "{key}");
    }
    let pod = simple_pod(json!({"sidecar.istio.io/proxyCPULimit": "3500m", "sidecar.istio.io/proxyCPU": "1"}));
    let injected = apply_and_check(&pod, &server.review(&pod_review("c", "apps", &pod)).await);
    let args = container(&injected, "istio-proxy").unwrap()["args"].clone();
    assert!(
        args.as_array()
            .unwrap()
            .windows(2)
            .any(|w| w[0] == "--concurrency" && w[1] == "4"),
        "{args}"
    );
    server.stop().await;
}

#[tokio::test]
async fn log_level_annotations_reach_the_proxy_and_init_arguments() {
    let server = TestServer::start(InjectConfig::default()).await;
    let args_of = |pod: &Value, name: &str| -> Vec<String> {
        let args = container(pod, name).unwrap_or_else(|| panic!("no {name}"))["args"].clone();
        serde_json::from_value(args).unwrap()
    };
    let plain = simple_pod(json!({}));
    let injected = apply_and_check(&plain, &server.review(&pod_review("plain", "apps", &plain)).await);
    let proxy = args_of(&injected, "istio-proxy");
    for default in [
        "--proxyLogLevel=warning",
        "--proxyComponentLogLevel=misc:error",
        "--log_output_level=default:info",
    ] {
        assert!(proxy.contains(&default.to_string()), "{proxy:?}");
    }
    let pod = simple_pod(json!({
        "sidecar.istio.io/logLevel": "debug",
        "sidecar.istio.io/componentLogLevel": "rbac:debug",
        "sidecar.istio.io/agentLogLevel": "default:debug",
    }));
    let injected = apply_and_check(&pod, &server.review(&pod_review("levels", "apps", &pod)).await);
    let proxy = args_of(&injected, "istio-proxy");
    for set in [
        "--proxyLogLevel=debug",
        "--proxyComponentLogLevel=rbac:debug",
        "--log_output_level=default:debug",
    ] {
        assert!(proxy.contains(&set.to_string()), "{proxy:?}");
    }
    assert!(args_of(&injected, "istio-init").contains(&"--log_output_level=default:debug".to_string()));
    server.stop().await;
}

#[tokio::test]
async fn warnings_from_the_pods_own_proxy_resources_reach_the_user() {
    let config = InjectConfig::from_yaml("bounds:\n  cpu.limit: {max: '2'}\n", "test").unwrap();
    let server = TestServer::start(config).await;
    let mut pod = simple_pod(json!({}));
    let own_proxy = json!({"name": "istio-proxy", "image": "auto", "resources": {"limits": {"cpu": "8"}}});
    pod["spec"]["containers"].as_array_mut().unwrap().push(own_proxy);
    let response = server.review(&pod_review("own", "apps", &pod)).await;
    let injected = apply_and_check(&pod, &response);
    assert_eq!(resources_of(&injected, "istio-proxy")["limits"]["cpu"], "2");
    let warnings = response["response"]["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("CPU limit 8 clamped to 2"))),
        "the clamp of the pod's own istio-proxy limit is reported: {warnings:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn istio_merge_mode_drops_defaults_like_istio() {
    let config = InjectConfig {
        resource_merge: ResourceMerge::Istio,
        ..InjectConfig::default()
    };
    let server = TestServer::start(config).await;
    let pod = simple_pod(json!({"sidecar.istio.io/proxyCPU": "4000m"}));
    let injected = apply_and_check(&pod, &server.review(&pod_review("u", "apps", &pod)).await);
    assert_eq!(
        resources_of(&injected, "istio-proxy"),
        json!({"requests": {"cpu": "4"}})
    );
    server.stop().await;
}

/// A gateway pod: `inject.istio.io/templates: gateway`, its own `istio-proxy` and an app, with
/// `security_context` as the pod's.
fn gateway_pod(annotations: Value, security_context: Value) -> Value {
    let mut pod = simple_pod(annotations);
    pod["metadata"]["annotations"]["inject.istio.io/templates"] = json!("gateway");
    pod["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"name": "istio-proxy", "image": "auto"}));
    if !security_context.is_null() {
        pod["spec"]["securityContext"] = security_context;
    }
    pod
}

#[tokio::test]
async fn gateway_template_renders_a_router_without_capture_and_keeps_the_pods_sysctls() {
    let server = TestServer::start(InjectConfig {
        cni_enabled: true,
        ..InjectConfig::default()
    })
    .await;
    let pod = gateway_pod(
        json!({}),
        json!({"runAsNonRoot": true, "sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"}]}),
    );
    let injected = apply_and_check(&pod, &server.review(&pod_review("g1", "apps", &pod)).await);
    let proxy = container(&injected, "istio-proxy").unwrap();
    assert_eq!(proxy["args"][1], "router", "{proxy}");
    assert!(
        proxy.get("startupProbe").is_none() && proxy.get("lifecycle").is_none(),
        "{proxy}"
    );
    assert_eq!(proxy["securityContext"], json!({"runAsGroup": 1337, "runAsUser": 1337}));
    assert_ne!(proxy["image"], "auto");
    // Per-field mode: the config's defaults fill what the pod's istio-proxy leaves unset.
    assert_eq!(proxy["resources"]["requests"]["cpu"], "100m", "{proxy}");
    // No capture: neither istio-init nor CNI's istio-validation, no tlsMode label.
    assert!(injected["spec"].get("initContainers").is_none(), "{injected}");
    assert!(
        injected["metadata"]["labels"]
            .get("security.istio.io/tlsMode")
            .is_none()
    );
    let names: Vec<&str> = injected["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "istio-proxy"]);
    let security = &injected["spec"]["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(
        security["sysctls"],
        json!([
            {"name": "kernel.shm_rmid_forced", "value": "1"},
            {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}
        ])
    );
    // A pod that sets the sysctl itself keeps its value.
    let own = json!({"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"}]});
    let pod = gateway_pod(json!({}), own.clone());
    let injected = apply_and_check(&pod, &server.review(&pod_review("g2", "apps", &pod)).await);
    assert_eq!(injected["spec"]["securityContext"], own);
    // The interception mode is the ProxyConfig's; the sidecar's annotation is not read.
    let mode_of = |pod: &Value| {
        let env = container(pod, "istio-proxy").unwrap()["env"]
            .as_array()
            .unwrap()
            .clone();
        env.into_iter()
            .find(|e| e["name"] == "ISTIO_META_INTERCEPTION_MODE")
            .unwrap()["value"]
            .clone()
    };
    let pod = gateway_pod(json!({"sidecar.istio.io/interceptionMode": "TPROXY"}), Value::Null);
    let injected = apply_and_check(&pod, &server.review(&pod_review("g5", "apps", &pod)).await);
    assert_eq!(mode_of(&injected), "REDIRECT");
    let pod = gateway_pod(
        json!({"proxy.istio.io/config": "interceptionMode: TPROXY"}),
        Value::Null,
    );
    let injected = apply_and_check(&pod, &server.review(&pod_review("g6", "apps", &pod)).await);
    assert_eq!(mode_of(&injected), "TPROXY");
    server.stop().await;
}

#[tokio::test]
async fn gateway_resources_come_from_the_pod_and_annotations_under_istio_merge() {
    let server = TestServer::start(InjectConfig {
        resource_merge: ResourceMerge::Istio,
        ..InjectConfig::default()
    })
    .await;
    let pod = gateway_pod(json!({}), Value::Null);
    let injected = apply_and_check(&pod, &server.review(&pod_review("g3", "apps", &pod)).await);
    assert!(
        container(&injected, "istio-proxy")
            .unwrap()
            .get("resources")
            .is_none_or(|r| r == &json!({})),
        "{injected}"
    );
    let pod = gateway_pod(json!({"sidecar.istio.io/proxyMemory": "300Mi"}), Value::Null);
    let injected = apply_and_check(&pod, &server.review(&pod_review("g4", "apps", &pod)).await);
    assert_eq!(
        resources_of(&injected, "istio-proxy"),
        json!({"requests": {"memory": "300Mi"}})
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_values_are_denied_with_a_specific_message() {
    let server = TestServer::start(InjectConfig::default()).await;
    let cases = [
        (
            json!({"sidecar.istio.io/proxyCPU": "abc"}),
            "annotation sidecar.istio.io/proxyCPU has value \"abc\", which is not a Kubernetes quantity (examples: 500m, 2)",
        ),
        (
            json!({"sidecar.istio.io/proxyMemory": "-1Gi"}),
            "annotation sidecar.istio.io/proxyMemory has value \"-1Gi\", which is negative",
        ),
        (
            json!({"sidecar.istio.io/proxyCPULimit": "1\u{7}"}),
            "which contains a control character",
        ),
        (
            json!({"sidecar.istio.io/proxyCPU": "3"}),
            "proxy CPU request 3 (from pod annotation sidecar.istio.io/proxyCPU) is above its limit 2 (from config default)",
        ),
        (
            json!({"sidecar.istio.io/proxyMemory": "2Gi", "sidecar.istio.io/proxyMemoryLimit": "1Gi"}),
            "proxy memory request 2Gi (from pod annotation sidecar.istio.io/proxyMemory) is above its limit 1Gi (from pod annotation sidecar.istio.io/proxyMemoryLimit)",
        ),
        (
            json!({"traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.0.0.0/33"}),
            "annotation traffic.sidecar.istio.io/excludeOutboundIPRanges has value \"10.0.0.0/33\"",
        ),
        (
            json!({"traffic.sidecar.istio.io/includeInboundPorts": "http"}),
            "annotation traffic.sidecar.istio.io/includeInboundPorts has value \"http\"",
        ),
    ];
    for (index, (annotations, expected)) in cases.into_iter().enumerate() {
        let pod = simple_pod(annotations);
        let response = server.review(&pod_review(&format!("d{index}"), "apps", &pod)).await;
        let answer = &response["response"];
        assert_eq!(answer["allowed"], false, "{answer}");
        assert!(answer.get("patch").is_none());
        let message = answer["status"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "expected {expected:?} in {message:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn second_call_on_own_output_returns_no_patch() {
    for native in [false, true] {
        let config = InjectConfig {
            native_sidecars: native,
            ..InjectConfig::default()
        };
        let server = TestServer::start(config).await;
        let pod = simple_pod(json!({"sidecar.istio.io/proxyMemory": "200Mi"}));
        let first = server.review(&pod_review("first", "apps", &pod)).await;
        let injected = apply_and_check(&pod, &first);
        let second = server.review(&pod_review("second", "apps", &injected)).await;
        assert_eq!(second["response"]["allowed"], true);
        assert!(patch_of(&second).is_none(), "second call patched: {second}");
        server.stop().await;
    }
}

#[tokio::test]
async fn native_sidecar_mode_orders_init_containers_like_istio() {
    let server = TestServer::start(InjectConfig {
        native_sidecars: true,
        ..InjectConfig::default()
    })
    .await;
    let mut pod = simple_pod(json!({}));
    pod["spec"]["initContainers"] = json!([{"name": "migrate", "image": "busybox"}]);
    let injected = apply_and_check(&pod, &server.review(&pod_review("n", "apps", &pod)).await);
    let names: Vec<&str> = injected["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["istio-init", "istio-proxy", "migrate"]);
    assert_eq!(container(&injected, "istio-proxy").unwrap()["restartPolicy"], "Always");
    assert_eq!(injected["spec"]["containers"].as_array().unwrap().len(), 1);
    // The annotation turns it off for one pod.
    let classic = simple_pod(json!({"sidecar.istio.io/nativeSidecar": "false"}));
    let injected = apply_and_check(&classic, &server.review(&pod_review("c", "apps", &classic)).await);
    assert_eq!(injected["spec"]["containers"][1]["name"], "istio-proxy");
    server.stop().await;
}

#[tokio::test]
async fn skips_follow_istio_rules_and_unread_inject_values_are_refused() {
    let server = TestServer::start(InjectConfig::default()).await;
    let mut host_network = simple_pod(json!({}));
    host_network["spec"]["hostNetwork"] = json!(true);
    let cases = [
        ("apps", simple_pod(json!({"sidecar.istio.io/inject": "false"}))),
        ("kube-system", simple_pod(json!({}))),
        ("apps", host_network),
    ];
    for (namespace, pod) in cases {
        let response = server.review(&pod_review("s", namespace, &pod)).await;
        assert_eq!(response["response"]["allowed"], true);
        assert!(patch_of(&response).is_none(), "{namespace}: {response}");
    }
    // A value istiod does not read (it would silently use the default) is refused.
    let odd = simple_pod(json!({"sidecar.istio.io/inject": "yes"}));
    let response = server.review(&pod_review("w", "apps", &odd)).await;
    assert_eq!(response["response"]["allowed"], false, "{response}");
    let message = response["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("annotation sidecar.istio.io/inject has value \"yes\", which is not valid"),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test]
async fn pods_naming_a_template_not_rendered_here_follow_unknown_templates() {
    let grpc = simple_pod(json!({"inject.istio.io/templates": "grpc-agent"}));
    // deny (the default): refused, naming the annotation, the value and the templates we render.
    let server = TestServer::start(InjectConfig::default()).await;
    let response = server.review(&pod_review("t1", "apps", &grpc)).await;
    assert_eq!(response["response"]["allowed"], false, "{response}");
    let message = response["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("annotation inject.istio.io/templates has value \"grpc-agent\", which is not valid")
            && message.contains("sidecar and gateway"),
        "{message}"
    );
    // Naming the sidecar template is injected as usual.
    let sidecar = simple_pod(json!({"inject.istio.io/templates": "sidecar"}));
    let response = server.review(&pod_review("t2", "apps", &sidecar)).await;
    let injected = apply_and_check(&sidecar, &response);
    assert!(container(&injected, "istio-proxy").is_some(), "{injected}");
    server.stop().await;
    // skip: allowed with no patch and a warning naming the template.
    let response = review_once(UnknownTemplates::Skip, &grpc).await;
    assert_eq!(response["response"]["allowed"], true, "{response}");
    assert!(patch_of(&response).is_none(), "{response}");
    assert!(
        response["response"]["warnings"].to_string().contains("grpc-agent"),
        "{response}"
    );
    // sidecar: the sidecar, as if the pod named none.
    let response = review_once(UnknownTemplates::Sidecar, &grpc).await;
    let injected = apply_and_check(&grpc, &response);
    assert!(container(&injected, "istio-proxy").is_some(), "{injected}");
}

/// The response of a server with `unknownTemplates` set to `policy` to one review of `pod`.
async fn review_once(policy: UnknownTemplates, pod: &Value) -> Value {
    let config = InjectConfig {
        unknown_templates: policy,
        ..InjectConfig::default()
    };
    let server = TestServer::start(config).await;
    let response = server.review(&pod_review("t", "apps", pod)).await;
    server.stop().await;
    response
}

/// The paths of the response's patch operations.
fn patch_paths(response: &Value) -> Vec<String> {
    let patch = serde_json::to_value(patch_of(response).unwrap()).unwrap();
    patch
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["path"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn creates_missing_maps_and_escapes_keys() {
    let server = TestServer::start(InjectConfig::default()).await;
    let pod =
        json!({"metadata": {"generateName": "batch-"}, "spec": {"containers": [{"name": "job", "image": "busybox"}]}});
    let response = server.review(&pod_review("m", "apps", &pod)).await;
    let paths = patch_paths(&response);
    assert!(
        paths.iter().any(|p| p == "/metadata/labels") && paths.iter().any(|p| p == "/metadata/annotations"),
        "{paths:?}"
    );
    assert!(
        paths.iter().all(|p| !p.contains("/containers/0")),
        "existing containers replaced: {paths:?}"
    );
    let injected = apply_and_check(&pod, &response);
    assert_eq!(
        injected["metadata"]["labels"]["service.istio.io/canonical-name"],
        "batch"
    );

    let labelled = json!({"metadata": {"name": "x", "labels": {"app": "a"}, "annotations": {"keep": "me"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let response = server.review(&pod_review("e", "apps", &labelled)).await;
    let paths = patch_paths(&response);
    assert!(
        paths.iter().any(|p| p == "/metadata/labels/security.istio.io~1tlsMode"),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p == "/metadata/annotations/sidecar.istio.io~1status"),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p == "/metadata/labels") && !paths.iter().any(|p| p == "/metadata/annotations"),
        "{paths:?}"
    );
    let injected = apply_and_check(&labelled, &response);
    assert_eq!(injected["metadata"]["annotations"]["keep"], "me");
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_answer_and_the_server_keeps_serving() {
    let server = TestServer::start(InjectConfig {
        max_body_bytes: 64 * 1024,
        ..InjectConfig::default()
    })
    .await;
    let json_type = Some("application/json");
    let not_json = server.post("/inject", json_type, b"{not json".to_vec()).await;
    assert_eq!(not_json.status, 400);
    assert!(
        not_json.text().starts_with("body is not a valid AdmissionReview"),
        "{}",
        not_json.text()
    );
    assert_eq!(not_json.text().lines().count(), 1);

    let huge = server.post("/inject", json_type, vec![b' '; 65 * 1024]).await;
    assert_eq!(huge.status, 413);

    let wrong_type = server.post("/inject", Some("text/plain"), b"{}".to_vec()).await;
    assert_eq!(wrong_type.status, 415);
    let no_type = server.post("/inject", None, b"{}".to_vec()).await;
    assert_eq!(no_type.status, 415);

    let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let answer = server
        .post("/inject", json_type, serde_json::to_vec(&no_request).unwrap())
        .await;
    assert_eq!(answer.status, 400);
    assert!(answer.text().contains("no request"), "{}", answer.text());

    let mut no_object = pod_review("o", "apps", &json!(null));
    no_object["request"].as_object_mut().unwrap().remove("object");
    let answer = server
        .post("/inject", json_type, serde_json::to_vec(&no_object).unwrap())
        .await;
    assert_eq!(answer.status, 400);
    assert!(answer.text().contains("has no object"), "{}", answer.text());

    let mut deployment = pod_review("k", "apps", &json!({"kind": "Deployment"}));
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let response = server.review(&deployment).await;
    assert_eq!(response["response"]["allowed"], true);
    assert!(patch_of(&response).is_none());

    for operation in ["DELETE", "CONNECT", "UPDATE"] {
        let mut review = pod_review("op", "apps", &simple_pod(json!({})));
        review["request"]["operation"] = json!(operation);
        let response = server.review(&review).await;
        assert_eq!(response["response"]["allowed"], true, "{operation}");
        assert!(patch_of(&response).is_none(), "{operation}");
    }

    // Still serving after all of the above.
    let pod = simple_pod(json!({}));
    apply_and_check(&pod, &server.review(&pod_review("after", "apps", &pod)).await);
    server.stop().await;
}

#[tokio::test]
async fn admin_endpoints_report_health_and_metrics() {
    let server = TestServer::start(InjectConfig::default()).await;
    assert_eq!(server.admin_get("/livez").await.unwrap().status, 200);
    assert_eq!(server.admin_get("/readyz").await.unwrap().status, 200);
    let pod = simple_pod(json!({}));
    server.review(&pod_review("a", "apps", &pod)).await;
    server.review(&pod_review("b", "kube-system", &pod)).await;
    server
        .review(&pod_review(
            "c",
            "apps",
            &simple_pod(json!({"sidecar.istio.io/proxyCPU": "x"})),
        ))
        .await;
    let metrics = server.admin_get("/metrics").await.unwrap().text();
    for line in [
        "sidecar_injection_requests_total 3",
        "sidecar_injection_success_total 1",
        "sidecar_injection_skip_total{reason=\"ignored-namespace\"} 1",
        "sidecar_injection_failure_total{reason=\"denied\"} 1",
        "sidecar_injection_time_seconds_count 3",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test]
async fn proxy_config_annotation_drives_hold_concurrency_and_metadata() {
    // Holding the app reorders containers in the classic layout only.
    let classic = InjectConfig {
        native_sidecars: false,
        ..InjectConfig::default()
    };
    let server = TestServer::start(classic).await;
    let pod = simple_pod(json!({
        "proxy.istio.io/config": "holdApplicationUntilProxyStarts: true\nconcurrency: 3\nproxyMetadata:\n  FOO: bar\n",
        "prometheus.io/port": "9090",
    }));
    let injected = apply_and_check(&pod, &server.review(&pod_review("h", "apps", &pod)).await);
    let names: Vec<&str> = injected["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["istio-proxy", "app"], "hold puts the proxy first");
    let proxy = container(&injected, "istio-proxy").unwrap();
    assert_eq!(
        proxy["lifecycle"]["postStart"]["exec"]["command"],
        json!(["pilot-agent", "wait"])
    );
    let args = proxy["args"].as_array().unwrap();
    assert!(
        args.windows(2).any(|w| w[0] == "--concurrency" && w[1] == "3"),
        "{args:?}"
    );
    let env = |name: &str| {
        proxy["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(env("FOO"), Some(json!("bar")));
    // istiod writes all of scrape, path and port, empty when the pod does not set them.
    let scrape: Value = serde_json::from_str(env("ISTIO_PROMETHEUS_ANNOTATIONS").unwrap().as_str().unwrap()).unwrap();
    assert_eq!(scrape, json!({"scrape": "", "path": "", "port": "9090"}));
    assert_eq!(injected["metadata"]["annotations"]["prometheus.io/port"], "15020");
    let init = container(&injected, "istio-init").unwrap();
    assert_eq!(init["env"], json!([{"name": "FOO", "value": "bar"}]));

    let bad = simple_pod(json!({"proxy.istio.io/config": "[1, 2]"}));
    let response = server.review(&pod_review("b", "apps", &bad)).await;
    assert_eq!(response["response"]["allowed"], false);
    assert!(
        response["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("proxy.istio.io/config")
    );
    server.stop().await;
}

#[tokio::test]
async fn user_volumes_are_added_to_the_pod_and_the_proxy() {
    let server = TestServer::start(InjectConfig::default()).await;
    let pod = simple_pod(json!({
        "sidecar.istio.io/userVolume": r#"{"certs":{"secret":{"secretName":"tls"}},"istio-envoy":{"emptyDir":{}}}"#,
        "sidecar.istio.io/userVolumeMount": r#"{"certs":{"mountPath":"/etc/certs","readOnly":true}}"#,
    }));
    let injected = apply_and_check(&pod, &server.review(&pod_review("v", "apps", &pod)).await);
    let volumes = injected["spec"]["volumes"].as_array().unwrap();
    assert!(
        volumes.contains(&json!({"name": "certs", "secret": {"secretName": "tls"}})),
        "{volumes:?}"
    );
    assert_eq!(volumes.iter().filter(|v| v["name"] == "istio-envoy").count(), 1);
    let mounts = container(&injected, "istio-proxy").unwrap()["volumeMounts"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        mounts.contains(&json!({"name": "certs", "mountPath": "/etc/certs", "readOnly": true})),
        "{mounts:?}"
    );
    // The status annotation lists the user's volume after ours, once, as istiod's does.
    let status: Value = serde_json::from_str(
        injected["metadata"]["annotations"]["sidecar.istio.io/status"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let listed: Vec<&str> = status["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(listed.last(), Some(&"certs"), "{listed:?}");
    assert_eq!(
        listed.iter().filter(|name| **name == "istio-envoy").count(),
        1,
        "{listed:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn pod_level_resources_grow_by_what_the_proxy_adds() {
    let server = TestServer::start(InjectConfig::default()).await;
    let mut pod = simple_pod(json!({}));
    pod["spec"]["resources"] =
        json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    pod["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "900m", "memory": "512Mi"}});
    let injected = apply_and_check(&pod, &server.review(&pod_review("p", "apps", &pod)).await);
    // Pod-level Guaranteed: the proxy is equalized to its requests, and both pod-level sides
    // grow by what the proxy and init container add.
    let proxy = resources_of(&injected, "istio-proxy");
    assert_eq!(proxy["requests"], proxy["limits"], "{proxy}");
    let cpu = proxy["requests"]["cpu"].as_str().unwrap();
    let grown = &injected["spec"]["resources"];
    assert_eq!(grown["requests"], grown["limits"], "{grown}");
    let millicores = |text: &str| {
        text.strip_suffix('m')
            .map_or_else(|| text.parse::<i64>().unwrap() * 1000, |m| m.parse().unwrap())
    };
    assert_eq!(
        millicores(grown["requests"]["cpu"].as_str().unwrap()),
        1000 + millicores(cpu)
    );
    let provenance: Value = serde_json::from_str(
        injected["metadata"]["annotations"]["sidecar-injector.io/resources"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        provenance["pod.cpu.request"]["value"], grown["requests"]["cpu"],
        "{provenance}"
    );
    server.stop().await;
}

#[tokio::test]
async fn path_parameters_set_cluster_network_and_env_as_istiod_does() {
    let server = TestServer::start(InjectConfig::default()).await;
    let pod = simple_pod(json!({}));
    let env_of = |injected: &Value| -> Vec<(String, Option<String>)> {
        container(injected, "istio-proxy").unwrap()["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|var| {
                (
                    var["name"].as_str().unwrap().to_string(),
                    var["value"].as_str().map(str::to_string),
                )
            })
            .collect()
    };
    for path in [
        "/inject/cluster/east/net/network1/extra/a--slash--b",
        "/inject/:ENV:cluster=east:ENV:net=network1:ENV:extra=a/b",
    ] {
        let body = serde_json::to_vec(&pod_review("p", "apps", &pod)).unwrap();
        let answer = server.post(path, Some("application/json"), body).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        let injected = apply_and_check(&pod, &answer.json());
        let env = env_of(&injected);
        let tail: Vec<(&str, Option<&str>)> = env[env.len() - 3..]
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_deref()))
            .collect();
        // istiod's updateClusterEnvs: the path's variables last, in name order.
        assert_eq!(
            tail,
            [
                ("EXTRA", Some("a/b")),
                ("ISTIO_META_CLUSTER_ID", Some("east")),
                ("ISTIO_META_NETWORK", Some("network1")),
            ],
            "{path}"
        );
        assert_eq!(
            env.iter().filter(|(name, _)| name == "ISTIO_META_CLUSTER_ID").count(),
            1
        );
        assert_eq!(
            injected["metadata"]["labels"]["topology.istio.io/network"], "network1",
            "{path}"
        );
    }
    let plain = apply_and_check(&pod, &server.review(&pod_review("q", "apps", &pod)).await);
    let env = env_of(&plain);
    assert!(env.contains(&("ISTIO_META_CLUSTER_ID".to_string(), Some("Kubernetes".to_string()))));
    assert!(
        !env.iter()
            .any(|(name, _)| name == "ISTIO_META_NETWORK" || name == "EXTRA")
    );
    assert!(plain["metadata"]["labels"].get("topology.istio.io/network").is_none());
    server.stop().await;
}

#[tokio::test]
async fn proxy_image_type_and_cap_net_bind_service_follow_istiods_template() {
    let server = TestServer::start(InjectConfig::default()).await;
    let pod = simple_pod(json!({
        "sidecar.istio.io/proxyImageType": "distroless",
        "sidecar.istio.io/capNetBindService": "true",
    }));
    let injected = apply_and_check(&pod, &server.review(&pod_review("t", "apps", &pod)).await);
    let proxy = container(&injected, "istio-proxy").unwrap();
    assert_eq!(proxy["image"], "docker.io/istio/proxyv2:1.28.0-distroless");
    assert_eq!(
        container(&injected, "istio-init").unwrap()["image"],
        "docker.io/istio/proxyv2:1.28.0-distroless"
    );
    let security = &proxy["securityContext"];
    assert_eq!(security["capabilities"]["add"], json!(["NET_BIND_SERVICE"]));
    assert_eq!(security["runAsUser"], 0);
    assert_eq!(security["runAsGroup"], 1337);
    assert_eq!(security["runAsNonRoot"], false);

    // Anything but "true" is off, as istiod reads it; a pod's own image is used as written.
    let pod = simple_pod(json!({
        "sidecar.istio.io/capNetBindService": "yes",
        "sidecar.istio.io/proxyImage": "example.com/proxy:2",
        "sidecar.istio.io/proxyImageType": "debug",
    }));
    let injected = apply_and_check(&pod, &server.review(&pod_review("u", "apps", &pod)).await);
    let proxy = container(&injected, "istio-proxy").unwrap();
    assert_eq!(proxy["image"], "example.com/proxy:2");
    assert_eq!(proxy["securityContext"]["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!(proxy["securityContext"]["runAsUser"], 1337);

    let pod = simple_pod(json!({"sidecar.istio.io/proxyImageType": "dist roless"}));
    let response = server.review(&pod_review("v", "apps", &pod)).await;
    assert_eq!(response["response"]["allowed"], false);
    let message = response["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("sidecar.istio.io/proxyImageType") && message.contains("dist roless"),
        "{message}"
    );
    server.stop().await;
}

/// apimachinery's limit on one object's annotation keys and values, in bytes.
const TOTAL_ANNOTATION_BYTES: usize = 256 * 1024;

fn annotation_bytes(pod: &Value) -> usize {
    pod["metadata"]["annotations"].as_object().map_or(0, |map| {
        map.iter().map(|(k, v)| k.len() + v.as_str().unwrap().len()).sum()
    })
}

/// A pod whose own annotations are valid but leave less room than the injected ones take is
/// denied, naming `metadata.annotations` and the figures; one that leaves exactly that room
/// is injected, and its patched annotations total the limit to the byte.
#[tokio::test]
async fn annotations_pushed_past_the_api_server_limit_are_denied() {
    let server = TestServer::start(InjectConfig::default()).await;
    let with_filler = |len: usize| simple_pod(json!({"example.com/filler": "x".repeat(len)}));
    let filler_key = "example.com/filler".len();
    let small = with_filler(1);
    let response = server.review(&pod_review("measure", "apps", &small)).await;
    let added = annotation_bytes(&apply_and_check(&small, &response)) - annotation_bytes(&small);
    assert!(added > 100, "the injector adds its status annotation: {added} bytes");

    let exact = with_filler(TOTAL_ANNOTATION_BYTES - added - filler_key);
    assert_eq!(annotation_bytes(&exact) + added, TOTAL_ANNOTATION_BYTES);
    let response = server.review(&pod_review("exact", "apps", &exact)).await;
    assert_eq!(
        response["response"]["allowed"], true,
        "{}",
        response["response"]["status"]
    );
    assert_eq!(
        annotation_bytes(&apply_and_check(&exact, &response)),
        TOTAL_ANNOTATION_BYTES
    );

    let over = with_filler(TOTAL_ANNOTATION_BYTES - added - filler_key + 1);
    let response = server.review(&pod_review("over", "apps", &over)).await;
    assert_eq!(response["response"]["allowed"], false);
    assert!(patch_of(&response).is_none(), "a denial carries no patch");
    let message = response["response"]["status"]["message"].as_str().unwrap();
    let expected = format!(
        "metadata.annotations: the pod's annotations would total {} bytes of keys and values with the {added} bytes",
        TOTAL_ANNOTATION_BYTES + 1
    );
    assert!(message.contains(&expected), "{message}");
    let room = format!(
        "limit of {TOTAL_ANNOTATION_BYTES} bytes; keep the pod's own annotations to at most {} bytes",
        TOTAL_ANNOTATION_BYTES - added
    );
    assert!(message.contains(&room), "{message}");
    server.stop().await;
}
