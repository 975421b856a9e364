//! The embedded engine: DataFusion over the archive's Parquet files.
//!
//! A query reads only the files that can match: hour partitions outside `since`/`until`
//! are skipped from the listing (no request at all), and inside the remaining files
//! DataFusion skips row groups and pages by statistics, bloom filters (`event_id`,
//! `correlation_id`) and the page index, reading footers from its cache. The listing
//! itself is cached for [`LISTING_TTL`], so new files are visible within seconds.

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
pub const OPEN_HOURS: i64 = 2;
/// How long the listing of closed hours is reused. Files landing in a closed hour (a
/// backfill, a DLQ re-drive) become visible within this time.
pub const CLOSED_LISTING_TTL: Duration = Duration::from_secs(300);
const STORE_URL: &str = "islets://archive";
/// Memory all queries of one engine may hold before sorts spill to disk.
pub const QUERY_MEMORY_BYTES: usize = 512 * 1024 * 1024;

/// The answer to read-only SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlResult {
    /// The column names, in order.
    pub columns: Vec<String>,
    /// One JSON object per row.
    pub rows: Vec<serde_json::Value>,
    /// More rows existed than were returned.
    pub truncated: bool,
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
    /// The open hours.
    open_at: Instant,
}

/// DataFusion over one archive.
pub struct DataFusionEngine {
    archive: Archive,
    runtime: Arc<RuntimeEnv>,
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
        // The archive's store, rooted so that object keys are the layout keys.
        runtime.register_object_store(&url, archive.object_store().clone());
        let ids = IdIndex::new(archive.object_store().clone());
        Ok(DataFusionEngine {
            archive,
            runtime,
            listing: Mutex::new(None),
            closed_listing_ttl: CLOSED_LISTING_TTL,
            ids,
        })
    }

    /// Every data file, from the cache: the open hours are listed again after
    /// [`LISTING_TTL`], the whole archive after [`CLOSED_LISTING_TTL`].
    async fn listing(&self) -> Result<Listing> {
        let mut cached = self.listing.lock().await;
        let now = Instant::now();
        match cached.as_mut() {
            Some(cache) if cache.open_at.elapsed() < LISTING_TTL => {
                return Ok(cache.files.clone());
            }
            Some(cache) if cache.full_at.elapsed() < self.closed_listing_ttl => {
                let first_open = Partition::for_timestamp_ms(
                    Table::Events,
                    chrono::Utc::now().timestamp_millis() - OPEN_HOURS * 3_600_000,
                );
                let open = self
                    .archive
                    .list_files_from(&first_open)
                    .await
                    .map_err(Error::Store)?;
                let mut files: Vec<(DataFile, ObjectMeta)> = cache
                    .files
                    .iter()
                    .filter(|(file, _)| file.partition < first_open)
                    .cloned()
                    .collect();
                files.extend(open);
                cache.files = Arc::new(files);
                cache.open_at = now;
                return Ok(cache.files.clone());
            }
            _ => {}
        }
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
            return Ok(in_range.into_iter().map(archive_file).collect());
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

    fn context(&self) -> SessionContext {
        let config = SessionConfig::new().with_target_partitions(4);
        SessionContext::new_with_config_rt(config, self.runtime.clone())
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
        let mut events = self
            .run(files, compile_page(query, Dialect::DataFusion))
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
        let files = listing.iter().map(archive_file).collect();
        self.run(
            files,
            compile_correlation(correlation_id, max_rows, Dialect::DataFusion),
        )
        .await
    }

    async fn export(&self, filter: &EventFilter, order: Order) -> Result<EventStream> {
        let listing = self.listing().await?;
        let files = self.select(&listing, filter, None).await?;
        self.stream(files, compile_export(filter, order, Dialect::DataFusion))
            .await
    }

    async fn sql(&self, sql: &str, max_rows: usize) -> Result<SqlResult> {
        // Planning and execution errors are the caller's; a store failure is not.
        let query_error = |error: DataFusionError| match error {
            DataFusionError::ObjectStore(source) => Error::Engine(source.to_string()),
            other => Error::InvalidSql(other.to_string()),
        };
        let listing = self.listing().await?;
        let files = listing.iter().map(archive_file).collect();
        let context = self.session(files, RAW_EVENTS_TABLE)?;
        context.sql(&events_view()).await.map_err(engine_error)?;
        let read_only = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = context
            .sql_with_options(sql, read_only)
            .await
            .map_err(query_error)?;
        let columns: Vec<String> = frame
            .schema()
            .fields()
            .iter()
            .map(|field| field.name().clone())
            .collect();
        let mut batches = frame.execute_stream().await.map_err(query_error)?;
        let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
        let mut rows_seen = 0;
        let mut truncated = false;
        while let Some(batch) = batches.try_next().await.map_err(query_error)? {
            let room = max_rows - rows_seen;
            if batch.num_rows() > room {
                truncated = true;
            }
            let batch = batch.slice(0, batch.num_rows().min(room));
            rows_seen += batch.num_rows();
            writer
                .write(&batch)
                .map_err(|error| Error::Engine(error.to_string()))?;
            if truncated {
                break;
            }
        }
        writer
            .finish()
            .map_err(|error| Error::Engine(error.to_string()))?;
        let bytes = writer.into_inner();
        let rows = if bytes.is_empty() {
            Vec::new()
        } else {
            serde_json::from_slice(&bytes).map_err(|error| Error::Engine(error.to_string()))?
        };
        Ok(SqlResult {
            columns,
            rows,
            truncated,
        })
    }

    async fn ready(&self) -> Result<()> {
        // The cached listing: at most one LIST per TTL however often probes come.
        self.listing().await.map(|_| ())
    }

    async fn stats(&self, query: &StatsQuery) -> Result<Vec<StatsBucket>> {
        let listing = self.listing().await?;
        let files = listing
            .iter()
            .filter(|(file, _)| query.filter.may_match(&file.partition))
            .map(archive_file)
            .collect();
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
    use std::collections::HashSet;

    use super::*;
    use crate::test_support::{HOUR, Predicate, START, fixture, ids, query, record, write};

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
        write(&fixture.archive, &[record(200, now)]).await;
        write(&fixture.archive, &[record(201, START + 3 * HOUR)]).await;
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
