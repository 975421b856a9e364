//! `islets-query`: the query engine of Islets Audit, apart from any HTTP server.
//!
//! * the query model (module `model`): validated parameters, cursors bound to a snapshot
//!   of files. The HTTP API, the web console and `islets-replay` all select events with
//!   [`EventQuery`] / [`EventFilter`]; raw parameters are validated here, once, with
//!   errors that name the field ([`parse_event_query`], [`parse_stats_query`]);
//! * SQL compilation with positional parameters (module `sql`; values never become SQL
//!   text), bounded for `/v1/sql` (module `bounds`);
//! * the [`QueryEngine`] trait and its embedded [`DataFusionEngine`] (a `TableProvider`
//!   over pre-listed files; which files hold an id, in module `id_index`);
//! * [`AthenaEngine`]: the distributed engine, the same SQL over the Glue table;
//! * [`EventView`]: how an archived record is shown (the API's event view).
//!
//! Depends on `islets-core` only; knows nothing of HTTP frameworks (the API lives in
//! `islets-api`). The optional `openapi` feature derives the OpenAPI schemas of the
//! response types for the API crate.

#![warn(missing_docs)]

mod athena;
mod bounds;
mod engine;
mod error;
mod id_index;
mod model;
mod sql;
mod table;
mod view;

#[cfg(any(test, feature = "test-support"))]
#[allow(missing_docs)]
pub mod test_support;

pub use athena::{AthenaEngine, AthenaSettings, AthenaStatement, to_athena};
pub use engine::{
    DataFusionEngine, EventPage, EventStream, LISTING_TTL, MAX_SQL_RESULT_BYTES, QueryEngine,
    SqlResult, StatsBucket,
};
pub use error::{Error, Result};
pub use model::{
    Cursor, DEFAULT_LIMIT, EventFilter, EventQuery, EventTypeFilter, GroupBy, Interval,
    MAX_EVENT_IDS, MAX_HOURLY_RANGE_DAYS, MAX_LIMIT, Order, PASS_THROUGH_PARAMETERS, StatsQuery,
    identifier, parse_event_query, parse_stats_query, parse_time,
};
pub use sql::{CompiledQuery, Dialect};
pub use view::{AttributeMapSchema, AttributeSchema, EventView, PayloadView, rfc3339_ms};
