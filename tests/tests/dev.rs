//! `vibetuner dev` on a freshly generated app: it serves, a Rust edit shows up without a
//! refused connection, a broken build keeps the old server and reports the error on
//! `/_dev/reload`, a fix recovers, and Ctrl-C stops every process it started. In prod, pages
//! carry no reload script and `/_dev/reload` is 404.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vibetuner_e2e::{PROD_ENV, Server, cli, edit_file, free_port, scratch_dir, target_dir};

/// Generates `Dev Loop` with a `/probe` route answering `one`.
fn generate() -> PathBuf {
    let base = scratch_dir("dev");
    // An earlier run's copy (same package, same target dir) still on disk would let cargo take
    // its build as fresh for this one.
    let mine = base.file_name().unwrap().to_owned();
    for entry in std::fs::read_dir(base.parent().unwrap()).unwrap().flatten() {
        let name = entry.file_name();
        if name != mine && name.to_string_lossy().starts_with("dev-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let out = Command::new(cli())
        .args([
            "new",
            "devapp",
            "--defaults",
            "--data",
            "project_name=Dev Loop",
        ])
        .current_dir(&base)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = base.join("devapp");
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

/// `vibetuner dev` in its own process group, its output collected.
struct Dev {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Dev {
    fn start(dir: &Path, port: u16) -> Self {
        let mut child = Command::new(cli())
            .args(["dev", "--port", &port.to_string()])
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", target_dir())
            .env("CARGO_NET_OFFLINE", "true")
            .env("DATA_DIR", dir.join("data"))
            .env_remove("PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("[dev] {line}");
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Self { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Every process below `vibetuner dev`.
    fn descendants(&self) -> Vec<u32> {
        let mut found = Vec::new();
        let mut parents = vec![self.child.id()];
        while let Some(parent) = parents.pop() {
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                // pid (comm) state ppid ...
                let after = &stat[stat.rfind(')').unwrap() + 2..];
                let ppid: u32 = after.split(' ').nth(1).unwrap().parse().unwrap();
                if ppid == parent {
                    found.push(pid);
                    parents.push(pid);
                }
            }
        }
        found
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'))
}

/// A client that opens a new connection for every request (so each one tests the socket).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn wait_for_body(base: &str, path: &str, want: &str, dev: &Dev) {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        if let Ok(resp) = client().get(format!("{base}{path}")).send().await
            && let Ok(body) = resp.text().await
            && body == want
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {want:?}; dev output:\n{}",
            dev.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Follows `/_dev/reload` until an event named `want` arrives; returns its data.
struct Events {
    resp: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(base: &str) -> Self {
        let resp = reqwest::Client::new()
            .get(format!("{base}/_dev/reload"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Self {
            resp,
            buffer: String::new(),
        }
    }

    /// The next event with its data, skipping keepalives.
    async fn next_any(&mut self) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = None;
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event = Some(name.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push(d);
                    }
                }
                if let Some(event) = event {
                    return (event, data.join("\n"));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.resp.chunk())
                .await
                .expect("no event within 10 minutes")
                .unwrap()
                .expect("the stream ended");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The data of the next event named `want` (others are skipped).
    async fn next(&mut self, want: &str) -> String {
        loop {
            let (event, data) = self.next_any().await;
            if event == want {
                return data;
            }
        }
    }
}

/// Polls `/probe` on new connections until stopped; counts refused connections.
struct Poller {
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Poller {
    fn start(base: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let url = format!("{base}/probe");
        let task = tokio::spawn({
            let (stop, refused, answered) = (stop.clone(), refused.clone(), answered.clone());
            async move {
                let client = client();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(resp) if resp.status().is_success() => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) if e.is_connect() => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => eprintln!("[poller] {e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Self {
            stop,
            refused,
            answered,
            task,
        }
    }

    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (
            self.refused.load(Ordering::Relaxed),
            self.answered.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test]
async fn dev_rebuilds_without_refusing_and_reports_broken_builds() {
    let dir = generate();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dev = Dev::start(&dir, port);

    wait_for_body(&base, "/probe", "one", &dev).await;
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
    wait_for_body(&base, "/probe", "two", &dev).await;
    let (refused, answered) = poller.finish().await;
    assert_eq!(refused, 0, "connections refused during the restart");
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
    wait_for_body(&base, "/probe", "three", &dev).await;
    let (refused, _) = poller.finish().await;
    assert_eq!(refused, 0, "connections refused around the broken build");
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
