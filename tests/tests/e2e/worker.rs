//! Workers and SSE as separate processes sharing Redis (`TEST_REDIS_URL`) and MongoDB
//! (`TEST_MONGODB_URL`), driven through the `jobs_app` test binary: a worker killed mid-task
//! leaves the task to another, `worker-health` follows a worker up, stalled and stopped, the
//! watchdog ends a stalled worker, and an SSE broadcast made on one server reaches a client of
//! another exactly once and is replayed after a reconnect; `serve --worker` runs the tasks in
//! the server; Redis killed and restarted under load loses no task and runs none twice.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vibetuner_e2e::{Server, scratch_dir, unique_name};

const BIN: &str = env!("CARGO_BIN_EXE_jobs_app");

fn service(var: &str, what: &str) -> String {
    std::env::var(var).ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        panic!("{var} is not set: run scripts/test.sh (it starts {what}) or `eval \"$(scripts/services.sh start)\"`")
    })
}

/// Settings shared by every process of one test: its own key prefix and database.
struct Env {
    dir: PathBuf,
    vars: Vec<(String, String)>,
}

impl Env {
    fn new(tag: &str) -> Self {
        let dir = scratch_dir(tag);
        let name = unique_name(tag);
        let vars = vec![
            ("VIBETUNER_ROOT".into(), dir.display().to_string()),
            (
                "REDIS_URL".into(),
                service("TEST_REDIS_URL", "redis-server"),
            ),
            ("REDIS_KEY_PREFIX".into(), format!("{name}:")),
            (
                "MONGODB_URL".into(),
                format!(
                    "{}/{name}",
                    service("TEST_MONGODB_URL", "SecantusDB").trim_end_matches('/')
                ),
            ),
            // Short enough for quick takeovers, long enough that a worker starved of CPU on
            // a busy machine neither loses its running task nor trips its watchdog.
            ("TASK_VISIBILITY_TIMEOUT".into(), "4".into()),
            ("WORKER_HEARTBEAT_INTERVAL".into(), "1".into()),
            ("WORKER_STALL_TIMEOUT".into(), "5".into()),
            ("SHUTDOWN_TIMEOUT".into(), "2".into()),
            ("LOG_LEVEL".into(), "info".into()),
        ];
        Self { dir, vars }
    }

    fn pairs(&self) -> Vec<(&str, &str)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Uses the Redis at `url` instead of `TEST_REDIS_URL`.
    fn redis(mut self, url: String) -> Self {
        for (key, value) in &mut self.vars {
            if key == "REDIS_URL" {
                *value = url.clone();
            }
        }
        self
    }

    fn server(&self) -> Server {
        Server::start(Path::new(BIN), &self.dir, &self.pairs()).expect("the server starts")
    }

    fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null());
        for (k, v) in self.pairs().into_iter().chain(extra.iter().copied()) {
            cmd.env(k, v);
        }
        cmd
    }

    fn worker(&self, extra: &[(&str, &str)]) -> Worker {
        let child = self
            .command(&["worker"], extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the worker starts");
        Worker { child }
    }

    /// Runs `worker-health`: its exit code and how long it took.
    fn health(&self) -> (i32, Duration) {
        let started = Instant::now();
        let out = self
            .command(&["worker-health"], &[])
            .output()
            .expect("worker-health runs");
        (out.status.code().unwrap_or(-1), started.elapsed())
    }
}

struct Worker {
    child: Child,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal}");
    }

    fn wait(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker did not exit within {secs}s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
        }
        text
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn until<T>(secs: u64, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn enqueue(server: &Server, task: &str, args: Value) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/enqueue/{task}", server.base))
        .json(&args)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    r.text().await.unwrap()
}

async fn marks(server: &Server, key: &str) -> Vec<(String, u32)> {
    let v: Value = reqwest::get(format!("{}/marks/{key}", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["stage"].as_str().unwrap().to_owned(),
                m["pid"].as_u64().unwrap() as u32,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_task_killed_mid_run_is_completed_by_another_worker() {
    let env = Env::new("sigkill");
    let server = env.server();
    let first = env.worker(&[]);
    enqueue(&server, "slow", json!({ "key": "k", "ms": 60_000 })).await;
    until(20, "the first worker to start the task", async || {
        marks(&server, "k")
            .await
            .into_iter()
            .find(|(s, _)| s == "started")
    })
    .await;
    first.signal("KILL");
    let killed = first.pid();
    drop(first);
    let second = env.worker(&[]);
    let done = until(30, "the second worker to finish the task", async || {
        marks(&server, "k")
            .await
            .into_iter()
            .find(|(s, _)| s == "done")
    })
    .await;
    assert_eq!(done.1, second.pid(), "finished by the second worker");
    let stages = marks(&server, "k").await;
    assert_eq!(
        stages,
        [
            ("started".to_owned(), killed),
            ("started".to_owned(), second.pid()),
            ("done".to_owned(), second.pid())
        ]
    );
}

#[tokio::test]
async fn a_task_that_kills_every_worker_ends_as_a_dead_letter() {
    let env = Env::new("poison");
    let server = env.server();
    let id = enqueue(&server, "crash", Value::Null).await;
    // max_retries(1): the first run and one retry each kill their worker; the third worker
    // takes the run over and stores it as a dead letter instead of running it.
    for _ in 0..2 {
        let mut worker = env.worker(&[]);
        let status = worker.wait(30);
        assert!(
            !status.success(),
            "the crash task kills the worker: {status}"
        );
    }
    let _third = env.worker(&[]);
    let out = until(30, "the dead letter", async || {
        let out = env
            .command(&["dead-letters", "list"], &[])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains(&id).then_some(text)
    })
    .await;
    assert!(
        out.contains("task=crash tries=2 WorkerLost: the worker running it stopped"),
        "{out}"
    );
}

#[tokio::test]
async fn worker_health_follows_a_worker_up_stalled_and_stopped() {
    let env = Env::new("health");
    let (code, took) = env.health();
    assert_eq!(code, 1, "no worker yet");
    let mut worker = env.worker(&[]);
    until(20, "worker-health to pass", async || {
        (env.health().0 == 0).then_some(())
    })
    .await;
    let (_, healthy_took) = env.health();
    eprintln!("worker-health took {took:?} (none) and {healthy_took:?} (up)");

    worker.signal("STOP");
    until(20, "worker-health to notice the stall", async || {
        (env.health().0 == 1).then_some(())
    })
    .await;
    worker.signal("CONT");
    until(20, "worker-health to pass again", async || {
        (env.health().0 == 0).then_some(())
    })
    .await;

    worker.signal("TERM");
    assert!(worker.wait(20).success(), "graceful stop exits 0");
    assert_eq!(env.health().0, 1, "a stopped worker is reported at once");
}

#[tokio::test]
async fn the_watchdog_exits_a_stalled_worker() {
    let env = Env::new("watchdog");
    let server = env.server();
    let mut worker = env.worker(&[("TOKIO_WORKER_THREADS", "1"), ("WORKER_STALL_TIMEOUT", "2")]);
    enqueue(&server, "block", json!(60)).await;
    let status = worker.wait(30);
    assert_eq!(status.code(), Some(1), "{status}");
    let stderr = worker.stderr();
    assert!(stderr.contains("worker stalled"), "{stderr}");
}

/// Reads an SSE response until `done` holds for the text read so far.
async fn read_until(response: &mut reqwest::Response, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(15), async {
        while !done(&text) {
            match response.chunk().await.unwrap() {
                Some(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                None => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event in time; got {text:?}"));
    text
}

async fn broadcast(server: &Server, data: &str) -> String {
    reqwest::Client::new()
        .post(format!("{}/broadcast/demo", server.base))
        .body(data.to_owned())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn sse_broadcast_on_one_server_reaches_another_once_and_replays() {
    let env = Env::new("fanout");
    let (a, b) = (env.server(), env.server());
    let mut on_b = reqwest::get(format!("{}/events", b.base)).await.unwrap();
    assert_eq!(on_b.headers()["x-accel-buffering"], "no");
    let hello = broadcast(&a, "<p>hello</p>").await;
    broadcast(&a, "marker").await;
    let text = read_until(&mut on_b, |t| t.contains("marker")).await;
    assert_eq!(text.matches("<p>hello</p>").count(), 1, "{text:?}");
    assert!(text.contains(&format!("id: {hello}")), "{text:?}");
    drop(on_b);

    let mut replay = reqwest::Client::new()
        .get(format!("{}/events", a.base))
        .header("Last-Event-ID", &hello)
        .send()
        .await
        .unwrap();
    let text = read_until(&mut replay, |t| t.contains("marker")).await;
    assert!(!text.contains("hello"), "{text:?}");
}

#[tokio::test]
async fn serve_with_worker_runs_redis_tasks_in_the_server() {
    let env = Env::new("serve-worker");
    let server = Server::start_with(Path::new(BIN), &env.dir, &env.pairs(), &["--worker"])
        .expect("the server starts");
    enqueue(&server, "slow", json!({ "key": "w", "ms": 10 })).await;
    let done = until(30, "the server's worker to finish the task", async || {
        marks(&server, "w")
            .await
            .into_iter()
            .find(|(s, _)| s == "done")
    })
    .await;
    assert_eq!(done.1, server.pid(), "the task ran outside the server");
}

/// Redis SIGKILLed and restarted (with its append-only file, as deployed) while a client keeps
/// enqueueing and pinging: every ping and every enqueue answers 2xx throughout (tasks enqueued
/// meanwhile wait in the store's outbox), and once Redis is back every task runs exactly once.
#[tokio::test]
async fn redis_killed_under_load_loses_no_task_and_runs_none_twice() {
    let mut redis = vibetuner::testing::OwnRedis::persistent();
    let env = Env::new("redis-fault").redis(redis.url());
    let server = env.server();
    let _worker = env.worker(&[]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let base = server.base.clone();
    let load = tokio::spawn(async move {
        let mut keys = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(12) {
            let key = format!("r{}", keys.len());
            let enqueued = client
                .post(format!("{base}/enqueue/slow"))
                .json(&json!({ "key": key, "ms": 10 }))
                .send()
                .await
                .map(|r| r.status());
            assert!(
                matches!(enqueued, Ok(s) if s.is_success()),
                "enqueue {key}: {enqueued:?}"
            );
            keys.push(key);
            let ping = client.get(format!("{base}/health/ping")).send().await;
            assert!(
                matches!(&ping, Ok(r) if r.status() == 200),
                "/health/ping: {ping:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        keys
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_secs(4)).await;
    redis.restart();
    let keys = load.await.expect("the load ran without a failed request");
    assert!(keys.len() > 20, "only {} tasks enqueued", keys.len());
    for key in &keys {
        let stages = until(60, &format!("task {key} to finish"), async || {
            let stages = marks(&server, key).await;
            stages.iter().any(|(s, _)| s == "done").then_some(stages)
        })
        .await;
        let runs: Vec<&str> = stages.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(runs, ["started", "done"], "task {key} ran once");
    }
}
