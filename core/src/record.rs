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
    /// The value stored in the `delivery` column.
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
    /// The audit SQS queue.
    Sqs,
    /// `POST /v1/ingest`.
    Http,
    /// An NDJSON file (backfill, benchmark).
    File,
}

impl IngestSource {
    /// The value stored in the `ingest_source` column.
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
    /// SQS's message id.
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
    /// Where it entered the ingester.
    pub source: IngestSource,
    /// When the ingester received it, milliseconds since the epoch.
    pub received_at_ms: i64,
}

/// One archived event (a row of the `events` table).
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// The payload's `event_id` (the SNS or SQS message id when it has none).
    pub event_id: String,
    /// The `event_type` message attribute.
    pub event_type: Option<String>,
    /// The `aggregate` message attribute.
    pub aggregate: Option<String>,
    /// The `schema_version` message attribute.
    pub schema_version: Option<String>,
    /// The `producer_system` message attribute.
    pub producer_system: Option<String>,
    /// The business flow's id (payload `correlation_id`, else the attribute).
    pub correlation_id: Option<String>,
    /// The trace id (payload, attribute, else from `traceparent`).
    pub trace_id: Option<String>,
    /// The W3C `traceparent`.
    pub traceparent: Option<String>,
    /// The payload's `timestamp`: when it happened, as the producer says (ms).
    pub occurred_at_ms: Option<i64>,
    /// When SNS published it (ms since the epoch; SQS's sent time in raw mode); partitions follow it.
    pub published_at_ms: i64,
    /// When the ingester received it (ms since the epoch); the first copy by this time wins.
    pub ingested_at_ms: i64,
    /// The SNS topic it was published to.
    pub topic_arn: Option<String>,
    /// SNS's message id.
    pub sns_message_id: Option<String>,
    /// SQS's message id.
    pub sqs_message_id: Option<String>,
    /// How SNS delivered it to SQS.
    pub delivery: DeliveryMode,
    /// Where it entered the ingester.
    pub source: IngestSource,
    /// Its message attributes, byte for byte.
    pub attributes: Attributes,
    /// The payload exactly as published.
    pub payload: String,
    /// Whether the payload matches its schema in the catalog.
    pub schema_valid: bool,
    /// Why not, when it does not.
    pub schema_error: Option<String>,
    /// Set by readers, never stored: other archived copies of this `event_id` differ from
    /// this one (payload, topic or standard attributes). The copy ingested first is the
    /// one shown; a conflict means someone put a different message under the same id.
    pub conflict: bool,
}

/// One message that could not be decoded as an event (a row of the `quarantine` table).
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineRecord {
    /// When the ingester received it (ms since the epoch).
    pub ingested_at_ms: i64,
    /// When SNS published it, when the body says.
    pub published_at_ms: Option<i64>,
    /// Where it entered the ingester.
    pub source: IngestSource,
    /// SQS's message id.
    pub sqs_message_id: Option<String>,
    /// Why it could not be decoded.
    pub reason: String,
    /// Its message attributes.
    pub attributes: Attributes,
    /// The body exactly as received.
    pub raw_body: Bytes,
}

/// What a delivery decodes to: exactly one row in exactly one table.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// An event row.
    Event(Box<EventRecord>),
    /// A quarantine row.
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
