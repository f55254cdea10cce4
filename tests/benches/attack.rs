//! Adversarial load (`scripts/attack.sh`; not in CI): a release build of the generated app in
//! prod on the embedded store, with its default limits, attacked in turn for `ATTACK_SECS` each
//! (15 by default) while a legitimate signed-in client reads its list of notes 20 times a second
//! from its own address. The attacks, from many loopback addresses (none of them a trusted
//! proxy):
//!
//! - `slow-bodies`: 110 addresses × 100 connections posting a 1 MB sign-in form at a byte
//!   every 2 s, each reopened when the server closes it;
//! - `slow-reads`: 20 addresses × 100 connections asking for a 1 MB page of notes and never
//!   reading it (4 KiB receive buffers);
//! - `costly-queries`: a signed-in user with 1,000 notes of 10 KB, 8 requests at a time, each a
//!   200-character search that matches nothing (every note is scanned) sorted by title;
//! - `session-flood`: 50 addresses sending sign-in requests for fresh addresses and anonymous
//!   logouts as fast as they are answered;
//! - `channel-flood`: 160 addresses × 32 subscribers of the attacker's live notes channel that
//!   never read, while the attacker adds 10 KB notes 20 times a second (each one an event to
//!   every subscriber).
//!
//! Per phase: the legitimate client's requests, errors, p50, p99 and max latency, timed from
//! when each request was due (a late request counts its wait); what the attack got (answers by
//! status, connections the server closed); the app's RSS before, at most and after, and the
//! sessions stored. Exits 1 when a phase's legitimate p99 passes 100 ms or a legitimate request
//! failed. `ATTACK_PHASES=slow-bodies,costly-queries` runs some of them.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ping_ok, release_app, rss_kib, seed_notes_with, sign_in, spawn_prod};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use vibetuner_e2e::{SmtpSink, free_port};

/// The legitimate client's request rate.
const LEGIT_PER_SEC: u64 = 20;
/// The p99 a legitimate client must keep.
const P99_TARGET_MS: f64 = 100.0;

/// The phases, in order.
const PHASES: [&str; 6] = [
    "baseline",
    "slow-bodies",
    "slow-reads",
    "costly-queries",
    "session-flood",
    "channel-flood",
];

/// What an attack saw: answers by status (0: no answer), connections closed by the server.
#[derive(Default)]
struct Seen {
    statuses: Mutex<BTreeMap<u16, u64>>,
    closed: AtomicU64,
    opened: AtomicU64,
}

impl Seen {
    fn status(&self, status: u16) {
        *self.statuses.lock().unwrap().entry(status).or_default() += 1;
    }

    fn summary(&self) -> String {
        let statuses = self.statuses.lock().unwrap();
        let answers = statuses
            .iter()
            .map(|(s, n)| {
                format!(
                    "{n}×{}",
                    if *s == 0 {
                        "none".into()
                    } else {
                        s.to_string()
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "{} connections opened, {} closed by the server{}{answers}",
            self.opened.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed),
            if answers.is_empty() { "" } else { "; answers " }
        )
    }
}

/// The app under attack.
struct Target {
    port: u16,
    pid: u32,
    /// The attacker's `Cookie` header value.
    attacker: String,
    data: std::path::PathBuf,
}

/// A connection from `from` (with a small receive buffer when `small`), or `None` when refused.
async fn connect(port: u16, from: Ipv4Addr, small: bool) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    if small {
        socket.set_recv_buffer_size(4096).ok()?;
    }
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).ok()?;
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .ok()
}

/// The `n`th attacker address: 127.0.1.1 and on.
fn address(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1 + (n / 250) as u8, 1 + (n % 250) as u8)
}

/// Reads a response's status line (0 when none comes within `wait`).
async fn status_of(stream: &mut TcpStream, wait: Duration) -> u16 {
    let mut head = [0u8; 12];
    match tokio::time::timeout(wait, stream.read_exact(&mut head)).await {
        Ok(Ok(_)) => std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// Slow bodies: each connection sends a byte every 2 s of a 1 MB form; reopened when closed.
async fn slow_bodies(target: Arc<Target>, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let mut tasks = Vec::new();
    for n in 0..110 * 100 {
        let (stop, seen) = (stop.clone(), seen.clone());
        let port = target.port;
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Some(mut stream) = connect(port, address(n / 100), false).await else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                seen.opened.fetch_add(1, Ordering::Relaxed);
                let head = b"POST /auth/magic-link-login HTTP/1.1\r\nHost: e2e.example.com\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\n\r\nemail=";
                if stream.write_all(head).await.is_err() {
                    seen.closed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let mut buf = [0u8; 512];
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    tokio::select! {
                        read = stream.read(&mut buf) => {
                            if let Ok(12..) = read {
                                seen.status(std::str::from_utf8(&buf[9..12]).ok().and_then(|s| s.parse().ok()).unwrap_or(0));
                            }
                            seen.closed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        () = tokio::time::sleep(Duration::from_secs(2)) => {
                            if stream.write_all(b"a").await.is_err() {
                                seen.closed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Slow readers: each connection asks for 1 MB of notes and never reads; reopened when closed.
async fn slow_reads(target: Arc<Target>, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let mut tasks = Vec::new();
    for n in 0..20 * 100 {
        let (stop, seen, target) = (stop.clone(), seen.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Some(mut stream) = connect(target.port, address(n / 100), true).await else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                seen.opened.fetch_add(1, Ordering::Relaxed);
                let request = format!(
                    "GET /api/notes?limit=100 HTTP/1.1\r\nHost: e2e.example.com\r\nCookie: {}\r\n\r\n",
                    target.attacker
                );
                if stream.write_all(request.as_bytes()).await.is_err() {
                    seen.closed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // Never read. A byte of blank line a second notices a close: writing to a
                // connection the server hung up on fails.
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if stream.write_all(b"\n").await.is_err() {
                        seen.closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Sends `request` on a fresh connection from `from` and reads the whole answer; its status.
async fn exchange(port: u16, from: Ipv4Addr, request: &[u8]) -> u16 {
    let Some(mut stream) = connect(port, from, false).await else {
        return 0;
    };
    if stream.write_all(request).await.is_err() {
        return 0;
    }
    let status = status_of(&mut stream, Duration::from_secs(30)).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest)).await;
    status
}

/// Costly queries: 8 loops of a search that scans every one of the attacker's notes.
async fn costly_queries(target: Arc<Target>, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let search = "q".repeat(200);
    let request = format!(
        "GET /api/notes?limit=1&sort=title&search={search} HTTP/1.1\r\nHost: e2e.example.com\r\nCookie: {}\r\nConnection: close\r\n\r\n",
        target.attacker
    );
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (stop, seen, target, request) =
            (stop.clone(), seen.clone(), target.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                seen.opened.fetch_add(1, Ordering::Relaxed);
                let status = exchange(target.port, address(n), request.as_bytes()).await;
                seen.status(status);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Session flood: sign-in requests for fresh addresses and anonymous logouts, 50 addresses.
async fn session_flood(target: Arc<Target>, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let mut tasks = Vec::new();
    for n in 0..50 {
        let (stop, seen, target) = (stop.clone(), seen.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let request = if i.is_multiple_of(2) {
                    let form = format!("email=flood{n}x{i}%40example.com");
                    format!(
                        "POST /auth/magic-link-login HTTP/1.1\r\nHost: e2e.example.com\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
                        form.len()
                    )
                } else {
                    "POST /auth/logout HTTP/1.1\r\nHost: e2e.example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                };
                seen.opened.fetch_add(1, Ordering::Relaxed);
                let status = exchange(target.port, address(n), request.as_bytes()).await;
                seen.status(status);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Channel flood: subscribers of the attacker's channel that never read, and 10 KB notes.
async fn channel_flood(target: Arc<Target>, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let mut tasks = Vec::new();
    for n in 0..160 * 32 {
        let (stop, seen, target) = (stop.clone(), seen.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let Some(mut stream) = connect(target.port, address(n / 32), true).await else {
                seen.status(0);
                return;
            };
            seen.opened.fetch_add(1, Ordering::Relaxed);
            let request = format!(
                "GET /notes/events HTTP/1.1\r\nHost: e2e.example.com\r\nAccept: text/event-stream\r\nCookie: {}\r\n\r\n",
                target.attacker
            );
            if stream.write_all(request.as_bytes()).await.is_err() {
                seen.status(0);
                return;
            }
            seen.status(status_of(&mut stream, Duration::from_secs(10)).await);
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    let body = "x".repeat(10_000);
    let writer = {
        let (stop, target) = (stop.clone(), target.clone());
        tokio::spawn(async move {
            let mut i = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                i += 1;
                let json = format!(r#"{{"title":"flood {i}","body":"{body}"}}"#);
                let request = format!(
                    "POST /api/notes HTTP/1.1\r\nHost: e2e.example.com\r\nContent-Type: application/json\r\nCookie: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    target.attacker,
                    json.len()
                );
                exchange(target.port, address(999), request.as_bytes()).await;
            }
        })
    };
    for task in tasks {
        let _ = task.await;
    }
    let _ = writer.await;
}

/// The legitimate client's latencies (ms, from when each request was due) and failures.
#[derive(Default)]
struct Legit {
    latencies: Vec<f64>,
    errors: Vec<String>,
}

/// Runs the legitimate client on its own thread for `secs`.
fn legit_client(port: u16, cookie: String, secs: u64) -> std::thread::JoinHandle<Legit> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let client = reqwest::Client::builder()
                .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a client");
            let url = format!("http://127.0.0.1:{port}/api/notes?limit=20");
            let mut legit = Legit::default();
            let every = Duration::from_millis(1000 / LEGIT_PER_SEC);
            let start = tokio::time::Instant::now();
            for i in 0..secs * LEGIT_PER_SEC {
                let due = start + every * i as u32;
                tokio::time::sleep_until(due).await;
                let outcome = client.get(&url).header("cookie", &cookie).send().await;
                let outcome = match outcome {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.map(drop).map_err(|e| e.to_string())
                    }
                    Ok(r) => Err(format!("{}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                legit.latencies.push(due.elapsed().as_secs_f64() * 1000.0);
                if let Err(e) = outcome {
                    legit.errors.push(e);
                }
            }
            legit
        })
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Sessions stored in the app's embedded store.
fn sessions_stored(data: &std::path::Path) -> String {
    let db = data.join("store.sqlite3");
    rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT count(*) FROM sessions", [], |r| r.get::<_, i64>(0)))
        .map_or_else(|e| format!("? ({e})"), |n| n.to_string())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = std::env::var("ATTACK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let chosen: Vec<String> = std::env::var("ATTACK_PHASES").map_or_else(
        |_| PHASES.iter().map(|p| (*p).to_owned()).collect(),
        |v| v.split(',').map(str::to_owned).collect(),
    );
    if let Some(bad) = chosen.iter().find(|p| !PHASES.contains(&p.as_str())) {
        eprintln!("unknown phase {bad:?}; phases: {}", PHASES.join(", "));
        std::process::exit(2);
    }
    let app = release_app();
    let smtp = SmtpSink::start();
    let data = std::env::temp_dir().join(format!("vibetuner-attack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let port = free_port();
    // Loopback addresses are clients here, not a proxy: the per-address caps apply to them.
    let env = [
        ("DATA_DIR".to_owned(), data.display().to_string()),
        ("SMTP_URL".to_owned(), smtp.url.clone()),
        ("TRUSTED_PROXIES".to_owned(), "10.255.255.254".to_owned()),
    ];
    let mut child = spawn_prod(&app.binary, &app.dir, port, &env, "error");
    while !ping_ok(port) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let legit = sign_in(port, &smtp, "legit@example.com");
    let attacker = sign_in(port, &smtp, "attacker@example.com");
    seed_notes_with(port, &legit, 100, |_| "b".repeat(200));
    seed_notes_with(port, &attacker, 1000, |_| "b".repeat(10_000));
    let target = Arc::new(Target {
        port,
        pid: child.id(),
        attacker,
        data: data.clone(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "\nvibetuner under attack (release, prod, embedded store, default limits; {secs} s per phase; \
         a legitimate client reads 20 notes {LEGIT_PER_SEC}×/s from 127.0.0.2)\n"
    );
    println!(
        "| phase | legit requests | errors | p50 ms | p99 ms | max ms | RSS MiB before / max / after | sessions | the attack |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for phase in PHASES.iter().filter(|p| chosen.iter().any(|c| c == *p)) {
        let rss_before = rss_kib(target.pid);
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let attack = {
            let (target, stop, seen) = (target.clone(), stop.clone(), seen.clone());
            runtime.spawn(async move {
                match *phase {
                    "slow-bodies" => slow_bodies(target, stop, seen).await,
                    "slow-reads" => slow_reads(target, stop, seen).await,
                    "costly-queries" => costly_queries(target, stop, seen).await,
                    "session-flood" => session_flood(target, stop, seen).await,
                    "channel-flood" => channel_flood(target, stop, seen).await,
                    _ => {}
                }
            })
        };
        // The attack under way first (connections take a moment to open).
        std::thread::sleep(Duration::from_secs(2));
        let client = legit_client(port, legit.clone(), secs);
        let mut rss_max = rss_before;
        while !client.is_finished() {
            rss_max = rss_max.max(rss_kib(target.pid));
            std::thread::sleep(Duration::from_millis(200));
        }
        let outcome = client.join().expect("the legitimate client");
        stop.store(true, Ordering::Relaxed);
        let _ =
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(30), attack).await });
        // Let the server notice the attack's connections are gone.
        std::thread::sleep(Duration::from_secs(2));
        let rss_after = rss_kib(target.pid);
        let mut sorted = outcome.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let p99 = percentile(&sorted, 0.99);
        println!(
            "| {phase} | {} | {} | {:.1} | {p99:.1} | {:.1} | {:.0} / {:.0} / {:.0} | {} | {} |",
            outcome.latencies.len(),
            outcome.errors.len(),
            percentile(&sorted, 0.5),
            sorted.last().copied().unwrap_or(f64::NAN),
            rss_before as f64 / 1024.0,
            rss_max as f64 / 1024.0,
            rss_after as f64 / 1024.0,
            sessions_stored(&target.data),
            seen.summary()
        );
        if let Some(first) = outcome.errors.first() {
            eprintln!("  {phase}: first legitimate error: {first}");
            failed = true;
        }
        let slow: Vec<String> = outcome
            .latencies
            .iter()
            .enumerate()
            .filter(|(_, ms)| **ms > P99_TARGET_MS)
            .map(|(i, ms)| {
                format!(
                    "#{i} at {:.2} s: {ms:.0} ms",
                    i as f64 / LEGIT_PER_SEC as f64
                )
            })
            .collect();
        if !slow.is_empty() {
            eprintln!(
                "  {phase}: legitimate requests over {P99_TARGET_MS} ms: {}",
                slow.join(", ")
            );
        }
        if p99 > P99_TARGET_MS {
            eprintln!("  {phase}: legitimate p99 {p99:.1} ms is over {P99_TARGET_MS} ms");
            failed = true;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    if failed {
        std::process::exit(1);
    }
}
