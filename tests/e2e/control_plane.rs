//! A throwaway control plane: etcd and kube-apiserver from `KUBEBUILDER_ASSETS` on loopback.
//!
//! Both listen on free 127.0.0.1 ports in a scratch folder. The API server authenticates one
//! bearer token as a `system:masters` user, authorizes with RBAC, signs service account tokens
//! with an ECDSA key made by rcgen, and makes its own serving certificate in `certs/`. A
//! kubeconfig for it is written beside the logs, so a failed run can be inspected with kubectl
//! while the test is stopped in a debugger. No controller-manager or scheduler runs: pods are
//! stored and stay Pending, which is all admission tests need.
//!
//! The API server also authenticates to webhooks, as `--client-ca` asks of a deployment: an
//! AdmissionConfiguration gives the MutatingAdmissionWebhook plugin a kubeconfig whose `"*"`
//! user (any webhook host) holds a client certificate from a CA made for this run. The API
//! server presents it only when a webhook's server asks for one, so webhooks without
//! `--client-ca` are called as before.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use sidecar_injector::certs::CertBundle;

use crate::check::poll;
use crate::loopback_http;
use crate::process::ChildProcess;

/// Starts are retried this often: ports are picked free, then bound by the child a moment
/// later, and another process may take one in between.
const START_ATTEMPTS: u32 = 3;
/// Readiness polls (50 ms apart): 60 s, for a loaded machine; a start takes about 3 s.
const READY_TRIES: u32 = 1200;

/// The two programs, found in a `KUBEBUILDER_ASSETS` folder.
pub struct Binaries {
    etcd: PathBuf,
    apiserver: PathBuf,
}

// === impl Binaries ===

impl Binaries {
    /// Finds `etcd` and `kube-apiserver` in `assets`.
    pub fn find(assets: &Path) -> Result<Self, String> {
        Ok(Binaries {
            etcd: executable(assets, "etcd")?,
            apiserver: executable(assets, "kube-apiserver")?,
        })
    }
}

/// A running etcd and kube-apiserver; both are killed when this is dropped.
pub struct ControlPlane {
    apiserver: ChildProcess,
    etcd: ChildProcess,
    kubeconfig: PathBuf,
    webhook_client: CertBundle,
}

// === impl ControlPlane ===

impl ControlPlane {
    /// Starts etcd and kube-apiserver under `dir`.
    pub async fn start(binaries: &Binaries, dir: &Path) -> Result<Self, String> {
        let mut errors = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let attempt_dir = dir.join(format!("control-plane-{attempt}"));
            match start_once(&binaries.etcd, &binaries.apiserver, &attempt_dir).await {
                Ok(control_plane) => return Ok(control_plane),
                Err(error) => errors.push(format!("attempt {attempt}: {error}")),
            }
        }
        Err(errors.join("\n\n"))
    }

    /// A kubeconfig for the API server, with the admin token.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The client certificate the API server presents to webhooks that ask for one, and the
    /// CA that issued it (what a webhook's `--client-ca` names).
    pub fn webhook_client(&self) -> &CertBundle {
        &self.webhook_client
    }

    /// Fails with the log tail if either process has stopped.
    pub fn check_running(&mut self) -> Result<(), String> {
        self.etcd.check_running()?;
        self.apiserver.check_running()
    }

    /// The end of both logs.
    pub fn log_tails(&self, lines: usize) -> String {
        format!("{}\n{}", self.etcd.log_tail(lines), self.apiserver.log_tail(lines))
    }
}

fn executable(assets: &Path, name: &str) -> Result<PathBuf, String> {
    let path = assets.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "KUBEBUILDER_ASSETS={} has no {name}; run `bash tests/e2e/scripts/ensure-control-plane.sh` to make the folder",
            assets.display()
        ))
    }
}

async fn start_once(etcd_bin: &Path, apiserver_bin: &Path, dir: &Path) -> Result<ControlPlane, String> {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).map_err(|e| format!("cannot create {}: {e}", certs.display()))?;
    let [etcd_port, peer_port, apiserver_port] = free_ports()?;
    let token = random_token();
    write(
        &dir.join("tokens.csv"),
        &format!("{token},admin,admin-uid,system:masters\n"),
    )?;
    // The API server reads the public half from a PUBLIC KEY block: it does not take an EC key
    // in a PKCS#8 PRIVATE KEY block there, only for signing.
    let key = KeyPair::generate().map_err(|e| format!("cannot make the service account key: {e}"))?;
    write(&dir.join("sa.key"), &key.serialize_pem())?;
    write(&dir.join("sa.pub"), &key.public_key_pem())?;
    let (webhook_client, admission_configuration) = write_webhook_client(dir)?;

    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut etcd = ChildProcess::spawn(
        "etcd",
        etcd_bin,
        &strings(&[
            "--data-dir",
            &dir.join("etcd").display().to_string(),
            "--listen-client-urls",
            &etcd_url,
            "--advertise-client-urls",
            &etcd_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("default={peer_url}"),
            "--unsafe-no-fsync",
        ]),
        dir.join("etcd.log"),
    )?;
    let health = std::net::SocketAddr::from(([127, 0, 0, 1], etcd_port));
    poll("etcd healthy", READY_TRIES, || {
        let running = etcd.check_running();
        async move {
            running?;
            match loopback_http::get(health, "/health").await? {
                (200, body) if body.contains("true") => Ok(()),
                (status, body) => Err(format!("etcd /health: {status} {body}")),
            }
        }
    })
    .await?;

    let mut apiserver = ChildProcess::spawn(
        "kube-apiserver",
        apiserver_bin,
        &strings(&[
            "--etcd-servers",
            &etcd_url,
            "--bind-address",
            "127.0.0.1",
            "--advertise-address",
            "127.0.0.1",
            "--secure-port",
            &apiserver_port.to_string(),
            "--cert-dir",
            &certs.display().to_string(),
            "--token-auth-file",
            &dir.join("tokens.csv").display().to_string(),
            "--authorization-mode",
            "RBAC",
            "--service-account-key-file",
            &dir.join("sa.pub").display().to_string(),
            "--service-account-signing-key-file",
            &dir.join("sa.key").display().to_string(),
            "--service-account-issuer",
            "https://kubernetes.default.svc",
            "--service-cluster-ip-range",
            "10.0.0.0/24",
            "--endpoint-reconciler-type",
            "none",
            "--admission-control-config-file",
            &admission_configuration.display().to_string(),
        ]),
        dir.join("kube-apiserver.log"),
    )?;
    // The API server writes its self-signed certificate (and the CA that signed it) before it
    // serves; the kubeconfig trusts exactly that. The client is made once the file is there.
    let ca = certs.join("apiserver.crt");
    let kubeconfig = dir.join("kubeconfig");
    write(&kubeconfig, &kubeconfig_yaml(apiserver_port, &ca, &token))?;
    poll("kube-apiserver /readyz", READY_TRIES, || {
        let state = apiserver.check_running().and(etcd.check_running());
        let (ca, kubeconfig) = (&ca, &kubeconfig);
        async move {
            state?;
            if !ca.is_file() {
                return Err(format!("no {} yet", ca.display()));
            }
            let client = crate::cluster::client_from_kubeconfig(kubeconfig).await?;
            let request = axum::http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            client.request_text(request).await.map(drop).map_err(|e| e.to_string())
        }
    })
    .await
    .map_err(|error| format!("{error}\n{}\n{}", etcd.log_tail(20), apiserver.log_tail(40)))?;
    Ok(ControlPlane {
        apiserver,
        etcd,
        kubeconfig,
        webhook_client,
    })
}

/// Makes a CA and a client certificate for the API server's webhook calls, and writes them
/// with the webhook kubeconfig and the AdmissionConfiguration naming it; returns the
/// certificates and the AdmissionConfiguration's path.
fn write_webhook_client(dir: &Path) -> Result<(CertBundle, PathBuf), String> {
    // Absolute: the API server refuses a relative kubeConfigFile.
    let dir = std::path::absolute(dir).map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
    // CertBundle's leaf certificate is good for client authentication as well as serving.
    let client = CertBundle::generate(&["kube-apiserver".to_string()])
        .map_err(|e| format!("cannot make the webhook client certificate: {e}"))?;
    let (ca, cert, key) = (
        dir.join("webhook-client-ca.crt"),
        dir.join("webhook-client.crt"),
        dir.join("webhook-client.key"),
    );
    write(&ca, &client.ca_pem)?;
    write(&cert, &client.cert_pem)?;
    write(&key, &client.key_pem)?;
    let kubeconfig = dir.join("webhook-kubeconfig.yaml");
    write(&kubeconfig, &webhook_kubeconfig_yaml(&cert, &key))?;
    let admission_configuration = dir.join("admission-configuration.yaml");
    write(&admission_configuration, &admission_configuration_yaml(&kubeconfig))?;
    Ok((client, admission_configuration))
}

/// The kubeconfig the API server reads its webhook credentials from: users are matched by
/// the webhook's `host:port`, and `"*"` matches every webhook.
fn webhook_kubeconfig_yaml(cert: &Path, key: &Path) -> String {
    format!(
        "apiVersion: v1
kind: Config
users:
  - name: \"*\"
    user:
      client-certificate: {cert}
      client-key: {key}
",
        cert = cert.display(),
        key = key.display()
    )
}

/// The `--admission-control-config-file`: the MutatingAdmissionWebhook plugin reads
/// `kubeconfig`.
fn admission_configuration_yaml(kubeconfig: &Path) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: MutatingAdmissionWebhook
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: {kubeconfig}
",
        kubeconfig = kubeconfig.display()
    )
}

/// Three distinct free loopback ports (all held open together while they are picked).
fn free_ports() -> Result<[u16; 3], String> {
    let bind = || TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind a loopback port: {e}"));
    let listeners = [bind()?, bind()?, bind()?];
    let port = |listener: &TcpListener| listener.local_addr().map(|addr| addr.port()).map_err(|e| e.to_string());
    Ok([port(&listeners[0])?, port(&listeners[1])?, port(&listeners[2])?])
}

/// 128 random bits as hex, from the standard library's per-process random hash keys.
fn random_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    let half = || RandomState::new().hash_one(std::process::id());
    format!("{:016x}{:016x}", half(), half())
}

fn kubeconfig_yaml(port: u16, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: e2e
    cluster:
      server: https://127.0.0.1:{port}
      certificate-authority: {ca}
users:
  - name: admin
    user:
      token: {token}
contexts:
  - name: e2e
    context:
      cluster: e2e
      user: admin
current-context: e2e
",
        ca = ca.display()
    )
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}
