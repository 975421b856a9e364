//! `/healthz` (the process runs), `/readyz` (it can do its work) and the `/metrics`
//! response (OpenMetrics text).

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::ApiError;

/// `GET /healthz`: the process runs.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The `/readyz` answer: 200 `{"status":"ready"}`, or 503 `not_ready` saying why.
pub fn readiness(ready: Result<(), String>) -> Result<Json<Value>, ApiError> {
    match ready {
        Ok(()) => Ok(Json(json!({"status": "ready"}))),
        Err(reason) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            reason,
        )),
    }
}

/// The `/metrics` response for an encoded registry.
pub fn metrics_response(encoded: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        encoded,
    )
        .into_response()
}
