//! What a replayed event looks like on the wire: the payload bytes and every original
//! message attribute unchanged, plus replay markers within SNS's and SQS's limit of 10
//! message attributes.
//!
//! Markers, when room allows (10 minus the original attributes):
//! * 3 or more free: `replay_id`, `replay_reason`, `replay_original_published_at`;
//! * 1 or 2 free: one attribute `replay`, JSON `{"id","reason","original_published_at"}`;
//! * none free: no marker. The original attributes are never dropped or changed to make
//!   room; the message counts as "sent without markers" in the summary and the report.

use islets_core::attributes::{AttributeValue, Attributes};
use islets_core::record::EventRecord;
use serde::Serialize;

/// SNS and SQS accept at most this many message attributes.
pub(crate) const MAX_ATTRIBUTES: usize = 10;
/// Marker: the replay's id (also the ledger entry's).
pub(crate) const MARKER_ID: &str = "replay_id";
/// Marker: why the replay was run (`--reason`).
pub(crate) const MARKER_REASON: &str = "replay_reason";
/// Marker: when the event was first published (RFC 3339).
pub(crate) const MARKER_PUBLISHED_AT: &str = "replay_original_published_at";
/// The single combined marker used when only one or two attributes are free.
pub(crate) const MARKER_COMBINED: &str = "replay";

/// What every message of one replay is marked with.
#[derive(Debug, Clone)]
pub struct Markers {
    pub replay_id: String,
    pub reason: String,
}

/// How a message was marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marking {
    Full,
    Combined,
    /// The original uses all 10 attributes.
    None,
}

/// One message ready to send.
#[derive(Debug, Clone)]
pub struct OutMessage {
    pub event_id: String,
    /// The payload exactly as first published.
    pub body: String,
    /// The original attributes, then the markers.
    pub attributes: Attributes,
    pub marking: Marking,
    /// FIFO targets: the ordering group (correlation id, else event id).
    pub group_id: String,
    /// FIFO targets: the event id, so a retried send is not delivered twice.
    pub deduplication_id: String,
    /// Where the event was first published (envelope delivery), as archived: shown in
    /// envelope bodies, never used as a destination.
    pub topic_arn: Option<String>,
    /// Its aggregate: `--to-original` sends to the catalog topic of it.
    pub aggregate: Option<String>,
    pub published_at_ms: i64,
    pub correlation_id: Option<String>,
}

impl OutMessage {
    pub fn new(record: EventRecord, markers: &Markers) -> Self {
        let original_published_at = islets_query::rfc3339_ms(record.published_at_ms);
        let mut attributes = record.attributes;
        let free = MAX_ATTRIBUTES.saturating_sub(attributes.len());
        let marking = if free >= 3 {
            attributes.push((
                MARKER_ID.to_owned(),
                AttributeValue::string(&markers.replay_id),
            ));
            attributes.push((
                MARKER_REASON.to_owned(),
                AttributeValue::string(&markers.reason),
            ));
            attributes.push((
                MARKER_PUBLISHED_AT.to_owned(),
                AttributeValue::string(&original_published_at),
            ));
            Marking::Full
        } else if free >= 1 {
            let combined = serde_json::json!({
                "id": markers.replay_id,
                "reason": markers.reason,
                "original_published_at": original_published_at,
            });
            attributes.push((
                MARKER_COMBINED.to_owned(),
                AttributeValue::string(combined.to_string()),
            ));
            Marking::Combined
        } else {
            Marking::None
        };
        let group_id = record
            .correlation_id
            .clone()
            .unwrap_or_else(|| record.event_id.clone());
        OutMessage {
            deduplication_id: record.event_id.chars().take(128).collect(),
            group_id: group_id.chars().take(128).collect(),
            event_id: record.event_id,
            body: record.payload,
            attributes,
            marking,
            topic_arn: record.topic_arn,
            aggregate: record.aggregate,
            published_at_ms: record.published_at_ms,
            correlation_id: record.correlation_id,
        }
    }

    /// The SQS body an SNS subscription in envelope mode would deliver for this message
    /// published to `topic_arn`.
    pub fn envelope(&self, topic_arn: &str, message_id: &str, timestamp: &str) -> String {
        #[derive(Serialize)]
        struct Attribute<'a> {
            #[serde(rename = "Type")]
            data_type: &'a str,
            #[serde(rename = "Value")]
            value: &'a str,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Envelope<'a> {
            #[serde(rename = "Type")]
            kind: &'a str,
            message_id: &'a str,
            topic_arn: &'a str,
            message: &'a str,
            timestamp: &'a str,
            signature_version: &'a str,
            signature: &'a str,
            #[serde(rename = "SigningCertURL")]
            signing_cert_url: &'a str,
            #[serde(rename = "UnsubscribeURL")]
            unsubscribe_url: &'a str,
            message_attributes: std::collections::BTreeMap<&'a str, Attribute<'a>>,
        }
        let envelope = Envelope {
            kind: "Notification",
            message_id,
            topic_arn,
            message: &self.body,
            timestamp,
            signature_version: "1",
            signature: "",
            signing_cert_url: "",
            unsubscribe_url: "",
            message_attributes: self
                .attributes
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str(),
                        Attribute {
                            data_type: &value.data_type,
                            value: &value.value,
                        },
                    )
                })
                .collect(),
        };
        // Serializing borrowed strings cannot fail.
        serde_json::to_string(&envelope).unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use islets_core::record::{DeliveryMode, IngestSource};

    pub(crate) fn record(attributes: usize) -> EventRecord {
        EventRecord {
            event_id: "e-1".into(),
            event_type: Some("sold".into()),
            aggregate: Some("listing".into()),
            schema_version: Some("1.0.0".into()),
            producer_system: Some("api".into()),
            correlation_id: Some("c-1".into()),
            trace_id: None,
            traceparent: None,
            occurred_at_ms: None,
            published_at_ms: 1_795_168_800_123,
            ingested_at_ms: 1_795_168_800_200,
            topic_arn: Some("arn:aws:sns:us-east-1:1:listing-events".into()),
            sns_message_id: None,
            sqs_message_id: None,
            delivery: DeliveryMode::SnsEnvelope,
            source: IngestSource::Sqs,
            attributes: (0..attributes)
                .map(|i| (format!("a{i}"), AttributeValue::string(format!("v{i}"))))
                .collect(),
            payload: r#"{"b":1, "a":2}"#.into(),
            schema_valid: true,
            schema_error: None,
            conflict: false,
        }
    }

    #[test]
    fn markers_fit_beside_the_original_attributes_which_are_never_dropped() {
        let markers = Markers {
            replay_id: "r-1".into(),
            reason: "incident 42".into(),
        };
        for (original, marking, total) in [
            (4, Marking::Full, 7),
            (7, Marking::Full, 10),
            (8, Marking::Combined, 9),
            (9, Marking::Combined, 10),
            (10, Marking::None, 10),
        ] {
            let message = OutMessage::new(record(original), &markers);
            assert_eq!(message.marking, marking, "{original}");
            assert_eq!(message.attributes.len(), total, "{original}");
            assert_eq!(
                &message.attributes[..original],
                &record(original).attributes[..]
            );
            assert_eq!(message.body, r#"{"b":1, "a":2}"#, "payload bytes unchanged");
        }
        let combined = OutMessage::new(record(8), &markers);
        let value: serde_json::Value =
            serde_json::from_str(&combined.attributes[8].1.value).expect("json");
        assert_eq!(value["original_published_at"], "2026-11-20T10:00:00.123Z");
        assert_eq!(combined.group_id, "c-1");
        assert_eq!(combined.deduplication_id, "e-1");
    }

    #[test]
    fn the_envelope_is_what_an_sns_subscription_delivers() {
        let markers = Markers {
            replay_id: "r-1".into(),
            reason: "x".into(),
        };
        let message = OutMessage::new(record(1), &markers);
        let body = message.envelope(
            "arn:aws:sns:us-east-1:1:t",
            "m-1",
            "2026-11-23T10:00:00.000Z",
        );
        let envelope: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(envelope["Type"], "Notification");
        assert_eq!(envelope["Message"], r#"{"b":1, "a":2}"#);
        assert_eq!(envelope["TopicArn"], "arn:aws:sns:us-east-1:1:t");
        assert_eq!(envelope["MessageAttributes"]["a0"]["Value"], "v0");
        assert_eq!(envelope["MessageAttributes"]["replay_id"]["Value"], "r-1");
    }
}
