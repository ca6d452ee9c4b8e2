//! What a scenario returns, and the small vocabulary scenarios check things with.
//!
//! A scenario is `async fn(&Harness) -> Outcome`: `Ok` carries a one-line note for the
//! results table, `Err` says what was wrong. [`ensure!`] fails with a message, [`Context`]
//! turns any error into one, and [`eventually`] polls with a bounded number of tries for
//! things the API server applies asynchronously (a new webhook configuration).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// A scenario's result: a note for the table, or what went wrong.
pub type Outcome = Result<String, String>;

/// Fails the scenario with a formatted message unless the condition holds.
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}
pub(crate) use ensure;

/// Adds what was being done to an error, as `anyhow::Context` would, without the dependency.
pub trait Context<T> {
    /// Prefixes the error with `what`.
    fn context(self, what: impl Display) -> Result<T, String>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, what: impl Display) -> Result<T, String> {
        self.map_err(|error| format!("{what}: {error}"))
    }
}

/// The pause between two polls.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Tries [`eventually`] makes: 10 s in all, ample for a change to reach the API server's caches.
const POLL_TRIES: u32 = 200;

/// Calls `probe` until it succeeds, at most 200 times 50 ms apart; the last error otherwise.
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    poll(what, POLL_TRIES, probe).await
}

/// Calls `probe` until it succeeds, at most `tries` times 50 ms apart; the last error otherwise.
pub async fn poll<T, F, Fut>(what: &str, tries: u32, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    for _ in 0..tries {
        match probe().await {
            Ok(value) => return Ok(value),
            Err(error) => last = error,
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(format!("{what}: still not so after {tries} tries: {last}"))
}
