//! `vibetuner doctor`: checks a project's toolchain, files, settings, services, bundles and
//! port, and says how to fix each problem.

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::Serialize;
use vibetuner::config::Source;
use vibetuner::health::{CheckError, redact, service_address};

/// How long a service may take to answer.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(3);

/// Arguments of `vibetuner doctor`.
#[derive(clap::Args)]
#[command(after_help = "\
Checks, in order: toolchain (cargo, rustc, npm or bun), project files, framework version, the \
app builds, settings and templates (the app's own `check`; in dev also whether production \
settings would pass), services when configured (MongoDB and Redis answer a ping, SMTP accepts \
a connection), CSS/JS bundles built and newer than their sources, and the port is free.

✓ passed, ! works but needs attention, ✗ fails: the exit code is 1 when anything fails.")]
pub(crate) struct DoctorArgs {
    /// Print the checks as JSON: {"root", "ok", "checks": [{"name", "status", "detail", "fix"}]}.
    #[arg(long)]
    json: bool,
    /// Check as this environment instead of ENVIRONMENT from .env and the shell.
    #[arg(long, value_parser = ["dev", "prod"])]
    env: Option<String>,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "✓",
            Self::Warn => "!",
            Self::Fail => "✗",
        })
    }
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

#[derive(Serialize)]
struct Report {
    root: PathBuf,
    ok: bool,
    checks: Vec<Check>,
}

/// Runs every check in the project around the current folder and prints the report.
pub(crate) fn run(args: &DoctorArgs) -> anyhow::Result<()> {
    let root = crate::project::root()?;
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    if let Some(environment) = &args.env {
        env.push(("ENVIRONMENT".into(), environment.clone()));
    }
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let source = Source::layered(&root, credentials.as_deref(), env)
        .with_context(|| format!("cannot read the settings of {}", root.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;

    let mut checks = toolchain();
    let files_ok = project_files(&root, &mut checks);
    if files_ok {
        let built = app_builds(&root);
        let built_ok = built.status == Status::Ok;
        checks.push(built);
        checks.push(framework_version(&root));
        if built_ok {
            checks.extend(app_check(&root, args.env.as_deref(), &source));
        }
    }
    checks.push(setting_names(&source));
    checks.extend(runtime.block_on(services(&source)));
    checks.extend(bundles(&root));
    checks.push(port(&source));

    let ok = checks.iter().all(|c| c.status != Status::Fail);
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let report = Report { root, ok, checks };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    anyhow::ensure!(
        ok,
        "{failed} check(s) failed: fix them as each says, then run `vibetuner doctor` again"
    );
    Ok(())
}

fn print_report(report: &Report) {
    println!("vibetuner doctor: {}", report.root.display());
    for check in &report.checks {
        println!("{} {}: {}", check.status, check.name, check.detail);
        if let Some(fix) = &check.fix {
            println!("    fix: {fix}");
        }
    }
}

/// The first line of `PROGRAM --version`, or `None` when it cannot run.
fn version_of(program: &str) -> Option<String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next().unwrap_or_default().trim().to_owned())
}

fn toolchain() -> Vec<Check> {
    let rust_fix =
        "install Rust with rustup (https://rustup.rs) or enter the dev shell (`nix develop`)";
    let mut checks = Vec::new();
    for program in ["cargo", "rustc"] {
        checks.push(match version_of(program) {
            Some(v) => Check::ok(program, v),
            None => Check::fail(
                program,
                format!("`{program} --version` does not run"),
                rust_fix,
            ),
        });
    }
    let js = ["npm", "bun"]
        .iter()
        .find_map(|p| version_of(p).map(|v| format!("{p} {v}")));
    checks.push(match js {
        Some(v) => Check::ok("npm-or-bun", v),
        None => Check::fail(
            "npm-or-bun",
            "neither npm nor bun runs: the CSS and JS bundles cannot be built",
            "install Node.js (npm) or bun, or enter the dev shell (`nix develop`)",
        ),
    });
    checks
}

/// Checks the files every project has; false when the app cannot be built from them.
fn project_files(root: &Path, checks: &mut Vec<Check>) -> bool {
    let answers = std::fs::read_to_string(root.join("vibetuner.toml"))
        .map_err(|e| e.to_string())
        .and_then(|text| {
            vibetuner::Project::from_answers(&text)
                .map(drop)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = answers {
        checks.push(Check::fail(
            "project-files",
            format!("vibetuner.toml is not readable: {e}"),
            "restore it from version control, or write it with `vibetuner adopt`",
        ));
        return false;
    }
    let missing: Vec<&str> = [
        "Cargo.toml",
        "src/main.rs",
        "package.json",
        "assets/config.css",
        "assets/config.js",
        "templates/frontend",
    ]
    .into_iter()
    .filter(|f| !root.join(f).exists())
    .collect();
    if missing.is_empty() {
        checks.push(Check::ok(
            "project-files",
            "Cargo.toml, vibetuner.toml, package.json, assets and templates are there",
        ));
    } else {
        checks.push(Check::fail(
            "project-files",
            format!("missing: {}", missing.join(", ")),
            "restore them from version control, or compare with a fresh `vibetuner new`",
        ));
    }
    root.join("Cargo.toml").is_file() && root.join("src/main.rs").is_file()
}

/// The last `n` lines of a command's standard error.
fn tail(out: &Output, n: usize) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn app_builds(root: &Path) -> Check {
    let out = Command::new("cargo")
        .args(["build", "--quiet"])
        .current_dir(root)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => Check::ok("app-builds", "cargo build succeeds"),
        Ok(out) => Check::fail(
            "app-builds",
            format!("cargo build fails:\n{}", tail(&out, 12)),
            "run `cargo build` and fix the errors it shows",
        ),
        Err(e) => Check::fail(
            "app-builds",
            format!("cannot run cargo: {e}"),
            "install Rust with rustup (https://rustup.rs)",
        ),
    }
}

/// The framework version the project is locked to.
fn locked_framework(root: &Path) -> Option<String> {
    let lock: toml::Table = std::fs::read_to_string(root.join("Cargo.lock"))
        .ok()?
        .parse()
        .ok()?;
    lock.get("package")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(|n| n.as_str()) == Some("vibetuner"))?
        .get("version")?
        .as_str()
        .map(str::to_owned)
}

fn framework_version(root: &Path) -> Check {
    let cli = env!("CARGO_PKG_VERSION");
    match locked_framework(root) {
        Some(v) if v == cli => Check::ok(
            "framework-version",
            format!("vibetuner {v}, the same as this CLI"),
        ),
        Some(v) => Check::warn(
            "framework-version",
            format!("the project uses vibetuner {v}, this CLI is {cli}"),
            format!(
                "use the CLI of the project's version (`cargo install --git https://github.com/alltuner/vibetuner-rs --tag v{v} vibetuner-cli`), or move the project to {cli}"
            ),
        ),
        None => Check::warn(
            "framework-version",
            "Cargo.lock does not name the vibetuner crate",
            "run `cargo build` to write Cargo.lock",
        ),
    }
}

/// Keys set in .env, .env.local or the environment that look like a misspelt framework
/// setting (`SESION_KEY`): the app would silently run without them.
fn setting_names(source: &Source) -> Check {
    let warnings = vibetuner::config::typo_warnings(source);
    if warnings.is_empty() {
        Check::ok("setting-names", "no key looks like a misspelt setting")
    } else {
        Check::warn(
            "setting-names",
            warnings.join("; "),
            "rename the key (`cargo run -- settings` lists every setting and its value)",
        )
    }
}

/// The app's own `check` (settings and templates) in the environment chosen, and in dev
/// whether production settings would pass too.
fn app_check(root: &Path, env: Option<&str>, source: &Source) -> Vec<Check> {
    let environment = source
        .value("ENVIRONMENT")
        .unwrap_or("dev")
        .trim()
        .to_ascii_lowercase();
    let mut checks = Vec::new();
    let run = |environment: Option<&str>| {
        let mut cmd = crate::project::app_command(root, &["check".into()]);
        cmd.stdin(Stdio::null());
        if let Some(e) = environment {
            cmd.env("ENVIRONMENT", e);
        }
        cmd.output()
    };
    match run(env) {
        Ok(out) if out.status.success() => {
            checks.push(Check::ok(
                "settings",
                format!("valid for ENVIRONMENT={environment}"),
            ));
            let said = String::from_utf8_lossy(&out.stdout);
            let templates = said
                .split(", ")
                .find(|part| part.ends_with("templates compile"))
                .unwrap_or("templates compile");
            checks.push(Check::ok("templates", templates.to_owned()));
        }
        Ok(out) => {
            let error = tail(&out, 8);
            let error = error.strip_prefix("error: ").unwrap_or(&error).to_owned();
            if error.contains("templates do not compile") {
                checks.push(Check::ok(
                    "settings",
                    format!("valid for ENVIRONMENT={environment}"),
                ));
                checks.push(Check::fail(
                    "templates",
                    error,
                    "fix the templates named above (`cargo run -- check` repeats this)",
                ));
            } else {
                checks.push(Check::fail(
                    "settings",
                    error,
                    "change the setting named above in .env, .env.local or the environment (`cargo run -- check` repeats this)",
                ));
                checks.push(Check::warn(
                    "templates",
                    "not checked: the settings are invalid",
                    "fix the settings first",
                ));
            }
        }
        Err(e) => checks.push(Check::fail(
            "settings",
            format!("cannot run the app's check: {e}"),
            "run `cargo run -- check` to see why",
        )),
    }
    if environment == "dev" && env.is_none() {
        checks.push(match run(Some("prod")) {
            Ok(out) if out.status.success() => Check::ok(
                "settings-prod",
                "these settings would also pass with ENVIRONMENT=prod",
            ),
            Ok(out) => {
                let error = tail(&out, 4);
                let error = error.strip_prefix("error: ").unwrap_or(&error).to_owned();
                Check::warn(
                    "settings-prod",
                    format!("with ENVIRONMENT=prod: {error}"),
                    "set the production settings where the app runs (SESSION_KEY from `vibetuner crypto generate-key`, SMTP_URL, BASE_URL or fqdn); `vibetuner doctor --env prod` checks them",
                )
            }
            Err(e) => Check::warn(
                "settings-prod",
                format!("cannot run the app's check: {e}"),
                "run `ENVIRONMENT=prod cargo run -- check`",
            ),
        });
    }
    checks
}

async fn services(source: &Source) -> Vec<Check> {
    vec![
        mongodb(source.value("MONGODB_URL")).await,
        redis(source.value("REDIS_URL")).await,
        smtp(source.value("SMTP_URL")).await,
    ]
}

async fn timed<T, E: fmt::Display>(work: impl Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::time::timeout(SERVICE_TIMEOUT, work).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {}s", SERVICE_TIMEOUT.as_secs())),
    }
}

async fn mongodb(url: Option<&str>) -> Check {
    let Some(url) = url else {
        return Check::ok("mongodb", "MONGODB_URL not set: the embedded store is used");
    };
    let answered = timed(async {
        let store = vibetuner::Store::mongo(url, "admin").await?;
        store.ping().await
    })
    .await;
    match answered {
        Ok(()) => Check::ok("mongodb", format!("{} answers ping", redact(url))),
        Err(e) => Check::fail(
            "mongodb",
            format!("{}: {e}", redact(url)),
            "start MongoDB (`nix run .#services`), fix MONGODB_URL, or unset it to use the embedded store",
        ),
    }
}

async fn redis(url: Option<&str>) -> Check {
    let Some(url) = url else {
        return Check::ok(
            "redis",
            "REDIS_URL not set: sessions and tasks use the store",
        );
    };
    let answered = timed(async {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    })
    .await;
    match answered {
        Ok(_) => Check::ok("redis", format!("{} answers PING", redact(url))),
        Err(e) => Check::fail(
            "redis",
            format!("{}: {e}", redact(url)),
            "start Redis (`nix run .#services`), fix REDIS_URL, or unset it",
        ),
    }
}

/// The SMTP server's `host:port`, with lettre's default ports (465 for `smtps`, 587 with
/// `tls=required` or `opportunistic`, else 25).
fn smtp_address(url: &str) -> Result<String, CheckError> {
    let default_port = if url.starts_with("smtps://") {
        465
    } else if url.contains("tls=required") || url.contains("tls=opportunistic") {
        587
    } else {
        25
    };
    service_address(url, default_port)
}

async fn smtp(url: Option<&str>) -> Check {
    let Some(url) = url else {
        return Check::ok(
            "smtp",
            "SMTP_URL not set: development writes mail to the outbox (/_dev/outbox)",
        );
    };
    let answered = match smtp_address(url) {
        Ok(addr) => timed(tokio::net::TcpStream::connect(addr.clone()))
            .await
            .map(|_| addr),
        Err(e) => Err(e.to_string()),
    };
    match answered {
        Ok(addr) => Check::ok("smtp", format!("{addr} accepts connections")),
        Err(e) => Check::fail(
            "smtp",
            format!("{}: {e}", redact(url)),
            "check SMTP_URL's host and port (smtps://user:password@host:465), and that this machine may reach it",
        ),
    }
}

/// The newest modification time among `paths` (files, or folders searched recursively).
fn newest(paths: &[PathBuf]) -> Option<(SystemTime, PathBuf)> {
    let mut best: Option<(SystemTime, PathBuf)> = None;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else if let Ok(modified) = path.metadata().and_then(|m| m.modified())
            && best.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            best = Some((modified, path));
        }
    }
    best
}

fn bundles(root: &Path) -> Vec<Check> {
    let css_sources: Vec<PathBuf> = ["assets/config.css", "templates", "src"]
        .iter()
        .map(|p| root.join(p))
        .collect();
    let js_sources = vec![root.join("assets/config.js")];
    [
        ("css-bundle", "assets/statics/css/bundle.css", css_sources),
        ("js-bundle", "assets/statics/js/bundle.js", js_sources),
    ]
    .into_iter()
    .map(|(name, bundle, sources)| {
        let Ok(built) = root.join(bundle).metadata().and_then(|m| m.modified()) else {
            return Check::fail(
                name,
                format!("{bundle} is missing: pages load without styles or scripts"),
                "npm install && npm run build (or: bun install && bun run build)",
            );
        };
        match newest(&sources) {
            Some((changed, path)) if changed > built => Check::warn(
                name,
                format!(
                    "{bundle} is older than {}",
                    path.strip_prefix(root).unwrap_or(&path).display()
                ),
                "npm run build, or keep `npm run watch` running",
            ),
            _ => Check::ok(name, format!("{bundle} is newer than its sources")),
        }
    })
    .collect()
}

fn port(source: &Source) -> Check {
    let prod = source
        .value("ENVIRONMENT")
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("prod"));
    let default_host = if prod { "0.0.0.0" } else { "127.0.0.1" };
    let host = source
        .value("HOST")
        .unwrap_or(default_host)
        .trim()
        .to_owned();
    let port = match source.parse::<u16>("PORT", "a TCP port (0-65535)") {
        Ok(port) => port.unwrap_or(8000),
        Err(e) => {
            return Check::fail(
                "port",
                e.to_string(),
                "set PORT to a number from 1 to 65535",
            );
        }
    };
    let addr = format!("{host}:{port}");
    match TcpListener::bind(&addr) {
        Ok(_) => Check::ok("port", format!("{addr} is free")),
        Err(e) => Check::fail(
            "port",
            format!("cannot listen on {addr}: {e}"),
            "stop the process using the port (another app, or this one already running), or set PORT in .env.local",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_ports_follow_lettre() {
        assert_eq!(
            smtp_address("smtps://u:p@mail.example.com").unwrap(),
            "mail.example.com:465"
        );
        assert_eq!(
            smtp_address("smtp://mail.example.com?tls=required").unwrap(),
            "mail.example.com:587"
        );
        assert_eq!(
            smtp_address("smtp://127.0.0.1:2525").unwrap(),
            "127.0.0.1:2525"
        );
        assert_eq!(
            smtp_address("smtp://mail.example.com").unwrap(),
            "mail.example.com:25"
        );
    }
}
