//! Sealing: for each closed hour whose objects changed since its last seal (or that was
//! never sealed), a manifest, a log entry, and at the end one signed checkpoint of the new
//! log head.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use islets_core::layout::{Partition, Table, join};
use islets_core::store::Archive;
use object_store::ObjectMeta;
use sha2_merkle::{Digest as _, Sha256};

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::error::{Error, Result};
use crate::hour::{ObjectRead, read_objects, relative};
use crate::log::{LogEntry, StoredLog, append, log_tree, store_checkpoint};
use crate::manifest::HourManifest;
use crate::signer::Signer;
use crate::tree::HourTree;

/// How many times a sealer retries an append another sealer won.
const APPEND_ATTEMPTS: usize = 20;

/// What a run of [`seal`] does.
#[derive(Debug, Clone)]
pub struct SealOptions {
    /// An hour is sealed once it ended this long ago (late arrivals, redeliveries within
    /// the visibility timeout).
    pub grace: Duration,
    /// The sealer's clock (ms since the epoch).
    pub now_ms: i64,
    /// The log's name in its checkpoints (`islets-audit <store>`).
    pub origin: String,
}

/// One hour sealed by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedHour {
    /// `events/date=…/hour=…`.
    pub partition: String,
    /// Its log index.
    pub index: u64,
    /// Leaves of its tree.
    pub events: u64,
    /// Objects its manifest lists.
    pub objects: usize,
    /// Bytes read to seal it.
    pub bytes: u64,
    /// Whether it had been sealed before (late events, compaction).
    pub reseal: bool,
}

/// What a run of [`seal`] did.
#[derive(Debug, Default)]
pub struct SealReport {
    /// Hours sealed (or sealed again).
    pub sealed: Vec<SealedHour>,
    /// Closed hours whose last seal still holds.
    pub unchanged: usize,
    /// Hours not closed yet (inside the grace window).
    pub open: usize,
    /// Hours that cannot be sealed, and why (an object that is not an events file): they
    /// are left for an operator and retried on the next run.
    pub refused: Vec<(String, String)>,
    /// The checkpoint signed at the end, when the log grew.
    pub checkpoint: Option<SignedCheckpoint>,
    /// Entries in the log after the run.
    pub log_size: u64,
    /// The newest closed hour, and whether it is sealed: seal lag is measured from it.
    pub newest_closed: Option<String>,
}

/// The `key size` digest of an hour's objects (the log entry's `objects_sha256`).
pub(crate) fn objects_digest<'a>(objects: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let mut lines: Vec<String> = objects
        .into_iter()
        .map(|(key, size)| format!("{key} {size}\n"))
        .collect();
    lines.sort_unstable();
    hex::encode(Sha256::digest(lines.concat().as_bytes()))
}

/// The events files of the archive by hour.
pub(crate) async fn hours(archive: &Archive) -> Result<BTreeMap<Partition, Vec<ObjectMeta>>> {
    let mut hours: BTreeMap<Partition, Vec<ObjectMeta>> = BTreeMap::new();
    for (file, meta) in archive.list_files(Table::Events).await? {
        hours.entry(file.partition).or_default().push(meta);
    }
    Ok(hours)
}

/// Whether `partition` ended `grace` before `now_ms`.
pub(crate) fn closed(partition: &Partition, grace: Duration, now_ms: i64) -> bool {
    let end = partition.start().timestamp_millis() + 3_600_000;
    end + grace.as_millis() as i64 <= now_ms
}

/// The newest entry of each hour.
pub(crate) fn latest_by_hour<'a>(entries: &[&'a LogEntry]) -> HashMap<&'a str, &'a LogEntry> {
    let mut latest: HashMap<&str, &LogEntry> = HashMap::new();
    for entry in entries {
        latest.insert(entry.partition.as_str(), entry);
    }
    latest
}

fn damaged(why: String) -> Error {
    Error::Invalid(format!(
        "the log is damaged ({why}); nothing was sealed: run islets-audit verify to see what changed"
    ))
}

/// Refuses to append to a log that no longer matches its newest checkpoint (truncated or
/// rewritten): appending would bury the damage under new signatures.
fn check_head(log: &StoredLog) -> Result<()> {
    let entries = log.complete().map_err(damaged)?;
    let Some(newest) = log.newest_checkpoint() else {
        return Ok(());
    };
    let size = usize::try_from(newest.size).unwrap_or(usize::MAX);
    if size > entries.len() {
        return Err(damaged(format!(
            "the newest checkpoint covers {} entries but the log holds {}",
            newest.size,
            entries.len()
        )));
    }
    let root = log_tree(entries[..size].iter().copied()).root();
    if newest.root_digest()? != root {
        return Err(damaged(format!(
            "the first {} entries no longer have the root of the newest checkpoint",
            newest.size
        )));
    }
    Ok(())
}

/// Seals every closed hour whose objects changed since its last seal, then signs one
/// checkpoint of the new log head with `signer` and stores it in the archive and in each
/// of `publish`.
pub async fn seal(
    archive: &Archive,
    signer: &dyn Signer,
    publish: &[Archive],
    options: &SealOptions,
) -> Result<SealReport> {
    let mut log = StoredLog::load(archive).await?;
    check_head(&log)?;
    let mut report = SealReport::default();
    let hours = hours(archive).await?;
    for (partition, objects) in &hours {
        if !closed(partition, options.grace, options.now_ms) {
            report.open += 1;
            continue;
        }
        report.newest_closed = Some(partition.relative_dir());
        let name = partition.relative_dir();
        let keys: Vec<String> = objects
            .iter()
            .map(|meta| relative(archive, &meta.location))
            .collect();
        let digest = objects_digest(
            keys.iter()
                .map(String::as_str)
                .zip(objects.iter().map(|meta| meta.size)),
        );
        let entries = log.complete().map_err(damaged)?;
        let previous = latest_by_hour(&entries)
            .get(name.as_str())
            .copied()
            .cloned();
        if previous
            .as_ref()
            .is_some_and(|entry| entry.objects_sha256 == digest)
        {
            report.unchanged += 1;
            continue;
        }

        let mut manifest_objects = Vec::new();
        let mut leaves = Vec::new();
        let mut refused = None;
        for read in read_objects(archive, &keys).await? {
            match read {
                // Deleted between the listing and the read (expiry): seal what is there.
                ObjectRead::Missing => {}
                ObjectRead::Read {
                    object,
                    leaves: Ok(rows),
                } => {
                    leaves.extend(rows);
                    manifest_objects.push(object);
                }
                ObjectRead::Read {
                    object,
                    leaves: Err(why),
                } => {
                    refused = Some(format!(
                        "{} is not a readable events file: {why}",
                        object.key
                    ));
                    break;
                }
            }
        }
        if let Some(why) = refused {
            tracing::warn!(partition = %name, reason = %why, "hour not sealed");
            report.refused.push((name, why));
            continue;
        }
        let bytes: u64 = manifest_objects.iter().map(|object| object.size).sum();
        let digest = objects_digest(
            manifest_objects
                .iter()
                .map(|object| (object.key.as_str(), object.size)),
        );
        let objects_count = manifest_objects.len();
        let tree = HourTree::new(leaves);
        let manifest = HourManifest::new(partition, options.now_ms, manifest_objects, &tree);
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|error| Error::Invalid(format!("cannot encode a manifest: {error}")))?;
        let manifest_key = HourManifest::new_key(partition);
        archive
            .put(
                &join(archive.root(), &manifest_key),
                manifest_bytes.clone().into(),
            )
            .await?;
        let mut entry = LogEntry {
            index: 0,
            partition: name.clone(),
            events: tree.leaves().len() as u64,
            hour_root: hex::encode(tree.root()),
            manifest: manifest_key,
            manifest_sha256: hex::encode(Sha256::digest(&manifest_bytes)),
            sealed_at_ms: options.now_ms,
            objects_sha256: digest,
        };
        let mut appended = false;
        for _ in 0..APPEND_ATTEMPTS {
            entry.index = log.entries.len() as u64;
            if append(archive, &entry).await? {
                appended = true;
                break;
            }
            // Another sealer appended first: read the log again and take the next index.
            log = StoredLog::load(archive).await?;
            log.complete().map_err(damaged)?;
        }
        if !appended {
            return Err(Error::Invalid(format!(
                "could not append the seal of {name} to the log after {APPEND_ATTEMPTS} attempts: other sealers keep appending; run it again"
            )));
        }
        log.entries
            .push(Some(crate::log::Stored::Read(entry.clone())));
        tracing::info!(partition = %name, index = entry.index, events = entry.events, "hour sealed");
        report.sealed.push(SealedHour {
            partition: name,
            index: entry.index,
            events: entry.events,
            objects: objects_count,
            bytes,
            reseal: previous.is_some(),
        });
    }

    let entries = log.complete().map_err(damaged)?;
    report.log_size = entries.len() as u64;
    let signed_size = log
        .newest_checkpoint()
        .map_or(0, |checkpoint| checkpoint.size);
    if report.log_size > signed_size {
        let checkpoint = Checkpoint {
            origin: options.origin.clone(),
            size: report.log_size,
            root: log_tree(entries.iter().copied()).root(),
            time_ms: options.now_ms,
        };
        let signed = SignedCheckpoint::sign_with(&checkpoint, signer).await?;
        store_checkpoint(archive, &signed).await?;
        for store in publish {
            store_checkpoint(store, &signed).await?;
        }
        report.checkpoint = Some(signed);
    }
    Ok(report)
}
