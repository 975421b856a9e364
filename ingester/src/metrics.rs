//! Prometheus metrics of the ingester.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EventLabels {
    pub aggregate: String,
    pub event_type: String,
}

/// How long the ingester may go without completing a receive (SQS source), or, while it
/// holds unacknowledged messages, without completing a flush, before it calls itself stalled.
pub(crate) const STALL_TIMEOUT_MS: i64 = 5 * 60 * 1000;

impl Metrics {
    /// Why the ingester is stalled at `now_ms`, if it is: a receive loop that completes no
    /// call (a silent connection, an unreachable queue), or messages held while no flush
    /// completes (an unreachable store). `started_ms` stands in for "never".
    pub(crate) fn stall(&self, now_ms: i64, started_ms: i64, polls: bool) -> Option<String> {
        let since = |gauge: &Gauge| now_ms - gauge.get().max(started_ms);
        let receive_age = since(&self.last_receive_completed_ms);
        if polls && receive_age > STALL_TIMEOUT_MS {
            return Some(format!(
                "no receive from the queue has completed for {} s",
                receive_age / 1000
            ));
        }
        let flush_age = since(&self.last_flush_completed_ms);
        let held = self.unacknowledged_messages.get() > 0 || self.buffered_rows.get() > 0;
        if held && flush_age > STALL_TIMEOUT_MS {
            return Some(format!(
                "messages are held but no flush has stored its files for {} s",
                flush_age / 1000
            ));
        }
        None
    }
}

/// The label value of aggregates and event types the catalog does not know.
pub(crate) const UNKNOWN_LABEL: &str = "unknown";

impl EventLabels {
    /// Labels from the message's attributes, bounded by the catalog: a type the catalog
    /// does not define is counted as `unknown`, so senders cannot mint new series.
    pub(crate) fn bounded(
        catalog: &islets_core::catalog::Catalog,
        aggregate: Option<&str>,
        event_type: Option<&str>,
    ) -> Self {
        match (aggregate, event_type) {
            (Some(aggregate), Some(event_type))
                if catalog.event(aggregate, event_type).is_some() =>
            {
                EventLabels {
                    aggregate: aggregate.to_owned(),
                    event_type: event_type.to_owned(),
                }
            }
            (Some(aggregate), _) if catalog.aggregate(aggregate).is_some() => EventLabels {
                aggregate: aggregate.to_owned(),
                event_type: UNKNOWN_LABEL.to_owned(),
            },
            _ => EventLabels {
                aggregate: UNKNOWN_LABEL.to_owned(),
                event_type: UNKNOWN_LABEL.to_owned(),
            },
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TableLabels {
    pub table: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SourceLabels {
    pub source: String,
}

/// Every metric the ingester exports.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub events_archived: Family<EventLabels, Counter>,
    pub event_bytes_archived: Family<EventLabels, Counter>,
    pub schema_invalid: Family<EventLabels, Counter>,
    pub quarantined: Family<SourceLabels, Counter>,
    pub decode_failures: Family<SourceLabels, Counter>,
    pub files_written: Family<TableLabels, Counter>,
    pub file_bytes_written: Family<TableLabels, Counter>,
    pub flush_seconds: Histogram,
    pub flush_failures: Counter,
    /// Journal entries that could not be written (the files are stored all the same; a
    /// reader finds them at its next full listing instead of within seconds).
    pub journal_failures: Counter,
    pub messages_received: Family<SourceLabels, Counter>,
    pub messages_acknowledged: Family<SourceLabels, Counter>,
    pub receive_errors: Counter,
    pub visibility_extensions: Counter,
    pub visibility_extension_failures: Counter,
    /// When a receive last completed (ms since the epoch; 0: never).
    pub last_receive_completed_ms: Gauge,
    /// When a flush last stored its files (ms since the epoch; 0: never).
    pub last_flush_completed_ms: Gauge,
    /// 1 while the ingester is stalled (see [`Metrics::stall`]).
    pub stalled: Gauge,
    pub buffered_rows: Gauge,
    pub unacknowledged_messages: Gauge,
    pub queue_visible_messages: Gauge,
    pub queue_in_flight_messages: Gauge,
    pub queue_oldest_received_age_seconds: Gauge,
    registry: Registry,
}

impl Metrics {
    pub(crate) fn new() -> Self {
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
        let journal_failures = Counter::default();
        metrics_registry.register(
            "journal_failures",
            "Journal entries not written (their files are stored; queries see them after the next full listing)",
            journal_failures.clone(),
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
        let visibility_extensions = Counter::default();
        metrics_registry.register(
            "visibility_extensions",
            "Held SQS messages whose visibility timeout the heartbeat extended",
            visibility_extensions.clone(),
        );
        let visibility_extension_failures = Counter::default();
        metrics_registry.register(
            "visibility_extension_failures",
            "Visibility extensions SQS refused or that failed (the message may be delivered again)",
            visibility_extension_failures.clone(),
        );
        let last_receive_completed_ms = Gauge::default();
        metrics_registry.register(
            "last_receive_completed_timestamp_ms",
            "When a ReceiveMessage call last completed (ms since the epoch)",
            last_receive_completed_ms.clone(),
        );
        let last_flush_completed_ms = Gauge::default();
        metrics_registry.register(
            "last_flush_completed_timestamp_ms",
            "When a flush last stored its files (ms since the epoch)",
            last_flush_completed_ms.clone(),
        );
        let stalled = Gauge::default();
        metrics_registry.register(
            "stalled",
            "1 while no receive, or no flush of held messages, has completed for the stall timeout",
            stalled.clone(),
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
            journal_failures,
            messages_received,
            messages_acknowledged,
            receive_errors,
            visibility_extensions,
            visibility_extension_failures,
            last_receive_completed_ms,
            last_flush_completed_ms,
            stalled,
            buffered_rows,
            unacknowledged_messages,
            queue_visible_messages,
            queue_in_flight_messages,
            queue_oldest_received_age_seconds,
            registry,
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn encode(&self) -> String {
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

pub(crate) fn source_label(source: &str) -> SourceLabels {
    SourceLabels {
        source: source.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_labels_name_only_what_the_catalog_defines() {
        let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
        let catalog = islets_core::catalog::Catalog::load_dir(&directory).expect("catalog");
        let labels = |aggregate: Option<&str>, event_type: Option<&str>| {
            let labels = EventLabels::bounded(&catalog, aggregate, event_type);
            (labels.aggregate, labels.event_type)
        };
        let owned = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            labels(Some("listing"), Some("sold")),
            owned("listing", "sold")
        );
        assert_eq!(
            labels(Some("listing"), Some("x-1")),
            owned("listing", UNKNOWN_LABEL)
        );
        assert_eq!(
            labels(Some("boat"), Some("sold")),
            owned(UNKNOWN_LABEL, UNKNOWN_LABEL)
        );
        assert_eq!(labels(None, None), owned(UNKNOWN_LABEL, UNKNOWN_LABEL));
        // A thousand invented types are one series.
        let metrics = Metrics::new();
        for index in 0..1_000 {
            let name = format!("invented_{index}");
            metrics
                .events_archived
                .get_or_create(&EventLabels::bounded(&catalog, Some(&name), Some(&name)))
                .inc();
        }
        let text = metrics.encode();
        let series = text
            .lines()
            .filter(|line| line.starts_with("islets_ingester_events_archived_total{"))
            .count();
        assert_eq!(series, 1, "{text}");
    }

    #[test]
    fn a_receive_loop_or_a_flush_that_completes_nothing_is_a_stall() {
        let metrics = Metrics::new();
        let start = 1_000_000_000_000;
        let later = |ms: i64| start + ms;
        assert_eq!(
            metrics.stall(later(1_000), start, true),
            None,
            "just started"
        );
        assert!(
            metrics
                .stall(later(STALL_TIMEOUT_MS + 1_000), start, true)
                .is_some_and(|why| why.contains("no receive")),
            "no receive ever completed"
        );
        assert_eq!(
            metrics.stall(later(STALL_TIMEOUT_MS + 1_000), start, false),
            None,
            "an HTTP ingester polls nothing"
        );
        metrics
            .last_receive_completed_ms
            .set(later(STALL_TIMEOUT_MS));
        assert_eq!(
            metrics.stall(later(STALL_TIMEOUT_MS + 1_000), start, true),
            None
        );
        // Messages held, no flush completing: stalled on the store.
        metrics.unacknowledged_messages.set(10);
        metrics
            .last_receive_completed_ms
            .set(later(2 * STALL_TIMEOUT_MS));
        assert!(
            metrics
                .stall(later(2 * STALL_TIMEOUT_MS), start, true)
                .is_some_and(|why| why.contains("no flush"))
        );
        metrics
            .last_flush_completed_ms
            .set(later(2 * STALL_TIMEOUT_MS - 1_000));
        assert_eq!(
            metrics.stall(later(2 * STALL_TIMEOUT_MS), start, true),
            None
        );
    }
}
