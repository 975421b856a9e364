//! End-to-end tests: the real binaries against moto_server over HTTP, reading back the
//! real Parquet objects. Run them with `scripts/test` (it starts moto and sets
//! `ISLETS_TEST_AWS_ENDPOINT`).

mod support;

mod architecture;
mod athena;
mod bad_config;
mod demo;
mod freshness;
mod fuzz;
mod hostile_sql;
mod http_source;
mod provision;
mod query_api;
mod readme;
mod replay;
mod sqs_ingest;
