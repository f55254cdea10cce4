//! The framework's error type and the middleware that turns error responses into
//! HTML pages (for browsers) or `{"detail": ...}` JSON (for everything else).

use std::fmt;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use minijinja::context;

use crate::render::{Renderer, RequestInfo};

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

/// The `T` a framework layer put in the request's extensions, or a 500 saying `what` is missing.
pub(crate) fn from_extensions<T: Clone + Send + Sync + 'static>(
    parts: &axum::http::request::Parts,
    what: &str,
) -> Result<T, Error> {
    parts
        .extensions
        .get::<T>()
        .cloned()
        .ok_or_else(|| Error::internal(format!("{what} is not installed on this router")))
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

impl<E: Into<anyhow::Error>> From<E> for Error {
    /// Store failures keep their meaning (409 duplicate, 422 invalid); anything else is a 500.
    fn from(err: E) -> Self {
        let err = err.into();
        match err.downcast_ref::<crate::store::StoreError>() {
            Some(store) => store.to_http(),
            None => Self::internal(format!("{err:#}")),
        }
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

/// What the error-page middleware needs.
#[derive(Clone)]
pub struct ErrorPages {
    /// Renders the HTML pages.
    pub renderer: Arc<Renderer>,
    /// The body limit, quoted in 413 messages.
    pub max_body_size: usize,
}

/// True when the client prefers HTML (a browser navigation or htmx), false for APIs.
pub fn wants_html(headers: &HeaderMap) -> bool {
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

/// Middleware: renders error responses that carry no body of their own as a page or JSON.
pub async fn error_pages(
    axum::extract::State(pages): axum::extract::State<ErrorPages>,
    request: Request,
    next: Next,
) -> Response {
    let html = wants_html(request.headers());
    let method = request.method().clone();
    let uri = request.uri().clone();
    let htmx = request.headers().get("hx-request").cloned();
    let request_id = request.headers().get("x-request-id").cloned();
    let nonce = request
        .extensions()
        .get::<crate::security::CspNonce>()
        .cloned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let mut info = RequestInfo::new(&method, &uri, htmx.as_ref(), request_id.as_ref());
    info.csp_nonce = nonce.map(|n| n.0.to_string()).unwrap_or_default();
    let (mut head, body) = response.into_parts();
    // The page's header shows who is signed in (`load_user` hands the user back on errors).
    info.user = head
        .extensions
        .get::<crate::auth::LoadedUser>()
        .and_then(|u| u.0.clone());
    let detail = if let Some(ErrorDetail(detail)) = head.extensions.get::<ErrorDetail>() {
        if !html {
            return Response::from_parts(head, body);
        }
        detail.clone()
    } else if is_plain_or_empty(&head.headers) {
        framework_detail(status, body, &pages).await
    } else {
        return Response::from_parts(head, body);
    };
    let (content_type, rendered) = if html {
        let page = render_error_page(&pages.renderer, status, &detail, &info);
        ("text/html; charset=utf-8", page)
    } else {
        let json = serde_json::json!({ "detail": detail }).to_string();
        ("application/json", json)
    };
    head.headers.remove(header::CONTENT_LENGTH);
    head.headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    head.extensions.insert(ErrorDetail(detail));
    Response::from_parts(head, Body::from(rendered))
}

fn is_plain_or_empty(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("text/plain"))
}

/// A readable detail for responses produced by axum, tower-http or a panic.
async fn framework_detail(status: StatusCode, body: Body, pages: &ErrorPages) -> String {
    match status {
        StatusCode::NOT_FOUND => return "Not Found".into(),
        StatusCode::PAYLOAD_TOO_LARGE => {
            return format!(
                "Request body is too large: the limit is {} bytes",
                pages.max_body_size
            );
        }
        s if s.is_server_error() => return s.canonical_reason().unwrap_or("Error").into(),
        _ => {}
    }
    let bytes = http_body_util::Limited::new(body, 4096)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    if text.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_owned()
    } else {
        text
    }
}

fn render_error_page(
    renderer: &Renderer,
    status: StatusCode,
    detail: &str,
    info: &RequestInfo,
) -> String {
    let specific = format!("errors/{}.html.jinja", status.as_u16());
    let name = if renderer.has_template(&specific) {
        specific
    } else {
        "errors/error.html.jinja".to_owned()
    };
    let ctx = context! {
        status_code => status.as_u16(),
        title => status.canonical_reason().unwrap_or("Error"),
        detail => detail,
    };
    renderer.render(&name, Some(info), ctx).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render the error page");
        format!(
            "<!DOCTYPE html><title>{0}</title><h1>{0}</h1>",
            status.as_u16()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
