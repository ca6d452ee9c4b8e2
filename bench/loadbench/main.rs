//! Load benchmark: the real webhook server against a baseline on the same axum + rustls
//! stack, and against a replay server that sends the webhook's answer without running the
//! engine, in one process and one run, over N HTTPS connections on loopback; or, with
//! `--resources`, the real binary as a child process for RSS, CPU and readiness figures.
//!
//! Servers run on their own two-thread runtime (threads named `srv`) and the client on
//! another (`cli`), so the CPU each side spends can be read from /proc per thread.
//! Runs alternate baseline, replay and injector `--rounds` times per mode so that noise
//! from other work on the machine falls on all alike.
//!
//! `--mode large-mix` measures the webhook alone: the p99 of typical reviews on N keep-alive
//! connections, quiet and while large reviews arrive at `--large-rate` per second.
//!
//! Examples:
//!   cargo run --release --example loadbench -- --connections 16 --duration 10s --mode both
//!   cargo run --release --example loadbench -- --mode large-mix --duration 10s
//!   cargo run --release --example loadbench -- --smoke
//!   cargo build --release && cargo run --release --example loadbench -- --resources

mod client;
mod large_mix;
mod procfs;
mod report;
mod resources;
mod servers;

/// The allocator `src/main.rs` gives the real binary, for both servers alike.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../pods.rs"]
mod pods;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hyper::body::Bytes;
use sidecar_injector::config::InjectConfig;
use sidecar_injector::server::options::ServeOptions;

use self::client::{LoadResult, Mode, StopRule, Target};
use self::report::Row;
use self::servers::Servers;

/// Thread name of the servers' runtime.
const SERVER_THREADS: &str = "srv";
/// Thread name of the client's runtime.
const CLIENT_THREADS: &str = "cli";

/// Load benchmark for the sidecar-injector webhook.
#[derive(Debug, Parser)]
struct Args {
    /// Concurrent client connections (or concurrent handshaking clients).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Measured time per server and mode, e.g. 10s or 500ms [default: 10s; 2s with --smoke].
    #[arg(long, value_parser = parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// Requests per server and mode, instead of a duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Keep-alive connections, a TLS handshake per request, or both (injector vs baseline);
    /// or large-mix: typical reviews on keep-alive connections, quiet and while large
    /// reviews arrive (injector only).
    #[arg(long, value_enum, default_value = "both")]
    mode: ModeArg,
    /// With --mode large-mix: the large pod shape.
    #[arg(long, default_value = "max-3MiB")]
    large_pod: String,
    /// With --mode large-mix: large reviews per second.
    #[arg(long, default_value_t = 10.0)]
    large_rate: f64,
    /// The webhook's --blocking-threshold-bytes [default: the server's default]; a huge value
    /// keeps every review on the async workers, for comparison.
    #[arg(long)]
    blocking_threshold_bytes: Option<usize>,
    /// Times to alternate baseline, replay and injector per mode; figures are summed over rounds.
    #[arg(long)]
    rounds: Option<u32>,
    /// Unmeasured load before each measured run.
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Pod shape to post (see bench/pods.rs).
    #[arg(long, default_value = "typical")]
    pod: String,
    /// Short run for CI: exits non-zero if any request failed.
    #[arg(long)]
    smoke: bool,
    /// Measure the release binary as a child process instead: readiness, RSS and CPU.
    #[arg(long)]
    resources: bool,
    /// The binary for --resources [default: target/release/sidecar-injector].
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Starts of the binary to time readiness over, with --resources.
    #[arg(long, default_value_t = 5)]
    ready_runs: usize,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Keepalive,
    Handshake,
    Both,
    LargeMix,
}

impl ModeArg {
    fn modes(self) -> Vec<Mode> {
        match self {
            ModeArg::Keepalive => vec![Mode::Keepalive],
            ModeArg::Handshake => vec![Mode::Handshake],
            ModeArg::Both => vec![Mode::Keepalive, Mode::Handshake],
            ModeArg::LargeMix => Vec::new(),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("loadbench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen benchmark; `Ok(false)` when requests failed.
fn run(args: Args) -> Result<bool, String> {
    let shape = pods::shape(&args.pod).ok_or_else(|| format!("unknown pod shape {:?}", args.pod))?;
    let pod_bytes = shape.pod_bytes();
    let body = Bytes::from(shape.review_bytes());
    let duration = args.duration.unwrap_or(if args.smoke {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    });
    let client_runtime = runtime(CLIENT_THREADS)?;

    if args.resources {
        let binary = match args.binary {
            Some(binary) => binary,
            None => default_binary()?,
        };
        let options = resources::ResourceOptions {
            binary,
            ready_runs: args.ready_runs,
            connections: args.connections,
            duration,
            body,
        };
        let figures = client_runtime.block_on(resources::measure(&options))?;
        report::print_resources(&figures);
        write_json(
            args.json.as_ref(),
            &serde_json::json!({"pod": args.pod, "pod_bytes": pod_bytes, "resources": figures}),
        )?;
        return Ok(figures.errors == 0 && figures.requests > 0);
    }

    let rounds = args.rounds.unwrap_or(if args.smoke { 1 } else { 2 }).max(1);
    let warmup = args.warmup.unwrap_or(if args.smoke {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    });
    let mut options = ServeOptions::default();
    if let Some(threshold) = args.blocking_threshold_bytes {
        options.blocking_threshold_bytes = threshold;
    }
    let server_runtime = runtime(SERVER_THREADS)?;
    let servers = server_runtime.block_on(Servers::start(InjectConfig::default(), options.clone(), &body))?;
    let connector = client::connector(&servers.ca_pems)?;
    if args.mode == ModeArg::LargeMix {
        let large = pods::shape(&args.large_pod).ok_or_else(|| format!("unknown pod shape {:?}", args.large_pod))?;
        let target = |body: Bytes| {
            Arc::new(Target {
                addr: servers.ours,
                connector: connector.clone(),
                body,
                expect_patch: true,
            })
        };
        let mix = large_mix::LargeMixOptions {
            typical: target(body),
            connections: args.connections,
            large: target(Bytes::from(large.review_bytes())),
            large_rate: args.large_rate,
            duration,
            rounds,
            warmup,
        };
        let figures = client_runtime.block_on(large_mix::measure(&mix));
        server_runtime.block_on(servers.stop());
        let setting = report::LargeMixSetting {
            connections: args.connections,
            pod: &args.pod,
            pod_bytes,
            large_pod: &args.large_pod,
            large_pod_bytes: large.pod_bytes(),
            large_rate: args.large_rate,
            blocking_threshold_bytes: options.blocking_threshold_bytes,
            rounds,
        };
        report::print_large_mix(&setting, &figures);
        write_json(
            args.json.as_ref(),
            &serde_json::json!({"setting": setting, "large_mix": figures}),
        )?;
        let ok = [&figures.quiet, &figures.mixed, &figures.large]
            .iter()
            .all(|phase| phase.errors == 0 && phase.requests > 0);
        if args.smoke {
            println!("smoke: {}", if ok { "ok" } else { "FAILED" });
        }
        return Ok(ok);
    }
    let targets = [
        (
            "baseline",
            Arc::new(Target {
                addr: servers.baseline,
                connector: connector.clone(),
                body: body.clone(),
                expect_patch: false,
            }),
        ),
        (
            "replay",
            Arc::new(Target {
                addr: servers.replay,
                connector: connector.clone(),
                body: body.clone(),
                expect_patch: true,
            }),
        ),
        (
            "injector",
            Arc::new(Target {
                addr: servers.ours,
                connector,
                body,
                expect_patch: true,
            }),
        ),
    ];

    let mut rows = Vec::new();
    for mode in args.mode.modes() {
        // Per server: the summed result, server CPU and client CPU, over alternating rounds.
        let mut totals: Vec<(LoadResult, Duration, Duration)> = (0..targets.len())
            .map(|_| (LoadResult::new(), Duration::ZERO, Duration::ZERO))
            .collect();
        for _ in 0..rounds {
            for ((_, target), total) in targets.iter().zip(totals.iter_mut()) {
                let warm = client_runtime.block_on(client::run_load(
                    target.clone(),
                    mode,
                    args.connections,
                    StopRule::Until(Instant::now() + warmup),
                ));
                total.0.add_errors(warm.errors, warm.error_samples);
                let stop = match args.requests {
                    Some(requests) => StopRule::Budget(Arc::new(AtomicU64::new(requests.div_ceil(rounds.into())))),
                    None => StopRule::Until(Instant::now() + duration / rounds),
                };
                let server_before = procfs::threads_cpu(SERVER_THREADS);
                let client_before = procfs::threads_cpu(CLIENT_THREADS);
                let result = client_runtime.block_on(client::run_load(target.clone(), mode, args.connections, stop));
                total.1 += procfs::threads_cpu(SERVER_THREADS).saturating_sub(server_before);
                total.2 += procfs::threads_cpu(CLIENT_THREADS).saturating_sub(client_before);
                total.0.merge(result);
            }
        }
        for ((name, _), (result, server_cpu, client_cpu)) in targets.iter().zip(totals) {
            for sample in &result.error_samples {
                eprintln!("{} {name}: error: {sample}", mode.as_str());
            }
            rows.push(Row::new(mode, name, &result, server_cpu, client_cpu));
        }
    }
    server_runtime.block_on(servers.stop());

    let ratios = report::print_comparison(&rows, args.connections, &args.pod, pod_bytes, !args.smoke);
    write_json(
        args.json.as_ref(),
        &serde_json::json!({
            "pod": args.pod,
            "pod_bytes": pod_bytes,
            "connections": args.connections,
            "rounds": rounds,
            "rows": rows,
            "ratios": ratios,
        }),
    )?;
    let requests: u64 = rows.iter().map(|r| r.requests).sum();
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    let ok = errors == 0 && rows.iter().all(|r| r.requests > 0);
    if args.smoke {
        println!(
            "smoke: {} ({requests} requests, {errors} errors)",
            if ok { "ok" } else { "FAILED" }
        );
    }
    Ok(ok)
}

/// A multi-thread runtime with two workers, the size of the benchmark machine.
fn runtime(name: &str) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the {name} runtime: {e}"))
}

/// `sidecar-injector` beside the directory this example was built into.
fn default_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    exe.parent()
        .and_then(|examples| examples.parent())
        .map(|profile| profile.join("sidecar-injector"))
        .ok_or_else(|| "cannot find the target directory; pass --binary".into())
}

fn write_json(path: Option<&PathBuf>, value: &serde_json::Value) -> Result<(), String> {
    let Some(path) = path else {
        return Ok(());
    };
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Parses `10s`, `500ms`, `2m` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (examples: 10s, 500ms, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?} has unit {unit:?}; use ms, s or m")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{text:?} must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}
