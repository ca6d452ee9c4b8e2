//! Shared test support: a real HTTPS server on an ephemeral port with an rcgen CA, a
//! client that trusts only that CA, and checks applied to every returned patch.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::Pod;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use sidecar_injector::certs::CertBundle;
use sidecar_injector::config::InjectConfig;
use sidecar_injector::engine::Injector;
use sidecar_injector::quantity::{Quantity, ResourceKind};
use sidecar_injector::server::Server;
use sidecar_injector::server::tls::server_config;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A running server and a client for it.
pub struct TestServer {
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
    connector: TlsConnector,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl TestServer {
    /// Starts the server with `config` on 127.0.0.1 ephemeral ports.
    pub async fn start(config: InjectConfig) -> TestServer {
        let bundle = CertBundle::generate(&["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let tls = server_config(bundle.cert_pem.as_bytes(), bundle.key_pem.as_bytes(), ("test", "test")).unwrap();
        let webhook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::bind(webhook_listener, admin_listener, tls, Injector::new(config).unwrap());
        let webhook = server.webhook_addr().unwrap();
        let admin = server.admin_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(bundle.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let test_server = TestServer {
            webhook,
            admin,
            connector: TlsConnector::from(Arc::new(client)),
            stop: Some(stop),
            task: Some(task),
        };
        test_server.wait_ready().await;
        test_server
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(answer) = self.admin_get("/readyz").await
                && answer.status == 200
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("server never became ready");
    }

    /// Sends one HTTPS request on a new connection.
    pub async fn post(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        let tcp = TcpStream::connect(self.webhook).await.unwrap();
        let tls = self
            .connector
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = hyper::Request::post(path).header("host", "127.0.0.1");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        Answer { status, headers, body }
    }

    /// Posts an AdmissionReview and returns the response JSON.
    pub async fn review(&self, review: &Value) -> Value {
        let answer = self
            .post("/inject", Some("application/json"), serde_json::to_vec(review).unwrap())
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()
    }

    /// A plain-HTTP GET on the admin port.
    pub async fn admin_get(&self, path: &str) -> Result<Answer, hyper::Error> {
        let tcp = TcpStream::connect(self.admin).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        Ok(Answer { status, headers, body })
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// An AdmissionReview v1 CREATE request for `pod` in `namespace`.
pub fn pod_review(uid: &str, namespace: &str, pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "dryRun": false,
        }
    })
}

/// A minimal pod with one app container.
pub fn simple_pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "apps", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}]}]}
    })
}

/// The decoded JSON patch of a response, or `None`.
pub fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let response = &response["response"];
    let encoded = response.get("patch")?.as_str().expect("patch must be a base64 string");
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("patch is not base64");
    Some(serde_json::from_slice(&bytes).expect("patch is not a JSON patch"))
}

/// Applies the response's patch to `original`, checks the result is a valid pod, and returns it.
pub fn apply_and_check(original: &Value, response: &Value) -> Value {
    let mut pod = original.clone();
    if let Some(patch) = patch_of(response) {
        json_patch::patch(&mut pod, &patch).unwrap_or_else(|e| panic!("patch does not apply: {e}\n{patch:?}"));
    }
    check_pod_valid(&pod);
    pod
}

/// The checks every mutated pod must pass: a k8s-openapi Pod, unique container names,
/// every request at most its limit, at most one proxy.
pub fn check_pod_valid(pod: &Value) {
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap_or_else(|e| panic!("not a Pod: {e}"));
    let spec = typed.spec.expect("pod has a spec");
    let all: Vec<_> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut names = HashSet::new();
    for container in &all {
        assert!(
            names.insert(container.name.clone()),
            "duplicate container name {}",
            container.name
        );
        let Some(resources) = &container.resources else {
            continue;
        };
        let (Some(requests), Some(limits)) = (&resources.requests, &resources.limits) else {
            continue;
        };
        for (resource, kind) in [("cpu", ResourceKind::Cpu), ("memory", ResourceKind::Memory)] {
            if let (Some(request), Some(limit)) = (requests.get(resource), limits.get(resource)) {
                let request = Quantity::parse(&request.0, kind).unwrap();
                let limit = Quantity::parse(&limit.0, kind).unwrap();
                assert!(
                    request.units() <= limit.units(),
                    "{}: {resource} request {request} > limit {limit}",
                    container.name
                );
            }
        }
    }
    let proxies = all.iter().filter(|c| c.name == "istio-proxy").count();
    assert!(proxies <= 1, "{proxies} proxies");
    let mut volume_names = HashSet::new();
    for volume in spec.volumes.iter().flatten() {
        assert!(
            volume_names.insert(volume.name.clone()),
            "duplicate volume {}",
            volume.name
        );
    }
}

/// Finds a container by name in containers or initContainers.
pub fn container<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod["spec"][list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
}
