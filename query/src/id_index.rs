//! Which files hold an id, for the whole archive, in memory: a 64-bit fingerprint of
//! every `event_id` of every file, and the `correlation_id` bloom filters.
//!
//! Without a range, a lookup could match any hour of the year. Reading each file's footer
//! and filters per query would cost one or two requests per file; instead each file is
//! read once (files are immutable) and kept here, so a lookup tests every file in memory
//! and DataFusion opens only the files that hold the id.
//!
//! The event ids are exact (up to 64-bit hash collisions), not a bloom filter, because
//! the engine also asks which *other* files hold a copy of the events an answer is about:
//! the copy ingested first wins wherever it lies, so a copy that claims another hour, type
//! or flow cannot stand in for it (see `crate::sql`). A 1% false-positive rate per file
//! would make that question name most of the archive. Memory: 8 bytes per archived row
//! plus ~1.2 bytes per event for the correlation filters: ~460 MB for a year of 50M
//! events; the first query reads the `event_id` column of every file once. Files the
//! listing no longer shows are dropped.
//!
//! Reading a file's footer is also how the engine tells an **unreadable** file (truncated
//! by a crash, or not Parquet at all) from a store that is unavailable: a file whose
//! footer or filters cannot be decoded is recorded here, with the reason, and every query
//! leaves it out and says so (`incomplete`), instead of failing as a whole. A store error
//! is not a verdict on the file: it fails the query as before, and the file is read again
//! next time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::AsArray;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::bloom_filter::Sbbf;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use tokio::sync::Mutex;

use crate::error::{Error, Result};

/// Files whose filters are read at once.
const CONCURRENT_READS: usize = 32;

/// The two id columns with bloom filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdColumn {
    /// `event_id`.
    EventId,
    /// `correlation_id`.
    CorrelationId,
}

impl IdColumn {
    fn name(self) -> &'static str {
        match self {
            IdColumn::EventId => "event_id",
            IdColumn::CorrelationId => "correlation_id",
        }
    }
}

/// The 64-bit fingerprint of an id (stable within a process: fingerprints are never
/// stored). A collision only makes a file look like a holder; the SQL compares the ids.
fn fingerprint(id: &str) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(id.as_bytes());
    hasher.finish()
}

/// What is known of one file's ids.
#[derive(Debug, Default)]
struct FileFilters {
    /// The fingerprints of its event ids, sorted; `None` when it has no such column.
    event_ids: Option<Vec<u64>>,
    /// One bloom filter per row group, `None` where the row group has none.
    correlation_id: Vec<Option<Sbbf>>,
}

impl FileFilters {
    /// Whether the file may hold any of `values` in `column`.
    fn may_contain(&self, column: IdColumn, values: &[String]) -> bool {
        match column {
            IdColumn::EventId => self.event_ids.as_ref().is_none_or(|prints| {
                values
                    .iter()
                    .any(|value| prints.binary_search(&fingerprint(value)).is_ok())
            }),
            IdColumn::CorrelationId => {
                self.correlation_id.is_empty()
                    || self.correlation_id.iter().any(|filter| match filter {
                        None => true,
                        Some(filter) => values.iter().any(|value| filter.check(value.as_str())),
                    })
            }
        }
    }
}

/// Bloom filters of the archive's files, by object path.
pub(crate) struct IdIndex {
    store: Arc<dyn ObjectStore>,
    files: Mutex<HashMap<Path, Arc<FileFilters>>>,
    /// Files that cannot be decoded, with why.
    unreadable: std::sync::Mutex<BTreeMap<Path, String>>,
}

impl IdIndex {
    /// An empty index over the files of this store.
    pub(crate) fn new(store: Arc<dyn ObjectStore>) -> Self {
        IdIndex {
            store,
            files: Mutex::new(HashMap::new()),
            unreadable: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    fn unreadable_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Path, String>> {
        self.unreadable
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Whether `path` is known to be unreadable.
    pub(crate) fn is_unreadable(&self, path: &Path) -> bool {
        self.unreadable_map().contains_key(path)
    }

    /// Every file known to be unreadable, with why.
    pub(crate) fn unreadable(&self) -> Vec<(Path, String)> {
        self.unreadable_map()
            .iter()
            .map(|(path, reason)| (path.clone(), reason.clone()))
            .collect()
    }

    /// Reads the footer and filters of each of `files` not read yet; records those that
    /// cannot be decoded. Returns how many files were newly found unreadable.
    pub(crate) async fn check(&self, files: &[&ObjectMeta]) -> Result<usize> {
        let before = self.unreadable_map().len();
        self.load(files).await?;
        Ok(self.unreadable_map().len() - before)
    }

    /// Of `files`, those that may hold one of `values` in `column`. Reads the filters of
    /// files not seen before.
    pub(crate) async fn candidates<'a>(
        &self,
        files: impl IntoIterator<Item = &'a ObjectMeta>,
        column: IdColumn,
        values: &[String],
    ) -> Result<Vec<&'a ObjectMeta>> {
        let files: Vec<&ObjectMeta> = files.into_iter().collect();
        self.load(&files).await?;
        let known = self.files.lock().await;
        Ok(files
            .into_iter()
            .filter(|meta| !self.is_unreadable(&meta.location))
            .filter(|meta| {
                known
                    .get(&meta.location)
                    .is_none_or(|filters| filters.may_contain(column, values))
            })
            .collect())
    }

    /// Of `others`, the files holding an event id that one of `selected` holds too: where
    /// other copies of the selected files' events lie. Reads the files not seen before.
    pub(crate) async fn sharing<'a>(
        &self,
        selected: &[&ObjectMeta],
        others: Vec<&'a ObjectMeta>,
    ) -> Result<Vec<&'a ObjectMeta>> {
        if others.is_empty() {
            return Ok(others);
        }
        let mut all: Vec<&ObjectMeta> = selected.to_vec();
        all.extend(others.iter().copied());
        self.load(&all).await?;
        let (chosen, rest) = {
            let known = self.files.lock().await;
            let get = |meta: &&ObjectMeta| known.get(&meta.location).cloned();
            let chosen: Vec<Arc<FileFilters>> = selected.iter().filter_map(get).collect();
            let rest: Vec<(&'a ObjectMeta, Option<Arc<FileFilters>>)> = others
                .into_iter()
                .filter(|meta| !self.is_unreadable(&meta.location))
                .map(|meta| (meta, get(&meta)))
                .collect();
            (chosen, rest)
        };
        // A selected file without the column could share anything: every other file.
        if chosen.iter().any(|filters| filters.event_ids.is_none()) {
            return Ok(rest.into_iter().map(|(meta, _)| meta).collect());
        }
        let mut union: Vec<u64> = chosen
            .iter()
            .filter_map(|filters| filters.event_ids.as_ref())
            .flatten()
            .copied()
            .collect();
        union.sort_unstable();
        union.dedup();
        Ok(rest
            .into_iter()
            .filter(|(_, filters)| {
                filters
                    .as_ref()
                    .and_then(|filters| filters.event_ids.as_ref())
                    .is_none_or(|prints| {
                        prints
                            .iter()
                            .any(|print| union.binary_search(print).is_ok())
                    })
            })
            .map(|(meta, _)| meta)
            .collect())
    }

    /// Forgets the filters of files that are not in `listing` (the whole archive).
    pub(crate) async fn retain_listed<'a>(
        &self,
        listing: impl IntoIterator<Item = &'a ObjectMeta>,
    ) {
        let listed: std::collections::HashSet<&Path> =
            listing.into_iter().map(|meta| &meta.location).collect();
        self.files
            .lock()
            .await
            .retain(|path, _| listed.contains(path));
    }

    /// Reads the filters of the files not held yet (outside the lock).
    async fn load(&self, files: &[&ObjectMeta]) -> Result<()> {
        let missing: Vec<ObjectMeta> = {
            let known = self.files.lock().await;
            files
                .iter()
                .filter(|meta| {
                    !known.contains_key(&meta.location) && !self.is_unreadable(&meta.location)
                })
                .map(|meta| (*meta).clone())
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let read: Vec<(Path, Option<FileFilters>)> = futures::stream::iter(missing)
            .map(|meta| async move {
                match self.read(&meta).await {
                    Ok(filters) => Ok((meta.location, Some(filters))),
                    Err(Verdict::Unreadable(reason)) => {
                        tracing::error!(file = %meta.location, %reason, "an archive file cannot be read; answers leave it out and say they are incomplete");
                        self.unreadable_map().insert(meta.location.clone(), reason);
                        Ok((meta.location, None))
                    }
                    Err(Verdict::Store(error)) => Err(error),
                }
            })
            .buffer_unordered(CONCURRENT_READS)
            .try_collect()
            .await?;
        let mut known = self.files.lock().await;
        for (path, filters) in read {
            if let Some(filters) = filters {
                known.insert(path, Arc::new(filters));
            }
        }
        Ok(())
    }

    async fn read(&self, meta: &ObjectMeta) -> std::result::Result<FileFilters, Verdict> {
        // A store error (the store is down, the file vanished) says nothing about the
        // file; anything else means its bytes are not a readable Parquet file.
        let failed = |error: parquet::errors::ParquetError| match error {
            ParquetError::External(inner) if inner.is::<object_store::Error>() => {
                Verdict::Store(Error::Engine(format!("ids of {}: {inner}", meta.location)))
            }
            other => Verdict::Unreadable(other.to_string()),
        };
        if meta.size == 0 {
            return Err(Verdict::Unreadable("the file is empty".to_owned()));
        }
        let reader = StoreReader {
            store: self.store.clone(),
            path: meta.location.clone(),
            size: meta.size,
        };
        let mut builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(failed)?;
        let metadata = builder.metadata().clone();
        let schema = metadata.file_metadata().schema_descr();
        let column_index = |column: IdColumn| {
            (0..schema.num_columns()).find(|index| schema.column(*index).name() == column.name())
        };
        let mut filters = FileFilters::default();
        if let Some(index) = column_index(IdColumn::CorrelationId) {
            for row_group in 0..metadata.num_row_groups() {
                filters.correlation_id.push(
                    builder
                        .get_row_group_column_bloom_filter(row_group, index)
                        .await
                        .map_err(failed)?,
                );
            }
        }
        if let Some(index) = column_index(IdColumn::EventId) {
            let mask = ProjectionMask::leaves(schema, [index]);
            let rows = usize::try_from(metadata.file_metadata().num_rows()).unwrap_or(0);
            let mut batches = builder
                .with_projection(mask)
                .with_batch_size(8192)
                .build()
                .map_err(failed)?;
            let mut prints = Vec::with_capacity(rows);
            while let Some(batch) = batches.next().await {
                let batch = batch.map_err(failed)?;
                let ids = batch.column(0).as_string_opt::<i32>().ok_or_else(|| {
                    Verdict::Unreadable("event_id is not a string column".to_owned())
                })?;
                prints.extend(ids.iter().flatten().map(fingerprint));
            }
            prints.sort_unstable();
            prints.shrink_to_fit();
            filters.event_ids = Some(prints);
        }
        Ok(filters)
    }

    /// Files whose filters are held.
    #[cfg(test)]
    pub(crate) async fn files_held(&self) -> usize {
        self.files.lock().await.len()
    }
}

/// Why a file's filters could not be read.
enum Verdict {
    /// Its bytes are not a readable Parquet file.
    Unreadable(String),
    /// The store failed: nothing is known about the file.
    Store(Error),
}

/// Range reads of one object: the footer, then each bloom filter.
struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|error| ParquetError::External(Box::new(error)))
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        Box::pin(async move {
            let size = self.size;
            // The footer only: no page index is needed for the bloom filters.
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fixture;
    use islets_core::layout::Table;

    #[tokio::test]
    async fn only_files_whose_filters_may_hold_the_id_are_candidates() {
        let fixture = fixture().await;
        let listing = fixture
            .archive
            .list_files(Table::Events)
            .await
            .expect("list");
        let metas: Vec<ObjectMeta> = listing.into_iter().map(|(_, meta)| meta).collect();
        let index = IdIndex::new(fixture.archive.object_store().clone());
        let all = index
            .candidates(&metas, IdColumn::EventId, &["no-such-event".to_owned()])
            .await
            .expect("candidates");
        assert!(all.len() <= 1, "a missing id rules out (almost) every file");
        assert_eq!(
            index.files_held().await,
            metas.len(),
            "every file's filters are held"
        );
        let holding: Vec<&ObjectMeta> = index
            .candidates(&metas, IdColumn::EventId, &["event-016".to_owned()])
            .await
            .expect("candidates");
        // event-016 is in one file of the second batch and in the redelivered copies.
        assert!(
            !holding.is_empty() && holding.len() < metas.len(),
            "{}",
            holding.len()
        );
        let flows = index
            .candidates(&metas, IdColumn::CorrelationId, &["corr-1".to_owned()])
            .await
            .expect("candidates");
        assert!(!flows.is_empty());
        // Files gone from the listing are forgotten.
        index.retain_listed(&metas[..1]).await;
        assert_eq!(index.files_held().await, 1);
    }
}
