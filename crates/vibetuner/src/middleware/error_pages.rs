//! Turns error responses that carry no body of their own (and every error for browsers) into
//! the app's error page, or `{"detail": ...}` JSON for API clients.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use minijinja::context;

use crate::auth::user::LoadedUser;
use crate::context::AppContext;
use crate::error::ErrorDetail;
use crate::render::{Renderer, RequestInfo};

/// Middleware: renders error responses that carry no body of their own as a page or JSON.
pub(crate) async fn error_pages(
    State(ctx): State<AppContext>,
    request: Request,
    next: Next,
) -> Response {
    let html = crate::error::wants_html(request.headers());
    let method = request.method().clone();
    let uri = request.uri().clone();
    let htmx = request.headers().get("hx-request").cloned();
    let request_id = request.headers().get("x-request-id").cloned();
    let theme = crate::render::theme_cookie(request.headers());
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
    info.theme = theme;
    let (mut head, body) = response.into_parts();
    // The page's header shows who is signed in (`load_user` hands the user back on errors).
    info.user = LoadedUser::of(&head.extensions).cloned();
    let detail = if let Some(ErrorDetail(detail)) = head.extensions.get::<ErrorDetail>() {
        if !html {
            return Response::from_parts(head, body);
        }
        detail.clone()
    } else if is_plain_or_empty(&head.headers) {
        framework_detail(status, body, ctx.settings().max_body_size).await
    } else {
        return Response::from_parts(head, body);
    };
    let (content_type, rendered) = if html {
        let page = render_error_page(ctx.renderer(), status, &detail, &info);
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
async fn framework_detail(status: StatusCode, body: Body, max_body_size: usize) -> String {
    match status {
        StatusCode::NOT_FOUND => return "Not Found".into(),
        StatusCode::PAYLOAD_TOO_LARGE => {
            return format!(
                "Request body is too large: the limit is {} bytes",
                max_body_size
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
