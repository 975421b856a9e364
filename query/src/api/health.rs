//! `/healthz` (the process runs), `/readyz` (it can answer queries: the archive or Athena
//! answers) and `/metrics` (Prometheus).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::openapi::{ErrorResponse, Status};
use super::{ApiError, AppState};

/// The process runs.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, body = Status)))]
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The engine can answer (the archive, or Athena, answers).
#[utoipa::path(get, path = "/readyz", tag = "health", security(()), responses(
    (status = 200, body = Status),
    (status = 503, body = ErrorResponse),
))]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.engine.ready().await {
        Ok(()) => Ok(Json(json!({"status": "ready"}))),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "not_ready",
                message: "the query engine cannot reach the archive right now".to_owned(),
                details: json!({}),
            })
        }
    }
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
