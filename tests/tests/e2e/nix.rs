//! `nix flake init -t <repo>#app` and `vibetuner new app --defaults` write the same project:
//! templates/app is the one source of both; and that project builds with plain cargo, its
//! framework git dependency resolved the way cargo resolves it for a user. Needs `nix`
//! (installed by scripts/prerequisites.sh and scripts/nix-check.sh) and `git`; runs offline,
//! since `templates` does not depend on flake inputs and the git dependency is redirected to a
//! repository made from this checkout.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use vibetuner_e2e::{run_cli, scratch_dir, workspace_root};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir`, by path relative to `root`, with its contents.
fn read_tree(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_tree(root, &path, files);
        } else {
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            files.insert(name, std::fs::read(&path).unwrap());
        }
    }
}

fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    read_tree(dir, dir, &mut files);
    files
}

/// Copies the flake as a clone would have it (tracked and unignored files) into `dest`:
/// `nix` copies a `path:` flake whole into its store, and the checkout holds target/.
fn copy_flake(dest: &Path) {
    copy_tracked(
        dest,
        &["flake.nix", "flake.lock", "Cargo.toml", "nix", "templates"],
    );
}

/// Copies the checkout's tracked and unignored files under `paths` (all when empty) into
/// `dest`, keeping symbolic links as links.
fn copy_tracked(dest: &Path, paths: &[&str]) {
    let root = workspace_root();
    let out = run_ok(
        Command::new("git")
            .args([
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
                "--",
            ])
            .args(paths)
            .current_dir(&root),
        "git ls-files",
    );
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).expect("UTF-8 file names");
        let from = root.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&from) else {
            continue; // deleted in the work tree
        };
        let to = dest.join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from).unwrap(), &to).unwrap();
        } else if meta.is_file() {
            std::fs::copy(&from, &to).unwrap();
        }
    }
}

/// Runs `nix` with flakes enabled and its caches in `home`.
fn nix(dir: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new("nix")
        .args(args)
        .current_dir(dir)
        .env("NIX_CONFIG", "experimental-features = nix-command flakes")
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run nix ({e}): install it with scripts/prerequisites.sh or scripts/nix-check.sh (apt package nix-bin)"
            )
        })
}

/// `nix flake init -t path:<copy of this checkout>#app` into `base/nix/app`.
fn flake_init(base: &Path) -> std::path::PathBuf {
    let home = base.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let flake = base.join("flake");
    copy_flake(&flake);
    let dir = base.join("nix").join("app");
    std::fs::create_dir_all(&dir).unwrap();
    let template = format!("path:{}#app", flake.display());
    let out = nix(&dir, &home, &["flake", "init", "--template", &template]);
    assert!(
        out.status.success(),
        "nix flake init -t {template} failed:\n{}",
        stderr(&out)
    );
    dir
}

/// `vibetuner new app --defaults [extra...]` in `base/<tag>`.
fn vibetuner_new(base: &Path, tag: &str, extra: &[&str]) -> std::path::PathBuf {
    let parent = base.join(tag);
    std::fs::create_dir_all(&parent).unwrap();
    let mut args = vec!["new", "app", "--defaults"];
    args.extend_from_slice(extra);
    let out = run_cli(&parent, &args);
    assert!(
        out.status.success(),
        "vibetuner new failed:\n{}",
        stderr(&out)
    );
    parent.join("app")
}

#[test]
fn nix_flake_init_writes_what_vibetuner_new_defaults_writes() {
    let base = scratch_dir("nix-init");
    let from_nix = flake_init(&base);

    // A folder named `app` gives the template's own answers (slug `app`, name `App`). The
    // template depends on the released framework (the git tag `v<version>` of the canonical
    // repository); that is what `new` writes outside a checkout or with --framework-version.
    let released = vibetuner_new(
        &base,
        "released",
        &["--framework-version", env!("CARGO_PKG_VERSION")],
    );
    // Run from a checkout, `new` depends on it by path instead: the one documented difference.
    let from_checkout = vibetuner_new(&base, "checkout", &[]);

    let from_nix = tree(&from_nix);
    let from_new = tree(&released);
    let only_nix: Vec<_> = from_nix
        .keys()
        .filter(|k| !from_new.contains_key(*k))
        .collect();
    let only_new: Vec<_> = from_new
        .keys()
        .filter(|k| !from_nix.contains_key(*k))
        .collect();
    assert!(
        only_nix.is_empty() && only_new.is_empty(),
        "the file sets differ; only from nix flake init: {only_nix:?}; only from vibetuner new: {only_new:?}"
    );
    assert!(
        from_nix.contains_key("flake.nix"),
        "the template has its flake.nix"
    );
    for (name, data) in &from_nix {
        assert_eq!(
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(&from_new[name]),
            "{name} differs between nix flake init (left) and vibetuner new --defaults (right)"
        );
    }

    let framework = workspace_root()
        .join("crates/vibetuner")
        .canonicalize()
        .unwrap();
    let mut from_checkout = tree(&from_checkout);
    let manifest = String::from_utf8(from_checkout.remove("Cargo.toml").unwrap()).unwrap();
    let mut expected = from_nix;
    let template_manifest = String::from_utf8(expected.remove("Cargo.toml").unwrap()).unwrap();
    assert_eq!(
        manifest,
        template_manifest.replace(
            &format!(
                "git = \"https://github.com/alltuner/vibetuner-rs\", tag = \"v{}\"",
                env!("CARGO_PKG_VERSION")
            ),
            &format!("path = \"{}\"", framework.display()),
        ),
        "from a checkout, Cargo.toml differs from the template's only by the path dependency"
    );
    assert!(
        from_checkout == expected,
        "from a checkout, only Cargo.toml differs from the template"
    );
    std::fs::remove_dir_all(base).unwrap();
}

/// Runs a command and returns its output, panicking with it on failure.
fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

/// A git repository holding this checkout's files (tracked and unignored) at one commit
/// tagged `v<version>`: what the canonical repository holds at the release tag.
fn framework_repository(dest: &Path) {
    copy_tracked(dest, &[]);
    let git = |args: &[&str]| {
        run_ok(
            Command::new("git")
                .args([
                    "-c",
                    "user.name=vibetuner",
                    "-c",
                    "user.email=ci@example.com",
                ])
                .args(args)
                .current_dir(dest)
                // The same files give the same commit, so cargo's git cache is reused.
                .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
                .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
                .env("GIT_CONFIG_GLOBAL", "/dev/null"),
            &format!("git {args:?}"),
        )
    };
    git(&["init", "--quiet"]);
    git(&["add", "--all"]);
    git(&["commit", "--quiet", "--no-gpg-sign", "-m", "release"]);
    git(&["tag", &format!("v{}", env!("CARGO_PKG_VERSION"))]);
}

/// A project from `nix flake init -t` builds with plain `cargo build`: its git dependency on
/// the canonical repository resolves (here redirected, by git's `insteadOf`, to a repository
/// made from this checkout, since CI cannot reach GitHub) with every other crate pinned by the
/// shipped Cargo.lock, with the crates registry unreachable. The first build adds only the
/// tag's commit to Cargo.lock (on each framework crate: `vibetuner` and `vibetuner-macros`).
#[test]
fn generated_project_builds_with_plain_cargo() {
    let base = scratch_dir("nix-cargo");
    let project = flake_init(&base);
    let repo = base.join("vibetuner-rs");
    framework_repository(&repo);
    let gitconfig = base.join("gitconfig");
    std::fs::write(
        &gitconfig,
        format!(
            "[url \"file://{}\"]\n\tinsteadOf = https://github.com/alltuner/vibetuner-rs\n",
            repo.display()
        ),
    )
    .unwrap();
    let shipped = std::fs::read_to_string(project.join("Cargo.lock")).unwrap();

    let out = Command::new(env!("CARGO"))
        .args(["build", "--quiet"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", vibetuner_e2e::target_dir())
        .env("GIT_CONFIG_GLOBAL", &gitconfig)
        .env("CARGO_NET_GIT_FETCH_WITH_CLI", "true")
        // No registry: every crate must come from the lock and the local cache.
        .env("CARGO_HTTP_PROXY", "http://127.0.0.1:9")
        .env("CARGO_NET_RETRY", "0")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build of the nix flake init project failed (if it names a crate version, \
         templates/app/Cargo.lock is stale: run scripts/template-lock.sh):\n{}",
        stderr(&out)
    );
    assert!(
        vibetuner_e2e::target_dir().join("debug/app").is_file(),
        "the app binary was built"
    );

    let after = std::fs::read_to_string(project.join("Cargo.lock")).unwrap();
    let source = format!(
        "source = \"git+https://github.com/alltuner/vibetuner-rs?tag=v{}#",
        env!("CARGO_PKG_VERSION")
    );
    let added: Vec<_> = after.lines().filter(|l| l.starts_with(&source)).collect();
    let framework_crates = shipped
        .lines()
        .filter(|l| l.starts_with("name = \"vibetuner"))
        .count();
    assert_eq!(
        framework_crates, 2,
        "vibetuner and vibetuner-macros:\n{shipped}"
    );
    assert_eq!(
        added.len(),
        framework_crates,
        "the framework's commit is locked on each framework crate:\n{after}"
    );
    let without: Vec<_> = after.lines().filter(|l| !l.starts_with(&source)).collect();
    assert!(
        without == shipped.lines().collect::<Vec<_>>(),
        "the first build changed Cargo.lock beyond the framework's commit \
         (run scripts/template-lock.sh):\n{after}"
    );
    std::fs::remove_dir_all(base).unwrap();
}
