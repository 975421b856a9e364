//! `/v1/events`, `/v1/events/{event_id}`, `/v1/correlations/{correlation_id}`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use islets_core::record::EventRecord;
use serde::Serialize;

use crate::openapi::ErrorResponse;
use crate::{ApiError, AppState, Incomplete, with_rows};
use axum::http::StatusCode;
use islets_query::Error;
use islets_query::{EventFilter, EventQuery, Order, PASS_THROUGH_PARAMETERS, parse_event_query};
use islets_query::{EventView, rfc3339_ms};
use utoipa::ToSchema;

fn not_found(message: String) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
}

/// Most events returned for one correlation id.
pub(super) const MAX_FLOW_EVENTS: usize = 10_000;

/// One page of events.
#[derive(Serialize, ToSchema)]
pub(super) struct EventPageView {
    events: Vec<EventView>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
    /// Present when unreadable files were left out of the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete: Option<Incomplete>,
}

/// A business flow: the events of one correlation id, in the order they happened.
#[derive(Serialize, ToSchema)]
pub(super) struct FlowView {
    correlation_id: String,
    events: Vec<EventView>,
    /// True when the flow has more than the events returned.
    truncated: bool,
    /// Present when unreadable files were left out of the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete: Option<Incomplete>,
}

fn pairs(raw: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// How `/v1/events` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// A page: `{events, next_cursor}`.
    Json,
    /// Every matching event, one JSON object per line, streamed.
    Ndjson,
    /// Every matching event as CSV, streamed.
    Csv,
}

fn format(pairs: &[(String, String)], headers: &HeaderMap) -> Result<Format, ApiError> {
    if let Some((_, value)) = pairs.iter().find(|(key, _)| key == "format") {
        return match value.as_str() {
            "json" => Ok(Format::Json),
            "ndjson" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            other => Err(Error::InvalidParameter {
                field: "format".to_owned(),
                message: format!("'{other}' is not json, ndjson or csv"),
            }
            .into()),
        };
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    Ok(if accept.contains("application/x-ndjson") {
        Format::Ndjson
    } else if accept.contains("text/csv") {
        Format::Csv
    } else {
        Format::Json
    })
}

/// Events matching filters: a JSON page, or every match streamed as NDJSON or CSV
/// (`format=` or `Accept`), duplicates collapsed.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(
        ("event_id" = Option<Vec<String>>, Query, description = "Event ids (repeatable, at most 100, each 1 to 256 characters)", max_items = 100),
        ("correlation_id" = Option<String>, Query, description = "One business flow", min_length = 1),
        ("event_type" = Option<String>, Query, description = "`listing.sold`, or `sold` (with `aggregate` to narrow)", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)?$"),
        ("aggregate" = Option<String>, Query, description = "`listing`", pattern = "^[a-z][a-z0-9_]*$"),
        ("producer_system" = Option<String>, Query, description = "The publishing system", min_length = 1),
        ("since" = Option<String>, Query, description = "Inclusive start of published_at: RFC 3339, a date, or a duration ago (`2h`, `7d`)", min_length = 1),
        ("until" = Option<String>, Query, description = "Exclusive end of published_at, same forms as since", min_length = 1),
        ("schema_valid" = Option<bool>, Query, description = "Only events that passed (true) or failed (false) schema validation"),
        ("limit" = Option<usize>, Query, description = "Events per JSON page: default 100, at most 1000", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page", min_length = 1),
        ("order" = Option<String>, Query, description = "`asc` (default) or `desc` by published_at", pattern = "^(asc|desc)$"),
        ("format" = Option<String>, Query, description = "`json` (default), `ndjson` or `csv`", pattern = "^(json|ndjson|csv)$"),
    ),
    responses(
        (status = 200, description = "A page (JSON), or every matching event streamed", content(
            (EventPageView = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        (status = 400, description = "A parameter is invalid; `details.field` names it", body = ErrorResponse),
        (status = 401, description = "No or unknown bearer token", body = ErrorResponse),
        (status = 403, description = "The token lacks audit:read", body = ErrorResponse),
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = pairs(raw);
    let format = format(&pairs, &headers)?;
    let query = parse_event_query(&pairs, PASS_THROUGH_PARAMETERS, chrono::Utc::now())?;
    if format == Format::Json {
        let page = state.engine.events(&query).await?;
        note_conflicts(&state, &page.events);
        let incomplete = Incomplete::of(&state, Some(&query.filter)).await?;
        let left_out = Incomplete::count(incomplete.as_ref());
        let rows = page.events.len();
        let mut response = with_rows(
            Json(EventPageView {
                events: page.events.into_iter().map(EventView::from).collect(),
                next_cursor: page.next_cursor,
                incomplete,
            }),
            rows,
        );
        Incomplete::mark(left_out, &mut response);
        return Ok(response);
    }
    for field in ["limit", "cursor"] {
        if pairs.iter().any(|(key, _)| key == field) {
            return Err(Error::InvalidParameter {
                field: field.to_owned(),
                message: "exports (ndjson, csv) stream every matching event; limit and cursor apply to JSON pages".to_owned(),
            }
            .into());
        }
    }
    let events = until_deadline(
        state.engine.export(&query.filter, query.order).await?,
        EXPORT_TIMEOUT,
    );
    // The export checked its files' footers first: what it leaves out is known now.
    let left_out = Incomplete::count(Incomplete::of(&state, Some(&query.filter)).await?.as_ref());
    let (content_type, body) = if format == Format::Ndjson {
        (
            "application/x-ndjson",
            Body::from_stream(events.map(|event| event.and_then(ndjson_line))),
        )
    } else {
        let header_row = futures::stream::once(async { Ok(Bytes::from(csv_line(&CSV_COLUMNS))) });
        let rows = events.map(|event| event.map(csv_row));
        (
            "text/csv; charset=utf-8",
            Body::from_stream(header_row.chain(rows)),
        )
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    Incomplete::mark(left_out, &mut response);
    Ok(response)
}

/// Longest an export may stream, body included (the 60 s request timeout covers only the
/// time to the first byte). Past it the stream ends with an error, so the client sees a
/// broken transfer (never a complete-looking, shortened file); narrow the range.
pub(crate) const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// `events`, ending with an error once `limit` has passed.
fn until_deadline(
    events: islets_query::EventStream,
    limit: std::time::Duration,
) -> islets_query::EventStream {
    let deadline = Box::pin(tokio::time::sleep(limit));
    futures::stream::unfold(
        (events, deadline, false),
        move |(mut events, mut deadline, expired)| async move {
            if expired {
                return None;
            }
            tokio::select! {
                biased;
                () = &mut deadline => {
                    tracing::warn!(limit_seconds = limit.as_secs(), "an export ran past its time limit; the transfer is cut");
                    Some((
                        Err(Error::Engine(format!(
                            "the export ran longer than {} s: narrow the time range",
                            limit.as_secs()
                        ))),
                        (events, deadline, true),
                    ))
                }
                next = events.next() => next.map(|item| (item, (events, deadline, false))),
            }
        },
    )
    .boxed()
}

fn ndjson_line(event: EventRecord) -> Result<Bytes, Error> {
    let mut line = serde_json::to_vec(&EventView::from(event))
        .map_err(|error| Error::Engine(error.to_string()))?;
    line.push(b'\n');
    Ok(Bytes::from(line))
}

const CSV_COLUMNS: [&str; 18] = [
    "event_id",
    "event_type",
    "aggregate",
    "schema_version",
    "producer_system",
    "correlation_id",
    "trace_id",
    "occurred_at",
    "published_at",
    "ingested_at",
    "topic_arn",
    "sns_message_id",
    "delivery",
    "schema_valid",
    "schema_error",
    "attributes",
    "payload",
    "conflict",
];

/// A cell a spreadsheet would not execute: one starting with `=`, `+`, `-`, `@`, a tab or
/// a carriage return (a formula, or one after Excel strips those) gets a leading `'`, as
/// OWASP's CSV-injection guidance recommends. The csv writer then quotes as needed.
fn neutralised(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn csv_line(fields: &[&str]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = writer.write_record(fields.iter().map(|field| neutralised(field).into_owned()));
    writer.into_inner().unwrap_or_default()
}

fn csv_row(event: EventRecord) -> Bytes {
    let attributes: std::collections::BTreeMap<&str, &islets_core::attributes::AttributeValue> =
        event
            .attributes
            .iter()
            .map(|(name, value)| (name.as_str(), value))
            .collect();
    let attributes = serde_json::to_string(&attributes).unwrap_or_default();
    let time = |ms: Option<i64>| ms.map(rfc3339_ms).unwrap_or_default();
    let row = [
        event.event_id.clone(),
        event.event_type.clone().unwrap_or_default(),
        event.aggregate.clone().unwrap_or_default(),
        event.schema_version.clone().unwrap_or_default(),
        event.producer_system.clone().unwrap_or_default(),
        event.correlation_id.clone().unwrap_or_default(),
        event.trace_id.clone().unwrap_or_default(),
        time(event.occurred_at_ms),
        time(Some(event.published_at_ms)),
        time(Some(event.ingested_at_ms)),
        event.topic_arn.clone().unwrap_or_default(),
        event.sns_message_id.clone().unwrap_or_default(),
        event.delivery.as_str().to_owned(),
        event.schema_valid.to_string(),
        event.schema_error.clone().unwrap_or_default(),
        attributes,
        event.payload.clone(),
        event.conflict.to_string(),
    ];
    Bytes::from(csv_line(
        &row.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
}

/// One event with its payload, attributes and delivery metadata.
#[utoipa::path(
    get,
    path = "/v1/events/{event_id}",
    tag = "events",
    params(("event_id" = String, Path, description = "The event id", min_length = 1)),
    responses(
        (status = 200, body = EventView),
        (status = 404, description = "No such event", body = ErrorResponse),
        (status = 400, description = "A parameter is invalid; `details.field` names it", body = ErrorResponse),
        (status = 401, description = "No or unknown bearer token", body = ErrorResponse),
        (status = 403, description = "The token lacks audit:read", body = ErrorResponse),
    )
)]
pub(super) async fn one(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
) -> Result<Response, ApiError> {
    let query = EventQuery {
        filter: EventFilter {
            event_ids: vec![event_id.clone()],
            ..EventFilter::default()
        },
        limit: 1,
        order: Order::Asc,
        cursor: None,
    };
    let page = state.engine.events(&query).await?;
    note_conflicts(&state, &page.events);
    let left_out = Incomplete::count(Incomplete::of(&state, Some(&query.filter)).await?.as_ref());
    let Some(event) = page.events.into_iter().next() else {
        let mut message = format!("no event with event_id '{event_id}'");
        if left_out > 0 {
            message.push_str(&format!(
                " in the readable files ({left_out} archive files cannot be read: see /readyz)"
            ));
        }
        let mut response = not_found(message).into_response();
        Incomplete::mark(left_out, &mut response);
        return Ok(response);
    };
    let mut response = with_rows(Json(EventView::from(event)), 1);
    Incomplete::mark(left_out, &mut response);
    Ok(response)
}

/// The whole flow of one correlation id, by occurred_at then published_at (at most 10,000).
#[utoipa::path(
    get,
    path = "/v1/correlations/{correlation_id}",
    tag = "events",
    params(("correlation_id" = String, Path, description = "The correlation id", min_length = 1)),
    responses(
        (status = 200, body = FlowView),
        (status = 404, description = "No event has this correlation id", body = ErrorResponse),
        (status = 400, description = "A parameter is invalid; `details.field` names it", body = ErrorResponse),
        (status = 401, description = "No or unknown bearer token", body = ErrorResponse),
        (status = 403, description = "The token lacks audit:read", body = ErrorResponse),
    )
)]
pub(super) async fn correlation(
    State(state): State<AppState>,
    Path(correlation_id): Path<String>,
) -> Result<Response, ApiError> {
    let mut events = state
        .engine
        .correlation(&correlation_id, MAX_FLOW_EVENTS + 1)
        .await?;
    if events.is_empty() {
        return Err(not_found(format!(
            "no event with correlation_id '{correlation_id}'"
        )));
    }
    let truncated = events.len() > MAX_FLOW_EVENTS;
    events.truncate(MAX_FLOW_EVENTS);
    note_conflicts(&state, &events);
    let incomplete = Incomplete::of(&state, None).await?;
    let left_out = Incomplete::count(incomplete.as_ref());
    let rows = events.len();
    let mut response = with_rows(
        Json(FlowView {
            correlation_id,
            events: events.into_iter().map(EventView::from).collect(),
            truncated,
            incomplete,
        }),
        rows,
    );
    Incomplete::mark(left_out, &mut response);
    Ok(response)
}

/// Counts and logs events served whose archived copies differ: someone put another
/// message under an existing event_id (the copy ingested first is the one served).
fn note_conflicts(state: &AppState, events: &[EventRecord]) {
    let conflicting: Vec<&str> = events
        .iter()
        .filter(|event| event.conflict)
        .map(|event| event.event_id.as_str())
        .collect();
    if conflicting.is_empty() {
        return;
    }
    state
        .metrics
        .conflicting_events_served
        .inc_by(conflicting.len() as u64);
    tracing::warn!(
        count = conflicting.len(),
        event_ids = ?&conflicting[..conflicting.len().min(20)],
        "served events whose archived copies differ (conflict: the copy ingested first is shown)"
    );
}

#[cfg(test)]
mod csv_tests {
    use super::*;

    #[tokio::test]
    async fn an_export_past_its_time_limit_ends_with_an_error_not_a_short_file() {
        let endless: islets_query::EventStream = futures::stream::pending().boxed();
        let mut limited = until_deadline(endless, std::time::Duration::from_millis(50));
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), limited.next())
            .await
            .expect("the deadline ends the stream");
        assert!(matches!(first, Some(Err(_))), "an error, not a clean end");
        assert!(limited.next().await.is_none());
    }

    #[test]
    fn cells_a_spreadsheet_would_execute_are_neutralised() {
        for (cell, expected) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("{\"price\":-1}", "{\"price\":-1}"),
            ("listing", "listing"),
            ("", ""),
        ] {
            assert_eq!(neutralised(cell), expected, "{cell:?}");
            let line = csv_line(&[cell]);
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(line.as_slice());
            let record = reader.records().next().expect("a row").expect("valid CSV");
            assert_eq!(&record[0], expected, "{cell:?} round-trips through CSV");
        }
    }
}
