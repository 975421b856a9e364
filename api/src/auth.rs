//! Authentication (tokens and scopes from `islets_core::tokens`) and the access log.
//!
//! Every request except the health routes needs a token with the route's scope: 401
//! without one, 403 with the wrong scope. Every request is logged as a structured access
//! record (target `islets_query::access`).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use islets_core::tokens::Denial;
pub use islets_core::tokens::{SCOPE_READ, SCOPE_SQL, Tokens, token_hash};

use crate::AppState;
use crate::metrics::{RequestLabels, RouteLabels};

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No authentication (the embedded demo, loopback only).
    Off,
    /// Bearer tokens from the tokens file (hashes, scopes).
    Tokens(Arc<Tokens>),
}

/// Rows a handler returned, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct RowsReturned(pub usize);

/// The scope a route needs; `None` for the open health routes.
fn required_scope(path: &str) -> Option<&'static str> {
    match path {
        "/healthz" | "/readyz" | "/metrics" | "/openapi.json" => None,
        "/v1/sql" => Some(SCOPE_SQL),
        _ => Some(SCOPE_READ),
    }
}

/// Authenticates, authorizes and logs every request.
pub(super) async fn authorize(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let path = request.uri().path().to_owned();
    // The route template bounds the metrics' label values; unknown paths share one.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |matched| matched.as_str())
        .to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let method = request.method().clone();
    let who = match (&state.auth, required_scope(&path)) {
        (_, None) => "anyone".to_owned(),
        (Auth::Off, Some(_)) => "anonymous (auth off)".to_owned(),
        (Auth::Tokens(tokens), Some(scope)) => {
            match islets_http::authenticate(tokens, request.headers(), scope) {
                Ok(identity) => identity.name.clone(),
                Err((error, denial)) => {
                    let who = match &denial {
                        Denial::Unauthenticated => "unknown".to_owned(),
                        Denial::MissingScope { who, .. } => who.clone(),
                    };
                    let status = error.status.as_u16();
                    tracing::info!(target: "islets_query::access", who, %method, route = %path, query, status);
                    state
                        .metrics
                        .requests
                        .get_or_create(&RequestLabels { route, status })
                        .inc();
                    return error.into_response();
                }
            }
        }
    };
    let response = next.run(request).await;
    let rows = response
        .extensions()
        .get::<RowsReturned>()
        .map(|rows| rows.0);
    let labels = RouteLabels {
        route: route.clone(),
    };
    state
        .metrics
        .request_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .rows_returned
        .get_or_create(&labels)
        .inc_by(rows.unwrap_or(0) as u64);
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    tracing::info!(
        target: "islets_query::access",
        who,
        %method,
        route = %path,
        query,
        status = response.status().as_u16(),
        rows,
        millis = started.elapsed().as_millis() as u64,
    );
    response
}
