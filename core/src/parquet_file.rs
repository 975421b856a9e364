//! Parquet encoding of archive batches: zstd, page statistics and page index, bloom filters
//! on the lookup columns, dictionaries only where values repeat.

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::Result;
use crate::layout::Table;
use crate::schema::LAYOUT_VERSION;

/// Columns with a bloom filter: the point-lookup keys.
pub(crate) const BLOOM_FILTER_COLUMNS: &[&str] = &["event_id", "correlation_id"];
/// Columns whose values rarely repeat: dictionary encoding would only cost time.
const NO_DICTIONARY_COLUMNS: &[&str] = &[
    "event_id",
    "correlation_id",
    "trace_id",
    "traceparent",
    "sns_message_id",
    "sqs_message_id",
    "payload",
    "raw_body",
];
/// False-positive probability of the bloom filters.
const BLOOM_FILTER_FPP: f64 = 0.01;
/// zstd level: 3 is zstd's own default, the usual balance of speed and ratio.
const ZSTD_LEVEL: i32 = 3;

/// Metadata written into every archive file.
#[derive(Debug, Clone)]
pub struct FileMetadata {
    /// The table the file belongs to.
    pub table: Table,
    /// Where the rows came from (`sqs`, `http`, `file`).
    pub source: String,
    /// Identifies the writing process, for forensics.
    pub writer_id: String,
}

fn properties(rows: usize, metadata: &FileMetadata) -> Result<WriterProperties> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("islets-audit {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(
                "islets.layout_version".to_owned(),
                LAYOUT_VERSION.to_owned(),
            ),
            KeyValue::new(
                "islets.table".to_owned(),
                metadata.table.prefix().to_owned(),
            ),
            KeyValue::new("islets.source".to_owned(), metadata.source.clone()),
            KeyValue::new("islets.writer".to_owned(), metadata.writer_id.clone()),
        ]));
    for column in NO_DICTIONARY_COLUMNS {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    if metadata.table == Table::Events {
        let distinct = u64::try_from(rows.max(1)).unwrap_or(u64::MAX);
        for column in BLOOM_FILTER_COLUMNS {
            let path = ColumnPath::from(*column);
            builder = builder
                .set_column_bloom_filter_enabled(path.clone(), true)
                .set_column_bloom_filter_fpp(path.clone(), BLOOM_FILTER_FPP)
                .set_column_bloom_filter_max_ndv(path, distinct);
        }
    }
    Ok(builder.build())
}

/// Encodes one batch as a complete Parquet file in memory.
pub fn encode(batch: &RecordBatch, metadata: &FileMetadata) -> Result<Bytes> {
    let properties = properties(batch.num_rows(), metadata)?;
    let mut buffer = Vec::with_capacity(batch.get_array_memory_size() / 3 + 4096);
    let mut writer = ArrowWriter::try_new(&mut buffer, batch.schema(), Some(properties))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(Bytes::from(buffer))
}

/// Decodes a whole Parquet file (tests, tools, small files).
pub fn decode_all(bytes: Bytes) -> Result<Vec<RecordBatch>> {
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    let mut batches = Vec::new();
    for batch in reader {
        batches.push(batch?);
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::AttributeValue;
    use crate::record::{DeliveryMode, EventRecord, IngestSource};
    use crate::schema::{events_batch, events_from_batch};
    use parquet::file::properties::ReaderProperties;
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};

    fn record(index: usize) -> EventRecord {
        EventRecord {
            event_id: format!("id-{index}"),
            event_type: Some("sold".into()),
            aggregate: Some("listing".into()),
            schema_version: Some("1.0.0".into()),
            producer_system: Some("listing-management-api".into()),
            correlation_id: index.is_multiple_of(2).then(|| format!("corr-{index}")),
            trace_id: None,
            traceparent: None,
            occurred_at_ms: Some(1_700_000_000_000 + index as i64),
            published_at_ms: 1_700_000_000_500,
            ingested_at_ms: 1_700_000_001_000,
            topic_arn: Some("arn:aws:sns:us-east-1:1:listing-events".into()),
            sns_message_id: Some(format!("m-{index}")),
            sqs_message_id: None,
            delivery: DeliveryMode::SnsEnvelope,
            source: IngestSource::Sqs,
            attributes: vec![
                ("aggregate".into(), AttributeValue::string("listing")),
                ("blob".into(), AttributeValue::binary("Binary", &[0, 1, 2])),
            ],
            payload: format!("{{\"n\": {index}, \"text\": \"ação ✓\"}}"),
            schema_valid: !index.is_multiple_of(3),
            schema_error: index.is_multiple_of(3).then(|| "bad".to_owned()),
            conflict: false,
        }
    }

    #[test]
    fn records_survive_the_parquet_round_trip_with_bloom_filters_and_metadata() {
        let records: Vec<EventRecord> = (0..50).map(record).collect();
        let metadata = FileMetadata {
            table: Table::Events,
            source: "sqs".into(),
            writer_id: "writer-1".into(),
        };
        let bytes = encode(&events_batch(&records).expect("batch"), &metadata).expect("encode");

        let decoded: Vec<EventRecord> = decode_all(bytes.clone())
            .expect("decode")
            .iter()
            .flat_map(|batch| events_from_batch(batch).expect("rows"))
            .collect();
        assert_eq!(decoded, records);

        let options = ReadOptionsBuilder::new()
            .with_reader_properties(
                ReaderProperties::builder()
                    .set_read_bloom_filter(true)
                    .build(),
            )
            .build();
        let reader = SerializedFileReader::new_with_options(bytes, options).expect("reader");
        let file_metadata = reader.metadata().file_metadata();
        let key_values = file_metadata
            .key_value_metadata()
            .expect("key-value metadata");
        assert!(
            key_values
                .iter()
                .any(|kv| kv.key == "islets.writer" && kv.value.as_deref() == Some("writer-1"))
        );
        let row_group = reader.metadata().row_group(0);
        for (index, column) in row_group.columns().iter().enumerate() {
            let name = column.column_path().string();
            let has_bloom = column.bloom_filter_offset().is_some();
            assert_eq!(
                has_bloom,
                BLOOM_FILTER_COLUMNS.contains(&name.as_str()),
                "bloom filter on {name}"
            );
            if name == "event_id" {
                assert!(column.statistics().is_some(), "statistics on {name}");
                // The level is not stored in the file; the codec is.
                assert!(matches!(column.compression(), Compression::ZSTD(_)));
                let bloom = reader
                    .get_row_group(0)
                    .expect("row group")
                    .get_column_bloom_filter(index)
                    .cloned()
                    .expect("bloom filter readable");
                assert!(bloom.check(&"id-7"));
            }
        }
    }
}
