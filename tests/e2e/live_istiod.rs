//! A real istiod (`pilot-discovery`) run out of cluster against the e2e API server.
//!
//! istiod runs as in its chart's Deployment, with the chart's environment (`istiod.env` from
//! `istio-render`) and the pod facts the downward API would give it (`POD_NAMESPACE`,
//! `POD_NAME`, `SERVICE_ACCOUNT`), the test's admin kubeconfig, and every listener on a free
//! 127.0.0.1 port. Its webhook serves a certificate made for this run, for the revision's
//! Service names and 127.0.0.1 (`--tlsCertFile`, `--tlsKeyFile`, `--caCertFile`), so the API
//! server can call `https://127.0.0.1:PORT/inject`. Nothing is mounted at its default
//! `./var/lib/istio/inject` or `./etc/istio/config/mesh` (it runs in a folder of its own), so
//! it reads the injection template and values from the `istio-sidecar-injector[-<rev>]`
//! ConfigMap and the mesh config from `istio[-<rev>]`, and follows their changes, as in a
//! cluster.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use sidecar_injector::certs::CertBundle;

use crate::check::{Context, poll};
use crate::istio_install::{ISTIO_NAMESPACE, IstioAssets, Rendered};
use crate::loopback_http;
use crate::process::ChildProcess;

/// Readiness polls (50 ms apart): 90 s, for a loaded machine; istiod is ready in a few seconds.
const READY_TRIES: u32 = 1800;

/// The ports istiod listens on.
#[derive(Debug, Clone, Copy)]
pub struct IstiodPorts {
    /// `--httpAddr` (8080 in a cluster): `/ready`, debug.
    pub http: u16,
    /// `--httpsAddr` (15017): the injection webhook.
    pub https: u16,
    /// `--grpcAddr` (15010): plaintext XDS.
    pub grpc: u16,
    /// `--secureGRPCAddr` (15012): XDS and the CA.
    pub secure_grpc: u16,
    /// `--monitoringAddr` (15014): metrics.
    pub monitoring: u16,
    /// `--ctrlz_port` (9876): ControlZ.
    pub ctrlz: u16,
}

/// A running istiod for one revision; killed when dropped.
pub struct LiveIstiod {
    process: ChildProcess,
    ports: IstiodPorts,
    certs: CertBundle,
    revision: String,
    rendered: Rendered,
}

// === impl IstiodPorts ===

impl IstiodPorts {
    /// Six free loopback ports (bound, then released for istiod to take).
    pub fn free() -> Result<Self, String> {
        let bind = || TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind a loopback port: {e}"));
        let listeners = [bind()?, bind()?, bind()?, bind()?, bind()?, bind()?];
        let mut ports = [0u16; 6];
        for (port, listener) in ports.iter_mut().zip(&listeners) {
            *port = listener.local_addr().map_err(|e| e.to_string())?.port();
        }
        let [http, https, grpc, secure_grpc, monitoring, ctrlz] = ports;
        Ok(IstiodPorts {
            http,
            https,
            grpc,
            secure_grpc,
            monitoring,
            ctrlz,
        })
    }

    /// The URL the API server calls for injection, as the chart's `istiodRemote.injectionURL`.
    pub fn injection_url(&self) -> String {
        format!("https://127.0.0.1:{}/inject", self.https)
    }
}

// === impl LiveIstiod ===

impl LiveIstiod {
    /// The certificate istiod's webhook will serve for `revision`: its Service names and
    /// 127.0.0.1. Made before the charts are rendered, so the webhook can trust its CA.
    pub fn certificate(revision: &str) -> Result<CertBundle, String> {
        let service = if revision.is_empty() || revision == "default" {
            "istiod".to_string()
        } else {
            format!("istiod-{revision}")
        };
        let mut hosts = CertBundle::service_hosts(&service, ISTIO_NAMESPACE);
        hosts.push("127.0.0.1".into());
        CertBundle::generate(&hosts).context("making istiod's webhook certificate")
    }

    /// Starts istiod for `revision` in `dir`, with the chart's environment from `rendered`,
    /// and waits until it reports ready.
    pub async fn start(
        assets: &IstioAssets,
        rendered: Rendered,
        kubeconfig: &Path,
        dir: &Path,
        revision: &str,
        ports: IstiodPorts,
        certs: CertBundle,
    ) -> Result<Self, String> {
        let tls = dir.join("tls");
        certs.write_to(&tls).context("writing istiod's certificate")?;
        let file = |name: &str| tls.join(name).display().to_string();
        let loopback = |port: u16| format!("127.0.0.1:{port}");
        let args: Vec<String> = [
            "discovery",
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--httpAddr",
            &loopback(ports.http),
            "--httpsAddr",
            &loopback(ports.https),
            "--grpcAddr",
            &loopback(ports.grpc),
            "--secureGRPCAddr",
            &loopback(ports.secure_grpc),
            "--monitoringAddr",
            &loopback(ports.monitoring),
            "--ctrlz_address",
            "127.0.0.1",
            "--ctrlz_port",
            &ports.ctrlz.to_string(),
            "--tlsCertFile",
            &file("tls.crt"),
            "--tlsKeyFile",
            &file("tls.key"),
            "--caCertFile",
            &file("ca.crt"),
            "--domain",
            "cluster.local",
            "--log_output_level",
            "default:info",
        ]
        .map(str::to_string)
        .to_vec();
        let mut env = rendered.env.clone();
        let pod_name = format!("istiod-{}-e2e", if revision.is_empty() { "default" } else { revision });
        for (key, value) in [
            ("POD_NAMESPACE", ISTIO_NAMESPACE.to_string()),
            ("POD_NAME", pod_name),
            ("SERVICE_ACCOUNT", "istiod".to_string()),
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("GOMAXPROCS", "2".to_string()),
        ] {
            env.retain(|(existing, _)| existing != key);
            env.push((key.to_string(), value));
        }
        std::fs::create_dir_all(dir).context(format!("creating {}", dir.display()))?;
        let mut process = ChildProcess::spawn_in(
            &format!("istiod ({})", if revision.is_empty() { "default" } else { revision }),
            &assets.pilot_discovery(),
            &args,
            &env,
            Some(dir),
            dir.join("istiod.log"),
        )?;
        let ready = SocketAddr::from(([127, 0, 0, 1], ports.http));
        let waited = poll("istiod reports ready on /ready", READY_TRIES, || async {
            match loopback_http::get(ready, "/ready").await {
                Ok((200, _)) => Ok(()),
                Ok((status, body)) => Err(format!("HTTP {status}: {body}")),
                Err(error) => Err(error),
            }
        })
        .await;
        if let Err(error) = waited {
            let tail = process.log_tail(60);
            let exited = process.check_running().err().unwrap_or_default();
            return Err(format!("{error}\n{exited}\n{tail}"));
        }
        Ok(LiveIstiod {
            process,
            ports,
            certs,
            revision: revision.to_string(),
            rendered,
        })
    }

    /// The ports it listens on.
    pub fn ports(&self) -> IstiodPorts {
        self.ports
    }

    /// The CA its webhook certificate comes from, for a webhook's `caBundle`.
    pub fn ca_pem(&self) -> &str {
        &self.certs.ca_pem
    }

    /// The charts as rendered for it.
    pub fn rendered(&self) -> &Rendered {
        &self.rendered
    }

    /// The revision it serves.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// Fails with the log tail if istiod has stopped.
    pub fn check_running(&mut self) -> Result<(), String> {
        self.process.check_running()
    }

    /// The end of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

/// A folder for one istiod under the run's scratch folder.
pub fn istiod_dir(workdir: &Path, name: &str) -> PathBuf {
    workdir.join(format!("istiod-{name}"))
}
