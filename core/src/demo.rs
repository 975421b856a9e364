//! A realistic, deterministic data set for the demo, tests and benchmarks: business flows
//! sharing correlation ids across the listing, agent and company aggregates, spread over
//! days, delivered as the audit queue receives them (SNS JSON envelopes), with a few
//! schema-invalid events, redelivered duplicates and undecodable messages mixed in.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::catalog::Catalog;

/// What to generate.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of business flows (each 2 to 9 events).
    pub flows: usize,
    /// Flows start within this many days before `end`.
    pub days: u32,
    /// The data set ends at this time.
    pub end: DateTime<Utc>,
    /// Seed of the generator: the same seed gives the same data set.
    pub seed: u64,
    /// Percentage (0-100) of events made schema-invalid.
    pub invalid_percent: u32,
    /// Percentage (0-100) of deliveries repeated, as SQS redelivery does.
    pub duplicate_percent: u32,
    /// Undecodable messages appended (subscription confirmation, truncated envelope, ...).
    pub poison_messages: usize,
    /// ARN prefix of the `<aggregate>-events` topics.
    pub topic_arn_prefix: String,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            flows: 300,
            days: 7,
            end: Utc::now(),
            seed: 7,
            invalid_percent: 2,
            duplicate_percent: 2,
            poison_messages: 3,
            topic_arn_prefix: "arn:aws:sns:us-east-1:000000000000:".to_owned(),
        }
    }
}

/// One generated event before it is wrapped for delivery.
#[derive(Debug, Clone)]
pub struct DemoEvent {
    /// The aggregate.
    pub aggregate: &'static str,
    /// The event type.
    pub event_type: &'static str,
    /// The schema version the payload follows.
    pub schema_version: String,
    /// The producing system.
    pub producer_system: &'static str,
    /// The event's id.
    pub event_id: String,
    /// The business flow it belongs to.
    pub correlation_id: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When it was published.
    pub published_at: DateTime<Utc>,
    /// The JSON payload.
    pub payload: String,
    /// The W3C `traceparent`.
    pub traceparent: String,
}

/// The generated data set.
#[derive(Debug, Clone, Default)]
pub struct DemoData {
    /// Every distinct event, in publication order.
    pub events: Vec<DemoEvent>,
    /// The deliveries: one SNS envelope per line (duplicates and poison included).
    pub lines: Vec<String>,
    /// Events made schema-invalid.
    pub invalid_events: usize,
    /// Deliveries repeated.
    pub duplicate_deliveries: usize,
    /// Undecodable messages appended.
    pub poison_messages: usize,
}

const CITIES: &[(&str, &str)] = &[
    ("São Paulo", "BR"),
    ("Zürich", "CH"),
    ("Lisboa", "PT"),
    ("Kraków", "PL"),
    ("Austin", "US"),
    ("Manchester", "GB"),
];
const STREETS: &[&str] = &[
    "Rua Augusta",
    "Bahnhofstraße",
    "Avenida da Liberdade",
    "Main Street",
    "ul. Floriańska",
];
const NAMES: &[&str] = &[
    "Ana Conceição",
    "Jürgen Müller",
    "Zoë O'Brien",
    "Mateus Araújo",
    "Łucja Nowak",
    "Sam Lee",
];

struct Generator<'a> {
    rng: StdRng,
    catalog: &'a Catalog,
    options: &'a DemoOptions,
    data: DemoData,
    next_listing: u32,
    next_agent: u32,
    next_company: u32,
}

/// Generates the data set. Event types missing from `catalog` are still generated (with
/// version 1.0.0) so a trimmed catalog shows up as "unknown event type" in the archive.
pub fn generate(catalog: &Catalog, options: &DemoOptions) -> DemoData {
    let mut generator = Generator {
        rng: StdRng::seed_from_u64(options.seed),
        catalog,
        options,
        data: DemoData::default(),
        next_listing: 1000,
        next_agent: 100,
        next_company: 10,
    };
    let span_ms = i64::from(options.days.max(1)) * 86_400_000;
    let mut flows: Vec<(DateTime<Utc>, usize)> = (0..options.flows)
        .map(|index| {
            let offset = generator.rng.random_range(0..span_ms);
            (
                options.end - Duration::milliseconds(span_ms) + Duration::milliseconds(offset),
                index,
            )
        })
        .collect();
    flows.sort();
    for (start, index) in flows {
        if index % 5 == 0 {
            generator.company_flow(start);
        } else {
            generator.listing_flow(start);
        }
    }
    generator
        .data
        .events
        .sort_by_key(|event| event.published_at);
    generator.deliveries();
    generator.data
}

impl Generator<'_> {
    fn uuid(&mut self) -> String {
        let value: u128 = self.rng.random();
        let value = (value & !(0xf << 76)) | (0x4 << 76); // version 4
        let value = (value & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
        let hex = format!("{value:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    fn hex(&mut self, digits: usize) -> String {
        (0..digits)
            .map(|_| char::from_digit(self.rng.random_range(0..16), 16).unwrap_or('0'))
            .collect()
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    fn version_of(&self, aggregate: &str, event_type: &str) -> String {
        self.catalog
            .event(aggregate, event_type)
            .map(|event| event.current().version.to_string())
            .unwrap_or_else(|| "1.0.0".to_owned())
    }

    fn emit(
        &mut self,
        aggregate: &'static str,
        event_type: &'static str,
        occurred_at: DateTime<Utc>,
        correlation_id: &str,
        mut body: Value,
    ) {
        let event_id = self.uuid();
        let mut schema_version = self.version_of(aggregate, event_type);
        if self.rng.random_range(0..100) < self.options.invalid_percent {
            // A producer bug: a required business field goes missing.
            if let Some(object) = body.as_object_mut() {
                let first_key = object.keys().next().cloned();
                if let Some(key) = first_key {
                    object.remove(&key);
                }
            }
            self.data.invalid_events += 1;
        } else if (aggregate, event_type) == ("listing", "price_changed")
            && self.rng.random_range(0..10) == 0
        {
            // A producer still on the previous MAJOR version (accepted during deprecation).
            let price = body["new_price"].clone();
            body = json!({"listing_id": body["listing_id"], "price": price});
            schema_version = "1.3.0".to_owned();
        }
        let mut payload = serde_json::Map::new();
        payload.insert("event_id".into(), Value::String(event_id.clone()));
        payload.insert(
            "timestamp".into(),
            Value::String(occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        payload.insert(
            "correlation_id".into(),
            Value::String(correlation_id.to_owned()),
        );
        if let Value::Object(fields) = body {
            payload.extend(fields);
        }
        let producer_system = match aggregate {
            "listing" => "listing-management-api",
            "company" => "company-directory-api",
            _ => "agents-api",
        };
        let traceparent = format!("00-{}-{}-01", self.hex(32), self.hex(16));
        let published_at = occurred_at + Duration::milliseconds(self.rng.random_range(20..900));
        self.data.events.push(DemoEvent {
            aggregate,
            event_type,
            schema_version,
            producer_system,
            event_id,
            correlation_id: correlation_id.to_owned(),
            occurred_at,
            published_at,
            payload: Value::Object(payload).to_string(),
            traceparent,
        });
    }

    fn later(&mut self, time: DateTime<Utc>, max_minutes: i64) -> DateTime<Utc> {
        time + Duration::milliseconds(self.rng.random_range(30_000..max_minutes.max(1) * 60_000))
    }

    fn listing_flow(&mut self, start: DateTime<Utc>) {
        let correlation_id = format!("corr-{}", self.uuid());
        self.next_listing += 1;
        self.next_agent += 1;
        let listing_id = format!("L-{}", self.next_listing);
        let agent_id = format!("A-{}", 100 + self.next_agent % 40);
        let (city, country) = self.pick(CITIES);
        let street = self.pick(STREETS);
        let mut price = f64::from(self.rng.random_range(90..2_500u32) * 1000);
        let currency = match country {
            "BR" => "BRL",
            "US" => "USD",
            "GB" => "GBP",
            _ => "EUR",
        };
        let long_description = if self.rng.random_range(0..50) == 0 {
            // Some listings carry a long free-text description (large payloads happen).
            "Spacious apartment with a view — ótimo estado, großer Balkon. ".repeat(40)
        } else {
            format!("Charming home in {city} ✨")
        };
        self.emit("listing", "registered", start, &correlation_id, json!({
            "listing_id": listing_id, "agent_id": agent_id,
            "company_id": format!("C-{}", 10 + self.next_listing % 12),
            "address": {"street": format!("{street} {}", self.next_listing % 300), "city": city, "postal_code": "1000-001", "country": country},
            "asking_price": price, "currency": currency, "bedrooms": self.next_listing % 5,
            "description": long_description,
        }));
        let mut time = self.later(start, 120);
        self.emit(
            "agent",
            "assigned_to_listing",
            time,
            &correlation_id,
            json!({
                "agent_id": agent_id, "listing_id": listing_id, "role": "primary",
            }),
        );
        for _ in 0..self.rng.random_range(0..3) {
            time = self.later(time, 24 * 60);
            let new_price = (price * 0.95).round();
            self.emit(
                "listing",
                "price_changed",
                time,
                &correlation_id,
                json!({
                    "listing_id": listing_id, "old_price": price, "new_price": new_price,
                    "currency": currency, "reason": "market adjustment",
                }),
            );
            price = new_price;
        }
        for _ in 0..self.rng.random_range(0..4) {
            time = self.later(time, 12 * 60);
            let proposal_id = format!("P-{}", self.hex(8));
            let buyer = self.pick(NAMES);
            self.emit("listing", "received_proposal", time, &correlation_id, json!({
                "listing_id": listing_id, "proposal_id": proposal_id, "buyer_name": buyer,
                "amount": (price * 0.97).round(), "currency": currency,
                "expires_at": (time + Duration::days(3)).to_rfc3339_opts(SecondsFormat::Secs, true),
            }));
        }
        if self.rng.random_bool(0.5) {
            time = self.later(time, 48 * 60);
            self.emit(
                "listing",
                "sold",
                time,
                &correlation_id,
                json!({
                    "listing_id": listing_id, "price": price, "agent_id": agent_id,
                    "sold_at": time.to_rfc3339_opts(SecondsFormat::Secs, true),
                }),
            );
        }
    }

    fn company_flow(&mut self, start: DateTime<Utc>) {
        let correlation_id = format!("corr-{}", self.uuid());
        self.next_company += 1;
        let company_id = format!("C-{}", self.next_company);
        let (_, country) = self.pick(CITIES);
        let tax_id = self.hex(10);
        self.emit("company", "registered", start, &correlation_id, json!({
            "company_id": company_id, "legal_name": format!("Imobiliária Horizonte {} Ltda.", self.next_company),
            "trade_name": "Horizonte", "country": country, "tax_id": tax_id,
        }));
        let mut time = start;
        for _ in 0..self.rng.random_range(1..3) {
            time = self.later(time, 6 * 60);
            self.next_agent += 1;
            let name = self.pick(NAMES);
            self.emit(
                "agent",
                "hired",
                time,
                &correlation_id,
                json!({
                    "agent_id": format!("A-{}", self.next_agent), "company_id": company_id,
                    "full_name": name, "email": format!("agent{}@example.com", self.next_agent),
                }),
            );
        }
        let old_score = f64::from(self.rng.random_range(40..90u32));
        time = self.later(time, 24 * 60);
        self.emit(
            "company",
            "score_changed",
            time,
            &correlation_id,
            json!({
                "company_id": company_id, "old_score": old_score, "new_score": old_score + 3.5,
                "factors": ["response_time", "listing_quality"],
            }),
        );
        if self.rng.random_range(0..10) == 0 {
            time = self.later(time, 24 * 60);
            self.emit(
                "company",
                "suspended",
                time,
                &correlation_id,
                json!({
                    "company_id": company_id, "reason": "unpaid_invoices",
                }),
            );
        }
    }

    fn envelope(&self, event: &DemoEvent, message_id: &str) -> String {
        json!({
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": format!("{}{}-events", self.options.topic_arn_prefix, event.aggregate),
            "Message": event.payload,
            "Timestamp": event.published_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "SignatureVersion": "1",
            "Signature": "ZGVtbw==",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
            "MessageAttributes": {
                "event_type": {"Type": "String", "Value": event.event_type},
                "aggregate": {"Type": "String", "Value": event.aggregate},
                "schema_version": {"Type": "String", "Value": event.schema_version},
                "producer_system": {"Type": "String", "Value": event.producer_system},
                "traceparent": {"Type": "String", "Value": event.traceparent},
            }
        })
        .to_string()
    }

    fn deliveries(&mut self) {
        let mut lines = Vec::with_capacity(self.data.events.len() + 16);
        for index in 0..self.data.events.len() {
            let message_id = self.uuid();
            let line = self.envelope(&self.data.events[index], &message_id);
            if self.rng.random_range(0..100) < self.options.duplicate_percent {
                lines.push(line.clone());
                self.data.duplicate_deliveries += 1;
            }
            lines.push(line);
        }
        let poison = [
            json!({"Type": "SubscriptionConfirmation", "MessageId": "confirm-1",
                   "TopicArn": format!("{}listing-events", self.options.topic_arn_prefix),
                   "Token": "2336412f37", "Message": "You have chosen to subscribe to the topic",
                   "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"})
            .to_string(),
            lines.first().map(|line| line[..line.floor_char_boundary(line.len() / 2)].to_owned()).unwrap_or_default(),
            "{}".to_owned(),
        ];
        for index in 0..self.options.poison_messages {
            lines.push(poison[index % poison.len()].clone());
            self.data.poison_messages += 1;
        }
        self.data.lines = lines;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use crate::record::{Decoded, Delivery, IngestSource};
    use std::collections::HashSet;

    #[test]
    fn the_demo_data_decodes_as_described() {
        let catalog =
            Catalog::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events"))
                .expect("catalog");
        let data = generate(
            &catalog,
            &DemoOptions {
                flows: 120,
                ..DemoOptions::default()
            },
        );
        let mut event_ids = HashSet::new();
        let mut correlations = HashSet::new();
        let (mut invalid, mut quarantined, mut deliveries) = (0, 0, 0);
        for line in &data.lines {
            deliveries += 1;
            let delivery = Delivery {
                body: bytes::Bytes::copy_from_slice(line.as_bytes()),
                sqs: None,
                source: IngestSource::File,
                received_at_ms: 0,
            };
            match decode(&delivery, &catalog) {
                Decoded::Event(event) => {
                    if !event.schema_valid {
                        invalid += 1;
                    }
                    correlations.insert(event.correlation_id.clone());
                    event_ids.insert(event.event_id.clone());
                }
                Decoded::Quarantine(_) => quarantined += 1,
            }
        }
        assert_eq!(event_ids.len(), data.events.len());
        assert_eq!(
            deliveries,
            data.events.len() + data.duplicate_deliveries + data.poison_messages
        );
        assert_eq!(quarantined, data.poison_messages);
        assert!(
            invalid >= data.invalid_events,
            "{invalid} < {}",
            data.invalid_events
        );
        assert!(correlations.len() >= 100 && correlations.len() < data.events.len());
        let aggregates: HashSet<_> = data.events.iter().map(|e| e.aggregate).collect();
        assert_eq!(aggregates.len(), 3);
    }
}
