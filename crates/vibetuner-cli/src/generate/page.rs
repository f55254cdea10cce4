//! `vibetuner generate page`: a page (handler, template with a `page` block for htmx, test).

use std::path::Path;

use serde::Serialize;

use super::names::{label, snake_name};
use super::output::{Force, Generated, crate_name, generated};

/// Path prefixes the framework serves itself.
const FRAMEWORK_PREFIXES: &[&str] = &["auth", "user", "health", "static", "_dev"];

/// A clap value parser for a page's path: absolute, plain characters, not the framework's.
fn page_path(path: &str) -> Result<String, String> {
    let plain = path.starts_with('/')
        && !path.contains("//")
        && path.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || ['/', '-', '_', '.'].contains(&c)
        });
    if !plain {
        return Err(format!(
            "{path:?} is not a page path: start with / and use a-z, 0-9, -, _, . and /, e.g. /about or /docs/getting-started"
        ));
    }
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if FRAMEWORK_PREFIXES.contains(&first) {
        return Err(format!(
            "{path:?} is under /{first}, which the framework serves; choose another path"
        ));
    }
    Ok(path.to_owned())
}

/// Arguments of `vibetuner generate page`.
#[derive(clap::Args)]
pub(crate) struct PageArgs {
    /// The page's name in snake_case, e.g. about or pricing_plans: module src/NAME.rs,
    /// template templates/frontend/NAME.html.jinja, test tests/NAME.rs, route name NAME.
    #[arg(value_parser = snake_name)]
    name: String,
    /// The page's path (default: /NAME with - for _, e.g. /pricing-plans).
    #[arg(long, value_parser = page_path)]
    path: Option<String>,
    #[command(flatten)]
    force: Force,
}

/// Writes a page in the project at `root`.
pub(super) fn write(root: &Path, args: &PageArgs) -> anyhow::Result<()> {
    generate(args, &crate_name(root)?)?.write(root, &args.force)?;
    println!("\nNext: cargo test · then open {}", args.path());
    Ok(())
}

/// What [`write`] writes, for the app crate `krate`.
pub(super) fn generate(args: &PageArgs, krate: &str) -> anyhow::Result<Generated> {
    let name = &args.name;
    let context = PageContext {
        name,
        label: label(name),
        path: args.path(),
        krate,
    };
    let template = (
        format!("templates/frontend/{name}.html.jinja"),
        "page.html.jinja",
    );
    generated("page", name, true, &context, &[template])
}

impl PageArgs {
    /// The page's path: `--path`, or /NAME with - for _.
    fn path(&self) -> String {
        self.path
            .clone()
            .unwrap_or_else(|| format!("/{}", self.name.replace('_', "-")))
    }
}

/// What the page templates see.
#[derive(Serialize)]
struct PageContext<'a> {
    /// snake_case: module, template and route name.
    name: &'a str,
    /// The title, e.g. `Pricing plans`.
    label: String,
    /// The page's path.
    path: String,
    /// The app crate's name in Rust, for the test.
    krate: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_paths_are_plain_and_not_the_frameworks() {
        assert_eq!(
            page_path("/docs/getting-started").unwrap(),
            "/docs/getting-started"
        );
        for (path, reason) in [
            ("about", "start with /"),
            ("/About", "a-z"),
            ("/a//b", "not a page path"),
            ("/auth/extra", "framework"),
            ("/_dev", "framework"),
        ] {
            let e = page_path(path).unwrap_err();
            assert!(e.contains(reason), "{path}: {e}");
        }
    }
}
