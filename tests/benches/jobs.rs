//! Jobs and SSE benchmark (`cargo bench -p vibetuner-e2e --bench jobs`, needs `TEST_REDIS_URL`;
//! scripts/bench.sh starts Redis):
//!
//! 1. task throughput on Redis: 20,000 no-op tasks enqueued by 64 concurrent producers while
//!    one worker (concurrency 64) runs them; tasks/s from the first enqueue until the queue
//!    holds none (the last one acknowledged), all in this process;
//! 2. SSE fan-out: the `jobs_app` test binary serves `/events` (Redis fan-out); 1,000 clients
//!    subscribe; this process broadcasts 50 events through Redis, each carrying its send time;
//!    p50/p99 of broadcast-to-delivery over every (event, client) pair. A lost delivery fails
//!    the bench (exit 1), naming how many.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vibetuner::config::Source;
use vibetuner::tasks::Worker;
use vibetuner::{App, BuiltApp, ProjectSource, Settings, Task};
use vibetuner_e2e::{PROD_ENV, free_port};

const SOURCE: ProjectSource = ProjectSource {
    answers: "[project]\nproject_name = \"Jobs App\"\nproject_slug = \"jobs-app\"\n",
    version: "0.1.0",
    manifest_dir: env!("CARGO_MANIFEST_DIR"),
};
const TASKS: u64 = 20_000;
const PRODUCERS: u64 = 64;
const SUBSCRIBERS: usize = 1_000;
const EVENTS: usize = 50;

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("TEST_REDIS_URL is not set: run scripts/bench.sh (it starts redis-server)")
}

async fn build(app: App, prefix: &str, data: &Path) -> BuiltApp {
    let settings = Settings::from_source(Source::from_pairs([
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", prefix.to_owned()),
        ("DATA_DIR", data.display().to_string()),
        ("LOG_LEVEL", "warn".to_owned()),
    ]))
    .unwrap();
    app.build(settings, data).await.unwrap()
}

async fn task_throughput(data: &Path) {
    let done = Arc::new(AtomicU64::new(0));
    let counter = done.clone();
    let app = App::new(SOURCE).task(Task::new("noop", move |_ctx, _n: u64| {
        counter.fetch_add(1, Ordering::Relaxed);
        async { Ok(()) }
    }));
    let prefix = format!("bench-jobs-{}:", std::process::id());
    let built = build(app, &prefix, data).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(Worker::new(&built, Some(64)).run(async move {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let jobs = built.jobs().clone();
            tokio::spawn(async move {
                for i in (p..TASKS).step_by(PRODUCERS as usize) {
                    jobs.enqueue("noop", &i).await.unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
    let enqueued = started.elapsed();
    // Done when acknowledged: the queue holds none of them any more (ready counts the ones a
    // worker took and has not acknowledged), not when their handler was called.
    loop {
        let depth = built.jobs().depth().await.unwrap();
        if depth.ready == 0 && depth.delayed == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = started.elapsed();
    assert_eq!(
        done.load(Ordering::Relaxed),
        TASKS,
        "every task ran once before the queue emptied"
    );
    let _ = stop.send(());
    worker.await.unwrap();
    println!(
        "tasks (Redis, one worker, concurrency 64): {TASKS} enqueued in {:.2}s ({:.0}/s); enqueue to last completion {:.2}s = {:.0} tasks/s",
        enqueued.as_secs_f64(),
        TASKS as f64 / enqueued.as_secs_f64(),
        total.as_secs_f64(),
        TASKS as f64 / total.as_secs_f64()
    );
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// One SSE client: collects the delivery latency (µs) of every `data: <send µs>` line.
async fn subscriber(port: u16, ready: Arc<AtomicU64>) -> Vec<u64> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let mut text = String::new();
    let mut latencies = Vec::with_capacity(EVENTS);
    let mut counted = false;
    while latencies.len() < EVENTS {
        let n = match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        let received = now_us();
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if !counted && text.contains("\r\n\r\n") {
            assert!(
                text.starts_with("HTTP/1.1 200"),
                "a subscriber was refused: {}",
                text.lines().next().unwrap_or_default()
            );
            counted = true;
            ready.fetch_add(1, Ordering::SeqCst);
        }
        while let Some(at) = text.find("data: ") {
            let rest = &text[at + 6..];
            let Some(end) = rest.find('\n') else { break };
            if let Ok(sent) = rest[..end].trim().parse::<u64>() {
                latencies.push(received.saturating_sub(sent));
            }
            text = rest[end..].to_owned();
        }
    }
    latencies
}

async fn sse_fan_out(data: &Path) {
    let prefix = format!("bench-sse-{}:", std::process::id());
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_jobs_app"))
        .args(["serve", "--port", &port.to_string()])
        .current_dir(data)
        .env_clear()
        .env("VIBETUNER_ROOT", data)
        .env("DATA_DIR", data)
        .env("REDIS_URL", redis_url())
        .env("REDIS_KEY_PREFIX", &prefix)
        .env("LOG_LEVEL", "warn")
        // Every subscriber comes from 127.0.0.1: lift the per-address caps (32 streams, 100
        // connections, 4 requests in the handlers by default) above the bench's count.
        .env("MAX_CONNECTIONS_PER_IP", "2000")
        .env("REQUESTS_PER_CLIENT", "2000")
        .env("SSE_MAX_SUBSCRIBERS_PER_IP", "2000")
        .envs(PROD_ENV)
        .env("HOST", "127.0.0.1")
        .stdout(Stdio::null())
        .spawn()
        .expect("jobs_app serves");
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Some(status) = server.try_wait().expect("jobs_app status") {
            panic!("jobs_app exited before listening ({status}); its stderr is above");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| tokio::spawn(subscriber(port, ready.clone())))
        .collect();
    while ready.load(Ordering::SeqCst) < SUBSCRIBERS as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let publisher = build(App::new(SOURCE), &prefix, data).await;
    for _ in 0..EVENTS {
        publisher
            .broadcaster()
            .broadcast("demo", "message", now_us().to_string())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut all: Vec<u64> = Vec::with_capacity(SUBSCRIBERS * EVENTS);
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        all.len(),
        SUBSCRIBERS * EVENTS,
        "{} of {} deliveries were lost",
        SUBSCRIBERS * EVENTS - all.len(),
        SUBSCRIBERS * EVENTS
    );
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    println!(
        "SSE fan-out via Redis ({SUBSCRIBERS} subscribers on another process, {EVENTS} events): {} deliveries of {}; broadcast to delivery p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        SUBSCRIBERS * EVENTS,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}

fn main() {
    let data = tempfile_dir();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        task_throughput(&data).await;
        sse_fan_out(&data).await;
    });
    let _ = std::fs::remove_dir_all(&data);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = vibetuner_e2e::target_dir()
        .join("bench-jobs")
        .join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
