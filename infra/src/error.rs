//! The error type of `islets-infra`.

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Provisioning failures, by kind. `Config`, `Catalog` and `Preflight` happen before the
/// first write: nothing was created or changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag's value is not usable; the message names the flag and says what to change.
    #[error("{0}")]
    Config(String),

    /// The events catalog could not be loaded (the message names the file).
    #[error(transparent)]
    Catalog(islets_core::Error),

    /// Reading the current state before any change failed (credentials, region, endpoint,
    /// permissions).
    #[error("{context}: {message} (nothing was changed)")]
    Preflight {
        /// What was being read.
        context: String,
        /// Why it failed.
        message: String,
    },

    /// An AWS call failed while changes were being applied. Changes made before it stay;
    /// provisioning is idempotent, so a second run continues where this one stopped.
    #[error(
        "{operation} failed: {message} (changes before this one were applied; fix the cause and run provision again)"
    )]
    Aws {
        /// The AWS operation.
        operation: String,
        /// The SDK's error, in one line.
        message: String,
    },
}

impl Error {
    /// Whether the failure happened before anything was changed (exit status 2) rather
    /// than while applying changes (exit status 1).
    pub fn is_configuration(&self) -> bool {
        match self {
            Error::Config(_) | Error::Catalog(_) | Error::Preflight { .. } => true,
            Error::Aws { .. } => false,
        }
    }
}

/// The message of an SDK error with its causes ("service error: NotFoundException: Key
/// ... does not exist"): the SDK's own `Display` stops at "service error".
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// An `Error::Aws` for a failed write (or a read between writes).
pub(crate) fn aws(
    operation: impl Into<String>,
    error: &(dyn std::error::Error + 'static),
) -> Error {
    Error::Aws {
        operation: operation.into(),
        message: describe(error),
    }
}

/// An `Error::Preflight` for a failed read before any write.
pub(crate) fn preflight(
    context: impl Into<String>,
    error: &(dyn std::error::Error + 'static),
) -> Error {
    Error::Preflight {
        context: context.into(),
        message: describe(error),
    }
}
