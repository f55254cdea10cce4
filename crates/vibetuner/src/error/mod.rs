//! The framework's error type: an HTTP status with a human-readable detail, and
//! [`HttpStatus`], by which every public error type of the framework says what a request
//! answers when a handler fails with it (`convert.rs` holds the one list). The middleware that
//! turns error responses into pages lives in `middleware::error_pages`.

mod convert;

use std::fmt;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// True when the client prefers HTML (a browser navigation or htmx), false for APIs.
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match (accept.find("text/html"), accept.find("application/json")) {
        (Some(html), Some(json)) => html < json,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Result type of handlers and framework calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An HTTP error with a human-readable detail.
///
/// 4xx details are shown to the client; 5xx details are logged and the client sees a generic message.
pub struct Error {
    status: StatusCode,
    detail: String,
    public: bool,
}

/// Marks a response as a framework error carrying its public detail.
#[derive(Clone, Debug)]
pub struct ErrorDetail(pub String);

impl Error {
    /// An error with any status and detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            public: false,
        }
    }

    /// 503 Service Unavailable whose `message` is meant for the client (say what to do); shown
    /// as is, unlike other 5xx details.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            public: true,
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found")
    }

    /// 400 Bad Request with a reason.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 422 Unprocessable Content with a reason.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 500 Internal Server Error; `detail` is logged, not shown.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail (for 5xx, the logged one).
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.detail)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a request answers when a handler fails with this error (through `?`), for the
/// framework's errors that mean something other than a 500: the status, and a detail (shown to
/// the client for 4xx, logged for 5xx).
///
/// ```
/// use vibetuner::axum::http::StatusCode;
/// use vibetuner::error::HttpStatus;
/// use vibetuner::store::StoreError;
///
/// let duplicate = StoreError::Duplicate { index: "email_unique".into() };
/// assert_eq!(duplicate.status(), StatusCode::CONFLICT);
/// ```
pub trait HttpStatus: std::error::Error {
    /// The status a request answers.
    fn status(&self) -> StatusCode;

    /// The detail; the error's text unless the type says otherwise.
    fn detail(&self) -> String {
        self.to_string()
    }

    /// The error as the framework's [`Error`].
    fn to_http(&self) -> Error {
        Error::new(self.status(), self.detail())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let public = if self.status.is_server_error() && !self.public {
            tracing::error!(status = self.status.as_u16(), detail = %self.detail, "request failed");
            self.status.canonical_reason().unwrap_or("Error").to_owned()
        } else {
            self.detail
        };
        let mut response = (
            self.status,
            axum::Json(serde_json::json!({ "detail": public })),
        )
            .into_response();
        response.extensions_mut().insert(ErrorDetail(public));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn html_preference_follows_accept_order() {
        let mut h = HeaderMap::new();
        assert!(!wants_html(&h), "no Accept means an API client");
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(wants_html(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/html"),
        );
        assert!(!wants_html(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!wants_html(&h));
    }

    #[test]
    fn server_errors_hide_their_detail() {
        let resp = Error::internal("db password wrong").into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let ErrorDetail(detail) = resp.extensions().get::<ErrorDetail>().unwrap();
        assert_eq!(detail, "Internal Server Error");
        let resp = Error::unprocessable("limit must be at most 100").into_response();
        let ErrorDetail(detail) = resp.extensions().get::<ErrorDetail>().unwrap();
        assert_eq!(detail, "limit must be at most 100");
    }
}
