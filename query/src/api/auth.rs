//! Bearer-token authentication, scopes, and the access log.
//!
//! Tokens come from a YAML file holding only their SHA-256 hashes:
//!
//! ```yaml
//! tokens:
//!   - name: compliance-team            # who, in the access log
//!     sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//!     scopes: [audit:read]
//! ```
//!
//! (`printf %s "$TOKEN" | sha256sum` gives the hash.) Every request except the health
//! routes needs a token with the route's scope: 401 without one, 403 with the wrong scope.
//! Every request is logged as a structured access record.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};

/// Reading events (`/v1/events`, `/v1/correlations`, `/v1/stats`).
pub const SCOPE_READ: &str = "audit:read";
/// Running SQL (`/v1/sql`).
pub const SCOPE_SQL: &str = "audit:sql";
/// Ingesting over HTTP (the ingester's `/v1/ingest`).
pub const SCOPE_INGEST: &str = "audit:ingest";
/// Replaying events (`islets-replay`).
pub const SCOPE_REPLAY: &str = "audit:replay";
const KNOWN_SCOPES: [&str; 4] = [SCOPE_READ, SCOPE_SQL, SCOPE_INGEST, SCOPE_REPLAY];

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No authentication (the embedded demo, loopback only).
    Off,
    Tokens(Arc<Tokens>),
}

/// Known tokens, by the hex SHA-256 of the token.
#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<String, Identity>,
}

#[derive(Debug, Clone)]
struct Identity {
    name: String,
    scopes: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    scopes: Vec<String>,
}

/// The hex SHA-256 of a token, as stored in the tokens file.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

impl Tokens {
    /// Parses a tokens file; the error names the file and what to fix.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        Self::parse(&text).map_err(|error| format!("{}: {error}", path.display()))
    }

    fn parse(text: &str) -> Result<Self, String> {
        let file: TokensFile = serde_yaml_ng::from_str(text).map_err(|error| error.to_string())?;
        let mut tokens = Tokens::default();
        for (index, entry) in file.tokens.into_iter().enumerate() {
            let valid_hash =
                entry.sha256.len() == 64 && entry.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid_hash {
                return Err(format!(
                    "tokens[{index}].sha256: not a hex SHA-256 (printf %s \"$TOKEN\" | sha256sum)"
                ));
            }
            if let Some(unknown) = entry
                .scopes
                .iter()
                .find(|scope| !KNOWN_SCOPES.contains(&scope.as_str()))
            {
                return Err(format!(
                    "tokens[{index}].scopes: unknown scope '{unknown}' (known: {})",
                    KNOWN_SCOPES.join(", ")
                ));
            }
            let identity = Identity {
                name: entry.name,
                scopes: entry.scopes.into_iter().collect(),
            };
            tokens
                .by_hash
                .insert(entry.sha256.to_ascii_lowercase(), identity);
        }
        Ok(tokens)
    }
}

/// Rows a handler returned, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct RowsReturned(pub usize);

/// The scope a route needs; `None` for the open health routes.
fn required_scope(path: &str) -> Option<&'static str> {
    match path {
        "/healthz" | "/readyz" => None,
        "/v1/sql" => Some(SCOPE_SQL),
        _ => Some(SCOPE_READ),
    }
}

fn denied(status: StatusCode, code: &'static str, message: String) -> Response {
    ApiError {
        status,
        code,
        message,
        details: json!({}),
    }
    .into_response()
}

/// Authenticates, authorizes and logs every request.
pub(super) async fn authorize(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let method = request.method().clone();
    let who = match (&state.auth, required_scope(&path)) {
        (_, None) => "anyone".to_owned(),
        (Auth::Off, Some(_)) => "anonymous (auth off)".to_owned(),
        (Auth::Tokens(tokens), Some(scope)) => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "));
            let Some(identity) =
                presented.and_then(|token| tokens.by_hash.get(&token_hash(token.trim())))
            else {
                tracing::info!(target: "islets_query::access", who = "unknown", %method, route = %path, query, status = 401);
                return denied(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "send Authorization: Bearer <token>".to_owned(),
                );
            };
            if !identity.scopes.contains(scope) {
                tracing::info!(target: "islets_query::access", who = %identity.name, %method, route = %path, query, status = 403);
                return denied(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("this token lacks the scope {scope}"),
                );
            }
            identity.name.clone()
        }
    };
    let response = next.run(request).await;
    let rows = response
        .extensions()
        .get::<RowsReturned>()
        .map(|rows| rows.0);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tokens_file_holds_hashes_and_known_scopes_only() {
        let hash = token_hash("secret");
        let tokens = Tokens::parse(&format!(
            "tokens:\n  - name: a\n    sha256: {hash}\n    scopes: [audit:read]\n"
        ))
        .expect("valid");
        assert_eq!(
            tokens
                .by_hash
                .get(&hash)
                .map(|identity| identity.name.as_str()),
            Some("a")
        );
        for (text, expected) in [
            (
                "tokens:\n  - name: a\n    sha256: secret\n    scopes: [audit:read]\n",
                "tokens[0].sha256",
            ),
            (
                &*format!("tokens:\n  - name: a\n    sha256: {hash}\n    scopes: [audit:write]\n"),
                "unknown scope 'audit:write'",
            ),
            ("tokens: nope\n", "tokens"),
        ] {
            let error = Tokens::parse(text).expect_err(text);
            assert!(error.contains(expected), "{error}");
        }
    }
}
