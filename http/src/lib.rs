//! `islets-http`: the HTTP toolkit every Islets Audit server shares (the ingest server,
//! the query API, and the web console after them), so each rule exists once:
//!
//! * [`ApiError`]: the `{"error":{"code","message","details"}}` body, built from any
//!   error that says its [`islets_core::kind::ErrorKind`]; 5xx bodies stay generic and
//!   the details go to the log;
//! * [`healthz`], [`readiness`], [`metrics_response`]: `/healthz`, `/readyz` and the
//!   `/metrics` response;
//! * [`authenticate`]: bearer tokens and scopes, 401 and 403;
//! * [`check_listener`]: no unauthenticated listener beyond loopback;
//! * [`serve`]: the accept loop with a header-read timeout, a connection limit, the
//!   loopback-only `Host` check when authentication is off, and panics turned into logged
//!   500s.
//!
//! Depends on `islets-core` only; the service crates depend on it, never the reverse.

#![warn(missing_docs)]

mod auth;
mod error;
mod health;
mod listen;
mod server;

pub use auth::authenticate;
pub use error::{ApiError, not_found};
pub use health::{healthz, metrics_response, readiness};
pub use listen::{check_listener, is_loopback};
pub use server::{HostCheck, ServerLimits, serve};
