//! The handler deadline: a response not produced within `REQUEST_TIMEOUT` answers 503 saying
//! so (its handler is dropped). A streamed body, once its head is sent, is not counted: slow
//! readers are the connection's business (`SEND_TIMEOUT`).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Error;

/// Middleware: runs the rest of the stack within `limit`.
pub(crate) async fn request_deadline(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Error::unavailable(format!(
            "The server took longer than {} s to answer (REQUEST_TIMEOUT); try again later",
            limit.as_secs()
        ))
        .into_response(),
    }
}
