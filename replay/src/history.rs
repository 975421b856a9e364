//! What a replay said when it ended, and the ledger of every replay as a table.

use islets_core::store::Archive;

use crate::config::{parse_store, usage};
use crate::error::Result;
use crate::execute::STORE_TIMEOUT;
use crate::ledger;
use crate::ledger::LedgerEntry;

/// The final summary as text.
pub fn summary(entry: &LedgerEntry) -> String {
    let Some(outcome) = &entry.outcome else {
        return format!("replay {}: {}", entry.replay_id, entry.status);
    };
    let mut text = format!(
        "replay {} {}: sent {}, failed {}, skipped {} (already delivered {}, no target {}), {:.1} s, {:.0} events/s",
        entry.replay_id,
        entry.status,
        outcome.sent,
        outcome.failed,
        outcome.skipped_done + outcome.skipped_unsendable,
        outcome.skipped_done,
        outcome.skipped_unsendable,
        outcome.seconds,
        outcome.rate()
    );
    if outcome.combined_markers + outcome.without_markers > 0 {
        text.push_str(&format!(
            "\n  markers: {} with the combined `replay` attribute, {} without markers (their originals use all 10 attributes)",
            outcome.combined_markers, outcome.without_markers
        ));
    }
    for (id, why) in outcome.failed_ids.iter().take(10) {
        text.push_str(&format!("\n  failed {id}: {why}"));
    }
    if let Some(refused) = &outcome.refused {
        text.push_str(&format!("\n  the target refused the replay: {refused}"));
    }
    text
}

/// `islets-replay history`: the ledger as a table.
pub async fn print_history(store: &str) -> Result<()> {
    let location = parse_store(store)?;
    let aws = if location.is_s3() {
        Some(islets_core::aws::load_sdk_config().await)
    } else {
        None
    };
    let archive = Archive::open(&location, aws.as_ref())
        .map_err(|error| usage(format!("--store {store}: {error}")))?;
    archive
        .check_reachable(STORE_TIMEOUT)
        .await
        .map_err(|error| usage(format!("--store {store}: cannot read it: {error}")))?;
    let entries = ledger::history(&archive).await?;
    if entries.is_empty() {
        println!("no replays recorded in {store}");
        return Ok(());
    }
    println!(
        "{:<24} {:<26} {:<12} {:<24} {:>8} {:>7}  target / reason",
        "started", "replay id", "operator", "status", "sent", "failed"
    );
    for entry in entries {
        let (sent, failed) = entry
            .outcome
            .as_ref()
            .map_or((0, 0), |outcome| (outcome.sent, outcome.failed));
        println!(
            "{:<24} {:<26} {:<12} {:<24} {:>8} {:>7}  {} / {}",
            entry.started_at,
            entry.replay_id,
            entry.operator,
            if entry.resumed {
                format!("{} (resumed)", entry.status)
            } else {
                entry.status.clone()
            },
            sent,
            failed,
            entry.target,
            entry.reason
        );
    }
    Ok(())
}
