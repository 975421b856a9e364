//! `verify`: recomputes every hash of the sealed archive from its objects and rows, checks
//! the log against every checkpoint and each signature, and names each finding.
//!
//! Memory is bounded by one hour (its manifest and leaves) and the log (a few hundred bytes
//! an entry), whatever the archive's size; findings are kept up to [`MAX_FINDINGS`] and
//! counted beyond.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use islets_core::layout::{Partition, join};
use islets_core::store::Archive;
use serde::Serialize;
use sha2_merkle::{Digest as _, Sha256};

use crate::checkpoint::SignedCheckpoint;
use crate::error::Result;
use crate::hour::{ObjectRead, read_objects, relative};
use crate::leaf::EventLeaf;
use crate::log::{LogEntry, Stored, StoredLog};
use crate::manifest::HourManifest;
use crate::sealer::{closed, hours};
use crate::tree::{LogTree, verify_consistency};

/// Findings kept in a report; beyond, they are counted only.
pub const MAX_FINDINGS: usize = 10_000;
/// Event-level findings named per hour; beyond, one finding counts the rest.
const MAX_EVENT_FINDINGS_PER_HOUR: usize = 100;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// An object of a manifest has other bytes than when it was sealed.
    ObjectAltered,
    /// An object of a manifest is gone (inside retention).
    ObjectMissing,
    /// A sealed hour holds an object its manifest does not list (and no ingester recorded
    /// writing it recently).
    ObjectNotInManifest,
    /// A sealed event is in no object of its hour any more.
    EventRemoved,
    /// A sealed event's payload or attributes differ from when it was sealed.
    EventChanged,
    /// An object of a manifest holds an event its manifest does not list.
    EventAdded,
    /// A manifest the log names is gone (inside retention).
    ManifestMissing,
    /// A manifest's bytes or root are not those the log recorded.
    ManifestEdited,
    /// The log is not the log the checkpoints signed: an entry missing, malformed or
    /// changed, or the log shorter than a checkpoint.
    LogInconsistent,
    /// A checkpoint's signature does not verify with the trusted key.
    SignatureInvalid,
    /// Log entries that no valid checkpoint covers yet.
    LogUnsigned,
}

impl FindingKind {
    /// The kind's name in reports (`object_altered`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::ObjectAltered => "object_altered",
            FindingKind::ObjectMissing => "object_missing",
            FindingKind::ObjectNotInManifest => "object_not_in_manifest",
            FindingKind::EventRemoved => "event_removed",
            FindingKind::EventChanged => "event_changed",
            FindingKind::EventAdded => "event_added",
            FindingKind::ManifestMissing => "manifest_missing",
            FindingKind::ManifestEdited => "manifest_edited",
            FindingKind::LogInconsistent => "log_inconsistent",
            FindingKind::SignatureInvalid => "signature_invalid",
            FindingKind::LogUnsigned => "log_unsigned",
        }
    }
}

/// One thing `verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What it is.
    pub kind: FindingKind,
    /// Said for people.
    pub message: String,
    /// The hour it is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// The object or manifest it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The event it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// The checkpoint a verification was checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointSummary {
    /// Entries it covers.
    pub size: u64,
    /// The log's root, hex.
    pub root: String,
    /// When it was signed (ms since the epoch).
    pub time_ms: i64,
    /// The key that signed it.
    pub key_id: String,
}

impl From<&SignedCheckpoint> for CheckpointSummary {
    fn from(checkpoint: &SignedCheckpoint) -> Self {
        CheckpointSummary {
            size: checkpoint.size,
            root: checkpoint.root.clone(),
            time_ms: checkpoint.time_ms,
            key_id: checkpoint.key_id.clone(),
        }
    }
}

/// What [`verify`] checks.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The operator's public key: checkpoints signed by any other key are findings.
    pub trusted_key: Vec<u8>,
    /// Hours starting at or after this (ms since the epoch) are checked; all when `None`.
    pub since_ms: Option<i64>,
    /// Hours starting before this are checked; all when `None`.
    pub until_ms: Option<i64>,
    /// The verifier's clock.
    pub now_ms: i64,
    /// The lifecycle period: in hours older than this, objects and manifests the lifecycle
    /// rule removed are expected to be gone and are not findings.
    pub retention: Duration,
    /// The grace window of sealing: closed hours without a seal are counted as unsealed.
    pub grace: Duration,
    /// Checkpoints held outside the archive (published, handed to the auditor): each must
    /// verify and match the log too.
    pub external: Vec<SignedCheckpoint>,
}

/// What [`verify`] found.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// No finding at all.
    pub clean: bool,
    /// The newest valid checkpoint the log was checked against.
    pub checkpoint: Option<CheckpointSummary>,
    /// The oldest retained checkpoint (where verification of the log starts).
    pub oldest_checkpoint: Option<CheckpointSummary>,
    /// Checkpoints checked (stored and external).
    pub checkpoints: usize,
    /// Entries in the log.
    pub log_entries: u64,
    /// Sealed hours checked.
    pub hours: usize,
    /// Objects read and hashed.
    pub objects: usize,
    /// Bytes read and hashed.
    pub bytes: u64,
    /// Events (leaves) recomputed.
    pub events: u64,
    /// Sealed hours past the retention whose objects or manifest are gone (expired).
    pub expired_hours: usize,
    /// Closed hours with objects and no seal yet (sealing lags behind).
    pub unsealed_hours: usize,
    /// Objects in sealed hours not in their manifest but recorded by an ingester within the
    /// journal's retention: late arrivals waiting for the next seal.
    pub pending_objects: usize,
    /// Every finding (up to [`MAX_FINDINGS`]).
    pub findings: Vec<Finding>,
    /// How many findings there were, kept or not.
    pub findings_total: usize,
}

impl VerifyReport {
    fn find(
        &mut self,
        kind: FindingKind,
        message: String,
        partition: Option<&str>,
        key: Option<&str>,
        event_id: Option<&str>,
    ) {
        self.findings_total += 1;
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(Finding {
                kind,
                message,
                partition: partition.map(str::to_owned),
                key: key.map(str::to_owned),
                event_id: event_id.map(str::to_owned),
            });
        }
    }

    /// Findings by kind.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for finding in &self.findings {
            *counts.entry(finding.kind.name()).or_default() += 1;
        }
        counts
    }
}

/// Verifies `archive` against `options.trusted_key`.
pub async fn verify(archive: &Archive, options: &VerifyOptions) -> Result<VerifyReport> {
    let log = StoredLog::load(archive).await?;
    let mut report = VerifyReport::default();
    let entries = check_log(&log, options, &mut report);
    check_hours(archive, &entries, options, &mut report).await?;
    report.clean = report.findings_total == 0;
    Ok(report)
}

/// Checks entries and checkpoints; returns the well-formed entries (up to the first gap).
fn check_log<'a>(
    log: &'a StoredLog,
    options: &VerifyOptions,
    report: &mut VerifyReport,
) -> Vec<&'a LogEntry> {
    let mut entries = Vec::new();
    let mut gap = false;
    for (index, stored) in log.entries.iter().enumerate() {
        let key = LogEntry::key(index as u64);
        match stored {
            Some(Stored::Read(entry)) if !gap => entries.push(entry),
            Some(Stored::Read(_)) => {}
            Some(Stored::Malformed(why)) => {
                gap = true;
                report.find(
                    FindingKind::LogInconsistent,
                    format!("log entry {index} is malformed: {why}"),
                    None,
                    Some(&key),
                    None,
                );
            }
            None => {
                gap = true;
                report.find(
                    FindingKind::LogInconsistent,
                    format!("log entry {index} is missing"),
                    None,
                    Some(&key),
                    None,
                );
            }
        }
    }
    report.log_entries = log.entries.len() as u64;

    // Every checkpoint: its signature, then its root against the log of its size.
    let mut checkpoints: Vec<(String, SignedCheckpoint)> = Vec::new();
    for (size, stored) in &log.checkpoints {
        let key = crate::log::checkpoint_key(*size);
        match stored {
            Stored::Read(checkpoint) if checkpoint.size == *size => {
                checkpoints.push((key, checkpoint.clone()));
            }
            Stored::Read(checkpoint) => report.find(
                FindingKind::SignatureInvalid,
                format!(
                    "the checkpoint stored as size {size} says size {}",
                    checkpoint.size
                ),
                None,
                Some(&key),
                None,
            ),
            Stored::Malformed(why) => report.find(
                FindingKind::SignatureInvalid,
                format!("the checkpoint of size {size} is malformed: {why}"),
                None,
                Some(&key),
                None,
            ),
        }
    }
    for (number, checkpoint) in options.external.iter().enumerate() {
        checkpoints.push((
            format!(
                "published checkpoint {} (size {})",
                number + 1,
                checkpoint.size
            ),
            checkpoint.clone(),
        ));
    }
    let mut valid: Vec<(String, u64, crate::tree::Digest, SignedCheckpoint)> = Vec::new();
    for (name, checkpoint) in checkpoints {
        match checkpoint.verify(&options.trusted_key) {
            Ok(verified) => valid.push((name, verified.size, verified.root, checkpoint)),
            Err(error) => report.find(
                FindingKind::SignatureInvalid,
                format!("{name}: {error}"),
                None,
                Some(&name),
                None,
            ),
        }
    }
    report.checkpoints = valid.len();
    valid.sort_by_key(|(_, size, _, _)| *size);

    let mut tree = LogTree::default();
    let mut entries_iter = entries.iter();
    let mut previous: Option<(u64, crate::tree::Digest)> = None;
    let mut covered = 0;
    for (name, size, root, checkpoint) in &valid {
        while tree.size() < *size {
            let Some(entry) = entries_iter.next() else {
                break;
            };
            tree.push(entry.leaf_bytes());
        }
        if tree.size() < *size {
            report.find(
                FindingKind::LogInconsistent,
                format!(
                    "{name} covers {size} entries but the log holds {} readable ones: the log was truncated or entries removed",
                    tree.size()
                ),
                None,
                Some(name),
                None,
            );
            continue;
        }
        if tree.root() != *root {
            report.find(
                FindingKind::LogInconsistent,
                format!(
                    "the log's first {size} entries do not have the root {name} signed: an entry was changed"
                ),
                None,
                Some(name),
                None,
            );
            continue;
        }
        // The same log, so consistency proofs from the previous head verify too.
        if let Some((old_size, old_root)) = previous
            && old_size < *size
        {
            let proof = tree.prove_consistency(old_size);
            let consistent = proof
                .and_then(|proof| verify_consistency(old_size, &old_root, *size, root, &proof));
            if let Err(error) = consistent {
                report.find(
                    FindingKind::LogInconsistent,
                    format!("{name}: {error}"),
                    None,
                    Some(name),
                    None,
                );
                continue;
            }
        }
        previous = Some((*size, *root));
        covered = covered.max(*size);
        if report.oldest_checkpoint.is_none() {
            report.oldest_checkpoint = Some(CheckpointSummary::from(checkpoint));
        }
        report.checkpoint = Some(CheckpointSummary::from(checkpoint));
    }
    if (covered as usize) < entries.len() || (entries.is_empty() && !log.entries.is_empty()) {
        report.find(
            FindingKind::LogUnsigned,
            format!(
                "log entries {covered} to {} are covered by no valid checkpoint (a seal interrupted before signing, or entries appended by someone without the key): run the sealer again",
                log.entries.len().saturating_sub(1)
            ),
            None,
            None,
            None,
        );
    }
    entries
}

fn in_range(partition: &Partition, options: &VerifyOptions) -> bool {
    let start = partition.start().timestamp_millis();
    options.since_ms.is_none_or(|since| start >= since)
        && options.until_ms.is_none_or(|until| start < until)
}

fn expired(partition: &Partition, options: &VerifyOptions) -> bool {
    partition.start().timestamp_millis() + options.retention.as_millis() as i64 <= options.now_ms
}

async fn check_hours(
    archive: &Archive,
    entries: &[&LogEntry],
    options: &VerifyOptions,
    report: &mut VerifyReport,
) -> Result<()> {
    let live = hours(archive).await?;
    let journaled = archive.journaled_keys().await?;
    let mut latest: BTreeMap<Partition, &LogEntry> = BTreeMap::new();
    let mut superseded: Vec<(Partition, &LogEntry)> = Vec::new();
    for entry in entries {
        let Some(partition) = Partition::parse_relative_dir(&entry.partition) else {
            report.find(
                FindingKind::LogInconsistent,
                format!(
                    "log entry {} names '{}', which is not an hour of the archive",
                    entry.index, entry.partition
                ),
                None,
                Some(&LogEntry::key(entry.index)),
                None,
            );
            continue;
        };
        if let Some(older) = latest.insert(partition, entry) {
            superseded.push((partition, older));
        }
    }
    for (partition, entry) in superseded {
        if !in_range(&partition, options) {
            continue;
        }
        // An earlier seal: its manifest must still be the one recorded.
        match archive
            .get_if_exists(&join(archive.root(), &entry.manifest))
            .await?
        {
            Some(bytes) => {
                if hex::encode(Sha256::digest(&bytes)) != entry.manifest_sha256 {
                    report.find(
                        FindingKind::ManifestEdited,
                        format!(
                            "the manifest of seal {} of {} is not the one the log recorded",
                            entry.index, entry.partition
                        ),
                        Some(&entry.partition),
                        Some(&entry.manifest),
                        None,
                    );
                }
            }
            None if expired(&partition, options) => {}
            None => report.find(
                FindingKind::ManifestMissing,
                format!(
                    "the manifest of seal {} of {} is gone",
                    entry.index, entry.partition
                ),
                Some(&entry.partition),
                Some(&entry.manifest),
                None,
            ),
        }
    }
    for (partition, objects) in &live {
        if !latest.contains_key(partition)
            && in_range(partition, options)
            && closed(partition, options.grace, options.now_ms)
        {
            report.unsealed_hours += 1;
            tracing::debug!(partition = %partition.relative_dir(), objects = objects.len(), "closed hour not sealed yet");
        }
    }
    for (partition, entry) in latest {
        if !in_range(&partition, options) {
            continue;
        }
        let live_keys: BTreeSet<String> = live
            .get(&partition)
            .map(|objects| {
                objects
                    .iter()
                    .map(|meta| relative(archive, &meta.location))
                    .collect()
            })
            .unwrap_or_default();
        check_hour(
            archive, &partition, entry, &live_keys, &journaled, options, report,
        )
        .await?;
    }
    Ok(())
}

async fn check_hour(
    archive: &Archive,
    partition: &Partition,
    entry: &LogEntry,
    live_keys: &BTreeSet<String>,
    journaled: &BTreeSet<String>,
    options: &VerifyOptions,
    report: &mut VerifyReport,
) -> Result<()> {
    let hour = entry.partition.as_str();
    let expired = expired(partition, options);
    let Some(bytes) = archive
        .get_if_exists(&join(archive.root(), &entry.manifest))
        .await?
    else {
        if expired {
            report.expired_hours += 1;
        } else {
            report.find(
                FindingKind::ManifestMissing,
                format!("the manifest of {hour} (seal {}) is gone", entry.index),
                Some(hour),
                Some(&entry.manifest),
                None,
            );
        }
        return Ok(());
    };
    report.hours += 1;
    if hex::encode(Sha256::digest(&bytes)) != entry.manifest_sha256 {
        report.find(
            FindingKind::ManifestEdited,
            format!("the manifest of {hour} is not the one the log recorded (its SHA-256 differs)"),
            Some(hour),
            Some(&entry.manifest),
            None,
        );
        return Ok(());
    }
    let manifest = match HourManifest::parse(&bytes) {
        Ok(manifest) => manifest,
        Err(error) => {
            report.find(
                FindingKind::ManifestEdited,
                format!("the manifest of {hour} does not parse: {error}"),
                Some(hour),
                Some(&entry.manifest),
                None,
            );
            return Ok(());
        }
    };
    let tree_root = manifest.tree().map(|tree| hex::encode(tree.root()));
    if manifest.partition != entry.partition
        || manifest.root != entry.hour_root
        || tree_root.as_deref().ok() != Some(entry.hour_root.as_str())
    {
        report.find(
            FindingKind::ManifestEdited,
            format!(
                "the manifest of {hour} does not hold the hour root the log recorded ({})",
                entry.hour_root
            ),
            Some(hour),
            Some(&entry.manifest),
            None,
        );
        return Ok(());
    }

    let keys: Vec<String> = manifest
        .objects
        .iter()
        .map(|object| object.key.clone())
        .collect();
    let reads = read_objects(archive, &keys).await?;
    let mut found: BTreeSet<EventLeaf> = BTreeSet::new();
    let mut missing_objects = 0;
    for (sealed, read) in manifest.objects.iter().zip(reads) {
        match read {
            ObjectRead::Missing => {
                missing_objects += 1;
                if !expired {
                    report.find(
                        FindingKind::ObjectMissing,
                        format!("{} ({} rows when sealed) is gone", sealed.key, sealed.rows),
                        Some(hour),
                        Some(&sealed.key),
                        None,
                    );
                }
            }
            ObjectRead::Read { object, leaves } => {
                report.objects += 1;
                report.bytes += object.size;
                if object.sha256 != sealed.sha256 || object.size != sealed.size {
                    report.find(
                        FindingKind::ObjectAltered,
                        format!(
                            "{} has other bytes than when it was sealed (size {} → {}, SHA-256 {} → {})",
                            sealed.key, sealed.size, object.size, sealed.sha256, object.sha256
                        ),
                        Some(hour),
                        Some(&sealed.key),
                        None,
                    );
                }
                match leaves {
                    Ok(leaves) => {
                        report.events += leaves.len() as u64;
                        found.extend(leaves);
                    }
                    Err(why) => report.find(
                        FindingKind::ObjectAltered,
                        format!("{} is no longer a readable events file: {why}", sealed.key),
                        Some(hour),
                        Some(&sealed.key),
                        None,
                    ),
                }
            }
        }
    }
    if expired && missing_objects > 0 {
        report.expired_hours += 1;
    }
    for key in live_keys {
        if manifest.objects.iter().any(|object| &object.key == key) {
            continue;
        }
        if journaled.contains(key) {
            report.pending_objects += 1;
        } else {
            report.find(
                FindingKind::ObjectNotInManifest,
                format!("{key} is in the sealed hour {hour} but not in its manifest, and no ingester recorded writing it"),
                Some(hour),
                Some(key),
                None,
            );
        }
    }
    if expired && missing_objects > 0 {
        // Events of expired objects are gone with them.
        return Ok(());
    }

    // Leaf by leaf: what the manifest sealed against what the objects hold now.
    let sealed: BTreeSet<EventLeaf> = match manifest.tree() {
        Ok(tree) => tree.leaves().iter().cloned().collect(),
        Err(_) => BTreeSet::new(),
    };
    let found_ids: BTreeSet<&str> = found.iter().map(|leaf| leaf.event_id.as_str()).collect();
    let sealed_ids: BTreeSet<&str> = sealed.iter().map(|leaf| leaf.event_id.as_str()).collect();
    let mut differences: Vec<(FindingKind, String, &str)> = Vec::new();
    let mut changed: BTreeSet<&str> = BTreeSet::new();
    for leaf in sealed.difference(&found) {
        let id = leaf.event_id.as_str();
        differences.push(if found_ids.contains(id) {
            changed.insert(id);
            (
                FindingKind::EventChanged,
                format!(
                    "event {id} in {hour} has another payload or attributes than when it was sealed"
                ),
                id,
            )
        } else {
            (
                FindingKind::EventRemoved,
                format!("event {id} was sealed in {hour} and is in none of its objects now"),
                id,
            )
        });
    }
    for leaf in found.difference(&sealed) {
        let id = leaf.event_id.as_str();
        if changed.contains(id) {
            continue;
        }
        differences.push(if sealed_ids.contains(id) {
            (
                FindingKind::EventChanged,
                format!("event {id} in {hour} has a copy that was not sealed"),
                id,
            )
        } else {
            (
                FindingKind::EventAdded,
                format!("event {id} is in a sealed object of {hour} but was not sealed"),
                id,
            )
        });
    }
    let unnamed = differences
        .len()
        .saturating_sub(MAX_EVENT_FINDINGS_PER_HOUR);
    for (kind, message, id) in differences.into_iter().take(MAX_EVENT_FINDINGS_PER_HOUR) {
        report.find(kind, message, Some(hour), None, Some(id));
    }
    if unnamed > 0 {
        report.find(
            FindingKind::EventChanged,
            format!("and {unnamed} more events of {hour} differ from their seal"),
            Some(hour),
            None,
            None,
        );
    }
    Ok(())
}
