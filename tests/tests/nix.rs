//! `nix flake init -t <repo>#app` and `vibetuner new app --defaults` write the same project:
//! templates/app is the one source of both. Needs `nix` (installed by scripts/prerequisites.sh
//! and scripts/nix-check.sh); runs offline, since `templates` does not depend on flake inputs.

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
    let root = workspace_root();
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
        ])
        .args(["flake.nix", "flake.lock", "nix", "templates"])
        .current_dir(&root)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git ls-files failed: {}",
        stderr(&out)
    );
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).expect("UTF-8 file names");
        let from = root.join(name);
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        let to = dest.join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
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

#[test]
fn nix_flake_init_writes_what_vibetuner_new_defaults_writes() {
    let base = scratch_dir("nix-init");
    let home = base.join("home");
    std::fs::create_dir_all(&home).unwrap();

    let flake = base.join("flake");
    copy_flake(&flake);
    let from_nix = base.join("nix").join("app");
    std::fs::create_dir_all(&from_nix).unwrap();
    let template = format!("path:{}#app", flake.display());
    let out = nix(
        &from_nix,
        &home,
        &["flake", "init", "--template", &template],
    );
    assert!(
        out.status.success(),
        "nix flake init -t {template} failed:\n{}",
        stderr(&out)
    );

    // A folder named `app` gives the template's own answers (slug `app`, name `App`). The
    // template depends on the released framework (`vibetuner = "X.Y.Z"`); without
    // --framework-version, `new` run from a checkout would point at it by path instead and
    // add the checkout's Cargo.lock.
    let new_base = base.join("new");
    std::fs::create_dir_all(&new_base).unwrap();
    let out = run_cli(
        &new_base,
        &[
            "new",
            "app",
            "--defaults",
            "--framework-version",
            env!("CARGO_PKG_VERSION"),
        ],
    );
    assert!(
        out.status.success(),
        "vibetuner new failed:\n{}",
        stderr(&out)
    );

    let from_nix = tree(&from_nix);
    let from_new = tree(&new_base.join("app"));
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
    std::fs::remove_dir_all(base).unwrap();
}
