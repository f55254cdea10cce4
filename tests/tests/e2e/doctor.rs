//! `vibetuner doctor` and `vibetuner run` on a freshly generated project: a good project passes,
//! and each broken state (missing or stale bundle, bad setting, dead Redis, port in use) shows
//! exactly the check that names the fix. Reachable services need `TEST_REDIS_URL` and
//! `TEST_MONGODB_URL` (`eval "$(scripts/services.sh start)"`).

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use vibetuner_e2e::{cli, fixed_dir, free_port, generated_app, run_cli, target_dir};

fn service(var: &str, what: &str) -> String {
    std::env::var(var).ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        panic!("{var} is not set: run scripts/test.sh (it starts {what}) or `eval \"$(scripts/services.sh start)\"`")
    })
}

/// Settings the test's own environment must not leak into the project.
const CLEARED: [&str; 12] = [
    "ENVIRONMENT",
    "DEBUG",
    "SESSION_KEY",
    "HOST",
    "PORT",
    "MONGODB_URL",
    "REDIS_URL",
    "SMTP_URL",
    "BASE_URL",
    "DATA_DIR",
    "VIBETUNER_ROOT",
    "CREDENTIALS_DIRECTORY",
];

/// A generated project named `slug` (its own binary, so it replaces neither the shared app's
/// nor another test's) with the shared app's built bundles copied in.
fn project(slug: &str) -> PathBuf {
    let shared = generated_app();
    let base = fixed_dir(slug);
    let out = run_cli(&base, &["new", slug, "--defaults"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = base.join(slug);
    for bundle in [
        "assets/statics/css/bundle.css",
        "assets/statics/js/bundle.js",
    ] {
        let target = dir.join(bundle);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(shared.dir.join(bundle), target).expect("the shared bundles");
    }
    dir
}

fn in_project(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(cli());
    cmd.args(args)
        .current_dir(dir.join("templates"))
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_NET_OFFLINE", "true")
        .stdin(Stdio::null());
    for key in CLEARED {
        cmd.env_remove(key);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the CLI starts")
}

/// Runs `doctor --json` from a subfolder; returns the exit code, each check's status and the report.
fn doctor(dir: &Path, env: &[(&str, &str)]) -> (i32, BTreeMap<String, String>, Value) {
    let out = in_project(dir, &["doctor", "--json"], env);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let statuses = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (out.status.code().expect("an exit code"), statuses, report)
}

/// The statuses of a good project in dev, with `changes` applied.
fn expected(changes: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut all: BTreeMap<String, String> = [
        "cargo",
        "rustc",
        "npm-or-bun",
        "project-files",
        "app-builds",
        "framework-version",
        "settings",
        "templates",
        "setting-names",
        "mongodb",
        "redis",
        "smtp",
        "css-bundle",
        "js-bundle",
        "port",
    ]
    .iter()
    .map(|n| ((*n).to_owned(), "ok".to_owned()))
    .collect();
    // Dev settings with the template's placeholder SESSION_KEY would not start in prod.
    all.insert("settings-prod".into(), "warn".into());
    for (name, status) in changes {
        all.insert((*name).to_owned(), (*status).to_owned());
    }
    all
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
}

fn set_modified(path: &Path, when: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .expect("set the modification time");
}

#[test]
fn doctor_passes_a_good_project_and_names_the_fix_for_broken_ones() {
    let dir = project("clinic");
    let port = free_port().to_string();
    let port_env = ("PORT", port.as_str());

    let (code, statuses, report) = doctor(&dir, &[port_env]);
    assert_eq!(statuses, expected(&[]), "{report:#}");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        report["root"].as_str(),
        Some(dir.to_str().unwrap()),
        "found from a subfolder"
    );
    assert!(
        check(&report, "settings-prod")["detail"]
            .as_str()
            .unwrap()
            .contains("SESSION_KEY"),
        "{report:#}"
    );

    // The human report: one line per check, and a fix under each problem.
    let text = in_project(&dir, &["doctor"], &[port_env]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("✓ templates: "), "{text}");
    assert!(text.contains("! settings-prod: "), "{text}");
    assert!(text.contains("    fix: "), "{text}");

    // Real services answer their protocol's ping.
    let mongodb = service("TEST_MONGODB_URL", "SecantusDB");
    let redis = service("TEST_REDIS_URL", "redis-server");
    let (code, statuses, report) = doctor(
        &dir,
        &[port_env, ("MONGODB_URL", &mongodb), ("REDIS_URL", &redis)],
    );
    assert_eq!(statuses, expected(&[]), "{report:#}");
    assert_eq!(code, 0);
    assert!(
        check(&report, "redis")["detail"]
            .as_str()
            .unwrap()
            .contains("answers PING")
    );

    // A missing bundle fails; a stale one is a warning.
    let css = dir.join("assets/statics/css/bundle.css");
    let kept = std::fs::read(&css).unwrap();
    std::fs::remove_file(&css).unwrap();
    let (code, statuses, report) = doctor(&dir, &[port_env]);
    assert_eq!(statuses, expected(&[("css-bundle", "fail")]), "{report:#}");
    assert_eq!(code, 1);
    assert!(
        check(&report, "css-bundle")["fix"]
            .as_str()
            .unwrap()
            .contains("npm run build")
    );
    std::fs::write(&css, kept).unwrap();
    set_modified(&css, SystemTime::now() - Duration::from_secs(3600));
    let (code, statuses, report) = doctor(&dir, &[port_env]);
    assert_eq!(statuses, expected(&[("css-bundle", "warn")]), "{report:#}");
    assert_eq!(code, 0);
    set_modified(&css, SystemTime::now() + Duration::from_secs(3600));

    // A bad setting fails with the app's own message; templates wait for valid settings.
    let (code, statuses, report) = doctor(&dir, &[port_env, ("DEBUG", "maybe")]);
    assert_eq!(
        statuses,
        expected(&[("settings", "fail"), ("templates", "warn")]),
        "{report:#}"
    );
    assert_eq!(code, 1);
    assert!(
        check(&report, "settings")["detail"]
            .as_str()
            .unwrap()
            .contains("DEBUG"),
        "{report:#}"
    );

    // A misspelt setting is named with the one it was meant to be.
    let (code, statuses, report) = doctor(&dir, &[port_env, ("SESION_KEY", "x")]);
    assert_eq!(
        statuses,
        expected(&[("setting-names", "warn")]),
        "{report:#}"
    );
    assert_eq!(code, 0);
    assert!(
        check(&report, "setting-names")["detail"]
            .as_str()
            .unwrap()
            .contains("SESION_KEY is set, but no setting has that name: did you mean SESSION_KEY?"),
        "{report:#}"
    );

    // A configured Redis that does not answer.
    let dead = format!("redis://127.0.0.1:{}/0", free_port());
    let (code, statuses, report) = doctor(&dir, &[port_env, ("REDIS_URL", &dead)]);
    assert_eq!(statuses, expected(&[("redis", "fail")]), "{report:#}");
    assert_eq!(code, 1);
    assert!(
        check(&report, "redis")["fix"]
            .as_str()
            .unwrap()
            .contains("REDIS_URL")
    );

    // The port is taken.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let (code, statuses, report) = doctor(&dir, &[("PORT", &taken_port)]);
    assert_eq!(statuses, expected(&[("port", "fail")]), "{report:#}");
    assert_eq!(code, 1);
    drop(taken);

    // Production: the placeholder session key fails, with how to make a key.
    let (code, statuses, report) = doctor(&dir, &[port_env, ("ENVIRONMENT", "prod")]);
    let mut prod = expected(&[("settings", "fail"), ("templates", "warn")]);
    prod.remove("settings-prod");
    assert_eq!(statuses, prod, "{report:#}");
    assert_eq!(code, 1);

    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}

#[test]
fn run_forwards_to_the_app_binary_from_a_subfolder() {
    let dir = project("runner");
    let out = in_project(&dir, &["run", "version"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("runner 0.1.0 (vibetuner "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The app's `routes`: what the builder and the framework recorded, with names and layers.
    let out = in_project(&dir, &["run", "routes"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let routes = String::from_utf8_lossy(&out.stdout);
    let has_row = |tokens: &[&str]| {
        routes
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().starts_with(tokens))
    };
    for row in [
        &["METHOD", "PATH", "NAME", "LAYERS"][..],
        &["GET", "/hello", "app"],
        &["GET,POST", "/notes", "notes_page", "app"],
        &["DELETE", "/notes/{id}", "notes_item", "app"],
        &[
            "GET",
            "/api/notes",
            "notes_list",
            "crud",
            "owned_by(owner_id),",
            "app",
        ],
        &["PATCH", "/api/notes/{id}", "notes_update", "crud"],
        &["POST", "/auth/magic-link-login", "session,", "csrf,"],
        &["GET", "/_dev/outbox", "loopback", "only,", "session,"],
        &["GET", "/static/{*path}", "body", "limit,"],
        &["GET", "/health/ping", "request", "id"],
        &["ANY", "*", "fallback:"],
    ] {
        assert!(has_row(row), "no row {row:?} in:\n{routes}");
    }
    assert!(!routes.contains("not listed"), "{routes}");

    let out = in_project(&dir, &["run", "db", "find", "bad name"], &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the app's exit code passes through"
    );

    let outside = Command::new(cli())
        .args(["run", "version"])
        .current_dir(dir.parent().unwrap())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(outside.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&outside.stderr).contains("no vibetuner.toml"),
        "{}",
        String::from_utf8_lossy(&outside.stderr)
    );
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}
