//! The results table: one row per scenario with its result, time and note.
//!
//! Scenarios run one after another (the `/metrics` counters some of them read must not be
//! moved by another scenario's pods). Each is bounded by [`SCENARIO_LIMIT`], so a hang shows
//! up as a failed row, not as a stuck test.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::check::Outcome;

/// The most one scenario may take; they take well under a second to a few seconds.
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

struct Row {
    number: u8,
    name: &'static str,
    outcome: Outcome,
    elapsed: Duration,
}

/// The scenarios run so far.
#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
}

// === impl Report ===

impl Report {
    /// Runs one scenario, timing it, and prints its row as soon as it is known.
    pub async fn run(&mut self, number: u8, name: &'static str, scenario: impl Future<Output = Outcome>) {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(SCENARIO_LIMIT, scenario).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("did not finish within {} s", SCENARIO_LIMIT.as_secs())),
        };
        let row = Row {
            number,
            name,
            outcome,
            elapsed: started.elapsed(),
        };
        eprintln!("{}", line(&row));
        self.rows.push(row);
    }

    /// Whether any scenario failed.
    pub fn failed(&self) -> bool {
        self.rows.iter().any(|row| row.outcome.is_err())
    }

    /// The table, with how long the whole run took.
    pub fn table(&self, setup: Duration, total: Duration) -> String {
        let mut text = String::from("\n=== e2e scenarios against a real kube-apiserver\n");
        for row in &self.rows {
            text.push_str(&line(row));
            text.push('\n');
        }
        let passed = self.rows.iter().filter(|row| row.outcome.is_ok()).count();
        text.push_str(&format!(
            "{passed} passed, {} failed; setup {:.1} s, e2e wall time {:.1} s\n",
            self.rows.len() - passed,
            setup.as_secs_f64(),
            total.as_secs_f64()
        ));
        text
    }
}

fn line(row: &Row) -> String {
    let (result, note) = match &row.outcome {
        Ok(note) => ("PASS", note.as_str()),
        Err(reason) => ("FAIL", reason.as_str()),
    };
    format!(
        "{:>2}  {result}  {:>6.2} s  {:<38} {note}",
        row.number,
        row.elapsed.as_secs_f64(),
        row.name
    )
}
