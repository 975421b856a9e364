//! The distributed engine: the query model compiled to Athena SQL over the Glue table
//! (partition projection on `date`/`hour`, so no `MSCK REPAIR`), run with
//! `StartQueryExecution` → polling `GetQueryExecution` → paged `GetQueryResults`.
//!
//! The SQL text is the one [`crate::sql`] compiles for DataFusion, with `?` for `$n` and
//! the values passed as `ExecutionParameters` (SQL literals Athena binds; never spliced
//! into the text here). Only the final select list differs ([`Dialect::Athena`]): Athena
//! returns every value as text, so the attribute map comes back as JSON.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_athena::Client;
use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};
use chrono::NaiveDateTime;
use datafusion::common::ScalarValue;
use futures::StreamExt;
use islets_core::attributes::{AttributeValue, Attributes};
use islets_core::record::{DeliveryMode, EventRecord, IngestSource};
use islets_core::retry::RetryPolicy;
use ulid::Ulid;

use crate::engine::{EventPage, EventStream, QueryEngine, SqlResult, StatsBucket};
use crate::error::{Error, Result};
use crate::model::{Cursor, EventFilter, EventQuery, Order, StatsQuery};
use crate::sql::{
    CompiledQuery, Dialect, compile_correlation, compile_export, compile_page, compile_stats,
};

/// Where and how Athena runs the queries.
#[derive(Debug, Clone)]
pub struct AthenaSettings {
    /// Workgroup (its settings may enforce the result location and a bytes-scanned cutoff).
    pub workgroup: String,
    /// Glue database holding the `events` table.
    pub database: String,
    /// Result location (`s3://...`), when the workgroup does not enforce one.
    pub output_location: Option<String>,
    /// Longest a query may run before it is stopped.
    pub timeout: Duration,
}

/// SQL text with `?` placeholders and the values as Athena execution parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AthenaStatement {
    /// The query text, `?` for each value.
    pub sql: String,
    /// The values, as SQL literals, in order (Athena's ExecutionParameters).
    pub parameters: Vec<String>,
}

/// How often a running query's state is asked: the workspace's retry policy (full jitter,
/// 100 ms doubling to 1 s), until the query's own timeout.
const POLL: RetryPolicy =
    RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(1), None);

/// Converts compiled SQL to Athena's form: each `$n` (in order, each once) becomes `?`,
/// and each value an SQL literal for `ExecutionParameters`.
pub fn to_athena(compiled: &CompiledQuery) -> Result<AthenaStatement> {
    let mut sql = String::with_capacity(compiled.sql.len());
    let mut rest = compiled.sql.as_str();
    let mut expected = 1;
    while let Some(position) = rest.find('$') {
        sql.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let index: usize = after[..digits].parse().map_err(|_| {
            Error::Engine(format!("unexpected '$' in compiled SQL: {}", compiled.sql))
        })?;
        if index != expected {
            return Err(Error::Engine(format!(
                "placeholder ${index} out of order (expected ${expected}): Athena binds by position"
            )));
        }
        expected += 1;
        sql.push('?');
        rest = &after[digits..];
    }
    sql.push_str(rest);
    if expected - 1 != compiled.parameters.len() {
        return Err(Error::Engine(format!(
            "{} placeholders for {} parameters",
            expected - 1,
            compiled.parameters.len()
        )));
    }
    let parameters = compiled
        .parameters
        .iter()
        .map(literal)
        .collect::<Result<Vec<_>>>()?;
    Ok(AthenaStatement { sql, parameters })
}

/// A value as the SQL literal Athena binds to a `?`.
fn literal(value: &ScalarValue) -> Result<String> {
    match value {
        ScalarValue::Utf8(Some(text)) => Ok(format!("'{}'", text.replace('\'', "''"))),
        ScalarValue::Boolean(Some(flag)) => Ok(flag.to_string()),
        ScalarValue::TimestampMillisecond(Some(ms), _) => {
            let time = chrono::DateTime::from_timestamp_millis(*ms)
                .ok_or_else(|| Error::Engine(format!("timestamp out of range: {ms}")))?;
            Ok(format!(
                "TIMESTAMP '{}'",
                time.format("%Y-%m-%d %H:%M:%S%.3f")
            ))
        }
        other => Err(Error::Engine(format!(
            "no Athena literal for parameter {other:?}"
        ))),
    }
}

/// Athena over the Glue table of one archive.
pub struct AthenaEngine {
    client: Client,
    settings: AthenaSettings,
}

/// Rows of one finished query: column names, then rows of optional text values.
struct ResultPages {
    columns: Vec<String>,
    rows: futures::stream::BoxStream<'static, Result<Vec<Option<String>>>>,
}

impl AthenaEngine {
    /// An engine on this workgroup and database.
    pub fn new(sdk: &aws_config::SdkConfig, settings: AthenaSettings) -> Self {
        AthenaEngine {
            client: Client::new(sdk),
            settings,
        }
    }

    /// Starts `statement`, waits until it succeeded, returns its execution id.
    async fn execute(&self, statement: &AthenaStatement) -> Result<String> {
        let mut request = self
            .client
            .start_query_execution()
            .query_string(&statement.sql)
            .work_group(&self.settings.workgroup)
            .query_execution_context(
                QueryExecutionContext::builder()
                    .database(&self.settings.database)
                    .build(),
            );
        if !statement.parameters.is_empty() {
            request = request.set_execution_parameters(Some(statement.parameters.clone()));
        }
        if let Some(location) = &self.settings.output_location {
            request = request.result_configuration(
                ResultConfiguration::builder()
                    .output_location(location)
                    .build(),
            );
        }
        let started = request.send().await.map_err(|error| {
            Error::Engine(format!(
                "Athena StartQueryExecution: {}",
                aws_sdk_athena::error::DisplayErrorContext(&error)
            ))
        })?;
        let id = started
            .query_execution_id
            .ok_or_else(|| Error::Engine("Athena returned no QueryExecutionId".to_owned()))?;
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        let mut polls = 0;
        loop {
            polls += 1;
            let execution = self
                .client
                .get_query_execution()
                .query_execution_id(&id)
                .send()
                .await
                .map_err(|error| {
                    Error::Engine(format!(
                        "Athena GetQueryExecution {id}: {}",
                        aws_sdk_athena::error::DisplayErrorContext(&error)
                    ))
                })?;
            let status = execution.query_execution.and_then(|query| query.status);
            let state = status.as_ref().and_then(|status| status.state.clone());
            match state {
                Some(QueryExecutionState::Succeeded) => return Ok(id),
                Some(QueryExecutionState::Failed) | Some(QueryExecutionState::Cancelled) => {
                    let reason = status
                        .and_then(|status| status.state_change_reason)
                        .unwrap_or_else(|| "no reason given".to_owned());
                    return Err(Error::Engine(format!("Athena query {id} failed: {reason}")));
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                // Stop paying for a query nobody waits for.
                let _ = self
                    .client
                    .stop_query_execution()
                    .query_execution_id(&id)
                    .send()
                    .await;
                return Err(Error::Engine(format!(
                    "Athena query {id} did not finish within {}s; stopped",
                    self.settings.timeout.as_secs()
                )));
            }
            tokio::time::sleep(POLL.delay(polls)).await;
        }
    }

    /// Runs `statement` and pages through its results (the header row skipped).
    async fn query(&self, statement: &AthenaStatement) -> Result<ResultPages> {
        let id = self.execute(statement).await?;
        let mut pages = self
            .client
            .get_query_results()
            .query_execution_id(&id)
            .into_paginator()
            .send();
        let first = pages
            .next()
            .await
            .transpose()
            .map_err(|error| results_error(&id, &error))?;
        let Some(first) = first else {
            return Ok(ResultPages {
                columns: Vec::new(),
                rows: futures::stream::empty().boxed(),
            });
        };
        let result_set = first.result_set;
        let columns: Vec<String> = result_set
            .as_ref()
            .and_then(|set| set.result_set_metadata.clone())
            .and_then(|metadata| metadata.column_info)
            .unwrap_or_default()
            .into_iter()
            .map(|column| column.name)
            .collect();
        let header = columns.clone();
        let first_rows = result_set.and_then(|set| set.rows).unwrap_or_default();
        // A SELECT's first row repeats the column names.
        let skip = usize::from(first_rows.first().is_some_and(|row| {
            row_values(row) == header.iter().cloned().map(Some).collect::<Vec<_>>()
        }));
        let first_rows: Vec<Result<Vec<Option<String>>>> = first_rows
            .iter()
            .skip(skip)
            .map(|row| Ok(row_values(row)))
            .collect();
        let id_for_errors = id.clone();
        let rest = futures::stream::unfold(pages, |mut pages| async move {
            let page = pages.next().await?;
            Some((page, pages))
        })
        .flat_map(move |page| {
            let rows: Vec<Result<Vec<Option<String>>>> = match page {
                Ok(page) => page
                    .result_set
                    .and_then(|set| set.rows)
                    .unwrap_or_default()
                    .iter()
                    .map(|row| Ok(row_values(row)))
                    .collect(),
                Err(error) => vec![Err(results_error(&id_for_errors, &error))],
            };
            futures::stream::iter(rows)
        });
        Ok(ResultPages {
            columns,
            rows: futures::stream::iter(first_rows).chain(rest).boxed(),
        })
    }

    async fn events_of(&self, compiled: &CompiledQuery) -> Result<EventStream> {
        let pages = self.query(&to_athena(compiled)?).await?;
        let positions = Positions::new(&pages.columns);
        Ok(pages
            .rows
            .map(move |row| row.and_then(|row| positions.record(&row)))
            .boxed())
    }
}

fn results_error<E: std::error::Error + 'static>(id: &str, error: &E) -> Error {
    Error::Engine(format!(
        "Athena GetQueryResults {id}: {}",
        aws_sdk_athena::error::DisplayErrorContext(error)
    ))
}

fn row_values(row: &aws_sdk_athena::types::Row) -> Vec<Option<String>> {
    row.data
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|datum| datum.var_char_value.clone())
        .collect()
}

/// Column positions of a result, by name.
struct Positions(HashMap<String, usize>);

impl Positions {
    fn new(columns: &[String]) -> Self {
        Positions(
            columns
                .iter()
                .enumerate()
                .map(|(index, name)| (name.clone(), index))
                .collect(),
        )
    }

    fn text<'a>(&self, row: &'a [Option<String>], column: &str) -> Option<&'a str> {
        self.0
            .get(column)
            .and_then(|index| row.get(*index))
            .and_then(|value| value.as_deref())
    }

    fn required<'a>(&self, row: &'a [Option<String>], column: &str) -> Result<&'a str> {
        self.text(row, column)
            .ok_or_else(|| Error::Engine(format!("Athena result lacks {column}")))
    }

    fn owned(&self, row: &[Option<String>], column: &str) -> Option<String> {
        self.text(row, column).map(str::to_owned)
    }

    fn time(&self, row: &[Option<String>], column: &str) -> Result<Option<i64>> {
        self.text(row, column).map(parse_timestamp).transpose()
    }

    /// One archived record from a result row.
    fn record(&self, row: &[Option<String>]) -> Result<EventRecord> {
        let delivery = match self.required(row, "delivery")? {
            "raw" => DeliveryMode::Raw,
            "sns-envelope" => DeliveryMode::SnsEnvelope,
            other => return Err(Error::Engine(format!("Athena result: delivery '{other}'"))),
        };
        let source = match self.required(row, "ingest_source")? {
            "sqs" => IngestSource::Sqs,
            "http" => IngestSource::Http,
            "file" => IngestSource::File,
            other => {
                return Err(Error::Engine(format!(
                    "Athena result: ingest_source '{other}'"
                )));
            }
        };
        Ok(EventRecord {
            event_id: self.required(row, "event_id")?.to_owned(),
            event_type: self.owned(row, "event_type"),
            aggregate: self.owned(row, "aggregate"),
            schema_version: self.owned(row, "schema_version"),
            producer_system: self.owned(row, "producer_system"),
            correlation_id: self.owned(row, "correlation_id"),
            trace_id: self.owned(row, "trace_id"),
            traceparent: self.owned(row, "traceparent"),
            occurred_at_ms: self.time(row, "occurred_at")?,
            published_at_ms: parse_timestamp(self.required(row, "published_at")?)?,
            ingested_at_ms: parse_timestamp(self.required(row, "ingested_at")?)?,
            topic_arn: self.owned(row, "topic_arn"),
            sns_message_id: self.owned(row, "sns_message_id"),
            sqs_message_id: self.owned(row, "sqs_message_id"),
            delivery,
            source,
            attributes: parse_attributes(self.text(row, "attributes").unwrap_or("{}"))?,
            payload: self.required(row, "payload")?.to_owned(),
            schema_valid: self.required(row, "schema_valid")? == "true",
            schema_error: self.owned(row, "schema_error"),
            conflict: self.text(row, "conflict") == Some("true"),
        })
    }
}

/// Athena's text form of a timestamp (`2026-11-20 10:00:00.000`, UTC) in milliseconds.
fn parse_timestamp(text: &str) -> Result<i64> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .map(|time| time.and_utc().timestamp_millis())
        .map_err(|error| Error::Engine(format!("Athena timestamp '{text}': {error}")))
}

/// The attribute map as `json_format(CAST(attributes AS JSON))` renders it:
/// `{"name": {"data_type": "String", "value": "sold"}}`.
fn parse_attributes(text: &str) -> Result<Attributes> {
    #[derive(serde::Deserialize)]
    struct Entry {
        data_type: String,
        value: String,
    }
    let map: std::collections::BTreeMap<String, Entry> = serde_json::from_str(text)
        .map_err(|error| Error::Engine(format!("Athena attributes '{text}': {error}")))?;
    Ok(map
        .into_iter()
        .map(|(name, entry)| {
            (
                name,
                AttributeValue {
                    data_type: entry.data_type,
                    value: entry.value,
                },
            )
        })
        .collect())
}

#[async_trait]
impl QueryEngine for AthenaEngine {
    async fn events(&self, query: &EventQuery) -> Result<EventPage> {
        // Keyset pagination alone keeps pages free of repeats and gaps; Athena has no file
        // snapshot to pin, so the cursor's snapshot is not used.
        let mut events: Vec<EventRecord> = self
            .events_of(&compile_page(query, Dialect::Athena))
            .await?
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let next_cursor = if events.len() > query.limit {
            events.truncate(query.limit);
            events.last().map(|last| {
                Cursor::after(query, Ulid::nil(), last.published_at_ms, &last.event_id).encode()
            })
        } else {
            None
        };
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    async fn correlation(&self, correlation_id: &str, max_rows: usize) -> Result<Vec<EventRecord>> {
        self.events_of(&compile_correlation(
            correlation_id,
            max_rows,
            Dialect::Athena,
        ))
        .await?
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
    }

    async fn export(&self, filter: &EventFilter, order: Order) -> Result<EventStream> {
        self.events_of(&compile_export(filter, order, Dialect::Athena))
            .await
    }

    async fn sql(&self, _sql: &str, _max_rows: usize) -> Result<SqlResult> {
        Err(Error::Unsupported(
            "POST /v1/sql runs on the datafusion engine; with --engine athena, query the Glue table in Athena directly".to_owned(),
        ))
    }

    async fn stats(&self, query: &StatsQuery) -> Result<Vec<StatsBucket>> {
        let pages = self.query(&to_athena(&compile_stats(query))?).await?;
        let positions = Positions::new(&pages.columns);
        let rows: Vec<Vec<Option<String>>> = pages
            .rows
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        rows.iter()
            .map(|row| {
                let start = parse_timestamp(positions.required(row, "bucket")?)?;
                let events = positions.required(row, "events")?;
                Ok(StatsBucket {
                    start: crate::view::rfc3339_ms(start),
                    key: positions.owned(row, "key"),
                    events: events.parse().map_err(|_| {
                        Error::Engine(format!("Athena count is not a number: {events}"))
                    })?,
                })
            })
            .collect()
    }

    async fn ready(&self) -> Result<()> {
        let answer = self
            .client
            .get_work_group()
            .work_group(&self.settings.workgroup)
            .send()
            .await
            .map_err(|error| {
                Error::Engine(format!(
                    "Athena workgroup {}: {}",
                    self.settings.workgroup,
                    aws_sdk_athena::error::DisplayErrorContext(&error)
                ))
            })?;
        match answer.work_group {
            Some(_) => Ok(()),
            None => Err(Error::Engine(format!(
                "Athena workgroup {} does not exist",
                self.settings.workgroup
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_event_query;

    #[test]
    fn placeholders_become_question_marks_and_values_literals() {
        let pairs = vec![
            ("correlation_id".to_owned(), "x' OR '1'='1".to_owned()),
            ("since".to_owned(), "2026-11-20T10:00:00Z".to_owned()),
            ("schema_valid".to_owned(), "true".to_owned()),
        ];
        let query = parse_event_query(&pairs, &[], chrono::Utc::now()).expect("valid");
        let statement = to_athena(&compile_page(&query, Dialect::Athena)).expect("athena");
        assert!(!statement.sql.contains('$'), "{}", statement.sql);
        assert!(!statement.sql.contains("1'='1"), "{}", statement.sql);
        assert_eq!(
            statement.sql.matches('?').count(),
            statement.parameters.len()
        );
        assert_eq!(
            statement.parameters,
            vec![
                // The days the copies are compared in (Athena's partitions) ...
                "'2026-11-20'".to_owned(),
                // ... the events the filter names ...
                "'2026-11-20'".to_owned(),
                "'x'' OR ''1''=''1'".to_owned(),
                "TIMESTAMP '2026-11-20 10:00:00.000'".to_owned(),
                "true".to_owned(),
                // ... and the same filter on the copy that won.
                "'x'' OR ''1''=''1'".to_owned(),
                "TIMESTAMP '2026-11-20 10:00:00.000'".to_owned(),
                "true".to_owned(),
            ]
        );
        assert!(
            statement.sql.contains("\"date\" >= ?"),
            "partition predicate: {}",
            statement.sql
        );
    }

    /// What Athena does with a statement before running it: binds each `?` to its
    /// literal. The select list goes back to the plain columns, the one documented
    /// difference between the dialects.
    fn bind_like_athena(statement: &AthenaStatement) -> String {
        let mut parameters = statement.parameters.iter();
        let mut bound = String::new();
        for character in statement.sql.chars() {
            if character == '?' {
                bound.push_str(parameters.next().expect("a parameter for each ?"));
            } else {
                bound.push(character);
            }
        }
        assert!(parameters.next().is_none(), "every parameter is used");
        bound
            .replace(crate::sql::ATHENA_ATTRIBUTES, "\"attributes\"")
            .replace(crate::sql::ATHENA_CIPHERTEXT, "\"payload_ciphertext\"")
    }

    #[tokio::test]
    async fn the_athena_text_selects_what_the_datafusion_engine_selects() {
        use crate::engine::DataFusionEngine;
        use crate::test_support::{HOUR, START, fixture, ids, query};
        let fixture = fixture().await;
        let engine = DataFusionEngine::new(fixture.archive.clone()).expect("engine");
        let time = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .expect("time")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let cases = [
            String::new(),
            "event_id=event-002&event_id=event-016".to_owned(),
            "correlation_id=corr-1&order=desc".to_owned(),
            "event_type=listing.registered&schema_valid=true".to_owned(),
            "producer_system=company-api".to_owned(),
            format!(
                "since={}&until={}",
                time(START + HOUR + 1),
                time(START + 4 * HOUR)
            ),
            "correlation_id=x' OR '1'='1".to_owned(),
        ];
        let mut compared = 0;
        for text in cases {
            for limit in [4, 1000] {
                let first = query(&format!("{text}&limit={limit}"));
                let expected = engine.events(&first).await.expect("datafusion");
                let statement = to_athena(&compile_page(&first, Dialect::Athena)).expect("athena");
                let mut got = engine
                    .run_text(&bind_like_athena(&statement))
                    .await
                    .expect("the Athena text runs");
                got.truncate(limit);
                assert_eq!(ids(&got), ids(&expected.events), "{text} limit {limit}");
                assert_eq!(got, expected.events, "whole rows: {text}");
                compared += got.len();
                // The second page, from the cursor of the first.
                if let Some(cursor) = expected.next_cursor {
                    let next = query(&format!("{text}&limit={limit}&cursor={cursor}"));
                    let expected = engine.events(&next).await.expect("datafusion");
                    let statement =
                        to_athena(&compile_page(&next, Dialect::Athena)).expect("athena");
                    let mut got = engine
                        .run_text(&bind_like_athena(&statement))
                        .await
                        .expect("the Athena text runs");
                    got.truncate(limit);
                    assert_eq!(ids(&got), ids(&expected.events), "{text} page 2");
                }
            }
        }
        assert!(compared > 50, "the cases select events: {compared}");
        let flow = compile_correlation("corr-2", 100, Dialect::Athena);
        let got = engine
            .run_text(&bind_like_athena(&to_athena(&flow).expect("athena")))
            .await
            .expect("runs");
        let expected = engine.correlation("corr-2", 100).await.expect("flow");
        assert_eq!(ids(&got), ids(&expected));
        assert!(!expected.is_empty());
    }

    #[test]
    fn result_text_parses_back_into_records() {
        assert_eq!(
            parse_timestamp("2026-11-20 10:00:00.123").expect("time"),
            1_795_168_800_123
        );
        assert!(parse_timestamp("yesterday").is_err());
        let attributes = parse_attributes(
            r#"{"b":{"data_type":"Binary","value":"AAE="},"a":{"data_type":"String","value":"x"}}"#,
        )
        .expect("attributes");
        assert_eq!(attributes[0].0, "a");
        assert_eq!(attributes[1].1.data_type, "Binary");
        assert!(parse_attributes("{a=b}").is_err());
    }
}
