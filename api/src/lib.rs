//! `islets-api`: the HTTP query API of Islets Audit over the `islets-query` engine.
//!
//! `pub fn router(state) -> Router`, one file per resource, handlers that extract, call
//! the engine, and map. Errors are `{"error":{"code","message","details"}}`; 5xx bodies
//! stay generic, details go to the log. [`serve`] runs the server (configuration, start-up
//! checks, serving until shutdown); `/openapi.json` is generated from the handlers.
//!
//! Depends on `islets-core` and `islets-query`; never on the ingester, replay or infra
//! crates. Nothing else depends on it but the binaries.

#![warn(missing_docs)]

mod auth;
mod events;
mod health;
mod metrics;
mod openapi;
mod server;
mod sql;
mod stats;

pub use islets_http::ApiError;

pub use auth::{Auth, RowsReturned, SCOPE_READ, SCOPE_SQL, Tokens, token_hash};
pub use metrics::Metrics;
pub use server::{DEFAULT_LISTEN, EngineKind, QueryArgs, QueryConfig, ServeError, serve};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use islets_query::QueryEngine;

/// Longest a request may run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The query engine (DataFusion or Athena).
    pub engine: Arc<dyn QueryEngine>,
    /// Who may call which route.
    pub auth: auth::Auth,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
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
        .fallback(islets_http::not_found)
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

/// A response that records how many rows it returned, for the access log.
/// The response header that says how many unreadable files an answer left out.
pub const INCOMPLETE_HEADER: &str = "islets-incomplete";

/// Files an answer left out because they cannot be read (truncated, not Parquet): the
/// answer is incomplete. Absent when nothing was left out.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Incomplete {
    /// The archive keys of the files left out.
    unreadable_files: Vec<String>,
}

impl Incomplete {
    /// What the engine left out of answers over `filter`'s range (`None`: the whole archive).
    async fn of(
        state: &AppState,
        filter: Option<&islets_query::EventFilter>,
    ) -> Result<Option<Incomplete>, ApiError> {
        let files = state.engine.unreadable(filter).await?;
        Ok((!files.is_empty()).then_some(Incomplete {
            unreadable_files: files,
        }))
    }

    /// How many files were left out (0: none).
    fn count(incomplete: Option<&Incomplete>) -> usize {
        incomplete.map_or(0, |incomplete| incomplete.unreadable_files.len())
    }

    /// Sets [`INCOMPLETE_HEADER`] on `response` when `files` were left out.
    fn mark(files: usize, response: &mut Response) {
        if files > 0 {
            response
                .headers_mut()
                .insert(INCOMPLETE_HEADER, axum::http::HeaderValue::from(files));
        }
    }
}

fn with_rows(body: impl IntoResponse, rows: usize) -> Response {
    let mut response = body.into_response();
    response.extensions_mut().insert(auth::RowsReturned(rows));
    response
}

#[cfg(test)]
mod tests;
