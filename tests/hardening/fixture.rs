//! The in-process server under test, a TLS client with a choice of roots, identity and ALPN,
//! kubelet-style `..data` folders, and polling with generous bounds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use sidecar_injector::certs::CertBundle;
use sidecar_injector::config::InjectConfig;
use sidecar_injector::engine::Injector;
use sidecar_injector::server::metrics::Metrics;
use sidecar_injector::server::options::ServeOptions;
use sidecar_injector::server::tls::{TlsFiles, server_config};
use sidecar_injector::server::{ServeError, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A fresh CA and a serving certificate for 127.0.0.1 (its EKU also allows client auth).
pub fn bundle() -> CertBundle {
    CertBundle::generate(&["127.0.0.1".to_string(), "localhost".to_string()]).unwrap()
}

/// The first certificate of a PEM chain, as DER.
pub fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// How the server under test is set up.
pub struct Setup {
    pub bundle: CertBundle,
    pub options: ServeOptions,
    pub config: InjectConfig,
    /// Serve from these files and poll them.
    pub tls_files: Option<(TlsFiles, Duration)>,
    /// Poll this config file.
    pub config_file: Option<(PathBuf, Duration)>,
    pub cluster: Option<(kube::Client, Duration)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            bundle: bundle(),
            options: ServeOptions::default(),
            config: InjectConfig::default(),
            tls_files: None,
            config_file: None,
            cluster: None,
        }
    }
}

/// A running server.
pub struct Running {
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl Setup {
    pub async fn start(self) -> Running {
        let tls = match &self.tls_files {
            Some((files, _)) => files.load().unwrap(),
            None => server_config(
                self.bundle.cert_pem.as_bytes(),
                self.bundle.key_pem.as_bytes(),
                ("test", "test"),
            )
            .unwrap(),
        };
        let webhook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut server = Server::bind(
            webhook_listener,
            admin_listener,
            tls,
            Injector::new(self.config).unwrap(),
        )
        .with_options(self.options);
        if let Some((files, interval)) = self.tls_files {
            server = server.reload_tls(files, interval);
        }
        if let Some((path, interval)) = self.config_file {
            server = server.reload_config(path, interval);
        }
        if let Some((client, sync_timeout)) = self.cluster {
            server = server.with_cluster(client).with_cache_sync_timeout(sync_timeout);
        }
        let webhook = server.webhook_addr().unwrap();
        let admin = server.admin_addr().unwrap();
        let metrics = server.metrics();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Running {
            webhook,
            admin,
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

impl Running {
    /// Waits (bounded) until `/readyz` says 200.
    pub async fn wait_ready(&self) {
        eventually("server ready", Duration::from_secs(20), || async {
            admin_get(self.admin, "/readyz")
                .await
                .map(|(status, _)| status == 200)
                .unwrap_or(false)
        })
        .await;
    }

    /// Begins shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Whether `run` has returned.
    pub fn is_stopped(&self) -> bool {
        self.task.as_ref().is_none_or(|task| task.is_finished())
    }

    /// Shuts down and waits (bounded) for `run` to return.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("server did not stop")
                .unwrap()
                .unwrap();
        }
    }

    /// The value of an OpenMetrics sample, 0 when absent.
    pub fn metric(&self, name: &str) -> f64 {
        metric_value(&self.metrics.encode(), name)
    }
}

/// The value of the sample `name` (with labels, if any) in OpenMetrics text.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `check` every 20 ms until it holds, failing after `bound`; returns the time taken.
pub async fn eventually<F, Fut>(what: &str, bound: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < bound {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {bound:?}");
}

/// A plain-HTTP GET on the admin port: status and body.
pub async fn admin_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

pub use crate::common::Answer;

/// A TLS client: which CAs it trusts, what it presents, which protocols it offers.
#[derive(Clone)]
pub struct Client {
    connector: TlsConnector,
}

impl Client {
    /// Trusts `cas`; offers ALPN `alpn`; presents `identity` (cert, key PEM) when given.
    pub fn new(cas: &[&str], identity: Option<(&str, &str)>, alpn: &[&[u8]]) -> Client {
        Self::with_versions(cas, identity, alpn, rustls::ALL_VERSIONS)
    }

    /// Trusts `cas`, HTTP/1.1 only, no client certificate.
    pub fn trusting(cas: &[&str]) -> Client {
        Self::new(cas, None, &[b"http/1.1"])
    }

    /// As [`Client::new`], limited to `versions`.
    pub fn with_versions(
        cas: &[&str],
        identity: Option<(&str, &str)>,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for ca in cas {
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Client {
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    /// A new TLS connection.
    pub async fn connect(&self, addr: SocketAddr) -> Result<TlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        self.connector
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))
    }

    /// The certificate the server presents to a new connection.
    pub async fn peer_certificate(&self, addr: SocketAddr) -> Result<CertificateDer<'static>, String> {
        let tls = self.connect(addr).await?;
        let certs = tls.get_ref().1.peer_certificates().ok_or("no peer certificate")?;
        Ok(certs[0].clone().into_owned())
    }

    /// One request on a new HTTP/1.1 connection.
    pub async fn post(&self, addr: SocketAddr, path: &str, body: Vec<u8>) -> Result<Answer, String> {
        let tls = self.connect(addr).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| format!("http1 handshake: {e}"))?;
        tokio::spawn(connection);
        send(&mut sender, path, body).await
    }

    /// One request on a new HTTP/2 connection.
    pub async fn post_h2(&self, addr: SocketAddr, path: &str, body: Vec<u8>) -> Result<Answer, String> {
        let request = hyper::Request::post(format!("https://127.0.0.1{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.send_h2(addr, request).await
    }

    /// `request`, with any body, on a new HTTP/2 connection.
    pub async fn send_h2<B>(&self, addr: SocketAddr, request: hyper::Request<B>) -> Result<Answer, String>
    where
        B: hyper::body::Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tls = self.connect(addr).await?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err("server did not choose h2".into());
        }
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .map_err(|e| format!("http2 handshake: {e}"))?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        collect(response).await
    }
}

/// Sends one HTTP/1.1 request on an open connection.
pub async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
    body: Vec<u8>,
) -> Result<Answer, String> {
    let request = hyper::Request::post(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    collect(response).await
}

async fn collect(response: hyper::Response<hyper::body::Incoming>) -> Result<Answer, String> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes()
        .to_vec();
    Ok(Answer { status, headers, body })
}

/// An AdmissionReview v1 CREATE for a small pod.
pub fn review_body(uid: &str) -> Vec<u8> {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]}
    });
    serde_json::to_vec(&crate::common::pod_review(uid, "apps", &pod)).unwrap()
}

/// Checks a 200 AdmissionReview answer for `uid` that allows the pod.
pub fn assert_allowed(answer: &Answer, uid: &str) {
    assert_eq!(answer.status, 200, "{}", answer.text());
    let review = answer.json();
    assert_eq!(review["response"]["uid"], uid);
    assert_eq!(review["response"]["allowed"], true, "{review}");
}

/// A raw HTTP/1.1 request whose body is only partly sent; [`SlowUpload::finish`] sends the rest.
pub struct SlowUpload {
    tls: TlsStream<TcpStream>,
    rest: Vec<u8>,
}

impl SlowUpload {
    /// Sends the headers and the first half of `body` to `path`.
    pub async fn start(client: &Client, addr: SocketAddr, path: &str, body: Vec<u8>) -> Result<SlowUpload, String> {
        let mut tls = client.connect(addr).await?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let half = body.len() / 2;
        tls.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
        tls.write_all(&body[..half]).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok(SlowUpload {
            tls,
            rest: body[half..].to_vec(),
        })
    }

    /// Sends the rest of the body and reads the response: status line and body.
    pub async fn finish(mut self) -> Result<(u16, String), String> {
        self.tls.write_all(&self.rest).await.map_err(|e| e.to_string())?;
        self.tls.flush().await.map_err(|e| e.to_string())?;
        self.read_response().await
    }

    /// Reads the response without sending more.
    pub async fn read_response(mut self) -> Result<(u16, String), String> {
        let mut raw = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), self.tls.read_to_end(&mut raw)).await;
        // A server that closes without close_notify still gave us its bytes.
        if read.is_err() {
            return Err("no response within 30s".into());
        }
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("no HTTP response: {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }
}

/// A folder laid out like a kubelet Secret or ConfigMap volume: `name -> ..data/name`,
/// `..data -> ..<timestamp>/`.
pub struct ProjectedDir {
    pub root: PathBuf,
    generation: u32,
}

impl ProjectedDir {
    /// Creates the folder with `files`.
    pub fn new(tag: &str, files: &[(&str, &[u8])]) -> ProjectedDir {
        let root = std::env::temp_dir().join(format!("sidecar-injector-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let mut dir = ProjectedDir { root, generation: 0 };
        dir.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(Path::new("..data").join(name), dir.root.join(name)).unwrap();
        }
        dir
    }

    /// The visible path of `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Writes a new timestamped folder, swaps `..data` to it atomically (rename of a
    /// temporary symlink, as kubelet's AtomicWriter does) and removes the old folder.
    pub fn update(&mut self, files: &[(&str, &[u8])]) {
        self.generation += 1;
        let name = format!("..2026_01_01_00_00_{:02}.{}", self.generation, 1000 + self.generation);
        let dir = self.root.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, contents) in files {
            std::fs::write(dir.join(file), contents).unwrap();
        }
        let old = std::fs::read_link(self.root.join("..data")).ok();
        let tmp = self.root.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(self.root.join(old)).unwrap();
        }
    }
}

impl Drop for ProjectedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
