//! `islets-app`: the commands of the umbrella binary `islets-audit` that wire several
//! libraries together: [`demo`] (generate a data set and ingest it through the real
//! pipeline), [`serve`] (HTTP ingest and the query API on one local archive) and
//! [`generate`] (a data set as NDJSON). Each is raw arguments → a validated configuration
//! → `run` → an outcome or an [`Error`] whose kind decides the exit status.
//!
//! Depends on `islets-core`, `islets-ingester` and `islets-api`; nothing depends on it but
//! the binary. `provision` (islets-infra) and `islets-replay` need no wiring and are called
//! by the binaries directly.

#![warn(missing_docs)]

mod data_set;
// One public module a command (its arguments, configuration, `run` and outcome), so the
// binary names them `demo::run`, `serve::run`: the names would collide at the root.
pub mod demo;
mod error;
pub mod generate;
pub mod serve;

pub use data_set::DataSetArgs;
pub use error::{Error, Result};
