//! The `dead-letters` subcommand: list, retry and purge tasks that failed their last retry.

use anyhow::Context as _;

use crate::models::DeadLetter;
use crate::store::{Filter, Id, Order, Query};

/// What `dead-letters` does.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeadLetterCommand {
    /// Show the newest dead letters.
    List {
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
    /// Enqueue dead-lettered tasks again (tries start over) and remove their dead letters.
    Retry {
        /// The dead letter's id (from `list`).
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Retry every dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Delete dead letters.
    Purge {
        /// Only those of this task.
        #[arg(long)]
        task: Option<String>,
    },
}

/// Runs a `dead-letters` subcommand against a built app, printing what it did.
pub async fn run_dead_letter_command(
    built: &crate::app::BuiltApp,
    command: DeadLetterCommand,
) -> anyhow::Result<()> {
    let letters = built.store().models::<DeadLetter>();
    match command {
        DeadLetterCommand::List { limit } => {
            let found = letters
                .find(&Query::all().sort("failed_at", Order::Desc).limit(limit))
                .await?;
            if found.is_empty() {
                println!("no dead letters");
            }
            for d in found {
                println!(
                    "{}  {}  {}  task={} tries={} {}: {}  args={}",
                    d.id,
                    d.failed_at.to_rfc3339(),
                    d.task_id,
                    d.task_name,
                    d.tries,
                    d.error_type,
                    d.error,
                    d.args
                );
            }
        }
        DeadLetterCommand::Retry { id, all } => {
            let targets = if all {
                letters.find(&Query::all()).await?
            } else {
                let raw = id.unwrap_or_default();
                let id: Id = raw.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "{raw:?} is not a dead letter id; `dead-letters list` shows them"
                    )
                })?;
                vec![letters.get(id).await?.with_context(|| {
                    format!("no dead letter {raw}; `dead-letters list` shows them")
                })?]
            };
            for d in &targets {
                let task_id = built
                    .jobs()
                    .retry_dead_letter(d)
                    .await
                    .with_context(|| format!("cannot enqueue dead letter {} again", d.id))?;
                letters.delete(d.id).await?;
                println!("retried {} ({}) as task {task_id}", d.id, d.task_name);
            }
            println!("ok: {} dead letters enqueued again", targets.len());
        }
        DeadLetterCommand::Purge { task } => {
            let filter = task.map_or(Filter::All, |t| Filter::eq("task_name", t));
            let n = letters.delete_many(filter).await?;
            println!("ok: {n} dead letters deleted");
        }
    }
    Ok(())
}
