//! `GET /v1/stats`: distinct events per hour or day over a range, optionally grouped.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;

use crate::openapi::ErrorResponse;
use crate::{ApiError, AppState, Incomplete, with_rows};
use axum::response::Response;
use islets_query::StatsBucket;
use islets_query::rfc3339_ms;
use islets_query::{GroupBy, Interval, parse_stats_query};
use utoipa::ToSchema;

/// Distinct events per bucket.
#[derive(Serialize, ToSchema)]
pub(super) struct StatsView {
    /// `hour` or `day`.
    #[schema(value_type = String)]
    interval: Interval,
    /// `event_type`, `aggregate` or `producer_system`.
    #[schema(value_type = Option<String>)]
    group_by: Option<GroupBy>,
    since: Option<String>,
    until: Option<String>,
    buckets: Vec<StatsBucket>,
    /// Present when unreadable files were left out of the counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete: Option<Incomplete>,
}

/// Distinct events per hour or day over a range, optionally grouped.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "stats",
    params(
        ("since" = Option<String>, Query, description = "Start of the range (RFC 3339, date or duration ago; default 7 days ago)", min_length = 1),
        ("until" = Option<String>, Query, description = "End of the range (default now)", min_length = 1),
        ("interval" = Option<String>, Query, description = "`hour` (ranges up to 31 days) or `day` (default)", pattern = "^(hour|day)$"),
        ("group_by" = Option<String>, Query, description = "`event_type`, `aggregate` or `producer_system`", pattern = "^(event_type|aggregate|producer_system)$"),
        ("event_type" = Option<String>, Query, description = "Filters, as on /v1/events", pattern = "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)?$"),
        ("aggregate" = Option<String>, Query, pattern = "^[a-z][a-z0-9_]*$"),
        ("producer_system" = Option<String>, Query, min_length = 1),
        ("schema_valid" = Option<bool>, Query),
    ),
    responses(
        (status = 200, body = StatsView),
        (status = 400, description = "A parameter is invalid; `details.field` names it", body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, body = ErrorResponse),
    )
)]
pub(super) async fn stats(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let query = parse_stats_query(&pairs, chrono::Utc::now())?;
    let buckets = state.engine.stats(&query).await?;
    let incomplete = Incomplete::of(&state, Some(&query.filter)).await?;
    let left_out = Incomplete::count(incomplete.as_ref());
    let rows = buckets.len();
    let mut response = with_rows(
        Json(StatsView {
            interval: query.interval,
            group_by: query.group_by,
            since: query.filter.since_ms.map(rfc3339_ms),
            until: query.filter.until_ms.map(rfc3339_ms),
            buckets,
            incomplete,
        }),
        rows,
    );
    Incomplete::mark(left_out, &mut response);
    Ok(response)
}
