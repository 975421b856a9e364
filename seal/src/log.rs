//! The log over the archive: one entry per seal of an hour, `seal/log/<index>.json`
//! (20-digit, zero-padded), and the signed checkpoints of its heads,
//! `seal/checkpoints/<size>.json`. Entries and checkpoints are written with an exclusive
//! create, so concurrent sealers never overwrite one another; they are small (a few hundred
//! bytes) and kept for as long as the bucket (no lifecycle rule expires them).
//!
//! An entry's leaf bytes (what the log's tree hashes), each line ending with `\n`:
//!
//! ```text
//! islets-seal-log-entry-1
//! <index>                 decimal
//! <partition>             events/date=YYYY-MM-DD/hour=HH
//! <events>                decimal leaf count of the hour's tree
//! <hour root>             hex
//! <manifest key>          relative to the archive's root
//! <manifest SHA-256>      hex, of the manifest's bytes as stored
//! ```

use futures::{StreamExt, TryStreamExt};
use islets_core::layout::join;
use islets_core::store::Archive;
use serde::{Deserialize, Serialize};

use crate::checkpoint::SignedCheckpoint;
use crate::error::{Error, Result};
use crate::tree::LogTree;

/// The log entries' prefix under the archive's root.
pub const LOG_PREFIX: &str = "seal/log";
/// The checkpoints' prefix under the archive's root (and under a publishing store's).
pub const CHECKPOINT_PREFIX: &str = "seal/checkpoints";
/// The first line of every entry's leaf bytes.
pub const LOG_ENTRY_FORMAT: &str = "islets-seal-log-entry-1";
/// Objects read at once when loading the log.
const CONCURRENT_READS: usize = 16;
/// The largest log entry or checkpoint accepted.
const MAX_SMALL_OBJECT: u64 = 64 * 1024;

/// One seal of one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Its index in the log (0 first).
    pub index: u64,
    /// The hour: `events/date=2026-11-23/hour=16`.
    pub partition: String,
    /// How many leaves the hour's tree has.
    pub events: u64,
    /// The hour's root, hex.
    pub hour_root: String,
    /// The manifest's key, relative to the archive's root.
    pub manifest: String,
    /// SHA-256 of the manifest's bytes, hex.
    pub manifest_sha256: String,
    /// When the hour was sealed (ms since the epoch); not part of the leaf.
    pub sealed_at_ms: i64,
    /// SHA-256 of the sealed objects' `key size` lines, hex: lets a sealer see that an
    /// hour's objects are unchanged without reading its manifest. Not part of the leaf
    /// (`verify` checks the manifest itself).
    pub objects_sha256: String,
}

impl LogEntry {
    /// The bytes the log's tree hashes as this entry's leaf.
    pub fn leaf_bytes(&self) -> Vec<u8> {
        format!(
            "{LOG_ENTRY_FORMAT}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.index,
            self.partition,
            self.events,
            self.hour_root,
            self.manifest,
            self.manifest_sha256
        )
        .into_bytes()
    }

    /// The entry's key, relative to the archive's root.
    pub fn key(index: u64) -> String {
        format!("{LOG_PREFIX}/{index:020}.json")
    }
}

/// A checkpoint's key for a log of `size` entries, relative to a store's root.
pub fn checkpoint_key(size: u64) -> String {
    format!("{CHECKPOINT_PREFIX}/{size:020}.json")
}

/// The index a `…/<20 digits>.json` key names.
fn numbered(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?.strip_suffix(".json")?;
    (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

/// What a stored entry or checkpoint turned out to be.
#[derive(Debug)]
pub enum Stored<T> {
    /// It parsed.
    Read(T),
    /// It is there but is not what its key says (the message says why).
    Malformed(String),
}

/// The log as stored: its entries by index (gaps are `None`), and its checkpoints by size.
#[derive(Debug, Default)]
pub struct StoredLog {
    /// Entry `i` at position `i`; a missing or malformed entry is not `Read`.
    pub entries: Vec<Option<Stored<LogEntry>>>,
    /// The checkpoints, by size, ascending.
    pub checkpoints: Vec<(u64, Stored<SignedCheckpoint>)>,
}

async fn read_numbered<T: serde::de::DeserializeOwned>(
    archive: &Archive,
    prefix: &str,
) -> Result<Vec<(u64, Stored<T>)>> {
    let listed = archive.list_under(prefix).await?;
    let wanted: Vec<_> = listed
        .into_iter()
        .filter_map(|meta| numbered(meta.location.as_ref()).map(|number| (number, meta)))
        .collect();
    let read = futures::stream::iter(wanted)
        .map(|(number, meta)| async move {
            if meta.size > MAX_SMALL_OBJECT {
                return Ok((
                    number,
                    Stored::Malformed(format!("{} bytes is too large", meta.size)),
                ));
            }
            let bytes = archive.get(&meta.location).await?;
            Ok::<_, Error>(match serde_json::from_slice::<T>(&bytes) {
                Ok(value) => (number, Stored::Read(value)),
                Err(error) => (number, Stored::Malformed(error.to_string())),
            })
        })
        .buffered(CONCURRENT_READS)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(read)
}

impl StoredLog {
    /// Reads the log and its checkpoints from `archive`.
    pub async fn load(archive: &Archive) -> Result<Self> {
        let mut log = StoredLog::default();
        for (index, entry) in read_numbered::<LogEntry>(archive, LOG_PREFIX).await? {
            let entry = match entry {
                Stored::Read(entry) if entry.index != index => Stored::Malformed(format!(
                    "the entry stored as {index} says it is {}",
                    entry.index
                )),
                other => other,
            };
            let Ok(position) = usize::try_from(index) else {
                continue;
            };
            if position >= 1 << 32 {
                continue;
            }
            if log.entries.len() <= position {
                log.entries.resize_with(position + 1, || None);
            }
            log.entries[position] = Some(entry);
        }
        log.checkpoints = read_numbered::<SignedCheckpoint>(archive, CHECKPOINT_PREFIX).await?;
        Ok(log)
    }

    /// The entries, when every one from 0 on is present and well formed; otherwise why not.
    pub fn complete(&self) -> std::result::Result<Vec<&LogEntry>, String> {
        self.entries
            .iter()
            .enumerate()
            .map(|(index, entry)| match entry {
                Some(Stored::Read(entry)) => Ok(entry),
                Some(Stored::Malformed(why)) => {
                    Err(format!("log entry {index} is malformed: {why}"))
                }
                None => Err(format!("log entry {index} is missing")),
            })
            .collect()
    }

    /// The newest checkpoint that parsed.
    pub fn newest_checkpoint(&self) -> Option<&SignedCheckpoint> {
        self.checkpoints
            .iter()
            .rev()
            .find_map(|(_, stored)| match stored {
                Stored::Read(checkpoint) => Some(checkpoint),
                Stored::Malformed(_) => None,
            })
    }
}

/// The log's tree over `entries` (in index order).
pub(crate) fn log_tree<'a>(entries: impl IntoIterator<Item = &'a LogEntry>) -> LogTree {
    LogTree::new(entries.into_iter().map(LogEntry::leaf_bytes))
}

/// Stores `entry` at its index unless another sealer got there first (`Ok(false)`).
pub(crate) async fn append(archive: &Archive, entry: &LogEntry) -> Result<bool> {
    let bytes = serde_json::to_vec_pretty(entry)
        .map_err(|error| Error::Invalid(format!("cannot encode a log entry: {error}")))?;
    archive
        .put_new(
            &join(archive.root(), &LogEntry::key(entry.index)),
            bytes.into(),
        )
        .await
        .map_err(Error::from)
}

/// Stores `checkpoint` in `store` (the archive, or a store it is published to). A
/// checkpoint of that size already there is left alone.
pub(crate) async fn store_checkpoint(store: &Archive, checkpoint: &SignedCheckpoint) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(checkpoint)
        .map_err(|error| Error::Invalid(format!("cannot encode a checkpoint: {error}")))?;
    store
        .put_new(
            &join(store.root(), &checkpoint_key(checkpoint.size)),
            bytes.into(),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_and_leaf_bytes_are_the_documented_ones() {
        let entry = LogEntry {
            index: 3,
            partition: "events/date=2026-11-23/hour=16".to_owned(),
            events: 2,
            hour_root: "ab".to_owned(),
            manifest: "seal/manifests/x.json".to_owned(),
            manifest_sha256: "cd".to_owned(),
            sealed_at_ms: 9,
            objects_sha256: String::new(),
        };
        assert_eq!(
            String::from_utf8(entry.leaf_bytes()).expect("text"),
            "islets-seal-log-entry-1\n3\nevents/date=2026-11-23/hour=16\n2\nab\nseal/manifests/x.json\ncd\n"
        );
        assert_eq!(LogEntry::key(3), "seal/log/00000000000000000003.json");
        assert_eq!(numbered(&LogEntry::key(3)), Some(3));
        assert_eq!(numbered("seal/log/3.json"), None);
        assert_eq!(numbered("seal/log/0000000000000000000x.json"), None);
        assert_eq!(
            checkpoint_key(12),
            "seal/checkpoints/00000000000000000012.json"
        );
    }
}
