//! `/v1/events`, `/v1/events/{event_id}`, `/v1/correlations/{correlation_id}`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::Serialize;

use super::{ApiError, AppState};
use crate::model::{EventFilter, EventQuery, Order, PASS_THROUGH_PARAMETERS, parse_event_query};
use crate::view::EventView;

/// Most events returned for one correlation id.
pub(super) const MAX_FLOW_EVENTS: usize = 10_000;

#[derive(Serialize)]
pub(super) struct EventPageView {
    events: Vec<EventView>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
pub(super) struct FlowView {
    correlation_id: String,
    events: Vec<EventView>,
    /// True when the flow has more than the events returned.
    truncated: bool,
}

fn pairs(raw: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

pub(super) async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EventPageView>, ApiError> {
    let query = parse_event_query(&pairs(raw), PASS_THROUGH_PARAMETERS, chrono::Utc::now())?;
    let page = state.engine.events(&query).await?;
    Ok(Json(EventPageView {
        events: page.events.into_iter().map(EventView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

pub(super) async fn one(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
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
    let event = page
        .events
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found(format!("no event with event_id '{event_id}'")))?;
    Ok(Json(EventView::from(event)))
}

pub(super) async fn correlation(
    State(state): State<AppState>,
    Path(correlation_id): Path<String>,
) -> Result<Json<FlowView>, ApiError> {
    let mut events = state
        .engine
        .correlation(&correlation_id, MAX_FLOW_EVENTS + 1)
        .await?;
    if events.is_empty() {
        return Err(ApiError::not_found(format!(
            "no event with correlation_id '{correlation_id}'"
        )));
    }
    let truncated = events.len() > MAX_FLOW_EVENTS;
    events.truncate(MAX_FLOW_EVENTS);
    Ok(Json(FlowView {
        correlation_id,
        events: events.into_iter().map(EventView::from).collect(),
        truncated,
    }))
}
