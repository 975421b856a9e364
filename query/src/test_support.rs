//! Test fixtures shared by the engine and API tests: archive files written through
//! `islets-core`, exactly as the ingester writes them.

use std::collections::BTreeMap;

use islets_core::attributes::AttributeValue;
use islets_core::layout::{DataFile, Partition, Table};
use islets_core::parquet_file::{FileMetadata, encode};
use islets_core::record::{DeliveryMode, EventRecord, IngestSource};
use islets_core::schema::events_batch;
use islets_core::store::{Archive, StoreLocation};

use crate::model::{EventQuery, PASS_THROUGH_PARAMETERS, parse_event_query};

/// What a query should select, evaluated naively in memory.
pub type Predicate = Box<dyn Fn(&EventRecord) -> bool>;

pub const HOUR: i64 = 3_600_000;
pub const START: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z

pub fn record(index: usize, published_at_ms: i64) -> EventRecord {
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
        conflict: false,
    }
}

/// Writes records as the ingester does: one file per hour partition, then the journal
/// entry naming them.
pub async fn write(archive: &Archive, records: &[EventRecord]) {
    let files = write_without_journal(archive, records).await;
    archive.append_journal(&files).await.expect("journal");
}

/// Writes records as another tool would (a copy, a restore): one file per hour
/// partition and no journal entry.
pub async fn write_without_journal(archive: &Archive, records: &[EventRecord]) -> Vec<DataFile> {
    let mut groups: BTreeMap<Partition, Vec<EventRecord>> = BTreeMap::new();
    let mut files = Vec::new();
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
        let file = DataFile::new(partition);
        archive
            .put(&file.key(archive.root()), bytes)
            .await
            .expect("put");
        files.push(file);
    }
    files
}

pub struct Fixture {
    _directory: tempfile::TempDir,
    pub archive: Archive,
    pub records: Vec<EventRecord>,
}

/// 30 events over 6 hours, in two batches of files, with 3 redelivered duplicates.
pub async fn fixture() -> Fixture {
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

pub fn query(text: &str) -> EventQuery {
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

pub fn ids(events: &[EventRecord]) -> Vec<String> {
    events.iter().map(|event| event.event_id.clone()).collect()
}
