//! The results table: one row per scenario with its result, time and note.
//!
//! Scenarios run one after another (the `/metrics` counters some of them read must not be
//! moved by another scenario's pods). Each is bounded by [`SCENARIO_LIMIT`], so a hang shows
//! up as a failed row, not as a stuck test.
//!
//! `SIDECAR_INJECTOR_E2E_ONLY=17,18` runs only those scenarios while developing one; the table
//! then says how many were left out, and the run fails, so a filtered run never passes as
//! the full suite (`.ci/run` never sets it).

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
    left_out: Vec<u8>,
}

/// The scenario numbers named by `SIDECAR_INJECTOR_E2E_ONLY`, when it is set.
fn only_these() -> Option<Vec<u8>> {
    let value = std::env::var("SIDECAR_INJECTOR_E2E_ONLY").ok()?;
    Some(
        value
            .split(',')
            .filter_map(|number| number.trim().parse().ok())
            .collect(),
    )
}

// === impl Report ===

impl Report {
    /// Runs one scenario, timing it, and prints its row as soon as it is known.
    pub async fn run(&mut self, number: u8, name: &'static str, scenario: impl Future<Output = Outcome>) {
        if only_these().is_some_and(|only| !only.contains(&number)) {
            self.left_out.push(number);
            return;
        }
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
        self.rows.iter().any(|row| row.outcome.is_err()) || !self.left_out.is_empty()
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
        if !self.left_out.is_empty() {
            text.push_str(&format!(
                "{} scenarios left out by SIDECAR_INJECTOR_E2E_ONLY: {:?}; the run counts as failed\n",
                self.left_out.len(),
                self.left_out
            ));
        }
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
