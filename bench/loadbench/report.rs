//! The load benchmark's figures: one row per mode and server, printed as a table and kept
//! for the JSON file that bench/run.sh turns into RESULTS.md.

use std::time::Duration;

use serde::Serialize;

use crate::client::{LoadResult, Mode};
use crate::large_mix::{LargeMixFigures, Latencies};
use crate::resources::ResourceFigures;

/// Target from issue 6: our throughput at least this share of the baseline's.
const THROUGHPUT_TARGET: f64 = 0.8;
/// Target from issue 6: p99 under this many milliseconds with 16 keep-alive connections.
const P99_TARGET_MS: f64 = 5.0;
/// Target from issue 6: RSS under load below this many MiB.
const RSS_TARGET_MIB: f64 = 30.0;
/// Target from issue 6: ready within this many milliseconds of start.
const READY_TARGET_MS: f64 = 100.0;

/// Latency quantiles and maximum of a run, milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Quantiles {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Quantiles {
    /// The quantiles of a run's histogram.
    pub fn of(result: &LoadResult) -> Self {
        Quantiles {
            p50_ms: result.quantile_ms(0.50),
            p90_ms: result.quantile_ms(0.90),
            p99_ms: result.quantile_ms(0.99),
            p999_ms: result.quantile_ms(0.999),
            max_ms: result.histogram.max() as f64 / 1000.0,
        }
    }
}

/// One server under one mode.
#[derive(Debug, Serialize)]
pub struct Row {
    /// `keepalive` or `handshake`.
    pub mode: &'static str,
    /// `baseline`, `replay` or `injector`.
    pub server: &'static str,
    /// Successful requests.
    pub requests: u64,
    /// Failed requests, warm-up included.
    pub errors: u64,
    /// Measured wall time.
    pub seconds: f64,
    /// Successful requests per second.
    pub throughput: f64,
    /// Latency quantiles and maximum.
    #[serde(flatten)]
    pub latency: Quantiles,
    /// CPU time of the server runtime's threads per request, microseconds.
    pub server_cpu_us_per_request: f64,
    /// CPU time of the client runtime's threads per request, microseconds.
    pub client_cpu_us_per_request: f64,
}

// === impl Row ===

impl Row {
    /// Summarises one server's summed runs under one mode.
    pub fn new(
        mode: Mode,
        server: &'static str,
        result: &LoadResult,
        server_cpu: Duration,
        client_cpu: Duration,
    ) -> Self {
        let per_request = |cpu: Duration| cpu.as_secs_f64() * 1e6 / result.requests.max(1) as f64;
        Row {
            mode: mode.as_str(),
            server,
            requests: result.requests,
            errors: result.errors,
            seconds: result.elapsed.as_secs_f64(),
            throughput: result.throughput(),
            latency: Quantiles::of(result),
            server_cpu_us_per_request: per_request(server_cpu),
            client_cpu_us_per_request: per_request(client_cpu),
        }
    }
}

/// Our throughput over the baseline's, per mode.
#[derive(Debug, Serialize)]
pub struct Ratio {
    /// `keepalive` or `handshake`.
    pub mode: &'static str,
    /// Injector req/s ÷ baseline req/s.
    pub throughput_ratio: f64,
    /// Injector server CPU per request ÷ the baseline's.
    pub server_cpu_ratio: f64,
    /// Replay req/s ÷ baseline req/s: the most the injector could reach with an engine that
    /// cost nothing, its answer carried as it is.
    pub replay_throughput_ratio: Option<f64>,
    /// Injector req/s ÷ replay req/s: the engine's own share.
    pub injector_over_replay: Option<f64>,
}

/// Prints the comparison table and the ratios, and returns the ratios; `judge` adds the
/// verdicts against issue 6's targets (off for smoke runs, whose figures mean nothing).
pub fn print_comparison(rows: &[Row], connections: usize, pod: &str, pod_bytes: usize, judge: bool) -> Vec<Ratio> {
    println!("\nload: {connections} connections, pod {pod} ({pod_bytes} bytes), HTTP/1.1 over TLS 1.3 on loopback");
    println!(
        "{:<10} {:<9} {:>9} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "mode",
        "server",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "srv µs/req",
        "cli µs/req"
    );
    for row in rows {
        println!(
            "{:<10} {:<9} {:>9} {:>6} {:>10.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>10.1} {:>10.1}",
            row.mode,
            row.server,
            row.requests,
            row.errors,
            row.throughput,
            row.latency.p50_ms,
            row.latency.p90_ms,
            row.latency.p99_ms,
            row.latency.p999_ms,
            row.latency.max_ms,
            row.server_cpu_us_per_request,
            row.client_cpu_us_per_request
        );
    }
    let mut ratios = Vec::new();
    for mode in [Mode::Keepalive, Mode::Handshake] {
        let find = |server: &str| rows.iter().find(|r| r.mode == mode.as_str() && r.server == server);
        let (Some(ours), Some(baseline)) = (find("injector"), find("baseline")) else {
            continue;
        };
        let replay = find("replay");
        let ratio = Ratio {
            mode: mode.as_str(),
            throughput_ratio: ours.throughput / baseline.throughput.max(1e-9),
            server_cpu_ratio: ours.server_cpu_us_per_request / baseline.server_cpu_us_per_request.max(1e-9),
            replay_throughput_ratio: replay.map(|replay| replay.throughput / baseline.throughput.max(1e-9)),
            injector_over_replay: replay.map(|replay| ours.throughput / replay.throughput.max(1e-9)),
        };
        println!(
            "{}: injector throughput = {:.2}× baseline; server CPU per request = {:.2}× baseline",
            mode.as_str(),
            ratio.throughput_ratio,
            ratio.server_cpu_ratio
        );
        if let (Some(replayed), Some(engine)) = (ratio.replay_throughput_ratio, ratio.injector_over_replay) {
            println!(
                "{}: replay (same answer, no engine) throughput = {replayed:.2}× baseline; injector = {engine:.2}× replay",
                mode.as_str()
            );
        }
        if judge {
            println!(
                "{}: throughput target ≥ {THROUGHPUT_TARGET}× baseline: {}",
                mode.as_str(),
                verdict(ratio.throughput_ratio >= THROUGHPUT_TARGET)
            );
        }
        if judge && mode == Mode::Keepalive {
            println!(
                "keepalive: injector p99 = {:.3} ms (target < {P99_TARGET_MS} ms: {})",
                ours.latency.p99_ms,
                verdict(ours.latency.p99_ms < P99_TARGET_MS)
            );
        }
        ratios.push(ratio);
    }
    ratios
}

/// How a large-mix run was set up, for the table and the JSON file.
#[derive(Debug, Serialize)]
pub struct LargeMixSetting<'a> {
    /// Keep-alive connections sending typical reviews.
    pub connections: usize,
    /// The typical pod shape and its size.
    pub pod: &'a str,
    pub pod_bytes: usize,
    /// The large pod shape and its size.
    pub large_pod: &'a str,
    pub large_pod_bytes: usize,
    /// Large reviews per second.
    pub large_rate: f64,
    /// The webhook's blocking threshold in this run.
    pub blocking_threshold_bytes: usize,
    /// Quiet/mixed alternations.
    pub rounds: u32,
}

/// Prints the typical reviews' latencies, quiet and mixed, the large ones', and the ratio.
pub fn print_large_mix(setting: &LargeMixSetting<'_>, figures: &LargeMixFigures) {
    println!(
        "\nlarge-mix: pod {} ({} bytes) on {} keep-alive connections; {} ({} bytes) at {}/s; blocking threshold {} bytes; {} rounds",
        setting.pod,
        setting.pod_bytes,
        setting.connections,
        setting.large_pod,
        setting.large_pod_bytes,
        setting.large_rate,
        setting.blocking_threshold_bytes,
        setting.rounds
    );
    println!(
        "{:<22} {:>9} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "reviews", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (name, phase) in [
        ("typical, quiet", &figures.quiet),
        ("typical, with large", &figures.mixed),
        ("large", &figures.large),
    ] {
        print_latencies(name, phase);
    }
    println!(
        "typical p99 with large reviews = {:.2}× quiet ({:.3} ms vs {:.3} ms); p50 = {:.2}×",
        figures.p99_ratio, figures.mixed.latency.p99_ms, figures.quiet.latency.p99_ms, figures.p50_ratio
    );
}

fn print_latencies(name: &str, phase: &Latencies) {
    println!(
        "{:<22} {:>9} {:>6} {:>10.1} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
        name,
        phase.requests,
        phase.errors,
        phase.throughput,
        phase.latency.p50_ms,
        phase.latency.p90_ms,
        phase.latency.p99_ms,
        phase.latency.p999_ms,
        phase.latency.max_ms
    );
    for sample in &phase.error_samples {
        eprintln!("{name}: error: {sample}");
    }
}

/// Prints the child-process figures against their targets.
pub fn print_resources(figures: &ResourceFigures) {
    let mut ready = figures.ready_ms.clone();
    ready.sort_by(f64::total_cmp);
    let median = ready.get(ready.len() / 2).copied().unwrap_or(f64::NAN);
    let worst = ready.last().copied().unwrap_or(f64::NAN);
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("\nresources of target/release/sidecar-injector serve (child process, logging at info to a file):");
    println!(
        "ready after start: median {median:.1} ms, worst {worst:.1} ms over {} starts (target < {READY_TARGET_MS} ms: {})",
        ready.len(),
        verdict(worst < READY_TARGET_MS)
    );
    println!("RSS idle: {:.1} MiB", mib(figures.rss_idle_kib));
    println!(
        "RSS under load ({} connections): max {:.1} MiB, peak (VmHWM) {:.1} MiB (target < {RSS_TARGET_MIB} MiB: {})",
        figures.connections,
        mib(figures.rss_load_max_kib),
        mib(figures.rss_peak_kib),
        verdict(mib(figures.rss_peak_kib) < RSS_TARGET_MIB)
    );
    println!("RSS after load: {:.1} MiB", mib(figures.rss_after_kib));
    println!(
        "CPU: {:.1} ms per 1,000 reviews ({:.2} cores at {:.0} reviews/s, {} reviews, {} errors)",
        figures.cpu_ms_per_1000, figures.cpu_cores, figures.throughput, figures.requests, figures.errors
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}
