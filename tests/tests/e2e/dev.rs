//! `vibetuner dev` on a freshly generated app: it serves, a Rust edit shows up without a
//! failed request (refused, reset, timed out or non-2xx), a broken build keeps the old server
//! and reports the error on `/_dev/reload`, a fix recovers, and Ctrl-C stops every process it
//! started. In prod, pages carry no reload script and `/_dev/reload` is 404.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vibetuner_e2e::{Dev, Events, PROD_ENV, Server, dev_project, edit_file, free_port, target_dir};

/// Generates `Dev Loop` with a `/probe` route answering `one`.
fn generate() -> PathBuf {
    let dir = dev_project("dev", "Dev Loop");
    edit_file(&dir.join("src/lib.rs"), |s| {
        s.replace(
            ".route(\"/hello\", get(routes::hello))",
            ".route(\"/hello\", get(routes::hello))\n        .route(\"/probe\", get(routes::probe))",
        )
    });
    edit_file(&dir.join("src/routes.rs"), |s| {
        format!("{s}\n/// Test probe.\npub async fn probe() -> &'static str {{\n    \"one\"\n}}\n")
    });
    dir
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'))
}

/// How often a test polls a page during a rebuild.
const POLL: Duration = Duration::from_millis(200);

/// A client that opens a new connection for every request (so each one tests the socket).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Polls `/probe` on new connections until stopped; records every request that failed in any
/// way: refused, reset, timed out or answered other than 2xx.
struct Poller {
    stop: Arc<AtomicBool>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    answered: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Poller {
    fn start(base: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let answered = Arc::new(AtomicUsize::new(0));
        let url = format!("{base}/probe");
        let task = tokio::spawn({
            let (stop, failures, answered) = (stop.clone(), failures.clone(), answered.clone());
            async move {
                let client = client();
                while !stop.load(Ordering::Relaxed) {
                    let failure = match client.get(&url).send().await {
                        Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                            Ok(_) => None,
                            Err(e) => Some(format!("body cut: {e}")),
                        },
                        Ok(resp) => Some(format!("answered {}", resp.status())),
                        Err(e) if e.is_connect() => Some(format!("refused: {e}")),
                        Err(e) if e.is_timeout() => Some(format!("timed out: {e}")),
                        Err(e) => Some(format!("failed: {e}")),
                    };
                    match failure {
                        None => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(failure) => failures.lock().unwrap().push(failure),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Self {
            stop,
            failures,
            answered,
            task,
        }
    }

    /// Stops polling: the failures, and how many requests were answered.
    async fn finish(self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (failures, self.answered.load(Ordering::Relaxed))
    }
}

/// Every request was answered 2xx in full: none refused, reset, timed out or answered otherwise.
fn assert_no_failure(failures: &[String], when: &str) {
    assert!(failures.is_empty(), "requests failed {when}: {failures:?}");
}

#[tokio::test]
async fn dev_rebuilds_without_a_failed_request_and_reports_broken_builds() {
    let dir = generate();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dev = Dev::start(&dir, port);

    dev.until_body(&client(), &format!("{base}/probe"), "one", POLL)
        .await;
    let home = client().get(&base).send().await.unwrap();
    assert_eq!(home.status(), 200);
    let home = home.text().await.unwrap();
    assert!(
        home.contains("new EventSource(\"/_dev/reload\")"),
        "no reload script in a dev page:\n{home}"
    );
    assert!(
        dev.log().contains(&format!("on http://127.0.0.1:{port}")),
        "the URL is not printed:\n{}",
        dev.log()
    );
    let mut events = Events::open(&base).await;
    let first_server = events.next("hello").await;

    // A CSS build: the page is told to swap its stylesheets.
    let css = dir.join("assets/statics/css/bundle.css");
    std::fs::create_dir_all(css.parent().unwrap()).unwrap();
    std::fs::write(&css, "body { color: red }").unwrap();
    events.next("css").await;

    // A Rust edit: the new response arrives with no refused connection on the way.
    let poller = Poller::start(&base);
    edit_file(&dir.join("src/routes.rs"), |s| {
        s.replace("\"one\"", "\"two\"")
    });
    dev.until_body(&client(), &format!("{base}/probe"), "two", POLL)
        .await;
    let (failures, answered) = poller.finish().await;
    assert_no_failure(&failures, "during the restart");
    assert!(answered > 0);
    // The old server's stream ended; a new one greets with the new server's id.
    let mut events = Events::open(&base).await;
    let second_server = events.next("hello").await;
    assert_ne!(first_server, second_server, "the server id did not change");

    // A broken build: the old server keeps answering and the stream carries the error.
    let poller = Poller::start(&base);
    edit_file(&dir.join("src/routes.rs"), |s| {
        s.replace("\"two\"", "undefined_thing")
    });
    let error = events.next("build-error").await;
    assert!(
        error.contains("undefined_thing") && error.contains("error"),
        "{error}"
    );
    assert_eq!(
        client()
            .get(format!("{base}/probe"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "two"
    );
    // A page opened now gets the error at once.
    let mut fresh = Events::open(&base).await;
    fresh.next("hello").await;
    assert!(fresh.next("build-error").await.contains("undefined_thing"));

    // Fixed: the new code serves and the error is gone (a new stream starts without it).
    edit_file(&dir.join("src/routes.rs"), |s| {
        s.replace("undefined_thing", "\"three\"")
    });
    dev.until_body(&client(), &format!("{base}/probe"), "three", POLL)
        .await;
    let (failures, _) = poller.finish().await;
    assert_no_failure(&failures, "around the broken build");
    let mut events = Events::open(&base).await;
    assert_eq!(events.next_any().await.0, "hello");
    std::fs::write(&css, "body { color: blue }").unwrap();
    assert_eq!(
        events.next_any().await.0,
        "css",
        "the error outlived the fix"
    );

    // Ctrl-C stops everything it started.
    let pids = dev.descendants();
    assert!(!pids.is_empty(), "no child processes found");
    let mut dev = dev;
    Command::new("kill")
        .args(["-INT", &dev.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while dev.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "vibetuner dev did not exit on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|pid| alive(*pid)) {
        assert!(
            Instant::now() < deadline,
            "processes left running after Ctrl-C: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !dir.join(vibetuner::dev::BUILD_ERROR_FILE).exists(),
        "the build error file was left behind"
    );

    // Prod: no reload script, no /_dev/reload (even when DEV_RELOAD is set).
    let binary = target_dir().join("debug/dev-loop");
    let mut env = PROD_ENV.to_vec();
    env.extend([("DEV_RELOAD", "true"), ("HOST", "127.0.0.1")]);
    let server = Server::start(&binary, &dir, &env).unwrap();
    let home = client().get(&server.base).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(!home.text().await.unwrap().contains("/_dev/reload"));
    let reload = client()
        .get(format!("{}/_dev/reload", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 404);
}
