//! Large reviews beside typical ones: the p99 of typical reviews on N keep-alive connections,
//! alone and while large reviews (3 MiB by default) arrive at a fixed rate, and the ratio.
//!
//! The large reviews arrive open-loop, on a timer, whatever the server's pace, each on a
//! kept-alive connection from a small pool (a new one when all are busy), as the API
//! server's client would send them. Quiet and mixed runs alternate `rounds` times so that
//! noise on the machine falls on both. Only the real webhook is measured here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::client::{self, LoadResult, Mode, StopRule, Target};
use crate::report::Quantiles;

/// What to run.
pub struct LargeMixOptions {
    /// Typical reviews: where, what, and on how many keep-alive connections.
    pub typical: Arc<Target>,
    /// Keep-alive connections sending typical reviews.
    pub connections: usize,
    /// The large reviews' target (same server, the large body).
    pub large: Arc<Target>,
    /// Large reviews per second.
    pub large_rate: f64,
    /// Measured time per phase, summed over rounds.
    pub duration: Duration,
    /// Quiet/mixed alternations.
    pub rounds: u32,
    /// Unmeasured load before each measured run.
    pub warmup: Duration,
}

/// Latency figures of one kind of review, milliseconds.
#[derive(Debug, Serialize)]
pub struct Latencies {
    /// Answered reviews.
    pub requests: u64,
    /// Failed reviews (connect, TLS, HTTP or a wrong answer).
    pub errors: u64,
    /// Answered reviews per second of measured time.
    pub throughput: f64,
    /// Latency quantiles and maximum.
    #[serde(flatten)]
    pub latency: Quantiles,
    /// The first few distinct error messages.
    pub error_samples: Vec<String>,
}

impl Latencies {
    fn of(result: &LoadResult) -> Self {
        Latencies {
            requests: result.requests,
            errors: result.errors,
            throughput: result.throughput(),
            latency: Quantiles::of(result),
            error_samples: result.error_samples.clone(),
        }
    }
}

/// What the mode measured.
#[derive(Debug, Serialize)]
pub struct LargeMixFigures {
    /// Typical reviews with no large ones.
    pub quiet: Latencies,
    /// Typical reviews while the large ones arrive.
    pub mixed: Latencies,
    /// The large reviews themselves.
    pub large: Latencies,
    /// Mixed p99 ÷ quiet p99 of the typical reviews.
    pub p99_ratio: f64,
    /// Mixed p50 ÷ quiet p50 of the typical reviews.
    pub p50_ratio: f64,
}

/// Runs the quiet and mixed phases, alternating, and sums each phase over the rounds.
pub async fn measure(options: &LargeMixOptions) -> LargeMixFigures {
    let rounds = options.rounds.max(1);
    let phase = options.duration / rounds;
    let (mut quiet, mut mixed, mut large) = (LoadResult::new(), LoadResult::new(), LoadResult::new());
    for _ in 0..rounds {
        let warm = typical_load(options, options.warmup).await;
        quiet.add_errors(warm.errors, warm.error_samples);
        quiet.merge(typical_load(options, phase).await);

        let until = Instant::now() + options.warmup;
        let (warm, warm_large) = tokio::join!(
            typical_load(options, options.warmup),
            large_arrivals(&options.large, options.large_rate, until)
        );
        mixed.add_errors(warm.errors, warm.error_samples);
        large.add_errors(warm_large.errors, warm_large.error_samples);
        let until = Instant::now() + phase;
        let (typical, arrivals) = tokio::join!(
            typical_load(options, phase),
            large_arrivals(&options.large, options.large_rate, until)
        );
        mixed.merge(typical);
        large.merge(arrivals);
    }
    let (quiet, mixed, large) = (Latencies::of(&quiet), Latencies::of(&mixed), Latencies::of(&large));
    LargeMixFigures {
        p99_ratio: mixed.latency.p99_ms / quiet.latency.p99_ms.max(1e-9),
        p50_ratio: mixed.latency.p50_ms / quiet.latency.p50_ms.max(1e-9),
        quiet,
        mixed,
        large,
    }
}

/// Typical reviews on `connections` keep-alive connections for `length`.
async fn typical_load(options: &LargeMixOptions, length: Duration) -> LoadResult {
    client::run_load(
        options.typical.clone(),
        Mode::Keepalive,
        options.connections,
        StopRule::Until(Instant::now() + length),
    )
    .await
}

type Pool = Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>>;

/// Starts a large review every `1 / rate` seconds until `until`, and waits for them all.
async fn large_arrivals(target: &Arc<Target>, rate: f64, until: Instant) -> LoadResult {
    let started = Instant::now();
    let mut result = LoadResult::new();
    let pool: Pool = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut in_flight = JoinSet::new();
    loop {
        ticker.tick().await;
        if Instant::now() >= until {
            break;
        }
        in_flight.spawn(one_large(target.clone(), pool.clone()));
    }
    while let Some(joined) = in_flight.join_next().await {
        match joined {
            Ok(Ok(latency)) => result.record(latency),
            Ok(Err(error)) => result.add_errors(1, vec![error]),
            Err(error) => result.add_errors(1, vec![format!("large review task failed: {error}")]),
        }
    }
    result.elapsed = started.elapsed();
    result
}

/// One large review on a pooled connection (or a new one); its latency from sending.
async fn one_large(target: Arc<Target>, pool: Pool) -> Result<Duration, String> {
    let reused = pool.lock().ok().and_then(|mut idle| idle.pop());
    let mut sender = match reused {
        Some(sender) => sender,
        None => client::connect(&target).await?,
    };
    let started = Instant::now();
    client::post(&mut sender, &target, true, false).await?;
    let latency = started.elapsed();
    if let Ok(mut idle) = pool.lock() {
        idle.push(sender);
    }
    Ok(latency)
}
