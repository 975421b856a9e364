//! Prometheus metrics of the query API (`GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A route template (`/v1/events/{event_id}`, never the raw path) and the status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// Every metric the query API exports.
#[derive(Debug)]
pub struct Metrics {
    /// Requests by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route.
    pub request_seconds: Family<RouteLabels, Histogram>,
    /// Rows answered by route.
    pub rows_returned: Family<RouteLabels, Counter>,
    /// Events served whose archived copies differ (the conflict flag).
    pub conflicting_events_served: Counter,
    /// Archive files that cannot be read (left out of every answer).
    pub unreadable_files: Gauge,
    registry: Registry,
}

impl Metrics {
    /// Every metric at zero, registered under the `islets_query` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("islets_query");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        let request_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register(
            "request_seconds",
            "Time to answer a request (until the first byte of a streamed export)",
            request_seconds.clone(),
        );
        let rows_returned = Family::<RouteLabels, Counter>::default();
        registry.register(
            "rows_returned",
            "Events or rows returned by paged routes",
            rows_returned.clone(),
        );
        let conflicting_events_served = Counter::default();
        registry.register(
            "conflicting_events_served",
            "Events answered whose archived copies differ in payload, topic or standard attributes (the conflict flag)",
            conflicting_events_served.clone(),
        );
        let unreadable_files = Gauge::default();
        registry.register(
            "unreadable_files",
            "Archive files that cannot be read; answers leave them out and say they are incomplete",
            unreadable_files.clone(),
        );
        Metrics {
            requests,
            request_seconds,
            rows_returned,
            conflicting_events_served,
            unreadable_files,
            registry,
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
