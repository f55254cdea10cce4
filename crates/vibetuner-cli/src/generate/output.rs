//! Writing what a generator made into the project: files (refusing to overwrite without
//! `--force`, Rust formatted by rustfmt) and the module's registration in `src/lib.rs` at its
//! `// vibetuner:` markers.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use serde::Serialize;

use super::templates::render;

/// The marker line in `src/lib.rs` above which `mod` lines are added.
const MODULES_MARKER: &str = "// vibetuner:modules";
/// The marker line in `src/lib.rs` above which `.apply(NAME::register)` lines are added.
const REGISTER_MARKER: &str = "// vibetuner:register";

/// `--force`, shared by the generators.
#[derive(clap::Args)]
pub(super) struct Force {
    /// Overwrite files a previous run wrote.
    #[arg(long)]
    force: bool,
}

/// The app crate's name as Rust spells it.
pub(super) fn crate_name(root: &Path) -> anyhow::Result<String> {
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .context("cannot read Cargo.toml")?
        .parse()
        .context("Cargo.toml is not valid TOML")?;
    let name = manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .context("Cargo.toml has no [package] name")?;
    Ok(name.replace('-', "_"))
}

/// Adds `line` above the line holding `marker` (indented like it, plus `extra`), unless the
/// file already has it.
fn insert_above(text: &str, marker: &str, line: &str, extra: &str) -> Option<String> {
    if text.lines().any(|l| l.trim() == line.trim()) {
        return Some(text.to_owned());
    }
    let at = text.find(marker)?;
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let indent = &text[start..at];
    Some(format!(
        "{}{indent}{extra}{}\n{}",
        &text[..start],
        line.trim(),
        &text[start..]
    ))
}

/// `src/lib.rs` with module `module` declared at its markers and, when `apply`, its
/// `register` function applied to the app.
fn register(root: &Path, module: &str, apply: bool) -> anyhow::Result<String> {
    let path = root.join("src/lib.rs");
    let text = std::fs::read_to_string(&path).context("cannot read src/lib.rs")?;
    let mod_line = format!("pub mod {module};");
    let apply_line = format!(".apply({module}::register)");
    let missing = |marker: &str, line: &str, place: &str| {
        anyhow::anyhow!(
            "src/lib.rs has no `{marker}` line, so the generator cannot register {module}: add `{line}` {place} yourself (or put the marker line back), then build"
        )
    };
    let text = insert_above(&text, MODULES_MARKER, &mod_line, "")
        .ok_or_else(|| missing(MODULES_MARKER, &mod_line, "next to the other `mod` lines"))?;
    if !apply {
        return Ok(text);
    }
    insert_above(&text, REGISTER_MARKER, &apply_line, "    ").ok_or_else(|| {
        missing(
            REGISTER_MARKER,
            &apply_line,
            "to the end of the `App::new(...)` chain in `app()`",
        )
    })
}

/// What a generator writes into the project.
pub(super) struct Generated {
    /// Files relative to the project root, with their text (`.rs` files go through rustfmt).
    pub(super) files: Vec<(PathBuf, String)>,
    /// The module declared in `src/lib.rs`.
    pub(super) module: String,
    /// Whether `.apply(MODULE::register)` joins the app's builder chain.
    pub(super) apply: bool,
}

impl Generated {
    /// Registers the module and writes the files, refusing to overwrite any without `force`
    /// (checked before anything is written).
    pub(super) fn write(&self, root: &Path, force: &Force) -> anyhow::Result<()> {
        let lib = register(root, &self.module, self.apply)?;
        let existing: Vec<String> = self
            .files
            .iter()
            .filter(|(path, _)| root.join(path).exists())
            .map(|(path, _)| path.display().to_string())
            .collect();
        ensure!(
            existing.is_empty() || force.force,
            "{} already exist(s); pass --force to overwrite",
            existing.join(", ")
        );
        for (path, text) in &self.files {
            let text = if path.extension().is_some_and(|e| e == "rs") {
                rustfmt(text)
            } else {
                text.clone()
            };
            let target = root.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&target, text)
                .with_context(|| format!("cannot write {}", target.display()))?;
            println!("wrote {}", path.display());
        }
        std::fs::write(root.join("src/lib.rs"), rustfmt(&lib))
            .context("cannot write src/lib.rs")?;
        println!("registered {} in src/lib.rs", self.module);
        Ok(())
    }
}

/// What a generator writes: `src/MODULE.rs` and `tests/MODULE.rs` from its templates
/// `GENERATOR/module.rs.jinja` and `GENERATOR/test.rs.jinja`, and the `templates` (path in the
/// project, generator template), each rendered with `context`.
pub(super) fn generated(
    generator: &str,
    module: &str,
    apply: bool,
    context: &impl Serialize,
    templates: &[(String, &str)],
) -> anyhow::Result<Generated> {
    let mut files = vec![
        (format!("src/{module}.rs"), "module.rs.jinja"),
        (format!("tests/{module}.rs"), "test.rs.jinja"),
    ];
    files.extend(templates.iter().map(|(path, name)| (path.clone(), *name)));
    Ok(Generated {
        files: files
            .into_iter()
            .map(|(path, name)| {
                let text = render(&format!("{generator}/{name}"), context)?;
                Ok((PathBuf::from(path), text))
            })
            .collect::<anyhow::Result<_>>()?,
        module: module.to_owned(),
        apply,
    })
}

/// `text` formatted by rustfmt (through standard input, so no other file is touched), or as it
/// is when rustfmt is not there.
fn rustfmt(text: &str) -> String {
    use std::io::Write as _;
    let child = std::process::Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return text.to_owned();
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes());
    }
    match child.wait_with_output() {
        Ok(out) if out.status.success() => {
            String::from_utf8(out.stdout).unwrap_or_else(|_| text.to_owned())
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_goes_above_the_markers_once() {
        let lib = "mod notes;\n// vibetuner:modules (x)\n\nfn app() -> App {\n    App::new()\n        .apply(notes::register)\n    // vibetuner:register (x)\n}\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), lib).unwrap();
        let once = register(dir.path(), "posts", true).unwrap();
        assert_eq!(
            once,
            "mod notes;\npub mod posts;\n// vibetuner:modules (x)\n\nfn app() -> App {\n    App::new()\n        .apply(notes::register)\n        .apply(posts::register)\n    // vibetuner:register (x)\n}\n"
        );
        std::fs::write(dir.path().join("src/lib.rs"), &once).unwrap();
        assert_eq!(register(dir.path(), "posts", true).unwrap(), once);

        std::fs::write(dir.path().join("src/lib.rs"), "mod notes;\n").unwrap();
        let e = register(dir.path(), "posts", true).unwrap_err().to_string();
        assert!(e.contains("`pub mod posts;`"), "{e}");
    }
}
