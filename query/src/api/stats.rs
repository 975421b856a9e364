//! `GET /v1/stats`: distinct events per hour or day over a range, optionally grouped.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;

use super::{ApiError, AppState, with_rows};
use crate::engine::StatsBucket;
use crate::model::{GroupBy, Interval, parse_stats_query};
use crate::view::rfc3339_ms;
use axum::response::Response;

#[derive(Serialize)]
pub(super) struct StatsView {
    interval: Interval,
    group_by: Option<GroupBy>,
    since: Option<String>,
    until: Option<String>,
    buckets: Vec<StatsBucket>,
}

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
    let rows = buckets.len();
    Ok(with_rows(
        Json(StatsView {
            interval: query.interval,
            group_by: query.group_by,
            since: query.filter.since_ms.map(rfc3339_ms),
            until: query.filter.until_ms.map(rfc3339_ms),
            buckets,
        }),
        rows,
    ))
}
