//! `vibetuner generate email`: HTML and text templates, a `send_NAME` function rendering
//! and sending both, and a test reading the mail from the outbox.

use std::path::Path;

use serde::Serialize;

use super::names::{label, snake_name};
use super::output::{Force, Generated, crate_name, generated};

/// Arguments of `vibetuner generate email`.
#[derive(clap::Args)]
pub(crate) struct EmailArgs {
    /// The email's name in snake_case, e.g. welcome: templates
    /// templates/frontend/email/NAME.{html,txt}.jinja, sender `send_NAME` in
    /// src/NAME_email.rs, test tests/NAME_email.rs.
    #[arg(value_parser = snake_name)]
    name: String,
    #[command(flatten)]
    force: Force,
}

/// Writes an email (HTML and text templates, a sender) in the project at `root`.
pub(super) fn write(root: &Path, args: &EmailArgs) -> anyhow::Result<()> {
    let generated = generate(args, &crate_name(root)?)?;
    generated.write(root, &args.force)?;
    println!(
        "\nNext: cargo test · send it with `{}::send_{}(&ctx, \"ada@example.com\", \"Ada\").await?`",
        generated.module, args.name
    );
    Ok(())
}

/// What [`write`] writes, for the app crate `krate`.
pub(super) fn generate(args: &EmailArgs, krate: &str) -> anyhow::Result<Generated> {
    let name = &args.name;
    let module = format!("{name}_email");
    let context = EmailContext {
        name,
        module: &module,
        label: label(name),
        krate,
    };
    let templates = [
        (
            format!("templates/frontend/email/{name}.html.jinja"),
            "email.html.jinja",
        ),
        (
            format!("templates/frontend/email/{name}.txt.jinja"),
            "email.txt.jinja",
        ),
    ];
    generated("email", &module, false, &context, &templates)
}

/// What the email templates see.
#[derive(Serialize)]
struct EmailContext<'a> {
    /// snake_case: the templates' names and `send_NAME`.
    name: &'a str,
    /// The module, `NAME_email`.
    module: &'a str,
    /// The subject and heading, e.g. `Password reset`.
    label: String,
    /// The app crate's name in Rust, for the test.
    krate: &'a str,
}
