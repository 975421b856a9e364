//! Self-contained proofs that one event is in the signed log (docs/ARCHIVE.md, "Proofs").
//!
//! A proof holds the event's leaf data, its inclusion path to the hour's root, the log
//! entry of that seal, the entry's inclusion path to a checkpoint's root, and the signed
//! checkpoint with its public key. Checking it needs nothing else but the operator's public
//! key, held by the auditor: [`EventProof::verify`].

use islets_core::layout::{Partition, join};
use islets_core::store::Archive;
use serde::{Deserialize, Serialize};
use sha2_merkle::{Digest as _, Sha256};

use crate::checkpoint::SignedCheckpoint;
use crate::error::{Error, Result};
use crate::leaf::EventLeaf;
use crate::log::{LogEntry, StoredLog, log_tree};
use crate::manifest::{HourManifest, ManifestLeaf, parse_digest};
use crate::sealer::latest_by_hour;
use crate::tree::InclusionPath;

/// The format name of proofs.
pub const PROOF_FORMAT: &str = "islets-event-proof-1";

/// The event's place in its hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourInclusion {
    /// The hour: `events/date=…/hour=…`.
    pub partition: String,
    /// The hour's root, hex.
    pub root: String,
    /// The event's leaf index and the path to the root.
    pub inclusion: InclusionPath,
}

/// A proof that one event is in the signed log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventProof {
    /// [`PROOF_FORMAT`].
    pub format: String,
    /// The event's leaf.
    pub event: ManifestLeaf,
    /// Its inclusion in the hour's tree.
    pub hour: HourInclusion,
    /// The seal of that hour in the log.
    pub log_entry: LogEntry,
    /// The entry's inclusion in the log of the checkpoint's size.
    pub log: InclusionPath,
    /// The signed log head.
    pub checkpoint: SignedCheckpoint,
}

/// What a valid proof proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    /// The event.
    pub event_id: String,
    /// Its hour.
    pub partition: String,
    /// The checkpoint's log size.
    pub checkpoint_size: u64,
    /// When the checkpoint was signed (ms since the epoch).
    pub checkpoint_time_ms: i64,
    /// The key that signed it.
    pub key_id: String,
}

impl EventProof {
    /// Checks the proof offline against `trusted` (the operator's public key).
    pub fn verify(&self, trusted: &[u8]) -> Result<Proven> {
        if self.format != PROOF_FORMAT {
            return Err(Error::Invalid(format!(
                "proof format '{}' is not {PROOF_FORMAT}",
                self.format
            )));
        }
        let leaf = self.event.leaf()?;
        let hour_root = parse_digest(&self.hour.root, "hour root")?;
        self.hour
            .inclusion
            .verify(&leaf.bytes(), &hour_root)
            .map_err(|error| Error::Invalid(format!("the event is not in its hour: {error}")))?;
        let entry = &self.log_entry;
        if entry.hour_root != self.hour.root
            || entry.partition != self.hour.partition
            || entry.events != self.hour.inclusion.size
        {
            return Err(Error::Invalid(
                "the log entry is not the seal of the hour the event is in (partition, root or size differ)"
                    .to_owned(),
            ));
        }
        let checkpoint = self.checkpoint.verify(trusted)?;
        if self.log.size != checkpoint.size || self.log.index != entry.index {
            return Err(Error::Invalid(format!(
                "the log path is for entry {} of {}, not entry {} of the checkpoint's {}",
                self.log.index, self.log.size, entry.index, checkpoint.size
            )));
        }
        self.log
            .verify(&entry.leaf_bytes(), &checkpoint.root)
            .map_err(|error| {
                Error::Invalid(format!("the hour's seal is not in the signed log: {error}"))
            })?;
        Ok(Proven {
            event_id: self.event.event_id.clone(),
            partition: self.hour.partition.clone(),
            checkpoint_size: checkpoint.size,
            checkpoint_time_ms: checkpoint.time_ms,
            key_id: self.checkpoint.key_id.clone(),
        })
    }
}

/// The proof for the archived copy `leaf` of an event in `partition`, against the newest
/// checkpoint that covers its hour's latest seal.
pub async fn prove(
    archive: &Archive,
    partition: &Partition,
    leaf: &EventLeaf,
) -> Result<EventProof> {
    let hour = partition.relative_dir();
    let log = StoredLog::load(archive).await?;
    let entries = log.complete().map_err(|why| {
        Error::Invalid(format!(
            "the log is damaged ({why}): run islets-audit verify"
        ))
    })?;
    let entry = latest_by_hour(&entries)
        .get(hour.as_str())
        .copied()
        .ok_or_else(|| {
            Error::NotSealed(format!(
                "the hour {hour} of event {} is not sealed yet: run islets-audit seal (hours are sealed once closed and past the grace window)",
                leaf.event_id
            ))
        })?;
    let bytes = archive
        .get_if_exists(&join(archive.root(), &entry.manifest))
        .await?
        .ok_or_else(|| {
            Error::Invalid(format!(
                "the manifest of {hour} is gone: run islets-audit verify"
            ))
        })?;
    if hex::encode(Sha256::digest(&bytes)) != entry.manifest_sha256 {
        return Err(Error::Invalid(format!(
            "the manifest of {hour} is not the one the log recorded: run islets-audit verify"
        )));
    }
    let tree = HourManifest::parse(&bytes)?.tree()?;
    let (_, inclusion) = tree
        .prove(&leaf.event_id)
        .into_iter()
        .find(|(sealed, _)| sealed == leaf)
        .ok_or_else(|| {
            Error::NotSealed(format!(
                "this copy of event {} arrived after {hour} was last sealed: it is in the next seal",
                leaf.event_id
            ))
        })?;
    let checkpoint = log
        .checkpoints
        .iter()
        .rev()
        .find_map(|(_, stored)| match stored {
            crate::log::Stored::Read(checkpoint) if checkpoint.size > entry.index => {
                Some(checkpoint)
            }
            _ => None,
        })
        .ok_or_else(|| {
            Error::NotSealed(format!(
                "no checkpoint covers the seal of {hour} yet: run islets-audit seal"
            ))
        })?;
    let size = usize::try_from(checkpoint.size).unwrap_or(usize::MAX);
    if size > entries.len() {
        return Err(Error::Invalid(format!(
            "the checkpoint of size {} is beyond the log's {} entries: run islets-audit verify",
            checkpoint.size,
            entries.len()
        )));
    }
    let log_inclusion = log_tree(entries[..size].iter().copied()).prove_inclusion(entry.index)?;
    Ok(EventProof {
        format: PROOF_FORMAT.to_owned(),
        event: ManifestLeaf::from(leaf),
        hour: HourInclusion {
            partition: hour,
            root: entry.hour_root.clone(),
            inclusion,
        },
        log_entry: entry.clone(),
        log: log_inclusion,
        checkpoint: checkpoint.clone(),
    })
}
