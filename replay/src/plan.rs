//! The plan of a replay: what would be sent where, computed by reading the selection once
//! and sending nothing. `--plan-out` saves it; `--plan` executes exactly it, refusing when
//! the selection no longer hashes the same.

use std::collections::BTreeMap;
use std::path::Path;

use futures::TryStreamExt;
use islets_query::QueryEngine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ReplayError, Result};
use crate::selection::Selection;
use crate::target::TargetSpec;

/// Version of the plan file format.
/// 2: the set hash covers each event's payload hash, not only its id.
pub(crate) const PLAN_VERSION: u32 = 2;
/// How `unsendable` names events whose aggregate has no catalog topic (`--to-original`).
pub(crate) const NO_TOPIC: &str = "no topic ";
/// Event ids shown as a sample.
const SAMPLE_IDS: usize = 5;

/// What a replay would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The plan format's version.
    pub version: u32,
    /// When the plan was made (RFC 3339, UTC).
    pub created_at: String,
    /// The archive, as given.
    pub store: String,
    /// What to replay.
    pub selection: Selection,
    /// `None`: a dry run without a target.
    pub target: Option<TargetSpec>,
    /// Distinct events selected.
    pub events: u64,
    /// Events per aggregate.
    pub by_aggregate: BTreeMap<String, u64>,
    /// Events per event type.
    pub by_event_type: BTreeMap<String, u64>,
    /// Events per destination (topic ARN, queue URL, file).
    pub by_target: BTreeMap<String, u64>,
    /// Events that cannot go to the target, by reason (e.g. no original topic).
    pub unsendable: BTreeMap<String, u64>,
    /// The earliest `published_at` selected.
    pub first_published_at: Option<String>,
    /// The latest `published_at` selected.
    pub last_published_at: Option<String>,
    /// `--rate`, events per second, if any.
    pub rate: Option<f64>,
    /// At the chosen rate; `None` without `--rate` (as fast as the target accepts).
    pub estimated_seconds: Option<f64>,
    /// A few selected ids, to check by eye.
    pub sample_event_ids: Vec<String>,
    /// SHA-256 of the selected events: `event_id` TAB sha256(payload), sorted, one per
    /// line. A plan executes only while the archive still selects exactly these payloads.
    pub id_set_sha256: String,
}

impl Plan {
    /// What a checkpoint binds: the selection's set hash and the resolved target, so a
    /// checkpoint cannot resume a replay of the same events to somewhere else.
    pub fn binding(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.id_set_sha256.as_bytes());
        hasher.update(b"\n");
        if let Some(target) = &self.target {
            hasher.update(serde_json::to_string(target).unwrap_or_default().as_bytes());
        }
        hex(&hasher.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// One line of the set hash: the id and the SHA-256 of the payload.
pub(crate) fn event_line(event_id: &str, payload: &str) -> String {
    format!("{event_id}\t{}", hex(&Sha256::digest(payload.as_bytes())))
}

/// SHA-256 of a set of ids: sorted, each followed by a newline.
pub(crate) fn id_set_hash(ids: &mut [String]) -> String {
    ids.sort_unstable();
    let mut hasher = Sha256::new();
    for id in ids.iter() {
        hasher.update(id.as_bytes());
        hasher.update(b"\n");
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Reads the selection once and plans it.
pub(crate) async fn make_plan(
    engine: &dyn QueryEngine,
    store: &str,
    selection: &Selection,
    target: Option<&TargetSpec>,
    rate: Option<f64>,
) -> Result<Plan> {
    let mut events = selection.events(engine).await?;
    let mut ids = Vec::new();
    let mut lines = Vec::new();
    let mut by_aggregate = BTreeMap::new();
    let mut by_event_type = BTreeMap::new();
    let mut by_target = BTreeMap::new();
    let mut unsendable = BTreeMap::new();
    let mut first = None;
    let mut last = None;
    while let Some(event) = events.try_next().await.map_err(ReplayError::Query)? {
        let aggregate = event
            .aggregate
            .clone()
            .unwrap_or_else(|| "(none)".to_owned());
        let event_type = format!(
            "{aggregate}.{}",
            event.event_type.as_deref().unwrap_or("(none)")
        );
        *by_aggregate.entry(aggregate).or_insert(0) += 1;
        *by_event_type.entry(event_type).or_insert(0) += 1;
        if let Some(target) = target {
            let destination = match target {
                TargetSpec::Original { topics } => event
                    .aggregate
                    .as_ref()
                    .and_then(|aggregate| topics.get(aggregate))
                    .cloned(),
                other => other.destination_name(),
            };
            match destination {
                Some(destination) => *by_target.entry(destination).or_insert(0) += 1,
                None => {
                    *unsendable
                        .entry(format!(
                            "{NO_TOPIC}{}-events in this account and region",
                            event.aggregate.as_deref().unwrap_or("(no aggregate)")
                        ))
                        .or_insert(0) += 1
                }
            }
        }
        first.get_or_insert(event.published_at_ms);
        last = Some(event.published_at_ms);
        lines.push(event_line(&event.event_id, &event.payload));
        ids.push(event.event_id);
    }
    let sample_event_ids = ids.iter().take(SAMPLE_IDS).cloned().collect();
    let count = ids.len() as u64;
    Ok(Plan {
        version: PLAN_VERSION,
        created_at: islets_query::rfc3339_ms(chrono::Utc::now().timestamp_millis()),
        store: store.to_owned(),
        selection: selection.clone(),
        target: target.cloned(),
        events: count,
        by_aggregate,
        by_event_type,
        by_target,
        unsendable,
        first_published_at: first.map(islets_query::rfc3339_ms),
        last_published_at: last.map(islets_query::rfc3339_ms),
        rate,
        estimated_seconds: rate.map(|rate| count as f64 / rate),
        sample_event_ids,
        id_set_sha256: id_set_hash(&mut lines),
    })
}

impl TargetSpec {
    /// The single destination of a non-original target.
    pub fn destination_name(&self) -> Option<String> {
        match self {
            TargetSpec::Original { .. } => None,
            TargetSpec::Topic { arn } => Some(arn.clone()),
            TargetSpec::Queue { url, .. } => Some(url.clone()),
            TargetSpec::File { path } => Some(path.display().to_string()),
        }
    }
}

impl Plan {
    /// Reads a plan written by `--plan-out`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ReplayError::Usage(format!(
                "--plan {}: cannot read it: {error}",
                path.display()
            ))
        })?;
        let plan: Plan = serde_json::from_str(&text).map_err(|error| {
            ReplayError::Usage(format!(
                "--plan {}: not a plan written by --plan-out: {error}",
                path.display()
            ))
        })?;
        if plan.version != PLAN_VERSION {
            return Err(ReplayError::Usage(format!(
                "--plan {}: plan version {} (this islets-replay reads version {PLAN_VERSION})",
                path.display(),
                plan.version
            )));
        }
        Ok(plan)
    }

    /// Writes the plan as JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|error| ReplayError::Usage(format!("cannot encode the plan: {error}")))?;
        std::fs::write(path, text + "\n")
            .map_err(ReplayError::io(format!("--plan-out {}", path.display())))
    }

    /// The plan as an operator reads it.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        let target = self
            .target
            .as_ref()
            .map_or("none (dry run)".to_owned(), ToString::to_string);
        text.push_str(&format!("Replay plan ({} events)\n", self.events));
        text.push_str(&format!("  target:      {target}\n"));
        text.push_str(&format!(
            "  time span:   {} .. {}\n",
            self.first_published_at.as_deref().unwrap_or("-"),
            self.last_published_at.as_deref().unwrap_or("-")
        ));
        let duration = match (self.rate, self.estimated_seconds) {
            (Some(rate), Some(seconds)) => format!("~{seconds:.0} s at {rate}/s"),
            _ => "as fast as the target accepts (no --rate)".to_owned(),
        };
        text.push_str(&format!("  duration:    {duration}\n"));
        let counts = |title: &str, counts: &BTreeMap<String, u64>, text: &mut String| {
            if counts.is_empty() {
                return;
            }
            text.push_str(&format!("  {title}:\n"));
            for (key, count) in counts {
                text.push_str(&format!("    {count:>8}  {key}\n"));
            }
        };
        counts("by aggregate", &self.by_aggregate, &mut text);
        counts("by event type", &self.by_event_type, &mut text);
        counts("by target", &self.by_target, &mut text);
        counts("cannot be sent", &self.unsendable, &mut text);
        text.push_str(&format!(
            "  sample ids:  {}\n",
            if self.sample_event_ids.is_empty() {
                "-".to_owned()
            } else {
                self.sample_event_ids.join(", ")
            }
        ));
        text.push_str(&format!("  id set hash: sha256:{}\n", self.id_set_sha256));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_set_hash_ignores_order_and_changes_with_the_set() {
        let mut a = vec!["b".to_owned(), "a".to_owned()];
        let mut b = vec!["a".to_owned(), "b".to_owned()];
        let mut c = vec!["a".to_owned(), "c".to_owned()];
        assert_eq!(id_set_hash(&mut a), id_set_hash(&mut b));
        assert_ne!(id_set_hash(&mut b), id_set_hash(&mut c));
        // No ambiguity between ["ab"] and ["a", "b"].
        assert_ne!(
            id_set_hash(&mut ["ab".to_owned()]),
            id_set_hash(&mut ["a".to_owned(), "b".to_owned()])
        );
    }
}
