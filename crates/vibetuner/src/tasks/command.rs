//! The app binary's `task` subcommands: list the registered tasks, run one now.

use anyhow::Context as _;

use super::{TaskContext, TaskOutcome};

/// `task` subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum TaskCommand {
    /// List the registered tasks, with their cron schedules and retry policies.
    List,
    /// Run a task now in this process and report how it ended (exit 1 when it fails), or put it
    /// on the queue for a worker with --enqueue.
    Run {
        /// The task's name (`task list` shows them).
        name: String,
        /// Its arguments as JSON, e.g. '{"note_id": "..."}' or '"6650f0c2a1b2c3d4e5f60718"'
        /// (cron tasks take none).
        #[arg(long, default_value = "null")]
        args: String,
        /// Enqueue it instead, to run on a worker with retries; prints the task id.
        #[arg(long)]
        enqueue: bool,
    },
}

/// Runs a `task` subcommand against a built, started app.
pub(crate) async fn run_task_command(
    built: &crate::app::BuiltApp,
    command: TaskCommand,
) -> anyhow::Result<()> {
    let registry = &built.tasks;
    match command {
        TaskCommand::List => {
            if registry.tasks.is_empty() {
                println!("no tasks registered (App::task, App::cron)");
            }
            for (name, task) in &registry.tasks {
                let schedules: Vec<&str> = registry
                    .crons
                    .iter()
                    .filter(|c| &c.task == name)
                    .map(|c| c.pattern.as_str())
                    .collect();
                let options = task.options();
                println!(
                    "{name}  retries={} timeout={}s{}",
                    options.max_retries,
                    options.timeout.as_secs_f64(),
                    if schedules.is_empty() {
                        String::new()
                    } else {
                        format!("  cron: {}", schedules.join(", "))
                    }
                );
            }
            Ok(())
        }
        TaskCommand::Run {
            name,
            args,
            enqueue,
        } => {
            let task = registry.get(&name).with_context(|| {
                let known: Vec<&str> = registry.names().collect();
                format!(
                    "no task named {name:?}; registered: {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )
            })?;
            let args: serde_json::Value = serde_json::from_str(&args).with_context(|| {
                format!("--args is not JSON: {args:?} (quote strings: '\"text\"')")
            })?;
            if enqueue {
                let id = built.jobs().enqueue(name.as_str(), &args).await?;
                println!("ok: enqueued {name} as {id}; a worker (or `serve`) runs it");
                return Ok(());
            }
            let ctx = TaskContext {
                app: built.context.clone(),
                task_id: format!("cli-{}", uuid::Uuid::new_v4()),
                tries: 1,
            };
            let started = std::time::Instant::now();
            let outcome = tokio::time::timeout(task.options().timeout, (task.handler)(ctx, args))
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "{name} timed out after {}s",
                        task.options().timeout.as_secs_f64()
                    )
                })?;
            match outcome {
                TaskOutcome::Done => {
                    println!(
                        "ok: {name} finished in {} ms",
                        started.elapsed().as_millis()
                    );
                    Ok(())
                }
                TaskOutcome::BadArguments(e) => {
                    anyhow::bail!("{name} cannot take these arguments: {e}")
                }
                TaskOutcome::Failed(e) => anyhow::bail!("{name} failed: {}", e.detail()),
            }
        }
    }
}
