//! `POST /v1/sql`: one read-only query over the `events` view, with a timeout and a row cap.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::openapi::ErrorResponse;
use crate::{ApiError, AppState, Incomplete, with_rows};
use axum::response::Response;
use islets_query::SqlResult;
use utoipa::ToSchema;

/// Most rows one SQL answer holds (`truncated` says when more existed).
pub(super) const MAX_SQL_ROWS: usize = 10_000;
/// Longest a SQL query may run.
const SQL_TIMEOUT: Duration = Duration::from_secs(30);

/// One read-only query over `events` (duplicates collapsed) and `events_raw`.
#[derive(Deserialize, ToSchema)]
pub(super) struct SqlRequest {
    /// One read-only statement.
    #[schema(min_length = 1)]
    sql: String,
}

/// The rows, one JSON object each.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct SqlResponse {
    columns: Vec<String>,
    /// One object per row (as encoded by the engine, not parsed again).
    #[schema(value_type = Vec<Object>)]
    rows: Box<serde_json::value::RawValue>,
    truncated: bool,
    /// Present when unreadable files were left out of the tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    incomplete: Option<Incomplete>,
}

/// Runs one read-only SELECT (30 s timeout including planning, at most 10,000 rows and
/// 16 MiB of JSON, 256 MiB of working memory; values over 8 MiB are refused); DDL, DML,
/// COPY, SET, the `||` operator and multiple statements are refused.
#[utoipa::path(
    post,
    path = "/v1/sql",
    tag = "sql",
    request_body = SqlRequest,
    responses(
        (status = 200, body = SqlResponse),
        (status = 400, description = "Not a single read-only query, it fails to plan, or a function would build a value over 8 MiB (`value_too_large`)", body = ErrorResponse),
        (status = 401, body = ErrorResponse),
        (status = 403, description = "The token lacks audit:sql", body = ErrorResponse),
        (status = 413, description = "The answer is over 16 MiB (`result_too_large`) or the statement needs more than 256 MiB (`query_too_large`)", body = ErrorResponse),
        (status = 501, description = "Not available on this engine (athena)", body = ErrorResponse),
        (status = 504, description = "Timed out", body = ErrorResponse),
    )
)]
pub(super) async fn run(
    State(state): State<AppState>,
    body: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|rejection| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_body",
        message: format!(
            "send {{\"sql\": \"SELECT ...\"}} as application/json: {}",
            rejection.body_text()
        ),
        details: json!({}),
    })?;
    let answer = tokio::time::timeout(SQL_TIMEOUT, state.engine.sql(&request.sql, MAX_SQL_ROWS))
        .await
        .map_err(|_| ApiError {
            status: StatusCode::GATEWAY_TIMEOUT,
            code: "query_timeout",
            message: format!(
                "the query ran longer than {} s: narrow it (time range, filters) or use the Athena engine",
                SQL_TIMEOUT.as_secs()
            ),
            details: json!({"timeout_seconds": SQL_TIMEOUT.as_secs()}),
        })??;
    let SqlResult {
        columns,
        rows,
        row_count: count,
        truncated,
    } = answer;
    let incomplete = Incomplete::of(&state, None).await?;
    let left_out = Incomplete::count(incomplete.as_ref());
    let mut response = with_rows(
        Json(SqlResponse {
            columns,
            rows,
            truncated,
            incomplete,
        }),
        count,
    );
    Incomplete::mark(left_out, &mut response);
    Ok(response)
}
