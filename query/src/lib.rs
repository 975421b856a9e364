//! `islets-query`: the query engine of Islets Audit, apart from any HTTP server.
//!
//! * [`model`]: the engine-independent query model (validated parameters, cursors bound to
//!   a snapshot of files). The HTTP API, the web console and `islets-replay` all select
//!   events with [`model::EventQuery`] / [`model::EventFilter`]; raw parameters are
//!   validated here, once, with errors that name the field;
//! * [`sql`]: SQL compilation with positional parameters (values never become SQL text);
//! * [`engine`]: the [`engine::QueryEngine`] trait and its embedded DataFusion engine (a
//!   `TableProvider` over pre-listed files; which files hold an id, in [`id_index`]);
//! * [`athena`]: the distributed engine, the same SQL over the Glue table;
//! * [`view`]: how an archived record is shown (the API's event view).
//!
//! Depends on `islets-core` only; knows nothing of HTTP frameworks (the API lives in
//! `islets-api`). The optional `openapi` feature derives the OpenAPI schemas of the
//! response types for the API crate.

#![warn(missing_docs)]

pub mod athena;
pub mod bounds;
pub mod engine;
pub mod error;
pub mod id_index;
pub mod model;
pub mod sql;
mod table;
pub mod view;

#[cfg(any(test, feature = "test-support"))]
#[allow(missing_docs)]
pub mod test_support;

pub use error::{Error, Result};
