//! `vibetuner update` against a template checkout that moves on: a clean merge, a conflict
//! (markers, exit status, both sides kept) and the refusal of a dirty tree; `vibetuner adopt`.

use std::path::Path;
use std::process::{Command, Output};

use vibetuner_e2e::{edit_file, run_cli, scratch_dir, workspace_root};

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn commit_all(dir: &Path, message: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if ["node_modules", "target", ".vibetuner", "bun.lock"]
            .iter()
            .any(|n| name == *n)
        {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

fn set_version(checkout: &Path, version: &str) {
    edit_file(&checkout.join("Cargo.toml"), |s| {
        let current = format!("version = \"{}\"", env!("CARGO_PKG_VERSION"));
        let start = s.find("[workspace.package]").unwrap();
        let at = start + s[start..].find(&current).unwrap();
        format!(
            "{}version = \"{version}\"{}",
            &s[..at],
            &s[at + current.len()..]
        )
    });
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A framework checkout holding this repository's template at tag v<this version> (A), and a
/// project generated from it, both in git.
fn setup(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let base = scratch_dir(tag);
    let checkout = base.join("framework");
    let root = workspace_root();
    std::fs::create_dir_all(checkout.join("templates")).unwrap();
    std::fs::copy(root.join("Cargo.toml"), checkout.join("Cargo.toml")).unwrap();
    std::fs::copy(
        root.join("templates/app.toml"),
        checkout.join("templates/app.toml"),
    )
    .unwrap();
    copy_dir(&root.join("templates/app"), &checkout.join("templates/app"));
    git(&checkout, &["init", "-q"]);
    commit_all(&checkout, "template A");
    git(
        &checkout,
        &["tag", &format!("v{}", env!("CARGO_PKG_VERSION"))],
    );

    let out = run_cli(&base, &["new", "proj", "--defaults"]);
    assert!(out.status.success(), "{}", text(&out));
    let project = base.join("proj");
    git(&project, &["init", "-q"]);
    commit_all(&project, "generated");
    (checkout, project)
}

#[test]
fn update_merges_a_newer_template_and_refuses_a_dirty_tree() {
    let (checkout, project) = setup("update-clean");
    // The project edits the end of routes.rs; the template its first line and adds a file.
    edit_file(&project.join("src/routes.rs"), |s| {
        format!("{s}\n/// Ours.\npub fn ours() {{}}\n")
    });
    commit_all(&project, "our edit");
    edit_file(&checkout.join("templates/app/src/routes.rs"), |s| {
        s.replacen("//! Example page:", "//! Example page (new template):", 1)
    });
    std::fs::write(checkout.join("templates/app/NEWS.md"), "# News\n").unwrap();
    set_version(&checkout, "9.9.0");
    commit_all(&checkout, "template B");

    // A dirty tree is refused, and nothing changes.
    std::fs::write(project.join("scratch.txt"), "uncommitted").unwrap();
    let template = checkout.to_string_lossy().into_owned();
    let out = run_cli(&project, &["update", "--template", &template]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("uncommitted changes") && text(&out).contains("--allow-dirty"),
        "{}",
        text(&out)
    );
    assert!(!project.join("NEWS.md").exists());
    std::fs::remove_file(project.join("scratch.txt")).unwrap();

    let out = run_cli(&project, &["update", "--template", &template]);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.contains("updated   src/routes.rs") && report.contains("added     NEWS.md"),
        "{report}"
    );
    let routes = std::fs::read_to_string(project.join("src/routes.rs")).unwrap();
    assert!(
        routes.starts_with("//! Example page (new template):")
            && routes.contains("pub fn ours() {}")
            && !routes.contains("<<<<<<<"),
        "{routes}"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("NEWS.md")).unwrap(),
        "# News\n"
    );
    let answers = std::fs::read_to_string(project.join("vibetuner.toml")).unwrap();
    assert!(answers.contains("version = \"9.9.0\""), "{answers}");
}

#[test]
fn update_conflicts_keep_both_sides_and_fail() {
    let (checkout, project) = setup("update-conflict");
    edit_file(&project.join("src/routes.rs"), |s| {
        s.replacen("//! Example page:", "//! Our page:", 1)
    });
    commit_all(&project, "our edit");
    edit_file(&checkout.join("templates/app/src/routes.rs"), |s| {
        s.replacen("//! Example page:", "//! Their page:", 1)
    });
    commit_all(&checkout, "template B");

    let template = checkout.to_string_lossy().into_owned();
    let out = run_cli(&project, &["update", "--template", &template]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.contains("CONFLICT  src/routes.rs") && report.contains("1 conflict(s)"),
        "{report}"
    );
    let routes = std::fs::read_to_string(project.join("src/routes.rs")).unwrap();
    assert!(
        routes.contains("<<<<<<<")
            && routes.contains("//! Our page:")
            && routes.contains("=======")
            && routes.contains("//! Their page:")
            && routes.contains(">>>>>>>"),
        "{routes}"
    );
}

#[test]
fn update_without_the_base_template_says_how_to_give_it() {
    let (checkout, project) = setup("update-nobase");
    git(
        &checkout,
        &["tag", "-d", &format!("v{}", env!("CARGO_PKG_VERSION"))],
    );
    let template = checkout.to_string_lossy().into_owned();
    let out = run_cli(&project, &["update", "--template", &template]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--base PATH"), "{}", text(&out));
    // With the base given explicitly (the same checkout: nothing to merge) it runs.
    let out = run_cli(
        &project,
        &["update", "--template", &template, "--base", &template],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn adopt_writes_the_answers_once() {
    let dir = scratch_dir("adopt");
    std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"old\"\n").unwrap();
    let path = dir.to_string_lossy().into_owned();
    let out = run_cli(
        &dir,
        &[
            "adopt",
            &path,
            "--defaults",
            "--data",
            "project_name=Old App",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let answers = std::fs::read_to_string(dir.join("vibetuner.toml")).unwrap();
    assert!(
        answers.contains("project_name = \"Old App\"")
            && answers.contains(&format!("version = \"{}\"", env!("CARGO_PKG_VERSION"))),
        "{answers}"
    );
    let again = run_cli(&dir, &["adopt", &path, "--defaults"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("--force"), "{}", text(&again));
}
