//! Bearer tokens and scopes, shared by every HTTP surface (query API, ingester, console).
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
//! (`printf %s "$TOKEN" | sha256sum` gives the hash.) This module knows no HTTP framework:
//! servers pass the `Authorization` header value to [`Tokens::authorize`] and map the
//! [`Denial`] to 401 or 403.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Reading events (`/v1/events`, `/v1/correlations`, `/v1/stats`).
pub const SCOPE_READ: &str = "audit:read";
/// Running SQL (`/v1/sql`).
pub const SCOPE_SQL: &str = "audit:sql";
/// Ingesting over HTTP (the ingester's `/v1/ingest`).
pub const SCOPE_INGEST: &str = "audit:ingest";
/// Replaying events (`islets-replay`).
pub const SCOPE_REPLAY: &str = "audit:replay";
/// Every scope a tokens file may grant.
pub const KNOWN_SCOPES: [&str; 4] = [SCOPE_READ, SCOPE_SQL, SCOPE_INGEST, SCOPE_REPLAY];

/// Known tokens, by the hex SHA-256 of the token.
#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<String, Identity>,
}

/// Who a token belongs to and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's name (in the tokens file and the access log).
    pub name: String,
    /// What it may do (`audit:read`, `audit:sql`, ...).
    pub scopes: BTreeSet<String>,
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 7235 §2.1: `bearer`, `BEARER` and `Bearer` are the same), surrounding spaces are
/// ignored.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
        .filter(|token| !token.is_empty())
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No bearer token, or one not in the file (401).
    Unauthenticated,
    /// A known token without the scope (403).
    MissingScope {
        /// The token's name.
        who: String,
        /// The scope the request needs.
        scope: &'static str,
    },
}

impl Denial {
    /// The message for the caller.
    pub fn message(&self) -> String {
        match self {
            Denial::Unauthenticated => "send Authorization: Bearer <token>".to_owned(),
            Denial::MissingScope { scope, .. } => format!("this token lacks the scope {scope}"),
        }
    }
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

    /// Parses the text of a tokens file.
    pub fn parse(text: &str) -> Result<Self, String> {
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

    /// The identity behind a token, if it is known.
    pub fn identify(&self, token: &str) -> Option<&Identity> {
        self.by_hash.get(&token_hash(token.trim()))
    }

    /// Checks an `Authorization` header value (`Bearer <token>`) against `scope`;
    /// returns who is asking.
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        scope: &'static str,
    ) -> Result<&Identity, Denial> {
        let identity = authorization
            .and_then(bearer_token)
            .and_then(|token| self.identify(token))
            .ok_or(Denial::Unauthenticated)?;
        if identity.scopes.contains(scope) {
            Ok(identity)
        } else {
            Err(Denial::MissingScope {
                who: identity.name.clone(),
                scope,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let hash = token_hash("secret");
        let tokens = Tokens::parse(&format!(
            "tokens:\n  - name: a\n    sha256: {hash}\n    scopes: [audit:read]\n"
        ))
        .expect("valid");
        for header in [
            "Bearer secret",
            "bearer secret",
            "BEARER secret",
            "BeArEr   secret",
        ] {
            assert!(
                tokens.authorize(Some(header), SCOPE_READ).is_ok(),
                "{header}"
            );
        }
        for header in [
            "Basic secret",
            "Bearer",
            "Bearer ",
            "Bearersecret",
            "secret",
            "Bearer other",
        ] {
            assert_eq!(
                tokens.authorize(Some(header), SCOPE_READ).err(),
                Some(Denial::Unauthenticated),
                "{header}"
            );
        }
    }

    #[test]
    fn a_tokens_file_holds_hashes_and_known_scopes_only() {
        let hash = token_hash("secret");
        let tokens = Tokens::parse(&format!(
            "tokens:\n  - name: a\n    sha256: {hash}\n    scopes: [audit:read]\n"
        ))
        .expect("valid");
        assert_eq!(
            tokens
                .identify("secret")
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

    #[test]
    fn authorize_tells_unknown_tokens_from_missing_scopes() {
        let tokens = Tokens::parse(&format!(
            "tokens:\n  - name: reader\n    sha256: {}\n    scopes: [audit:read]\n",
            token_hash("r")
        ))
        .expect("valid");
        assert_eq!(
            tokens
                .authorize(Some("Bearer r"), SCOPE_READ)
                .map(|i| i.name.as_str()),
            Ok("reader")
        );
        assert_eq!(
            tokens.authorize(Some("Bearer r"), SCOPE_INGEST),
            Err(Denial::MissingScope {
                who: "reader".into(),
                scope: SCOPE_INGEST
            })
        );
        for header in [None, Some("Bearer x"), Some("r"), Some("Basic r")] {
            assert_eq!(
                tokens.authorize(header, SCOPE_READ),
                Err(Denial::Unauthenticated),
                "{header:?}"
            );
        }
    }
}
