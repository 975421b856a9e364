//! The errors of sealing and proving.

use std::path::PathBuf;

use islets_core::kind::{Classify, ErrorKind};

/// A `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Why sealing, signing or checking a proof failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A signing key file cannot be read, created or used.
    #[error("signing key {path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A proof, checkpoint or manifest is not what it claims (malformed, or it does not
    /// verify); the message says which part.
    #[error("{0}")]
    Invalid(String),
    /// What a proof was asked for is not sealed (yet): the event is unknown, or its hour
    /// has not been sealed since it arrived.
    #[error("{0}")]
    NotSealed(String),
    /// The archive could not be read or written.
    #[error(transparent)]
    Core(#[from] islets_core::Error),
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Key { .. } => ErrorKind::Precondition,
            Error::Invalid(_) => ErrorKind::Conflict,
            Error::NotSealed(_) => ErrorKind::NotFound,
            Error::Core(error) => error.kind(),
        }
    }
}
