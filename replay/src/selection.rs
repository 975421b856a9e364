//! Which events a replay sends: flags validated into a [`Selection`] (recorded in plans and
//! the ledger), compiled to the query model's filters and read through the query engine,
//! so a replay selects exactly what the API would show (duplicates collapsed).

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use islets_core::catalog::Catalog;
use islets_core::record::EventRecord;
use islets_query::{EventFilter, EventTypeFilter, Order, identifier, parse_time};
use islets_query::{EventStream, QueryEngine};
use serde::{Deserialize, Serialize};

use crate::error::{ReplayError, Result};

/// Ids per query when many are selected (`--events-from`): each chunk is one `IN (...)`.
const IDS_PER_QUERY: usize = 500;

/// Selection flags of `islets-replay` and `islets-replay drill`.
#[derive(Debug, Clone, Default, Args)]
pub struct SelectionArgs {
    /// Start of the range (inclusive) on published_at: RFC 3339, a date (2026-11-01), or a
    /// duration before now (90m, 2h, 7d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// End of the range (exclusive) on published_at, same forms as --since.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// An event type, `aggregate.type` (listing.sold), or `type` with --aggregate.
    /// Repeatable: events of any of them.
    #[arg(long = "event-type", value_name = "TYPE")]
    pub event_types: Vec<String>,

    /// Only this aggregate (listing).
    #[arg(long, value_name = "NAME")]
    pub aggregate: Option<String>,

    /// Only events published by this system.
    #[arg(long, value_name = "NAME")]
    pub producer_system: Option<String>,

    /// Only the events of one business flow.
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,

    /// Only these events (repeatable).
    #[arg(long = "event-id", value_name = "ID")]
    pub event_ids: Vec<String>,

    /// Only the events whose ids this file lists, one per line (`#` comments allowed).
    #[arg(long, value_name = "FILE")]
    pub events_from: Option<PathBuf>,

    /// Where the events catalog is.
    #[command(flatten)]
    pub catalog: islets_cli::CatalogArgs,
}

/// A validated selection; times resolved to absolute RFC 3339.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// From (inclusive), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Until (exclusive), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Only these event types (any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Only this aggregate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<String>,
    /// Only this producer system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_system: Option<String>,
    /// Only this correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Only these event ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_ids: Vec<String>,
}

fn usage(message: impl Into<String>) -> ReplayError {
    ReplayError::Usage(message.into())
}

fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|time| time.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl SelectionArgs {
    /// The catalog directory: --events-dir (ISLETS_EVENTS_DIR), or the RFC's
    /// ISLETS_EVENTS_CONFIG_PATH when only that is given.
    pub fn catalog_dir(&self) -> PathBuf {
        self.catalog.dir()
    }

    /// Whether any selection flag is given.
    pub fn is_empty(&self) -> bool {
        self.since.is_none()
            && self.until.is_none()
            && self.event_types.is_empty()
            && self.aggregate.is_none()
            && self.producer_system.is_none()
            && self.correlation_id.is_none()
            && self.event_ids.is_empty()
            && self.events_from.is_none()
    }

    /// Validates the flags; errors name the flag and say what to fix.
    pub fn resolve(&self, now: DateTime<Utc>) -> Result<Selection> {
        let time = |flag: &str, value: &Option<String>| -> Result<Option<i64>> {
            value
                .as_deref()
                .map(|text| {
                    parse_time(text, now)
                        .map(|time| time.timestamp_millis())
                        .ok_or_else(|| {
                            usage(format!(
                                "{flag} '{text}': not an RFC 3339 time (2026-11-01T10:00:00Z), a date (2026-11-01) or a duration before now (90m, 2h, 7d)"
                            ))
                        })
                })
                .transpose()
        };
        let since = time("--since", &self.since)?;
        let until = time("--until", &self.until)?;
        if let (Some(since), Some(until)) = (since, until)
            && since >= until
        {
            return Err(usage(format!(
                "--since {} is not before --until {}: the range is empty",
                rfc3339(since),
                rfc3339(until)
            )));
        }
        let mut event_ids: Vec<String> = self.event_ids.clone();
        if let Some(path) = &self.events_from {
            let text = std::fs::read_to_string(path).map_err(|error| {
                usage(format!(
                    "--events-from {}: cannot read it: {error}",
                    path.display()
                ))
            })?;
            let before = event_ids.len();
            event_ids.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .map(str::to_owned),
            );
            if event_ids.len() == before {
                return Err(usage(format!(
                    "--events-from {}: no event ids in it (one per line)",
                    path.display()
                )));
            }
        }
        let unique: BTreeSet<String> = event_ids.into_iter().collect();
        let selective = since.is_some()
            || until.is_some()
            || !unique.is_empty()
            || self.correlation_id.is_some();
        if !selective {
            return Err(usage(
                "select what to replay with a time range (--since/--until), --event-id, --events-from or --correlation-id; a replay of the whole archive is never implied",
            ));
        }
        let aggregate = self
            .aggregate
            .as_deref()
            .map(|value| {
                identifier("aggregate", value).map_err(|_| {
                    usage(format!(
                        "--aggregate '{value}': not a catalog name (snake_case, e.g. listing)"
                    ))
                })
            })
            .transpose()?;
        let event_types = if self.event_types.is_empty() {
            Vec::new()
        } else {
            let catalog = Catalog::load_dir(&self.catalog_dir()).map_err(|error| {
                usage(format!(
                    "--events-dir {}: {error} (it is needed to check --event-type)",
                    self.catalog_dir().display()
                ))
            })?;
            self.event_types
                .iter()
                .map(|value| qualify(&catalog, value, aggregate.as_deref()))
                .collect::<Result<Vec<_>>>()?
        };
        Ok(Selection {
            since: since.map(rfc3339),
            until: until.map(rfc3339),
            event_types,
            aggregate,
            producer_system: self.producer_system.clone(),
            correlation_id: self.correlation_id.clone(),
            event_ids: unique.into_iter().collect(),
        })
    }
}

/// `listing.sold` (or `sold` with `--aggregate listing`) checked against the catalog.
fn qualify(catalog: &Catalog, value: &str, aggregate: Option<&str>) -> Result<String> {
    let known = || {
        catalog
            .aggregates()
            .flat_map(|spec| {
                spec.events
                    .keys()
                    .map(move |name| format!("{}.{name}", spec.name))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (type_aggregate, name) = match value.split_once('.') {
        Some((type_aggregate, name)) => (Some(type_aggregate), name),
        None => (aggregate, value),
    };
    if let (Some(given), Some(type_aggregate)) = (aggregate, type_aggregate)
        && given != type_aggregate
    {
        return Err(usage(format!(
            "--event-type {value} contradicts --aggregate {given}"
        )));
    }
    match type_aggregate {
        Some(type_aggregate) if catalog.event(type_aggregate, name).is_some() => {
            Ok(format!("{type_aggregate}.{name}"))
        }
        None if catalog
            .aggregates()
            .any(|spec| spec.events.contains_key(name)) =>
        {
            Ok(name.to_owned())
        }
        _ => Err(usage(format!(
            "--event-type {value}: no such event type in {} (known: {})",
            catalog.directory().display(),
            known()
        ))),
    }
}

impl Selection {
    fn millis(value: &Option<String>) -> Option<i64> {
        value
            .as_deref()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|time| time.timestamp_millis())
    }

    /// The query model's filters: one, or one per chunk of ids.
    pub fn filters(&self) -> Vec<EventFilter> {
        let event_types = self
            .event_types
            .iter()
            .map(|value| match value.split_once('.') {
                Some((aggregate, name)) => EventTypeFilter {
                    aggregate: Some(aggregate.to_owned()),
                    event_type: name.to_owned(),
                },
                None => EventTypeFilter {
                    aggregate: self.aggregate.clone(),
                    event_type: value.clone(),
                },
            })
            .collect();
        let base = EventFilter {
            event_ids: Vec::new(),
            correlation_id: self.correlation_id.clone(),
            event_types,
            aggregate: self.aggregate.clone(),
            producer_system: self.producer_system.clone(),
            since_ms: Self::millis(&self.since),
            until_ms: Self::millis(&self.until),
            schema_valid: None,
        };
        if self.event_ids.is_empty() {
            return vec![base];
        }
        self.event_ids
            .chunks(IDS_PER_QUERY)
            .map(|chunk| EventFilter {
                event_ids: chunk.to_vec(),
                ..base.clone()
            })
            .collect()
    }

    /// The selected events, oldest first (by published_at, then event_id), each once.
    ///
    /// Refused when archive files the selection covers cannot be read: a replay never
    /// silently sends less than its selection.
    pub async fn events(&self, engine: &dyn QueryEngine) -> Result<EventStream> {
        let filters = self.filters();
        if filters.len() == 1 {
            let filter = &filters[0];
            let events = engine
                .export(filter, Order::Asc)
                .await
                .map_err(ReplayError::Query)?;
            refuse_unreadable(engine, filter).await?;
            return Ok(events);
        }
        // Many id chunks: each is small (at most IDS_PER_QUERY rows); merge in memory.
        let mut all: Vec<EventRecord> = Vec::new();
        for filter in &filters {
            let chunk: Vec<EventRecord> = engine
                .export(filter, Order::Asc)
                .await
                .map_err(ReplayError::Query)?
                .try_collect()
                .await
                .map_err(ReplayError::Query)?;
            refuse_unreadable(engine, filter).await?;
            all.extend(chunk);
        }
        all.sort_by(|a, b| (a.published_at_ms, &a.event_id).cmp(&(b.published_at_ms, &b.event_id)));
        Ok(futures::stream::iter(all.into_iter().map(Ok)).boxed())
    }
}

/// Fails when the engine left unreadable files out of `filter`'s range.
async fn refuse_unreadable(engine: &dyn QueryEngine, filter: &EventFilter) -> Result<()> {
    let unreadable = engine
        .unreadable(Some(filter))
        .await
        .map_err(ReplayError::Query)?;
    if unreadable.is_empty() {
        Ok(())
    } else {
        Err(ReplayError::Unreadable(unreadable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SelectionArgs {
        SelectionArgs {
            catalog: islets_cli::CatalogArgs::at(
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events"),
            ),
            ..SelectionArgs::default()
        }
    }

    #[test]
    fn bad_selections_name_the_flag_and_what_to_fix() {
        let now = Utc::now();
        let cases: Vec<(SelectionArgs, &str)> = vec![
            (args(), "select what to replay"),
            (
                SelectionArgs {
                    since: Some("2026-11-02".into()),
                    until: Some("2026-11-01".into()),
                    ..args()
                },
                "--since 2026-11-02T00:00:00.000Z is not before --until",
            ),
            (
                SelectionArgs {
                    since: Some("yesterday".into()),
                    ..args()
                },
                "--since 'yesterday'",
            ),
            (
                SelectionArgs {
                    since: Some("2h".into()),
                    event_types: vec!["listing.sould".into()],
                    ..args()
                },
                "--event-type listing.sould: no such event type",
            ),
            (
                SelectionArgs {
                    since: Some("2h".into()),
                    event_types: vec!["company.sold".into()],
                    aggregate: Some("listing".into()),
                    ..args()
                },
                "contradicts --aggregate listing",
            ),
            (
                SelectionArgs {
                    events_from: Some("/nonexistent/ids.txt".into()),
                    ..args()
                },
                "--events-from /nonexistent/ids.txt: cannot read it",
            ),
        ];
        for (args, expected) in cases {
            let error = args.resolve(now).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn a_selection_resolves_times_and_qualifies_event_types() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let selection = SelectionArgs {
            since: Some("2h".into()),
            event_types: vec!["sold".into(), "company.registered".into()],
            event_ids: vec!["b".into(), "a".into(), "b".into()],
            ..args()
        }
        .resolve(now)
        .expect("valid");
        assert_eq!(selection.since.as_deref(), Some("2026-11-23T10:00:00.000Z"));
        assert_eq!(selection.event_types, vec!["sold", "company.registered"]);
        assert_eq!(selection.event_ids, vec!["a", "b"], "sorted, once each");
        let filters = selection.filters();
        assert_eq!(filters.len(), 1);
        assert_eq!(filters[0].event_types.len(), 2);
        assert_eq!(
            filters[0].since_ms,
            Some(now.timestamp_millis() - 7_200_000)
        );
        let many = Selection {
            event_ids: (0..1200).map(|i| format!("id-{i:04}")).collect(),
            ..Selection::default()
        };
        assert_eq!(many.filters().len(), 3, "ids in chunks of {IDS_PER_QUERY}");
    }
}
