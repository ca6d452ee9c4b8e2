//! Command-line interface: flags (each also read from a `SIDECAR_INJECTOR_*` variable) and dispatch.

mod advise;

use std::io::Read;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sidecar_injector::certs::CertBundle;
use sidecar_injector::check::{CheckOptions, CheckReport};
use sidecar_injector::config::UserConfig;
use sidecar_injector::engine::Injector;
use sidecar_injector::server::Server;
use sidecar_injector::server::options::{
    DEFAULT_BLOCKING_THRESHOLD_BYTES, ServeOptions, default_blocking_permits, parse_flag_duration,
};
use sidecar_injector::server::tls::{self, TlsFiles, TlsSource};

/// A Kubernetes mutating admission webhook that injects Istio's sidecar proxy, with CPU and
/// memory tuned per field from pod annotations and checked before the API server sees them.
#[derive(Debug, Parser)]
#[command(
    name = "sidecar-injector",
    version = sidecar_injector::version::LONG,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the webhook over HTTPS (POST /inject) and health and metrics over HTTP.
    ///
    /// Without --tls-cert/--tls-key it makes a self-signed CA and a certificate for
    /// localhost and 127.0.0.1, writes the CA to --self-signed-ca-out and logs the path,
    /// so `curl --cacert <path> https://localhost:8443/inject` works with no set-up.
    Serve(Box<ServeArgs>),
    /// Inject offline, like `istioctl kube-inject`: read YAML workloads, write injected YAML.
    ///
    /// Takes Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets,
    /// ReplicationControllers, Jobs, CronJobs and Lists, in one or many documents.
    /// Other kinds pass through unchanged.
    Inject(InjectArgs),
    /// Write a CA and a serving certificate for the webhook Service, and print the caBundle.
    ///
    /// Files written to --out: ca.crt, ca.key, tls.crt, tls.key. The certificate's names
    /// are NAME, NAME.NS, NAME.NS.svc and NAME.NS.svc.cluster.local. The base64 caBundle
    /// for the MutatingWebhookConfiguration is printed on stdout.
    Certs(CertsArgs),
    /// Explain the decision and each proxy resource field (value, source, adjustments) for a pod.
    ///
    /// Uses the same engine as the webhook. --namespace takes a Namespace object (its
    /// annotations apply as namespace defaults, profile and bounds); --limitranges takes
    /// LimitRange objects (one or many YAML documents, or a List); --quotas takes
    /// ResourceQuota objects with their status.
    Explain(ExplainArgs),
    /// Propose proxy sizes from what the proxies used, read from Prometheus.
    ///
    /// Reads container_cpu_usage_seconds_total and container_memory_working_set_bytes of
    /// every istio-proxy container over --window, groups them by namespace and workload
    /// (kube-state-metrics' kube_pod_owner and kube_replicaset_owner, else the pod name),
    /// and puts each proposal through the config's bounds, profiles and onViolation as
    /// admission would. Any failure is one line on stderr and exit status 2.
    Advise(Box<advise::AdviseArgs>),
    /// Check a live cluster: the webhook registration, each namespace's injection, and drift.
    ///
    /// Exits 0 when healthy, 1 when something is wrong (an error finding or a drifted pod),
    /// 2 when the cluster cannot be read. Pods are judged by --config, which should be the
    /// config the injector runs with.
    Check(CheckArgs),
    /// Print the MutatingWebhookConfiguration for a revision tag (Istio's `istio.io/rev`
    /// selectors with the tag); with --kubeconfig, apply it instead.
    ///
    /// Which revision the tag means is `istio.tags` in the config.
    Tag(TagArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Kubeconfig file; default KUBECONFIG, ~/.kube/config, or the in-cluster service account.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: OutputFormat,
    /// Only this namespace (repeatable); default all.
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    namespaces: Vec<String>,
    /// Only pods matching this label selector, e.g. app=web (drift).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    selector: Option<String>,
    /// MutatingWebhookConfiguration to check (repeatable); default every one labelled
    /// app.kubernetes.io/name=sidecar-injector, else the one named sidecar-injector.
    #[arg(long = "webhook", value_name = "NAME")]
    webhooks: Vec<String>,
    /// Dial this HOST:PORT instead of the webhook's url host or Service name, e.g. a
    /// `kubectl port-forward`; the certificate is still checked for the registration's name.
    #[arg(long, value_name = "HOST:PORT")]
    connect: Option<String>,
    /// The injector's /readyz URL; default: each pod behind the registration's Service,
    /// through the API server's pod proxy.
    #[arg(long, value_name = "URL")]
    readyz: Option<String>,
    /// The injector's namespace, when the registration calls a url rather than a Service.
    #[arg(long, default_value = "sidecar-injector", value_name = "NS")]
    injector_namespace: String,
}

#[derive(Debug, Args)]
struct TagArgs {
    /// The tag, e.g. prod.
    tag: String,
    /// Apply to this cluster (the caBundle is copied from the installed sidecar-injector
    /// registration) instead of printing.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct ExplainArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Pod or workload YAML, or - for stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE|-")]
    filename: String,
    /// Namespace object YAML (annotations are used).
    #[arg(long, value_name = "FILE")]
    namespace: Option<PathBuf>,
    /// LimitRange objects YAML.
    #[arg(long, value_name = "FILE")]
    limitranges: Option<PathBuf>,
    /// ResourceQuota objects YAML, with `status.used` (quota foresight).
    #[arg(long, value_name = "FILE")]
    quotas: Option<PathBuf>,
    /// A proposed pod: explain the `pods/resize` of the -f pod (as stored) to it.
    #[arg(long, value_name = "FILE")]
    resize: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ClusterMode {
    /// Use KUBECONFIG, ~/.kube/config or the in-cluster service account if one is found;
    /// otherwise run without namespace defaults and LimitRanges.
    Auto,
    /// Never contact the API server.
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct ConfigArg {
    /// Config file (YAML); see deploy/config.yaml. Built-in defaults when absent.
    #[arg(long, env = "SIDECAR_INJECTOR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    /// The file as written, so the keys it sets are known.
    pub(crate) fn user_config(&self) -> Result<UserConfig, String> {
        match &self.config {
            Some(path) => UserConfig::load(path).map_err(|e| e.to_string()),
            None => Ok(UserConfig::defaults()),
        }
    }

    /// The engine for the file alone (offline commands read no installed Istio).
    pub(crate) fn injector(&self) -> Result<Injector, String> {
        Injector::compose(&self.user_config()?, &[]).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// HTTPS address of the webhook.
    #[arg(
        long,
        env = "SIDECAR_INJECTOR_LISTEN",
        default_value = "0.0.0.0:8443",
        value_name = "ADDR"
    )]
    listen: SocketAddr,
    /// Plain-HTTP address of /livez, /readyz and /metrics.
    #[arg(
        long,
        env = "SIDECAR_INJECTOR_ADMIN_LISTEN",
        default_value = "0.0.0.0:9090",
        value_name = "ADDR"
    )]
    admin_listen: SocketAddr,
    /// PEM certificate chain for the webhook.
    #[arg(long, env = "SIDECAR_INJECTOR_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for the webhook.
    #[arg(long, env = "SIDECAR_INJECTOR_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Where the self-signed CA is written when no certificate is given.
    #[arg(
        long,
        env = "SIDECAR_INJECTOR_SELF_SIGNED_CA_OUT",
        default_value_os_t = std::env::temp_dir().join("sidecar-injector").join("ca.crt"),
        value_name = "FILE"
    )]
    self_signed_ca_out: PathBuf,
    /// Log format.
    #[arg(long, env = "SIDECAR_INJECTOR_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Read namespace annotations and LimitRanges from the API server.
    #[arg(long, env = "SIDECAR_INJECTOR_CLUSTER", value_enum, default_value = "auto")]
    cluster: ClusterMode,
    /// Emit Kubernetes Events on the workload when a pod is denied or its proxy's resources
    /// are clamped, fitted or lowered (needs the cluster; --events=false turns them off).
    #[arg(long, env = "SIDECAR_INJECTOR_EVENTS", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    events: bool,
    /// CA (PEM) that clients must present a certificate from (mTLS from the API server).
    /// Without it no client certificate is asked for.
    #[arg(long, env = "SIDECAR_INJECTOR_CLIENT_CA", requires = "tls_cert", value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// How often --tls-cert, --tls-key and --client-ca are re-read; changed files apply to
    /// new connections (a pair that does not load keeps the old one).
    #[arg(long, env = "SIDECAR_INJECTOR_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_flag_duration, value_name = "DURATION")]
    tls_reload_interval: Duration,
    /// How often --config is re-read; a changed file that does not validate keeps the old config.
    #[arg(long, env = "SIDECAR_INJECTOR_CONFIG_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_flag_duration, value_name = "DURATION")]
    config_reload_interval: Duration,
    /// After SIGTERM, keep accepting this long (with /readyz at 503) so requests routed
    /// here before the endpoints update are served. Keep it below the pod's
    /// terminationGracePeriodSeconds minus --drain-timeout.
    #[arg(long, env = "SIDECAR_INJECTOR_DRAIN_DELAY", default_value = "5s", value_parser = parse_flag_duration, value_name = "DURATION")]
    drain_delay: Duration,
    /// Then, how long in-flight requests may take to finish.
    #[arg(long, env = "SIDECAR_INJECTOR_DRAIN_TIMEOUT", default_value = "20s", value_parser = parse_flag_duration, value_name = "DURATION")]
    drain_timeout: Duration,
    /// Most connections served at once; more wait in the listen backlog.
    #[arg(
        long,
        env = "SIDECAR_INJECTOR_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_name = "N"
    )]
    max_connections: usize,
    /// How long a client may take to finish the TLS handshake.
    #[arg(long, env = "SIDECAR_INJECTOR_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_flag_duration, value_name = "DURATION")]
    handshake_timeout: Duration,
    /// How long an HTTP/1.1 client may take to send its headers; also how long an idle
    /// keep-alive connection is kept. Keep it above the API server's 90s idle timeout.
    #[arg(long, env = "SIDECAR_INJECTOR_HEADER_READ_TIMEOUT", default_value = "120s", value_parser = parse_flag_duration, value_name = "DURATION")]
    header_read_timeout: Duration,
    /// The answer deadline when the API server sends no ?timeout= (it normally does; then
    /// 80% of it is used).
    #[arg(long, env = "SIDECAR_INJECTOR_REQUEST_TIMEOUT", default_value = "8s", value_parser = parse_flag_duration, value_name = "DURATION")]
    request_timeout: Duration,
    /// How long /readyz waits for the namespace and LimitRange caches before reporting
    /// ready without them (pods then get config defaults and a warning).
    #[arg(long, env = "SIDECAR_INJECTOR_CACHE_SYNC_TIMEOUT", default_value = "30s", value_parser = parse_flag_duration, value_name = "DURATION")]
    cache_sync_timeout: Duration,
    /// Reviews with a body larger than this many bytes are parsed, injected and answered on
    /// a blocking thread pool, so they do not hold up small reviews on the async workers.
    #[arg(
        long,
        env = "SIDECAR_INJECTOR_BLOCKING_THRESHOLD_BYTES",
        default_value_t = DEFAULT_BLOCKING_THRESHOLD_BYTES,
        value_name = "BYTES"
    )]
    blocking_threshold_bytes: usize,
    /// How many large reviews are processed at once; more wait for a turn. Default: the
    /// number of CPUs.
    #[arg(long, env = "SIDECAR_INJECTOR_BLOCKING_PERMITS", value_name = "N")]
    blocking_permits: Option<NonZeroUsize>,
}

impl ServeArgs {
    fn options(&self) -> ServeOptions {
        ServeOptions {
            handshake_timeout: self.handshake_timeout,
            header_read_timeout: self.header_read_timeout,
            request_timeout: self.request_timeout,
            max_connections: self.max_connections,
            drain_delay: self.drain_delay,
            drain_timeout: self.drain_timeout,
            blocking_threshold_bytes: self.blocking_threshold_bytes,
            blocking_permits: self
                .blocking_permits
                .map_or_else(default_blocking_permits, NonZeroUsize::get),
            ..ServeOptions::default()
        }
    }
}

#[derive(Debug, Args)]
struct InjectArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Input YAML file, or - for stdin.
    #[arg(
        short = 'f',
        long = "filename",
        env = "SIDECAR_INJECTOR_FILENAME",
        value_name = "FILE|-"
    )]
    filename: String,
    /// Namespace for workloads that name none.
    #[arg(long, env = "SIDECAR_INJECTOR_NAMESPACE", default_value = "default")]
    namespace: String,
}

#[derive(Debug, Args)]
struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, env = "SIDECAR_INJECTOR_SERVICE", value_name = "NAME")]
    service: String,
    /// Namespace of the webhook's Service.
    #[arg(long, env = "SIDECAR_INJECTOR_NAMESPACE", value_name = "NS")]
    namespace: String,
    /// Folder to write ca.crt, ca.key, tls.crt and tls.key into (created if missing).
    #[arg(long, env = "SIDECAR_INJECTOR_OUT", value_name = "DIR")]
    out: PathBuf,
}

/// A command that failed: the one-line message and the exit status.
#[derive(Debug)]
pub struct Failure {
    /// Shown after `error: `.
    pub message: String,
    /// The process exit status.
    pub status: u8,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure { message, status: 1 }
    }
}

/// Runs the chosen subcommand; `Ok` carries the exit status.
pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let done = |result: Result<(), String>| result.map(|()| ExitCode::SUCCESS).map_err(Failure::from);
    match cli.command {
        Command::Serve(args) => done(serve(*args)),
        Command::Inject(args) => done(inject(args)),
        Command::Certs(args) => done(certs(args)),
        Command::Explain(args) => done(explain(args)),
        Command::Advise(args) => advise::run(*args).map(|()| ExitCode::SUCCESS),
        Command::Check(args) => Ok(check(args)),
        Command::Tag(args) => done(tag(args)),
    }
}

/// `check`'s exit status when the cluster cannot be read or the flags are unusable.
const CHECK_CANNOT_RUN: u8 = 2;

fn check(args: CheckArgs) -> ExitCode {
    match check_report(&args) {
        Ok(report) => {
            let printed = match args.output {
                OutputFormat::Text => Ok(report.to_text()),
                OutputFormat::Json => serde_json::to_string_pretty(&report).map(|json| json + "\n"),
            };
            match printed {
                Ok(text) => print!("{text}"),
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(CHECK_CANNOT_RUN);
                }
            }
            if report.healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(CHECK_CANNOT_RUN)
        }
    }
}

fn check_report(args: &CheckArgs) -> Result<CheckReport, String> {
    let injector = args.config.injector()?;
    let options = CheckOptions {
        webhooks: args.webhooks.clone(),
        namespaces: args.namespaces.clone(),
        selector: args.selector.clone(),
        connect: args.connect.clone(),
        readyz: args.readyz.clone(),
        injector_namespace: args.injector_namespace.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    runtime.block_on(async {
        let config = match &args.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| format!("no Kubernetes API configured (pass --kubeconfig): {e}"))?,
        };
        let client = kube::Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))?;
        sidecar_injector::check::check(&client, &injector, &options)
            .await
            .map_err(|e| e.to_string())
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn serve(args: ServeArgs) -> Result<(), String> {
    init_logging(args.log_format);
    let user = args.config.user_config()?;
    let injector = Injector::compose(&user, &[]).map_err(|e| e.to_string())?;
    let files = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: args.client_ca.clone(),
        }),
        _ => None,
    };
    let tls_config = match &files {
        Some(files) => files.load().map_err(|e| e.to_string())?,
        None => {
            let source = TlsSource::SelfSigned {
                ca_out: args.self_signed_ca_out.clone(),
            };
            let (config, ca_path) = tls::load(&source).map_err(|e| e.to_string())?;
            if let Some(path) = ca_path {
                tracing::info!(ca = %path.display(), "no --tls-cert given: serving a self-signed certificate for localhost; trust it with curl --cacert {}", path.display());
            }
            config
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    runtime.block_on(async move {
        let webhook = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let admin = tokio::net::TcpListener::bind(args.admin_listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.admin_listen))?;
        let mut server = Server::bind(webhook, admin, tls_config, injector)
            .with_user_config(user)?
            .with_options(args.options())
            .with_cache_sync_timeout(args.cache_sync_timeout)
            .with_events(args.events);
        if let Some(files) = files {
            server = server.reload_tls(files, args.tls_reload_interval);
        }
        if let Some(path) = &args.config.config {
            server = server.reload_config(path.clone(), args.config_reload_interval);
        }
        if let Some(client) = cluster_client(args.cluster).await {
            server = server.with_cluster(client);
        }
        let admin_addr = server.admin_addr().map_err(|e| e.to_string())?;
        tracing::info!(admin = %admin_addr, "admin serving HTTP");
        server.run(shutdown_signal()).await.map_err(|e| e.to_string())
    })
}

/// A client for the API server, when one is configured and wanted.
async fn cluster_client(mode: ClusterMode) -> Option<kube::Client> {
    if mode == ClusterMode::Off {
        tracing::info!("--cluster off: namespace defaults and LimitRanges are not used");
        return None;
    }
    let config = match kube::Config::infer().await {
        Ok(config) => config,
        Err(error) => {
            tracing::warn!(%error, "no Kubernetes API configured: namespace defaults and LimitRanges are not used");
            return None;
        }
    };
    match kube::Client::try_from(config) {
        Ok(client) => {
            tracing::info!("reading namespaces and LimitRanges from the API server");
            Some(client)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot build a Kubernetes client: namespace defaults and LimitRanges are not used");
            None
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown signal received");
    // A second signal (Ctrl-C again at a terminal) skips the drain.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(130);
        }
    });
}

fn read_input(filename: &str) -> Result<String, String> {
    if filename == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Ok(text)
    } else {
        std::fs::read_to_string(filename).map_err(|e| format!("cannot read {filename}: {e}"))
    }
}

/// Every object in `text` (`List` items in their place); `origin` names it in errors.
fn read_objects(text: &str, origin: &str) -> Result<Vec<serde_json::Value>, String> {
    sidecar_injector::manifest::read_objects(text).map_err(|e| format!("{origin}: {e}"))
}

/// Every object in the file at `path`, each read as a `kind`.
fn read_typed<T: serde::de::DeserializeOwned>(path: &std::path::Path, kind: &str) -> Result<Vec<T>, String> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {origin}: {e}"))?;
    read_objects(&text, &origin)?
        .into_iter()
        .map(|document| serde_json::from_value(document).map_err(|e| format!("{origin}: not a {kind}: {e}")))
        .collect()
}

fn explain(args: ExplainArgs) -> Result<(), String> {
    let injector = args.config.injector()?;
    let documents = read_objects(&read_input(&args.filename)?, &args.filename)?;
    let namespace: Option<k8s_openapi::api::core::v1::Namespace> = match &args.namespace {
        Some(path) => {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {origin}: {e}"))?;
            let document = read_objects(&text, &origin)?
                .into_iter()
                .next()
                .ok_or(format!("{origin} is empty"))?;
            Some(serde_json::from_value(document).map_err(|e| format!("{origin}: not a Namespace: {e}"))?)
        }
        None => None,
    };
    let limit_ranges: Vec<k8s_openapi::api::core::v1::LimitRange> = match &args.limitranges {
        Some(path) => read_typed(path, "LimitRange")?,
        None => Vec::new(),
    };
    let resource_quotas: Vec<k8s_openapi::api::core::v1::ResourceQuota> = match &args.quotas {
        Some(path) => read_typed(path, "ResourceQuota")?,
        None => Vec::new(),
    };
    if let Some(path) = &args.resize {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {origin}: {e}"))?;
        let proposed = read_objects(&text, &origin)?
            .into_iter()
            .next()
            .ok_or(format!("{origin} is empty"))?;
        let stored = documents.first().ok_or(format!("{} is empty", args.filename))?;
        let explanation =
            sidecar_injector::explain::explain_resize(&injector, stored, &proposed, namespace.as_ref(), &limit_ranges)
                .map_err(|e| e.to_string())?;
        match args.output {
            OutputFormat::Text => print!("{}", explanation.to_text()),
            OutputFormat::Json => println!(
                "{}",
                serde_json::to_string_pretty(&explanation).map_err(|e| e.to_string())?
            ),
        }
        return Ok(());
    }
    let mut explanations = Vec::new();
    for document in &documents {
        let explanation = sidecar_injector::explain::explain(
            &injector,
            document,
            namespace.as_ref(),
            &limit_ranges,
            &resource_quotas,
        )
        .map_err(|e| e.to_string())?;
        explanations.push(explanation);
    }
    match args.output {
        OutputFormat::Text => {
            let texts: Vec<String> = explanations.iter().map(|e| e.to_text()).collect();
            print!("{}", texts.join("\n"));
        }
        OutputFormat::Json => {
            let value = if explanations.len() == 1 {
                serde_json::to_value(&explanations[0])
            } else {
                serde_json::to_value(&explanations)
            }
            .map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?);
        }
    }
    Ok(())
}

fn inject(args: InjectArgs) -> Result<(), String> {
    init_logging(LogFormat::Text);
    let injector = args.config.injector()?;
    let input = read_input(&args.filename)?;
    let output =
        sidecar_injector::offline::inject_yaml(&injector, &input, &args.namespace).map_err(|e| e.to_string())?;
    print!("{output}");
    Ok(())
}

fn certs(args: CertsArgs) -> Result<(), String> {
    let hosts = CertBundle::service_hosts(&args.service, &args.namespace);
    let bundle = CertBundle::generate(&hosts).map_err(|e| e.to_string())?;
    bundle.write_to(&args.out).map_err(|e| e.to_string())?;
    eprintln!(
        "wrote ca.crt, ca.key, tls.crt and tls.key to {} for {}",
        args.out.display(),
        hosts.join(", ")
    );
    println!("{}", bundle.ca_bundle());
    Ok(())
}

fn tag(args: TagArgs) -> Result<(), String> {
    let configuration = sidecar_injector::tag::tag_webhook(&args.tag).map_err(|e| e.to_string())?;
    let Some(path) = args.kubeconfig else {
        let json = serde_json::to_string_pretty(&configuration).map_err(|e| e.to_string())?;
        println!("{json}");
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    runtime.block_on(async move {
        let kubeconfig = kube::config::Kubeconfig::read_from(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
        let name = configuration.metadata.name.clone().unwrap_or_default();
        sidecar_injector::tag::apply(client, configuration)
            .await
            .map_err(|e| e.to_string())?;
        println!("MutatingWebhookConfiguration {name} applied");
        Ok(())
    })
}
