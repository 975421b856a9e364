//! How an archived event looks in the API: times as RFC 3339 (UTC, milliseconds), the
//! payload embedded as JSON exactly as published (same bytes, same key order) when it is
//! JSON, as a string otherwise.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat};
use islets_core::attributes::AttributeValue;
use islets_core::record::EventRecord;
use serde::Serialize;
use serde_json::value::RawValue;

/// The payload: verbatim JSON, or the text when it is not JSON.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PayloadView {
    /// The payload is JSON: embedded as it was published.
    Json(Box<RawValue>),
    /// The payload is not JSON: a string.
    Text(String),
}

/// One event as the API returns it.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventView {
    /// The payload's `event_id` (else the SNS, else the SQS message id).
    pub event_id: String,
    /// The `event_type` attribute.
    pub event_type: Option<String>,
    /// The `aggregate` attribute.
    pub aggregate: Option<String>,
    /// The `schema_version` attribute.
    pub schema_version: Option<String>,
    /// The `producer_system` attribute.
    pub producer_system: Option<String>,
    /// The flow it belongs to.
    pub correlation_id: Option<String>,
    /// The trace id, from the payload or the W3C `traceparent`.
    pub trace_id: Option<String>,
    /// The W3C `traceparent`, as it arrived.
    pub traceparent: Option<String>,
    /// When it happened (payload timestamp), RFC 3339 UTC.
    pub occurred_at: Option<String>,
    /// When SNS accepted it, RFC 3339 UTC.
    pub published_at: String,
    /// When the ingester stored it, RFC 3339 UTC.
    pub ingested_at: String,
    /// The SNS topic it was published to (envelope delivery).
    pub topic_arn: Option<String>,
    /// The SNS message id.
    pub sns_message_id: Option<String>,
    /// The SQS message id of the delivery archived.
    pub sqs_message_id: Option<String>,
    /// `sns-envelope` or `raw`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub delivery: &'static str,
    /// `sqs`, `http` or `file`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub ingest_source: &'static str,
    /// Every message attribute, the standard ones included.
    #[cfg_attr(feature = "openapi", schema(value_type = AttributeMapSchema))]
    pub attributes: BTreeMap<String, AttributeValue>,
    /// The published message: embedded JSON, or a string when it is not JSON.
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub payload: PayloadView,
    /// Whether it passed its JSON Schema.
    pub schema_valid: bool,
    /// Why it did not.
    pub schema_error: Option<String>,
    /// Other archived copies of this event_id differ from this one (payload, topic or
    /// standard attributes): the copy ingested first is shown; investigate the others
    /// in `events_raw` (`POST /v1/sql`).
    pub conflict: bool,
}

/// A message attribute as SNS carries it (binary values base64), for the OpenAPI document.
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct AttributeSchema {
    /// `String`, `Number`, `Binary`, `String.Array`, ...
    Type: String,
    /// The value; binary values base64.
    Value: String,
}

/// The attribute map of an event, for the OpenAPI document.
#[cfg(feature = "openapi")]
pub type AttributeMapSchema = BTreeMap<String, AttributeSchema>;

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
            conflict: record.conflict,
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
