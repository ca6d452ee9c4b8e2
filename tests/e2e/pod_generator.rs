//! Seeded pods for the differential scenario: what users write, valid and mistaken.
//!
//! Every pod annotation in the registry appears, mostly with its registry sample or another
//! valid value and sometimes with a common mistake for its form; user volumes and mounts
//! (valid ones and the mistakes the API server refuses); pods that bring their own
//! `istio-proxy` (with env, resources, probes and ports) or `istio-init`; probes and hooks
//! on app containers, restartable init containers and overrides; init containers with and
//! without `restartPolicy: Always`;
//! pod-level `spec.resources`; names at their length limits; and annotations near the API
//! server's 256 KiB limit on their total. The same seed always gives
//! the same pods, so a failure can be replayed.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Map, Value, json};
use sidecar_injector::engine::annotations::{Form, REGISTRY, Scope};

/// An image that is never pulled: no node runs the pods.
const IMAGE: &str = "registry.k8s.io/pause:3.10";

/// SplitMix64: small, fast and good enough to spread choices; deterministic per seed.
pub struct Prng(u64);

impl Prng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Prng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True once in `n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// `count` pods from `seed`, each with a unique name.
pub fn generate(seed: u64, count: usize) -> Vec<Pod> {
    let mut rng = Prng::new(seed);
    (0..count)
        .map(|index| {
            let value = pod(&mut rng, index);
            serde_json::from_value(value).unwrap_or_else(|e| panic!("generated pod {index} is not a Pod: {e}"))
        })
        .collect()
}

fn pod(rng: &mut Prng, index: usize) -> Value {
    let name = if rng.one_in(20) {
        // A pod name is a DNS subdomain: at most 253 characters.
        let stem = format!("p{index}-");
        format!("{stem}{}", "n".repeat(253 - stem.len()))
    } else {
        format!("p{index}")
    };
    let mut labels = Map::new();
    let app = if rng.one_in(10) {
        "a".repeat(63)
    } else {
        format!("app{}", rng.below(5))
    };
    labels.insert("app".into(), json!(app));
    if rng.one_in(3) {
        labels.insert("version".into(), json!(format!("v{}", rng.below(3))));
    }
    if rng.one_in(15) {
        labels.insert("sidecar.istio.io/inject".into(), json!(rng.pick(&["true", "false"])));
    }
    let mut annotations = annotations(rng);
    let native = annotations
        .get("sidecar.istio.io/nativeSidecar")
        .is_some_and(|v| v == "true");
    if rng.one_in(6) {
        user_volumes(rng, &mut annotations);
    }
    if rng.one_in(80) {
        fill_annotations(rng, &mut annotations);
    }
    let mut containers: Vec<Value> = (0..1 + rng.below(3)).map(|i| app_container(rng, i)).collect();
    let mut init_containers: Vec<Value> = (0..rng.below(3)).map(|i| init_container(rng, i)).collect();
    own_containers(rng, native, &mut containers, &mut init_containers);
    let mut spec = json!({"containers": containers});
    if !init_containers.is_empty() {
        spec["initContainers"] = json!(init_containers);
    }
    if rng.one_in(8) {
        spec["resources"] = pod_resources(rng, &spec);
    }
    if rng.one_in(40) {
        spec["hostNetwork"] = json!(true);
    }
    if rng.one_in(5) {
        spec["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": spec,
    })
}

// === annotations ===

/// The unrelated annotation that takes a pod near the annotation limit.
pub const FILLER: &str = "example.com/filler";

/// apimachinery's limit on one object's annotation keys and values, in bytes.
const TOTAL_ANNOTATION_BYTES: usize = 256 * 1024;

/// An unrelated annotation that takes the pod's own to within 2,000 bytes of the API
/// server's limit (or up to 50 past it, a pod invalid on its own): whether the injector's
/// annotations still fit decides between injected and denied.
fn fill_annotations(rng: &mut Prng, annotations: &mut Map<String, Value>) {
    const KEY: &str = FILLER;
    let own: usize = annotations
        .iter()
        .map(|(key, value)| key.len() + value.as_str().map_or(0, str::len))
        .sum();
    let target = TOTAL_ANNOTATION_BYTES + 50 - rng.below(2050);
    let room = target.saturating_sub(own + KEY.len());
    annotations.insert(KEY.into(), json!("x".repeat(room)));
}

/// 0 to 5 pod annotations from the registry, valid three times in four.
fn annotations(rng: &mut Prng) -> Map<String, Value> {
    let pod_rows: Vec<_> = REGISTRY.iter().filter(|row| row.scope != Scope::Namespace).collect();
    let mut annotations = Map::new();
    for _ in 0..rng.below(6) {
        let row = rng.pick(&pod_rows);
        // An already-injected pod is rare in practice; keep it rare here.
        if row.key == "sidecar.istio.io/status" && !rng.one_in(8) {
            continue;
        }
        let value = if rng.one_in(4) {
            mistake(rng, row.form).to_string()
        } else {
            valid(rng, row.form, row.sample).to_string()
        };
        annotations.insert(row.key.into(), json!(value));
    }
    annotations
}

fn valid(rng: &mut Prng, form: Form, sample: &'static str) -> &'static str {
    let others: &[&str] = match form {
        Form::Bool => &["true", "false", "yes", "off"],
        Form::CpuQuantity => &["100m", "500m", "1", "0.5"],
        Form::MemoryQuantity => &["128Mi", "512Mi", "1Gi", "100M"],
        Form::Ratio => &["10%", "0.2", "1"],
        Form::Name => &["small", "medium", "large"],
        Form::Ports { wildcard: true } => &["*", "80,8080"],
        Form::Ports { wildcard: false } => &["8080", "80,443"],
        Form::Cidrs { wildcard: true } => &["*", "10.0.0.0/8,fd00::/8"],
        Form::Cidrs { wildcard: false } => &["10.96.0.0/12", "192.168.0.0/16"],
        Form::Interfaces => &["eth1", "net1,net2"],
        Form::Port => &["15020", "8080"],
        Form::WholeNumber => &["0", "10"],
        Form::Choice => &["REDIRECT", "NONE", "TPROXY"],
        Form::Text | Form::Document => &[],
    };
    if others.is_empty() || rng.one_in(2) {
        sample
    } else {
        rng.pick(others)
    }
}

fn mistake(rng: &mut Prng, form: Form) -> &'static str {
    let choices: &[&'static str] = match form {
        Form::Bool => &["maybe", "1", ""],
        Form::CpuQuantity => &["abc", "1.5cores", "-1", "3"],
        Form::MemoryQuantity => &["1GB", "abc", "12Mb", "-1Mi"],
        Form::Ratio => &["0", "11", "150%", "x%"],
        Form::Name => &["huge", ""],
        Form::Ports { .. } => &["80,abc", "70000", "0", "*"],
        Form::Cidrs { .. } => &["10.0.0.0/33", "10.0.0.1", "*", "10.0.0.0/8,"],
        Form::Interfaces => &["eth0 -j ACCEPT", "a/b", "sixteencharsxxxx"],
        Form::Port => &["65536", "-1", "http"],
        Form::WholeNumber => &["-1", "1.5", "ten"],
        Form::Choice => &["redirect", "BPF"],
        Form::Text => &[" leading", "trailing ", " ", "a b"],
        Form::Document => &["{", "[]", "{\"a\": 1}", "null"],
    };
    rng.pick(choices)
}

/// `userVolume` and `userVolumeMount`, valid or with a mistake the API server refuses.
fn user_volumes(rng: &mut Prng, annotations: &mut Map<String, Value>) {
    let (volumes, mounts) = rng.pick(&[
        (
            r#"{"certs":{"secret":{"secretName":"tls","defaultMode":420}}}"#,
            r#"{"certs":{"mountPath":"/etc/certs","readOnly":true}}"#,
        ),
        (
            r#"{"conf":{"configMap":{"name":"c","items":[{"key":"k","path":"k.yaml"}]}}}"#,
            r#"{"conf":{"mountPath":"/etc/conf","subPath":"k.yaml"}}"#,
        ),
        (r#"{"extra":{"emptyDir":{}}}"#, r#"{"extra":{"mountPath":"/extra"}}"#),
        (
            r#"{"tok":{"projected":{"sources":[{"serviceAccountToken":{"path":"t","expirationSeconds":3600}}]}}}"#,
            r#"{"tok":{"mountPath":"/var/run/tok"}}"#,
        ),
        (r#"{}"#, r#"{"data":{"mountPath":"/data"}}"#),
        (r#"{"Bad_Name":{"emptyDir":{}}}"#, r#"{}"#),
        (
            r#"{"certs":{"emptyDir":{},"secret":{"secretName":"tls"}}}"#,
            r#"{"certs":{"mountPath":"/etc/certs"}}"#,
        ),
        (
            r#"{"certs":{"secret":{"secretName":"tls","defaultMode":1000}}}"#,
            r#"{}"#,
        ),
        (
            r#"{"conf":{"configMap":{"name":"c","items":[{"key":"k","path":"/etc/k"}]}}}"#,
            r#"{}"#,
        ),
        (
            r#"{"extra":{"emptyDir":{}}}"#,
            r#"{"extra":{"mountPath":"/extra","subPath":"../up"}}"#,
        ),
        (r#"{}"#, r#"{"missing":{"mountPath":"/missing"}}"#),
        (
            r#"{"extra":{"emptyDir":{}}}"#,
            r#"{"extra":{"mountPath":"/etc/istio/proxy"}}"#,
        ),
        (
            r#"{"a":{"emptyDir":{}},"b":{"emptyDir":{}}}"#,
            r#"{"a":{"mountPath":"/x"},"b":{"mountPath":"/x"}}"#,
        ),
        (r#"{"a.b":{"emptyDir":{}}}"#, r#"{"a.b":{"mountPath":"/ab"}}"#),
    ]);
    annotations.insert("sidecar.istio.io/userVolume".into(), json!(volumes));
    annotations.insert("sidecar.istio.io/userVolumeMount".into(), json!(mounts));
}

// === containers ===

fn app_container(rng: &mut Prng, index: usize) -> Value {
    let name = if rng.one_in(15) {
        format!("c{index}{}", "x".repeat(61))
    } else {
        format!("app{index}")
    };
    let port = 8080 + index as i64;
    // A port name is at most 15 characters.
    let port_name = if rng.one_in(8) {
        format!("h{index}{}", "p".repeat(13))
    } else {
        format!("http{index}")
    };
    let mut container = json!({
        "name": name,
        "image": IMAGE,
        "ports": [{"containerPort": port, "name": port_name}],
    });
    for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if rng.one_in(3) {
            container[kind] = probe(rng, port, &port_name);
        }
    }
    if rng.one_in(6) {
        container["lifecycle"] = json!({"preStop": {"httpGet": {"path": "/stop", "port": port}}});
    }
    if rng.one_in(2) {
        container["resources"] = container_resources(rng);
    }
    container
}

fn init_container(rng: &mut Prng, index: usize) -> Value {
    let mut container = json!({"name": format!("init{index}"), "image": IMAGE});
    if rng.one_in(2) {
        // A native sidecar of the app's own: probes and hooks are allowed.
        container["restartPolicy"] = json!("Always");
        if rng.one_in(2) {
            container["readinessProbe"] = probe(rng, 9000, "");
        }
        if rng.one_in(3) {
            container["startupProbe"] = probe(rng, 9000, "");
        }
    }
    if rng.one_in(2) {
        container["resources"] = container_resources(rng);
    }
    container
}

/// The pod's own `istio-proxy` or `istio-init`, now and then.
fn own_containers(rng: &mut Prng, native: bool, containers: &mut Vec<Value>, init_containers: &mut Vec<Value>) {
    match rng.below(24) {
        0 | 1 => {
            let mut proxy = json!({
                "name": "istio-proxy",
                "image": "auto",
                "env": [{"name": "EXTRA", "value": "1"}],
            });
            if rng.one_in(2) {
                proxy["resources"] = container_resources(rng);
            }
            if rng.one_in(3) {
                proxy["readinessProbe"] = probe(rng, 15021, "");
            }
            if rng.one_in(3) {
                // Ports merge by number: ours replaced, one beside ours, or one taking our
                // port's name under another number (two ports of one name).
                proxy["ports"] = match rng.below(3) {
                    0 => json!([{"containerPort": 15090, "name": "http-envoy-prom"}]),
                    1 => json!([{"containerPort": 9090, "name": "admin-port"}]),
                    _ => json!([{"containerPort": 9090, "name": "http-envoy-prom"}]),
                };
            }
            containers.push(proxy);
        }
        2 => {
            // Written as a native sidecar; right only in the native layout.
            let mut proxy = json!({"name": "istio-proxy", "image": "auto", "restartPolicy": "Always"});
            if native || rng.one_in(2) {
                proxy["startupProbe"] = probe(rng, 15021, "");
            }
            init_containers.insert(0, proxy);
        }
        3 => {
            // An app container that happens to be called like our init container.
            let mut init = json!({"name": "istio-init", "image": IMAGE});
            if rng.one_in(2) {
                init["livenessProbe"] = probe(rng, 7000, "");
            }
            containers.push(init);
        }
        4 => init_containers
            .push(json!({"name": "istio-init", "image": "auto", "args": ["istio-iptables", "-p", "15001"]})),
        _ => {}
    }
}

fn probe(rng: &mut Prng, port: i64, port_name: &str) -> Value {
    let port_ref = if port_name.is_empty() || rng.one_in(2) {
        json!(port)
    } else {
        json!(port_name)
    };
    match rng.below(4) {
        0 => json!({"httpGet": {"path": "/healthz", "port": port_ref}, "periodSeconds": 5}),
        1 => json!({"tcpSocket": {"port": port_ref}}),
        2 => json!({"grpc": {"port": port}}),
        _ => json!({"exec": {"command": ["true"]}}),
    }
}

/// Requests, sometimes limits, sometimes Guaranteed (limits equal to requests).
fn container_resources(rng: &mut Prng) -> Value {
    let cpu = rng.pick(&["50m", "100m", "250m", "1"]);
    let memory = rng.pick(&["64Mi", "128Mi", "256Mi"]);
    match rng.below(3) {
        0 => json!({"requests": {"cpu": cpu, "memory": memory}}),
        1 => json!({"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}),
        _ => json!({"requests": {"cpu": cpu}, "limits": {"cpu": "2", "memory": "512Mi"}}),
    }
}

/// Pod-level resources the pod satisfies on its own: requests at least the containers' sum
/// (exactly it, or with room), limits (when set) at least every limit, sometimes Guaranteed.
fn pod_resources(rng: &mut Prng, spec: &Value) -> Value {
    let (cpu, memory) = container_sum(spec);
    let room = rng.pick(&[0, 0, 100, 500]);
    let cpu = (cpu + room).max(100);
    let memory = (memory + room * (1 << 20)).max(64 << 20);
    let requests = json!({"cpu": format!("{cpu}m"), "memory": memory.to_string()});
    match rng.below(3) {
        0 => json!({"requests": requests}),
        1 => json!({"requests": requests, "limits": requests}),
        _ => json!({"requests": requests, "limits": {"cpu": format!("{}m", cpu.max(2000) + 1000), "memory": "4Gi"}}),
    }
}

/// The sum of the containers' and init containers' requests (millicores, bytes), an upper
/// bound of Kubernetes' effective requests; a request is its limit when only that is set.
fn container_sum(spec: &Value) -> (i64, i64) {
    let lists = [&spec["containers"], &spec["initContainers"]];
    let mut sum = (0, 0);
    for container in lists.into_iter().filter_map(Value::as_array).flatten() {
        let resources = &container["resources"];
        let amount = |resource: &str| {
            let value = resources["requests"][resource]
                .as_str()
                .or_else(|| resources["limits"][resource].as_str());
            value.map_or(0, |text| parse_amount(text, resource == "cpu"))
        };
        sum.0 += amount("cpu");
        sum.1 += amount("memory");
    }
    (sum.0, sum.1)
}

/// The few quantity spellings this generator writes, in millicores or bytes.
fn parse_amount(text: &str, cpu: bool) -> i64 {
    if cpu {
        return text
            .strip_suffix('m')
            .map_or_else(|| text.parse::<i64>().unwrap_or(0) * 1000, |m| m.parse().unwrap_or(0));
    }
    text.strip_suffix("Mi")
        .map_or_else(|| text.parse().unwrap_or(0), |mi| mi.parse::<i64>().unwrap_or(0) << 20)
}
