//! Soak benchmark (`scripts/soak.sh`; not in CI): a release build of the generated app in prod on
//! the embedded store, signed in as one user, driven by a mixed load — the home page, a page of
//! the notes API, a read by id, and a create followed by its delete — first flat out for 10 s to
//! find the peak, then paced at 80% of that peak for `SOAK_SECS` (600 by default). Every 30 s it
//! prints requests/s, errors, p99 latency (timed from when each request was due, so a request
//! held up behind a slow one counts its wait) and the app's RSS; at the end, RSS at start, end and
//! max, and the total of errors. Exits 1 when any request failed (a non-2xx answer or a
//! transport error).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{ping_ok, release_app, rss_kib, seed_notes, sign_in, spawn_prod};
use tokio::sync::Mutex;
use vibetuner_e2e::{SmtpSink, free_port};

/// Concurrent connections of the load generator.
const CONNECTIONS: usize = 32;
/// Share of the peak the soak runs at.
const LOAD: f64 = 0.8;

/// What one window of the run saw.
#[derive(Default)]
struct Window {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u32>,
}

impl Window {
    fn p99_ms(&mut self) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let at = (self.latencies_us.len() * 99 / 100).min(self.latencies_us.len() - 1);
        f64::from(self.latencies_us[at]) / 1000.0
    }
}

/// One step of the mix; returns an error text for a failure.
async fn step(client: &reqwest::Client, base: &str, read_id: &str, n: u64) -> Result<(), String> {
    let check =
        |r: reqwest::Result<reqwest::Response>, what: &str| -> Result<reqwest::Response, String> {
            let r = r.map_err(|e| format!("{what}: {e}"))?;
            if r.status().is_success() {
                Ok(r)
            } else {
                Err(format!("{what}: {}", r.status()))
            }
        };
    match n % 10 {
        0..=4 => {
            check(client.get(format!("{base}/")).send().await, "GET /")?
                .bytes()
                .await
                .map_err(|e| e.to_string())?;
        }
        5..=7 => {
            check(
                client
                    .get(format!("{base}/api/notes?limit=20"))
                    .send()
                    .await,
                "GET /api/notes",
            )?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        }
        8 => {
            check(
                client
                    .get(format!("{base}/api/notes/{read_id}"))
                    .send()
                    .await,
                "GET /api/notes/{id}",
            )?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        }
        _ => {
            let created: serde_json::Value = check(
                client
                    .post(format!("{base}/api/notes"))
                    .json(&serde_json::json!({ "title": format!("soak {n}"), "body": "a body of a few words" }))
                    .send()
                    .await,
                "POST /api/notes",
            )?
            .json()
            .await
            .map_err(|e| e.to_string())?;
            let id = created["id"].as_str().ok_or("no id in the created note")?;
            check(
                client.delete(format!("{base}/api/notes/{id}")).send().await,
                "DELETE /api/notes/{id}",
            )?;
        }
    }
    Ok(())
}

/// Runs the mix on `CONNECTIONS` tasks for `secs`, paced to `rate` steps/s in total (flat out when
/// `None`); calls `report` with each finished window of `window` seconds.
async fn drive(
    client: reqwest::Client,
    base: String,
    read_id: String,
    secs: u64,
    rate: Option<f64>,
    window: u64,
    mut report: impl FnMut(u64, &mut Window),
) -> Window {
    let current = Arc::new(Mutex::new(Window::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..CONNECTIONS {
        let (client, base, read_id) = (client.clone(), base.clone(), read_id.clone());
        let (current, stop) = (current.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let interval = rate.map(|r| Duration::from_secs_f64(CONNECTIONS as f64 / r));
            let mut next_at = tokio::time::Instant::now();
            let mut n = task as u64;
            while !stop.load(Ordering::Relaxed) {
                // Paced, a request's latency counts from when it was due: one that went out
                // late because the one before was slow counts its wait (no coordinated
                // omission). Flat out, from when it was sent.
                let due = match interval {
                    Some(interval) => {
                        tokio::time::sleep_until(next_at).await;
                        next_at += interval;
                        (next_at - interval).into_std()
                    }
                    None => Instant::now(),
                };
                let outcome = step(&client, &base, &read_id, n).await;
                let took = due.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                let mut w = current.lock().await;
                match outcome {
                    Ok(()) => {
                        w.ok += 1;
                        w.latencies_us.push(took);
                    }
                    Err(e) => {
                        w.errors += 1;
                        w.first_error.get_or_insert(e);
                    }
                }
                n += CONNECTIONS as u64;
            }
        }));
    }
    let mut total = Window::default();
    let mut elapsed = 0;
    while elapsed < secs {
        let span = window.min(secs - elapsed);
        tokio::time::sleep(Duration::from_secs(span)).await;
        elapsed += span;
        let mut finished = std::mem::take(&mut *current.lock().await);
        report(elapsed, &mut finished);
        total.ok += finished.ok;
        total.errors += finished.errors;
        if total.first_error.is_none() {
            total.first_error = finished.first_error.take();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    total
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let app = release_app();
    let smtp = SmtpSink::start();
    let data = std::env::temp_dir().join(format!("vibetuner-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let env = vec![
        ("DATA_DIR".to_owned(), data.display().to_string()),
        ("SMTP_URL".to_owned(), smtp.url.clone()),
        // One address sends every request; the soak measures the app, not the rate limits.
        ("AUTH_RATE_LIMIT".to_owned(), "1000/minute".to_owned()),
        ("SESSION_RATE_LIMIT".to_owned(), "1000/minute".to_owned()),
    ];
    let port = free_port();
    let mut child = spawn_prod(&app.binary, &app.dir, port, &env, "warn");
    while !ping_ok(port) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let cookie = sign_in(port, &smtp, "soak@example.com");
    let read_id = seed_notes(port, &cookie, 100);
    let mut default_headers = reqwest::header::HeaderMap::new();
    default_headers.insert(
        reqwest::header::COOKIE,
        cookie.parse().expect("a cookie header"),
    );
    let client = reqwest::Client::builder()
        .default_headers(default_headers)
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .expect("an HTTP client");
    let base = format!("http://127.0.0.1:{port}");
    let pid = child.id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");

    let peak = runtime.block_on(drive(
        client.clone(),
        base.clone(),
        read_id.clone(),
        10,
        None,
        10,
        |_, _| {},
    ));
    let peak_rate = peak.ok as f64 / 10.0;
    let rate = peak_rate * LOAD;
    let rss_start = rss_kib(pid);
    println!(
        "\nvibetuner soak (release, prod, embedded store; {CONNECTIONS} connections; mix: 50% /, 30% list of 20, 10% read, 10% create+delete)"
    );
    println!(
        "peak {peak_rate:.0} steps/s ({} errors); soaking {secs} s at {rate:.0} steps/s ({:.0}%)",
        peak.errors,
        LOAD * 100.0
    );
    println!("| t s | steps/s | errors | p99 ms | RSS MiB |");
    println!("|---|---|---|---|---|");
    let mut rss_max = rss_start;
    let total = runtime.block_on(drive(
        client,
        base,
        read_id,
        secs,
        Some(rate),
        30,
        |t, w| {
            let rss = rss_kib(pid);
            rss_max = rss_max.max(rss);
            let p99 = w.p99_ms();
            println!(
                "| {t} | {:.0} | {} | {p99:.2} | {:.1} |",
                w.ok as f64 / 30f64.min(t as f64),
                w.errors,
                rss as f64 / 1024.0
            );
        },
    ));
    let rss_end = rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    println!(
        "\n{} steps, {} errors; RSS start {:.1} MiB, end {:.1} MiB, max {:.1} MiB",
        total.ok + total.errors,
        total.errors,
        rss_start as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        rss_max.max(rss_end) as f64 / 1024.0
    );
    if let Some(e) = total.first_error {
        eprintln!("first error: {e}");
        std::process::exit(1);
    }
}
