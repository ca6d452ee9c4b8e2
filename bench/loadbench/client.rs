//! The load generator: N concurrent HTTPS clients posting one AdmissionReview over and over,
//! either on kept-alive connections or with a new TCP and TLS handshake per request, with
//! every latency recorded in an HDR histogram.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Longest latency the histogram holds, in microseconds.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Distinct error messages kept for the report.
const ERROR_SAMPLES: usize = 5;

/// How each request reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Requests share long-lived HTTP/1.1 connections, as the API server's client does.
    Keepalive,
    /// Every request opens a new TCP connection with a full TLS handshake (no resumption).
    Handshake,
}

impl Mode {
    /// The mode's name in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Keepalive => "keepalive",
            Mode::Handshake => "handshake",
        }
    }
}

/// When a run stops: at a deadline, or once a shared budget of requests is spent.
#[derive(Debug, Clone)]
pub enum StopRule {
    /// Stop starting requests at this instant.
    Until(Instant),
    /// Stop once this many requests have been started, across all workers.
    Budget(Arc<AtomicU64>),
}

// === impl StopRule ===

impl StopRule {
    /// Claims the right to start one more request.
    fn take(&self) -> bool {
        match self {
            StopRule::Until(deadline) => Instant::now() < *deadline,
            StopRule::Budget(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// A server to load, and what to send it.
pub struct Target {
    /// The HTTPS address.
    pub addr: SocketAddr,
    /// TLS client settings trusting the server's CA.
    pub connector: TlsConnector,
    /// The AdmissionReview body.
    pub body: Bytes,
    /// Whether a correct answer carries a patch (the injector) or not (the baseline).
    pub expect_patch: bool,
}

/// What one run measured.
pub struct LoadResult {
    /// Latency of each successful request, in microseconds.
    pub histogram: Histogram<u64>,
    /// Successful requests.
    pub requests: u64,
    /// Failed requests (connect, TLS, HTTP or a wrong answer).
    pub errors: u64,
    /// The first few distinct error messages.
    pub error_samples: Vec<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

// === impl LoadResult ===

impl LoadResult {
    /// An empty result, to merge runs into.
    pub fn new() -> Self {
        LoadResult {
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
            requests: 0,
            errors: 0,
            error_samples: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Adds another run's figures (wall times add up: runs are sequential).
    pub fn merge(&mut self, other: LoadResult) {
        let _ = self.histogram.add(&other.histogram);
        self.requests += other.requests;
        self.add_errors(other.errors, other.error_samples);
        self.elapsed += other.elapsed;
    }

    /// Counts failures from elsewhere, e.g. a warm-up run.
    pub fn add_errors(&mut self, count: u64, samples: Vec<String>) {
        self.errors += count;
        for sample in samples {
            if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&sample) {
                self.error_samples.push(sample);
            }
        }
    }

    fn error(&mut self, message: String) {
        self.add_errors(1, vec![message]);
    }

    /// Counts one successful request that took `latency`.
    pub fn record(&mut self, latency: Duration) {
        self.requests += 1;
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_LATENCY_US);
        let _ = self.histogram.record(micros);
    }

    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency quantile in milliseconds.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// TLS client settings that trust only `ca_pems`, with session resumption off so that
/// every new connection pays for a full handshake, as the API server's client does.
pub fn connector(ca_pems: &[String]) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("CA certificate: {e}"))?;
            roots.add(cert).map_err(|e| format!("CA certificate: {e}"))?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Runs `connections` concurrent clients against `target` until `stop` says so.
pub async fn run_load(target: Arc<Target>, mode: Mode, connections: usize, stop: StopRule) -> LoadResult {
    let started = Instant::now();
    let workers: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let target = target.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                match mode {
                    Mode::Keepalive => keepalive_worker(&target, &stop).await,
                    Mode::Handshake => handshake_worker(&target, &stop).await,
                }
            })
        })
        .collect();
    let mut total = LoadResult::new();
    for worker in workers {
        match worker.await {
            Ok(result) => total.merge(result),
            Err(error) => total.error(format!("worker panicked: {error}")),
        }
    }
    total.elapsed = started.elapsed();
    total
}

async fn keepalive_worker(target: &Target, stop: &StopRule) -> LoadResult {
    let mut result = LoadResult::new();
    let mut connection: Option<SendRequest<Full<Bytes>>> = None;
    let mut checked = false;
    while stop.take() {
        let sender = match connection.as_mut() {
            Some(sender) => sender,
            None => match connect(target).await {
                Ok(sender) => connection.insert(sender),
                Err(error) => {
                    result.error(error);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let started = Instant::now();
        match post(sender, target, !checked, false).await {
            Ok(()) => {
                result.record(started.elapsed());
                checked = true;
            }
            Err(error) => {
                result.error(error);
                connection = None;
            }
        }
    }
    result
}

async fn handshake_worker(target: &Target, stop: &StopRule) -> LoadResult {
    let mut result = LoadResult::new();
    let mut checked = false;
    while stop.take() {
        let started = Instant::now();
        let outcome = match connect(target).await {
            Ok(mut sender) => post(&mut sender, target, !checked, true).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => {
                result.record(started.elapsed());
                checked = true;
            }
            Err(error) => result.error(error),
        }
    }
    result
}

/// Opens a TCP connection, completes the TLS handshake and the HTTP/1.1 handshake.
pub async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::IpAddress(target.addr.ip().into());
    let tls = target
        .connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Posts the review and reads the whole answer; `check` also parses and checks it.
pub async fn post(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    check: bool,
    close: bool,
) -> Result<(), String> {
    sender.ready().await.map_err(|e| format!("connection not ready: {e}"))?;
    let mut request = hyper::Request::post("/inject")
        .header("host", target.addr.to_string())
        .header("content-type", "application/json");
    if close {
        request = request.header("connection", "close");
    }
    let request = request
        .body(Full::new(target.body.clone()))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    if check {
        check_answer(&body, target.expect_patch)?;
    }
    Ok(())
}

/// Checks that an answer is an allowing AdmissionReview, with a patch when one is due.
pub fn check_answer(body: &[u8], expect_patch: bool) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    let response = &value["response"];
    if response["allowed"] != serde_json::Value::Bool(true) {
        return Err(format!("answer does not allow the pod: {response}"));
    }
    if expect_patch != response["patch"].is_string() {
        return Err(format!(
            "answer has patch={} but expected {expect_patch}",
            response["patch"].is_string()
        ));
    }
    Ok(())
}
