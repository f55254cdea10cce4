//! One log line per request (method, path, request id, client, status, latency), with every
//! log line of the request carried in its span.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::context::AppContext;
use crate::security::ClientIp;

pub(crate) async fn access_log(
    State(ctx): State<AppContext>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // Resolved once per request here; the extractor and the session budget read it.
    let client = ClientIp::resolve(ctx.security(), peer, request.headers());
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        %request_id,
        client = %client.0
    );
    request.extensions_mut().insert(client);
    let response = next.run(request).instrument(span.clone()).await;
    let ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = ms,
            "response"
        )
    });
    response
}
