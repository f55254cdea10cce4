//! `vibetuner new` output (insta snapshots), its refusals, and the app binary's own commands.

use std::path::Path;
use std::process::{Command, Stdio};

use vibetuner_e2e::{generated_app, run_cli, scratch_dir, workspace_root};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            list_files(root, &path, out);
        } else {
            out.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

#[test]
fn new_with_defaults_and_data_generates_the_project() {
    let base = scratch_dir("gen");
    let out = run_cli(
        &base,
        &[
            "new",
            "blog",
            "--defaults",
            "--data",
            "project_name=My Blog",
            "--data",
            "fqdn=blog.example.com",
            "--data",
            "supported_languages=es, ca",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Next steps:") && stdout.contains("cargo run -- serve"),
        "{stdout}"
    );

    let dir = base.join("blog");
    let mut files = Vec::new();
    list_files(&dir, &dir, &mut files);
    files.sort();
    insta::assert_snapshot!("generated_files", files.join("\n"));

    let framework = workspace_root()
        .join("crates/vibetuner")
        .canonicalize()
        .unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&framework.to_string_lossy()), "[FRAMEWORK]");
    settings.add_filter(r#"version = "\d+\.\d+\.\d+""#, "version = \"[VERSION]\"");
    settings.bind(|| {
        for name in [
            "Cargo.toml",
            "vibetuner.toml",
            "package.json",
            "src/main.rs",
            ".env",
        ] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            insta::assert_snapshot!(name.replace(['/', '.'], "_"), text);
        }
    });
    std::fs::remove_dir_all(base).unwrap();
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[test]
fn new_refuses_a_non_empty_folder_and_writes_nothing() {
    let base = scratch_dir("nonempty");
    std::fs::create_dir(base.join("taken")).unwrap();
    std::fs::write(base.join("taken/notes.txt"), "keep me").unwrap();
    let out = run_cli(&base, &["new", "taken", "--defaults"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already exists and is not empty"),
        "{}",
        stderr(&out)
    );
    let entries: Vec<_> = std::fs::read_dir(base.join("taken")).unwrap().collect();
    assert_eq!(entries.len(), 1, "nothing was added");
    std::fs::remove_dir_all(base).unwrap();
}

#[test]
fn new_refuses_bad_answers_before_writing() {
    let base = scratch_dir("bad");
    for (args, message) in [
        (
            vec!["new", "x1", "--defaults", "--data", "project_slug=My_App"],
            "invalid project_slug \"My_App\"",
        ),
        (
            vec!["new", "x2", "--defaults", "--data", "author_email=nobody"],
            "invalid author_email",
        ),
        (
            vec!["new", "x3", "--defaults", "--data", "colour=red"],
            "unknown key \"colour\"",
        ),
        (
            vec!["new", "x4", "--defaults", "--data", "fqdn"],
            "must look like key=value",
        ),
        (vec!["new", "x5"], "standard input is not a terminal"),
    ] {
        let out = run_cli(&base, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        let target = base.join(args[1]);
        assert!(!target.exists(), "{args:?} wrote {}", target.display());
    }
    let out = run_cli(&base, &["new"]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    std::fs::remove_dir_all(base).unwrap();
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["new", "--help"],
        vec!["crypto", "generate-key", "--help"],
        vec!["dev", "--help"],
        vec!["doctor", "--help"],
        vec!["generate", "--help"],
        vec!["generate", "scaffold", "--help"],
        vec!["generate", "model", "--help"],
        vec!["generate", "page", "--help"],
        vec!["generate", "task", "--help"],
        vec!["generate", "email", "--help"],
        vec!["eject", "--help"],
        vec!["run", "--help"],
        vec!["update", "--help"],
        vec!["adopt", "--help"],
    ] {
        let out = run_cli(&workspace_root(), &args);
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
    let out = run_cli(&workspace_root(), &["crypto", "generate-key"]);
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(key.len(), 64, "48 random bytes in URL-safe base64: {key}");
}

fn app_command(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let app = generated_app();
    let mut cmd = Command::new(&app.binary);
    cmd.args(args)
        .current_dir(&app.dir)
        .env_clear()
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn app_refuses_to_start_in_prod_with_the_placeholder_session_key() {
    let out = app_command(&["serve", "--port", "0"], &[("ENVIRONMENT", "prod")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("SESSION_KEY is the template placeholder while ENVIRONMENT=prod"),
        "{err}"
    );
    assert!(err.contains("vibetuner crypto generate-key"), "{err}");
    let out = app_command(
        &["serve", "--port", "0"],
        &[("ENVIRONMENT", "prod"), ("SESSION_KEY", "")],
    );
    assert!(
        stderr(&out).contains("SESSION_KEY is empty"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn app_settings_lists_every_setting_with_its_value_secrets_hidden() {
    let out = app_command(
        &["settings"],
        &[("PORT", "9100"), ("SMTP_URL", "smtp://u:pw@mail:587")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\nPORT                         9100\n"),
        "{text}"
    );
    assert!(
        text.contains("\nSMTP_URL                     (set, hidden)\n"),
        "{text}"
    );
    assert!(!text.contains("pw@mail"), "{text}");
    // The template's .env sets SESSION_KEY: hidden too.
    assert!(
        text.contains("\nSESSION_KEY                  (set, hidden)\n"),
        "{text}"
    );
    assert!(
        text.contains("\nWORKER_CONCURRENCY           16 (default)\n"),
        "{text}"
    );
}

#[test]
fn app_check_validates_settings_and_templates() {
    let out = app_command(&["check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: settings valid (dev)"));
    let out = app_command(&["check"], &[("DEBUG", "maybe")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid value for DEBUG"),
        "{}",
        stderr(&out)
    );
    for command in [&["check"][..], &["serve", "--port", "0"]] {
        let out = app_command(command, &[("BRAND_PRIMARY_COLOR", "crimson")]);
        assert_eq!(out.status.code(), Some(1), "{command:?}");
        assert!(
            stderr(&out).contains("invalid value for BRAND_PRIMARY_COLOR: \"crimson\""),
            "{command:?}: {}",
            stderr(&out)
        );
    }
    let out = app_command(&["check"], &[("SESION_KEY", "x")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "warning: SESION_KEY is set, but no setting has that name: did you mean SESSION_KEY?"
        ),
        "{}",
        stderr(&out)
    );
    let out = app_command(&["--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["serve", "check", "settings", "export-templates", "version"] {
        assert!(help.contains(command), "{help}");
    }
}

/// Runs `cargo test --offline` in a generated project (sharing the workspace's target folder)
/// and returns its output, failing with it when a test fails.
fn cargo_test(dir: &Path) -> String {
    let out = Command::new(env!("CARGO"))
        .args(["test", "--offline"])
        .env("CARGO_TARGET_DIR", vibetuner_e2e::target_dir())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("cargo starts");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "cargo test failed in {}:\n{text}",
        dir.display()
    );
    text
}

/// Test lines of a `cargo test` run (`test NAME ... ok`), sorted.
fn passed_tests(output: &str) -> Vec<String> {
    let mut tests: Vec<String> = output
        .lines()
        .filter_map(|l| l.strip_prefix("test ")?.strip_suffix(" ... ok"))
        .map(str::to_owned)
        .collect();
    tests.sort();
    tests
}

#[test]
fn generated_projects_pass_their_own_tests() {
    let app = generated_app();
    let with_example = passed_tests(&cargo_test(&app.dir));
    assert_eq!(
        with_example,
        [
            "notes_belong_to_their_author",
            "signed_in_visitors_see_their_profile",
            "the_api_creates_lists_and_enriches_notes",
            "the_home_and_hello_pages_render",
            "the_page_adds_notes_and_explains_invalid_ones",
        ]
    );

    // Without the example and with no optional framework feature (no MongoDB, Redis or OAuth
    // code compiled): the embedded store, in-process jobs and SSE, magic-link sign-in.
    let base = scratch_dir("no-example");
    let out = run_cli(
        &base,
        &[
            "new",
            "plain",
            "--defaults",
            "--data",
            "example=false",
            "--data",
            "features=none",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let plain = base.join("plain");
    assert!(!plain.join("tests/notes.rs").exists());
    for page in [
        "templates/frontend/index.html.jinja",
        "templates/frontend/base/nav.html.jinja",
    ] {
        let text = std::fs::read_to_string(plain.join(page)).unwrap();
        assert!(!text.contains("/notes"), "{page} links no notes: {text}");
    }
    let manifest = std::fs::read_to_string(plain.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("default-features = false"), "{manifest}");
    let without_example = passed_tests(&cargo_test(&plain));
    assert_eq!(without_example, ["the_home_and_hello_pages_render"]);
}
