//! How an archived event looks in the API: times as RFC 3339 (UTC, milliseconds), the
//! payload embedded as JSON exactly as published (same bytes, same key order) when it is
//! JSON, as a string otherwise.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat};
use islets_core::attributes::AttributeValue;
use islets_core::record::EventRecord;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// The payload: verbatim JSON, or the text when it is not JSON.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PayloadView {
    Json(Box<RawValue>),
    Text(String),
}

/// One event as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub event_id: String,
    pub event_type: Option<String>,
    pub aggregate: Option<String>,
    pub schema_version: Option<String>,
    pub producer_system: Option<String>,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
    pub traceparent: Option<String>,
    /// When it happened (payload timestamp), RFC 3339 UTC.
    pub occurred_at: Option<String>,
    /// When SNS accepted it, RFC 3339 UTC.
    pub published_at: String,
    pub ingested_at: String,
    pub topic_arn: Option<String>,
    pub sns_message_id: Option<String>,
    pub sqs_message_id: Option<String>,
    /// `sns-envelope` or `raw`.
    #[schema(value_type = String)]
    pub delivery: &'static str,
    /// `sqs`, `http` or `file`.
    #[schema(value_type = String)]
    pub ingest_source: &'static str,
    /// Every message attribute, the standard ones included.
    #[schema(value_type = crate::api::openapi::AttributeMap)]
    pub attributes: BTreeMap<String, AttributeValue>,
    /// The published message: embedded JSON, or a string when it is not JSON.
    #[schema(value_type = Value)]
    pub payload: PayloadView,
    pub schema_valid: bool,
    pub schema_error: Option<String>,
}

/// RFC 3339 with milliseconds, UTC (`2026-11-23T16:20:57.123Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|time| time.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl From<EventRecord> for EventView {
    fn from(record: EventRecord) -> Self {
        let payload = match serde_json::from_str::<Box<RawValue>>(&record.payload) {
            Ok(raw) => PayloadView::Json(raw),
            Err(_) => PayloadView::Text(record.payload),
        };
        EventView {
            event_id: record.event_id,
            event_type: record.event_type,
            aggregate: record.aggregate,
            schema_version: record.schema_version,
            producer_system: record.producer_system,
            correlation_id: record.correlation_id,
            trace_id: record.trace_id,
            traceparent: record.traceparent,
            occurred_at: record.occurred_at_ms.map(rfc3339_ms),
            published_at: rfc3339_ms(record.published_at_ms),
            ingested_at: rfc3339_ms(record.ingested_at_ms),
            topic_arn: record.topic_arn,
            sns_message_id: record.sns_message_id,
            sqs_message_id: record.sqs_message_id,
            delivery: record.delivery.as_str(),
            ingest_source: record.source.as_str(),
            attributes: record.attributes.into_iter().collect(),
            payload,
            schema_valid: record.schema_valid,
            schema_error: record.schema_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::record;

    #[test]
    fn json_payloads_are_embedded_verbatim_and_others_as_text() {
        let mut event = record(1, 1_793_491_200_123);
        event.payload = r#"{"z":1,"a":"ação","n":1.50}"#.to_owned();
        let json = serde_json::to_string(&EventView::from(event.clone())).expect("json");
        assert!(
            json.contains(r#""payload":{"z":1,"a":"ação","n":1.50}"#),
            "{json}"
        );
        assert!(
            json.contains(r#""published_at":"2026-11-01T00:00:00.123Z""#),
            "{json}"
        );
        event.payload = "not json".to_owned();
        let json = serde_json::to_string(&EventView::from(event)).expect("json");
        assert!(json.contains(r#""payload":"not json""#), "{json}");
    }
}
