//! `advise` flags and their run: gather from Prometheus, advise, print (and `--apply`).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use sidecar_injector::advise::sizing::{Percentiles, parse_percent, parse_window};
use sidecar_injector::advise::{self, AdviseOptions, apply};
use sidecar_injector::server::options::parse_flag_duration;

use super::{ConfigArg, Failure};

/// Every `advise` failure exits with this status.
const ADVISE_FAILED: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AdviseFormat {
    /// A table per workload with the summed change per namespace.
    Text,
    /// One JSON document.
    Json,
    /// Namespace and pod-template annotations as objects for `kubectl apply --server-side`.
    Yaml,
}

#[derive(Debug, Args)]
pub(crate) struct AdviseArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Base URL of the Prometheus HTTP API (http://HOST:PORT, optionally with a path).
    #[arg(long, env = "SIDECAR_INJECTOR_PROMETHEUS", value_name = "URL")]
    prometheus: String,
    /// How far back to read, as a Prometheus duration.
    #[arg(long, default_value = "7d", value_parser = parse_window, value_name = "DURATION")]
    window: String,
    /// Only this namespace (repeatable); all namespaces when absent.
    #[arg(long = "namespace", short = 'n', value_name = "NS")]
    namespaces: Vec<String>,
    /// Percentile of the per-pod CPU rate that the CPU request covers.
    #[arg(long, default_value = "90", value_parser = |t: &str| parse_percent(t, false, false), value_name = "P")]
    cpu_percentile: u32,
    /// Percentile of the working set (100: the peak) that memory covers, before the margin.
    #[arg(long, default_value = "100", value_parser = |t: &str| parse_percent(t, false, false), value_name = "P")]
    memory_percentile: u32,
    /// Added to the memory percentile.
    #[arg(long, default_value = "15%", value_parser = |t: &str| parse_percent(t, true, true), value_name = "PERCENT")]
    memory_margin: u32,
    /// Fewer CPU or memory samples than this give no recommendation.
    #[arg(long, default_value_t = 100, value_name = "N")]
    min_samples: usize,
    /// How long each Prometheus query may take.
    #[arg(long, default_value = "30s", value_parser = parse_flag_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: AdviseFormat,
    /// Cluster to read namespace annotations and LimitRanges from (profile, bounds, defaults
    /// and LimitRanges then apply as at admission) and, with --apply, to write to.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Write the namespace-level recommendations as namespace annotations, after a diff.
    #[arg(long, requires = "kubeconfig")]
    apply: bool,
    /// With --apply: send the patches as a server-side dry run; nothing is written.
    #[arg(long, requires = "apply")]
    dry_run: bool,
}

fn failed(message: impl ToString) -> Failure {
    Failure {
        message: message.to_string(),
        status: ADVISE_FAILED,
    }
}

/// Runs `advise`.
pub(crate) fn run(args: AdviseArgs) -> Result<(), Failure> {
    let injector = args.config.injector().map_err(failed)?;
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(failed)?
        .as_secs_f64();
    let options = AdviseOptions {
        prometheus: args.prometheus.clone(),
        window: args.window.clone(),
        namespaces: args.namespaces.clone(),
        percentiles: Percentiles {
            cpu: args.cpu_percentile,
            memory: args.memory_percentile,
            memory_margin: args.memory_margin,
        },
        min_samples: args.min_samples,
        timeout: args.timeout,
        at,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(failed)?;
    runtime.block_on(async {
        let gathered = advise::gather(&options).await.map_err(failed)?;
        let client = match &args.kubeconfig {
            Some(path) => Some(apply::client(path).await.map_err(failed)?),
            None => None,
        };
        let namespaces = match &client {
            Some(client) => {
                let names = advise::usage::group_usage(&gathered.cpu, &gathered.memory, &Default::default());
                apply::namespace_facts(client, names.keys().map(String::as_str))
                    .await
                    .map_err(failed)?
            }
            None => Default::default(),
        };
        let advice = advise::advise(&injector, &options, &gathered, &namespaces);
        match args.output {
            AdviseFormat::Text => print!("{}", advice.to_text()),
            AdviseFormat::Json => println!("{}", serde_json::to_string_pretty(&advice.to_json()).map_err(failed)?),
            AdviseFormat::Yaml => print!("{}", advice.to_yaml().map_err(failed)?),
        }
        if let (true, Some(client)) = (args.apply, &client) {
            let shown = apply::apply(client, &advice, args.dry_run).await.map_err(failed)?;
            eprint!("{shown}");
        }
        Ok(())
    })
}
