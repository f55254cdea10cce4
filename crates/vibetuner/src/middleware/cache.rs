//! Cache headers for responses that depend on who asks: what a signed-in user sees is
//! `Cache-Control: private, no-store` (unless the handler chose), and every HTML response
//! varies on `HX-Request` (htmx requests get fragments and flash events, browsers whole pages).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, VARY};
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::user::LoadedUser;

/// Middleware (inside `auth::load_user`): the cache headers above.
pub(crate) async fn cache_headers(request: Request, next: Next) -> Response {
    let signed_in = LoadedUser::of(request.extensions()).is_some();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if signed_in && !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    }
    if headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"))
    {
        headers.append(VARY, HeaderValue::from_static("HX-Request"));
    }
    response
}
