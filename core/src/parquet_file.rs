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
pub const BLOOM_FILTER_COLUMNS: &[&str] = &["event_id", "correlation_id"];
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
