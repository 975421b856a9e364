//! Athena's result rows (every value as text) back into archived records.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use islets_core::attributes::{AttributeValue, Attributes};
use islets_core::record::{DeliveryMode, EventRecord, IngestSource};

use crate::error::{Error, Result};

/// The text values of one result row, in column order.
pub(super) fn row_values(row: &aws_sdk_athena::types::Row) -> Vec<Option<String>> {
    row.data
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|datum| datum.var_char_value.clone())
        .collect()
}

/// Column positions of a result, by name.
pub(super) struct Positions(HashMap<String, usize>);

impl Positions {
    pub(super) fn new(columns: &[String]) -> Self {
        Positions(
            columns
                .iter()
                .enumerate()
                .map(|(index, name)| (name.clone(), index))
                .collect(),
        )
    }

    pub(super) fn text<'a>(&self, row: &'a [Option<String>], column: &str) -> Option<&'a str> {
        self.0
            .get(column)
            .and_then(|index| row.get(*index))
            .and_then(|value| value.as_deref())
    }

    pub(super) fn required<'a>(&self, row: &'a [Option<String>], column: &str) -> Result<&'a str> {
        self.text(row, column)
            .ok_or_else(|| Error::Engine(format!("Athena result lacks {column}")))
    }

    pub(super) fn owned(&self, row: &[Option<String>], column: &str) -> Option<String> {
        self.text(row, column).map(str::to_owned)
    }

    pub(super) fn time(&self, row: &[Option<String>], column: &str) -> Result<Option<i64>> {
        self.text(row, column).map(parse_timestamp).transpose()
    }

    /// One archived record from a result row.
    pub(super) fn record(&self, row: &[Option<String>]) -> Result<EventRecord> {
        let delivery = match self.required(row, "delivery")? {
            "raw" => DeliveryMode::Raw,
            "sns-envelope" => DeliveryMode::SnsEnvelope,
            other => return Err(Error::Engine(format!("Athena result: delivery '{other}'"))),
        };
        let source = match self.required(row, "ingest_source")? {
            "sqs" => IngestSource::Sqs,
            "http" => IngestSource::Http,
            "file" => IngestSource::File,
            other => {
                return Err(Error::Engine(format!(
                    "Athena result: ingest_source '{other}'"
                )));
            }
        };
        Ok(EventRecord {
            event_id: self.required(row, "event_id")?.to_owned(),
            event_type: self.owned(row, "event_type"),
            aggregate: self.owned(row, "aggregate"),
            schema_version: self.owned(row, "schema_version"),
            producer_system: self.owned(row, "producer_system"),
            correlation_id: self.owned(row, "correlation_id"),
            trace_id: self.owned(row, "trace_id"),
            traceparent: self.owned(row, "traceparent"),
            occurred_at_ms: self.time(row, "occurred_at")?,
            published_at_ms: parse_timestamp(self.required(row, "published_at")?)?,
            ingested_at_ms: parse_timestamp(self.required(row, "ingested_at")?)?,
            topic_arn: self.owned(row, "topic_arn"),
            sns_message_id: self.owned(row, "sns_message_id"),
            sqs_message_id: self.owned(row, "sqs_message_id"),
            delivery,
            source,
            attributes: parse_attributes(self.text(row, "attributes").unwrap_or("{}"))?,
            payload: self.required(row, "payload")?.to_owned(),
            schema_valid: self.required(row, "schema_valid")? == "true",
            schema_error: self.owned(row, "schema_error"),
            conflict: self.text(row, "conflict") == Some("true"),
        })
    }
}

/// Athena's text form of a timestamp (`2026-11-20 10:00:00.000`, UTC) in milliseconds.
pub(super) fn parse_timestamp(text: &str) -> Result<i64> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .map(|time| time.and_utc().timestamp_millis())
        .map_err(|error| Error::Engine(format!("Athena timestamp '{text}': {error}")))
}

/// The attribute map as `json_format(CAST(attributes AS JSON))` renders it:
/// `{"name": {"data_type": "String", "value": "sold"}}`.
fn parse_attributes(text: &str) -> Result<Attributes> {
    #[derive(serde::Deserialize)]
    struct Entry {
        data_type: String,
        value: String,
    }
    let map: std::collections::BTreeMap<String, Entry> = serde_json::from_str(text)
        .map_err(|error| Error::Engine(format!("Athena attributes '{text}': {error}")))?;
    Ok(map
        .into_iter()
        .map(|(name, entry)| {
            (
                name,
                AttributeValue {
                    data_type: entry.data_type,
                    value: entry.value,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_text_parses_back_into_records() {
        assert_eq!(
            parse_timestamp("2026-11-20 10:00:00.123").expect("time"),
            1_795_168_800_123
        );
        assert!(parse_timestamp("yesterday").is_err());
        let attributes = parse_attributes(
            r#"{"b":{"data_type":"Binary","value":"AAE="},"a":{"data_type":"String","value":"x"}}"#,
        )
        .expect("attributes");
        assert_eq!(attributes[0].0, "a");
        assert_eq!(attributes[1].1.data_type, "Binary");
        assert!(parse_attributes("{a=b}").is_err());
    }
}
