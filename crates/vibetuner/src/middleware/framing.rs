//! Request framing that hyper accepts but a proxy in front may read differently, refused with
//! 400: a `Transfer-Encoding` other than `chunked` alone (`identity, chunked` is chunked to
//! hyper, maybe not to the proxy). Disagreeing about where a request ends is how requests are
//! smuggled past a proxy. (With `Content-Length` too, hyper reads the chunks and drops the
//! length before any middleware sees it, as RFC 9112 section 6.3 allows.)

use axum::extract::Request;
use axum::http::header::TRANSFER_ENCODING;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;

/// Middleware: the refusals above.
pub(crate) async fn unambiguous_framing(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let encodings: Vec<&[u8]> = headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if !encodings.is_empty() {
        let chunked_alone =
            encodings.len() == 1 && encodings[0].trim_ascii().eq_ignore_ascii_case(b"chunked");
        if !chunked_alone {
            return Error::bad_request("Transfer-Encoding must be `chunked` alone").into_response();
        }
    }
    next.run(request).await
}
