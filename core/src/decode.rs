//! Decoding of delivered messages into archived records.
//!
//! Three body shapes are understood:
//! 1. the SNS JSON envelope (`Type`, `MessageId`, `TopicArn`, `Message`, `Timestamp`,
//!    `MessageAttributes` as `{Type, Value}`), the default SNS→SQS subscription;
//! 2. a raw payload (SNS raw message delivery), with the attributes as SQS message
//!    attributes;
//! 3. for file and HTTP ingest only, an SQS message as `aws sqs receive-message` prints it
//!    (`MessageId`, `Body`, `MessageAttributes` as `{DataType, StringValue|BinaryValue}`,
//!    `Attributes.SentTimestamp`), so raw-delivery backfills keep their attributes.
//!
//! Validation never rejects: a schema-invalid event is archived with `schema_valid=false`
//! and the reason. Only a message that cannot be identified as an event (not UTF-8, not
//! JSON without attributes, a truncated envelope, no `event_type`/`aggregate` attribute, an
//! SNS subscription confirmation) goes to the quarantine table, with its raw body and the
//! reason. Every delivery becomes exactly one row.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::DateTime;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::attributes::{self, AttributeValue, Attributes, text_attribute};
use crate::catalog::{Catalog, Validation};
use crate::record::{
    Decoded, Delivery, DeliveryMode, EventRecord, IngestSource, QuarantineRecord, SqsMetadata,
};

/// `schema_error` of an event whose payload is not JSON (counted as a decode failure).
pub const PAYLOAD_NOT_JSON: &str = "payload is not valid JSON";

/// Decodes one delivery into exactly one row.
pub fn decode(delivery: &Delivery, catalog: &Catalog) -> Decoded {
    let sqs = delivery.sqs.clone().unwrap_or_default();
    decode_body(delivery, &delivery.body, sqs, catalog, true)
}

fn decode_body(
    delivery: &Delivery,
    body: &[u8],
    sqs: SqsMetadata,
    catalog: &Catalog,
    allow_sqs_record: bool,
) -> Decoded {
    let quarantine = |reason: String, sqs: SqsMetadata| {
        Decoded::Quarantine(Box::new(QuarantineRecord {
            ingested_at_ms: delivery.received_at_ms,
            published_at_ms: sqs.sent_timestamp_ms,
            source: delivery.source,
            sqs_message_id: sqs.message_id,
            reason,
            attributes: sqs.attributes,
            raw_body: bytes::Bytes::copy_from_slice(body),
        }))
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return quarantine("body is not valid UTF-8 text".to_owned(), sqs);
    };
    // Fast path: a well-formed SNS envelope, decoded into borrowed fields without building
    // a JSON tree. Anything unusual falls through to the general path below.
    if text.contains("\"TopicArn\"")
        && let Ok(envelope) = serde_json::from_str::<TypedEnvelope>(text)
    {
        return decode_envelope(delivery, envelope.into(), sqs, catalog, &quarantine);
    }
    let parsed: Result<Value, serde_json::Error> = serde_json::from_str(text);
    if let Ok(Value::Object(object)) = &parsed {
        if is_sns_envelope(object) {
            return decode_envelope(
                delivery,
                EnvelopeParts::from_map(object),
                sqs,
                catalog,
                &quarantine,
            );
        }
        if allow_sqs_record
            && delivery.source != IngestSource::Sqs
            && let Some(result) = sqs_record(object)
        {
            return match result {
                Ok((inner_body, inner_sqs)) => {
                    decode_body(delivery, inner_body.as_bytes(), inner_sqs, catalog, false)
                }
                Err(reason) => quarantine(reason, sqs),
            };
        }
    }
    // A raw payload: the classification comes from the SQS message attributes.
    let attributes = sqs.attributes.clone();
    if text_attribute(&attributes, attributes::EVENT_TYPE).is_none()
        || text_attribute(&attributes, attributes::AGGREGATE).is_none()
    {
        let reason = match &parsed {
            Err(error) if attributes.is_empty() => {
                format!("body is not JSON ({error}) and the message has no attributes")
            }
            _ if attributes.is_empty() => {
                "raw message without attributes: event_type and aggregate are missing".to_owned()
            }
            _ => "raw message without the event_type and aggregate attributes".to_owned(),
        };
        return quarantine(reason, sqs);
    }
    let Some(event_id_fallback) = sqs.message_id.clone() else {
        return quarantine("raw message without a message id".to_owned(), sqs);
    };
    let published_at_ms = sqs.sent_timestamp_ms.unwrap_or(delivery.received_at_ms);
    Decoded::Event(Box::new(build_event(
        EventEnvelope {
            payload: text.to_owned(),
            parsed: parsed.ok(),
            attributes,
            fallback_event_id: event_id_fallback,
            published_at_ms,
            topic_arn: None,
            sns_message_id: None,
            sqs_message_id: sqs.message_id,
            delivery: DeliveryMode::Raw,
        },
        delivery,
        catalog,
    )))
}

fn is_sns_envelope(object: &Map<String, Value>) -> bool {
    ["Type", "MessageId", "TopicArn"]
        .iter()
        .all(|key| object.get(*key).is_some_and(Value::is_string))
}

/// The fields of an SNS envelope the archive keeps, however the body was parsed.
struct EnvelopeParts<'a> {
    kind: Cow<'a, str>,
    message_id: Cow<'a, str>,
    topic_arn: Cow<'a, str>,
    message: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    /// The attributes, or why they are malformed.
    attributes: Result<Attributes, String>,
}

/// An SNS envelope as serde reads it, borrowing from the body where no unescaping is
/// needed. Fails (and the general path takes over) on any unexpected shape.
#[derive(Deserialize)]
struct TypedEnvelope<'a> {
    #[serde(rename = "Type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "MessageId", borrow)]
    message_id: Cow<'a, str>,
    #[serde(rename = "TopicArn", borrow)]
    topic_arn: Cow<'a, str>,
    #[serde(rename = "Message", default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(rename = "Timestamp", default, borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "MessageAttributes", default, borrow)]
    attributes: Option<BTreeMap<Cow<'a, str>, TypedAttribute<'a>>>,
}

#[derive(Deserialize)]
struct TypedAttribute<'a> {
    #[serde(rename = "Type", borrow)]
    data_type: Cow<'a, str>,
    #[serde(rename = "Value", borrow)]
    value: Cow<'a, str>,
}

impl<'a> From<TypedEnvelope<'a>> for EnvelopeParts<'a> {
    fn from(envelope: TypedEnvelope<'a>) -> Self {
        // A BTreeMap iterates in key order: the attributes come out sorted.
        let attributes = envelope
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(name, attribute)| {
                (
                    name.into_owned(),
                    AttributeValue {
                        data_type: attribute.data_type.into_owned(),
                        value: attribute.value.into_owned(),
                    },
                )
            })
            .collect();
        EnvelopeParts {
            kind: envelope.kind,
            message_id: envelope.message_id,
            topic_arn: envelope.topic_arn,
            message: envelope.message,
            timestamp: envelope.timestamp,
            attributes: Ok(attributes),
        }
    }
}

impl<'a> EnvelopeParts<'a> {
    fn from_map(object: &'a Map<String, Value>) -> Self {
        let text = |key: &str| object.get(key).and_then(Value::as_str).map(Cow::Borrowed);
        EnvelopeParts {
            kind: text("Type").unwrap_or_default(),
            message_id: text("MessageId").unwrap_or_default(),
            topic_arn: text("TopicArn").unwrap_or_default(),
            message: text("Message"),
            timestamp: text("Timestamp"),
            attributes: match object.get("MessageAttributes") {
                None | Some(Value::Null) => Ok(Attributes::new()),
                Some(value) => envelope_attributes(value),
            },
        }
    }
}

fn decode_envelope(
    delivery: &Delivery,
    envelope: EnvelopeParts<'_>,
    sqs: SqsMetadata,
    catalog: &Catalog,
    quarantine: &dyn Fn(String, SqsMetadata) -> Decoded,
) -> Decoded {
    if envelope.kind != "Notification" {
        return quarantine(
            format!("SNS {} message, not an event notification", envelope.kind),
            sqs,
        );
    }
    let Some(message) = envelope.message else {
        return quarantine("SNS envelope without a Message".to_owned(), sqs);
    };
    let attributes = match envelope.attributes {
        Ok(attributes) => attributes,
        Err(reason) => return quarantine(reason, sqs),
    };
    if text_attribute(&attributes, attributes::EVENT_TYPE).is_none()
        || text_attribute(&attributes, attributes::AGGREGATE).is_none()
    {
        let reason = if attributes.is_empty() {
            "SNS notification without message attributes: event_type and aggregate are missing"
        } else {
            "SNS notification without the event_type and aggregate attributes"
        };
        return quarantine(reason.to_owned(), SqsMetadata { attributes, ..sqs });
    }
    let published_at_ms = envelope
        .timestamp
        .as_deref()
        .and_then(parse_rfc3339_ms)
        .or(sqs.sent_timestamp_ms)
        .unwrap_or(delivery.received_at_ms);
    let sns_message_id = envelope.message_id.into_owned();
    let parsed = serde_json::from_str(&message).ok();
    Decoded::Event(Box::new(build_event(
        EventEnvelope {
            payload: message.into_owned(),
            parsed,
            attributes,
            fallback_event_id: sns_message_id.clone(),
            published_at_ms,
            topic_arn: Some(envelope.topic_arn.into_owned()),
            sns_message_id: Some(sns_message_id),
            sqs_message_id: sqs.message_id,
            delivery: DeliveryMode::SnsEnvelope,
        },
        delivery,
        catalog,
    )))
}

fn envelope_attributes(value: &Value) -> Result<Attributes, String> {
    let Value::Object(map) = value else {
        return Err("SNS MessageAttributes is not an object".to_owned());
    };
    let mut attributes = Attributes::with_capacity(map.len());
    for (name, attribute) in map {
        let data_type = attribute.get("Type").and_then(Value::as_str);
        let value = attribute.get("Value").and_then(Value::as_str);
        match (data_type, value) {
            (Some(data_type), Some(value)) => attributes.push((
                name.clone(),
                AttributeValue {
                    data_type: data_type.to_owned(),
                    value: value.to_owned(),
                },
            )),
            _ => {
                return Err(format!(
                    "SNS message attribute '{name}' is not a {{Type, Value}} object"
                ));
            }
        }
    }
    attributes.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(attributes)
}

/// An SQS message as printed by `aws sqs receive-message`; `None` when `object` is not one.
fn sqs_record(object: &Map<String, Value>) -> Option<Result<(String, SqsMetadata), String>> {
    let body = object.get("Body")?.as_str()?;
    let message_id = object.get("MessageId")?.as_str()?;
    let sent_timestamp_ms = object
        .get("Attributes")
        .and_then(|attributes| attributes.get("SentTimestamp"))
        .and_then(Value::as_str)
        .and_then(|text| text.parse().ok());
    let mut attributes = Attributes::new();
    if let Some(Value::Object(map)) = object.get("MessageAttributes") {
        for (name, attribute) in map {
            let data_type = attribute.get("DataType").and_then(Value::as_str);
            let string_value = attribute.get("StringValue").and_then(Value::as_str);
            let binary_value = attribute.get("BinaryValue").and_then(Value::as_str);
            let value = match (data_type, string_value, binary_value) {
                (Some(data_type), Some(value), _) => AttributeValue {
                    data_type: data_type.to_owned(),
                    value: value.to_owned(),
                },
                (Some(data_type), None, Some(encoded))
                    if base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .is_ok() =>
                {
                    AttributeValue {
                        data_type: data_type.to_owned(),
                        value: encoded.to_owned(),
                    }
                }
                _ => {
                    return Some(Err(format!(
                        "SQS message attribute '{name}' has no DataType with a StringValue or base64 BinaryValue"
                    )));
                }
            };
            attributes.push((name.clone(), value));
        }
    }
    attributes.sort_by(|a, b| a.0.cmp(&b.0));
    Some(Ok((
        body.to_owned(),
        SqsMetadata {
            message_id: Some(message_id.to_owned()),
            sent_timestamp_ms,
            attributes,
        },
    )))
}

struct EventEnvelope {
    payload: String,
    parsed: Option<Value>,
    attributes: Attributes,
    fallback_event_id: String,
    published_at_ms: i64,
    topic_arn: Option<String>,
    sns_message_id: Option<String>,
    sqs_message_id: Option<String>,
    delivery: DeliveryMode,
}

fn build_event(envelope: EventEnvelope, delivery: &Delivery, catalog: &Catalog) -> EventRecord {
    let attributes = &envelope.attributes;
    let owned = |name: &str| text_attribute(attributes, name).map(str::to_owned);
    let event_type = owned(attributes::EVENT_TYPE);
    let aggregate = owned(attributes::AGGREGATE);
    let schema_version = owned(attributes::SCHEMA_VERSION);
    let producer_system = owned(attributes::PRODUCER_SYSTEM);

    let object = envelope.parsed.as_ref().and_then(Value::as_object);
    let payload_text = |key: &str| {
        object
            .and_then(|object| object.get(key))
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let event_id = payload_text("event_id").unwrap_or(envelope.fallback_event_id);
    let correlation_id =
        payload_text("correlation_id").or_else(|| owned(attributes::CORRELATION_ID));
    let traceparent = owned(attributes::TRACEPARENT).or_else(|| payload_text("traceparent"));
    let trace_id = payload_text("trace_id")
        .or_else(|| owned(attributes::TRACE_ID))
        .or_else(|| traceparent.as_deref().and_then(trace_id_from_traceparent));
    let occurred_at_ms = payload_text("timestamp")
        .as_deref()
        .and_then(parse_rfc3339_ms);

    let validation = match (&envelope.parsed, object) {
        (None, _) => Validation::Invalid(PAYLOAD_NOT_JSON.to_owned()),
        (Some(_), None) => Validation::Invalid("payload is not a JSON object".to_owned()),
        (Some(payload), Some(_)) => {
            let mut validation = catalog.validate(
                aggregate.as_deref().unwrap_or_default(),
                event_type.as_deref().unwrap_or_default(),
                schema_version.as_deref(),
                payload,
            );
            if producer_system.is_none() {
                validation = match validation {
                    Validation::Valid => {
                        Validation::Invalid("message has no producer_system attribute".to_owned())
                    }
                    Validation::Invalid(error) => Validation::Invalid(format!(
                        "message has no producer_system attribute; {error}"
                    )),
                };
            }
            validation
        }
    };
    let (schema_valid, schema_error) = match validation {
        Validation::Valid => (true, None),
        Validation::Invalid(error) => (false, Some(error)),
    };
    EventRecord {
        event_id,
        event_type,
        aggregate,
        schema_version,
        producer_system,
        correlation_id,
        trace_id,
        traceparent,
        occurred_at_ms,
        published_at_ms: envelope.published_at_ms,
        ingested_at_ms: delivery.received_at_ms,
        topic_arn: envelope.topic_arn,
        sns_message_id: envelope.sns_message_id,
        sqs_message_id: envelope.sqs_message_id,
        delivery: envelope.delivery,
        source: delivery.source,
        attributes: envelope.attributes,
        payload: envelope.payload,
        schema_valid,
        schema_error,
        conflict: false,
    }
}

/// Milliseconds since the epoch of an RFC 3339 / ISO 8601 timestamp.
pub(crate) fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.timestamp_millis())
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub(crate) fn trace_id_from_traceparent(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let _version = parts.next()?;
    let trace_id = parts.next()?;
    let valid = trace_id.len() == 32
        && trace_id.bytes().all(|byte| byte.is_ascii_hexdigit())
        && trace_id.bytes().any(|byte| byte != b'0');
    valid.then(|| trace_id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn catalog() -> Catalog {
        Catalog::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../events"))
            .expect("catalog")
    }

    fn standard_attributes() -> serde_json::Value {
        serde_json::json!({
            "event_type": {"Type": "String", "Value": "sold"},
            "aggregate": {"Type": "String", "Value": "listing"},
            "schema_version": {"Type": "String", "Value": "1.0.0"},
            "producer_system": {"Type": "String", "Value": "listing-management-api"},
            "traceparent": {"Type": "String", "Value": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
            "blob": {"Type": "Binary", "Value": "AJ+Slg=="}
        })
    }

    const PAYLOAD: &str = r#"{"event_id":"6f1c2d7e-1111-4c3b-9a53-3f4f1a2b3c4d","timestamp":"2026-11-20T10:00:00.250Z","correlation_id":"corr-1","listing_id":"L-1","price":250000.0,"agent_id":"A-7","sold_at":"2026-11-20T09:59:00Z","note":"Ação ✓"}"#;

    fn envelope(message: &str, attributes: serde_json::Value) -> String {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": "sns-msg-1",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:listing-events",
            "Message": message,
            "Timestamp": "2026-11-20T10:00:01.500Z",
            "SignatureVersion": "1",
            "MessageAttributes": attributes,
        })
        .to_string()
    }

    fn delivery(body: &str, sqs: Option<SqsMetadata>, source: IngestSource) -> Delivery {
        Delivery {
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            sqs,
            source,
            received_at_ms: 1_795_000_000_000,
        }
    }

    fn sqs_meta(attributes: Attributes) -> SqsMetadata {
        SqsMetadata {
            message_id: Some("sqs-msg-1".to_owned()),
            sent_timestamp_ms: Some(1_794_000_000_000),
            attributes,
        }
    }

    fn event(decoded: Decoded) -> EventRecord {
        match decoded {
            Decoded::Event(event) => *event,
            Decoded::Quarantine(q) => panic!("quarantined: {}", q.reason),
        }
    }

    fn quarantined(decoded: Decoded) -> QuarantineRecord {
        match decoded {
            Decoded::Quarantine(q) => *q,
            Decoded::Event(e) => panic!("decoded as event {}", e.event_id),
        }
    }

    #[test]
    fn envelope_fields_are_extracted_and_the_payload_is_kept_exactly() {
        let body = envelope(PAYLOAD, standard_attributes());
        let record = event(decode(
            &delivery(&body, Some(sqs_meta(vec![])), IngestSource::Sqs),
            &catalog(),
        ));
        assert_eq!(record.payload, PAYLOAD);
        assert_eq!(record.event_id, "6f1c2d7e-1111-4c3b-9a53-3f4f1a2b3c4d");
        assert_eq!(record.event_type.as_deref(), Some("sold"));
        assert_eq!(record.aggregate.as_deref(), Some("listing"));
        assert_eq!(record.correlation_id.as_deref(), Some("corr-1"));
        assert_eq!(
            record.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            record.occurred_at_ms,
            parse_rfc3339_ms("2026-11-20T10:00:00.250Z")
        );
        assert_eq!(
            record.published_at_ms,
            parse_rfc3339_ms("2026-11-20T10:00:01.500Z").expect("ts")
        );
        assert_eq!(record.sns_message_id.as_deref(), Some("sns-msg-1"));
        assert_eq!(record.sqs_message_id.as_deref(), Some("sqs-msg-1"));
        assert_eq!(record.delivery, DeliveryMode::SnsEnvelope);
        assert!(record.schema_valid, "{:?}", record.schema_error);
        assert_eq!(record.attributes.len(), 6);
        let blob = record
            .attributes
            .iter()
            .find(|(k, _)| k == "blob")
            .expect("blob");
        assert_eq!(blob.1.binary_bytes(), Some(vec![0, 159, 146, 150]));
    }

    #[test]
    fn raw_delivery_takes_attributes_from_sqs_and_falls_back_to_its_ids_and_times() {
        let attributes = envelope_attributes(&standard_attributes()).expect("attributes");
        let payload =
            r#"{"listing_id":"L-1","price":1,"agent_id":"A-1","sold_at":"2026-11-20T09:59:00Z"}"#;
        let record = event(decode(
            &delivery(payload, Some(sqs_meta(attributes)), IngestSource::Sqs),
            &catalog(),
        ));
        assert_eq!(record.delivery, DeliveryMode::Raw);
        assert_eq!(record.event_id, "sqs-msg-1");
        assert_eq!(record.published_at_ms, 1_794_000_000_000);
        assert_eq!(record.payload, payload);
        assert!(record.schema_valid, "{:?}", record.schema_error);
    }

    #[test]
    fn the_envelope_message_id_is_the_event_id_when_the_payload_has_none() {
        let body = envelope(
            r#"{"listing_id":"L-1","price":1,"agent_id":"A-1","sold_at":"2026-11-20T09:59:00Z"}"#,
            standard_attributes(),
        );
        let record = event(decode(
            &delivery(&body, None, IngestSource::File),
            &catalog(),
        ));
        assert_eq!(record.event_id, "sns-msg-1");
    }

    #[test]
    fn schema_problems_flag_the_row_and_never_reject_it() {
        let mut attributes = standard_attributes();
        attributes["aggregate"]["Value"] = "boat".into();
        let unknown = event(decode(
            &delivery(&envelope(PAYLOAD, attributes), None, IngestSource::File),
            &catalog(),
        ));
        assert!(!unknown.schema_valid);
        assert!(
            unknown
                .schema_error
                .as_deref()
                .unwrap_or_default()
                .contains("boat")
        );

        let invalid = event(decode(
            &delivery(
                &envelope("{}", standard_attributes()),
                None,
                IngestSource::File,
            ),
            &catalog(),
        ));
        assert!(!invalid.schema_valid);
        assert!(
            invalid
                .schema_error
                .as_deref()
                .unwrap_or_default()
                .contains("listing_id")
        );

        let not_json = event(decode(
            &delivery(
                &envelope("plain text", standard_attributes()),
                None,
                IngestSource::File,
            ),
            &catalog(),
        ));
        assert_eq!(not_json.payload, "plain text");
        assert_eq!(not_json.schema_error.as_deref(), Some(PAYLOAD_NOT_JSON));

        let mut attributes = standard_attributes();
        attributes
            .as_object_mut()
            .expect("object")
            .remove("producer_system");
        let no_producer = event(decode(
            &delivery(&envelope(PAYLOAD, attributes), None, IngestSource::File),
            &catalog(),
        ));
        assert!(
            no_producer
                .schema_error
                .as_deref()
                .unwrap_or_default()
                .contains("producer_system")
        );
    }

    #[test]
    fn poison_is_quarantined_with_its_reason_and_raw_body() {
        let confirmation = serde_json::json!({
            "Type": "SubscriptionConfirmation", "MessageId": "m", "TopicArn": "arn:t",
            "Token": "t", "SubscribeURL": "https://example.invalid/confirm"
        })
        .to_string();
        let full = envelope(PAYLOAD, standard_attributes());
        let truncated = &full[..full.len() / 2];
        let no_attributes = envelope(PAYLOAD, serde_json::json!({}));
        let malformed_attributes = envelope(PAYLOAD, serde_json::json!({"event_type": "sold"}));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json at all".to_vec(), "not JSON"),
            (truncated.as_bytes().to_vec(), "not JSON"),
            (b"{}".to_vec(), "without attributes"),
            (no_attributes.into_bytes(), "without message attributes"),
            (confirmation.into_bytes(), "SubscriptionConfirmation"),
            (
                malformed_attributes.into_bytes(),
                "'event_type' is not a {Type, Value} object",
            ),
            (vec![0xff, 0xfe, 0x00], "UTF-8"),
        ];
        for (body, expected) in cases {
            let delivery = Delivery {
                body: bytes::Bytes::from(body.clone()),
                sqs: Some(sqs_meta(vec![])),
                source: IngestSource::Sqs,
                received_at_ms: 5,
            };
            let record = quarantined(decode(&delivery, &catalog()));
            assert!(
                record.reason.contains(expected),
                "{expected}: {}",
                record.reason
            );
            assert_eq!(record.raw_body.as_ref(), body.as_slice());
            assert_eq!(record.sqs_message_id.as_deref(), Some("sqs-msg-1"));
        }
    }

    #[test]
    fn file_lines_in_the_aws_cli_message_shape_keep_raw_delivery_attributes() {
        let line = serde_json::json!({
            "MessageId": "cli-1",
            "Body": PAYLOAD,
            "Attributes": {"SentTimestamp": "1794000000123"},
            "MessageAttributes": {
                "event_type": {"DataType": "String", "StringValue": "sold"},
                "aggregate": {"DataType": "String", "StringValue": "listing"},
                "schema_version": {"DataType": "String", "StringValue": "1.0.0"},
                "producer_system": {"DataType": "String", "StringValue": "listing-management-api"},
                "blob": {"DataType": "Binary", "BinaryValue": "AJ+Slg=="}
            }
        })
        .to_string();
        let record = event(decode(
            &delivery(&line, None, IngestSource::File),
            &catalog(),
        ));
        assert_eq!(record.payload, PAYLOAD);
        assert_eq!(record.sqs_message_id.as_deref(), Some("cli-1"));
        assert_eq!(record.published_at_ms, 1_794_000_000_123);
        assert!(record.schema_valid, "{:?}", record.schema_error);

        // From the SQS source the same text is a raw payload, not a wrapper.
        let from_sqs = quarantined(decode(
            &delivery(&line, Some(sqs_meta(vec![])), IngestSource::Sqs),
            &catalog(),
        ));
        assert!(
            from_sqs.reason.contains("without attributes"),
            "{}",
            from_sqs.reason
        );
    }

    #[test]
    fn traceparent_parsing_rejects_malformed_ids() {
        assert_eq!(
            trace_id_from_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")
                .as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id_from_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_from_traceparent("garbage"), None);
    }
}
