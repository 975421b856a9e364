//! The query model compiled to SQL with positional parameters (`$1`, `$2`, ...): values are
//! never spliced into the text. DataFusion runs this text over the selected files; the
//! Athena engine runs the same text (see [`crate::athena`]) with `?` placeholders and the
//! values as execution parameters. Time ranges also become predicates on the `date`
//! partition column, which is what makes Athena's partition projection prune.
//!
//! The one difference between the dialects is the outermost select list: Athena returns
//! every value as text, so it selects the `attributes` map as JSON
//! ([`ATHENA_ATTRIBUTES`]) and the binary column as base64.

use datafusion::common::ScalarValue;
use islets_core::schema::events_schema;

use crate::model::{EventFilter, EventQuery, GroupBy, Interval, Order, StatsQuery};

/// Name of the registered table (in `/v1/sql`: the de-duplicated view).
pub(crate) const EVENTS_TABLE: &str = "events";
/// In `/v1/sql`: every archived row, duplicates included.
pub(crate) const RAW_EVENTS_TABLE: &str = "events_raw";

/// Partition columns of the `events` table (Hive keys of the layout; Glue partition keys).
pub(crate) const PARTITION_COLUMNS: [&str; 2] = ["date", "hour"];

/// Who runs the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The embedded engine (`$n` parameters).
    DataFusion,
    /// Athena (`?` parameters, bound in order).
    Athena,
}

/// How Athena selects the attributes map: as JSON text, which the engine parses back.
pub(crate) const ATHENA_ATTRIBUTES: &str =
    "json_format(CAST(\"attributes\" AS JSON)) AS \"attributes\"";
/// How Athena selects the reserved binary column: as base64 text.
pub(crate) const ATHENA_CIPHERTEXT: &str =
    "to_base64(\"payload_ciphertext\") AS \"payload_ciphertext\"";

/// SQL text and its parameters, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledQuery {
    /// The text, with positional parameters.
    pub sql: String,
    /// The values of the parameters, in order.
    pub parameters: Vec<ScalarValue>,
}

struct Builder {
    parameters: Vec<ScalarValue>,
}

impl Builder {
    fn bind(&mut self, value: ScalarValue) -> String {
        self.parameters.push(value);
        format!("${}", self.parameters.len())
    }

    fn text(&mut self, value: &str) -> String {
        self.bind(ScalarValue::Utf8(Some(value.to_owned())))
    }

    fn time(&mut self, ms: i64) -> String {
        self.bind(ScalarValue::TimestampMillisecond(
            Some(ms),
            Some("UTC".into()),
        ))
    }
}

fn columns() -> String {
    select_list(Dialect::DataFusion)
}

/// The archive's columns, as `dialect` selects them for the final result.
fn select_list(dialect: Dialect) -> String {
    events_schema()
        .fields()
        .iter()
        .map(|field| match (dialect, field.name().as_str()) {
            (Dialect::Athena, "attributes") => ATHENA_ATTRIBUTES.to_owned(),
            (Dialect::Athena, "payload_ciphertext") => ATHENA_CIPHERTEXT.to_owned(),
            (_, name) => format!("\"{name}\""),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The conditions on a row's own values (ids, types, producer, the exact time range,
/// validity). They select which events an answer is about, and are checked again on the
/// copy that wins (see [`first_copies`]).
fn row_conditions(filter: &EventFilter, builder: &mut Builder) -> Vec<String> {
    let mut conditions = Vec::new();
    if !filter.event_ids.is_empty() {
        let values: Vec<String> = filter.event_ids.iter().map(|id| builder.text(id)).collect();
        conditions.push(format!("event_id IN ({})", values.join(", ")));
    }
    if let Some(correlation_id) = &filter.correlation_id {
        conditions.push(format!("correlation_id = {}", builder.text(correlation_id)));
    }
    if !filter.event_types.is_empty() {
        let alternatives: Vec<String> = filter
            .event_types
            .iter()
            .map(|event_type| {
                let name = builder.text(&event_type.event_type);
                match &event_type.aggregate {
                    Some(aggregate) => {
                        format!(
                            "(event_type = {name} AND aggregate = {})",
                            builder.text(aggregate)
                        )
                    }
                    None => format!("(event_type = {name})"),
                }
            })
            .collect();
        conditions.push(format!("({})", alternatives.join(" OR ")));
    }
    if let Some(aggregate) = &filter.aggregate {
        conditions.push(format!("aggregate = {}", builder.text(aggregate)));
    }
    if let Some(producer_system) = &filter.producer_system {
        conditions.push(format!(
            "producer_system = {}",
            builder.text(producer_system)
        ));
    }
    if let Some(since) = filter.since_ms {
        conditions.push(format!("published_at >= {}", builder.time(since)));
    }
    if let Some(until) = filter.until_ms {
        conditions.push(format!("published_at < {}", builder.time(until)));
    }
    if let Some(valid) = filter.schema_valid {
        conditions.push(format!(
            "schema_valid = {}",
            builder.bind(ScalarValue::Boolean(Some(valid)))
        ));
    }
    conditions
}

/// The day bounds of the range, on the `date` partition column: Athena prunes partitions
/// with them (the file selection already did for DataFusion).
fn partition_conditions(filter: &EventFilter, builder: &mut Builder) -> Vec<String> {
    let mut conditions = Vec::new();
    let (first, last) = filter.partition_bounds();
    if let Some(first) = first {
        let day = first.date.format("%Y-%m-%d").to_string();
        conditions.push(format!("\"date\" >= {}", builder.text(&day)));
    }
    if let Some(last) = last {
        let day = last.date.format("%Y-%m-%d").to_string();
        conditions.push(format!("\"date\" <= {}", builder.text(&day)));
    }
    conditions
}

/// The events `filter` selects, one row each: **the copy ingested first**, whatever the
/// other copies claim. Rows matching the filter name the events; then every copy of those
/// events competes (so a later copy that matches where the first does not, by another
/// type, producer, correlation or a claimed time, cannot stand in for it); and the winner
/// must match the filter itself, or the event is not in the answer.
///
/// The copies DataFusion compares are those of the files it was given: the engine adds
/// the files holding other copies of the answer's events (see `crate::engine`). Athena
/// compares the copies within the range's days (its partitions).
fn first_copies(
    dialect: Dialect,
    source: &str,
    filter: &EventFilter,
    builder: &mut Builder,
    conflicts: bool,
) -> String {
    if filter.is_unconstrained() {
        return deduplicated(dialect, source, "", conflicts);
    }
    let mut scope = match dialect {
        Dialect::Athena => partition_conditions(filter, builder),
        Dialect::DataFusion => Vec::new(),
    };
    let mut matched = partition_conditions(filter, builder);
    matched.extend(row_conditions(filter, builder));
    scope.push(format!(
        "event_id IN (SELECT event_id FROM {source}{})",
        where_clause(&matched)
    ));
    let mut sql = deduplicated(dialect, source, &where_clause(&scope), conflicts);
    for condition in row_conditions(filter, builder) {
        sql.push_str(" AND ");
        sql.push_str(&condition);
    }
    sql
}

/// The query text: the first copies of the events `filter` selects (see
/// [`first_copies`]), then `outer` conditions, order and limit. `outer` is bound after the
/// filter's parameters.
fn assemble(
    dialect: Dialect,
    filter: &EventFilter,
    builder: &mut Builder,
    outer: impl FnOnce(&mut Builder) -> Vec<String>,
    order_by: &str,
    limit: Option<usize>,
) -> String {
    let mut sql = first_copies(dialect, EVENTS_TABLE, filter, builder, true);
    for condition in outer(builder) {
        sql.push_str(" AND ");
        sql.push_str(&condition);
    }
    sql.push_str(" ORDER BY ");
    sql.push_str(order_by);
    if let Some(limit) = limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    sql
}

/// ` WHERE a AND b`, or nothing without conditions.
fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// Rows of `source` (filtered by `where_clause`), one per `event_id`: the copy ingested
/// first. The order uses only what the ingester recorded (`ingested_at`, then the SQS
/// message id), never a time the message body claims, so a later copy cannot take
/// precedence by claiming an earlier `published_at`.
///
/// With `conflicts`, a `conflict` column says whether the copies differ in what a reader
/// relies on (payload, topic, the standard attributes): an event_id reused for another
/// message is flagged, not silently merged.
fn deduplicated(dialect: Dialect, source: &str, where_clause: &str, conflicts: bool) -> String {
    let columns = columns();
    let select = select_list(dialect);
    let (conflict_column, conflict_select) = if conflicts {
        let window = "OVER (PARTITION BY event_id)";
        let differs =
            |expression: &str| format!("min({expression}) {window} <> max({expression}) {window}");
        let standard = "concat(coalesce(aggregate, ''), '|', coalesce(event_type, ''), '|', coalesce(schema_version, ''), '|', coalesce(producer_system, ''), '|', coalesce(correlation_id, ''))";
        (
            format!(
                ", ({} OR {} OR {}) AS islets_conflict",
                differs("payload"),
                differs("coalesce(topic_arn, '')"),
                differs(standard)
            ),
            ", islets_conflict AS conflict",
        )
    } else {
        (String::new(), "")
    };
    format!(
        "SELECT {select}{conflict_select} FROM (SELECT {columns}, row_number() OVER (PARTITION BY event_id ORDER BY ingested_at, sqs_message_id, published_at) AS islets_copy{conflict_column} FROM {source}{where_clause}) AS matched WHERE islets_copy = 1"
    )
}

/// The `events` view of `/v1/sql`: the raw rows with duplicates collapsed.
pub(crate) fn events_view() -> String {
    format!(
        "CREATE VIEW {EVENTS_TABLE} AS {}",
        deduplicated(Dialect::DataFusion, RAW_EVENTS_TABLE, "", true)
    )
}

/// One page of events, ordered by (`published_at`, `event_id`), after the cursor;
/// `limit + 1` rows (the extra row tells whether a next page exists).
pub(crate) fn compile_page(query: &EventQuery, dialect: Dialect) -> CompiledQuery {
    let mut builder = Builder {
        parameters: Vec::new(),
    };
    let (direction, comparison) = match query.order {
        Order::Asc => ("ASC", ">"),
        Order::Desc => ("DESC", "<"),
    };
    let cursor = |builder: &mut Builder| {
        let Some(cursor) = &query.cursor else {
            return Vec::new();
        };
        // Every occurrence is its own parameter: positional placeholders cannot repeat.
        let time = builder.time(cursor.after_published_at_ms);
        let same_time = builder.time(cursor.after_published_at_ms);
        let event_id = builder.text(&cursor.after_event_id);
        vec![format!(
            "(published_at {comparison} {time} OR (published_at = {same_time} AND event_id {comparison} {event_id}))"
        )]
    };
    let order_by = format!("published_at {direction}, event_id {direction}");
    let sql = assemble(
        dialect,
        &query.filter,
        &mut builder,
        cursor,
        &order_by,
        Some(query.limit + 1),
    );
    CompiledQuery {
        sql,
        parameters: builder.parameters,
    }
}

/// A whole business flow: the events of one correlation id, ordered by when they
/// happened (`occurred_at`), then `published_at`; at most `max_rows`.
pub(crate) fn compile_correlation(
    correlation_id: &str,
    max_rows: usize,
    dialect: Dialect,
) -> CompiledQuery {
    let filter = EventFilter {
        correlation_id: Some(correlation_id.to_owned()),
        ..EventFilter::default()
    };
    let mut builder = Builder {
        parameters: Vec::new(),
    };
    let order_by = "occurred_at ASC NULLS LAST, published_at ASC, event_id ASC";
    let sql = assemble(
        dialect,
        &filter,
        &mut builder,
        |_| Vec::new(),
        order_by,
        Some(max_rows),
    );
    CompiledQuery {
        sql,
        parameters: builder.parameters,
    }
}

/// Every matching event, ordered like pages, with no limit: exports stream it.
pub(crate) fn compile_export(
    filter: &EventFilter,
    order: Order,
    dialect: Dialect,
) -> CompiledQuery {
    let mut builder = Builder {
        parameters: Vec::new(),
    };
    let direction = match order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    let order_by = format!("published_at {direction}, event_id {direction}");
    let sql = assemble(
        dialect,
        filter,
        &mut builder,
        |_| Vec::new(),
        &order_by,
        None,
    );
    CompiledQuery {
        sql,
        parameters: builder.parameters,
    }
}

/// Distinct events per time bucket (and group): `bucket`, `key` (when grouped), `events`.
/// The bucket width and group column come from enums, never from caller text.
/// Stats return no attributes, so the text is the same for both dialects.
pub(crate) fn compile_stats(query: &StatsQuery) -> CompiledQuery {
    let mut builder = Builder {
        parameters: Vec::new(),
    };
    let unit = match query.interval {
        Interval::Hour => "hour",
        Interval::Day => "day",
    };
    let key = match query.group_by {
        None => "NULL",
        Some(GroupBy::EventType) => "concat(aggregate, '.', event_type)",
        Some(GroupBy::Aggregate) => "aggregate",
        Some(GroupBy::ProducerSystem) => "producer_system",
    };
    let sql = format!(
        "SELECT date_trunc('{unit}', published_at) AS bucket, {key} AS key, count(*) AS events FROM ({}) AS distinct_events GROUP BY 1, 2 ORDER BY 1, 2",
        first_copies(
            Dialect::DataFusion,
            EVENTS_TABLE,
            &query.filter,
            &mut builder,
            false
        )
    );
    CompiledQuery {
        sql,
        parameters: builder.parameters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventTypeFilter, parse_event_query};

    #[test]
    fn values_become_parameters_never_sql_text() {
        let hostile = "x' OR '1'='1";
        let pairs = vec![
            ("correlation_id".to_owned(), hostile.to_owned()),
            (
                "producer_system".to_owned(),
                "api\"; DROP TABLE events; --".to_owned(),
            ),
        ];
        let query = parse_event_query(&pairs, &[], chrono::Utc::now()).expect("valid");
        let compiled = compile_page(&query, Dialect::DataFusion);
        assert!(
            !compiled.sql.contains("1'='1") && !compiled.sql.contains("DROP"),
            "{}",
            compiled.sql
        );
        assert_eq!(
            compiled.parameters[0],
            ScalarValue::Utf8(Some(hostile.to_owned()))
        );
        assert!(
            compiled
                .sql
                .contains("correlation_id = $1 AND producer_system = $2"),
            "{}",
            compiled.sql
        );
    }

    #[test]
    fn an_event_type_with_its_aggregate_filters_both() {
        let query = EventQuery {
            filter: EventFilter {
                event_types: vec![EventTypeFilter {
                    aggregate: Some("listing".into()),
                    event_type: "sold".into(),
                }],
                ..EventFilter::default()
            },
            limit: 10,
            order: Order::Desc,
            cursor: None,
        };
        let compiled = compile_page(&query, Dialect::DataFusion);
        assert!(
            compiled.sql.contains("event_type = $1 AND aggregate = $2"),
            "{}",
            compiled.sql
        );
        assert!(
            compiled
                .sql
                .ends_with("ORDER BY published_at DESC, event_id DESC LIMIT 11"),
            "{}",
            compiled.sql
        );
    }
}
