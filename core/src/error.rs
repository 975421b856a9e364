//! The error type of `islets-core`.

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the shared library. Callers match on the variant
/// (a small, stable set of kinds); the source chain is kept for the logs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The events catalog could not be read or is malformed; the message names the file
    /// and the path inside it.
    #[error("events catalog: {message}")]
    Catalog {
        /// What is wrong, naming the file and the path inside it.
        message: String,
    },

    /// A store URI or another configuration value is not usable.
    #[error("{0}")]
    Config(String),

    /// The object-store operation (`put`, `get`, `list`, ...).
    /// Reading or writing the object store failed.
    #[error("object store {operation} failed for {location}")]
    Store {
        /// The object-store operation (`put`, `get`, `list`, ...).
        operation: &'static str,
        /// The object or prefix.
        location: String,
        /// The object store's error.
        #[source]
        source: object_store::Error,
    },

    /// Arrow or Parquet encoding/decoding failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    /// Building Arrow arrays failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),

    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn catalog(message: impl Into<String>) -> Self {
        Error::Catalog {
            message: message.into(),
        }
    }
}

impl crate::kind::Classify for Error {
    fn kind(&self) -> crate::kind::ErrorKind {
        use crate::kind::ErrorKind;
        match self {
            Error::Catalog { .. } | Error::Config(_) | Error::Io { .. } => ErrorKind::Usage,
            Error::Store { .. } => ErrorKind::Unavailable,
            Error::Parquet(_) | Error::Arrow(_) => ErrorKind::Internal,
        }
    }
}
