//! `check -o text`: the report as a terminal table, problems spelled out and passing checks
//! summed up per webhook.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{CheckReport, Status};

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Warn => "WARN",
        Status::Error => "ERROR",
    }
}

impl CheckReport {
    /// A human-readable report.
    pub fn to_text(&self) -> String {
        let mut text = String::from("registration\n");
        let mut passing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for finding in &self.registration {
            if finding.status == Status::Ok && finding.check != "caBundle" && finding.check != "readyz" {
                passing.entry(&finding.subject).or_default().push(finding.check);
                continue;
            }
            let _ = writeln!(
                text,
                "  {:<5} {} {}: {}",
                status_word(finding.status),
                finding.subject,
                finding.check,
                finding.message
            );
        }
        for (subject, checks) in &passing {
            let _ = writeln!(text, "  ok    {subject}: {}", checks.join(", "));
        }
        let width = self.namespaces.iter().map(|n| n.name.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(
            text,
            "\nnamespaces\n  {:<width$}  {:<9}  {:<8}  {:<22}  reason",
            "NAME", "INJECTION", "REVISION", "DECISION"
        );
        for namespace in &self.namespaces {
            let injection = serde_json::to_value(namespace.injection)
                .ok()
                .and_then(|value| value.as_str().map(str::to_string))
                .unwrap_or_default();
            let flag = if namespace.status == Status::Ok { "" } else { "ERROR " };
            let _ = writeln!(
                text,
                "  {:<width$}  {:<9}  {:<8}  {:<22}  {flag}{}",
                namespace.name,
                injection,
                namespace.revision.as_deref().unwrap_or("-"),
                namespace.decision,
                namespace.reason
            );
        }
        let _ = writeln!(
            text,
            "\ndrift ({} of {} pods differ)",
            self.drift.len(),
            self.pods_checked
        );
        for pod in &self.drift {
            let _ = writeln!(text, "  {}/{}", pod.namespace, pod.pod);
            for difference in &pod.differences {
                let _ = writeln!(
                    text,
                    "    {:<24} running {}, expected {} ({})",
                    difference.field, difference.running, difference.expected, difference.source
                );
            }
        }
        let errors = self.registration.iter().filter(|f| f.status == Status::Error).count()
            + self.namespaces.iter().filter(|n| n.status == Status::Error).count();
        let warnings = self.registration.iter().filter(|f| f.status == Status::Warn).count();
        let _ = writeln!(
            text,
            "\n{}: {errors} errors, {warnings} warnings, {} drifted pods",
            if self.healthy { "healthy" } else { "NOT healthy" },
            self.drift.len()
        );
        text
    }
}
