//! `vibetuner generate`: code registered in the app's `src/lib.rs` at its `// vibetuner:`
//! markers, each generator in its room: a resource or a model alone (`resource.rs`, with the
//! field types of `field.rs`), a page, a task, an email. Their text is in `generators/` of this
//! crate, rendered by `templates.rs`; `output.rs` writes what they make.

mod email;
mod field;
mod names;
mod output;
mod page;
mod resource;
mod task;
mod templates;

/// `vibetuner generate` subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum GenerateCommand {
    /// A resource: model with validation, CRUD JSON API at /api/PLURAL and htmx pages at
    /// /PLURAL (list, create, edit, delete), tests in tests/PLURAL.rs, registered in src/lib.rs.
    /// Each signed-in user sees and changes only their own records (owner_id).
    #[command(after_help = field::FIELD_HELP)]
    Scaffold {
        #[command(flatten)]
        spec: resource::ResourceArgs,
        /// Only the JSON API (no pages).
        #[arg(long, conflicts_with = "html")]
        api: bool,
        /// Only the htmx pages (no JSON API).
        #[arg(long)]
        html: bool,
    },
    /// A model only: a struct stored in the PLURAL collection, with validation, registered in
    /// src/lib.rs so its indexes are created.
    #[command(after_help = field::FIELD_HELP)]
    Model {
        #[command(flatten)]
        spec: resource::ResourceArgs,
    },
    /// A page: a handler rendering templates/frontend/NAME.html.jinja (whole, or its `page`
    /// block for htmx), a test in tests/NAME.rs, registered in src/lib.rs.
    Page(page::PageArgs),
    /// A background task: a typed `TaskKey<ARG_TYPE>` and its async function, a test that
    /// enqueues and runs it, registered in src/lib.rs.
    Task(task::TaskArgs),
    /// An email: HTML and text templates in templates/frontend/email/, a `send_NAME` function
    /// rendering both and sending them through the mailer, a test reading it from the outbox.
    Email(email::EmailArgs),
}

/// Runs a `generate` subcommand in the project around the current folder.
pub(crate) fn generate(command: &GenerateCommand) -> anyhow::Result<()> {
    let root = crate::project::root()?;
    match command {
        GenerateCommand::Scaffold { spec, api, html } => {
            resource::write(&root, spec, true, !html, !api)
        }
        GenerateCommand::Model { spec } => resource::write(&root, spec, false, false, false),
        GenerateCommand::Page(args) => page::write(&root, args),
        GenerateCommand::Task(args) => task::write(&root, args),
        GenerateCommand::Email(args) => email::write(&root, args),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: GenerateCommand,
    }

    /// What `vibetuner generate ARGS` makes in the app crate `my_app`.
    fn generated(args: &str) -> output::Generated {
        let cli = Cli::try_parse_from(["generate"].into_iter().chain(args.split_whitespace()))
            .unwrap_or_else(|e| panic!("{args}: {e}"));
        let made = match &cli.command {
            GenerateCommand::Scaffold { spec, api, html } => {
                resource::generate(spec, true, !html, !api, "my_app")
            }
            GenerateCommand::Model { spec } => {
                resource::generate(spec, false, false, false, "my_app")
            }
            GenerateCommand::Page(args) => page::generate(args, "my_app"),
            GenerateCommand::Task(args) => task::generate(args, "my_app"),
            GenerateCommand::Email(args) => email::generate(args, "my_app"),
        };
        made.unwrap_or_else(|e| panic!("{args}: {e:#}"))
    }

    /// Every template, and each branch of the resource's: every field type, required and
    /// optional, API and pages, API only, pages only, a model alone.
    const SAMPLES: &[&str] = &[
        "scaffold event name:string starts_at:datetime seats:int price:float? venue_id:id? \
         notes:text? subtitle:string? ends_at:datetime? open:bool rating:float organizer_id:id \
         capacity:int?",
        "scaffold score points:int --api",
        "scaffold memo body:text pinned:bool --html",
        "scaffold flag on:bool",
        "scaffold when_it at:datetime --api",
        "model category label:string weight:int?",
        "page pricing_plans --path /pricing",
        "task send_digest",
        "task count_words string",
        "email welcome",
    ];

    #[test]
    fn every_template_renders_with_sample_inputs() {
        for args in SAMPLES {
            for (path, text) in generated(args).files {
                for mark in ["[[", "[%", "[#", "__"] {
                    assert!(
                        !text.contains(mark),
                        "{args}: {} holds {mark}:\n{text}",
                        path.display()
                    );
                }
            }
        }
        assert_eq!(templates::not_rendered(), Vec::<String>::new());
    }
}
