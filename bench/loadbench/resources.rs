//! Resource figures of the real binary, run as a child process so that the client's memory
//! and CPU stay out of them: time from spawn to `/readyz` = 200, RSS idle, under load and
//! after, and CPU time per 1,000 reviews.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{self, Mode, StopRule, Target};
use crate::procfs;

/// How long the child may take to become ready before the run fails.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take to exit after SIGTERM (it keeps serving for a drain delay).
const EXIT_TIMEOUT: Duration = Duration::from_secs(45);
/// How often RSS is sampled under load.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// What to run and how hard.
pub struct ResourceOptions {
    /// The `sidecar-injector` binary.
    pub binary: PathBuf,
    /// Times to start the binary to measure readiness.
    pub ready_runs: usize,
    /// Concurrent keep-alive connections under load.
    pub connections: usize,
    /// How long the load lasts.
    pub duration: Duration,
    /// The AdmissionReview to post.
    pub body: Bytes,
}

/// The figures.
#[derive(Debug, serde::Serialize)]
pub struct ResourceFigures {
    /// Milliseconds from spawn to the first `/readyz` = 200, one per start.
    pub ready_ms: Vec<f64>,
    /// RSS one second after ready, before any request, KiB.
    pub rss_idle_kib: u64,
    /// Largest RSS sampled under load, KiB.
    pub rss_load_max_kib: u64,
    /// RSS one second after the load, KiB.
    pub rss_after_kib: u64,
    /// Peak RSS over the process's life (`VmHWM`), KiB.
    pub rss_peak_kib: u64,
    /// Reviews answered under load.
    pub requests: u64,
    /// Failed requests under load.
    pub errors: u64,
    /// Reviews per second under load.
    pub throughput: f64,
    /// Server CPU (user + system) per 1,000 reviews, milliseconds.
    pub cpu_ms_per_1000: f64,
    /// Server CPU use under load, in cores.
    pub cpu_cores: f64,
    /// Connections used for the load.
    pub connections: usize,
}

/// Starts the binary `ready_runs` times for readiness, then loads the last one.
pub async fn measure(options: &ResourceOptions) -> Result<ResourceFigures, String> {
    if !options.binary.exists() {
        return Err(format!(
            "{} does not exist; build it with `cargo build --release`",
            options.binary.display()
        ));
    }
    let dir = std::env::temp_dir().join(format!("loadbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let bundle = sidecar_injector::certs::CertBundle::generate(&["127.0.0.1".to_string()])
        .map_err(|e| format!("certificates: {e}"))?;
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    std::fs::write(&cert, &bundle.cert_pem).map_err(|e| format!("write {}: {e}", cert.display()))?;
    std::fs::write(&key, &bundle.key_pem).map_err(|e| format!("write {}: {e}", key.display()))?;

    let mut ready_ms = Vec::new();
    let mut running = None;
    for run in 0..options.ready_runs.max(1) {
        let mut child = ChildServer::spawn(&options.binary, &cert, &key, &dir)?;
        let ready = child.wait_ready().await;
        match ready {
            Ok(elapsed) => ready_ms.push(elapsed.as_secs_f64() * 1000.0),
            Err(error) => {
                child.kill();
                return Err(error);
            }
        }
        if run + 1 == options.ready_runs.max(1) {
            running = Some(child);
        } else {
            child.kill();
        }
    }
    let Some(mut child) = running else {
        return Err("no server was started".into());
    };
    let result = load(&mut child, options, &bundle.ca_pem, ready_ms).await;
    child.stop();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn load(
    child: &mut ChildServer,
    options: &ResourceOptions,
    ca_pem: &str,
    ready_ms: Vec<f64>,
) -> Result<ResourceFigures, String> {
    let pid = child.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle_kib = procfs::rss_kib(pid).ok_or("cannot read the child's RSS")?;

    let sampling = Arc::new(AtomicBool::new(true));
    let max_rss = Arc::new(AtomicU64::new(rss_idle_kib));
    let sampler = {
        let sampling = sampling.clone();
        let max_rss = max_rss.clone();
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(rss) = procfs::rss_kib(pid) {
                    max_rss.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(RSS_SAMPLE_EVERY).await;
            }
        })
    };
    let target = Arc::new(Target {
        addr: child.webhook,
        connector: client::connector(&[ca_pem.to_string()])?,
        body: options.body.clone(),
        expect_patch: true,
    });
    let cpu_before = procfs::process_cpu(pid).ok_or("cannot read the child's CPU time")?;
    let stop = StopRule::Until(Instant::now() + options.duration);
    let result = client::run_load(target, Mode::Keepalive, options.connections, stop).await;
    let cpu_after = procfs::process_cpu(pid).ok_or("cannot read the child's CPU time")?;
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    if let Some(rss) = procfs::rss_kib(pid) {
        max_rss.fetch_max(rss, Ordering::Relaxed);
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = cpu_after.saturating_sub(cpu_before).as_secs_f64();
    for sample in &result.error_samples {
        eprintln!("resources: error: {sample}");
    }
    Ok(ResourceFigures {
        ready_ms,
        rss_idle_kib,
        rss_load_max_kib: max_rss.load(Ordering::Relaxed),
        rss_after_kib: procfs::rss_kib(pid).unwrap_or(0),
        rss_peak_kib: procfs::peak_rss_kib(pid).unwrap_or(0),
        requests: result.requests,
        errors: result.errors,
        throughput: result.throughput(),
        cpu_ms_per_1000: cpu * 1000.0 * 1000.0 / result.requests.max(1) as f64,
        cpu_cores: cpu / result.elapsed.as_secs_f64().max(1e-9),
        connections: options.connections,
    })
}

/// The binary running `serve` on loopback ports, with its log in a file.
struct ChildServer {
    child: Child,
    started: Instant,
    webhook: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
}

// === impl ChildServer ===

impl ChildServer {
    fn spawn(binary: &Path, cert: &Path, key: &Path, dir: &Path) -> Result<Self, String> {
        let webhook = free_port()?;
        let admin = free_port()?;
        let log = dir.join(format!("server-{}.log", webhook.port()));
        let log_file = std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(binary)
            .arg("serve")
            .arg("--listen")
            .arg(webhook.to_string())
            .arg("--admin-listen")
            .arg(admin.to_string())
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        Ok(ChildServer {
            child,
            started,
            webhook,
            admin,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/readyz` every millisecond and returns the time since spawn of the first 200.
    async fn wait_ready(&mut self) -> Result<Duration, String> {
        loop {
            if readyz_status(self.admin).await == Some(200) {
                return Ok(self.started.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("the server exited with {status} before it was ready:\n{log}"));
            }
            if self.started.elapsed() > READY_TIMEOUT {
                return Err(format!("the server was not ready within {READY_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Asks the server to drain with SIGTERM, as the kubelet does, and waits for it to exit;
    /// kills it if it has not exited within [`EXIT_TIMEOUT`].
    fn stop(&mut self) {
        let asked = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        while asked.elapsed() < EXIT_TIMEOUT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("resources: the server did not exit within {EXIT_TIMEOUT:?} of SIGTERM; killing it");
        self.kill();
    }

    /// Ends the server at once (SIGKILL), for starts that only time readiness.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of `GET /readyz` on the admin port, or `None` when it does not answer.
async fn readyz_status(admin: SocketAddr) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let line = answer.split(|&b| b == b'\n').next()?;
    std::str::from_utf8(line).ok()?.split_whitespace().nth(1)?.parse().ok()
}

/// A loopback port that was free a moment ago (the child must bind it by number).
fn free_port() -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind: {e}"))?;
    listener.local_addr().map_err(|e| e.to_string())
}
