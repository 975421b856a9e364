//! The HTTP API: `pub fn router(state) -> Router`, one file per resource, handlers that
//! extract, call the engine, and map. Errors are `{"error":{"code","message","details"}}`;
//! 5xx bodies stay generic, details go to the log.

pub mod auth;
mod events;
mod health;
pub(crate) mod openapi;
mod sql;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::engine::QueryEngine;
use crate::error::Error;

/// Longest a request may run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<dyn QueryEngine>,
    pub auth: auth::Auth,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::openapi))
        .route("/v1/events", get(events::list))
        .route("/v1/events/{event_id}", get(events::one))
        .route(
            "/v1/correlations/{correlation_id}",
            get(events::correlation),
        )
        .route("/v1/sql", post(sql::run))
        .route("/v1/stats", get(stats::stats))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    pub(super) details: Value,
}

impl ApiError {
    fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            details: json!({}),
        }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidParameter { field, message } => ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_parameter",
                message: format!("{field}: {message}"),
                details: json!({"field": field}),
            },
            Error::InvalidSql(message) => ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_sql",
                message,
                details: json!({"field": "sql"}),
            },
            Error::Unsupported(message) => ApiError {
                status: StatusCode::NOT_IMPLEMENTED,
                code: "not_supported",
                message,
                details: json!({}),
            },
            Error::Store(source) => {
                tracing::error!(error = %source, "archive unavailable");
                ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "store_unavailable",
                    message: "the archive cannot be read right now; retry later".to_owned(),
                    details: json!({}),
                }
            }
            Error::Engine(message) => {
                tracing::error!(error = %message, "query failed");
                ApiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: "internal",
                    message: "the query failed; the details are in the server log".to_owned(),
                    details: json!({}),
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = islets_core::tokens::error_body(self.code, &self.message, self.details);
        (self.status, axum::Json(body)).into_response()
    }
}

/// A response that records how many rows it returned, for the access log.
fn with_rows(body: impl IntoResponse, rows: usize) -> Response {
    let mut response = body.into_response();
    response.extensions_mut().insert(auth::RowsReturned(rows));
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

#[cfg(test)]
mod tests;
