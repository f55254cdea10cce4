//! The framework served in-process over real TCP: graceful shutdown, panics (which a generated
//! app has no route for), and the connection limits (header and keep-alive timeouts, global and
//! per-address caps).

use crate::support::SOURCE;
use std::path::Path;
use std::time::Duration;

use vibetuner::axum::routing::get;
use vibetuner::config::Source;
use vibetuner::{App, Settings};

/// Signalled when `/slow` starts handling a request.
static SLOW_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Counts the `/hold` requests whose handler runs.
static HOLDING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `/turn` handlers running now, and the signal that lets one of them finish.
static TURNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static END_TURN: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

fn app() -> App {
    App::new(SOURCE)
        .route(
            "/turn",
            get(|| async {
                TURNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                END_TURN.acquire().await.unwrap().forget();
                TURNS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                "turn"
            }),
        )
        .route("/quick", get(|| async { "quick" }))
        .route(
            "/slow",
            get(|| async {
                SLOW_STARTED.notify_one();
                tokio::time::sleep(Duration::from_millis(400)).await;
                "finished"
            }),
        )
        .route(
            "/hold",
            get(|| async {
                HOLDING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(5)).await;
                "held"
            }),
        )
        .route("/panic", get(|| async { panic!("boom") as &'static str }))
        .route(
            "/echo",
            axum::routing::post(|body: String| async move { body.len().to_string() }),
        )
        .route("/upgrade", get(upgrade))
        .route("/big", get(|| async { vec![b'x'; 32 << 20] }))
        .route(
            "/stuck",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "too late"
            }),
        )
}

/// Switches the connection to a line echo protocol (as a WebSocket handler would): the upgraded
/// stream outlives the HTTP connection that handed it over.
async fn upgrade(mut request: axum::extract::Request) -> axum::response::Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = io.read(&mut buf).await {
            if io.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    axum::response::Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(axum::body::Body::empty())
        .expect("a response")
}

async fn start(
    shutdown: tokio::sync::oneshot::Receiver<()>,
) -> (String, tokio::task::JoinHandle<anyhow::Result<()>>) {
    start_with(shutdown, &[]).await
}

async fn start_with(
    shutdown: tokio::sync::oneshot::Receiver<()>,
    settings: &[(&str, &str)],
) -> (String, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let data = tempfile::tempdir().unwrap();
    let mut pairs = vec![("DATA_DIR", data.path().to_str().unwrap())];
    pairs.extend_from_slice(settings);
    let settings = Settings::from_source(Source::from_pairs(pairs)).unwrap();
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

/// A connection to `base` from the loopback address `from` (127.0.0.2 is another client than
/// 127.0.0.1 on Linux).
async fn connect_from(base: &str, from: [u8; 4]) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    socket
        .connect(base.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap()
}

/// Sends a request line and one header, never the end of the headers.
async fn half_open(base: &str, from: [u8; 4]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = connect_from(base, from).await;
    stream
        .write_all(b"GET /health/ping HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    stream
}

/// Sends a whole `GET /hold` (its handler takes 5 s).
async fn holding(base: &str, from: [u8; 4]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = connect_from(base, from).await;
    stream
        .write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    stream
}

/// At the global cap, a new client takes the place of a connection that made no progress for a
/// second (unfinished headers, a body far below `BODY_MIN_RATE`), even while their own
/// timeouts have long to run: slow clients from many addresses cannot hold every place.
#[tokio::test]
async fn at_the_cap_new_clients_take_the_places_of_stalled_connections() {
    use tokio::io::AsyncWriteExt;
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start_with(
        rx,
        &[
            ("MAX_CONNECTIONS", "4"),
            ("HEADER_READ_TIMEOUT", "600"),
            ("BODY_READ_TIMEOUT", "600"),
        ],
    )
    .await;
    let mut stalled = Vec::new();
    for from in [[127, 0, 0, 3], [127, 0, 0, 4]] {
        stalled.push(half_open(&base, from).await);
        let mut body = connect_from(&base, from).await;
        body.write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n0123456789",
        )
        .await
        .unwrap();
        stalled.push(body);
    }
    // Fresh, they keep their places (from an address that holds some: a first connection
    // would wait for them to be stalled for a second).
    let status = ping_from(&base, [127, 0, 0, 3]).await;
    assert!(
        status.is_empty() || status == "HTTP/1.1 503 Service Unavailable",
        "{status:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Four clients whose requests are being handled: each takes the place of a stalled one.
    let before = HOLDING.load(std::sync::atomic::Ordering::SeqCst);
    let mut served = Vec::new();
    for _ in 0..4 {
        served.push(holding(&base, [127, 0, 0, 2]).await);
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        while HOLDING.load(std::sync::atomic::Ordering::SeqCst) < before + 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the four new clients are served");
    for stream in &mut stalled {
        until_closed(stream).await;
    }
    // Now every place is busy: the next client is refused.
    let status = ping_from(&base, [127, 0, 0, 2]).await;
    assert!(
        status.is_empty() || status == "HTTP/1.1 503 Service Unavailable",
        "{status:?}"
    );
}

/// The parser stays strict: headers over 64 KiB answer 431, a malformed header line or a
/// request line with doubled spaces answers 400; a request with large but ordinary headers
/// (a 16 KB cookie) is served.
#[tokio::test]
async fn oversized_and_malformed_request_heads_are_refused() {
    use tokio::io::AsyncWriteExt;
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start(rx).await;
    let big = format!("Cookie: a={}\r\n", "x".repeat(70_000));
    let fine = format!("Cookie: a={}\r\n", "x".repeat(16_000));
    for (head, expected) in [
        (
            format!("GET /health/ping HTTP/1.1\r\nHost: x\r\n{big}\r\n"),
            "HTTP/1.1 431",
        ),
        (
            "GET /health/ping HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n".to_owned(),
            "HTTP/1.1 400",
        ),
        (
            "GET  /health/ping HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
            "HTTP/1.1 400",
        ),
        (
            format!("GET /health/ping HTTP/1.1\r\nHost: x\r\n{fine}Connection: close\r\n\r\n"),
            "HTTP/1.1 200",
        ),
    ] {
        let mut stream = connect_from(&base, [127, 0, 0, 1]).await;
        let _ = stream.write_all(head.as_bytes()).await;
        let answer = until_closed(&mut stream).await;
        assert!(answer.starts_with(expected), "{expected}: {answer:.80}");
    }
}

/// Over `SEND_BUFFER_BUDGET` of response bytes waiting for their readers, a client that stopped
/// reading is dropped after a second, long before `SEND_TIMEOUT`; one that reads is served
/// whole meanwhile.
#[tokio::test]
async fn over_the_send_buffer_budget_clients_that_stopped_reading_are_dropped() {
    use tokio::io::AsyncWriteExt;
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start_with(
        rx,
        &[("SEND_TIMEOUT", "600"), ("SEND_BUFFER_BUDGET", "1048576")],
    )
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    let mut stalled = socket
        .connect(base.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // A reader served meanwhile: its 32 MiB arrive whole.
    let mut reader = connect_from(&base, [127, 0, 0, 1]).await;
    reader
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(until_closed(&mut reader).await.len() > 32 << 20);
    // The stalled one is closed within seconds (SEND_TIMEOUT is ten minutes).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = bytes_until_closed(&mut stalled, Duration::from_secs(20)).await;
    assert!(
        got < 32 << 20,
        "{got} bytes: the stalled response was not dropped"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// How many bytes arrive until the server closes the connection; panics when it is still open
/// after `wait`.
async fn bytes_until_closed(stream: &mut tokio::net::TcpStream, wait: Duration) -> usize {
    use tokio::io::AsyncReadExt;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await
    .expect("the server closed the connection");
    got
}

/// Everything the server sends until it closes the connection (an error counts as closed).
async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closed the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /health/ping` from `from` on a fresh connection: the status line.
async fn ping_from(base: &str, from: [u8; 4]) -> String {
    status_within(base, from, "/health/ping", Duration::from_secs(60))
        .await
        .unwrap_or_default()
}

#[tokio::test]
async fn unfinished_headers_and_idle_keep_alive_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start_with(
        rx,
        &[("HEADER_READ_TIMEOUT", "1"), ("KEEPALIVE_TIMEOUT", "1")],
    )
    .await;
    let mut slow = half_open(&base, [127, 0, 0, 1]).await;
    assert_eq!(
        until_closed(&mut slow).await,
        "",
        "closed without an answer"
    );

    let mut silent = connect_from(&base, [127, 0, 0, 1]).await;
    assert_eq!(
        until_closed(&mut silent).await,
        "",
        "a silent connection too"
    );

    let mut idle = connect_from(&base, [127, 0, 0, 1]).await;
    idle.write_all(b"GET /health/ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let rest = until_closed(&mut idle).await;
    assert!(
        rest.ends_with("pong") || rest.contains("\r\n\r\n"),
        "the answer, then the idle connection is closed: {rest:?}"
    );
}

#[tokio::test]
async fn a_request_body_that_stalls_is_refused_and_its_connection_closed() {
    use tokio::io::AsyncWriteExt;
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start_with(rx, &[("BODY_READ_TIMEOUT", "1")]).await;
    let mut stream = connect_from(&base, [127, 0, 0, 1]).await;
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nten bytes.")
        .await
        .unwrap();
    let answer = until_closed(&mut stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("timeout"),
        "refused with the reason: {answer}"
    );

    let mut whole = connect_from(&base, [127, 0, 0, 1]).await;
    whole
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        .await
        .unwrap();
    let answer = until_closed(&mut whole).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\n5"),
        "{answer}"
    );
}

#[tokio::test]
async fn the_per_address_cap_refuses_extra_connections_and_others_are_served() {
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start_with(
        rx,
        &[
            ("MAX_CONNECTIONS_PER_IP", "3"),
            ("TRUSTED_PROXIES", ""),
            ("HEADER_READ_TIMEOUT", "600"),
        ],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(half_open(&base, [127, 0, 0, 1]).await);
    }
    let mut extra = half_open(&base, [127, 0, 0, 1]).await;
    let refused = until_closed(&mut extra).await;
    assert!(
        refused.is_empty() || refused.starts_with("HTTP/1.1 503"),
        "refused: {refused:?}"
    );
    assert_eq!(ping_from(&base, [127, 0, 0, 2]).await, "HTTP/1.1 200 OK");
    drop(held.pop());
    // The freed slot is reused once the server has seen the close.
    let mut status = String::new();
    for _ in 0..100 {
        status = ping_from(&base, [127, 0, 0, 1]).await;
        if status == "HTTP/1.1 200 OK" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, "HTTP/1.1 200 OK");
}

/// An upgraded connection keeps its place under the per-address cap until it closes.
#[tokio::test]
async fn upgraded_connections_count_against_the_caps_until_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start_with(
        rx,
        &[("MAX_CONNECTIONS_PER_IP", "2"), ("TRUSTED_PROXIES", "")],
    )
    .await;
    let mut upgraded = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_from(&base, [127, 0, 0, 1]).await;
        stream
            .write_all(
                b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
            )
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(
                stream.read(&mut byte).await.unwrap(),
                1,
                "closed before the 101"
            );
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        stream.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        stream.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
        upgraded.push(stream);
    }
    let status = ping_from(&base, [127, 0, 0, 1]).await;
    assert!(
        status.is_empty() || status == "HTTP/1.1 503 Service Unavailable",
        "two upgraded connections fill a cap of two: {status:?}"
    );
    assert_eq!(ping_from(&base, [127, 0, 0, 2]).await, "HTTP/1.1 200 OK");
    drop(upgraded.pop());
    let mut status = String::new();
    for _ in 0..100 {
        status = ping_from(&base, [127, 0, 0, 1]).await;
        if status == "HTTP/1.1 200 OK" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status, "HTTP/1.1 200 OK",
        "a closed upgraded connection frees its place"
    );
}

#[tokio::test]
async fn trusted_proxies_are_exempt_from_the_per_address_cap_but_not_from_the_global_one() {
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start_with(
        rx,
        &[
            ("MAX_CONNECTIONS_PER_IP", "1"),
            ("MAX_CONNECTIONS", "3"),
            ("HEADER_READ_TIMEOUT", "600"),
        ],
    )
    .await;
    // Requests being handled: never evicted to make room.
    let before = HOLDING.load(std::sync::atomic::Ordering::SeqCst);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(holding(&base, [127, 0, 0, 1]).await);
    }
    assert_eq!(
        ping_from(&base, [127, 0, 0, 1]).await,
        "HTTP/1.1 200 OK",
        "127.0.0.1 is a trusted proxy by default"
    );
    held.push(holding(&base, [127, 0, 0, 1]).await);
    while HOLDING.load(std::sync::atomic::Ordering::SeqCst) < before + 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = ping_from(&base, [127, 0, 0, 2]).await;
    assert!(
        status.is_empty() || status == "HTTP/1.1 503 Service Unavailable",
        "MAX_CONNECTIONS reached: {status:?}"
    );
}

#[tokio::test]
async fn a_body_trickling_below_the_minimum_rate_is_refused() {
    use tokio::io::AsyncWriteExt;
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) =
        start_with(rx, &[("BODY_READ_TIMEOUT", "2"), ("BODY_MIN_RATE", "1000")]).await;
    let stream = connect_from(&base, [127, 0, 0, 1]).await;
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    // A byte a second: each pause is within BODY_READ_TIMEOUT, the average far below the rate.
    let trickle = tokio::spawn(async move {
        for _ in 0..60 {
            if writer.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        use tokio::io::AsyncReadExt;
        let _ = reader.read_to_end(&mut answer).await;
    })
    .await
    .expect("the server closed the connection");
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("BODY_MIN_RATE"),
        "refused with the reason: {answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_its_response_is_dropped() {
    use tokio::io::AsyncWriteExt;
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start_with(rx, &[("SEND_TIMEOUT", "1")]).await;
    // A small receive window, as a slow client's would be: the server's writes soon wait.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    let mut stream = socket
        .connect(base.trim_start_matches("http://").parse().unwrap())
        .await
        .unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Not reading: the server's writes wait on full socket buffers.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = bytes_until_closed(&mut stream, Duration::from_secs(30)).await;
    assert!(
        got < 32 << 20,
        "the whole 32 MiB arrived ({got} bytes): the stalled response was not dropped"
    );
}

#[tokio::test]
async fn a_handler_slower_than_the_request_timeout_answers_503() {
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start_with(rx, &[("REQUEST_TIMEOUT", "1")]).await;
    let started = std::time::Instant::now();
    let (status, body) = get_text(format!("{base}/stuck")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("REQUEST_TIMEOUT"), "{body}");
    assert!(started.elapsed() < Duration::from_millis(2500));
    let (status, _) = get_text(format!("{base}/slow")).await;
    assert_eq!(status, 200, "a handler within the limit answers");
}

/// Framing a front proxy might read differently from hyper is refused, not guessed at.
#[tokio::test]
async fn ambiguous_request_framing_is_refused() {
    use tokio::io::AsyncWriteExt;
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start(rx).await;
    for request in [
        // hyper reads this as chunked; a proxy may not.
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut stream = connect_from(&base, [127, 0, 0, 1]).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = until_closed(&mut stream).await;
        assert!(
            answer.starts_with("HTTP/1.1 400") && answer.contains("Transfer-Encoding"),
            "{request:?}: {answer}"
        );
    }
    let mut chunked = connect_from(&base, [127, 0, 0, 1]).await;
    chunked
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut chunked).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("5"),
        "{answer}"
    );
}

/// Sends `GET {path}` from `from` and reads the answer's status line, within `wait`; `None`
/// when no answer came in time.
async fn status_within(base: &str, from: [u8; 4], path: &str, wait: Duration) -> Option<String> {
    use tokio::io::AsyncWriteExt;
    let mut stream = connect_from(base, from).await;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let answer = tokio::time::timeout(wait, until_closed(&mut stream))
        .await
        .ok()?;
    Some(answer.lines().next().unwrap_or_default().to_owned())
}

/// Waits (up to 10 s) until `n` `/turn` handlers run.
async fn turns_running(n: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while TURNS.load(std::sync::atomic::Ordering::SeqCst) != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} /turn handlers never ran at once"));
}

/// One client has at most `REQUESTS_PER_CLIENT` requests in its handlers: its next request waits
/// for one of them to finish while another client's is answered at once; past the waiting line
/// its requests answer 429.
#[tokio::test]
async fn each_client_has_its_share_of_the_handlers() {
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start_with(
        rx,
        &[
            ("REQUESTS_PER_CLIENT", "2"),
            ("MAX_CONNECTIONS_PER_IP", "500"),
        ],
    )
    .await;
    let busy = [127, 0, 0, 3];
    let mut turns = Vec::new();
    for _ in 0..2 {
        let base = base.clone();
        turns.push(tokio::spawn(async move {
            status_within(&base, busy, "/turn", Duration::from_secs(60)).await
        }));
    }
    turns_running(2).await;
    // The busy client's third request waits its turn; another client's does not.
    let waiting = {
        let base = base.clone();
        tokio::spawn(
            async move { status_within(&base, busy, "/quick", Duration::from_secs(60)).await },
        )
    };
    assert_eq!(
        status_within(&base, [127, 0, 0, 4], "/quick", Duration::from_secs(10))
            .await
            .as_deref(),
        Some("HTTP/1.1 200 OK"),
        "another client waited"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the busy client's third request ran beside its two"
    );
    END_TURN.add_permits(1);
    assert_eq!(
        waiting.await.unwrap().as_deref(),
        Some("HTTP/1.1 200 OK"),
        "its turn came when one of the two finished"
    );
    // Two running again (one old, one new), then a waiting line of 100: the next is refused.
    let base2 = base.clone();
    turns.push(tokio::spawn(async move {
        status_within(&base2, busy, "/turn", Duration::from_secs(60)).await
    }));
    turns_running(2).await;
    // 110 more requests: a waiting line of 100, the other ten refused at once.
    let mut line = Vec::new();
    for _ in 0..110 {
        let base = base.clone();
        line.push(tokio::spawn(async move {
            status_within(&base, busy, "/quick", Duration::from_secs(60)).await
        }));
    }
    tokio::time::timeout(Duration::from_secs(20), async {
        while line.iter().filter(|t| t.is_finished()).count() < 10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("ten requests past the waiting line are answered at once");
    END_TURN.add_permits(2);
    for turn in turns {
        assert_eq!(turn.await.unwrap().as_deref(), Some("HTTP/1.1 200 OK"));
    }
    let mut statuses = std::collections::BTreeMap::new();
    for waiting in line {
        *statuses.entry(waiting.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        [
            (Some("HTTP/1.1 200 OK".to_owned()), 100),
            (Some("HTTP/1.1 429 Too Many Requests".to_owned()), 10)
        ]
        .into(),
    );
}

/// A connection accepted just before the server stops (as when `vibetuner dev` hands its socket
/// to a fresh build) gets its request answered rather than closed unanswered; one that sends
/// nothing is closed after the grace, and the server stops.
#[tokio::test]
async fn a_request_sent_on_a_connection_accepted_before_the_stop_is_answered() {
    use tokio::io::AsyncWriteExt;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (base, server) = start(rx).await;
    // Served once, so the connections below are accepted by a running loop.
    assert_eq!(
        status_within(&base, [127, 0, 0, 1], "/quick", Duration::from_secs(10))
            .await
            .as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    let mut late = connect_from(&base, [127, 0, 0, 1]).await;
    let mut silent = connect_from(&base, [127, 0, 0, 1]).await;
    // Accepted: a ping on a third connection is answered after both were queued.
    assert_eq!(
        status_within(
            &base,
            [127, 0, 0, 1],
            "/health/ping",
            Duration::from_secs(10)
        )
        .await
        .as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    late.write_all(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut late).await;
    assert!(
        answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("quick"),
        "{answer:?}"
    );
    assert!(until_closed(&mut silent).await.is_empty());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

/// At the cap with every place held by connections too fresh to evict, an address's first
/// connection waits until one of them has been stalled for a second and takes its place, where
/// another connection from an address that holds places is refused at once.
#[tokio::test]
async fn a_new_visitor_at_the_cap_waits_for_a_place_to_go_stale() {
    let (_tx, rx) = tokio::sync::oneshot::channel();
    let (base, _server) = start_with(
        rx,
        &[("MAX_CONNECTIONS", "2"), ("HEADER_READ_TIMEOUT", "600")],
    )
    .await;
    let _held = [
        half_open(&base, [127, 0, 0, 3]).await,
        half_open(&base, [127, 0, 0, 3]).await,
    ];
    // The cap is reached once a third connection from that address is refused.
    tokio::time::timeout(Duration::from_secs(10), async {
        while ping_from(&base, [127, 0, 0, 3]).await != "HTTP/1.1 503 Service Unavailable" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the two connections fill the cap");
    let started = std::time::Instant::now();
    assert_eq!(ping_from(&base, [127, 0, 0, 2]).await, "HTTP/1.1 200 OK");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
