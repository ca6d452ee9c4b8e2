//! A Prometheus of our own on a loopback port, over TSDB blocks made from the test's data.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::process::{ChildProcess, WorkDir};

/// How long Prometheus may take to open its TSDB and report ready.
const READY_DEADLINE: Duration = Duration::from_secs(90);

/// A running Prometheus; stopped and its folder removed on drop.
pub struct RunningPrometheus {
    // Dropped first: the process stops before its folder goes.
    process: ChildProcess,
    port: u16,
    work: WorkDir,
}

/// `name` in `$SIDECAR_INJECTOR_PROMETHEUS_DIR`, else on PATH.
fn tool(name: &str) -> Result<PathBuf, String> {
    let dirs = std::env::var_os("SIDECAR_INJECTOR_PROMETHEUS_DIR")
        .into_iter()
        .chain(std::env::var_os("PATH"))
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>());
    dirs.map(|dir| dir.join(name)).find(|path| path.is_file()).ok_or_else(|| {
        format!(
            "{name} is not installed: run `bash tests/advise/scripts/ensure-prometheus.sh` (Debian package prometheus), \
             or set SIDECAR_INJECTOR_PROMETHEUS_DIR"
        )
    })
}

fn is_ready(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /-/ready HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

impl RunningPrometheus {
    /// Writes the data, builds blocks with promtool and starts Prometheus over them.
    pub fn start() -> Result<Self, String> {
        let prometheus = tool("prometheus")?;
        let promtool = tool("promtool")?;
        let work = WorkDir::create()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let start = now / 60 * 60 - 5 * 3600;
        let input = work.path().join("usage.om");
        std::fs::write(&input, crate::data::openmetrics(start)).map_err(|e| e.to_string())?;
        let data = work.path().join("data");
        let blocks = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", promtool.display()))?;
        if !blocks.status.success() {
            return Err(format!(
                "promtool tsdb create-blocks-from openmetrics failed: {}{}",
                String::from_utf8_lossy(&blocks.stdout),
                String::from_utf8_lossy(&blocks.stderr)
            ));
        }
        let config = work.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1m\n").map_err(|e| e.to_string())?;
        // Prometheus binds the port itself; a port just freed by the OS is the best we can pass.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let args: Vec<String> = [
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            "--storage.tsdb.retention.time=30d".to_string(),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ]
        .into();
        let mut process = ChildProcess::spawn("prometheus", &prometheus, &args, work.path().join("prometheus.log"))?;
        let begun = Instant::now();
        while !is_ready(port) {
            process.check_running()?;
            if begun.elapsed() > READY_DEADLINE {
                return Err(format!(
                    "Prometheus not ready after {READY_DEADLINE:?}\n{}",
                    process.log_tail(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(RunningPrometheus { process, port, work })
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its scratch folder.
    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(30)
    }
}
