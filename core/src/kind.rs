//! The one error vocabulary of the workspace: every crate's error says which [`ErrorKind`]
//! it is, and that kind alone decides a binary's exit status and an HTTP response's status.
//!
//! Modelled on Quickwit's `ServiceErrorCode`: a small closed set, matched without a
//! wildcard, so a new kind forces every mapping to be looked at again.

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The input (a flag, a parameter, a file, a request body) is wrong; nothing was done.
    Usage,
    /// The thing asked for does not exist.
    NotFound,
    /// No valid credentials were presented.
    Unauthenticated,
    /// The credentials presented do not allow this.
    Forbidden,
    /// The request is well-formed but what it refers to changed or disagrees (a plan whose
    /// selection changed, a checkpoint of another run); nothing was done.
    Conflict,
    /// The input or the answer is larger than the documented limit.
    TooLarge,
    /// Too many requests or connections at once; retry later.
    TooManyRequests,
    /// The engine or mode in use cannot do this.
    Unsupported,
    /// A dependency (store, queue, topic, key) is not usable before anything was done:
    /// start-up or pre-flight checks failed, nothing was written or sent.
    Precondition,
    /// A dependency failed while work was under way; retrying later may succeed.
    Unavailable,
    /// The operation ran out of its time budget.
    Timeout,
    /// A bug or an unexpected failure of our own.
    Internal,
}

impl ErrorKind {
    /// The exit status a binary ends with: 2 when the run was refused before anything was
    /// done (fix the input and run again), 1 when it failed while running.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Usage
            | ErrorKind::NotFound
            | ErrorKind::Unauthenticated
            | ErrorKind::Forbidden
            | ErrorKind::Conflict
            | ErrorKind::TooLarge
            | ErrorKind::Unsupported
            | ErrorKind::Precondition => 2,
            ErrorKind::TooManyRequests
            | ErrorKind::Unavailable
            | ErrorKind::Timeout
            | ErrorKind::Internal => 1,
        }
    }

    /// The HTTP status of a response carrying an error of this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Usage => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::Internal => 500,
            ErrorKind::Unsupported => 501,
            ErrorKind::Precondition | ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
        }
    }

    /// Whether the message may be shown to a client as it is (4xx), or must be replaced
    /// by a generic one while the details go to the log (5xx).
    pub fn is_client_error(self) -> bool {
        self.http_status() < 500
    }

    /// The machine-readable code of an HTTP error body when the error names none.
    pub fn default_code(self) -> &'static str {
        match self {
            ErrorKind::Usage => "invalid_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unauthenticated => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Conflict => "conflict",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::TooManyRequests => "too_many_requests",
            ErrorKind::Unsupported => "not_supported",
            ErrorKind::Precondition | ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }

    /// What a client is told of a server-side failure (5xx), whose details stay in the log.
    pub fn public_message(self) -> &'static str {
        match self {
            ErrorKind::Precondition | ErrorKind::Unavailable => {
                "a dependency (the archive, a queue, AWS) cannot be reached right now; retry later"
            }
            ErrorKind::Timeout => "the request ran out of time",
            _ => "the request failed; the details are in the server log",
        }
    }
}

/// Implemented by every crate's error type.
pub trait Classify: std::error::Error {
    /// The kind of this failure.
    fn kind(&self) -> ErrorKind;

    /// The stable machine-readable code of an HTTP error body (`invalid_parameter`,
    /// `invalid_sql`, ...); by default the kind's.
    fn code(&self) -> &'static str {
        self.kind().default_code()
    }

    /// Structured details of an HTTP error body (`{"field": "since"}`); empty by default.
    fn details(&self) -> serde_json::Value {
        serde_json::Value::Object(serde_json::Map::new())
    }
}

/// An error and its causes on one line ("GetQueueUrl failed: service error:
/// AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist"), each
/// cause appended unless the text before already contains it. The AWS SDK's own `Display`
/// stops at "service error"; this is the one place that walks the chain for it.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle: inner")]
    struct Middle(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[test]
    fn one_line_appends_each_cause_once() {
        assert_eq!(one_line(&Outer(Middle(Inner))), "outer: middle: inner");
    }

    #[test]
    fn refusals_exit_2_and_failures_exit_1() {
        assert_eq!(ErrorKind::Usage.exit_code(), 2);
        assert_eq!(ErrorKind::Precondition.exit_code(), 2);
        assert_eq!(ErrorKind::Conflict.exit_code(), 2);
        assert_eq!(ErrorKind::Unavailable.exit_code(), 1);
        assert_eq!(ErrorKind::Internal.exit_code(), 1);
    }

    #[test]
    fn only_client_errors_show_their_message() {
        assert!(ErrorKind::Usage.is_client_error());
        assert!(ErrorKind::TooLarge.is_client_error());
        assert!(!ErrorKind::Unavailable.is_client_error());
        assert!(!ErrorKind::Internal.is_client_error());
    }
}
