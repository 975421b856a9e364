//! The embedded engine: DataFusion over the archive's Parquet files.
//!
//! A query reads only the files that can match: hour partitions outside `since`/`until`
//! are skipped from the listing (no request at all), and inside the remaining files
//! DataFusion skips row groups and pages by statistics, bloom filters (`event_id`,
//! `correlation_id`) and the page index, reading footers from its cache. The listing
//! itself is cached for [`LISTING_TTL`], so new files are visible within seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::TryStreamExt;
use islets_core::layout::{DataFile, Table};
use islets_core::record::EventRecord;
use islets_core::schema::{events_from_batch, events_schema};
use islets_core::store::Archive;
use object_store::ObjectMeta;
use tokio::sync::Mutex;
use ulid::Ulid;

use crate::error::{Error, Result};
use crate::model::{Cursor, EventQuery};
use crate::sql::{EVENTS_TABLE, compile_page};
use crate::table::ArchiveFiles;

/// How long a listing of the archive is reused.
pub const LISTING_TTL: Duration = Duration::from_secs(2);
const STORE_URL: &str = "islets://archive";

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<EventRecord>,
    /// Present when more rows follow.
    pub next_cursor: Option<String>,
}

type Listing = Arc<Vec<(DataFile, ObjectMeta)>>;

/// DataFusion over one archive.
pub struct DataFusionEngine {
    archive: Archive,
    runtime: Arc<RuntimeEnv>,
    listing: Mutex<Option<(Instant, Listing)>>,
}

impl DataFusionEngine {
    pub fn new(archive: Archive) -> Result<Self> {
        let runtime = Arc::new(RuntimeEnv::default());
        let url = url::Url::parse(STORE_URL).map_err(|error| Error::Engine(error.to_string()))?;
        // The archive's store, rooted so that object keys are the layout keys.
        runtime.register_object_store(&url, archive.object_store().clone());
        Ok(DataFusionEngine {
            archive,
            runtime,
            listing: Mutex::new(None),
        })
    }

    async fn listing(&self) -> Result<Listing> {
        let mut cached = self.listing.lock().await;
        if let Some((at, listing)) = cached.as_ref()
            && at.elapsed() < LISTING_TTL
        {
            return Ok(listing.clone());
        }
        let listing = Arc::new(
            self.archive
                .list_files(Table::Events)
                .await
                .map_err(Error::Store)?,
        );
        *cached = Some((Instant::now(), listing.clone()));
        Ok(listing)
    }

    fn context(&self) -> SessionContext {
        let config = SessionConfig::new().with_target_partitions(4);
        SessionContext::new_with_config_rt(config, self.runtime.clone())
    }

    /// One page of events.
    pub async fn events(&self, query: &EventQuery) -> Result<EventPage> {
        let listing = self.listing().await?;
        let snapshot = match &query.cursor {
            Some(cursor) => cursor.snapshot,
            None => listing
                .iter()
                .map(|(file, _)| file.id)
                .max()
                .unwrap_or(Ulid::nil()),
        };
        let files: Vec<ObjectMeta> = listing
            .iter()
            .filter(|(file, _)| file.id <= snapshot && query.filter.may_match(&file.partition))
            .map(|(_, meta)| meta.clone())
            .collect();
        let context = self.context();
        let store_url =
            ObjectStoreUrl::parse(STORE_URL).map_err(|error| Error::Engine(error.to_string()))?;
        context
            .register_table(
                EVENTS_TABLE,
                Arc::new(ArchiveFiles {
                    schema: events_schema(),
                    store_url,
                    files,
                }),
            )
            .map_err(|error| Error::Engine(error.to_string()))?;
        let compiled = compile_page(query);
        let frame = context
            .sql(&compiled.sql)
            .await
            .and_then(|frame| frame.with_param_values(compiled.parameters))
            .map_err(|error| Error::Engine(error.to_string()))?;
        let batches: Vec<_> = frame
            .execute_stream()
            .await
            .map_err(|error| Error::Engine(error.to_string()))?
            .try_collect()
            .await
            .map_err(|error| Error::Engine(error.to_string()))?;
        let mut events = Vec::new();
        for batch in &batches {
            events.extend(events_from_batch(batch).map_err(Error::Store)?);
        }
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
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use islets_core::attributes::AttributeValue;
    use islets_core::layout::Partition;
    use islets_core::parquet_file::{FileMetadata, encode};
    use islets_core::record::{DeliveryMode, IngestSource};
    use islets_core::schema::events_batch;
    use islets_core::store::StoreLocation;

    use super::*;
    use crate::model::{PASS_THROUGH_PARAMETERS, parse_event_query};

    /// What a query should select, evaluated naively in memory.
    type Predicate = Box<dyn Fn(&EventRecord) -> bool>;

    const HOUR: i64 = 3_600_000;
    const START: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z

    fn record(index: usize, published_at_ms: i64) -> EventRecord {
        let (aggregate, event_type) = [
            ("listing", "sold"),
            ("listing", "registered"),
            ("company", "registered"),
        ][index % 3];
        EventRecord {
            event_id: format!("event-{index:03}"),
            event_type: Some(event_type.into()),
            aggregate: Some(aggregate.into()),
            schema_version: Some("1.0.0".into()),
            producer_system: Some(format!("{aggregate}-api")),
            correlation_id: Some(format!("corr-{}", index % 4)),
            trace_id: None,
            traceparent: None,
            occurred_at_ms: Some(published_at_ms - 10),
            published_at_ms,
            ingested_at_ms: published_at_ms + 100,
            topic_arn: Some(format!("arn:aws:sns:us-east-1:1:{aggregate}-events")),
            sns_message_id: Some(format!("m-{index}")),
            sqs_message_id: Some(format!("q-{index}")),
            delivery: DeliveryMode::SnsEnvelope,
            source: IngestSource::Sqs,
            attributes: vec![("aggregate".into(), AttributeValue::string(aggregate))],
            payload: format!("{{\"n\":{index},\"note\":\"ação\"}}"),
            schema_valid: !index.is_multiple_of(5),
            schema_error: index.is_multiple_of(5).then(|| "bad".to_owned()),
        }
    }

    /// Writes records as the ingester does: one file per hour partition.
    async fn write(archive: &Archive, records: &[EventRecord]) {
        let mut groups: BTreeMap<Partition, Vec<EventRecord>> = BTreeMap::new();
        for record in records {
            groups
                .entry(Partition::for_timestamp_ms(
                    Table::Events,
                    record.published_at_ms,
                ))
                .or_default()
                .push(record.clone());
        }
        for (partition, group) in groups {
            let metadata = FileMetadata {
                table: Table::Events,
                source: "test".into(),
                writer_id: "test".into(),
            };
            let bytes = encode(&events_batch(&group).expect("batch"), &metadata).expect("encode");
            archive
                .put(&DataFile::new(partition).key(archive.root()), bytes)
                .await
                .expect("put");
        }
    }

    struct Fixture {
        _directory: tempfile::TempDir,
        archive: Archive,
        records: Vec<EventRecord>,
    }

    /// 30 events over 6 hours, in two batches of files, with 3 redelivered duplicates.
    async fn fixture() -> Fixture {
        let directory = tempfile::tempdir().expect("tempdir");
        let archive = Archive::open(
            &StoreLocation::Local {
                root: directory.path().to_owned(),
            },
            None,
        )
        .expect("archive");
        let records: Vec<EventRecord> = (0..30)
            .map(|i| record(i, START + (i as i64) * HOUR / 5))
            .collect();
        write(&archive, &records[..15]).await;
        write(&archive, &records[15..]).await;
        write(
            &archive,
            &[records[2].clone(), records[16].clone(), records[29].clone()],
        )
        .await;
        Fixture {
            _directory: directory,
            archive,
            records,
        }
    }

    fn query(text: &str) -> EventQuery {
        let pairs: Vec<(String, String)> = text
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                pair.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect();
        parse_event_query(&pairs, PASS_THROUGH_PARAMETERS, chrono::Utc::now()).expect("valid query")
    }

    fn ids(events: &[EventRecord]) -> Vec<String> {
        events.iter().map(|event| event.event_id.clone()).collect()
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
