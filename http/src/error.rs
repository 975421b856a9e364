//! The error body of every route.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use islets_core::kind::{Classify, ErrorKind, one_line};
use serde_json::{Value, json};

/// An error response: `{"error":{"code","message","details"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`invalid_parameter`, `not_found`, ...).
    pub code: &'static str,
    /// What went wrong and what to change, for people.
    pub message: String,
    /// Structured details (`{"field": "since"}`), an object.
    pub details: Value,
}

impl ApiError {
    /// An error with empty details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    /// An error of this kind, with the kind's status.
    pub fn of_kind(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(status_of(kind), code, message)
    }

    /// The same error with these details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// The body as JSON.
    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message, "details": self.details}})
    }
}

fn status_of(kind: ErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Any classified error becomes a response: client errors (4xx) say what is wrong, server
/// errors (5xx) say only that it failed, and their details go to the log.
impl<E: Classify + 'static> From<E> for ApiError {
    fn from(error: E) -> Self {
        let kind = error.kind();
        let code = error.code();
        if kind.is_client_error() {
            ApiError::of_kind(kind, code, error.to_string()).with_details(error.details())
        } else {
            tracing::error!(error = %one_line(&error), code, "request failed");
            ApiError::of_kind(kind, code, kind.public_message())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        (self.status, Json(body)).into_response()
    }
}

/// The fallback of every router.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Sample {
        #[error("since: not a time")]
        Bad,
        #[error("disk on fire at /secret/path")]
        Broken,
    }

    impl Classify for Sample {
        fn kind(&self) -> ErrorKind {
            match self {
                Sample::Bad => ErrorKind::Usage,
                Sample::Broken => ErrorKind::Internal,
            }
        }
        fn code(&self) -> &'static str {
            match self {
                Sample::Bad => "invalid_parameter",
                Sample::Broken => "internal",
            }
        }
        fn details(&self) -> Value {
            match self {
                Sample::Bad => json!({"field": "since"}),
                Sample::Broken => json!({}),
            }
        }
    }

    #[test]
    fn client_errors_say_what_is_wrong_and_server_errors_hide_their_details() {
        let bad = ApiError::from(Sample::Bad);
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            bad.body(),
            json!({"error": {"code": "invalid_parameter", "message": "since: not a time", "details": {"field": "since"}}})
        );
        let broken = ApiError::from(Sample::Broken);
        assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!broken.message.contains("/secret/path"));
        assert_eq!(broken.code, "internal");
    }
}
