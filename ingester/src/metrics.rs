//! Prometheus metrics of the ingester.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub aggregate: String,
    pub event_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

/// Every metric the ingester exports.
#[derive(Debug)]
pub struct Metrics {
    pub events_archived: Family<EventLabels, Counter>,
    pub event_bytes_archived: Family<EventLabels, Counter>,
    pub schema_invalid: Family<EventLabels, Counter>,
    pub quarantined: Family<SourceLabels, Counter>,
    pub decode_failures: Family<SourceLabels, Counter>,
    pub files_written: Family<TableLabels, Counter>,
    pub file_bytes_written: Family<TableLabels, Counter>,
    pub flush_seconds: Histogram,
    pub flush_failures: Counter,
    pub messages_received: Family<SourceLabels, Counter>,
    pub messages_acknowledged: Family<SourceLabels, Counter>,
    pub receive_errors: Counter,
    pub buffered_rows: Gauge,
    pub unacknowledged_messages: Gauge,
    pub queue_visible_messages: Gauge,
    pub queue_in_flight_messages: Gauge,
    pub queue_oldest_received_age_seconds: Gauge,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("islets_ingester");
        let metrics_registry = &mut registry;
        let events_archived = Family::<EventLabels, Counter>::default();
        metrics_registry.register(
            "events_archived",
            "Events made durable in the archive",
            events_archived.clone(),
        );
        let event_bytes_archived = Family::<EventLabels, Counter>::default();
        metrics_registry.register(
            "event_payload_bytes_archived",
            "Payload bytes made durable",
            event_bytes_archived.clone(),
        );
        let schema_invalid = Family::<EventLabels, Counter>::default();
        metrics_registry.register(
            "schema_invalid_events",
            "Archived events that failed their JSON Schema",
            schema_invalid.clone(),
        );
        let quarantined = Family::<SourceLabels, Counter>::default();
        metrics_registry.register(
            "quarantined_messages",
            "Undecodable messages archived in the quarantine table",
            quarantined.clone(),
        );
        let decode_failures = Family::<SourceLabels, Counter>::default();
        metrics_registry.register(
            "decode_failures",
            "Messages that could not be decoded as events (quarantined, or payload not JSON)",
            decode_failures.clone(),
        );
        let files_written = Family::<TableLabels, Counter>::default();
        metrics_registry.register(
            "files_written",
            "Parquet objects written",
            files_written.clone(),
        );
        let file_bytes_written = Family::<TableLabels, Counter>::default();
        metrics_registry.register(
            "file_bytes_written",
            "Bytes of Parquet objects written",
            file_bytes_written.clone(),
        );
        let flush_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        metrics_registry.register(
            "flush_seconds",
            "Time to encode and store one buffer",
            flush_seconds.clone(),
        );
        let flush_failures = Counter::default();
        metrics_registry.register(
            "flush_failures",
            "Failed attempts to store a buffer (retried)",
            flush_failures.clone(),
        );
        let messages_received = Family::<SourceLabels, Counter>::default();
        metrics_registry.register(
            "messages_received",
            "Messages received from the source",
            messages_received.clone(),
        );
        let messages_acknowledged = Family::<SourceLabels, Counter>::default();
        metrics_registry.register(
            "messages_acknowledged",
            "Messages acknowledged (SQS: deleted) after their rows were durable",
            messages_acknowledged.clone(),
        );
        let receive_errors = Counter::default();
        metrics_registry.register(
            "receive_errors",
            "Failed ReceiveMessage calls",
            receive_errors.clone(),
        );
        let buffered_rows = Gauge::default();
        metrics_registry.register(
            "buffered_rows",
            "Rows waiting in the buffer",
            buffered_rows.clone(),
        );
        let unacknowledged_messages = Gauge::default();
        metrics_registry.register(
            "unacknowledged_messages",
            "Messages received and not yet acknowledged",
            unacknowledged_messages.clone(),
        );
        let queue_visible_messages = Gauge::default();
        metrics_registry.register(
            "queue_visible_messages",
            "SQS ApproximateNumberOfMessages",
            queue_visible_messages.clone(),
        );
        let queue_in_flight_messages = Gauge::default();
        metrics_registry.register(
            "queue_in_flight_messages",
            "SQS ApproximateNumberOfMessagesNotVisible",
            queue_in_flight_messages.clone(),
        );
        let queue_oldest_received_age_seconds = Gauge::default();
        metrics_registry.register(
            "queue_oldest_received_age_seconds",
            "Age (now - SentTimestamp) of the oldest message in the last receive",
            queue_oldest_received_age_seconds.clone(),
        );
        Metrics {
            events_archived,
            event_bytes_archived,
            schema_invalid,
            quarantined,
            decode_failures,
            files_written,
            file_bytes_written,
            flush_seconds,
            flush_failures,
            messages_received,
            messages_acknowledged,
            receive_errors,
            buffered_rows,
            unacknowledged_messages,
            queue_visible_messages,
            queue_in_flight_messages,
            queue_oldest_received_age_seconds,
            registry,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn source_label(source: &str) -> SourceLabels {
    SourceLabels {
        source: source.to_owned(),
    }
}
