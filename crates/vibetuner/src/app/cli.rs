//! The app binary's command line: the framework's subcommands (`serve`, `worker`, `check`,
//! `db`, ...) and the ones the app adds with [`App::command`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use super::{App, AppCommand, BuiltApp};
use crate::config::Settings;
use crate::context::AppContext;
use crate::project::Project;
use crate::render::FrameworkTemplates;

impl App {
    /// Adds a subcommand to the app binary: `cargo run -- NAME [ARGS]`, with `A` parsed by clap
    /// (`#[derive(clap::Args)]`) and `run` given the built app's context.
    ///
    /// ```no_run
    /// use vibetuner::prelude::*;
    /// use vibetuner::clap;
    ///
    /// #[derive(clap::Args)]
    /// struct Greet {
    ///     /// Who to greet.
    ///     #[arg(long, default_value = "world")]
    ///     name: String,
    /// }
    ///
    /// # fn main() {
    /// App::new(vibetuner::project!()).command("greet", "Print a greeting", |_ctx, args: Greet| async move {
    ///     println!("hello, {}", args.name);
    ///     Ok(())
    /// });
    /// # }
    /// ```
    ///
    /// # Panics
    /// When `name` is already a framework or app command.
    pub fn command<A, F, Fut>(mut self, name: &'static str, about: &'static str, run: F) -> Self
    where
        A: FromArgMatches + clap::Args + Send + 'static,
        F: Fn(AppContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = crate::error::Result<()>> + Send + 'static,
    {
        let command = AppCommand::new(name, about, run);
        assert!(
            !is_taken(name, &self.commands),
            "command {name:?} is already defined; choose another name"
        );
        self.commands.push(command);
        self
    }

    /// Parses the command line and runs the chosen subcommand on a new Tokio runtime.
    pub fn run(self) -> ExitCode {
        match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(self.run_with_args(std::env::args_os())),
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// Like [`App::run`], inside an existing runtime and with explicit arguments.
    pub async fn run_with_args<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        run(self, args).await
    }

    /// Like [`App::run_with_args`], with `env` read for settings in place of the process
    /// environment (`.env` and `.env.local` still apply beneath it): a test runs a command
    /// with settings of its own without touching the environment other threads read.
    ///
    /// ```no_run
    /// # async fn example(app: vibetuner::App) {
    /// let code = app
    ///     .run_with_env(["app", "task", "list"], [("ENVIRONMENT", "dev"), ("DATA_DIR", "/tmp/data")])
    ///     .await;
    /// # }
    /// ```
    pub async fn run_with_env<I, T, K, V>(
        mut self,
        args: I,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
        K: Into<String>,
        V: Into<String>,
    {
        self.environment = Some(env.into_iter().map(|(k, v)| (k.into(), v.into())).collect());
        run(self, args).await
    }

    /// The settings a command runs with: the project's files and the process environment, or
    /// the environment given to [`App::run_with_env`].
    fn settings(&self, root: &Path) -> Result<Settings, crate::config::ConfigError> {
        match &self.environment {
            Some(env) => Settings::from_source(crate::config::Source::layered(
                root,
                None,
                env.iter().cloned(),
            )?),
            None => Settings::load(root),
        }
    }
}

/// True when `name` is a framework command or one of `commands`.
pub(super) fn is_taken(name: &str, commands: &[AppCommand]) -> bool {
    Cli::command()
        .get_subcommands()
        .any(|c| c.get_name() == name)
        || commands.iter().any(|c| c.command.get_name() == name)
}

pub(super) async fn run<I, T>(mut app: App, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let project = match Project::from_answers(app.source.answers) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut command = Cli::command()
        .name(leak(project.project_slug.clone()))
        .about(format!(
            "{} — {}",
            project.project_name, project.project_description
        ))
        .version(app.source.version);
    for app_command in &app.commands {
        command = command.subcommand(app_command.command.clone());
    }
    let matches = match command.try_get_matches_from(args) {
        Ok(matches) => matches,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let chosen = matches.subcommand().and_then(|(name, sub)| {
        let index = app
            .commands
            .iter()
            .position(|c| c.command.get_name() == name)?;
        Some((index, sub))
    });
    let result = match chosen {
        Some((index, sub)) => {
            let chosen = app.commands.swap_remove(index);
            run_app_command(app, chosen, sub).await
        }
        None => match Cli::from_arg_matches(&matches) {
            Ok(cli) => dispatch(app, cli.command, &project).await,
            Err(e) => {
                let _ = e.print();
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds the app (settings from the project root) for a command that is not `serve`.
async fn build(app: App) -> anyhow::Result<BuiltApp> {
    let root = app.root();
    let settings = app.settings(&root)?;
    app.build(settings, &root).await
}

async fn run_app_command(
    app: App,
    command: AppCommand,
    matches: &ArgMatches,
) -> anyhow::Result<()> {
    let built = build(app).await?;
    built.start().await?;
    let result = (command.run)(built.context.clone(), matches).await;
    built.stop().await;
    result.map_err(|e| anyhow::anyhow!("{}", e.detail()))
}

async fn dispatch(app: App, command: Command, project: &Project) -> anyhow::Result<()> {
    match command {
        Command::Version => {
            println!(
                "{} {} (vibetuner {})",
                project.project_slug,
                app.source.version,
                env!("CARGO_PKG_VERSION")
            );
            Ok(())
        }
        Command::Routes => {
            let built = build(app).await?;
            print!("{}", built.route_table());
            Ok(())
        }
        Command::ExportTemplates { dir } => {
            let count = export_templates(&dir)?;
            println!("wrote {count} framework templates to {}", dir.display());
            Ok(())
        }
        Command::Settings => {
            let source = crate::config::Source::load(&app.root())?;
            print!("{}", crate::config::describe(&source));
            for warning in crate::config::typo_warnings(&source) {
                eprintln!("warning: {warning}");
            }
            Ok(())
        }
        Command::Check => {
            let built = build(app).await?;
            for warning in crate::config::typo_warnings(&built.settings().source) {
                eprintln!("warning: {warning}");
            }
            let count = check_templates(&built)?;
            println!(
                "ok: settings valid ({}), {count} templates compile, root {}",
                built.settings().environment,
                built.root().display()
            );
            Ok(())
        }
        Command::Db { command } => {
            let built = build(app).await?;
            let store = built.store();
            let location = store
                .embedded_path()
                .map(|p| p.display().to_string())
                .or_else(|| {
                    built
                        .settings()
                        .mongodb_url
                        .as_deref()
                        .map(crate::health::redact)
                })
                .unwrap_or_default();
            match command {
                DbCommand::EnsureIndexes => {
                    let n = built.ensure_indexes().await.with_context(|| {
                        format!(
                            "cannot create indexes in the {} store at {location}",
                            store.kind()
                        )
                    })?;
                    println!(
                        "ok: {n} indexes ensured on {} collections ({} store at {location})",
                        built.collections().len(),
                        store.kind()
                    );
                }
                DbCommand::TakeOver { check, apply } => {
                    if apply {
                        for line in built.take_over_vibetuner().await? {
                            println!("done: {line}");
                        }
                    }
                    let findings = built.vibetuner_findings().await?;
                    for finding in &findings {
                        println!("{finding}");
                    }
                    if findings.is_empty() {
                        println!("ok: nothing stands in the way of taking over this database");
                    } else if check {
                        anyhow::bail!(
                            "{} finding(s) above; fix them as each says (`db take-over \
                             --apply` makes the reversible changes), then check again",
                            findings.len()
                        );
                    }
                }
                DbCommand::Find {
                    collection,
                    conditions,
                    limit,
                    sort,
                } => {
                    let query = find_query(&collection, &conditions, limit, sort.as_deref())?;
                    let coll = store.collection(&collection);
                    let (docs, total) =
                        tokio::try_join!(coll.find(&query), coll.count(&query.filter))
                            .with_context(|| {
                                format!(
                                    "cannot read {collection} in the {} store at {location}",
                                    store.kind()
                                )
                            })?;
                    for doc in &docs {
                        println!(
                            "{}",
                            serde_json::Value::Object(crate::store::doc_to_api_json(doc))
                        );
                    }
                    eprintln!(
                        "{} of {total} matching documents in {collection}",
                        docs.len()
                    );
                }
                DbCommand::Ping => {
                    store.ping().await.with_context(|| {
                        format!("the {} store at {location} does not answer", store.kind())
                    })?;
                    println!("ok: {} store at {location} answers", store.kind());
                }
            }
            Ok(())
        }
        Command::Worker { concurrency } => {
            let root = app.root();
            let settings = app.settings(&root)?;
            crate::logging::init(&settings);
            let built = app.build(settings, &root).await?;
            built.start().await?;
            let worker =
                crate::tasks::Worker::new(&built, concurrency).with_watchdog(built.jobs_settings());
            super::serve::notify_systemd();
            worker.run(super::serve::shutdown_signal()).await;
            built.stop().await;
            Ok(())
        }
        Command::WorkerHealth => {
            let root = app.root();
            let settings = app.settings(&root)?;
            let health = crate::tasks::worker_health(&settings, &root, &project.project_slug).await;
            if health.healthy {
                println!("ok: {}", health.detail);
                Ok(())
            } else {
                anyhow::bail!("worker unhealthy: {}", health.detail)
            }
        }
        Command::DeadLetters { command } => {
            let built = build(app).await?;
            crate::tasks::run_dead_letter_command(&built, command).await
        }
        Command::Task { command } => {
            let built = build(app).await?;
            built.start().await?;
            let result = crate::tasks::run_task_command(&built, command).await;
            built.stop().await;
            result
        }
        Command::Serve { host, port, worker } => {
            let root = app.root();
            let mut settings = app.settings(&root)?;
            crate::logging::init(&settings);
            if let Some(host) = host {
                settings.host = host;
            }
            if let Some(port) = port {
                settings.port = port;
            }
            let listener = match super::serve::inherited_listener()? {
                Some(listener) => {
                    tracing::info!("serving on the inherited socket (LISTEN_FDS)");
                    listener
                }
                None => {
                    let addr = format!("{}:{}", settings.host, settings.port);
                    super::listen::bind(&addr).await.with_context(|| {
                        format!("cannot listen on {addr} (is another server using the port? pick one with --port)")
                    })?
                }
            };
            app.serve_with(
                listener,
                settings,
                &root,
                super::serve::shutdown_signal(),
                worker,
            )
            .await
        }
    }
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the web server (HOST/PORT settings, 127.0.0.1:8000 in dev; a socket passed in
    /// LISTEN_FDS, as systemd and `vibetuner dev` do, instead).
    Serve {
        /// Address to bind, e.g. 0.0.0.0 (default: HOST, else 127.0.0.1 in dev, 0.0.0.0 in prod).
        #[arg(long)]
        host: Option<String>,
        /// Port to bind, 0 for any free port (default: PORT, else 8000).
        #[arg(long)]
        port: Option<u16>,
        /// Also run the task worker in this process when the queue is Redis (REDIS_URL); with
        /// the embedded queue it runs here anyway.
        #[arg(long)]
        worker: bool,
    },
    /// Validate settings and compile every template, then exit (0 when all is well); warns
    /// about keys that look like a misspelt setting.
    Check,
    /// Print every framework setting with the value in effect (secrets hidden) or its
    /// default, and warn about keys that look like a misspelt setting.
    Settings,
    /// List the routes: method, path, name (for `url_for`) and the layers around each.
    Routes,
    /// Write the framework's embedded templates to DIR so Tailwind scans the classes they use.
    ExportTemplates {
        /// Target folder; replaced on every export.
        #[arg(default_value = ".vibetuner/templates")]
        dir: PathBuf,
    },
    /// Database maintenance (MongoDB when MONGODB_URL is set, else the embedded store).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Print the app and framework versions.
    Version,
    /// Run background tasks and cron schedules (the queue in Redis with REDIS_URL, else in the store).
    Worker {
        /// Tasks run at once (default: WORKER_CONCURRENCY, else 16).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Exit 0 when a worker renewed its heartbeat recently, 1 otherwise (for health checks).
    WorkerHealth,
    /// List, retry or purge tasks that failed their last retry.
    DeadLetters {
        #[command(subcommand)]
        command: crate::tasks::DeadLetterCommand,
    },
    /// List the registered tasks, or run one now (cron tasks too).
    Task {
        #[command(subcommand)]
        command: crate::tasks::TaskCommand,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Print a collection's documents as JSON lines (ids as hex, dates as RFC 3339), on either
    /// backend: `db find notes title="Buy milk" --sort=-db_insert_dt`.
    Find {
        /// The collection, e.g. `users` or `notes`.
        collection: String,
        /// Conditions FIELD=VALUE that must all hold. VALUE is JSON when it parses (`3`, `true`,
        /// `"3"`), else text; for `id` and fields ending in `_id` it is an id (24 hex digits).
        conditions: Vec<String>,
        /// At most this many documents.
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Order by FIELD, or -FIELD for descending (default: id order, oldest first).
        #[arg(long, allow_hyphen_values = true)]
        sort: Option<String>,
    },
    /// Create the indexes every registered model declares (safe to repeat).
    EnsureIndexes,
    /// Check that the database answers.
    Ping,
    /// Report what taking over a Vibetuner database meets: conflicting indexes, addresses that
    /// differ only in case, unlinked OAuth accounts, pending magic links, languages Vibetuner
    /// rejects.
    TakeOver {
        /// Exit with status 1 when anything is found (for scripts and `doctor`).
        #[arg(long, conflicts_with = "apply")]
        check: bool,
        /// Also make the reversible changes (link OAuth accounts to the users holding them).
        #[arg(long)]
        apply: bool,
    },
}

/// The query of `db find`, refusing bad names and values with what to type instead.
fn find_query(
    collection: &str,
    conditions: &[String],
    limit: u64,
    sort: Option<&str>,
) -> anyhow::Result<crate::store::Query> {
    use crate::store::{Filter, Id, Order, Query, valid_collection, valid_field};
    anyhow::ensure!(
        valid_collection(collection),
        "{collection:?} is not a collection name (letters, digits and _ ; e.g. users)"
    );
    let mut filter = Filter::All;
    for condition in conditions {
        let (field, raw) = condition.split_once('=').with_context(|| {
            format!("{condition:?} is not FIELD=VALUE (e.g. email=ada@example.com)")
        })?;
        let field = if field == "id" { "_id" } else { field };
        anyhow::ensure!(valid_field(field), "{field:?} is not a field name");
        let value = if field == "_id" || field.ends_with("_id") {
            let id: Id = raw
                .parse()
                .map_err(|_| anyhow::anyhow!("{field} takes an id (24 hex digits), got {raw:?}"))?;
            bson::Bson::from(id)
        } else {
            match serde_json::from_str::<serde_json::Value>(raw) {
                Ok(json) => bson::Bson::try_from(json)
                    .map_err(|e| anyhow::anyhow!("{field}: {raw:?} has no stored form: {e}"))?,
                Err(_) => bson::Bson::String(raw.to_owned()),
            }
        };
        filter = filter.and(Filter::Eq(field.to_owned(), value));
    }
    let mut query = Query::filter(filter).limit(limit.max(1));
    if let Some(spec) = sort {
        let (field, order) = match spec.strip_prefix('-') {
            Some(f) => (f, Order::Desc),
            None => (spec, Order::Asc),
        };
        let field = if field == "id" { "_id" } else { field };
        anyhow::ensure!(valid_field(field), "--sort {spec:?}: not a field name");
        query = query.sort(field, order);
    }
    Ok(query)
}

/// Command names must be `'static` in clap; the app's name lives for the whole process.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Marker file that makes an export folder safe to replace.
const EXPORT_MARKER: &str = ".vibetuner-export";

/// Writes the framework's frontend templates to `dir`, replacing an earlier export.
fn export_templates(dir: &Path) -> anyhow::Result<usize> {
    if dir.exists() {
        let is_export = dir.join(EXPORT_MARKER).is_file();
        let empty = dir
            .read_dir()
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        anyhow::ensure!(
            is_export || empty,
            "{} exists and was not written by export-templates; remove it or choose another folder",
            dir.display()
        );
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    let mut count = 0;
    for name in FrameworkTemplates::iter() {
        let Some(relative) = name.strip_prefix("frontend/") else {
            continue;
        };
        let file = FrameworkTemplates::get(&name).expect("listed templates exist");
        let target = dir.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, &file.data)
            .with_context(|| format!("cannot write {}", target.display()))?;
        count += 1;
    }
    std::fs::write(
        dir.join(EXPORT_MARKER),
        "Written by `export-templates` for Tailwind's class scanning; do not edit.\n",
    )?;
    Ok(count)
}

/// Compiles every app and framework template; the error lists each broken one.
fn check_templates(built: &BuiltApp) -> anyhow::Result<usize> {
    let app_dir = built.root().join("templates/frontend");
    let mut names: Vec<String> = FrameworkTemplates::iter()
        .filter_map(|n| n.strip_prefix("frontend/").map(str::to_owned))
        .collect();
    if app_dir.is_dir() {
        collect_names(&app_dir, &app_dir, &mut names)?;
    }
    names.sort();
    names.dedup();
    let broken: Vec<String> = names
        .iter()
        .filter_map(|n| {
            built
                .renderer()
                .compile(n)
                .err()
                .map(|e| format!("{n}: {}", e.detail()))
        })
        .collect();
    anyhow::ensure!(
        broken.is_empty(),
        "templates do not compile:\n  {}",
        broken.join("\n  ")
    );
    Ok(names.len())
}

fn collect_names(base: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_names(base, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(base) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}
