//! HTTP benchmark (`cargo bench -p vibetuner-e2e`): a release build of a generated app against
//! bare axum baselines, measured in the same run with `wrk`: `/health/ping` against bare axum,
//! and two routed requests, which go through the framework's whole stack, against bare axum +
//! minijinja rendering the app's own template files with the same context and headers (checked
//! equal first; `bare_axum`'s docs): `/hello` as htmx asks for it (one small block) and `/`.
//! `/health/ping` sits outside the stack (for probes), so it measures connection handling; the
//! routed `/hello` carries the "near bare axum" target. Reports req/s and p99 latency (medians
//! of rounds that take the targets in turn, and the ratios' medians), idle RSS split into the
//! process's own and its mapped files' memory, RSS after the first page, loaded RSS, cold start
//! (spawn to first 200) and time to the first page (medians of seven starts); then the
//! notes API (a page of 20 out of 1,000 notes, and read by id) on the embedded store and on
//! MongoDB (`TEST_MONGODB_URL`; scripts/bench.sh starts one), with the app's CPU milliseconds per
//! request (process CPU time over requests served).
//!
//! `-- --check` exits 1 when a target is missed (targets are printed PASS/MISS either way).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Conn, HELLO, HTMX, Memory, check_home_baseline, cpu_ms, home_baseline_args, memory_kib,
    ping_ok, release_app, rss_kib, seed_notes, send, sign_in,
};
use vibetuner_e2e::{PROD_ENV, SmtpSink, free_port};

const DURATION: &str = "8s";
const CONNECTIONS: &str = "64";

#[derive(Clone)]
struct Target {
    name: &'static str,
    binary: std::path::PathBuf,
    /// Arguments, `{port}` standing for the port.
    args: Vec<String>,
    dir: std::path::PathBuf,
    env: Vec<(String, String)>,
}

/// A server process the bench started, stopped when dropped: a bench that fails (wrk missing,
/// a server that does not start) leaves no server behind.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

fn spawn(t: &Target, port: u16) -> Server {
    Server(
        Command::new(&t.binary)
            .args(
                t.args
                    .iter()
                    .map(|a| a.replace("{port}", &port.to_string())),
            )
            .current_dir(&t.dir)
            .env_clear()
            .envs(PROD_ENV)
            .env("HOST", "127.0.0.1")
            .envs(t.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("server starts"),
    )
}

/// What seven starts of a target measured (medians).
#[derive(Clone, Copy)]
struct Start {
    /// Spawn to the first 200 on `/health/ping`.
    cold: Duration,
    /// Memory at that moment.
    idle: Memory,
    /// With a page: spawn to the end of the first `/`, and the memory after it.
    first_page: Option<(Duration, Memory)>,
}

/// Starts `t` seven times: the median time from spawn to the first 200 on `/health/ping`, the
/// median (by RSS) of its memory at that moment and, `with_page`, the same after a first `/`.
fn starts(t: &Target, with_page: bool) -> Start {
    let samples: Vec<Start> = (0..7)
        .map(|_| {
            let port = free_port();
            let started = Instant::now();
            let server = spawn(t, port);
            while !ping_ok(port) {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "{} did not start",
                    t.name
                );
                std::thread::sleep(Duration::from_micros(200));
            }
            let (cold, idle) = (started.elapsed(), memory_kib(server.id()));
            let first_page = with_page.then(|| {
                let page = Conn::open(port).get("/", None);
                assert_eq!(page.status, 200, "{}: the first /", t.name);
                (started.elapsed(), memory_kib(server.id()))
            });
            Start {
                cold,
                idle,
                first_page,
            }
        })
        .collect();
    // Each figure's median on its own, the sample that has it giving it.
    let median_of = |key: &dyn Fn(&Start) -> u64| {
        let mut sorted: Vec<&Start> = samples.iter().collect();
        sorted.sort_by_key(|s| key(s));
        *sorted[sorted.len() / 2]
    };
    let page_time = |s: &Start| s.first_page.map_or(0, |p| p.0.as_micros() as u64);
    let page_rss = |s: &Start| s.first_page.map_or(0, |p| p.1.rss);
    Start {
        cold: median_of(&|s| s.cold.as_micros() as u64).cold,
        idle: median_of(&|s| s.idle.rss).idle,
        first_page: with_page.then(|| {
            let time = median_of(&page_time).first_page.expect("a first page").0;
            let memory = median_of(&page_rss).first_page.expect("a first page").1;
            (time, memory)
        }),
    }
}

/// Runs wrk, with a header (`Name: value`) if given; returns (req/s, p99 ms).
fn wrk(url: &str, header: Option<&str>) -> (f64, f64) {
    let (rps, p99, _) = wrk_counted(url, header);
    (rps, p99)
}

/// Runs wrk, with a header (`Name: value`) if given; returns (req/s, p99 ms, requests served).
fn wrk_counted(url: &str, header: Option<&str>) -> (f64, f64, u64) {
    let mut args = vec!["-t2", "-c", CONNECTIONS, "-d", DURATION, "--latency"];
    if let Some(h) = header {
        args.extend(["-H", h]);
    }
    args.push(url);
    let out = Command::new("wrk")
        .args(args)
        .output()
        .expect("wrk is installed (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| parse_latency(v.trim()))
        .unwrap_or(f64::NAN);
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in"))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(0);
    (rps, p99, requests)
}

/// Figures of one notes endpoint: req/s, p99 ms, app CPU ms per request.
type NotesFigures = (f64, f64, f64);

/// The list and read figures of the app and, on the embedded store, of `bare_store` over the
/// same file in the same run.
struct Notes {
    app: (NotesFigures, NotesFigures),
    bare: Option<(NotesFigures, NotesFigures)>,
}

/// Seeds 1,000 notes, then measures a page of 20 and a read by id; with `bare_store` (the
/// embedded store's file), the same two requests against it.
fn measure_notes(t: &Target, bare_store: Option<&Path>) -> Notes {
    let smtp = SmtpSink::start();
    let mut t = t.clone();
    t.env.push(("SMTP_URL".into(), smtp.url.clone()));
    let port = free_port();
    let child = spawn(&t, port);
    while !ping_ok(port) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The example's notes belong to their author: every request carries one user's session.
    let cookie = sign_in(port, &smtp, "bench@example.com");
    let id = seed_notes(port, &cookie, 1000);
    let run = |pid: u32, port: u16, cookie: Option<&str>| {
        let base = format!("http://127.0.0.1:{port}");
        let header = cookie.map(|c| format!("Cookie: {c}"));
        let one = |url: String| {
            let before = cpu_ms(pid);
            let (rps, p99, n) = wrk_counted(&url, header.as_deref());
            let cpu = (cpu_ms(pid) - before) / n.max(1) as f64;
            (rps, p99, cpu)
        };
        (
            one(format!("{base}/api/notes?limit=20")),
            one(format!("{base}/api/notes/{id}")),
        )
    };
    let app = run(child.id(), port, Some(&cookie));
    let bare = bare_store.map(|file| {
        let bare_port = free_port();
        let mut bare = Server(
            Command::new(env!("CARGO_BIN_EXE_bare_store"))
                .args([bare_port.to_string(), file.to_string_lossy().into_owned()])
                .stdout(Stdio::null())
                .spawn()
                .expect("bare_store starts"),
        );
        while std::net::TcpStream::connect(("127.0.0.1", bare_port)).is_err() {
            assert!(
                bare.0.try_wait().ok().flatten().is_none(),
                "bare_store exited"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Like for like: both answer the same JSON.
        for path in ["/api/notes?limit=20".to_owned(), format!("/api/notes/{id}")] {
            let headers = format!("Cookie: {cookie}\r\n");
            let app_json = json_body(&send(port, "GET", &path, &headers, ""));
            let bare_json = json_body(&send(bare_port, "GET", &path, "", ""));
            assert_eq!(app_json, bare_json, "bare_store answers {path} differently");
        }
        run(bare.id(), bare_port, None)
    });
    Notes { app, bare }
}

/// The JSON body of a whole HTTP/1.1 response.
fn json_body(response: &str) -> serde_json::Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

fn parse_latency(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

/// Rounds of `/health/ping` and `/`, each target in turn: this machine's throughput drifts by
/// about 10 % over a minute, so one run per target can put a target on a fast or a slow stretch.
const ROUNDS: usize = 3;

/// One target's figures: medians over the rounds (req/s, p99 ms) and over the starts.
struct Figures {
    ping: (f64, f64),
    hello: Option<(f64, f64)>,
    home: Option<(f64, f64)>,
    start: Start,
    loaded_kib: u64,
}

/// The median of the values.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// What one round measured of one target.
#[derive(Clone, Copy)]
struct Round {
    /// `/health/ping`: req/s, p99 ms.
    ping: (f64, f64),
    /// htmx's `/hello`: req/s, p99 ms.
    hello: Option<(f64, f64)>,
    /// `/`: req/s, p99 ms.
    home: Option<(f64, f64)>,
    /// The largest RSS seen, KiB.
    loaded_kib: u64,
}

/// One round of `t`: a fresh server, wrk on `/health/ping` and, `with_home`, on htmx's
/// `/hello` and on `/`.
fn round(t: &Target, with_home: bool) -> Round {
    let port = free_port();
    let server = spawn(t, port);
    while !ping_ok(port) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let base = format!("http://127.0.0.1:{port}");
    let pid = server.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut max = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(100));
            }
            max
        })
    };
    let ping = wrk(&format!("{base}/health/ping"), None);
    let hello = with_home.then(|| wrk(&format!("{base}{HELLO}"), Some(HTMX.trim_end())));
    let home = with_home.then(|| wrk(&format!("{base}/"), None));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    Round {
        ping,
        hello,
        home,
        loaded_kib: sampler.join().unwrap_or(0),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let app = release_app();
    // One version for the app and the / baseline, whose base context the framework computes.
    let version = vec![("APP_VERSION".to_owned(), "1.0.0".to_owned())];
    let app_target = Target {
        name: "vibetuner app",
        binary: app.binary.clone(),
        args: vec!["serve".into(), "--port".into(), "{port}".into()],
        dir: app.dir.clone(),
        env: version.clone(),
    };
    let baseline = Target {
        name: "bare axum",
        binary: Path::new(env!("CARGO_BIN_EXE_bare_axum")).to_owned(),
        args: vec!["{port}".into()],
        dir: app.dir.clone(),
        env: version.clone(),
    };
    // `cargo bench --bench http -- notes`: the notes API only.
    let mut checks = Vec::new();
    if !std::env::args().any(|a| a == "notes") {
        checks.extend(pages(&app_target, &baseline));
    }
    let data = std::env::temp_dir().join(format!("vibetuner-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut backends = vec![(
        "embedded",
        vec![("DATA_DIR".to_owned(), data.to_string_lossy().into_owned())],
    )];
    match std::env::var("TEST_MONGODB_URL") {
        Ok(url) if !url.is_empty() => backends.push((
            "mongodb",
            vec![(
                "MONGODB_URL".to_owned(),
                format!("{}/bench_{}", url.trim_end_matches('/'), std::process::id()),
            )],
        )),
        _ => println!(
            "\nTEST_MONGODB_URL not set: notes measured on the embedded store only (scripts/bench.sh starts SecantusDB)"
        ),
    }
    println!(
        "\nnotes API (1,000 notes; wrk -t2 -c{CONNECTIONS} -d{DURATION}; CPU = app process CPU time / requests)"
    );
    println!(
        "| backend | list 20 req/s | p99 ms | CPU ms/req | read req/s | p99 ms | CPU ms/req |"
    );
    println!("|---|---|---|---|---|---|---|");
    let row = |name: &str, (list, read): (NotesFigures, NotesFigures)| {
        println!(
            "| {name} | {:.0} | {:.2} | {:.3} | {:.0} | {:.2} | {:.3} |",
            list.0, list.1, list.2, read.0, read.1, read.2
        );
    };
    for (name, env) in backends {
        let target = Target {
            name: "notes",
            env: [version.clone(), env].concat(),
            ..app_target.clone()
        };
        // The targets are the embedded store's; SecantusDB is a slow Python server.
        let embedded = name == "embedded";
        let notes = measure_notes(
            &target,
            embedded.then(|| data.join("store.sqlite3")).as_deref(),
        );
        row(name, notes.app);
        let ((list, _, list_cpu), (read, _, read_cpu)) = (notes.app.0, notes.app.1);
        if let Some(bare) = notes.bare {
            row("embedded, bare axum + rusqlite", bare);
            println!(
                "app / bare: list {:.2}x req/s, {:.2}x CPU; read {:.2}x req/s, {:.2}x CPU",
                list / bare.0.0,
                list_cpu / bare.0.2,
                read / bare.1.0,
                read_cpu / bare.1.2
            );
        }
        if embedded {
            checks.push((
                format!("{name}: list CPU <= 0.3 ms/req, read CPU <= 0.1 ms/req"),
                list_cpu <= 0.3 && read_cpu <= 0.1,
                format!("{list_cpu:.3} and {read_cpu:.3} ms"),
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    println!();
    for (what, ok, value) in &checks {
        println!("{} {what}: {value}", if *ok { "PASS" } else { "MISS" });
    }
    let missed = checks.iter().filter(|(_, ok, _)| !ok).count();
    if std::env::args().any(|a| a == "--check") && missed > 0 {
        eprintln!("{missed} target(s) missed (--check)");
        std::process::exit(1);
    }
}

/// A target: what it says, whether it was met, the figure.
type Check = (String, bool, String);

/// `/health/ping`, `/hello` and `/` against their baselines, RSS and cold start; the targets.
fn pages(app_target: &Target, baseline: &Target) -> Vec<Check> {
    let app_dir = &app_target.dir;
    let home_baseline = {
        let port = free_port();
        let child = spawn(app_target, port);
        while !ping_ok(port) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let headers = std::env::temp_dir().join(format!("vibetuner-home-{}", std::process::id()));
        let target = Target {
            name: "bare axum + minijinja",
            args: home_baseline_args(port, app_dir, &headers),
            ..baseline.clone()
        };
        let base_port = free_port();
        let base = spawn(&target, base_port);
        while !ping_ok(base_port) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let size = check_home_baseline(port, base_port);
        println!("the / baseline renders the app's templates and sends its headers ({size} bytes)");
        drop((child, base));
        target
    };
    let targets = [
        (baseline, false),
        (&home_baseline, true),
        (app_target, true),
    ];
    let started: Vec<Start> = targets.iter().map(|(t, page)| starts(t, *page)).collect();
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); targets.len()];
    for _ in 0..ROUNDS {
        for ((t, with_home), runs) in targets.iter().zip(&mut rounds) {
            runs.push(round(t, *with_home));
        }
    }
    let medians = |runs: &[Round], of: fn(&Round) -> Option<(f64, f64)>| {
        of(&runs[0]).map(|_| {
            (
                median(runs.iter().filter_map(of).map(|h| h.0).collect()),
                median(runs.iter().filter_map(of).map(|h| h.1).collect()),
            )
        })
    };
    let figures: Vec<Figures> = rounds
        .iter()
        .zip(&started)
        .map(|(runs, start)| Figures {
            ping: (
                median(runs.iter().map(|r| r.ping.0).collect()),
                median(runs.iter().map(|r| r.ping.1).collect()),
            ),
            hello: medians(runs, |r| r.hello),
            home: medians(runs, |r| r.home),
            start: *start,
            loaded_kib: runs.iter().map(|r| r.loaded_kib).max().unwrap_or(0),
        })
        .collect();
    let [base, same_template, ours] = [&figures[0], &figures[1], &figures[2]];
    // Each round's ratio is of runs a few seconds apart; the target is their median.
    let per_round = |of: fn(&Round) -> f64, a: usize, b: usize| {
        rounds[a]
            .iter()
            .zip(&rounds[b])
            .map(|(x, y)| of(x) / of(y))
            .collect::<Vec<f64>>()
    };
    let ping_ratios = per_round(|r| r.ping.0, 2, 0);
    let hello_ratios = per_round(|r| r.hello.map_or(f64::NAN, |h| h.0), 2, 1);
    let home_ratios = per_round(|r| r.home.map_or(f64::NAN, |h| h.0), 2, 1);
    let ratio = median(ping_ratios.clone());
    let hello_ratio = median(hello_ratios.clone());
    let home_ratio = median(home_ratios.clone());
    println!(
        "\nvibetuner HTTP benchmark (wrk -t2 -c{CONNECTIONS} -d{DURATION}, medians of {ROUNDS} rounds, release, ENVIRONMENT=prod)"
    );
    println!(
        "| target | /health/ping req/s | p99 ms | /hello (htmx) req/s | p99 ms | / req/s | p99 ms | idle RSS MiB (anon + file) | RSS after a page MiB | loaded RSS MiB | cold start ms | first page ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mib = |kib: u64| kib as f64 / 1024.0;
    let cell = |f: Option<(f64, f64)>| {
        f.map_or(("-".into(), "-".into()), |(r, p)| {
            (format!("{r:.0}"), format!("{p:.2}"))
        })
    };
    for (name, f) in [
        ("bare axum", base),
        ("bare axum + minijinja, same templates", same_template),
        ("vibetuner app", ours),
    ] {
        let (hello_rps, hello_p99): (String, String) = cell(f.hello);
        let (home_rps, home_p99): (String, String) = cell(f.home);
        let (page_rss, page_ms) = f
            .start
            .first_page
            .map_or(("-".into(), "-".into()), |(t, m)| {
                (
                    format!("{:.1}", mib(m.rss)),
                    format!("{:.1}", t.as_secs_f64() * 1000.0),
                )
            });
        println!(
            "| {name} | {:.0} | {:.2} | {hello_rps} | {hello_p99} | {home_rps} | {home_p99} | {:.1} ({:.1} + {:.1}) | {page_rss} | {:.1} | {:.1} | {page_ms} |",
            f.ping.0,
            f.ping.1,
            mib(f.start.idle.rss),
            mib(f.start.idle.anon),
            mib(f.start.idle.file),
            mib(f.loaded_kib),
            f.start.cold.as_secs_f64() * 1000.0
        );
    }
    let list = |ratios: &[f64]| {
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "per round: /health/ping {} of bare axum (outside the stack: not a target); /hello {} and / {} of their baseline",
        list(&ping_ratios),
        list(&hello_ratios),
        list(&home_ratios)
    );
    let (_, after_page) = ours.start.first_page.expect("the app's first page");
    vec![
        (
            "/hello (routed, whole stack) >= 0.9x bare axum + minijinja".to_owned(),
            hello_ratio >= 0.9,
            format!("{hello_ratio:.2}x"),
        ),
        (
            "/ >= 0.6x its same-template baseline".to_owned(),
            home_ratio >= 0.6,
            format!("{home_ratio:.2}x (/health/ping {ratio:.2}x, not a target)"),
        ),
        (
            "idle RSS <= 16 MiB".to_owned(),
            ours.start.idle.rss <= 16 * 1024,
            format!(
                "{:.1} MiB ({:.1} MiB after the first page)",
                mib(ours.start.idle.rss),
                mib(after_page.rss)
            ),
        ),
        (
            "cold start < 50 ms".to_owned(),
            ours.start.cold < Duration::from_millis(50),
            format!("{:.1} ms", ours.start.cold.as_secs_f64() * 1000.0),
        ),
    ]
}
