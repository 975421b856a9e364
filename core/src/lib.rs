//! `islets-core`: what every Islets Audit component shares.
//!
//! * [`record`] and [`decode`]: the archived record and how a delivered SQS/SNS message
//!   becomes one (or a quarantine row);
//! * [`catalog`]: the `events/*.yaml` catalog and JSON Schema validation;
//! * [`schema`] and [`parquet_file`]: the one Arrow schema of the archive and its Parquet
//!   encoding;
//! * [`layout`]: the partition layout, the single mapping between records and object keys;
//! * [`store`] and [`aws`]: store URIs, the archive handle over `object_store`, AWS SDK
//!   configuration;
//! * [`demo`]: a realistic generated data set;
//! * [`tokens`]: bearer tokens and scopes shared by the HTTP servers.
//!
//! This crate must not depend on any other Islets crate, nor on HTTP frameworks or CLI
//! parsers: it is the bottom of the dependency graph.

#![warn(missing_docs)]

pub mod attributes;
pub mod aws;
pub mod catalog;
pub mod decode;
pub mod demo;
pub mod error;
pub mod journal;
pub mod kind;
pub mod layout;
pub mod parquet_file;
pub mod record;
pub mod retry;
pub mod schema;
pub mod store;
pub mod telemetry;
pub mod tokens;

pub use error::{Error, Result};
