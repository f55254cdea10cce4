//! SSE endpoints in-process: headers, keepalive, channel validation, `Last-Event-ID` replay
//! (in-process and through Redis), and Redis fan-out between two apps delivering once.

use crate::support;
use crate::support::SOURCE;
use std::path::Path;
use std::time::Duration;

use http_body_util::BodyExt;
use tower::ServiceExt;
use vibetuner::axum::body::Body;
use vibetuner::axum::extract::Path as UrlPath;
use vibetuner::axum::http::Request;
use vibetuner::axum::routing::get;
use vibetuner::config::Source;
use vibetuner::{App, BuiltApp, Settings, Sse, SseEvent};

use crate::support::{redis_url, unique_name};

fn app() -> App {
    App::new(SOURCE)
        .sse("/events", "news")
        .route(
            "/rooms/{room}/events",
            get(|sse: Sse, UrlPath(room): UrlPath<String>| async move { sse.channel(&room).await }),
        )
        .route(
            "/countdown",
            get(|sse: Sse| async move {
                sse.stream(futures_util::stream::iter(
                    ["3", "2", "1"].map(|n| SseEvent::new("count", n)),
                ))
            }),
        )
}

async fn build(redis_prefix: Option<&str>) -> (BuiltApp, tempfile::TempDir) {
    build_with(redis_prefix, &[]).await
}

async fn build_with(
    redis_prefix: Option<&str>,
    extra: &[(&str, &str)],
) -> (BuiltApp, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut pairs = vec![
        ("DATA_DIR".to_owned(), data.path().display().to_string()),
        ("SSE_KEEPALIVE".into(), "1".into()),
        ("SSE_BUFFER_SIZE".into(), "10".into()),
    ];
    pairs.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    if let Some(prefix) = redis_prefix {
        pairs.push(("REDIS_URL".into(), redis_url()));
        pairs.push(("REDIS_KEY_PREFIX".into(), format!("{prefix}:")));
    }
    let settings = Settings::from_source(Source::from_pairs(pairs)).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    (app().build(settings, &root).await.unwrap(), data)
}

async fn open(
    built: &BuiltApp,
    path: &str,
    last_event_id: Option<&str>,
) -> axum::response::Response {
    let mut request = Request::get(path);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    built
        .router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// Reads the stream until `done` holds for what was read (10 s at most).
async fn read_until(body: &mut Body, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done(&text) {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        text.push_str(&String::from_utf8_lossy(data));
                    }
                }
                _ => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("stream did not deliver in time; got {text:?}"));
    text
}

#[tokio::test]
async fn headers_keepalive_and_handler_streams() {
    let (built, _data) = build(None).await;
    let response = open(&built, "/events", None).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    let mut body = response.into_body();
    let text = read_until(&mut body, |t| t.contains(": keepalive\n\n")).await;
    assert!(text.starts_with(": keepalive"), "{text:?}");

    let response = open(&built, "/countdown", None).await;
    let text = read_until(&mut response.into_body(), |t| {
        t.matches("data:").count() == 3
    })
    .await;
    assert_eq!(
        text,
        "data: 3\nevent: count\n\ndata: 2\nevent: count\n\ndata: 1\nevent: count\n\n"
    );
}

#[tokio::test]
async fn invalid_channel_names_are_rejected_with_the_reason() {
    let (built, _data) = build(None).await;
    let response = open(&built, "/rooms/bad%20name/events", None).await;
    assert_eq!(response.status(), 400);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("invalid SSE channel name") && text.contains("A-Z a-z 0-9 - : _ ."),
        "{text}"
    );
    let ok = open(&built, "/rooms/room:1.a_b-c/events", None).await;
    assert_eq!(ok.status(), 200);
    let err = built
        .broadcaster()
        .broadcast(&"x".repeat(129), "message", "")
        .await
        .unwrap_err();
    assert_eq!(err.status(), 400);
}

async fn replay_after_reconnect(built: &BuiltApp) {
    let b = &built.broadcaster();
    // A page had the stream open once (a channel nobody followed keeps no replay).
    drop(open(built, "/events", None).await);
    let first = b.broadcast("news", "message", "one").await.unwrap();
    b.broadcast("news", "message", "two\nlines").await.unwrap();
    let third = b.broadcast("news", "headline", "three").await.unwrap();
    let response = open(built, "/events", Some(&first)).await;
    let text = read_until(&mut response.into_body(), |t| t.contains("three")).await;
    assert!(!text.contains("data: one"), "already seen: {text:?}");
    assert!(text.contains("data: two\ndata: lines\n"), "{text:?}");
    assert!(
        text.ends_with(&format!("data: three\nid: {third}\nevent: headline\n\n")),
        "{text:?}"
    );
}

#[tokio::test]
async fn in_process_replay_after_last_event_id() {
    let (built, _data) = build(None).await;
    replay_after_reconnect(&built).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_replay_after_last_event_id() {
    let (built, _data) = build(Some(&unique_name("sse"))).await;
    replay_after_reconnect(&built).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fan_out_delivers_each_event_once() {
    let prefix = unique_name("fanout");
    let (a, _da) = build(Some(&prefix)).await;
    let (b, _db) = build(Some(&prefix)).await;
    let on_b = open(&b, "/events", None).await;
    let on_a = open(&a, "/events", None).await;
    let id = a
        .broadcaster()
        .broadcast("news", "message", "<p>hello</p>")
        .await
        .unwrap();
    b.broadcaster()
        .broadcast("news", "message", "marker")
        .await
        .unwrap();
    for response in [on_b, on_a] {
        let text = read_until(&mut response.into_body(), |t| t.contains("marker")).await;
        assert_eq!(
            text.matches("data: <p>hello</p>").count(),
            1,
            "exactly once: {text:?}"
        );
        assert!(text.contains(&format!("id: {id}")), "{text:?}");
    }
}

/// What the stream delivers within `wait` (nothing more is waited for).
async fn read_for(body: &mut Body, wait: Duration) -> String {
    let mut text = String::new();
    let _ = tokio::time::timeout(wait, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                text.push_str(&String::from_utf8_lossy(data));
            }
        }
    })
    .await;
    text
}

/// The `data:` lines of a stream's text that start with `prefix`, in order.
fn data_lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| d.starts_with(prefix))
        .collect()
}

/// Two app processes on one Redis: what the first broadcasts reaches the second's subscriber
/// only through Redis. Redis restarts: the relays reconnect, and every event the first
/// published to Redis after the restart reaches the second's subscriber exactly once and in
/// order, those published before its relay was back included (it catches up from the stream).
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_reconnects_after_redis_restarts_and_catches_up() {
    let mut redis = support::OwnRedis::start();
    let prefix = format!("{}:", unique_name("relay"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    let (data_one, data_two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut built = Vec::new();
    for data in [&data_one, &data_two] {
        let settings = Settings::from_source(Source::from_pairs([
            ("DATA_DIR", data.path().display().to_string()),
            ("REDIS_URL", redis.url()),
            ("REDIS_KEY_PREFIX", prefix.clone()),
            ("SSE_KEEPALIVE", "1".into()),
        ]))
        .unwrap();
        built.push(app().build(settings, &root).await.unwrap());
    }
    let (sender, receiver) = (&built[0], &built[1]);
    let mut body = open(receiver, "/events", None).await.into_body();
    // The receiver's relay subscribes in the background: send until it is there.
    let mut seen = String::new();
    for i in 0..100 {
        sender
            .broadcaster()
            .broadcast("news", "message", format!("before-{i}"))
            .await
            .unwrap();
        seen.push_str(&read_for(&mut body, Duration::from_millis(100)).await);
        if seen.contains("data: before-") {
            break;
        }
    }
    assert!(seen.contains("data: before-"), "through Redis: {seen:?}");

    // Redis down: a broadcast still succeeds (in the sender's process only).
    redis.stop();
    sender
        .broadcaster()
        .broadcast("news", "message", "while-down")
        .await
        .expect("a broadcast while Redis is down degrades to this process");

    redis.restart();
    let mut text = String::new();
    for i in 0..150 {
        sender
            .broadcaster()
            .broadcast("news", "message", format!("after-{i}"))
            .await
            .unwrap();
        text.push_str(&read_for(&mut body, Duration::from_millis(100)).await);
        if data_lines(&text, "after-").len() >= 3 {
            break;
        }
    }
    text.push_str(&read_for(&mut body, Duration::from_secs(2)).await);

    // What reached Redis after the restart, from its stream.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stream: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("{prefix}sse:stream:news"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let stored: Vec<String> = stream
        .ids
        .iter()
        .filter_map(|entry| entry.get::<String>("d"))
        .filter(|d| d.starts_with("after-"))
        .collect();
    assert!(
        !stored.is_empty(),
        "nothing reached Redis after the restart"
    );
    assert_eq!(
        data_lines(&text, "after-"),
        stored,
        "each event published to Redis after the restart, once, in order"
    );
    assert!(!text.contains("while-down"), "{text:?}");
}

#[tokio::test]
async fn the_subscriber_caps_answer_503_with_the_reason() {
    let data = tempfile::tempdir().unwrap();
    let settings = Settings::from_source(Source::from_pairs([
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("SSE_MAX_SUBSCRIBERS_PER_IP", "2"),
    ]))
    .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    let built = app().build(settings, &root).await.unwrap();
    let first = open(&built, "/events", None).await;
    let second = open(&built, "/rooms/a/events", None).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    for path in ["/events", "/countdown"] {
        let refused = open(&built, path, None).await;
        assert_eq!(refused.status(), 503, "{path}");
        let body = refused.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("SSE_MAX_SUBSCRIBERS_PER_IP"), "{body}");
    }
    drop(first);
    assert_eq!(
        open(&built, "/events", None).await.status(),
        200,
        "a closed stream frees its place"
    );
}

/// In Redis, a channel's stream is capped in bytes as well as in events: large events keep
/// fewer of them (SSE_BUFFER_BYTES), never fewer than one.
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_replay_streams_are_capped_in_bytes() {
    let prefix = unique_name("sse-bytes");
    let (built, _data) = build_with(Some(&prefix), &[("SSE_BUFFER_BYTES", "10000")]).await;
    let b = built.broadcaster();
    for _ in 0..10 {
        b.broadcast("news", "message", "x".repeat(4000))
            .await
            .unwrap();
    }
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let len: usize = redis::cmd("XLEN")
        .arg(format!("{prefix}:sse:stream:news"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (1..=2).contains(&len),
        "{len} events of 4 kB kept under a 10 kB cap"
    );
    b.broadcast("news", "message", "small").await.unwrap();
    let len: usize = redis::cmd("XLEN")
        .arg(format!("{prefix}:sse:stream:news"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(len >= 1, "{len}");
}
