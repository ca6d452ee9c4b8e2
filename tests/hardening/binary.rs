//! The real `sidecar-injector` binary as a child process, for the SIGTERM test and the soak.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The real binary, serving on ephemeral ports.
pub struct Binary {
    pub child: Child,
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
}

impl Binary {
    /// Starts `program serve` with the certificate in `dir` and `extra` flags, and reads
    /// the addresses it logs.
    pub fn start(program: &Path, dir: &Path, extra: &[&str]) -> Binary {
        let mut child = Command::new(program)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--cluster",
                "off",
            ])
            .args(["--log-format", "json"])
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                    let fields = &event["fields"];
                    for key in ["addr", "admin"] {
                        if let Some(addr) = fields[key].as_str() {
                            let _ = sender.send((key, addr.to_string()));
                        }
                    }
                }
            }
        });
        let (mut webhook, mut admin) = (None, None);
        while webhook.is_none() || admin.is_none() {
            let (key, addr) = receiver
                .recv_timeout(Duration::from_secs(60))
                .expect("the binary did not log its addresses");
            let addr: SocketAddr = addr.parse().unwrap();
            if key == "addr" {
                webhook = Some(addr)
            } else {
                admin = Some(addr)
            }
        }
        Binary {
            child,
            webhook: webhook.unwrap(),
            admin: admin.unwrap(),
        }
    }

    /// Sends a signal (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait(&mut self) -> std::process::ExitStatus {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        panic!("the binary did not exit within 30s");
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
