//! Pod shapes for the benchmarks: one definition shared by the engine benchmark, the load
//! benchmark and the Istio peer (which reads them as AdmissionReview JSON files).
//!
//! The shapes are the ones issue 6 names: a small pod, a typical Deployment pod, Istio's
//! pathological 1,500-env pod (istio#34799), a 50-container pod, and pods grown to a target
//! JSON size for the linear-scaling curve, the largest being about the 3 MiB request body
//! the API server accepts.
#![allow(dead_code)]

use serde_json::{Map, Value, json};

/// The largest request body kube-apiserver reads (`MaxRequestBodyBytes`, 3 MiB), less room
/// for the rest of the create request.
pub const MAX_POD_BYTES: usize = 3 * 1024 * 1024 - 4 * 1024;

/// Total size of all annotations that the API server accepts (`TotalAnnotationSizeLimitB`).
pub const ANNOTATION_LIMIT_BYTES: usize = 256 * 1024;

/// The namespace every shape is created in.
pub const NAMESPACE: &str = "apps";

/// One named pod.
pub struct Shape {
    /// Short name used in benchmark ids, file names and tables.
    pub name: String,
    /// The pod JSON, as a client would send it.
    pub pod: Value,
}

// === impl Shape ===

impl Shape {
    fn new(name: impl Into<String>, pod: Value) -> Self {
        Shape { name: name.into(), pod }
    }

    /// Size of the pod JSON in bytes.
    pub fn pod_bytes(&self) -> usize {
        serde_json::to_vec(&self.pod).map(|v| v.len()).unwrap_or(0)
    }

    /// The AdmissionReview v1 CREATE request for this pod, as bytes.
    pub fn review_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&review_for(&self.name, &self.pod)).expect("a JSON value serialises")
    }
}

/// The fixed shapes of issue 6, in table order.
pub const NAMED: [&str; 5] = ["small", "typical", "env-1500", "wide-50", "max-3MiB"];

/// Pods of growing size built the same way, for the scaling curve; the last is `max-3MiB`.
pub const SCALING: [&str; 5] = ["size-16KiB", "size-64KiB", "size-256KiB", "size-1MiB", "max-3MiB"];

/// Builds the shape called `name`, if there is one.
pub fn shape(name: &str) -> Option<Shape> {
    let pod = match name {
        "small" => small(),
        "typical" => typical(),
        "env-1500" => many_env(1500),
        "wide-50" => wide(50),
        "max-3MiB" => sized(MAX_POD_BYTES),
        "size-16KiB" => sized(16 * 1024),
        "size-64KiB" => sized(64 * 1024),
        "size-256KiB" => sized(256 * 1024),
        "size-1MiB" => sized(1024 * 1024),
        _ => return None,
    };
    Some(Shape::new(name, pod))
}

/// The names of every distinct shape: the named ones, then the rest of the curve.
pub fn all_names() -> Vec<&'static str> {
    let mut names = NAMED.to_vec();
    names.extend(SCALING.iter().filter(|name| !NAMED.contains(name)));
    names
}

/// Every distinct shape, in [`all_names`] order.
pub fn all_shapes() -> Vec<Shape> {
    all_names().into_iter().filter_map(shape).collect()
}

/// An AdmissionReview v1 CREATE for `pod`, as the API server sends it.
pub fn review_for(uid: &str, pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("bench-{uid}"),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "3c5ad6a0-0f7e-4a7c-9a8e-2b0e3f1d9c11",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]
            },
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// One app container, as `kubectl run` makes it.
pub fn small() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": NAMESPACE, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80, "name": "http"}]}]}
    })
}

/// A pod from a Deployment: 3 containers with probes, 30 env vars in all, 20 annotations,
/// an owner, the API server's defaults and its managedFields.
pub fn typical() -> Value {
    let mut annotations = Map::new();
    for (key, value) in [
        ("prometheus.io/scrape", "true"),
        ("prometheus.io/port", "9102"),
        ("prometheus.io/path", "/metrics"),
        ("kubectl.kubernetes.io/restartedAt", "2026-11-20T10:15:00Z"),
        ("kubectl.kubernetes.io/default-container", "reviews"),
        ("app.kubernetes.io/managed-by", "argocd"),
        ("team.example.com/owner", "bookinfo-team@example.com"),
        (
            "team.example.com/oncall",
            "https://oncall.example.com/schedules/bookinfo",
        ),
        ("cluster-autoscaler.kubernetes.io/safe-to-evict", "true"),
        (
            "checksum/config",
            "9f2c1a7e0b5d4c3e8a6f1b2d3c4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a",
        ),
    ] {
        annotations.insert(key.into(), value.into());
    }
    for i in 0..10 {
        annotations.insert(
            format!("build.example.com/note-{i}"),
            format!("ci pipeline run {i} sha 3f9a2c{i:02}").into(),
        );
    }
    let containers: Vec<Value> = [("reviews", 9080), ("metrics-exporter", 9102), ("log-shipper", 2020)]
        .into_iter()
        .enumerate()
        .map(|(index, (name, port))| typical_container(index, name, port))
        .collect();
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "reviews-v1-5d8f7c6b9-",
            "namespace": NAMESPACE,
            "labels": {"app": "reviews", "version": "v1", "pod-template-hash": "5d8f7c6b9", "tier": "backend"},
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "reviews-v1-5d8f7c6b9",
                "uid": "0b8f4f5e-8d3a-4c2e-9a57-6f1f3c2d7e10",
                "controller": true,
                "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "containers": containers,
            "volumes": [
                {"name": "config", "configMap": {"name": "reviews-config", "defaultMode": 420}},
                {"name": "kube-api-access-7xk2p", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]}}
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "bookinfo-reviews",
            "serviceAccount": "bookinfo-reviews",
            "securityContext": {"runAsNonRoot": true, "fsGroup": 2000},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        }
    });
    let fields = managed_fields(&pod);
    pod["metadata"]["managedFields"] = json!([{
        "manager": "kube-controller-manager",
        "operation": "Update",
        "apiVersion": "v1",
        "time": "2026-11-20T10:15:02Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields
    }]);
    pod
}

fn typical_container(index: usize, name: &str, port: u16) -> Value {
    let mut env = Vec::with_capacity(10);
    env.push(
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}),
    );
    env.push(json!({"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "reviews-db", "key": "password"}}}));
    for j in 0..8 {
        env.push(json!({"name": format!("{}_SETTING_{j}", name.to_uppercase().replace('-', "_")), "value": format!("value-{index}-{j}-enabled")}));
    }
    let probe = |path: &str| {
        json!({
            "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
            "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 1,
            "successThreshold": 1, "failureThreshold": 3
        })
    };
    json!({
        "name": name,
        "image": format!("registry.example.com/bookinfo/{name}:1.{index}.0"),
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
        "livenessProbe": probe("/healthz"),
        "readinessProbe": probe("/ready"),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/reviews", "readOnly": true},
            {"name": "kube-api-access-7xk2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
        ],
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File"
    })
}

/// A FieldsV1 tree mirroring `value`, as server-side apply records it: objects become
/// `f:` keys, lists of named items become `k:{"name":...}` keys, and scalars `{}`.
fn managed_fields(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, child) in map {
                if key == "apiVersion" || key == "kind" || key == "managedFields" {
                    continue;
                }
                out.insert(format!("f:{key}"), managed_fields(child));
            }
            if !out.is_empty() {
                out.insert(".".into(), json!({}));
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out = Map::new();
            for item in items {
                if let Some(name) = item.get("name").and_then(Value::as_str) {
                    out.insert(format!("k:{{\"name\":\"{name}\"}}"), managed_fields(item));
                } else if let Some(port) = item.get("containerPort") {
                    out.insert(
                        format!("k:{{\"containerPort\":{port},\"protocol\":\"TCP\"}}"),
                        json!({".": {}}),
                    );
                }
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

/// One container with `count` env vars (istio#34799 used 1,500).
pub fn many_env(count: usize) -> Value {
    let env: Vec<Value> = (0..count)
        .map(|i| json!({"name": format!("ENV_VAR_{i:05}"), "value": format!("value-of-variable-{i:05}")}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "env-heavy", "namespace": NAMESPACE, "labels": {"app": "env-heavy"}},
        "spec": {"containers": [{
            "name": "app",
            "image": "registry.example.com/env-heavy:1.0",
            "ports": [{"containerPort": 8080, "name": "http"}],
            "env": env
        }]}
    })
}

/// A pod with `count` app containers.
pub fn wide(count: usize) -> Value {
    let containers: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "name": format!("worker-{i:02}"),
                "image": format!("registry.example.com/worker:{i}"),
                "ports": [{"containerPort": 8000 + i, "name": format!("http-{i:02}")}],
                "env": [{"name": "WORKER_ID", "value": i.to_string()}, {"name": "MODE", "value": "batch"}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
                "readinessProbe": {"tcpSocket": {"port": 8000 + i}, "periodSeconds": 10}
            })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "wide", "namespace": NAMESPACE, "labels": {"app": "wide"}},
        "spec": {"containers": containers}
    })
}

/// Env vars per container in [`sized`] pods.
const SIZED_ENV_PER_CONTAINER: usize = 40;

/// A pod grown to about `target` bytes of JSON, in the same proportions at every size:
/// about 1/13 annotations (so the largest stays under the 256 KiB annotation limit), the
/// rest containers of 40 env vars each; the last container is cut short to fit.
pub fn sized(target: usize) -> Value {
    let annotation_budget = (target / 13).min(ANNOTATION_LIMIT_BYTES - 1024);
    let mut annotations = Map::new();
    let mut annotation_bytes = 0;
    let mut i = 0;
    while annotation_bytes + 96 <= annotation_budget {
        let key = format!("bench.example.com/annotation-{i:05}");
        let value = format!("{:0>60}", i);
        annotation_bytes += key.len() + value.len();
        annotations.insert(key, Value::String(value));
        i += 1;
    }
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "sized-",
            "namespace": NAMESPACE,
            "labels": {"app": "sized"},
            "annotations": annotations
        },
        "spec": {"containers": []}
    });
    let mut used = json_len(&pod);
    let mut containers = Vec::new();
    loop {
        let full = sized_container(containers.len(), SIZED_ENV_PER_CONTAINER);
        let full_len = json_len(&full) + 1;
        if used + full_len <= target {
            used += full_len;
            containers.push(full);
            continue;
        }
        // Cut the last container short: every env entry has the same length.
        let bare = json_len(&sized_container(containers.len(), 0)) + 1;
        let per_env = (full_len - bare) / SIZED_ENV_PER_CONTAINER;
        if used + bare <= target {
            let count = (target - used - bare) / per_env.max(1);
            containers.push(sized_container(containers.len(), count.min(SIZED_ENV_PER_CONTAINER)));
        }
        break;
    }
    if containers.is_empty() {
        containers.push(sized_container(0, 0));
    }
    pod["spec"]["containers"] = Value::Array(containers);
    pod
}

fn sized_container(index: usize, env_count: usize) -> Value {
    let env: Vec<Value> = (0..env_count)
        .map(|j| json!({"name": format!("CONFIG_{index:04}_{j:03}"), "value": format!("setting-{index:04}-{j:03}-xxxxxxxxxxxxxxxx")}))
        .collect();
    json!({
        "name": format!("app-{index:04}"),
        "image": format!("registry.example.com/app:{index:04}"),
        "ports": [{"containerPort": 10000 + index, "name": format!("p{index:04}")}],
        "env": env,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
    })
}

fn json_len(value: &Value) -> usize {
    serde_json::to_vec(value).map(|v| v.len()).unwrap_or(0)
}
