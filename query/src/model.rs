//! The query model: what a caller may ask for, validated once.
//!
//! Times filter and order on `published_at` (the bus time that partitions the archive);
//! every row also carries `occurred_at`. Ranges are half-open: `since <= published_at < until`.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use islets_core::layout::{Partition, Table};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::error::{Error, Result};

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page; exports (NDJSON, CSV) stream without a cap.
pub const MAX_LIMIT: usize = 1_000;
/// Most `event_id` values in one query.
pub const MAX_EVENT_IDS: usize = 100;

/// Sort direction, by (`published_at`, `event_id`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// `listing.sold`, or `sold` in any aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypeFilter {
    /// The aggregate (`listing`), when the filter names one.
    pub aggregate: Option<String>,
    /// The type within the aggregate (`sold`).
    pub event_type: String,
}

/// Which events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Any of these event ids (none: every id).
    pub event_ids: Vec<String>,
    /// Only this flow.
    pub correlation_id: Option<String>,
    /// Any of these event types (none: every type).
    pub event_types: Vec<EventTypeFilter>,
    /// Only this aggregate.
    pub aggregate: Option<String>,
    /// Only events from this producer.
    pub producer_system: Option<String>,
    /// Inclusive lower bound of `published_at`, ms since the epoch.
    pub since_ms: Option<i64>,
    /// Exclusive upper bound of `published_at`, ms since the epoch.
    pub until_ms: Option<i64>,
    /// Only events that passed (true) or failed (false) their JSON Schema.
    pub schema_valid: Option<bool>,
}

/// A page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Which events.
    pub filter: EventFilter,
    /// Events per page.
    pub limit: usize,
    /// By `published_at`, then `event_id`.
    pub order: Order,
    /// Where the previous page ended (none: the first page).
    pub cursor: Option<Cursor>,
}

/// Where the previous page ended, and the snapshot of files it read: later pages read the
/// same files (files are immutable, named by creation-ordered ULIDs), so rows that land
/// meanwhile never shift a page — no row is repeated or skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Only files whose id is at most this are read.
    pub snapshot: Ulid,
    /// The last row's `published_at`.
    pub after_published_at_ms: i64,
    /// The last row's `event_id`.
    pub after_event_id: String,
    fingerprint: u64,
    /// The time window of the first page, as resolved then: a relative `since=7d` means
    /// the same instant on every page, not one that moves with the clock.
    window: (Option<i64>, Option<i64>),
    /// When the first cursor of the query was made (ms).
    created_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct CursorWire {
    v: u8,
    s: String,
    t: i64,
    e: String,
    f: String,
    #[serde(default)]
    a: Option<i64>,
    #[serde(default)]
    b: Option<i64>,
    c: i64,
}

impl Cursor {
    /// The cursor continuing `query` after the row (`published_at_ms`, `event_id`).
    pub fn after(query: &EventQuery, snapshot: Ulid, published_at_ms: i64, event_id: &str) -> Self {
        let created_ms = query
            .cursor
            .as_ref()
            .map_or_else(|| chrono::Utc::now().timestamp_millis(), |c| c.created_ms);
        Cursor {
            snapshot,
            after_published_at_ms: published_at_ms,
            after_event_id: event_id.to_owned(),
            fingerprint: fingerprint(&query.filter, query.order),
            window: (query.filter.since_ms, query.filter.until_ms),
            created_ms,
        }
    }

    /// The opaque text handed to clients.
    pub fn encode(&self) -> String {
        let wire = CursorWire {
            v: 2,
            s: self.snapshot.to_string(),
            t: self.after_published_at_ms,
            e: self.after_event_id.clone(),
            f: format!("{:016x}", self.fingerprint),
            a: self.window.0,
            b: self.window.1,
            c: self.created_ms,
        };
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a cursor of `filter`'s query and puts the first page's window back into
    /// `filter`: a bound given as a duration (`since=7d`) resolves later on each page, by
    /// exactly the time since the first page; any other change is another query.
    fn decode(text: &str, filter: &mut EventFilter, order: Order, now_ms: i64) -> Result<Self> {
        let malformed = || {
            Error::invalid(
                "cursor",
                "malformed cursor: pass the next_cursor of a previous page unchanged",
            )
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| malformed())?;
        let wire: CursorWire = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
        if wire.v != 2 {
            return Err(malformed());
        }
        let snapshot = wire.s.parse().map_err(|_| malformed())?;
        let stored = u64::from_str_radix(&wire.f, 16).map_err(|_| malformed())?;
        let another_query = || {
            Error::invalid(
                "cursor",
                "the cursor belongs to another query: keep the filters and order of the first page",
            )
        };
        // A duration resolves to a later instant on each page; by no more than the time
        // since the first page (and a second of clock slack).
        let elapsed = now_ms.saturating_sub(wire.c).max(0) + 1_000;
        let same_bound = |now: Option<i64>, first: Option<i64>| match (now, first) {
            (None, None) => true,
            (Some(now), Some(first)) => (0..=elapsed).contains(&now.saturating_sub(first)),
            _ => false,
        };
        if !same_bound(filter.since_ms, wire.a) || !same_bound(filter.until_ms, wire.b) {
            return Err(another_query());
        }
        filter.since_ms = wire.a;
        filter.until_ms = wire.b;
        if stored != fingerprint(filter, order) {
            return Err(another_query());
        }
        Ok(Cursor {
            snapshot,
            after_published_at_ms: wire.t,
            after_event_id: wire.e,
            fingerprint: stored,
            window: (wire.a, wire.b),
            created_ms: wire.c,
        })
    }
}

/// FNV-1a over a canonical rendering: stable across processes and versions.
fn fingerprint(filter: &EventFilter, order: Order) -> u64 {
    let canonical = format!("{filter:?}|{order:?}");
    canonical
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

impl EventFilter {
    /// Whether the filter selects every event (no condition at all).
    pub fn is_unconstrained(&self) -> bool {
        self == &EventFilter::default()
    }

    /// The first and last hour partitions that can hold matching rows (None: unbounded).
    pub fn partition_bounds(&self) -> (Option<Partition>, Option<Partition>) {
        let first = self
            .since_ms
            .map(|ms| Partition::for_timestamp_ms(Table::Events, ms));
        let last = self
            .until_ms
            .map(|ms| Partition::for_timestamp_ms(Table::Events, ms.saturating_sub(1)));
        (first, last)
    }

    /// Whether a partition can hold matching rows.
    pub fn may_match(&self, partition: &Partition) -> bool {
        let (first, last) = self.partition_bounds();
        first.is_none_or(|first| *partition >= first) && last.is_none_or(|last| *partition <= last)
    }
}

/// Parses a time: RFC 3339 (`2026-11-01T10:00:00Z`), a date (`2026-11-01`, midnight UTC),
/// or a duration before `now` (`90s`, `15m`, `2h`, `7d`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|naive| naive.and_utc());
    }
    // Split at a character, never at a byte index: the text is user input (`since=7日`).
    let unit = text.chars().next_back()?;
    let amount = text.strip_suffix(unit)?;
    if amount.is_empty() || !amount.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount: i64 = amount.parse().ok()?;
    let duration = match unit {
        's' => Duration::try_seconds(amount)?,
        'm' => Duration::try_minutes(amount)?,
        'h' => Duration::try_hours(amount)?,
        'd' => Duration::try_days(amount)?,
        _ => return None,
    };
    now.checked_sub_signed(duration)
}

/// An aggregate, event type or similar catalog identifier: snake_case.
pub fn identifier(field: &str, value: &str) -> Result<String> {
    let mut chars = value.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(value.to_owned())
    } else {
        Err(Error::invalid(
            field,
            format!("'{value}' is not a catalog name (snake_case, e.g. listing or price_changed)"),
        ))
    }
}

/// Parameters of `GET /v1/events` that are not filters and are handled by the caller.
pub const PASS_THROUGH_PARAMETERS: &[&str] = &["format"];

/// Validates raw query-string pairs into an [`EventQuery`]. `extra` names parameters the
/// caller handles itself (e.g. `format`); any other unknown parameter is an error.
pub fn parse_event_query(
    pairs: &[(String, String)],
    extra: &[&str],
    now: DateTime<Utc>,
) -> Result<EventQuery> {
    let mut single: BTreeMap<&str, &str> = BTreeMap::new();
    let mut event_ids = Vec::new();
    for (key, value) in pairs {
        let key = key.as_str();
        if value.is_empty() {
            return Err(Error::invalid(key, "is empty"));
        }
        match key {
            "event_id" => {
                if event_ids.len() == MAX_EVENT_IDS {
                    return Err(Error::invalid(
                        "event_id",
                        format!("at most {MAX_EVENT_IDS} values per query"),
                    ));
                }
                if value.len() > 256 {
                    return Err(Error::invalid("event_id", "longer than 256 characters"));
                }
                event_ids.push(value.clone());
            }
            "correlation_id" | "event_type" | "aggregate" | "producer_system" | "since"
            | "until" | "schema_valid" | "limit" | "cursor" | "order" => {
                if single.insert(key, value).is_some() {
                    return Err(Error::invalid(key, "given more than once"));
                }
            }
            other if extra.contains(&other) => {}
            other => {
                return Err(Error::invalid(
                    other,
                    "unknown parameter (known: event_id, correlation_id, event_type, aggregate, producer_system, since, until, schema_valid, limit, cursor, order)",
                ));
            }
        }
    }

    let aggregate = single
        .get("aggregate")
        .map(|value| identifier("aggregate", value))
        .transpose()?;
    let event_type = match single.get("event_type") {
        None => None,
        Some(value) => Some(match value.split_once('.') {
            Some((type_aggregate, name)) => {
                let type_aggregate = identifier("event_type", type_aggregate)?;
                if aggregate
                    .as_deref()
                    .is_some_and(|given| given != type_aggregate)
                {
                    return Err(Error::invalid(
                        "event_type",
                        format!(
                            "'{value}' contradicts aggregate={}",
                            aggregate.as_deref().unwrap_or_default()
                        ),
                    ));
                }
                EventTypeFilter {
                    aggregate: Some(type_aggregate),
                    event_type: identifier("event_type", name)?,
                }
            }
            None => EventTypeFilter {
                aggregate: aggregate.clone(),
                event_type: identifier("event_type", value)?,
            },
        }),
    };
    let time = |field: &str| -> Result<Option<i64>> {
        single
            .get(field)
            .map(|value| {
                parse_time(value, now).map(|time| time.timestamp_millis()).ok_or_else(|| {
                    Error::invalid(field, format!("'{value}' is not an RFC 3339 time (2026-11-01T10:00:00Z), a date (2026-11-01) or a duration before now (2h, 7d)"))
                })
            })
            .transpose()
    };
    let since_ms = time("since")?;
    let until_ms = time("until")?;
    if let (Some(since), Some(until)) = (since_ms, until_ms)
        && since >= until
    {
        return Err(Error::invalid("since", "must be before until"));
    }
    let schema_valid = match single.get("schema_valid").copied() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(Error::invalid(
                "schema_valid",
                format!("'{other}' is not true or false"),
            ));
        }
    };
    let limit = match single.get("limit") {
        None => DEFAULT_LIMIT,
        Some(value) => value
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                Error::invalid(
                    "limit",
                    format!("'{value}' is not a number from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let order = match single.get("order").copied() {
        None | Some("asc") => Order::Asc,
        Some("desc") => Order::Desc,
        Some(other) => {
            return Err(Error::invalid(
                "order",
                format!("'{other}' is not asc or desc"),
            ));
        }
    };
    let mut filter = EventFilter {
        event_ids,
        correlation_id: single
            .get("correlation_id")
            .map(|value| (*value).to_owned()),
        aggregate: if event_type.as_ref().is_some_and(|t| t.aggregate.is_some()) {
            None
        } else {
            aggregate
        },
        event_types: event_type.into_iter().collect(),
        producer_system: single
            .get("producer_system")
            .map(|value| (*value).to_owned()),
        since_ms,
        until_ms,
        schema_valid,
    };
    let cursor = single
        .get("cursor")
        .map(|text| Cursor::decode(text, &mut filter, order, now.timestamp_millis()))
        .transpose()?;
    Ok(EventQuery {
        filter,
        limit,
        order,
        cursor,
    })
}

/// Bucket width of `/v1/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// Per UTC hour.
    Hour,
    /// Per UTC day.
    Day,
}

/// What `/v1/stats` counts by, besides time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// `aggregate.event_type`.
    EventType,
    /// The aggregate.
    Aggregate,
    /// The producing system.
    ProducerSystem,
}

/// A `/v1/stats` request: counts of distinct events per bucket (and group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    /// Which events.
    pub filter: EventFilter,
    /// The bucket width.
    pub interval: Interval,
    /// The grouping besides time, if any.
    pub group_by: Option<GroupBy>,
}

/// Longest range `/v1/stats` counts per hour (a year of days is fine).
pub const MAX_HOURLY_RANGE_DAYS: i64 = 31;

/// Validates `/v1/stats` parameters: the filters of `/v1/events` (no paging), `interval`
/// (`hour` or `day`, default `day`) and `group_by`. `since` defaults to 7 days before now.
pub fn parse_stats_query(pairs: &[(String, String)], now: DateTime<Utc>) -> Result<StatsQuery> {
    for (key, _) in pairs {
        if matches!(key.as_str(), "limit" | "cursor" | "order" | "event_id") {
            return Err(Error::invalid(key, "does not apply to /v1/stats"));
        }
    }
    let query = parse_event_query(pairs, &["interval", "group_by"], now)?;
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let interval = match value("interval") {
        None | Some("day") => Interval::Day,
        Some("hour") => Interval::Hour,
        Some(other) => {
            return Err(Error::invalid(
                "interval",
                format!("'{other}' is not hour or day"),
            ));
        }
    };
    let group_by = match value("group_by") {
        None => None,
        Some("event_type") => Some(GroupBy::EventType),
        Some("aggregate") => Some(GroupBy::Aggregate),
        Some("producer_system") => Some(GroupBy::ProducerSystem),
        Some(other) => {
            return Err(Error::invalid(
                "group_by",
                format!("'{other}' is not event_type, aggregate or producer_system"),
            ));
        }
    };
    let mut filter = query.filter;
    let since = *filter
        .since_ms
        .get_or_insert((now - Duration::days(7)).timestamp_millis());
    let until = filter.until_ms.unwrap_or(now.timestamp_millis());
    if interval == Interval::Hour && until - since > MAX_HOURLY_RANGE_DAYS * 86_400_000 {
        return Err(Error::invalid(
            "interval",
            format!(
                "hourly counts cover at most {MAX_HOURLY_RANGE_DAYS} days; use interval=day or a shorter range"
            ),
        ));
    }
    Ok(StatsQuery {
        filter,
        interval,
        group_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    fn parse(query: &str) -> Result<EventQuery> {
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key.to_owned(), value.to_owned())
            })
            .collect();
        parse_event_query(&pairs, PASS_THROUGH_PARAMETERS, now())
    }

    #[test]
    fn filters_parse_into_the_model() {
        let query = parse("event_type=listing.sold&since=2026-11-01&until=2h&producer_system=api&schema_valid=false&limit=50&order=desc&format=csv")
            .expect("valid");
        assert_eq!(
            query.filter.event_types.first().cloned(),
            Some(EventTypeFilter {
                aggregate: Some("listing".into()),
                event_type: "sold".into()
            })
        );
        let november = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").expect("time");
        assert_eq!(query.filter.since_ms, Some(november.timestamp_millis()));
        assert_eq!(
            query.filter.until_ms,
            Some(now().timestamp_millis() - 7_200_000)
        );
        assert_eq!(
            (query.limit, query.order, query.filter.schema_valid),
            (50, Order::Desc, Some(false))
        );

        let bare = parse("event_type=sold&aggregate=listing&event_id=a&event_id=b").expect("valid");
        assert_eq!(
            bare.filter.event_types.first().cloned(),
            Some(EventTypeFilter {
                aggregate: Some("listing".into()),
                event_type: "sold".into()
            })
        );
        assert_eq!(bare.filter.event_ids, vec!["a", "b"]);
        assert_eq!(bare.limit, DEFAULT_LIMIT);
        let any_aggregate = parse("event_type=sold").expect("valid");
        assert_eq!(
            any_aggregate
                .filter
                .event_types
                .first()
                .and_then(|t| t.aggregate.clone()),
            None
        );
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let cases = [
            ("since=yesterday", "since"),
            ("until=2026-13-01", "until"),
            ("since=2026-11-02&until=2026-11-01", "since"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=ten", "limit"),
            ("order=sideways", "order"),
            ("schema_valid=maybe", "schema_valid"),
            ("event_type=listing.sold'--", "event_type"),
            ("event_type=listing.sold&aggregate=company", "event_type"),
            ("aggregate=Listing", "aggregate"),
            ("colour=red", "colour"),
            ("aggregate=listing&aggregate=company", "aggregate"),
            ("correlation_id=", "correlation_id"),
            ("cursor=not-a-cursor", "cursor"),
        ];
        for (query, field) in cases {
            let error = parse(query).expect_err(query);
            assert_eq!(error.field(), Some(field), "{query}: {error}");
        }
        let too_many = (0..=MAX_EVENT_IDS)
            .map(|i| format!("event_id={i}"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(
            parse(&too_many).expect_err("too many").field(),
            Some("event_id")
        );
    }

    #[test]
    fn a_cursor_continues_only_the_query_it_came_from() {
        let first = parse("aggregate=listing&order=desc").expect("valid");
        let cursor = Cursor::after(&first, Ulid::new(), 1_700_000_000_000, "event-9").encode();
        let next =
            parse(&format!("aggregate=listing&order=desc&cursor={cursor}")).expect("same query");
        let decoded = next.cursor.expect("cursor");
        assert_eq!(
            (
                decoded.after_published_at_ms,
                decoded.after_event_id.as_str()
            ),
            (1_700_000_000_000, "event-9")
        );
        for other in [
            "aggregate=company&order=desc",
            "aggregate=listing&order=asc",
        ] {
            let error = parse(&format!("{other}&cursor={cursor}")).expect_err(other);
            assert!(error.to_string().contains("another query"), "{error}");
        }
    }

    #[test]
    fn a_relative_since_keeps_the_first_pages_window_on_later_pages() {
        let parse_at = |query: &str, now: DateTime<Utc>| {
            let pairs: Vec<(String, String)> = query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            parse_event_query(&pairs, PASS_THROUGH_PARAMETERS, now)
        };
        let first_at = Utc::now();
        let later = first_at + Duration::minutes(5);
        for window in [
            "since=7d",
            "since=90m&until=15m",
            "since=2026-11-01&until=2h",
        ] {
            let first = parse_at(window, first_at).expect("valid");
            let cursor = Cursor::after(&first, Ulid::new(), 1_700_000_000_000, "event-9").encode();
            let next = parse_at(&format!("{window}&cursor={cursor}"), later)
                .unwrap_or_else(|error| panic!("{window}: page 2 five minutes later: {error}"));
            assert_eq!(
                (next.filter.since_ms, next.filter.until_ms),
                (first.filter.since_ms, first.filter.until_ms),
                "{window}: the first page's window"
            );
            // The cursor of page 2 continues page 3 the same way.
            let cursor = Cursor::after(&next, Ulid::new(), 1_700_000_000_001, "event-8").encode();
            let third = parse_at(
                &format!("{window}&cursor={cursor}"),
                later + Duration::minutes(1),
            )
            .expect("page 3");
            assert_eq!(third.filter.since_ms, first.filter.since_ms);
        }
        let first = parse_at("since=7d", first_at).expect("valid");
        let cursor = Cursor::after(&first, Ulid::new(), 1_700_000_000_000, "event-9").encode();
        for other in [
            "since=6d",
            "since=8d",
            "since=2026-01-01",
            "since=7d&until=1h",
            "",
        ] {
            let error = parse_at(&format!("{other}&cursor={cursor}"), later).expect_err(other);
            assert!(
                error.to_string().contains("another query"),
                "{other}: {error}"
            );
        }
    }

    #[test]
    fn stats_parameters_are_validated_and_default_to_a_week_by_day() {
        let pairs = |text: &str| -> Vec<(String, String)> {
            text.split('&')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    pair.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                })
                .collect()
        };
        let stats = parse_stats_query(&pairs("group_by=event_type&aggregate=listing"), now())
            .expect("valid");
        assert_eq!(
            (stats.interval, stats.group_by),
            (Interval::Day, Some(GroupBy::EventType))
        );
        assert_eq!(
            stats.filter.since_ms,
            Some((now() - Duration::days(7)).timestamp_millis())
        );
        for (text, field) in [
            ("interval=minute", "interval"),
            ("group_by=payload", "group_by"),
            ("limit=5", "limit"),
            ("interval=hour&since=2026-01-01", "interval"),
            ("colour=red", "colour"),
        ] {
            assert_eq!(
                parse_stats_query(&pairs(text), now())
                    .expect_err(text)
                    .field(),
                Some(field),
                "{text}"
            );
        }
    }

    #[test]
    fn time_ranges_map_to_the_hour_partitions_they_cover() {
        let query = parse("since=2026-11-01T10:30:00Z&until=2026-11-01T12:00:00Z").expect("valid");
        let hour = |text: &str| {
            Partition::for_timestamp_ms(
                Table::Events,
                parse_time(text, now()).expect("t").timestamp_millis(),
            )
        };
        assert!(!query.filter.may_match(&hour("2026-11-01T09:59:59Z")));
        assert!(query.filter.may_match(&hour("2026-11-01T10:00:00Z")));
        assert!(query.filter.may_match(&hour("2026-11-01T11:59:59Z")));
        assert!(
            !query.filter.may_match(&hour("2026-11-01T12:00:00Z")),
            "until is exclusive"
        );
        assert!(
            parse("")
                .expect("valid")
                .filter
                .may_match(&hour("1999-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn times_holding_multibyte_characters_are_refused_not_a_panic() {
        // Multi-byte characters in every position a byte-index split could cut through.
        for text in [
            "7日",
            "日",
            "€",
            "7d€",
            "€7d",
            "1é",
            "é1d",
            "🦀",
            "7🦀",
            "7\u{301}d",
            "ｄ",
            "7ｄ",
            "٣d",
            "+7d",
            "-7d",
            " 7d",
            "7 d",
            "d",
            "",
        ] {
            assert_eq!(parse_time(text, now()), None, "{text:?}");
            let error = parse(&format!("since={text}"));
            if !text.is_empty() {
                assert_eq!(error.expect_err(text).field(), Some("since"), "{text:?}");
            }
        }
        assert_eq!(
            parse_time("7d", now()),
            Some(now() - Duration::days(7)),
            "a plain duration still parses"
        );
    }
}
