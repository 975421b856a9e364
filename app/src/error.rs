//! The error of the umbrella commands.

use islets_core::kind::{Classify, ErrorKind};

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag's value is not usable; the message names the flag.
    #[error("{0}")]
    Usage(String),

    /// The catalog, the store or an encoding failed.
    #[error(transparent)]
    Core(#[from] islets_core::Error),

    /// A local file or directory could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The ingester refused or failed.
    #[error(transparent)]
    Ingest(#[from] islets_ingester::Error),

    /// The query server refused or failed.
    #[error(transparent)]
    Query(#[from] islets_api::ServeError),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Usage(_) => ErrorKind::Usage,
            Error::Core(error) => error.kind(),
            Error::Io { .. } => ErrorKind::Internal,
            Error::Ingest(error) => ingester_kind(error),
            Error::Query(error) => error.kind(),
        }
    }
}

/// The ingester's own classification (until its error implements `Classify`).
fn ingester_kind(error: &islets_ingester::Error) -> ErrorKind {
    if error.is_configuration() {
        ErrorKind::Usage
    } else {
        ErrorKind::Internal
    }
}
