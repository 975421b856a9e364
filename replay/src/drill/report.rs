//! The drill's report, for an auditor: Markdown on stdout and in `--report FILE`, the same
//! figures as JSON beside it (`FILE.json`).

use std::path::Path;

use serde::Serialize;

use crate::error::{ReplayError, Result};
use crate::selection::Selection;

/// Ids listed per problem kind in the Markdown report (the JSON report lists all).
const IDS_LISTED: usize = 100;

/// What the drill found.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// The drill's id: every message it sent carries it.
    pub drill_id: String,
    /// Every selected event arrived intact, nothing else arrived, nothing failed to send.
    pub passed: bool,
    /// Who ran it (`--operator`).
    pub operator: String,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// When it finished (RFC 3339, UTC).
    pub finished_at: String,
    /// The archive, as given.
    pub store: String,
    /// What was replayed.
    pub selection: Selection,
    /// The topic published to.
    pub topic_arn: String,
    /// The queue drained.
    pub queue_url: String,
    /// Whether the topic and queue were the drill's scratch ones (removed afterwards).
    pub scratch_infrastructure: bool,
    /// SHA-256 of the selected id set (the plan's hash).
    pub id_set_sha256: String,
    /// Events selected.
    pub selected: u64,
    /// Events sent.
    pub sent: u64,
    /// Events that could not be sent.
    pub send_failures: u64,
    /// Messages of this drill received from the queue.
    pub received: u64,
    /// Selected events that arrived byte-identical (payload and attributes).
    pub intact: u64,
    /// Selected events that never arrived.
    pub missing: Vec<String>,
    /// Selected events that arrived with other bytes.
    pub altered: Vec<String>,
    /// Messages of this drill that match no selected event.
    pub extra: u64,
    /// Exact repeats of events that had already arrived intact.
    pub duplicates: u64,
    /// From the first send to the last send, in seconds.
    pub send_seconds: f64,
    /// From the first send to the last event received.
    pub restore_seconds: f64,
    /// Intact events per second of restore time.
    pub events_per_second: f64,
    /// The islets-replay version that ran the drill.
    pub version: String,
}

impl DrillReport {
    /// The exit status: 0 passed, 1 failed.
    pub fn exit_code(&self) -> u8 {
        if self.passed { 0 } else { 1 }
    }

    /// Writes the Markdown report to `path` and the JSON report beside it (`.json`).
    pub(super) fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, markdown(self))
            .map_err(ReplayError::io(format!("--report {}", path.display())))?;
        let json_path = path.with_extension("json");
        let json = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(&json_path, json + "\n")
            .map_err(ReplayError::io(format!("--report {}", json_path.display())))
    }
}

/// The report as Markdown: a table of the figures, then the ids missing and altered.
pub(super) fn markdown(report: &DrillReport) -> String {
    let verdict = if report.passed { "PASS" } else { "FAIL" };
    let mut text = format!("# Recovery drill {} — {verdict}\n\n", report.drill_id);
    text.push_str("| | |\n|---|---|\n");
    for (key, value) in [
        ("Run by", report.operator.clone()),
        ("Started", report.started_at.clone()),
        ("Finished", report.finished_at.clone()),
        ("Archive", report.store.clone()),
        (
            "Selection",
            serde_json::to_string(&report.selection).unwrap_or_default(),
        ),
        (
            "Selected id set",
            format!("sha256:{}", report.id_set_sha256),
        ),
        (
            "Replayed to",
            format!(
                "{} → {}{}",
                report.topic_arn,
                report.queue_url,
                if report.scratch_infrastructure {
                    " (scratch, removed)"
                } else {
                    ""
                }
            ),
        ),
        ("Events selected", report.selected.to_string()),
        ("Sent", report.sent.to_string()),
        ("Send failures", report.send_failures.to_string()),
        ("Received", report.received.to_string()),
        (
            "Arrived intact (payload and attributes byte-identical)",
            report.intact.to_string(),
        ),
        ("Missing", report.missing.len().to_string()),
        ("Altered", report.altered.len().to_string()),
        ("Extra (not in the selection)", report.extra.to_string()),
        (
            "Repeats (at-least-once delivery; not a failure)",
            report.duplicates.to_string(),
        ),
        ("Time to send", format!("{:.1} s", report.send_seconds)),
        (
            "Time to restore (first send → last arrival)",
            format!("{:.1} s", report.restore_seconds),
        ),
        (
            "Throughput",
            format!("{:.0} events/s", report.events_per_second),
        ),
        ("islets-replay", report.version.clone()),
    ] {
        text.push_str(&format!("| {key} | {} |\n", value.replace('|', "\\|")));
    }
    for (title, ids) in [("Missing", &report.missing), ("Altered", &report.altered)] {
        if ids.is_empty() {
            continue;
        }
        text.push_str(&format!("\n## {title} event ids\n\n"));
        for id in ids.iter().take(IDS_LISTED) {
            text.push_str(&format!("- `{id}`\n"));
        }
        if ids.len() > IDS_LISTED {
            text.push_str(&format!(
                "- … and {} more (see the JSON report)\n",
                ids.len() - IDS_LISTED
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(passed: bool, missing: usize) -> DrillReport {
        DrillReport {
            drill_id: "D1".to_owned(),
            passed,
            operator: "auditor | ops".to_owned(),
            started_at: "2026-12-01T10:00:00.000Z".to_owned(),
            finished_at: "2026-12-01T10:01:00.000Z".to_owned(),
            store: "s3://audit/islets".to_owned(),
            selection: Selection::default(),
            topic_arn: "arn:aws:sns:us-east-1:000000000000:islets-drill-d1".to_owned(),
            queue_url: "http://localhost/000000000000/islets-drill-d1".to_owned(),
            scratch_infrastructure: true,
            id_set_sha256: "ab".repeat(32),
            selected: 500,
            sent: 500,
            send_failures: 0,
            received: 500 - missing as u64,
            intact: 500 - missing as u64,
            missing: (0..missing).map(|n| format!("event-{n:04}")).collect(),
            altered: Vec::new(),
            extra: 0,
            duplicates: 2,
            send_seconds: 1.5,
            restore_seconds: 2.0,
            events_per_second: 250.0,
            version: "0.1.0".to_owned(),
        }
    }

    #[test]
    fn the_markdown_says_the_verdict_and_every_figure() {
        let text = markdown(&report(true, 0));
        assert!(text.starts_with("# Recovery drill D1 — PASS\n"), "{text}");
        assert!(text.contains("| Events selected | 500 |"), "{text}");
        assert!(text.contains("| Repeats (at-least-once delivery; not a failure) | 2 |"));
        assert!(text.contains("(scratch, removed)"));
        assert!(text.contains(&format!("sha256:{}", "ab".repeat(32))));
        // A pipe in a value does not break the table.
        assert!(text.contains("| Run by | auditor \\| ops |"), "{text}");
        assert!(!text.contains("## Missing"), "nothing missing, no list");
        assert_eq!(report(true, 0).exit_code(), 0);
    }

    #[test]
    fn a_failed_drill_lists_the_first_ids_and_counts_the_rest() {
        let failed = report(false, IDS_LISTED + 7);
        let text = markdown(&failed);
        assert!(text.starts_with("# Recovery drill D1 — FAIL\n"));
        assert!(text.contains("## Missing event ids"));
        assert!(text.contains("- `event-0000`"));
        assert!(text.contains(&format!("- `event-{:04}`", IDS_LISTED - 1)));
        assert!(!text.contains(&format!("- `event-{IDS_LISTED:04}`")));
        assert!(text.contains("- … and 7 more (see the JSON report)"));
        assert_eq!(failed.exit_code(), 1);
    }

    #[test]
    fn the_json_report_lies_beside_the_markdown_and_lists_every_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("drill.md");
        let failed = report(false, IDS_LISTED + 7);
        failed.write(&path).expect("written");
        let markdown_text = std::fs::read_to_string(&path).expect("markdown");
        assert_eq!(markdown_text, markdown(&failed));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("drill.json")).expect("json"))
                .expect("valid JSON");
        assert_eq!(
            json["missing"].as_array().map(Vec::len),
            Some(IDS_LISTED + 7)
        );
        assert_eq!(json["passed"], false);
        assert_eq!(json["duplicates"], 2);
        // An unwritable place is an error naming the flag.
        let error = failed
            .write(&dir.path().join("no/such/dir/drill.md"))
            .expect_err("no such directory");
        assert!(error.to_string().contains("--report"), "{error}");
    }
}
