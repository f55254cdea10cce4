//! Developer-loop benchmark (`scripts/bench-dev.sh [--cold]`, i.e. `cargo bench --profile dev
//! -p vibetuner-e2e --bench dev_loop [-- --cold]`): on a generated project under `vibetuner dev`, the median of several
//! runs of
//!
//! 1. template edit → the `template` event on `/_dev/reload` and the page served again with the
//!    new text (what the browser's reload waits for);
//! 2. CSS bundle written → the `css` event (the page then swaps its stylesheet);
//! 3. Rust handler edit → the new response served (rebuild, start, socket handover);
//! 4. `vibetuner new` → the first 200 from `vibetuner dev`, with the dependencies already
//!    compiled in the shared target directory (warm); with `--cold`, once more into an empty
//!    target directory (the cargo registry stays cached).

use std::path::Path;
use std::time::{Duration, Instant};

use vibetuner_e2e::{Dev, Events, dev_project, dev_serving, edit_file, free_port, scratch_dir};

const RUNS: usize = 9;
/// How often a step polls for the new page: short, since it is measured.
const POLL: Duration = Duration::from_millis(5);
const RUST_RUNS: usize = 5;

/// A pause between runs that varies, so edits do not lock onto the stream's 100 ms polls.
fn settle(run: usize) -> Duration {
    Duration::from_millis(300 + (run as u64 * 37) % 100)
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn row(what: &str, runs: Vec<Duration>, target: &str) {
    let n = runs.len();
    let (min, max) = (runs.iter().min().copied(), runs.iter().max().copied());
    println!(
        "| {what} | {:.0} ms | {:.0}–{:.0} ms | {n} | {target} |",
        median(runs).as_secs_f64() * 1000.0,
        min.unwrap_or_default().as_secs_f64() * 1000.0,
        max.unwrap_or_default().as_secs_f64() * 1000.0,
    );
}

/// `vibetuner new` then `vibetuner dev` until `/` answers 200, building into `target`. The
/// project is `Bench New`, a package of its own: cargo would take a copy of `Bench Dev` at
/// another path as already built.
async fn new_to_first_200(client: &reqwest::Client, tag: &str, target: &Path) -> Duration {
    let start = Instant::now();
    let dir = dev_project(tag, "Bench New");
    let port = free_port();
    let dev = Dev::start_with_target(&dir, port, target);
    dev.until_body(client, &format!("http://127.0.0.1:{port}/"), "<html", POLL)
        .await;
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let cold = std::env::args().any(|a| a == "--cold");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client");

    // Warm-up: the project every edit below happens in (its first build fills the cache).
    let (dir, base, dev) = dev_serving("bench-dev", "Bench Dev").await;
    let css = dir.join("assets/statics/css/bundle.css");

    let mut template = Vec::new();
    let mut events = Events::open(&base).await;
    events.next("hello").await;
    let page = dir.join("templates/frontend/hello.html.jinja");
    let mut shown = "!".to_owned();
    for i in 0..RUNS {
        let next = format!("! ({i})");
        let start = Instant::now();
        edit_file(&page, |s| {
            s.replace(&format!("{shown}</h1>"), &format!("{next}</h1>"))
        });
        shown = next;
        events.next("template").await;
        dev.until_body(&client, &format!("{base}/hello"), &format!("! ({i})"), POLL)
            .await;
        template.push(start.elapsed());
        tokio::time::sleep(settle(i)).await;
    }

    let mut styles = Vec::new();
    for i in 0..RUNS {
        let start = Instant::now();
        std::fs::write(&css, format!("body {{ margin: {i}px }}\n")).unwrap();
        events.next("css").await;
        styles.push(start.elapsed());
        tokio::time::sleep(settle(i)).await;
    }

    let mut rust = Vec::new();
    let routes = dir.join("src/routes.rs");
    let mut word = "world".to_owned();
    for i in 0..RUST_RUNS {
        let next = format!("world{i}");
        let start = Instant::now();
        edit_file(&routes, |s| {
            s.replace(&format!("\"{word}\".into()"), &format!("\"{next}\".into()"))
        });
        dev.until_body(
            &client,
            &format!("{base}/hello"),
            &format!("Hello, {next}!"),
            POLL,
        )
        .await;
        rust.push(start.elapsed());
        word = next;
    }
    // What `vibetuner dev` reported for each rebuild: the cargo part of the Rust edits.
    let builds: Vec<Duration> = dev
        .log()
        .lines()
        .filter_map(|l| l.split("built in ").nth(1)?.strip_suffix('s')?.parse().ok())
        .map(Duration::from_secs_f64)
        .collect();
    let builds = builds[builds.len().saturating_sub(RUST_RUNS)..].to_vec();
    drop(events);
    drop(dev);

    let warm = vec![new_to_first_200(&client, "bench-new", &vibetuner_e2e::target_dir()).await];
    let cold = if cold {
        let target = scratch_dir("bench-cold-target");
        let took = new_to_first_200(&client, "bench-cold", &target).await;
        let _ = std::fs::remove_dir_all(&target);
        Some(took)
    } else {
        None
    };

    println!("\n| step | median | range | runs | target |\n| --- | --- | --- | --- | --- |");
    row("template edit → page served again", template, "≤ 300 ms");
    row("CSS bundle written → css event", styles, "≤ 1 s");
    row("Rust handler edit → new response", rust, "≤ 8 s");
    row("  of which `cargo build` (dev's report)", builds, "");
    row("`vibetuner new` → first 200 (warm)", warm, "≤ 30 s");
    if let Some(took) = cold {
        row("`vibetuner new` → first 200 (cold)", vec![took], "reported");
    }
}
