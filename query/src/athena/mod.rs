//! The distributed engine: the query model compiled to Athena SQL over the Glue table
//! (partition projection on `date`/`hour`, so no `MSCK REPAIR`), run with
//! `StartQueryExecution` → polling `GetQueryExecution` → paged `GetQueryResults`.
//!
//! The SQL text is the one [`crate::sql`] compiles for DataFusion, with `?` for `$n` and
//! the values passed as `ExecutionParameters` (SQL literals Athena binds; never spliced
//! into the text here). Only the final select list differs ([`Dialect::Athena`]): Athena
//! returns every value as text, so the attribute map comes back as JSON.
//!
//! [`statement`] turns compiled SQL into Athena's form, [`rows`] reads result rows back
//! into records; this module runs the queries.

mod rows;
mod statement;

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_athena::Client;
use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};
use futures::StreamExt;
use islets_core::record::EventRecord;
use islets_core::retry::RetryPolicy;
use ulid::Ulid;

use rows::{Positions, parse_timestamp, row_values};
pub use statement::{AthenaStatement, to_athena};

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

/// How often a running query's state is asked: the workspace's retry policy (full jitter,
/// 100 ms doubling to 1 s), until the query's own timeout.
const POLL: RetryPolicy =
    RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(1), None);

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
