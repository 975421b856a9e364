//! The embedded engine: DataFusion over the archive's Parquet files.
//!
//! A query reads only the files that can match: hour partitions outside `since`/`until`
//! are skipped from the listing (no request at all), and inside the remaining files
//! DataFusion skips row groups and pages by statistics, bloom filters (`event_id`,
//! `correlation_id`) and the page index, reading footers from its cache. The listing
//! itself is cached for [`LISTING_TTL`]; after it, the open hours are listed again and the
//! journal is read from where it was (`islets_core::journal`), so a new file in any hour,
//! however old, is visible within seconds; the whole archive is listed every few minutes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type, TimestampMillisecondType};
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};
use islets_core::journal::JournalCursor;
use islets_core::layout::{DataFile, Partition, Table};
use islets_core::record::EventRecord;
use islets_core::schema::{events_from_batch, events_schema};
use islets_core::store::Archive;
use object_store::ObjectMeta;
use tokio::sync::Mutex;
use ulid::Ulid;

use crate::error::{Error, Result};
use crate::id_index::{IdColumn, IdIndex};
use crate::model::{Cursor, EventFilter, EventQuery, Order, StatsQuery};
use crate::sql::{
    CompiledQuery, Dialect, EVENTS_TABLE, RAW_EVENTS_TABLE, compile_correlation, compile_export,
    compile_page, compile_stats, events_view,
};
use crate::table::ArchiveFiles;

/// How long a listing of the archive is reused; then the open hours are listed again.
pub const LISTING_TTL: Duration = Duration::from_secs(2);
/// Hours this close to now (and later) are open: new files land there, so they are
/// listed again every [`LISTING_TTL`] (one LIST that starts at their keys).
pub(crate) const OPEN_HOURS: i64 = 2;
/// How long the listing of closed hours is reused. Files landing in a closed hour (a
/// backfill, a DLQ re-drive) become visible within this time.
pub(crate) const CLOSED_LISTING_TTL: Duration = Duration::from_secs(300);
const STORE_URL: &str = "islets://archive";
/// Memory all queries of one engine may hold before sorts spill to disk.
pub(crate) const QUERY_MEMORY_BYTES: usize = 512 * 1024 * 1024;

/// Memory one `/v1/sql` statement may hold (sorts, joins, aggregates), apart from the
/// engine's own queries: a heavy statement cannot starve pages and exports.
pub(crate) const SQL_MEMORY_BYTES: usize = 256 * 1024 * 1024;
/// Largest `/v1/sql` answer, as encoded JSON rows; beyond it the statement is refused with
/// `result_too_large` (never a truncated document).
pub const MAX_SQL_RESULT_BYTES: usize = 16 * 1024 * 1024;

/// The answer to read-only SQL.
#[derive(Debug, Clone)]
pub struct SqlResult {
    /// The column names, in order.
    pub columns: Vec<String>,
    /// The rows, a JSON array of one object per row, encoded once (not parsed again).
    pub rows: Box<serde_json::value::RawValue>,
    /// How many rows `rows` holds.
    pub row_count: usize,
    /// More rows existed than were returned.
    pub truncated: bool,
}

impl SqlResult {
    /// The rows parsed (tests and small answers).
    pub fn parsed_rows(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(self.rows.get()).unwrap_or_default()
    }
}

/// A `Write` that refuses to grow past a byte limit (so an answer is never built beyond it).
struct CappedBuffer {
    bytes: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl std::io::Write for CappedBuffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + data.len() > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("the answer is over the byte limit"));
        }
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One bucket of `/v1/stats`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsBucket {
    /// Start of the bucket, RFC 3339.
    pub start: String,
    /// The group (`listing.sold`, `listing`, `listing-management-api`) when grouped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Distinct events.
    pub events: u64,
}

/// Events streamed by an export.
pub type EventStream = futures::stream::BoxStream<'static, Result<EventRecord>>;

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    /// The page's events, in the query's order.
    pub events: Vec<EventRecord>,
    /// Present when more rows follow.
    pub next_cursor: Option<String>,
}

type Listing = Arc<Vec<(DataFile, ObjectMeta)>>;

/// The cached listing and when its parts were last listed.
struct CachedListing {
    files: Listing,
    /// The whole archive.
    full_at: Instant,
    /// The open hours and the journal.
    open_at: Instant,
    /// Where the journal was last read.
    journal: JournalCursor,
}

/// DataFusion over one archive.
pub struct DataFusionEngine {
    archive: Archive,
    runtime: Arc<RuntimeEnv>,
    /// `/v1/sql`'s own memory budget ([`SQL_MEMORY_BYTES`]).
    sql_runtime: Arc<RuntimeEnv>,
    listing: Mutex<Option<CachedListing>>,
    closed_listing_ttl: Duration,
    ids: IdIndex,
}

impl DataFusionEngine {
    /// An engine over this archive (nothing is read until the first query).
    pub fn new(archive: Archive) -> Result<Self> {
        // Queries that sort more than this (an export's de-duplication) spill to disk
        // instead of growing without bound.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(QUERY_MEMORY_BYTES, 1.0)
            .build_arc()
            .map_err(|error| Error::Engine(error.to_string()))?;
        let url = url::Url::parse(STORE_URL).map_err(|error| Error::Engine(error.to_string()))?;
        let sql_runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(SQL_MEMORY_BYTES, 1.0)
            .build_arc()
            .map_err(|error| Error::Engine(error.to_string()))?;
        // The archive's store, rooted so that object keys are the layout keys.
        runtime.register_object_store(&url, archive.object_store().clone());
        sql_runtime.register_object_store(&url, archive.object_store().clone());
        let ids = IdIndex::new(archive.object_store().clone());
        Ok(DataFusionEngine {
            archive,
            runtime,
            sql_runtime,
            listing: Mutex::new(None),
            closed_listing_ttl: CLOSED_LISTING_TTL,
            ids,
        })
    }

    /// Every data file, from the cache: the open hours are listed again, and the journal
    /// read from where it was, after [`LISTING_TTL`]; the whole archive after
    /// [`CLOSED_LISTING_TTL`].
    async fn listing(&self) -> Result<Listing> {
        let mut cached = self.listing.lock().await;
        let now = Instant::now();
        match cached.as_mut() {
            Some(cache) if cache.open_at.elapsed() < LISTING_TTL => {
                return Ok(cache.files.clone());
            }
            Some(cache) if cache.full_at.elapsed() < self.closed_listing_ttl => {
                let now_ms = chrono::Utc::now().timestamp_millis();
                let first_open =
                    Partition::for_timestamp_ms(Table::Events, now_ms - OPEN_HOURS * 3_600_000);
                let open = self
                    .archive
                    .list_files_from(&first_open)
                    .await
                    .map_err(Error::Store)?;
                let (journaled, journal) = self
                    .archive
                    .read_journal(&cache.journal, now_ms)
                    .await
                    .map_err(Error::Store)?;
                let mut files: Vec<(DataFile, ObjectMeta)> = cache
                    .files
                    .iter()
                    .filter(|(file, _)| file.partition < first_open)
                    .cloned()
                    .collect();
                files.extend(open);
                files.extend(journaled);
                files.sort_by(|a, b| a.1.location.cmp(&b.1.location));
                files.dedup_by(|a, b| a.1.location == b.1.location);
                cache.files = Arc::new(files);
                cache.open_at = now;
                cache.journal = journal;
                return Ok(cache.files.clone());
            }
            _ => {}
        }
        let listed_at_ms = chrono::Utc::now().timestamp_millis();
        let files = Arc::new(
            self.archive
                .list_files(Table::Events)
                .await
                .map_err(Error::Store)?,
        );
        *cached = Some(CachedListing {
            files: files.clone(),
            full_at: now,
            open_at: now,
            journal: JournalCursor::after_listing(listed_at_ms),
        });
        self.ids
            .retain_listed(files.iter().map(|(_, meta)| meta))
            .await;
        Ok(files)
    }

    /// The files a filter needs: partitions in its range, taken at `snapshot`, and for
    /// id filters only the files whose bloom filters may hold the ids.
    async fn select(
        &self,
        listing: &Listing,
        filter: &EventFilter,
        snapshot: Option<Ulid>,
    ) -> Result<Vec<PartitionedFile>> {
        let in_range: Vec<&(DataFile, ObjectMeta)> = listing
            .iter()
            .filter(|(file, _)| {
                snapshot.is_none_or(|snapshot| file.id <= snapshot)
                    && filter.may_match(&file.partition)
            })
            .collect();
        let probe = if !filter.event_ids.is_empty() {
            Some((IdColumn::EventId, filter.event_ids.clone()))
        } else {
            filter
                .correlation_id
                .as_ref()
                .map(|id| (IdColumn::CorrelationId, vec![id.clone()]))
        };
        let Some((column, values)) = probe else {
            return Ok(self.readable(in_range.into_iter().map(archive_file).collect()));
        };
        let candidates = self
            .ids
            .candidates(in_range.iter().map(|(_, meta)| meta), column, &values)
            .await?;
        let wanted: std::collections::HashSet<&object_store::path::Path> =
            candidates.iter().map(|meta| &meta.location).collect();
        Ok(in_range
            .into_iter()
            .filter(|(_, meta)| wanted.contains(&meta.location))
            .map(archive_file)
            .collect())
    }

    /// The listed files (at `snapshot`) not among `files` that hold a copy of one of
    /// `events`. An event is decided over all its copies (the copy ingested first wins,
    /// wherever it lies), so these are added and the answer computed again.
    async fn other_copies(
        &self,
        listing: &Listing,
        snapshot: Option<Ulid>,
        files: &[PartitionedFile],
        events: &[EventRecord],
    ) -> Result<Vec<PartitionedFile>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<String> = events.iter().map(|event| event.event_id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let others = others(listing, snapshot, files);
        let holders = self
            .ids
            .candidates(others.iter().map(|(_, meta)| meta), IdColumn::EventId, &ids)
            .await?;
        let wanted: HashSet<&object_store::path::Path> =
            holders.iter().map(|meta| &meta.location).collect();
        Ok(others
            .into_iter()
            .filter(|(_, meta)| wanted.contains(&meta.location))
            .map(archive_file)
            .collect())
    }

    /// Runs `query` over `files`, adding the files that hold other copies of the events
    /// it answers until none is missing. After [`ROUNDS`] rounds (many forged copies),
    /// every file sharing an id with those read is added at once, and that answer is final.
    async fn decided<F, Fut>(
        &self,
        listing: &Listing,
        snapshot: Option<Ulid>,
        mut files: Vec<PartitionedFile>,
        query: F,
    ) -> Result<Vec<EventRecord>>
    where
        F: Fn(Vec<PartitionedFile>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<EventRecord>>>,
    {
        for _ in 0..ROUNDS {
            let events = self.tolerant(files.clone(), &query).await?;
            let more = self
                .other_copies(listing, snapshot, &files, &events)
                .await?;
            if more.is_empty() {
                return Ok(events);
            }
            tracing::info!(
                files = more.len(),
                "other copies of the answer's events lie outside the files the query selected; answering again with them"
            );
            files.extend(more);
        }
        let files = self.with_other_copies(listing, snapshot, files).await?;
        self.tolerant(files, &query).await
    }

    /// `files` and the listed files (at `snapshot`) holding another copy of an event that
    /// `files` hold: for answers that stream (exports) or aggregate (stats), which cannot
    /// be computed again from their result.
    async fn with_other_copies(
        &self,
        listing: &Listing,
        snapshot: Option<Ulid>,
        mut files: Vec<PartitionedFile>,
    ) -> Result<Vec<PartitionedFile>> {
        let others = others(listing, snapshot, &files);
        let selected: Vec<&ObjectMeta> = files.iter().map(|file| &file.object_meta).collect();
        let sharing = self
            .ids
            .sharing(&selected, others.iter().map(|(_, meta)| meta).collect())
            .await?;
        let wanted: HashSet<&object_store::path::Path> =
            sharing.iter().map(|meta| &meta.location).collect();
        let more: Vec<PartitionedFile> = others
            .into_iter()
            .filter(|(_, meta)| wanted.contains(&meta.location))
            .map(archive_file)
            .collect();
        if !more.is_empty() {
            tracing::info!(
                files = more.len(),
                "other copies of the selected events lie outside the files the query selected; reading them too"
            );
        }
        files.extend(more);
        Ok(files)
    }

    /// `files` without those known to be unreadable.
    fn readable(&self, files: Vec<PartitionedFile>) -> Vec<PartitionedFile> {
        files
            .into_iter()
            .filter(|file| !self.ids.is_unreadable(&file.object_meta.location))
            .collect()
    }

    /// Runs `query` over the readable `files`. When it fails as the engine (not the
    /// caller, not the store), the files' footers are read: if some are unreadable, the
    /// query runs again without them (the caller says the answer is incomplete), so one
    /// truncated file never turns every query into an error.
    async fn tolerant<'a, T, F, Fut>(&'a self, files: Vec<PartitionedFile>, query: F) -> Result<T>
    where
        F: Fn(Vec<PartitionedFile>) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + 'a,
    {
        let files = self.readable(files);
        match query(files.clone()).await {
            Err(Error::Engine(message)) => {
                let metas: Vec<&ObjectMeta> = files.iter().map(|file| &file.object_meta).collect();
                if self.ids.check(&metas).await? == 0 {
                    return Err(Error::Engine(message));
                }
                query(self.readable(files)).await
            }
            other => other,
        }
    }

    fn context(&self) -> SessionContext {
        let config = SessionConfig::new().with_target_partitions(4);
        SessionContext::new_with_config_rt(config, self.runtime.clone())
    }

    /// A session for caller SQL: its own memory budget, bounded functions.
    fn sql_session(&self, files: Vec<PartitionedFile>) -> Result<SessionContext> {
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_batch_size(1024);
        let context = SessionContext::new_with_config_rt(config, self.sql_runtime.clone());
        crate::bounds::bound_functions(&context);
        let store_url = ObjectStoreUrl::parse(STORE_URL).map_err(engine_error)?;
        let table = ArchiveFiles::new(events_schema(), store_url, files);
        context
            .register_table(RAW_EVENTS_TABLE, Arc::new(table))
            .map_err(engine_error)?;
        Ok(context)
    }

    /// Runs compiled SQL over `files`, collecting the rows.
    async fn run(
        &self,
        files: Vec<PartitionedFile>,
        compiled: CompiledQuery,
    ) -> Result<Vec<EventRecord>> {
        self.stream(files, compiled).await?.try_collect().await
    }

    /// A session in which `files` are the table `table_name`.
    fn session(&self, files: Vec<PartitionedFile>, table_name: &str) -> Result<SessionContext> {
        let context = self.context();
        let store_url = ObjectStoreUrl::parse(STORE_URL).map_err(engine_error)?;
        let table = ArchiveFiles::new(events_schema(), store_url, files);
        context
            .register_table(table_name, Arc::new(table))
            .map_err(engine_error)?;
        Ok(context)
    }

    /// Compiled SQL over `files` (as the `events` table), planned with its parameters.
    async fn frame(
        &self,
        files: Vec<PartitionedFile>,
        compiled: CompiledQuery,
    ) -> Result<DataFrame> {
        self.session(files, EVENTS_TABLE)?
            .sql(&compiled.sql)
            .await
            .and_then(|frame| frame.with_param_values(compiled.parameters))
            .map_err(engine_error)
    }

    /// Runs compiled SQL over `files`, streaming the rows batch by batch.
    async fn stream(
        &self,
        files: Vec<PartitionedFile>,
        compiled: CompiledQuery,
    ) -> Result<EventStream> {
        let frame = self.frame(files, compiled).await?;
        let batches = frame.execute_stream().await.map_err(engine_error)?;
        let events = batches
            .map_err(engine_error)
            .and_then(|batch| async move { events_from_batch(&batch).map_err(Error::Store) })
            .map_ok(|events| futures::stream::iter(events.into_iter().map(Ok)))
            .try_flatten();
        Ok(events.boxed())
    }
}

/// Rounds of adding the files of other copies before all sharing files are added at once.
const ROUNDS: usize = 4;

/// The listed files (at `snapshot`) that are not among `files`.
fn others<'a>(
    listing: &'a Listing,
    snapshot: Option<Ulid>,
    files: &[PartitionedFile],
) -> Vec<&'a (DataFile, ObjectMeta)> {
    let chosen: HashSet<&object_store::path::Path> = files
        .iter()
        .map(|file| &file.object_meta.location)
        .collect();
    listing
        .iter()
        .filter(|(file, meta)| {
            snapshot.is_none_or(|snapshot| file.id <= snapshot) && !chosen.contains(&meta.location)
        })
        .collect()
}

/// A listed file with its partition values (`date`, `hour`), as the table reads it.
fn archive_file((file, meta): &(DataFile, ObjectMeta)) -> PartitionedFile {
    let mut partitioned = PartitionedFile::new_from_meta(meta.clone());
    partitioned.partition_values = vec![
        ScalarValue::Utf8(Some(file.partition.date.format("%Y-%m-%d").to_string())),
        ScalarValue::Utf8(Some(format!("{:02}", file.partition.hour))),
    ];
    partitioned
}

#[cfg(test)]
impl DataFusionEngine {
    pub(crate) fn with_closed_listing_ttl(mut self, ttl: Duration) -> Self {
        self.closed_listing_ttl = ttl;
        self
    }

    /// Runs SQL text (no parameters) over every listed file, as the `events` table.
    pub(crate) async fn run_text(&self, sql: &str) -> Result<Vec<EventRecord>> {
        let listing = self.listing().await?;
        let files = listing.iter().map(archive_file).collect();
        let compiled = CompiledQuery {
            sql: sql.to_owned(),
            parameters: Vec::new(),
        };
        self.run(files, compiled).await
    }
}

fn engine_error(error: DataFusionError) -> Error {
    Error::Engine(error.to_string())
}

/// Whether a file could not be decoded or read, somewhere in the error's chain.
fn reading_failed(error: &DataFusionError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(inner) = current {
        if inner.is::<parquet::errors::ParquetError>() || inner.is::<object_store::Error>() {
            return true;
        }
        if let Some(DataFusionError::ParquetError(_) | DataFusionError::ObjectStore(_)) =
            inner.downcast_ref::<DataFusionError>()
        {
            return true;
        }
        current = inner.source();
    }
    false
}

/// Errors of caller SQL: planning and execution errors are the caller's (4xx), a store
/// failure is not.
fn sql_error(error: DataFusionError) -> Error {
    if let Some(too_large) = crate::bounds::value_too_large(&error) {
        return Error::ValueTooLarge(too_large.to_string());
    }
    if reading_failed(&error) {
        return Error::Engine(error.to_string());
    }
    match error.find_root() {
        DataFusionError::ObjectStore(source) => Error::Engine(source.to_string()),
        // A file that cannot be decoded: the engine's (it leaves the file out and retries).
        DataFusionError::ParquetError(source) => Error::Engine(source.to_string()),
        DataFusionError::ResourcesExhausted(reason) => Error::QueryTooLarge(format!(
            "the statement needs more than the {} MiB /v1/sql may hold ({reason}): aggregate more, select fewer or smaller columns, or narrow the time range",
            SQL_MEMORY_BYTES / (1024 * 1024)
        )),
        _ => Error::InvalidSql(error.to_string()),
    }
}

/// What the API (and replay, and the console) ask of an engine.
#[async_trait]
pub trait QueryEngine: Send + Sync + 'static {
    /// One page of events matching `query`, duplicates collapsed.
    async fn events(&self, query: &EventQuery) -> Result<EventPage>;

    /// The events of one correlation id, by `occurred_at` then `published_at`; at most
    /// `max_rows`.
    async fn correlation(&self, correlation_id: &str, max_rows: usize) -> Result<Vec<EventRecord>>;

    /// Every event matching `filter`, streamed in `order` with bounded memory.
    async fn export(&self, filter: &EventFilter, order: Order) -> Result<EventStream>;

    /// Runs one read-only SQL query over the `events` view (duplicates collapsed) and
    /// `events_raw`; at most `max_rows` rows.
    async fn sql(&self, sql: &str, max_rows: usize) -> Result<SqlResult>;

    /// Distinct events per time bucket (and group).
    async fn stats(&self, query: &StatsQuery) -> Result<Vec<StatsBucket>>;

    /// Whether the engine can answer now (the store or the service answers).
    async fn ready(&self) -> Result<()>;

    /// Archive files that cannot be read and that answers therefore leave out: those
    /// `filter`'s range covers, or all of them. Engines that read no files themselves
    /// (Athena) know of none.
    async fn unreadable(&self, _filter: Option<&EventFilter>) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl QueryEngine for DataFusionEngine {
    async fn events(&self, query: &EventQuery) -> Result<EventPage> {
        let listing = self.listing().await?;
        let snapshot = match &query.cursor {
            Some(cursor) => cursor.snapshot,
            None => listing
                .iter()
                .map(|(file, _)| file.id)
                .max()
                .unwrap_or(Ulid::nil()),
        };
        let files = self.select(&listing, &query.filter, Some(snapshot)).await?;
        let compiled = compile_page(query, Dialect::DataFusion);
        let mut events = self
            .decided(&listing, Some(snapshot), files, |files| {
                self.run(files, compiled.clone())
            })
            .await?;
        let next_cursor = if events.len() > query.limit {
            events.truncate(query.limit);
            events.last().map(|last| {
                Cursor::after(query, snapshot, last.published_at_ms, &last.event_id).encode()
            })
        } else {
            None
        };
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    async fn correlation(&self, correlation_id: &str, max_rows: usize) -> Result<Vec<EventRecord>> {
        let listing = self.listing().await?;
        // The resident id index, as for event ids: only files whose correlation_id bloom
        // filters may hold the id are opened.
        let filter = EventFilter {
            correlation_id: Some(correlation_id.to_owned()),
            ..EventFilter::default()
        };
        let files = self.select(&listing, &filter, None).await?;
        let compiled = compile_correlation(correlation_id, max_rows, Dialect::DataFusion);
        self.decided(&listing, None, files, |files| {
            self.run(files, compiled.clone())
        })
        .await
    }

    async fn export(&self, filter: &EventFilter, order: Order) -> Result<EventStream> {
        let listing = self.listing().await?;
        let files = self.select(&listing, filter, None).await?;
        // A stream cannot be run again once it failed half-way: the footers of its files
        // are checked first (once per file), and the unreadable ones left out.
        let metas: Vec<&ObjectMeta> = files.iter().map(|file| &file.object_meta).collect();
        self.ids.check(&metas).await?;
        let files = self.readable(files);
        let files = self.with_other_copies(&listing, None, files).await?;
        self.stream(files, compile_export(filter, order, Dialect::DataFusion))
            .await
    }

    async fn sql(&self, sql: &str, max_rows: usize) -> Result<SqlResult> {
        let listing = self.listing().await?;
        let files = listing.iter().map(archive_file).collect();
        self.tolerant(files, |files| self.sql_over(files, sql, max_rows))
            .await
    }

    async fn ready(&self) -> Result<()> {
        // The cached listing: at most one LIST per TTL however often probes come.
        self.listing().await.map(|_| ())
    }

    async fn unreadable(&self, filter: Option<&EventFilter>) -> Result<Vec<String>> {
        let known = self.ids.unreadable();
        if known.is_empty() {
            return Ok(Vec::new());
        }
        let listing = self.listing().await?;
        Ok(listing
            .iter()
            .filter(|(file, meta)| {
                filter.is_none_or(|filter| filter.may_match(&file.partition))
                    && known.iter().any(|(path, _)| *path == meta.location)
            })
            .map(|(_, meta)| meta.location.to_string())
            .collect())
    }

    async fn stats(&self, query: &StatsQuery) -> Result<Vec<StatsBucket>> {
        let listing = self.listing().await?;
        let files = listing
            .iter()
            .filter(|(file, _)| query.filter.may_match(&file.partition))
            .map(archive_file)
            .collect();
        let files = self.with_other_copies(&listing, None, files).await?;
        self.tolerant(files, |files| self.stats_over(files, query))
            .await
    }
}

impl DataFusionEngine {
    /// `/v1/sql` over `files`.
    async fn sql_over(
        &self,
        files: Vec<PartitionedFile>,
        sql: &str,
        max_rows: usize,
    ) -> Result<SqlResult> {
        let context = self.sql_session(files)?;
        context.sql(&events_view()).await.map_err(engine_error)?;
        let read_only = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = context
            .sql_with_options(sql, read_only)
            .await
            .map_err(sql_error)?;
        crate::bounds::refuse_unbounded(frame.logical_plan()).map_err(Error::InvalidSql)?;
        let columns: Vec<String> = frame
            .schema()
            .fields()
            .iter()
            .map(|field| field.name().clone())
            .collect();
        // Optimising folds constants: bounded functions refuse huge values here too.
        let mut batches = frame.execute_stream().await.map_err(sql_error)?;
        let mut writer = datafusion::arrow::json::ArrayWriter::new(CappedBuffer {
            bytes: Vec::new(),
            limit: MAX_SQL_RESULT_BYTES,
            exceeded: false,
        });
        let too_large = || Error::ResultTooLarge {
            limit_bytes: MAX_SQL_RESULT_BYTES,
        };
        let mut row_count = 0;
        let mut truncated = false;
        while let Some(batch) = batches.try_next().await.map_err(sql_error)? {
            let room = max_rows - row_count;
            if batch.num_rows() > room {
                truncated = true;
            }
            let batch = batch.slice(0, batch.num_rows().min(room));
            row_count += batch.num_rows();
            if let Err(error) = writer.write(&batch) {
                return Err(if writer.get_ref().exceeded {
                    too_large()
                } else {
                    Error::Engine(error.to_string())
                });
            }
            if truncated {
                break;
            }
        }
        if let Err(error) = writer.finish() {
            return Err(if writer.get_ref().exceeded {
                too_large()
            } else {
                Error::Engine(error.to_string())
            });
        }
        let mut bytes = writer.into_inner().bytes;
        if bytes.is_empty() {
            bytes.extend_from_slice(b"[]");
        }
        let text = String::from_utf8(bytes).map_err(|error| Error::Engine(error.to_string()))?;
        let rows = serde_json::value::RawValue::from_string(text)
            .map_err(|error| Error::Engine(error.to_string()))?;
        Ok(SqlResult {
            columns,
            rows,
            row_count,
            truncated,
        })
    }

    /// `/v1/stats` over `files`.
    async fn stats_over(
        &self,
        files: Vec<PartitionedFile>,
        query: &StatsQuery,
    ) -> Result<Vec<StatsBucket>> {
        let frame = self.frame(files, compile_stats(query)).await?;
        let batches = frame.collect().await.map_err(engine_error)?;
        let mut buckets = Vec::new();
        for batch in &batches {
            let starts = batch
                .column(0)
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or_else(|| {
                    Error::Engine("stats bucket is not a millisecond timestamp".to_owned())
                })?;
            let keys = datafusion::arrow::compute::cast(batch.column(1), &DataType::Utf8)
                .map_err(|error| Error::Engine(error.to_string()))?;
            let keys = keys.as_string::<i32>();
            let counts = batch
                .column(2)
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| Error::Engine("stats count is not an integer".to_owned()))?;
            for row in 0..batch.num_rows() {
                buckets.push(StatsBucket {
                    start: crate::view::rfc3339_ms(starts.value(row)),
                    key: keys.is_valid(row).then(|| keys.value(row).to_owned()),
                    events: u64::try_from(counts.value(row)).unwrap_or(0),
                });
            }
        }
        Ok(buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        HOUR, Predicate, START, fixture, ids, query, record, write, write_without_journal,
    };

    #[tokio::test]
    async fn correlation_lookups_go_through_the_resident_id_index() {
        let fixture = fixture().await;
        let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
        assert_eq!(engine.ids.files_held().await, 0);
        let flow = engine.correlation("corr-1", 100).await.expect("flow");
        let expected: HashSet<String> = fixture
            .records
            .iter()
            .filter(|r| r.correlation_id.as_deref() == Some("corr-1"))
            .map(|r| r.event_id.clone())
            .collect();
        assert_eq!(ids(&flow).into_iter().collect::<HashSet<_>>(), expected);
        let listing = engine.listing().await.expect("listing");
        assert_eq!(
            engine.ids.files_held().await,
            listing.len(),
            "the bloom filters of every file were read and kept for the next lookup"
        );
        let none = engine.correlation("corr-none", 100).await.expect("flow");
        assert!(none.is_empty());
    }

    /// A later copy of an event, claiming another hour, type, producer or flow (or a time
    /// in the same hour), is never answered in the place of the copy ingested first: not
    /// in a page, a flow, an export or a count, whichever files a query selects.
    #[tokio::test]
    async fn a_later_copy_claiming_another_hour_type_or_flow_never_stands_in_for_the_first() {
        let fixture = fixture().await;
        let time = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .expect("time")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        // Two originals in hour 0; one forgery claims hour 5, the other the same hour.
        let far = fixture.records[3].clone();
        let near = fixture.records[4].clone();
        let forge = |original: &EventRecord, published_at_ms: i64, tag: &str| {
            let mut forged = original.clone();
            forged.payload = format!("{{\"forged\":\"{tag}\"}}");
            forged.published_at_ms = published_at_ms;
            forged.occurred_at_ms = Some(published_at_ms);
            forged.ingested_at_ms = original.ingested_at_ms + 24 * HOUR;
            forged.sqs_message_id = Some(format!("forged-{tag}"));
            forged.correlation_id = Some(format!("corr-{tag}"));
            forged.producer_system = Some(format!("attacker-{tag}"));
            forged.event_type = Some("forged".to_owned());
            forged.schema_valid = !original.schema_valid;
            forged
        };
        let far_forged = forge(&far, START + 5 * HOUR + 1, "far");
        let near_forged = forge(&near, near.published_at_ms + 60_000, "near");
        write(&fixture.archive, &[far_forged.clone(), near_forged.clone()]).await;
        let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
        let forged_ids = [far.event_id.clone(), near.event_id.clone()];

        let queries = [
            format!(
                "since={}&until={}",
                time(START + 5 * HOUR),
                time(START + 6 * HOUR)
            ),
            format!("since={}", time(near_forged.published_at_ms)),
            format!(
                "since={}&until={}",
                time(near_forged.published_at_ms),
                time(near_forged.published_at_ms + 1)
            ),
            "producer_system=attacker-far".to_owned(),
            "producer_system=attacker-near".to_owned(),
            "event_type=forged".to_owned(),
            format!("event_id={}&producer_system=attacker-far", far.event_id),
            format!("event_id={}&since={}", far.event_id, time(START + 5 * HOUR)),
            format!("schema_valid={}", !far.schema_valid),
        ];
        for text in &queries {
            let page = engine
                .events(&query(&format!("{text}&limit=1000")))
                .await
                .expect("page");
            for event in &page.events {
                assert!(
                    !event.payload.contains("forged"),
                    "{text}: a later copy was answered: {event:?}"
                );
                assert!(!forged_ids.contains(&event.event_id), "{text}: {event:?}");
            }
            let filter = query(text).filter;
            let exported: Vec<EventRecord> = engine
                .export(&filter, Order::Asc)
                .await
                .expect("export")
                .try_collect()
                .await
                .expect("rows");
            assert_eq!(ids(&exported), ids(&page.events), "{text}: export = pages");
        }
        for flow in ["corr-far", "corr-near"] {
            let events = engine.correlation(flow, 100).await.expect("flow");
            assert!(events.is_empty(), "{flow}: {events:?}");
        }
        // The forged hour counts only its own events.
        let stats = engine
            .stats(&StatsQuery {
                filter: query(&format!(
                    "since={}&until={}",
                    time(START + 5 * HOUR),
                    time(START + 6 * HOUR)
                ))
                .filter,
                interval: crate::model::Interval::Hour,
                group_by: None,
            })
            .await
            .expect("stats");
        let in_hour = fixture
            .records
            .iter()
            .filter(|r| (START + 5 * HOUR..START + 6 * HOUR).contains(&r.published_at_ms))
            .count();
        assert_eq!(
            stats.iter().map(|bucket| bucket.events).sum::<u64>(),
            in_hour as u64
        );
        // Looked up or listed where the first copy lies, the event is the first copy,
        // flagged.
        for original in [&far, &near] {
            let page = engine
                .events(&query(&format!("event_id={}", original.event_id)))
                .await
                .expect("lookup");
            assert_eq!(page.events.len(), 1);
            assert_eq!(page.events[0].payload, original.payload);
            assert!(page.events[0].conflict);
            let hour = engine
                .events(&query(&format!(
                    "since={}&until={}&limit=1000",
                    time(START),
                    time(START + HOUR)
                )))
                .await
                .expect("hour");
            let shown: Vec<&EventRecord> = hour
                .events
                .iter()
                .filter(|event| event.event_id == original.event_id)
                .collect();
            assert_eq!(shown.len(), 1);
            assert_eq!(shown[0].payload, original.payload);
            assert!(shown[0].conflict, "{:?}", shown[0]);
        }

        // Many forged copies at the end of hour 5: a one-row page, newest first, meets a
        // new one each round; past the round limit every sharing file is read at once.
        let flood: Vec<EventRecord> = (5..20)
            .map(|index| {
                forge(
                    &fixture.records[index],
                    START + 5 * HOUR + 55 * 60_000 + index as i64 * 1_000,
                    &format!("flood-{index}"),
                )
            })
            .collect();
        write(&fixture.archive, &flood).await;
        let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
        let page = engine
            .events(&query(&format!(
                "since={}&until={}&limit=1&order=desc",
                time(START + 5 * HOUR),
                time(START + 6 * HOUR)
            )))
            .await
            .expect("page");
        assert_eq!(
            ids(&page.events),
            vec![fixture.records[29].event_id.clone()]
        );
        assert!(!page.events[0].conflict);
    }

    #[tokio::test]
    async fn filters_select_exactly_the_matching_events_once() {
        let fixture = fixture().await;
        let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
        let since = START + 2 * HOUR;
        let until = START + 4 * HOUR;
        let time = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .expect("time")
                .to_rfc3339()
        };
        let cases: Vec<(String, Predicate)> = vec![
            ("".into(), Box::new(|_| true)),
            (
                "event_id=event-002&event_id=event-016&event_id=missing".into(),
                Box::new(|r| ["event-002", "event-016"].contains(&r.event_id.as_str())),
            ),
            (
                "correlation_id=corr-1".into(),
                Box::new(|r| r.correlation_id.as_deref() == Some("corr-1")),
            ),
            (
                "event_type=listing.registered".into(),
                Box::new(|r| {
                    r.event_type.as_deref() == Some("registered")
                        && r.aggregate.as_deref() == Some("listing")
                }),
            ),
            (
                "event_type=registered".into(),
                Box::new(|r| r.event_type.as_deref() == Some("registered")),
            ),
            (
                "aggregate=company&schema_valid=true".into(),
                Box::new(|r| r.aggregate.as_deref() == Some("company") && r.schema_valid),
            ),
            (
                "producer_system=listing-api".into(),
                Box::new(|r| r.producer_system.as_deref() == Some("listing-api")),
            ),
            (
                format!("since={}&until={}", time(since), time(until)),
                Box::new(move |r| r.published_at_ms >= since && r.published_at_ms < until),
            ),
            ("correlation_id=x' OR '1'='1".into(), Box::new(|_| false)),
        ];
        for (text, predicate) in cases {
            let page = engine
                .events(&query(&format!("{text}&limit=1000")))
                .await
                .expect("query");
            let mut expected: Vec<&EventRecord> =
                fixture.records.iter().filter(|r| predicate(r)).collect();
            expected.sort_by_key(|r| (r.published_at_ms, r.event_id.clone()));
            assert_eq!(
                ids(&page.events),
                expected
                    .iter()
                    .map(|r| r.event_id.clone())
                    .collect::<Vec<_>>(),
                "{text}"
            );
            assert_eq!(page.next_cursor, None);
        }
        let one = engine
            .events(&query("event_id=event-016"))
            .await
            .expect("query");
        assert_eq!(
            one.events,
            vec![fixture.records[16].clone()],
            "rows come back whole"
        );
    }

    #[tokio::test]
    async fn open_hours_are_listed_again_within_seconds_closed_hours_later() {
        let fixture = fixture().await;
        let engine = DataFusionEngine::new(fixture.archive.clone())
            .expect("engine")
            .with_closed_listing_ttl(Duration::from_secs(4));
        async fn count(engine: &DataFusionEngine) -> usize {
            let query = query("limit=1000");
            engine.events(&query).await.expect("query").events.len()
        }
        let before = count(&engine).await;
        assert_eq!(before, fixture.records.len());
        let now = chrono::Utc::now().timestamp_millis();
        // Written by another tool: no journal entry names them.
        write_without_journal(&fixture.archive, &[record(200, now)]).await;
        write_without_journal(&fixture.archive, &[record(201, START + 3 * HOUR)]).await;
        tokio::time::sleep(LISTING_TTL).await;
        assert_eq!(
            count(&engine).await,
            before + 1,
            "the open hour is listed again"
        );
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(count(&engine).await, before + 2, "then the whole archive");
    }

    #[tokio::test]
    async fn a_file_the_journal_names_is_visible_within_seconds_in_any_hour() {
        let fixture = fixture().await;
        let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
        let before = engine
            .events(&query("limit=1000"))
            .await
            .expect("query")
            .events
            .len();
        // Hours long closed: three days ago, and the fixture's own first hour.
        let old = chrono::Utc::now().timestamp_millis() - 72 * HOUR;
        write(
            &fixture.archive,
            &[record(300, old), record(301, START + 1)],
        )
        .await;
        tokio::time::sleep(LISTING_TTL).await;
        let all = engine.events(&query("limit=1000")).await.expect("query");
        assert_eq!(
            all.events.len(),
            before + 2,
            "both found through the journal"
        );
        let by_id = engine
            .events(&query(&format!("event_id={}", record(300, old).event_id)))
            .await
            .expect("lookup");
        assert_eq!(ids(&by_id.events), [record(300, old).event_id]);
        // A journal entry naming what is not there, or not a data file, changes nothing.
        let missing = DataFile::new(Partition::for_timestamp_ms(Table::Events, old));
        fixture
            .archive
            .append_journal(&[missing])
            .await
            .expect("journal");
        let forged = islets_core::layout::join(
            fixture.archive.root(),
            &format!("journal/{}.json", Ulid::new()),
        );
        for body in [
            r#"{"version":1,"files":["../../etc/passwd","events/date=2026-01-01/hour=99/part-x.parquet"]}"#,
            "not json",
        ] {
            fixture
                .archive
                .put(&forged, body.as_bytes().to_vec().into())
                .await
                .expect("put");
        }
        tokio::time::sleep(LISTING_TTL).await;
        let again = engine.events(&query("limit=1000")).await.expect("query");
        assert_eq!(again.events.len(), before + 2);
        assert!(
            engine
                .unreadable(None)
                .await
                .expect("unreadable")
                .is_empty(),
            "nothing the journal named is taken for an unreadable file"
        );
    }

    #[tokio::test]
    async fn pages_never_repeat_or_skip_a_row_even_while_files_land() {
        for order in ["asc", "desc"] {
            let fixture = fixture().await;
            let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            let mut pages = 0;
            loop {
                let text = match &cursor {
                    Some(cursor) => format!("limit=7&order={order}&cursor={cursor}"),
                    None => format!("limit=7&order={order}"),
                };
                let page = engine.events(&query(&text)).await.expect("page");
                pages += 1;
                seen.extend(ids(&page.events));
                if pages == 1 {
                    // New rows land between pages, before and after the cursor.
                    write(
                        &fixture.archive,
                        &[record(100, START + 1), record(101, START + 10 * HOUR)],
                    )
                    .await;
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            let mut expected: Vec<String> = ids(&fixture.records);
            if order == "desc" {
                expected.reverse();
            }
            assert_eq!(seen, expected, "{order}: every row once, in order");
            assert_eq!(pages, 5, "30 rows by 7");
            assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());
            // A new query sees the rows that landed.
            let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
            let all = engine.events(&query("limit=1000")).await.expect("query");
            assert_eq!(all.events.len(), fixture.records.len() + 2);
        }
    }
}
