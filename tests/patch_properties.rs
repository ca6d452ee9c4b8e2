//! Property: for any pod (random containers with names, images, ports and resources, random
//! init containers, labels and annotations whose keys hold `/` and `~`, metadata present or
//! absent, volumes, some named like Istio's), the patch `review()` returns applies to the
//! original JSON with `json-patch`, and gives a valid k8s-openapi Pod with exactly one
//! `istio-proxy`, unique container and volume names, and every request at most its limit.

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

mod common;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use sidecar_injector::config::InjectConfig;
use sidecar_injector::engine::Injector;
use sidecar_injector::quantity::{Quantity, ResourceKind};
use sidecar_injector::review::review;

static CLASSIC: LazyLock<Injector> = LazyLock::new(|| Injector::new(InjectConfig::default()).unwrap());
static NATIVE: LazyLock<Injector> = LazyLock::new(|| {
    Injector::new(InjectConfig {
        native_sidecars: true,
        ..InjectConfig::default()
    })
    .unwrap()
});

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z~]{1,8}",
        "[a-z]{1,5}(\\.[a-z]{1,3})?/[a-z~.]{1,8}",
        Just("a/b~c".to_string()),
        Just("~1~0/".to_string()),
        Just("app.kubernetes.io/name".to_string()),
    ]
}

fn string_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(key(), "[ -~]{0,12}", 0..5)
}

/// A request and a limit at least as large, for one resource.
fn request_and_limit(kind: ResourceKind) -> impl Strategy<Value = (Option<String>, Option<String>)> {
    let unit = match kind {
        ResourceKind::Cpu => 1i64,
        ResourceKind::Memory => 1 << 20,
    };
    (prop::option::of(1i64..4000), prop::option::of(0i64..4000)).prop_map(move |(request, extra)| {
        let format = |units: i64| match kind {
            ResourceKind::Cpu => Quantity::from_millicores(units).to_canonical(),
            ResourceKind::Memory => Quantity::from_bytes(units * unit).to_canonical(),
        };
        let limit = match (request, extra) {
            (Some(request), Some(extra)) => Some(format(request + extra)),
            (None, Some(extra)) => Some(format(extra + 1)),
            _ => None,
        };
        (request.map(format), limit)
    })
}

fn resources() -> impl Strategy<Value = Option<Value>> {
    prop::option::of((
        request_and_limit(ResourceKind::Cpu),
        request_and_limit(ResourceKind::Memory),
    ))
    .prop_map(|chosen| {
        chosen.map(|((cpu_request, cpu_limit), (memory_request, memory_limit))| {
            let mut requests = Map::new();
            let mut limits = Map::new();
            for (is_limit, name, value) in [
                (false, "cpu", cpu_request),
                (true, "cpu", cpu_limit),
                (false, "memory", memory_request),
                (true, "memory", memory_limit),
            ] {
                let map = if is_limit { &mut limits } else { &mut requests };
                if let Some(value) = value {
                    map.insert(name.into(), json!(value));
                }
            }
            json!({"requests": requests, "limits": limits})
        })
    })
}

fn container(suffix: String) -> impl Strategy<Value = Value> {
    (
        "[a-z][a-z0-9-]{0,8}",
        "[a-z]{1,8}(:[0-9]{1,3})?",
        prop::collection::vec((1i32..=65535, prop::option::of("[a-z]{1,6}")), 0..3),
        resources(),
    )
        .prop_map(move |(name, image, ports, resources)| {
            let mut container = json!({"name": format!("{name}-{suffix}"), "image": image});
            if !ports.is_empty() {
                let ports: Vec<Value> = ports
                    .into_iter()
                    .enumerate()
                    .map(|(i, (port, name))| match name {
                        Some(name) => json!({"containerPort": port, "name": format!("{name}{i}")}),
                        None => json!({"containerPort": port}),
                    })
                    .collect();
                container["ports"] = json!(ports);
            }
            if let Some(resources) = resources {
                container["resources"] = resources;
            }
            container
        })
}

fn containers(prefix: &'static str, range: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Value>> {
    range.prop_flat_map(move |count| {
        (0..count)
            .map(|i| container(format!("{prefix}{i}")))
            .collect::<Vec<_>>()
    })
}

fn volumes() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::btree_set(
        prop_oneof![
            "[a-z]{1,8}",
            Just("istio-envoy".to_string()),
            Just("istio-data".to_string()),
            Just("istio-token".to_string()),
        ],
        0..4,
    )
    .prop_map(|names| {
        names
            .into_iter()
            .map(|name| json!({"name": name, "emptyDir": {}}))
            .collect()
    })
}

fn pod() -> impl Strategy<Value = Value> {
    (
        prop::option::of((prop::option::of("[a-z][a-z0-9-]{0,10}"), string_map(), string_map())),
        containers("c", 1..4),
        containers("i", 0..3),
        volumes(),
    )
        .prop_map(|(metadata, containers, init_containers, volumes)| {
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": containers}});
            if let Some((name, labels, annotations)) = metadata {
                let mut meta = Map::new();
                match name {
                    Some(name) => meta.insert("name".into(), json!(name)),
                    None => meta.insert("generateName".into(), json!("gen-")),
                };
                if !labels.is_empty() {
                    meta.insert("labels".into(), json!(labels));
                }
                if !annotations.is_empty() {
                    meta.insert("annotations".into(), json!(annotations));
                }
                pod["metadata"] = Value::Object(meta);
            }
            if !init_containers.is_empty() {
                pod["spec"]["initContainers"] = json!(init_containers);
            }
            if !volumes.is_empty() {
                pod["spec"]["volumes"] = json!(volumes);
            }
            pod
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn patch_gives_a_valid_pod_with_exactly_one_proxy(pod in pod(), native in any::<bool>()) {
        let injector = if native { &*NATIVE } else { &*CLASSIC };
        let body = serde_json::to_vec(&common::pod_review("prop", "apps", &pod)).unwrap();
        let answer = review(injector, &body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let response: Value = serde_json::from_slice(&answer.body).unwrap();
        prop_assert_eq!(&response["response"]["allowed"], &json!(true), "{}", response);
        prop_assert!(common::patch_of(&response).is_some(), "no patch: {}", response);
        // Applies the patch and checks a valid Pod: unique container and volume names,
        // at most one proxy, every request at most its limit.
        let patched = common::apply_and_check(&pod, &response);
        let proxies = ["containers", "initContainers"]
            .iter()
            .flat_map(|list| patched["spec"][list].as_array().into_iter().flatten())
            .filter(|c| c["name"] == "istio-proxy")
            .count();
        prop_assert_eq!(proxies, 1);
        let names: HashSet<&str> = ["containers", "initContainers"]
            .iter()
            .flat_map(|list| patched["spec"][list].as_array().into_iter().flatten())
            .filter_map(|c| c["name"].as_str())
            .collect();
        // Nothing the pod had is lost: its containers, labels and annotations are all still there.
        for original in pod["spec"]["containers"].as_array().unwrap() {
            prop_assert!(names.contains(original["name"].as_str().unwrap()));
        }
        for map in ["labels", "annotations"] {
            if let Some(entries) = pod["metadata"][map].as_object() {
                for (key, value) in entries {
                    prop_assert_eq!(&patched["metadata"][map][key], value, "{} {}", map, key);
                }
            }
        }
    }
}
