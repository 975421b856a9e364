//! `islets-query`: the engine-independent query model of Islets Audit.
//!
//! The HTTP API, the (later) web console and `islets-replay` all select events with
//! [`model::EventQuery`]; engines (DataFusion embedded, Athena distributed) answer it.
//! Raw parameters are validated here, once, with errors that name the field.
//!
//! Depends on `islets-core` only; knows nothing of HTTP frameworks.

pub mod api;
pub mod athena;
pub mod engine;
pub mod error;
pub mod id_index;
pub mod metrics;
pub mod model;
pub mod server;
pub mod sql;
mod table;
pub mod view;

#[cfg(test)]
mod test_support;

pub use error::{Error, Result};
