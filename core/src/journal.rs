//! The journal: one small object per flush, `journal/<ULID>.json`, naming the data files
//! that flush stored. Readers (the query engine, later the compactor) list it from the
//! last key they saw, so a file stored in any hour, however old, is found within seconds
//! without listing the archive.
//!
//! The journal is a hint, never a source of truth: a reader takes from an entry only the
//! keys it names, keeps those that are data-file keys of the archive, and asks the store
//! for each object's size and time (`HEAD`). A missing, late, forged or unreadable entry
//! costs freshness, never correctness: a full listing (every few minutes) finds every
//! file with or without the journal.
//!
//! Entries are named by a ULID taken after their files are stored. Writers' clocks differ
//! and ULIDs within one millisecond sort at random, so a reader lists again from
//! [`OVERLAP`] before the newest entry it has seen and skips the entries it has read.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::error::{Error, Result};
use crate::layout::{DataFile, Table, join};
use crate::store::Archive;

/// The journal's prefix, under the archive's root.
pub const JOURNAL_PREFIX: &str = "journal";

/// How far before the newest entry seen a reader lists again (writers' clock skew, and
/// entries of one millisecond sorting at random).
pub const OVERLAP: Duration = Duration::from_secs(60);

/// Entries older than this are removed ([`Archive::prune_journal`]); readers list the whole
/// archive far more often.
pub const JOURNAL_RETENTION: Duration = Duration::from_secs(24 * 3_600);

/// Entries read at most per call of [`Archive::read_journal`]; the rest wait for the next.
const MAX_ENTRIES_PER_READ: usize = 1_000;

/// The largest entry a reader accepts (a flush names a few dozen files).
const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// One entry, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// The format's version.
    version: u32,
    /// The stored files' keys, relative to the archive's root.
    files: Vec<String>,
}

/// Where a reader is in the journal.
#[derive(Debug, Clone, Default)]
pub struct JournalCursor {
    /// The newest entry time read (ms since the epoch), never ahead of the reader's
    /// clock; lists start [`OVERLAP`] before it.
    newest_ms: i64,
    /// Entries within the overlap already read.
    seen: BTreeSet<String>,
}

impl JournalCursor {
    /// A cursor for a reader that has just listed the archive at `listed_at_ms`: entries
    /// from [`OVERLAP`] before it on are read.
    pub fn after_listing(listed_at_ms: i64) -> Self {
        JournalCursor {
            newest_ms: listed_at_ms,
            seen: BTreeSet::new(),
        }
    }

    fn list_from_ms(&self) -> i64 {
        self.newest_ms - OVERLAP.as_millis() as i64
    }
}

/// The entry's ULID from its key (`…/journal/<ULID>.json`).
fn entry_id(location: &Path) -> Option<Ulid> {
    location
        .filename()?
        .strip_suffix(".json")
        .and_then(|id| Ulid::from_string(id).ok())
}

impl Archive {
    fn journal_root(&self) -> Path {
        join(self.root(), JOURNAL_PREFIX)
    }

    /// The journal's entries, from those named at or after `from` when given.
    async fn list_journal(&self, from: Option<Ulid>) -> Result<Vec<ObjectMeta>> {
        let prefix = self.journal_root();
        let listing = match from {
            Some(from) => self
                .object_store()
                .list_with_offset(Some(&prefix), &join(&prefix, &from.to_string())),
            None => self.object_store().list(Some(&prefix)),
        };
        listing.try_collect().await.map_err(|source| Error::Store {
            operation: "list",
            location: prefix.to_string(),
            source,
        })
    }

    /// Records that `files` are stored: one entry naming them. Call it only once every
    /// one of them is durable.
    pub async fn append_journal(&self, files: &[DataFile]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let entry = Entry {
            version: 1,
            files: files
                .iter()
                .map(|file| file.key(&Path::default()).to_string())
                .collect(),
        };
        let bytes = serde_json::to_vec(&entry)
            .map_err(|error| Error::Config(format!("cannot encode a journal entry: {error}")))?;
        let key = join(&self.journal_root(), &format!("{}.json", Ulid::new()));
        self.put(&key, bytes.into()).await
    }

    /// The events files named by journal entries since `cursor` (at most
    /// `MAX_ENTRIES_PER_READ` entries a call), each checked against the store, and the
    /// cursor after them. An entry that cannot be read or names what is not a stored data
    /// file is skipped (and logged): the next full listing finds what it should have named.
    ///
    /// `now_ms` is the reader's clock: an entry dated later (a writer's clock ahead, or a
    /// forged name) is read but does not move the cursor past the present.
    pub async fn read_journal(
        &self,
        cursor: &JournalCursor,
        now_ms: i64,
    ) -> Result<(Vec<(DataFile, ObjectMeta)>, JournalCursor)> {
        let from = Ulid::from_parts(u64::try_from(cursor.list_from_ms().max(0)).unwrap_or(0), 0);
        let listed = self.list_journal(Some(from)).await?;
        let mut entries: Vec<(Ulid, ObjectMeta)> = listed
            .into_iter()
            .filter_map(|meta| entry_id(&meta.location).map(|id| (id, meta)))
            .filter(|(_, meta)| !cursor.seen.contains(meta.location.as_ref()))
            .collect();
        entries.sort_by_key(|(id, _)| *id);
        entries.truncate(MAX_ENTRIES_PER_READ);

        let mut next = cursor.clone();
        let mut files = Vec::new();
        let mut keys = BTreeSet::new();
        for (id, meta) in entries {
            next.seen.insert(meta.location.to_string());
            let dated = i64::try_from(id.timestamp_ms()).unwrap_or(i64::MAX);
            next.newest_ms = next.newest_ms.max(dated.min(now_ms));
            if meta.size > MAX_ENTRY_BYTES as u64 {
                tracing::warn!(entry = %meta.location, size = meta.size, "journal entry too large; skipped");
                continue;
            }
            let entry = match self.get(&meta.location).await {
                Ok(bytes) => serde_json::from_slice::<Entry>(&bytes),
                Err(error) => {
                    tracing::warn!(entry = %meta.location, %error, "journal entry unreadable; skipped");
                    continue;
                }
            };
            let Ok(entry) = entry else {
                tracing::warn!(entry = %meta.location, "journal entry is not a journal entry; skipped");
                continue;
            };
            keys.extend(entry.files);
        }
        for key in keys {
            let location = join(self.root(), &key);
            let Some(file) = DataFile::parse(self.root(), &location) else {
                tracing::warn!(%key, "journal names what is not a data file; skipped");
                continue;
            };
            if file.partition.table != Table::Events {
                continue;
            }
            match self.object_store().head(&location).await {
                Ok(meta) => files.push((file, meta)),
                Err(object_store::Error::NotFound { .. }) => {
                    tracing::warn!(%key, "journal names a file that is not stored; skipped");
                }
                Err(source) => {
                    return Err(Error::Store {
                        operation: "head",
                        location: location.to_string(),
                        source,
                    });
                }
            }
        }
        // Entries before the overlap are not listed again: forget them.
        let floor = next.list_from_ms();
        next.seen.retain(|key| {
            entry_id(&Path::from(key.as_str()))
                .is_none_or(|id| i64::try_from(id.timestamp_ms()).unwrap_or(i64::MAX) >= floor)
        });
        Ok((files, next))
    }

    /// Every key the journal's retained entries name (relative to the root), whatever
    /// the table: what the ingesters stored in the last [`JOURNAL_RETENTION`]. Unreadable
    /// entries are skipped.
    pub async fn journaled_keys(&self) -> Result<BTreeSet<String>> {
        let mut keys = BTreeSet::new();
        for meta in self.list_journal(None).await? {
            if meta.size > MAX_ENTRY_BYTES as u64 {
                continue;
            }
            let Ok(bytes) = self.get(&meta.location).await else {
                continue;
            };
            if let Ok(entry) = serde_json::from_slice::<Entry>(&bytes) {
                keys.extend(entry.files);
            }
        }
        Ok(keys)
    }

    /// Removes journal entries older than [`JOURNAL_RETENTION`] (S3 buckets also expire
    /// them by a lifecycle rule; a local store has only this). Returns how many it removed.
    pub async fn prune_journal(&self, now_ms: i64) -> Result<usize> {
        let cutoff = now_ms - JOURNAL_RETENTION.as_millis() as i64;
        let listed = self.list_journal(None).await?;
        let mut removed = 0;
        for meta in listed {
            let old =
                entry_id(&meta.location).is_some_and(|id| (id.timestamp_ms() as i64) < cutoff);
            if old {
                match self.object_store().delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                    Err(source) => {
                        return Err(Error::Store {
                            operation: "delete",
                            location: meta.location.to_string(),
                            source,
                        });
                    }
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;

    use super::*;
    use crate::layout::Partition;

    const HOUR: i64 = 3_600_000;

    fn archive() -> Archive {
        Archive::from_store(Arc::new(InMemory::new()), Path::from("islets"), "memory")
    }

    fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    /// A data file of `table` stored in the hour of `at_ms`.
    async fn stored(archive: &Archive, table: Table, at_ms: i64) -> DataFile {
        let file = DataFile::new(Partition::for_timestamp_ms(table, at_ms));
        archive
            .put(
                &file.key(archive.root()),
                bytes::Bytes::from_static(b"parquet"),
            )
            .await
            .expect("put");
        file
    }

    /// An entry named as if written at `at_ms`, with this body.
    async fn entry_at(archive: &Archive, at_ms: i64, body: &str) {
        let id = Ulid::from_parts(u64::try_from(at_ms).expect("positive"), 7);
        let key = join(&archive.journal_root(), &format!("{id}.json"));
        archive
            .put(&key, body.as_bytes().to_vec().into())
            .await
            .expect("put");
    }

    fn names(file: &DataFile) -> String {
        serde_json::json!({"version": 1, "files": [file.key(&Path::default()).to_string()]})
            .to_string()
    }

    #[tokio::test]
    async fn files_the_journal_names_are_read_once_with_the_stores_metadata() {
        let archive = archive();
        let cursor = JournalCursor::after_listing(now_ms());
        let old = stored(&archive, Table::Events, now_ms() - 72 * HOUR).await;
        let quarantined = stored(&archive, Table::Quarantine, now_ms()).await;
        archive
            .append_journal(&[old, quarantined])
            .await
            .expect("journal");
        archive.append_journal(&[]).await.expect("nothing to name");
        let (files, cursor) = archive.read_journal(&cursor, now_ms()).await.expect("read");
        assert_eq!(files.len(), 1, "events files only");
        assert_eq!(files[0].0, old);
        assert_eq!(files[0].1.size, 7, "the size is the store's");
        assert_eq!(files[0].1.location, old.key(archive.root()));
        let (again, _) = archive.read_journal(&cursor, now_ms()).await.expect("read");
        assert!(again.is_empty(), "an entry is read once");
    }

    #[tokio::test]
    async fn entries_that_name_nothing_stored_are_skipped_and_the_rest_read() {
        let archive = archive();
        let cursor = JournalCursor::after_listing(now_ms());
        let good = stored(&archive, Table::Events, now_ms()).await;
        let never_stored = DataFile::new(Partition::for_timestamp_ms(Table::Events, now_ms()));
        let now = now_ms();
        entry_at(&archive, now - 3, "not json").await;
        entry_at(&archive, now - 2, &names(&never_stored)).await;
        entry_at(
            &archive,
            now - 1,
            r#"{"version":1,"files":["../../etc/passwd","events/date=2026-13-01/hour=00/part-x.parquet","/abs"]}"#,
        )
        .await;
        entry_at(&archive, now, &"x".repeat(MAX_ENTRY_BYTES + 1)).await;
        archive.append_journal(&[good]).await.expect("journal");
        let (files, _) = archive.read_journal(&cursor, now_ms()).await.expect("read");
        let found: Vec<DataFile> = files.into_iter().map(|(file, _)| file).collect();
        assert_eq!(found, [good]);
    }

    #[tokio::test]
    async fn a_late_entry_within_the_overlap_is_found_and_the_future_does_not_move_the_cursor() {
        let archive = archive();
        let now = now_ms();
        let cursor = JournalCursor::after_listing(now);
        let first = stored(&archive, Table::Events, now).await;
        archive.append_journal(&[first]).await.expect("journal");
        let (files, cursor) = archive.read_journal(&cursor, now_ms()).await.expect("read");
        assert_eq!(files.len(), 1);
        // Another writer's clock is 30 s behind: its entry sorts before the one read.
        let behind = stored(&archive, Table::Events, now).await;
        entry_at(&archive, now - 30_000, &names(&behind)).await;
        // A writer whose clock is a day ahead.
        let ahead = stored(&archive, Table::Events, now).await;
        entry_at(&archive, now + 24 * HOUR, &names(&ahead)).await;
        let (files, cursor) = archive.read_journal(&cursor, now_ms()).await.expect("read");
        let mut found: Vec<DataFile> = files.into_iter().map(|(file, _)| file).collect();
        found.sort_by_key(|file| file.id);
        let mut expected = vec![behind, ahead];
        expected.sort_by_key(|file| file.id);
        assert_eq!(found, expected);
        assert!(
            cursor.newest_ms <= now_ms(),
            "the cursor stays in the present"
        );
        // So an entry written now is still found.
        let next = stored(&archive, Table::Events, now).await;
        archive.append_journal(&[next]).await.expect("journal");
        let (files, _) = archive.read_journal(&cursor, now_ms()).await.expect("read");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, next);
    }

    #[tokio::test]
    async fn pruning_removes_entries_past_the_retention_only() {
        let archive = archive();
        let now = now_ms();
        let file = stored(&archive, Table::Events, now).await;
        let retention = JOURNAL_RETENTION.as_millis() as i64;
        entry_at(&archive, now - retention - HOUR, &names(&file)).await;
        entry_at(&archive, now - retention + HOUR, &names(&file)).await;
        archive.append_journal(&[file]).await.expect("journal");
        assert_eq!(archive.prune_journal(now).await.expect("prune"), 1);
        assert_eq!(archive.prune_journal(now).await.expect("prune"), 0);
        let left: Vec<ObjectMeta> = archive
            .object_store()
            .list(Some(&archive.journal_root()))
            .try_collect()
            .await
            .expect("list");
        assert_eq!(left.len(), 2);
        assert!(
            archive
                .object_store()
                .head(&file.key(archive.root()))
                .await
                .is_ok(),
            "data files are never touched"
        );
    }
}
