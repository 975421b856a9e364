//! The error type of `islets-query`.

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Query failures, by kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter is invalid; `field` names it (API: 400 with `details.field`).
    #[error("{field}: {message}")]
    InvalidParameter {
        /// The parameter.
        field: String,
        /// What is wrong with it and what it accepts.
        message: String,
    },

    /// `/v1/sql` text that is not a single read-only query, or that fails to plan or run.
    #[error("sql: {0}")]
    InvalidSql(String),

    /// A `/v1/sql` function would build a value over the `/v1/sql` value bounds (8 MiB a value).
    #[error("sql: {0}")]
    ValueTooLarge(String),

    /// A `/v1/sql` statement needs more memory than its budget.
    #[error("sql: {0}")]
    QueryTooLarge(String),

    /// A `/v1/sql` answer is over its byte limit.
    #[error(
        "the answer is over {limit_bytes} bytes of JSON: select fewer or smaller columns, aggregate, or add a LIMIT"
    )]
    ResultTooLarge {
        /// The limit.
        limit_bytes: usize,
    },

    /// The archive could not be read.
    #[error("archive: {0}")]
    Store(#[source] islets_core::Error),

    /// The engine in use cannot answer this (API: 501).
    #[error("{0}")]
    Unsupported(String),

    /// The query engine failed (planning or execution).
    #[error("query engine: {0}")]
    Engine(String),
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidParameter {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The offending field of an invalid-parameter error.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::InvalidParameter { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl islets_core::kind::Classify for Error {
    fn kind(&self) -> islets_core::kind::ErrorKind {
        use islets_core::kind::ErrorKind;
        match self {
            Error::InvalidParameter { .. } | Error::InvalidSql(_) | Error::ValueTooLarge(_) => {
                ErrorKind::Usage
            }
            Error::QueryTooLarge(_) | Error::ResultTooLarge { .. } => ErrorKind::TooLarge,
            Error::Store(_) => ErrorKind::Unavailable,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Engine(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::InvalidParameter { .. } => "invalid_parameter",
            Error::InvalidSql(_) => "invalid_sql",
            Error::ValueTooLarge(_) => "value_too_large",
            Error::QueryTooLarge(_) => "query_too_large",
            Error::ResultTooLarge { .. } => "result_too_large",
            Error::Store(_) => "store_unavailable",
            Error::Unsupported(_) => "not_supported",
            Error::Engine(_) => "internal",
        }
    }

    fn details(&self) -> serde_json::Value {
        match self {
            Error::InvalidParameter { field, .. } => serde_json::json!({ "field": field }),
            Error::InvalidSql(_) | Error::ValueTooLarge(_) | Error::QueryTooLarge(_) => {
                serde_json::json!({"field": "sql"})
            }
            Error::ResultTooLarge { limit_bytes } => {
                serde_json::json!({"field": "sql", "limit_bytes": limit_bytes})
            }
            Error::Store(_) | Error::Unsupported(_) | Error::Engine(_) => serde_json::json!({}),
        }
    }
}
