//! The framework served in-process: graceful shutdown and panics, which a generated app
//! has no route for.

use std::path::Path;
use std::time::Duration;

use vibetuner::axum::routing::get;
use vibetuner::config::Source;
use vibetuner::{App, ProjectSource, Settings};

const SOURCE: ProjectSource = ProjectSource {
    answers: include_str!("fixture/vibetuner.toml"),
    version: "1.2.3",
    manifest_dir: env!("CARGO_MANIFEST_DIR"),
};

/// Signalled when `/slow` starts handling a request.
static SLOW_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

fn app() -> App {
    App::new(SOURCE)
        .route(
            "/slow",
            get(|| async {
                SLOW_STARTED.notify_one();
                tokio::time::sleep(Duration::from_millis(400)).await;
                "finished"
            }),
        )
        .route("/panic", get(|| async { panic!("boom") as &'static str }))
}

async fn start(
    shutdown: tokio::sync::oneshot::Receiver<()>,
) -> (String, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let data = tempfile::tempdir().unwrap();
    let settings = Settings::from_source(Source::from_pairs([(
        "DATA_DIR",
        data.path().to_str().unwrap(),
    )]))
    .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    let server = tokio::spawn(async move {
        let _data = data;
        app()
            .serve(listener, settings, &root, async {
                let _ = shutdown.await;
            })
            .await
    });
    (base, server)
}

async fn get_text(url: String) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(
        url.trim_start_matches("http://").split('/').next().unwrap(),
    )
    .await
    .unwrap();
    let path = format!(
        "/{}",
        url.trim_start_matches("http://").split_once('/').unwrap().1
    );
    let (mut reader, mut writer) = stream.into_split();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    writer
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    reader.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (base, server) = start(rx).await;
    let in_flight = tokio::spawn(get_text(format!("{base}/slow")));
    tokio::time::timeout(Duration::from_secs(30), SLOW_STARTED.notified())
        .await
        .expect("the slow request reached its handler");
    tx.send(()).unwrap();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "finished"));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops after the request")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn a_panicking_handler_answers_500_without_leaking_the_message() {
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start(rx).await;
    let (status, body) = get_text(format!("{base}/panic")).await;
    assert_eq!(status, 500);
    assert_eq!(body, r#"{"detail":"Internal Server Error"}"#);
    let (status, _) = get_text(format!("{base}/health/ping")).await;
    assert_eq!(status, 200, "the server survives");
}
