//! The archived record: what one delivered message becomes.

use bytes::Bytes;

use crate::attributes::Attributes;

/// How the message body was shaped when it reached the audit queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// SNS JSON envelope (`Type: Notification`), the default SNS→SQS subscription.
    SnsEnvelope,
    /// Raw message delivery: the body is the payload, attributes are SQS attributes.
    Raw,
}

impl DeliveryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::SnsEnvelope => "sns-envelope",
            DeliveryMode::Raw => "raw",
        }
    }
}

/// Where a message entered the ingester.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IngestSource {
    Sqs,
    Http,
    File,
}

impl IngestSource {
    pub fn as_str(self) -> &'static str {
        match self {
            IngestSource::Sqs => "sqs",
            IngestSource::Http => "http",
            IngestSource::File => "file",
        }
    }
}

/// Metadata SQS attaches to a received message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqsMetadata {
    pub message_id: Option<String>,
    /// `SentTimestamp` system attribute, milliseconds since the epoch.
    pub sent_timestamp_ms: Option<i64>,
    /// The SQS message attributes (raw delivery puts the SNS attributes here).
    pub attributes: Attributes,
}

/// One message as it arrived, before decoding.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The body exactly as received.
    pub body: Bytes,
    /// Present for messages received from SQS.
    pub sqs: Option<SqsMetadata>,
    pub source: IngestSource,
    /// When the ingester received it, milliseconds since the epoch.
    pub received_at_ms: i64,
}

/// One archived event (a row of the `events` table).
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub event_id: String,
    pub event_type: Option<String>,
    pub aggregate: Option<String>,
    pub schema_version: Option<String>,
    pub producer_system: Option<String>,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
    pub traceparent: Option<String>,
    pub occurred_at_ms: Option<i64>,
    pub published_at_ms: i64,
    pub ingested_at_ms: i64,
    pub topic_arn: Option<String>,
    pub sns_message_id: Option<String>,
    pub sqs_message_id: Option<String>,
    pub delivery: DeliveryMode,
    pub source: IngestSource,
    pub attributes: Attributes,
    /// The payload exactly as published.
    pub payload: String,
    pub schema_valid: bool,
    pub schema_error: Option<String>,
    /// Set by readers, never stored: other archived copies of this `event_id` differ from
    /// this one (payload, topic or standard attributes). The copy ingested first is the
    /// one shown; a conflict means someone put a different message under the same id.
    pub conflict: bool,
}

/// One message that could not be decoded as an event (a row of the `quarantine` table).
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineRecord {
    pub ingested_at_ms: i64,
    pub published_at_ms: Option<i64>,
    pub source: IngestSource,
    pub sqs_message_id: Option<String>,
    pub reason: String,
    pub attributes: Attributes,
    pub raw_body: Bytes,
}

/// What a delivery decodes to: exactly one row in exactly one table.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Event(Box<EventRecord>),
    Quarantine(Box<QuarantineRecord>),
}

impl EventRecord {
    /// Approximate in-memory size, for the ingester's byte-based flush trigger.
    pub fn approximate_size(&self) -> usize {
        let attributes: usize = self
            .attributes
            .iter()
            .map(|(key, value)| key.len() + value.data_type.len() + value.value.len())
            .sum();
        self.payload.len() + attributes + self.event_id.len() + 256
    }
}

impl QuarantineRecord {
    /// Approximate in-memory size, for the ingester's byte-based flush trigger.
    pub fn approximate_size(&self) -> usize {
        self.raw_body.len() + self.reason.len() + 128
    }
}
