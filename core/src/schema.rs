//! The Arrow schema of the archive — defined once, here. The Parquet files, the docs and
//! (later) the Glue table and Athena DDL are all derived from these definitions.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, MapArray, RecordBatch, StringArray, StructArray,
    TimestampMillisecondArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;

use crate::attributes::{AttributeValue, Attributes};
use crate::error::{Error, Result};
use crate::record::{DeliveryMode, EventRecord, IngestSource, QuarantineRecord};

/// Version of the archive layout and schema, written into every file's metadata.
pub const LAYOUT_VERSION: &str = "1";

/// (name, type, nullable, description) of every column of the `events` table.
fn event_columns() -> Vec<(&'static str, DataType, bool, &'static str)> {
    vec![
        (
            "event_id",
            DataType::Utf8,
            false,
            "Payload event_id; else the SNS MessageId; else (raw delivery) the SQS MessageId",
        ),
        (
            "event_type",
            DataType::Utf8,
            true,
            "event_type message attribute (e.g. sold)",
        ),
        (
            "aggregate",
            DataType::Utf8,
            true,
            "aggregate message attribute (e.g. listing)",
        ),
        (
            "schema_version",
            DataType::Utf8,
            true,
            "schema_version message attribute (semantic version)",
        ),
        (
            "producer_system",
            DataType::Utf8,
            true,
            "producer_system message attribute",
        ),
        (
            "correlation_id",
            DataType::Utf8,
            true,
            "Payload correlation_id, else the correlation_id attribute",
        ),
        (
            "trace_id",
            DataType::Utf8,
            true,
            "Payload trace_id, else the trace_id attribute, else the trace id of traceparent",
        ),
        (
            "traceparent",
            DataType::Utf8,
            true,
            "W3C traceparent (attribute, else payload), kept verbatim",
        ),
        (
            "occurred_at",
            timestamp(),
            true,
            "Payload timestamp: when the event happened (UTC, ms)",
        ),
        (
            "published_at",
            timestamp(),
            false,
            "SNS Timestamp, else SQS SentTimestamp, else ingested_at (UTC, ms); partitions the table",
        ),
        (
            "ingested_at",
            timestamp(),
            false,
            "When the ingester received the message (UTC, ms)",
        ),
        (
            "topic_arn",
            DataType::Utf8,
            true,
            "SNS TopicArn (envelope delivery only)",
        ),
        (
            "sns_message_id",
            DataType::Utf8,
            true,
            "SNS MessageId (envelope delivery only)",
        ),
        (
            "sqs_message_id",
            DataType::Utf8,
            true,
            "SQS MessageId of the delivery",
        ),
        ("delivery", DataType::Utf8, false, "sns-envelope or raw"),
        ("ingest_source", DataType::Utf8, false, "sqs, http or file"),
        (
            "attributes",
            attributes_type(),
            false,
            "All message attributes: name -> {data_type, value}; binary values base64 as SNS delivers them",
        ),
        (
            "payload",
            DataType::Utf8,
            false,
            "The message exactly as published",
        ),
        (
            "schema_valid",
            DataType::Boolean,
            false,
            "Whether the payload passed its JSON Schema (and the message carried the standard attributes)",
        ),
        (
            "schema_error",
            DataType::Utf8,
            true,
            "Why schema_valid is false",
        ),
        (
            "payload_ciphertext",
            DataType::Binary,
            true,
            "Reserved for sensitive data: the original payload encrypted with its subject's key (payload then holds the tokenized form)",
        ),
        (
            "encryption_key_id",
            DataType::Utf8,
            true,
            "Reserved for sensitive data: id of the key payload_ciphertext is encrypted with",
        ),
    ]
}

/// (name, type, nullable, description) of every column of the `quarantine` table.
fn quarantine_columns() -> Vec<(&'static str, DataType, bool, &'static str)> {
    vec![
        (
            "ingested_at",
            timestamp(),
            false,
            "When the ingester received the message (UTC, ms); partitions the table",
        ),
        (
            "published_at",
            timestamp(),
            true,
            "SQS SentTimestamp, when known",
        ),
        ("ingest_source", DataType::Utf8, false, "sqs, http or file"),
        (
            "sqs_message_id",
            DataType::Utf8,
            true,
            "SQS MessageId of the delivery",
        ),
        (
            "reason",
            DataType::Utf8,
            false,
            "Why the message could not be decoded as an event",
        ),
        (
            "attributes",
            attributes_type(),
            false,
            "SQS message attributes of the delivery",
        ),
        (
            "raw_body",
            DataType::Binary,
            false,
            "The body exactly as received",
        ),
    ]
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn attribute_value_fields() -> Fields {
    Fields::from(vec![
        Field::new("data_type", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ])
}

fn attributes_entries_field() -> Arc<Field> {
    Arc::new(Field::new(
        "key_value",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Struct(attribute_value_fields()), false),
        ])),
        false,
    ))
}

fn attributes_type() -> DataType {
    DataType::Map(attributes_entries_field(), false)
}

fn build_schema(columns: Vec<(&'static str, DataType, bool, &'static str)>) -> SchemaRef {
    let fields: Vec<Field> = columns
        .into_iter()
        .map(|(name, data_type, nullable, description)| {
            Field::new(name, data_type, nullable).with_metadata(HashMap::from([(
                "description".to_owned(),
                description.to_owned(),
            )]))
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The schema of the `events` table.
pub fn events_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA.get_or_init(|| build_schema(event_columns())).clone()
}

/// The schema of the `quarantine` table.
pub(crate) fn quarantine_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| build_schema(quarantine_columns()))
        .clone()
}

fn utf8<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

fn timestamps(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter(values).with_timezone("UTC"))
}

fn attributes_array<'a>(rows: impl Iterator<Item = &'a Attributes>) -> Result<ArrayRef> {
    let mut keys = StringBuilder::new();
    let mut types = StringBuilder::new();
    let mut values = StringBuilder::new();
    let mut offsets = vec![0i32];
    for attributes in rows {
        for (key, value) in attributes {
            keys.append_value(key);
            types.append_value(&value.data_type);
            values.append_value(&value.value);
        }
        let last = offsets.last().copied().unwrap_or_default();
        let count = i32::try_from(attributes.len())
            .map_err(|_| Error::Config("too many attributes on one message".to_owned()))?;
        offsets.push(last + count);
    }
    let value_struct = StructArray::try_new(
        attribute_value_fields(),
        vec![Arc::new(types.finish()), Arc::new(values.finish())],
        None,
    )?;
    let DataType::Struct(entry_fields) = attributes_entries_field().data_type().clone() else {
        unreachable!("the entries field is a struct");
    };
    let entries = StructArray::try_new(
        entry_fields,
        vec![Arc::new(keys.finish()), Arc::new(value_struct)],
        None,
    )?;
    let map = MapArray::try_new(
        attributes_entries_field(),
        OffsetBuffer::new(offsets.into()),
        entries,
        None,
        false,
    )?;
    Ok(Arc::new(map))
}

/// Builds an `events` batch from records, in the given order.
pub fn events_batch(records: &[EventRecord]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        utf8(records.iter().map(|r| Some(r.event_id.as_str()))),
        utf8(records.iter().map(|r| r.event_type.as_deref())),
        utf8(records.iter().map(|r| r.aggregate.as_deref())),
        utf8(records.iter().map(|r| r.schema_version.as_deref())),
        utf8(records.iter().map(|r| r.producer_system.as_deref())),
        utf8(records.iter().map(|r| r.correlation_id.as_deref())),
        utf8(records.iter().map(|r| r.trace_id.as_deref())),
        utf8(records.iter().map(|r| r.traceparent.as_deref())),
        timestamps(records.iter().map(|r| r.occurred_at_ms)),
        timestamps(records.iter().map(|r| Some(r.published_at_ms))),
        timestamps(records.iter().map(|r| Some(r.ingested_at_ms))),
        utf8(records.iter().map(|r| r.topic_arn.as_deref())),
        utf8(records.iter().map(|r| r.sns_message_id.as_deref())),
        utf8(records.iter().map(|r| r.sqs_message_id.as_deref())),
        utf8(records.iter().map(|r| Some(r.delivery.as_str()))),
        utf8(records.iter().map(|r| Some(r.source.as_str()))),
        attributes_array(records.iter().map(|r| &r.attributes))?,
        utf8(records.iter().map(|r| Some(r.payload.as_str()))),
        Arc::new(BooleanArray::from_iter(
            records.iter().map(|r| Some(r.schema_valid)),
        )),
        utf8(records.iter().map(|r| r.schema_error.as_deref())),
        Arc::new(BinaryArray::new_null(records.len())),
        Arc::new(StringArray::new_null(records.len())),
    ];
    Ok(RecordBatch::try_new(events_schema(), columns)?)
}

/// Builds a `quarantine` batch from records, in the given order.
pub fn quarantine_batch(records: &[QuarantineRecord]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        timestamps(records.iter().map(|r| Some(r.ingested_at_ms))),
        timestamps(records.iter().map(|r| r.published_at_ms)),
        utf8(records.iter().map(|r| Some(r.source.as_str()))),
        utf8(records.iter().map(|r| r.sqs_message_id.as_deref())),
        utf8(records.iter().map(|r| Some(r.reason.as_str()))),
        attributes_array(records.iter().map(|r| &r.attributes))?,
        Arc::new(BinaryArray::from_iter_values(
            records.iter().map(|r| r.raw_body.as_ref()),
        )),
    ];
    Ok(RecordBatch::try_new(quarantine_schema(), columns)?)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::Config(format!("archive file has no column '{name}'")))
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    column(batch, name)?
        .as_string_opt::<i32>()
        .ok_or_else(|| Error::Config(format!("column '{name}' is not a string column")))
}

fn millis<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a TimestampMillisecondArray> {
    column(batch, name)?
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| Error::Config(format!("column '{name}' is not a millisecond timestamp")))
}

fn optional(array: &StringArray, row: usize) -> Option<String> {
    array.is_valid(row).then(|| array.value(row).to_owned())
}

fn attributes_at(map: &MapArray, row: usize) -> Attributes {
    let entries = map.value(row);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_struct();
    let types = values.column(0).as_string::<i32>();
    let texts = values.column(1).as_string::<i32>();
    (0..entries.len())
        .map(|index| {
            (
                keys.value(index).to_owned(),
                AttributeValue {
                    data_type: types.value(index).to_owned(),
                    value: texts.value(index).to_owned(),
                },
            )
        })
        .collect()
}

/// Reads `events` rows back into records (replay, tests, tools).
pub fn events_from_batch(batch: &RecordBatch) -> Result<Vec<EventRecord>> {
    let event_id = strings(batch, "event_id")?;
    let event_type = strings(batch, "event_type")?;
    let aggregate = strings(batch, "aggregate")?;
    let schema_version = strings(batch, "schema_version")?;
    let producer_system = strings(batch, "producer_system")?;
    let correlation_id = strings(batch, "correlation_id")?;
    let trace_id = strings(batch, "trace_id")?;
    let traceparent = strings(batch, "traceparent")?;
    let occurred_at = millis(batch, "occurred_at")?;
    let published_at = millis(batch, "published_at")?;
    let ingested_at = millis(batch, "ingested_at")?;
    let topic_arn = strings(batch, "topic_arn")?;
    let sns_message_id = strings(batch, "sns_message_id")?;
    let sqs_message_id = strings(batch, "sqs_message_id")?;
    let delivery = strings(batch, "delivery")?;
    let source = strings(batch, "ingest_source")?;
    let attributes = column(batch, "attributes")?
        .as_map_opt()
        .ok_or_else(|| Error::Config("column 'attributes' is not a map".to_owned()))?;
    let payload = strings(batch, "payload")?;
    let schema_valid = column(batch, "schema_valid")?
        .as_boolean_opt()
        .ok_or_else(|| Error::Config("column 'schema_valid' is not boolean".to_owned()))?;
    let schema_error = strings(batch, "schema_error")?;
    // Only in query answers (the readers' conflict flag), never in stored files.
    let conflict = batch
        .column_by_name("conflict")
        .and_then(|column| column.as_boolean_opt());
    Ok((0..batch.num_rows())
        .map(|row| EventRecord {
            event_id: event_id.value(row).to_owned(),
            event_type: optional(event_type, row),
            aggregate: optional(aggregate, row),
            schema_version: optional(schema_version, row),
            producer_system: optional(producer_system, row),
            correlation_id: optional(correlation_id, row),
            trace_id: optional(trace_id, row),
            traceparent: optional(traceparent, row),
            occurred_at_ms: occurred_at.is_valid(row).then(|| occurred_at.value(row)),
            published_at_ms: published_at.value(row),
            ingested_at_ms: ingested_at.value(row),
            topic_arn: optional(topic_arn, row),
            sns_message_id: optional(sns_message_id, row),
            sqs_message_id: optional(sqs_message_id, row),
            delivery: if delivery.value(row) == DeliveryMode::Raw.as_str() {
                DeliveryMode::Raw
            } else {
                DeliveryMode::SnsEnvelope
            },
            source: match source.value(row) {
                "sqs" => IngestSource::Sqs,
                "http" => IngestSource::Http,
                _ => IngestSource::File,
            },
            attributes: attributes_at(attributes, row),
            payload: payload.value(row).to_owned(),
            schema_valid: schema_valid.value(row),
            schema_error: optional(schema_error, row),
            conflict: conflict.is_some_and(|flags| flags.is_valid(row) && flags.value(row)),
        })
        .collect())
}

/// Reads `quarantine` rows back into records.
pub fn quarantine_from_batch(batch: &RecordBatch) -> Result<Vec<QuarantineRecord>> {
    let ingested_at = millis(batch, "ingested_at")?;
    let published_at = millis(batch, "published_at")?;
    let source = strings(batch, "ingest_source")?;
    let sqs_message_id = strings(batch, "sqs_message_id")?;
    let reason = strings(batch, "reason")?;
    let attributes = column(batch, "attributes")?
        .as_map_opt()
        .ok_or_else(|| Error::Config("column 'attributes' is not a map".to_owned()))?;
    let raw_body = column(batch, "raw_body")?
        .as_binary_opt::<i32>()
        .ok_or_else(|| Error::Config("column 'raw_body' is not binary".to_owned()))?;
    Ok((0..batch.num_rows())
        .map(|row| QuarantineRecord {
            ingested_at_ms: ingested_at.value(row),
            published_at_ms: published_at.is_valid(row).then(|| published_at.value(row)),
            source: match source.value(row) {
                "sqs" => IngestSource::Sqs,
                "http" => IngestSource::Http,
                _ => IngestSource::File,
            },
            sqs_message_id: optional(sqs_message_id, row),
            reason: reason.value(row).to_owned(),
            attributes: attributes_at(attributes, row),
            raw_body: Bytes::copy_from_slice(raw_body.value(row)),
        })
        .collect())
}

/// The Hive / Athena type of an Arrow type of the archive (Glue tables and DDL use it).
pub fn hive_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 => "string".to_owned(),
        DataType::Binary => "binary".to_owned(),
        DataType::Boolean => "boolean".to_owned(),
        DataType::Timestamp(_, _) => "timestamp".to_owned(),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(fields) if fields.len() == 2 => format!(
                "map<{},{}>",
                hive_type(fields[0].data_type()),
                hive_type(fields[1].data_type())
            ),
            other => format!("unsupported<{other}>"),
        },
        DataType::Struct(fields) => {
            let members: Vec<String> = fields
                .iter()
                .map(|field| format!("{}:{}", field.name(), hive_type(field.data_type())))
                .collect();
            format!("struct<{}>", members.join(","))
        }
        other => format!("unsupported<{other}>"),
    }
}

/// Markdown table of a schema's columns, for docs.
#[cfg(test)]
fn describe_markdown(schema: &Schema) -> String {
    let mut text = String::from("| column | type | nullable | meaning |\n|---|---|---|---|\n");
    for field in schema.fields() {
        let description = field
            .metadata()
            .get("description")
            .map(String::as_str)
            .unwrap_or("");
        let unit = match field.data_type() {
            DataType::Timestamp(TimeUnit::Millisecond, _) => " (ms, UTC)",
            _ => "",
        };
        text.push_str(&format!(
            "| `{}` | `{}`{unit} | {} | {} |\n",
            field.name(),
            hive_type(field.data_type()),
            if field.is_nullable() { "yes" } else { "no" },
            description
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section<'a>(text: &'a str, name: &str) -> &'a str {
        let start_marker = format!("<!-- {name}:begin -->\n");
        let end_marker = format!("<!-- {name}:end -->");
        let start = text.find(&start_marker).map(|at| at + start_marker.len());
        let end = text.find(&end_marker);
        match (start, end) {
            (Some(start), Some(end)) if start <= end => &text[start..end],
            _ => panic!("docs/ARCHIVE.md lacks the {name} markers"),
        }
    }

    #[test]
    fn the_documented_columns_are_the_schema() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ARCHIVE.md");
        let text = std::fs::read_to_string(&path).expect("docs/ARCHIVE.md");
        for (name, schema) in [
            ("events-columns", events_schema()),
            ("quarantine-columns", quarantine_schema()),
        ] {
            let expected = describe_markdown(&schema);
            assert_eq!(
                section(&text, name),
                expected,
                "docs/ARCHIVE.md {name} drifted; replace it with:\n{expected}"
            );
        }
    }

    #[test]
    fn batches_match_the_declared_schema_for_any_rows() {
        assert_eq!(events_batch(&[]).expect("empty").schema(), events_schema());
        assert_eq!(
            quarantine_batch(&[]).expect("empty").schema(),
            quarantine_schema()
        );
    }
}
