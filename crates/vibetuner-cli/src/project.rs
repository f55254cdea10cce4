//! The project a command runs in: the nearest folder holding `vibetuner.toml`, and the app
//! binary run through `cargo run` there.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use vibetuner::project::ANSWERS_FILE;

/// The project root: the nearest ancestor of the current folder holding `vibetuner.toml`.
pub(crate) fn root() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    root_from(&cwd)
}

/// The nearest ancestor of `start` holding `vibetuner.toml`.
pub(crate) fn root_from(start: &Path) -> anyhow::Result<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join(ANSWERS_FILE).is_file())
        .map(Path::to_owned)
        .with_context(|| {
            format!(
                "no {ANSWERS_FILE} in {} or any folder above it: run this inside a vibetuner project \
                 (`vibetuner new DIR` creates one, `vibetuner adopt` turns an existing one into one)",
                start.display()
            )
        })
}

/// `cargo run --quiet -- ARGS` in the project: the app binary, built first when out of date.
pub(crate) fn app_command(root: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(["run", "--quiet", "--"])
        .args(args)
        .current_dir(root);
    cmd
}
