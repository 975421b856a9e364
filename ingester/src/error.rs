//! The error type of `islets-ingester`.

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Ingester failures, by kind. `Config` and `Startup` happen before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the message says what to change.
    #[error("{0}")]
    Config(String),

    /// A dependency (store, queue, catalog) is not usable at start-up.
    #[error("{context}: {source}")]
    Startup {
        /// What was being set up.
        context: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A shared-library failure (catalog, encoding, object store).
    #[error(transparent)]
    Core(#[from] islets_core::Error),

    /// An SQS call failed.
    #[error("sqs {operation} failed: {message}")]
    Queue {
        /// The SQS operation.
        operation: &'static str,
        /// The SDK's error, in one line.
        message: String,
    },

    /// Reading the input or binding a socket failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read or bound.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Some buffered rows could not be made durable; their messages were not acknowledged.
    #[error("{0}")]
    Flush(String),
}

impl Error {
    /// Whether this is a configuration / start-up problem (exit code 2) rather than a
    /// failure while running (exit code 1).
    pub fn is_configuration(&self) -> bool {
        match self {
            Error::Config(_) | Error::Startup { .. } => true,
            Error::Core(core) => matches!(
                core,
                islets_core::Error::Catalog { .. } | islets_core::Error::Config(_)
            ),
            Error::Queue { .. } | Error::Io { .. } | Error::Flush(_) => false,
        }
    }
}
