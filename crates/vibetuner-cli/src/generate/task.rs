//! `vibetuner generate task`: a background task with a typed key, and a test that enqueues
//! and runs it.

use std::path::Path;

use serde::Serialize;

use super::field::{Kind, arg_kind};
use super::names::{camel, snake_name};
use super::output::{Force, Generated, crate_name, generated};

/// Arguments of `vibetuner generate task`.
#[derive(clap::Args)]
pub(crate) struct TaskArgs {
    /// The task's name in snake_case, e.g. send_digest: module src/NAME.rs with the key
    /// NAME in capitals (`TaskKey<ARG_TYPE>`), test tests/NAME.rs.
    #[arg(value_parser = snake_name)]
    name: String,
    /// The argument's type: string, text, int, float, bool, datetime or id (String, i64, f64,
    /// bool, Timestamp, Id).
    #[arg(value_name = "ARG_TYPE", default_value = "id", value_parser = arg_kind)]
    arg: Kind,
    #[command(flatten)]
    force: Force,
}

/// Writes a background task in the project at `root`.
pub(super) fn write(root: &Path, args: &TaskArgs) -> anyhow::Result<()> {
    generate(args, &crate_name(root)?)?.write(root, &args.force)?;
    println!(
        "\nNext: cargo test · enqueue it with `ctx.jobs().enqueue({}::{}, &value).await?`",
        args.name,
        args.name.to_ascii_uppercase()
    );
    Ok(())
}

/// What [`write`] writes, for the app crate `krate`.
pub(super) fn generate(args: &TaskArgs, krate: &str) -> anyhow::Result<Generated> {
    let name = &args.name;
    let context = TaskContext {
        name,
        key: name.to_ascii_uppercase(),
        model: camel(name),
        arg_type: args.arg.rust_type(),
        arg_sample: args.arg.sample_rust(),
        krate,
    };
    generated("task", name, true, &context, &[])
}

/// What the task templates see.
#[derive(Serialize)]
struct TaskContext<'a> {
    /// snake_case: module, task name, collection `NAME_runs`.
    name: &'a str,
    /// The key's constant, NAME in capitals.
    key: String,
    /// NAME in CamelCase (the type `NAMERun`).
    model: String,
    /// The argument's Rust type.
    arg_type: &'static str,
    /// A Rust expression of a sample argument, for the test.
    arg_sample: &'static str,
    /// The app crate's name in Rust, for the test.
    krate: &'a str,
}
