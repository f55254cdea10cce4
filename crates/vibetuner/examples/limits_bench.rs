//! The server `scripts/bench-limits.sh` measures: the framework's routes, an SSE channel at
//! `/events` and `GET /broadcast/{bytes}` that broadcasts an event of that size to it.
//! Settings come from the environment; `PORT` selects the port.

use std::path::Path;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use vibetuner::axum::extract::Path as UrlPath;
use vibetuner::axum::routing::get;
use vibetuner::{App, Broadcaster, ProjectSource, Settings};

const SOURCE: ProjectSource = ProjectSource {
    answers: include_str!("../tests/fixture/vibetuner.toml"),
    version: "0.0.0",
    manifest_dir: env!("CARGO_MANIFEST_DIR"),
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    let settings = Settings::load(&root)?;
    let filter: tracing_subscriber::filter::Targets = settings.log_level.parse()?;
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer())
        .init();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", settings.port)).await?;
    App::new(SOURCE)
        .sse("/events", "bench")
        .route(
            "/broadcast/{bytes}",
            get(
                |b: Broadcaster, UrlPath(bytes): UrlPath<usize>| async move {
                    b.broadcast("bench", "message", "x".repeat(bytes)).await
                },
            ),
        )
        .serve(listener, settings, &root, vibetuner::app::shutdown_signal())
        .await
}
