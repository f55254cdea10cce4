//! `vibetuner eject`: a framework template copied into the app's `templates/frontend/`, which
//! the framework reads before its own.

use std::path::Path;

use anyhow::{Context, bail, ensure};

/// Arguments of `vibetuner eject`.
#[derive(clap::Args)]
pub(crate) struct EjectArgs {
    /// The framework template, e.g. `base/skeleton.html.jinja` (run without it for the list).
    template: Option<String>,
    /// Overwrite the app's copy.
    #[arg(long)]
    force: bool,
}

/// Copies a framework template into the app's `templates/frontend/`, which the framework
/// reads before its own.
pub(crate) fn eject(args: &EjectArgs) -> anyhow::Result<()> {
    let available: Vec<String> = vibetuner::render::FrameworkTemplates::iter()
        .filter_map(|n| n.strip_prefix("frontend/").map(str::to_owned))
        .collect();
    let Some(name) = &args.template else {
        println!("{}", available.join("\n"));
        return Ok(());
    };
    let name = name.strip_prefix("frontend/").unwrap_or(name);
    let Some(file) = vibetuner::render::FrameworkTemplates::get(&format!("frontend/{name}")) else {
        bail!(
            "no framework template {name:?}; the templates are:\n  {}",
            available.join("\n  ")
        );
    };
    let root = crate::project::root()?;
    let relative = Path::new("templates/frontend").join(name);
    let target = root.join(&relative);
    ensure!(
        !target.exists() || args.force,
        "{} exists; pass --force to overwrite it with the framework's version",
        relative.display()
    );
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&target, &file.data)
        .with_context(|| format!("cannot write {}", target.display()))?;
    println!(
        "wrote {}: the app now renders its copy instead of the framework's",
        relative.display()
    );
    Ok(())
}
