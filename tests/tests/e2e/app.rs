//! A generated app, built and served on a free port, checked over HTTP.

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use serde_json::Value;
use vibetuner_e2e::{APP_NAME, APP_SLUG, Server, free_port, generated_app};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn start(env: &[(&str, &str)]) -> Server {
    let app = generated_app();
    Server::start(&app.binary, &app.dir, env).unwrap()
}

async fn json(server: &Server, path: &str) -> (StatusCode, Value) {
    let resp = get(server, path).await;
    let status = resp.status();
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/json", "{path}");
    (status, resp.json().await.unwrap())
}

async fn get(server: &Server, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .unwrap()
}

async fn page(server: &Server, path: &str) -> String {
    get(server, path).await.text().await.unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

fn css_link(html: &str) -> String {
    let start = html
        .find("href=\"/static/v")
        .expect("a versioned static link")
        + 6;
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_owned()
}

#[tokio::test]
async fn home_page_is_the_skeleton_with_a_versioned_css_bundle_holding_daisyui() {
    let server = start(&[]);
    let resp = get(&server, "/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let html = resp.text().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains(&format!("<title>{APP_NAME}</title>")));
    assert!(
        html.contains("<meta name=\"htmx-config\""),
        "skeleton's htmx_config block"
    );
    assert!(html.contains("<body preload=\"mousedown\""));
    assert!(html.contains("class=\"navbar"), "framework header");
    assert!(html.contains("footer footer-center"), "framework footer");

    let css = css_link(&html);
    assert!(css.ends_with("/css/bundle.css"), "{css}");
    let resp = get(&server, &css).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[CONTENT_TYPE], "text/css");
    assert_eq!(
        resp.headers()[CACHE_CONTROL],
        "no-cache",
        "dev revalidates statics"
    );
    let bundle = resp.text().await.unwrap();
    for class in [
        ".btn",
        ".navbar",
        ".footer-center",
        ".hero-content",
        ".card-body",
        ".join-item",
        ".badge",
    ] {
        assert!(bundle.contains(class), "bundle.css lacks {class}");
    }
    let js = client()
        .get(format!(
            "{}{}",
            server.base,
            css.replace("css/bundle.css", "js/bundle.js")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.text().await.unwrap().contains("htmx"), "htmx is bundled");
}

#[tokio::test]
async fn example_page_renders_whole_or_as_an_htmx_block() {
    let server = start(&[]);
    let page = page(&server, "/hello?name=Ada").await;
    assert!(
        page.contains("<!DOCTYPE html>") && page.contains("Hello, Ada!"),
        "{page}"
    );
    let block = client()
        .get(format!("{}/hello?name=Bo", server.base))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        block.trim(),
        "<h1 id=\"greeting\" class=\"card-title text-3xl\">Hello, Bo!</h1>"
    );
}

#[tokio::test]
async fn health_endpoints_have_vibetuners_shapes() {
    let server = start(&[]);
    let (status, ping) = json(&server, "/health/ping").await;
    assert_eq!(
        (status, ping),
        (StatusCode::OK, serde_json::json!({"status": "ok"}))
    );

    let (status, health) = json(&server, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&health), ["status", "uptime_seconds", "version"]);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["version"], "0.1.0-dev");
    assert!(health["uptime_seconds"].is_u64());

    let (_, detailed) = json(&server, "/health?detailed=true").await;
    assert_eq!(
        keys(&detailed),
        ["services", "status", "uptime_seconds", "version"]
    );
    assert_eq!(
        keys(&detailed["services"]),
        ["task_queue"],
        "no services configured: only the in-process task queue"
    );
    let queue = &detailed["services"]["task_queue"];
    assert_eq!(queue["status"], "connected");
    assert_eq!(queue["backend"], "store");
    assert_eq!(
        queue["depth"],
        serde_json::json!({"ready": 0, "delayed": 0})
    );

    let (status, ready) = json(&server, "/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["status"], "ready");
    assert_eq!(keys(&ready["services"]), ["task_queue"]);

    let (_, id) = json(&server, "/health/id").await;
    assert_eq!(
        keys(&id),
        [
            "app",
            "debug",
            "port",
            "process_id",
            "root_path",
            "startup_time",
            "status"
        ]
    );
    assert_eq!(id["app"], APP_SLUG);
    assert_eq!(id["port"], server.port);
    assert_eq!(
        id["debug"], true,
        ".env of the generated app sets DEBUG=true"
    );
    assert_eq!(id["status"], "healthy");
    assert!(id["process_id"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn ready_answers_503_when_a_configured_service_is_down() {
    let closed = free_port();
    let redis = format!("redis://127.0.0.1:{closed}/0");
    let server = start(&[("REDIS_URL", &redis)]);
    let (status, ready) = json(&server, "/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["status"], "not_ready");
    assert_eq!(ready["services"]["redis"]["status"], "error");
    let error = ready["services"]["redis"]["error"].as_str().unwrap();
    assert!(error.starts_with("redis: service unavailable ("), "{error}");

    let (status, detailed) = json(&server, "/health?detailed=true").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detailed["status"], "degraded");

    // Redis comes up on that port: the server reconnects and is ready (a real PING, not TCP).
    let mut redis_server = std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &closed.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (scripts/prerequisites.sh installs it)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let ready = loop {
        let (status, ready) = json(&server, "/health/ready").await;
        if status == StatusCode::OK || std::time::Instant::now() > deadline {
            break ready;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let _ = redis_server.kill();
    let _ = redis_server.wait();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["services"]["redis"]["status"], "connected");
    assert!(ready["services"]["redis"]["latency_ms"].is_number());
}

#[tokio::test]
async fn not_found_is_a_page_for_browsers_and_json_for_apis() {
    let server = start(&[]);
    let resp = client()
        .get(format!("{}/no/such/page", server.base))
        .header(ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("<title>Page not found · E2E Shop</title>"),
        "{html}"
    );
    assert!(html.contains("/no/such/page"));

    let resp = client()
        .get(format!("{}/no/such/page", server.base))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        serde_json::json!({"detail": "Not Found"})
    );

    let resp = client()
        .post(format!("{}/hello", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated_and_logged() {
    let server = start(&[("LOG_FORMAT", "json")]);
    let resp = client()
        .get(format!("{}/hello", server.base))
        .header("X-Request-ID", "trace-me-42")
        .header("X-Forwarded-For", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-me-42");
    let resp = get(&server, "/").await;
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("trace-me-42"))
        .unwrap_or_else(|| panic!("no log line carries the request id:\n{log}"));
    let entry: Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["span"]["request_id"], "trace-me-42");
    assert_eq!(
        entry["span"]["client"], "203.0.113.7",
        "the client address, forwarded by a trusted proxy (127.0.0.1)"
    );
    assert_eq!(entry["fields"]["status"], 200);
}

#[tokio::test]
async fn unversioned_and_stale_static_urls_redirect_to_the_current_hash() {
    let server = start(&[]);
    let home = page(&server, "/").await;
    let current = css_link(&home);
    for old in ["/static/css/bundle.css", "/static/vAAAAAAAA/css/bundle.css"] {
        let resp = get(&server, old).await;
        assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT, "{old}");
        assert_eq!(resp.headers()[LOCATION], current.as_str(), "{old}");
    }
    let missing = client()
        .get(format!(
            "{}{}",
            server.base,
            current.replace("bundle.css", "nope.css")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let embedded = client()
        .get(format!(
            "{}{}",
            server.base,
            current.replace("css/bundle.css", "img/vibetuner.svg")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        embedded.status(),
        StatusCode::OK,
        "framework statics are the fallback"
    );
    assert_eq!(embedded.headers()[CONTENT_TYPE], "image/svg+xml");
}

#[tokio::test]
async fn meta_routes() {
    let server = start(&[]);
    let robots = get(&server, "/robots.txt").await;
    assert_eq!(robots.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    let robots = robots.text().await.unwrap();
    assert!(
        robots.contains("Disallow: /auth/") && robots.contains("/sitemap.xml"),
        "{robots}"
    );
    let sitemap = page(&server, "/sitemap.xml").await;
    assert!(
        sitemap.contains(&format!("<loc>http://127.0.0.1:{}/</loc>", server.port)),
        "{sitemap}"
    );
    let manifest: Value = get(&server, "/site.webmanifest")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(manifest["name"], APP_NAME);
    let icon = get(&server, "/favicon.ico").await;
    assert_eq!(icon.headers()[CONTENT_TYPE], "image/x-icon");
    assert_eq!(&icon.bytes().await.unwrap()[..4], &[0, 0, 1, 0]);
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let server = start(&[("MAX_BODY_SIZE", "1024")]);
    let resp = client()
        .post(format!("{}/hello", server.base))
        .header(ACCEPT, "application/json")
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["detail"],
        "Request body is too large: the limit is 1024 bytes"
    );
}

#[tokio::test]
async fn templates_reload_without_restart_in_dev() {
    let app = generated_app();
    let root = vibetuner_e2e::scratch_dir("reload");
    std::fs::copy(app.dir.join("vibetuner.toml"), root.join("vibetuner.toml")).unwrap();
    let index = root.join("templates/frontend/index.html.jinja");
    std::fs::create_dir_all(index.parent().unwrap()).unwrap();
    std::fs::write(&index, "first {{ project_name }}").unwrap();
    let root_str = root.to_string_lossy().into_owned();
    let server = Server::start(&app.binary, &app.dir, &[("VIBETUNER_ROOT", &root_str)]).unwrap();
    let get = || async { page(&server, "/").await };
    assert_eq!(get().await, "first E2E Shop");
    std::fs::write(&index, "second").unwrap();
    assert_eq!(get().await, "second");
    drop(server);
    std::fs::remove_dir_all(root).unwrap();
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let server = start(&[]);
    assert_eq!(get(&server, "/health/ping").await.status(), StatusCode::OK);
    let status = server.signal_and_wait("TERM").unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[tokio::test]
async fn sigterm_ends_open_event_streams_instead_of_waiting_for_them() {
    let server = start(&[]);
    let client = server.sign_in("sse@example.com").await;
    let mut events = client
        .get(format!("{}/notes/events", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let reader = tokio::spawn(async move { while let Ok(Some(_)) = events.chunk().await {} });
    // The default grace period is 30 s; `signal_and_wait` allows 10 s for the exit.
    let status = server.signal_and_wait("TERM").unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    tokio::time::timeout(std::time::Duration::from_secs(10), reader)
        .await
        .expect("the event stream ended with the server")
        .unwrap();
}

#[test]
fn serve_notifies_systemd_readiness_and_pings_the_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let dir = vibetuner_e2e::scratch_dir("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let _server = start(&[
        ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "200000"),
    ]);
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !(seen.iter().any(|m: &String| m.contains("READY=1"))
        && seen.iter().any(|m| m.contains("WATCHDOG=1")))
    {
        let n = socket.recv(&mut buf).expect("a notification within 20 s");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        seen[0].contains("READY=1"),
        "readiness comes first: {seen:?}"
    );
}
