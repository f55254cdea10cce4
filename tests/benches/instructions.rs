//! Instructions per request (`scripts/bench-instructions.sh`; not run in CI): the generated app
//! (release, prod, embedded store) and the bare axum baselines run under
//! `valgrind --tool=callgrind`. For each endpoint: a warm-up, callgrind's counters zeroed,
//! `REQUESTS` requests on one keep-alive connection, a dump; then what the process counts on its
//! own (job polls, timers) over an idle stretch as long is taken off every target's figure alike
//! and printed beside it, and the rest over `REQUESTS` is the figure (every thread counted).
//! `/health/ping` sits outside the framework's stack; htmx's `/hello` is the routed request
//! that goes through all of it, against bare axum + minijinja rendering the same block. The top functions of each profile (inclusive
//! cost, framework and library functions) are printed. Counts repeat within a few percent,
//! unlike wall-clock figures on a shared machine.
//!
//! Before it measures, the bench checks that the `/` baseline is like for like: the same body
//! and the same headers as the app, nonce and request id aside. The figures are written to
//! `tests/benches/instructions.txt` (committed), with the change from the figures found there.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Conn, HELLO, HTMX, check_home_baseline, home_baseline_args, ping_ok, release_app, seed_notes,
    sign_in,
};
use vibetuner_e2e::{PROD_ENV, SmtpSink, fixed_dir, free_port};

/// Enough that the idle stretch's job polls (a few, a few hundred thousand instructions
/// each) move a figure by well under a percent.
const REQUESTS: u64 = 1000;
const WARMUP: u64 = 20;
const NOTES: usize = 100;
/// How many functions of each profile are printed.
const TOP: usize = 12;

/// One endpoint's figures.
struct Measured {
    /// Instructions per request, the idle ones taken off.
    per_request: f64,
    /// What an idle stretch as long counted, per request (taken off).
    idle_per_request: f64,
    /// The callgrind dump.
    file: PathBuf,
}

/// A server under callgrind (or not), killed on drop.
struct Server {
    child: Child,
    port: u16,
    /// Where callgrind writes its dumps (`None` when not under callgrind).
    out: Option<PathBuf>,
    dumps: usize,
}

impl Server {
    fn start(
        binary: &Path,
        args: &[String],
        dir: &Path,
        env: &[(String, String)],
        callgrind: Option<&Path>,
    ) -> Self {
        let port = free_port();
        let mut command = match callgrind {
            Some(out) => {
                let mut c = Command::new("valgrind");
                c.args([
                    "--tool=callgrind",
                    "--quiet",
                    &format!("--callgrind-out-file={}", out.display()),
                ])
                .arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let child = command
            .args(args.iter().map(|a| a.replace("{port}", &port.to_string())))
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(PROD_ENV)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts (valgrind installed?)");
        let started = Instant::now();
        while !ping_ok(port) {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "{} did not answer /health/ping",
                binary.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            out: callgrind.map(Path::to_owned),
            dumps: 0,
        }
    }

    fn control(&self, what: &str) {
        // vgdb finds the process by a name that includes $HOST, which the app's setting sets.
        let status = Command::new("callgrind_control")
            .args([what, &self.child.id().to_string()])
            .env("HOST", "127.0.0.1")
            .stdout(Stdio::null())
            .status()
            .expect("callgrind_control runs");
        assert!(status.success(), "callgrind_control {what} failed");
    }

    /// Instructions per request of `path` sent with `headers` (whole lines), the idle
    /// instructions taken off them, and the dump's file.
    fn measure(&mut self, path: &str, headers: &str) -> Measured {
        let mut conn = Conn::open(self.port);
        for _ in 0..WARMUP {
            assert_eq!(conn.get_with(path, headers).status, 200, "GET {path}");
        }
        self.control("--zero");
        let started = Instant::now();
        for _ in 0..REQUESTS {
            assert_eq!(conn.get_with(path, headers).status, 200, "GET {path}");
        }
        let took = started.elapsed();
        let (total, file) = self.dump();
        // What the process does meanwhile on its own (the job worker's polls, timers), counted
        // over an idle stretch as long as the requests took, is not the requests' cost. Taken
        // off every target's figure alike (the baselines have next to none) and printed.
        self.control("--zero");
        std::thread::sleep(took);
        let (idle, _) = self.dump();
        Measured {
            per_request: total.saturating_sub(idle) as f64 / REQUESTS as f64,
            idle_per_request: idle as f64 / REQUESTS as f64,
            file,
        }
    }

    /// Dumps the counters; returns their total and the dump's file.
    fn dump(&mut self) -> (u64, PathBuf) {
        self.control("--dump");
        self.dumps += 1;
        let file = PathBuf::from(format!(
            "{}.{}",
            self.out.as_ref().expect("under callgrind").display(),
            self.dumps
        ));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(total) = std::fs::read_to_string(&file).ok().and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("totals:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            }) {
                return (total, file);
            }
            assert!(Instant::now() < deadline, "no dump at {}", file.display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The crates whose functions the top list shows (the runtime's and hyper's futures nest and
/// recurse, which makes their inclusive shares meaningless).
const SHOWN: [&str; 12] = [
    "vibetuner",
    "minijinja",
    "sqlite3",
    "rusqlite",
    "serde",
    "bson",
    "tracing",
    "tower_sessions",
    "tower_http",
    "uuid",
    "e2e_shop",
    "bare_axum",
];

/// The top functions of a dump by inclusive cost (self cost is not reliable in a release build
/// without debug information): (share of the total, name).
fn top_functions(file: &Path) -> Vec<(String, String)> {
    let out = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(file)
        .output()
        .expect("callgrind_annotate runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip_while(|line| !line.contains("file:function"))
        .skip(2)
        .filter_map(|line| {
            // "  1,234,567 (12.34%)  file:function [binary]"
            let (_, rest) = line.split_once(" (")?;
            let (share, rest) = rest.split_once(")  ")?;
            let name = rest.split_once(':').map_or(rest, |(_, f)| f);
            let name = name.split(" [").next().unwrap_or(name);
            let share = share.trim();
            let recursive = share
                .trim_end_matches('%')
                .parse::<f64>()
                .is_ok_and(|p| p > 100.0);
            (!recursive && SHOWN.iter().any(|c| name.contains(c)))
                .then(|| (share.to_owned(), name.chars().take(110).collect()))
        })
        .take(TOP)
        .collect()
}

/// Figures from an earlier run (`label → instructions per request`).
fn previous(file: &Path) -> BTreeMap<String, f64> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut cells = l.split('|').map(str::trim).filter(|c| !c.is_empty());
            let label = cells.next()?;
            let value = cells.next()?.replace(',', "").parse().ok()?;
            Some((label.to_owned(), value))
        })
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let app = release_app();
    // Kept after the run: the dumps open in callgrind_annotate or KCachegrind.
    let work = fixed_dir("instructions");
    let data = work.join("data");
    let smtp = SmtpSink::start();
    let app_env = vec![
        ("DATA_DIR".to_owned(), data.to_string_lossy().into_owned()),
        ("SMTP_URL".to_owned(), smtp.url.clone()),
        ("APP_VERSION".to_owned(), "1.0.0".to_owned()),
    ];
    let serve = vec!["serve".to_owned(), "--port".to_owned(), "{port}".to_owned()];
    let baseline = PathBuf::from(env!("CARGO_BIN_EXE_bare_axum"));

    // The like-for-like check, natively: the app's / gives the baseline its headers.
    let headers = work.join("home-headers.txt");
    let (base_args, cookie, id) = {
        let native = Server::start(&app.binary, &serve, &app.dir, &app_env, None);
        let base_args = home_baseline_args(native.port, &app.dir, &headers);
        let base = Server::start(&baseline, &base_args, &app.dir, &app_env, None);
        let size = check_home_baseline(native.port, base.port);
        println!("the / baseline sends the app's page and headers ({size} bytes)");
        // Natively too (sign-in mail is slow under callgrind): the session and the notes stay
        // in the embedded store the measured process opens.
        let cookie = sign_in(native.port, &smtp, "bench@example.com");
        let id = seed_notes(native.port, &cookie, NOTES);
        (base_args, cookie, id)
    };

    let mut rows: Vec<(String, Measured)> = Vec::new();
    {
        let mut base = Server::start(
            &baseline,
            &base_args,
            &app.dir,
            &app_env,
            Some(&work.join("callgrind.baseline.out")),
        );
        for (label, path, headers) in [
            ("bare axum /health/ping", "/health/ping", ""),
            ("bare axum + minijinja /hello (htmx)", HELLO, HTMX),
            ("bare axum + minijinja /", "/", ""),
        ] {
            rows.push((label.to_owned(), base.measure(path, headers)));
        }
    }
    {
        let mut server = Server::start(
            &app.binary,
            &serve,
            &app.dir,
            &app_env,
            Some(&work.join("callgrind.app.out")),
        );
        let signed_in = format!("Cookie: {cookie}\r\n");
        for (label, path, headers) in [
            ("app /health/ping", "/health/ping".to_owned(), ""),
            ("app /hello (htmx)", HELLO.to_owned(), HTMX),
            ("app /", "/".to_owned(), ""),
            (
                "app /api/notes?limit=20",
                "/api/notes?limit=20".to_owned(),
                signed_in.as_str(),
            ),
            (
                "app /api/notes/{id}",
                format!("/api/notes/{id}"),
                signed_in.as_str(),
            ),
        ] {
            rows.push((label.to_owned(), server.measure(&path, headers)));
        }
    }

    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/instructions.txt");
    let before = previous(&file);
    let figure = |label: &str| {
        rows.iter()
            .find(|r| r.0 == label)
            .map_or(f64::NAN, |r| r.1.per_request)
    };
    let mut table = format!(
        "Instructions per request under callgrind ({REQUESTS} requests after {WARMUP}, one keep-alive connection;\n\
         release, ENVIRONMENT=prod, embedded store, {NOTES} notes). Written by scripts/bench-instructions.sh.\n\
         /health/ping sits outside the framework's stack; /hello (htmx) is the routed request through all of it.\n\
         \"idle\" is what the process counted on its own over an idle stretch as long, per request: taken off every row.\n\n\
         | request | instructions | vs baseline | idle (taken off) |\n|---|---|---|---|\n"
    );
    for (label, m) in &rows {
        let n = m.per_request;
        let ratio = match label.as_str() {
            "app /health/ping" => format!("{:.2}x", n / figure("bare axum /health/ping")),
            "app /hello (htmx)" => {
                format!("{:.2}x", n / figure("bare axum + minijinja /hello (htmx)"))
            }
            "app /" => format!("{:.2}x", n / figure("bare axum + minijinja /")),
            _ => String::new(),
        };
        table.push_str(&format!(
            "| {label} | {n:.0} | {ratio} | {:.0} |\n",
            m.idle_per_request
        ));
    }
    std::fs::write(&file, &table).expect("the figures file");
    println!("\n{table}");
    for (label, m) in &rows {
        if let Some(old) = before.get(label) {
            println!(
                "{label}: {:+.1}% against the figures committed before",
                (m.per_request / old - 1.0) * 100.0
            );
        }
    }
    for (label, m) in &rows {
        println!(
            "\n{label}: {:.0} instructions per request; top functions (inclusive):",
            m.per_request
        );
        for (share, name) in top_functions(&m.file) {
            println!("  {share:>7}  {name}");
        }
    }
    println!("\ncallgrind dumps: {}", work.display());
}
