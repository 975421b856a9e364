//! The error type of `islets-replay`.

/// Result alias used across the crate.
pub type Result<T, E = ReplayError> = std::result::Result<T, E>;

/// Why a replay did not run, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A flag or a file given is wrong; nothing was sent (exit 2).
    #[error("{0}")]
    Usage(String),

    /// The target cannot be used (missing, unreachable, not allowed); nothing was sent
    /// (exit 2).
    #[error("{0}")]
    Target(String),

    /// The selection no longer matches the plan being executed; nothing was sent (exit 2).
    #[error("{0}")]
    PlanMismatch(String),

    /// The archive could not be read.
    #[error("cannot read the archive: {0}")]
    Query(#[source] islets_query::Error),

    /// Archive files the selection covers cannot be read: replaying would silently skip
    /// their events, so nothing is sent (exit 1).
    #[error(
        "{} archive files the selection covers cannot be read, so the replay would miss their events; nothing was sent. Repair or restore them (see the query server's /readyz), or narrow the selection: {}",
        .0.len(),
        .0.join(", ")
    )]
    Unreadable(Vec<String>),

    /// The store (ledger, checkpoint in the store) failed.
    #[error("{0}")]
    Store(#[source] islets_core::Error),

    /// A local file (plan, report, checkpoint, output) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the flag or file.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Sending failed in a way retries cannot fix (the target went away, access denied).
    #[error("{0}")]
    Send(String),
}

impl ReplayError {
    /// The process exit code: 2 when nothing was sent because the input was wrong.
    pub fn exit_code(&self) -> u8 {
        match self {
            ReplayError::Usage(_) | ReplayError::Target(_) | ReplayError::PlanMismatch(_) => 2,
            _ => 1,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| ReplayError::Io { context, source }
    }
}
