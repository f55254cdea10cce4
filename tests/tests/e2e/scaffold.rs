//! `vibetuner generate` and `vibetuner eject` on a freshly generated project: the generated
//! resources (every field type, API and pages, API only, pages only, a bare model), pages,
//! tasks and an email build, pass `cargo clippy -D warnings` and `cargo fmt --check`, and their
//! own tests pass; re-running refuses to overwrite; bad names are usage errors (exit 2); a
//! missing marker is explained.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use vibetuner_e2e::{fixed_dir, run_cli, target_dir};

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn cargo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        .output()
        .expect("cargo starts")
}

#[test]
fn generated_resources_build_pass_clippy_and_their_tests() {
    let base = fixed_dir("scaffold");
    let out = run_cli(&base, &["new", "blogger", "--defaults"]);
    assert!(out.status.success(), "{}", text(&out));
    let dir = base.join("blogger");

    let out = run_cli(
        &dir.join("src"),
        &[
            "generate",
            "scaffold",
            "post",
            "title:string",
            "body:text",
            "published:bool",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    for file in [
        "src/posts.rs",
        "templates/frontend/posts.html.jinja",
        "tests/posts.rs",
    ] {
        assert!(dir.join(file).is_file(), "{file} written");
    }
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(lib.contains("pub mod posts;\n"), "{lib}");
    assert!(
        lib.contains("        .apply(posts::register)\n    // vibetuner:register"),
        "{lib}"
    );

    // Again: refused, nothing changed; with --force: written, registered once.
    std::fs::write(dir.join("src/posts.rs"), "// edited\n").unwrap();
    let again = run_cli(&dir, &["generate", "scaffold", "post", "title:string"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("pass --force"), "{}", text(&again));
    assert_eq!(
        std::fs::read_to_string(dir.join("src/posts.rs")).unwrap(),
        "// edited\n"
    );
    let forced = run_cli(
        &dir,
        &[
            "generate",
            "scaffold",
            "post",
            "title:string",
            "body:text",
            "published:bool",
            "--force",
        ],
    );
    assert!(forced.status.success(), "{}", text(&forced));
    assert_eq!(
        std::fs::read_to_string(dir.join("src/lib.rs")).unwrap(),
        lib,
        "registered once"
    );

    // Every field type, optional ones, API only, pages only and a bare model.
    for args in [
        vec![
            "scaffold",
            "event",
            "name:string",
            "starts_at:datetime",
            "seats:int",
            "price:float?",
            "venue_id:id?",
            "notes:text?",
            "subtitle:string?",
            "ends_at:datetime?",
            "open:bool",
            "rating:float",
            "organizer_id:id",
            "capacity:int?",
        ],
        vec!["scaffold", "score", "points:int", "--api"],
        vec!["scaffold", "memo", "body:text", "pinned:bool", "--html"],
        vec!["model", "category", "label:string", "weight:int?"],
        vec!["page", "about"],
        vec!["page", "pricing_plans", "--path", "/pricing"],
        vec!["task", "send_digest"],
        vec!["task", "count_words", "string"],
        vec!["task", "remind_at", "datetime"],
        vec!["email", "welcome"],
    ] {
        let mut all = vec!["generate"];
        all.extend(args.iter().copied());
        let out = run_cli(&dir, &all);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    assert!(!dir.join("templates/frontend/scores.html.jinja").exists());
    assert!(dir.join("tests/memos.rs").is_file());
    assert!(dir.join("src/categories.rs").is_file());
    for file in [
        "templates/frontend/about.html.jinja",
        "tests/pricing_plans.rs",
        "src/send_digest.rs",
        "templates/frontend/email/welcome.html.jinja",
        "templates/frontend/email/welcome.txt.jinja",
        "src/welcome_email.rs",
    ] {
        assert!(dir.join(file).is_file(), "{file} written");
    }
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    for line in [
        "pub mod about;",
        ".apply(pricing_plans::register)",
        ".apply(send_digest::register)",
        "pub mod welcome_email;",
    ] {
        assert!(lib.contains(line), "{line} in {lib}");
    }
    assert!(!lib.contains("welcome_email::register"), "{lib}");
    let again = run_cli(&dir, &["generate", "email", "welcome"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("pass --force"), "{}", text(&again));
    let forced = run_cli(&dir, &["generate", "task", "send_digest", "--force"]);
    assert!(forced.status.success(), "{}", text(&forced));

    // Bad input: explained, nothing written; a bad name or type is a usage error (exit 2).
    for (args, reason) in [
        (
            vec!["generate", "scaffold", "Post", "a:string"],
            "snake_case",
        ),
        (vec!["generate", "page", "my-page"], "snake_case"),
        (vec!["generate", "task", "main"], "crate's own files"),
        (vec!["generate", "email", "type"], "Rust keyword"),
        (vec!["generate", "task", "thing", "money"], "unknown type"),
        (
            vec!["generate", "page", "thing", "--path", "/auth/thing"],
            "framework",
        ),
    ] {
        let out = run_cli(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out).contains(reason), "{args:?}: {}", text(&out));
    }
    for (args, reason) in [
        (vec!["generate", "scaffold", "thing"], "give the fields"),
        (
            vec!["generate", "scaffold", "thing", "a:money"],
            "unknown type",
        ),
        (vec!["generate", "scaffold", "note", "a:string"], "taken"),
    ] {
        let out = run_cli(&dir, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(text(&out).contains(reason), "{args:?}: {}", text(&out));
    }
    assert!(!dir.join("src/things.rs").exists());

    // Eject: the list, a copy, a refusal to overwrite, an unknown name.
    let list = run_cli(&dir, &["eject"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("base/skeleton.html.jinja"),
        "{}",
        text(&list)
    );
    let out = run_cli(&dir, &["eject", "base/skeleton.html.jinja"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        std::fs::read_to_string(dir.join("templates/frontend/base/skeleton.html.jinja"))
            .unwrap()
            .contains("<html")
    );
    let out = run_cli(&dir, &["eject", "base/skeleton.html.jinja"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    let out = run_cli(&dir, &["eject", "nope.html.jinja"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no framework template") && text(&out).contains("base/"),
        "{}",
        text(&out)
    );

    // The generated code builds, is clean and its tests pass.
    let fmt = cargo(&dir, &["fmt", "--check"]);
    assert!(fmt.status.success(), "cargo fmt --check:\n{}", text(&fmt));
    let clippy = cargo(&dir, &["clippy", "--all-targets", "--", "-D", "warnings"]);
    assert!(clippy.status.success(), "cargo clippy:\n{}", text(&clippy));
    let test = cargo(&dir, &["test"]);
    let said = text(&test);
    assert!(test.status.success(), "cargo test:\n{said}");
    for name in [
        "the_api_creates_reads_updates_and_deletes_posts",
        "the_pages_add_edit_and_delete_posts",
        "posts_belong_to_their_author",
        "the_pages_add_edit_and_delete_events",
        "the_api_creates_reads_updates_and_deletes_scores",
        "the_pages_add_edit_and_delete_memos",
        "the_about_page_renders_whole_or_as_a_block",
        "the_pricing_plans_page_renders_whole_or_as_a_block",
        "send_digest_runs_with_its_argument",
        "count_words_runs_with_its_argument",
        "remind_at_runs_with_its_argument",
        "the_welcome_email_reaches_the_outbox",
    ] {
        assert!(
            said.contains(&format!("{name} ... ok")),
            "{name} ran:\n{said}"
        );
    }

    // Without the marker, the generator says what to add and writes nothing.
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    std::fs::write(
        dir.join("src/lib.rs"),
        lib.replace("// vibetuner:register", "// gone"),
    )
    .unwrap();
    let out = run_cli(&dir, &["generate", "scaffold", "tag", "label:string"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("`.apply(tags::register)`"),
        "{}",
        text(&out)
    );
    assert!(!dir.join("src/tags.rs").exists());

    std::fs::remove_dir_all(base).unwrap();
}
