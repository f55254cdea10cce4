//! Benchmark baseline: a bare axum server answering `/health/ping` like the framework does,
//! with no middleware. Usage: `bare_axum PORT`.

use axum::routing::get;
use axum::{Json, Router};

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8000);
    let app = Router::new().route(
        "/health/ping",
        get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
