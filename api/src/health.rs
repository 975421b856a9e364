//! `/healthz` (the process runs), `/readyz` (it can answer queries: the archive or Athena
//! answers) and `/metrics` (Prometheus).

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use crate::openapi::{ErrorResponse, Status};
use crate::{ApiError, AppState};

/// The process runs.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, body = Status)))]
pub(super) async fn healthz() -> Json<Value> {
    islets_http::healthz().await
}

/// The engine can answer (the archive, or Athena, answers).
#[utoipa::path(get, path = "/readyz", tag = "health", security(()), responses(
    (status = 200, body = Status),
    (status = 503, body = ErrorResponse),
))]
///
/// Files that cannot be read do not make the server unready (every answer leaves them out
/// and says so): the status is then `degraded`, with the files named.
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let Json(mut body) = islets_http::readiness(state.engine.ready().await.map_err(|error| {
        tracing::warn!(%error, "not ready");
        "the query engine cannot reach the archive right now".to_owned()
    }))?;
    let unreadable = state.engine.unreadable(None).await.unwrap_or_default();
    if !unreadable.is_empty() {
        body["status"] = "degraded".into();
        body["unreadable_files"] = unreadable.into();
    }
    Ok(Json(body))
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let unreadable = state.engine.unreadable(None).await.unwrap_or_default();
    state
        .metrics
        .unreadable_files
        .set(i64::try_from(unreadable.len()).unwrap_or(i64::MAX));
    islets_http::metrics_response(state.metrics.encode())
}
