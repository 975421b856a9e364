//! Bearer authentication: a token with the route's scope, or 401 / 403.

use axum::http::{HeaderMap, StatusCode, header};
use islets_core::tokens::{Denial, Identity, Tokens};

use crate::ApiError;

/// The identity behind the request's `Authorization` header if it holds `scope`; else
/// 401 `unauthorized` (no or an unknown token) or 403 `forbidden` (the wrong scope).
pub fn authenticate<'t>(
    tokens: &'t Tokens,
    headers: &HeaderMap,
    scope: &'static str,
) -> Result<&'t Identity, (ApiError, Denial)> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    tokens.authorize(presented, scope).map_err(|denial| {
        let error = match &denial {
            Denial::Unauthenticated => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", denial.message())
            }
            Denial::MissingScope { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", denial.message())
            }
        };
        (error, denial)
    })
}
