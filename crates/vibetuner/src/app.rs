//! The app builder: where an app registers its routes, template extensions and checks
//! (Vibetuner's `tune.py`), and the app binary's command line (`serve`, `check`, ...).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use minijinja::{Environment, Value};
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::Instrument;

use crate::config::Settings;
use crate::error::{Error, ErrorPages};
use crate::health::{Health, ServiceCheck};
use crate::meta::Meta;
use crate::project::{self, Project};
use crate::render::{ContextProvider, EnvHook, FrameworkTemplates, Render, Renderer, RequestInfo};
use crate::statics::{self, Statics};
use crate::store::{Model, Store, StoreError};
use crate::urls::Urls;

type IndexFuture = std::pin::Pin<Box<dyn Future<Output = Result<usize, StoreError>> + Send>>;

/// A registered model: its collection and how to create its indexes.
#[derive(Clone)]
struct ModelEntry {
    collection: &'static str,
    ensure_indexes: fn(Store) -> IndexFuture,
}

impl ModelEntry {
    fn of<T: Model>() -> Self {
        Self {
            collection: T::COLLECTION,
            ensure_indexes: |store| {
                Box::pin(async move { store.models::<T>().ensure_indexes().await })
            },
        }
    }
}

/// The framework's own models, registered on every app.
fn framework_models() -> Vec<ModelEntry> {
    use crate::models::*;
    vec![
        ModelEntry::of::<User>(),
        ModelEntry::of::<OAuthAccount>(),
        ModelEntry::of::<EmailVerificationToken>(),
        ModelEntry::of::<ConfigEntry>(),
        ModelEntry::of::<DeadLetter>(),
        ModelEntry::of::<Blob>(),
        ModelEntry::of::<crate::auth::session::StoredSession>(),
    ]
}

/// What [`project!`](crate::project) captures from the app crate at compile time.
#[derive(Debug, Clone, Copy)]
pub struct ProjectSource {
    /// Contents of the app's `vibetuner.toml`.
    pub answers: &'static str,
    /// The app crate's version.
    pub version: &'static str,
    /// The app crate's source folder (fallback project root in development).
    pub manifest_dir: &'static str,
}

/// Captures the app's `vibetuner.toml`, version and source folder; pass it to [`App::new`].
#[macro_export]
macro_rules! project {
    () => {
        $crate::ProjectSource {
            answers: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/vibetuner.toml")),
            version: env!("CARGO_PKG_VERSION"),
            manifest_dir: env!("CARGO_MANIFEST_DIR"),
        }
    };
}

/// An app under construction: routes, template extensions, context providers and checks.
pub struct App {
    source: ProjectSource,
    routes: Router,
    hooks: Vec<EnvHook>,
    providers: Vec<ContextProvider>,
    checks: Vec<ServiceCheck>,
    models: Vec<ModelEntry>,
    names: Vec<(String, String)>,
    registry: crate::jobs::Registry,
}

/// A built app: its router plus what `serve` reports.
pub struct BuiltApp {
    /// The complete router with every framework layer.
    pub router: Router,
    /// The settings it was built with.
    pub settings: Settings,
    /// The project's answers.
    pub project: Project,
    /// The project root it reads templates and statics from.
    pub root: PathBuf,
    /// The running version (with `-dev` outside prod).
    pub version: String,
    /// The template renderer.
    pub renderer: Arc<Renderer>,
    /// The database.
    pub store: Store,
    /// Route names and paths.
    pub urls: Urls,
    /// The task queue.
    pub jobs: crate::jobs::Jobs,
    /// SSE broadcasting.
    pub broadcaster: crate::sse::Broadcaster,
    /// Jobs, worker and SSE settings.
    pub jobs_settings: crate::config::JobsSettings,
    models: Vec<ModelEntry>,
}

impl BuiltApp {
    /// Creates the indexes of every registered model (framework and app); returns how many.
    pub async fn ensure_indexes(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        for model in &self.models {
            total += (model.ensure_indexes)(self.store.clone())
                .await
                .map_err(|e| StoreError::Backend(format!("{}: {e}", model.collection)))?;
        }
        Ok(total)
    }

    /// The collections of every registered model.
    pub fn collections(&self) -> Vec<&'static str> {
        self.models.iter().map(|m| m.collection).collect()
    }
}

impl App {
    /// Starts an app from [`project!`](crate::project).
    pub fn new(source: ProjectSource) -> Self {
        Self {
            source,
            routes: Router::new(),
            hooks: Vec::new(),
            providers: Vec::new(),
            checks: Vec::new(),
            models: framework_models(),
            names: Vec::new(),
            registry: crate::jobs::Registry::default(),
        }
    }

    /// Registers a model: its indexes are created at startup and by `db ensure-indexes`.
    pub fn model<T: Model>(mut self) -> Self {
        if !self.models.iter().any(|m| m.collection == T::COLLECTION) {
            self.models.push(ModelEntry::of::<T>());
        }
        self
    }

    /// Adds a model's CRUD routes (and registers the model and the routes' names).
    pub fn crud<T: Model>(mut self, crud: crate::Crud<T>) -> Self {
        self.names.extend(crud.route_names());
        self.routes = self.routes.merge(crud.into_router());
        self.model::<T>()
    }

    /// Adds a route with a name, for `url_for(name, ...)` in templates and [`Urls`] in handlers.
    pub fn named_route(mut self, name: &str, path: &str, method_router: MethodRouter) -> Self {
        self.names.push((name.to_owned(), path.to_owned()));
        self.route(path, method_router)
    }

    /// Adds a route. Registering `/` replaces the framework's home page.
    pub fn route(mut self, path: &str, method_router: MethodRouter) -> Self {
        self.routes = self.routes.route(path, method_router);
        self
    }

    /// Merges a whole router (its routes keep their paths).
    pub fn merge(mut self, router: Router) -> Self {
        self.routes = self.routes.merge(router);
        self
    }

    /// Changes the template environment: add filters, functions, tests.
    ///
    /// ```ignore
    /// app.templates(|env| env.add_filter("shout", |s: String| s.to_uppercase()))
    /// ```
    pub fn templates(
        mut self,
        hook: impl Fn(&mut Environment<'static>) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Adds a global variable visible to every template.
    pub fn global(self, name: &'static str, value: impl Serialize) -> Self {
        let value = Value::from_serialize(&value);
        self.templates(move |env| env.add_global(name, value.clone()))
    }

    /// Adds a context provider: its map is merged into every render's context.
    pub fn context_provider(
        mut self,
        provider: impl Fn(&RequestInfo) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.providers.push(Arc::new(provider));
        self
    }

    /// Adds a service check reported by `/health?detailed=true` and `/health/ready`.
    pub fn health_check(mut self, check: ServiceCheck) -> Self {
        self.checks.push(check);
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
        let project = match Project::from_answers(self.source.answers) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let command = Cli::command()
            .name(leak(project.project_slug.clone()))
            .about(format!(
                "{} — {}",
                project.project_name, project.project_description
            ))
            .version(self.source.version);
        let cli = match command
            .try_get_matches_from(args)
            .and_then(|m| Cli::from_arg_matches(&m))
        {
            Ok(cli) => cli,
            Err(e) => {
                let _ = e.print();
                return if e.use_stderr() {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
        };
        match self.dispatch(cli.command, &project).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }

    async fn dispatch(self, command: Command, project: &Project) -> anyhow::Result<()> {
        match command {
            Command::Version => {
                println!(
                    "{} {} (vibetuner {})",
                    project.project_slug,
                    self.source.version,
                    env!("CARGO_PKG_VERSION")
                );
                Ok(())
            }
            Command::ExportTemplates { dir } => {
                let count = export_templates(&dir)?;
                println!("wrote {count} framework templates to {}", dir.display());
                Ok(())
            }
            Command::Check => {
                let root = self.root();
                let settings = Settings::load(&root)?;
                let built = self.build(settings, &root).await?;
                let count = check_templates(&built)?;
                println!(
                    "ok: settings valid ({}), {count} templates compile, root {}",
                    built.settings.environment,
                    built.root.display()
                );
                Ok(())
            }
            Command::Db { command } => {
                let root = self.root();
                let settings = Settings::load(&root)?;
                let built = self.build(settings, &root).await?;
                let store = &built.store;
                let location = store
                    .embedded_path()
                    .map(|p| p.display().to_string())
                    .or_else(|| {
                        built
                            .settings
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
                let root = self.root();
                let settings = Settings::load(&root)?;
                init_logging(&settings);
                let built = self.build(settings, &root).await?;
                built
                    .ensure_indexes()
                    .await
                    .context("cannot create the database indexes")?;
                let worker = crate::jobs::Worker::new(&built, concurrency)
                    .with_watchdog(&built.jobs_settings);
                notify_systemd();
                worker.run(shutdown_signal()).await;
                Ok(())
            }
            Command::WorkerHealth => {
                let root = self.root();
                let settings = Settings::load(&root)?;
                let health =
                    crate::jobs::worker_health(&settings, &root, &project.project_slug).await;
                if health.healthy {
                    println!("ok: {}", health.detail);
                    Ok(())
                } else {
                    anyhow::bail!("worker unhealthy: {}", health.detail)
                }
            }
            Command::DeadLetters { command } => {
                let root = self.root();
                let settings = Settings::load(&root)?;
                let built = self.build(settings, &root).await?;
                crate::jobs::run_dead_letter_command(&built, command).await
            }
            Command::Serve { host, port } => {
                let root = self.root();
                let mut settings = Settings::load(&root)?;
                init_logging(&settings);
                if let Some(host) = host {
                    settings.host = host;
                }
                if let Some(port) = port {
                    settings.port = port;
                }
                let addr = format!("{}:{}", settings.host, settings.port);
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (is another server using the port? pick one with --port)"))?;
                self.serve(listener, settings, &root, shutdown_signal())
                    .await
            }
        }
    }

    /// The project root: `VIBETUNER_ROOT`, the nearest folder with `vibetuner.toml`, or the app's sources.
    pub fn root(&self) -> PathBuf {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        project::find_root(
            std::env::var("VIBETUNER_ROOT").ok().as_deref(),
            &cwd,
            Some(Path::new(self.source.manifest_dir)),
        )
    }

    /// Builds the router with every framework route and layer.
    pub async fn build(self, settings: Settings, root: &Path) -> anyhow::Result<BuiltApp> {
        let project = Project::from_answers(self.source.answers).map_err(anyhow::Error::msg)?;
        let store = Store::from_settings(&settings, root, &project.project_slug).await?;
        let jobs_settings = crate::config::JobsSettings::from_source(&settings.source)?;
        // One connection (opened on first use) for every ordinary Redis command of this process.
        let redis = match settings.redis_url.as_deref() {
            Some(url) => Some((url, crate::redis_conn::connect(url, Duration::ZERO)?)),
            None => None,
        };
        let (jobs, broadcaster) = crate::jobs::connect(
            redis.as_ref().map(|(url, conn)| (*url, conn)),
            &jobs_settings,
            &project.project_slug,
            &store,
            self.registry,
        )
        .await?;
        let urls = Urls::new(self.names.clone()).map_err(anyhow::Error::msg)?;
        let mut version = settings
            .app_version
            .clone()
            .unwrap_or_else(|| self.source.version.to_owned());
        if !settings.is_prod() && settings.app_version.is_none() {
            version.push_str("-dev");
        }
        let v_hash = statics::version_hash(&version);
        let existing = |p: PathBuf| p.is_dir().then_some(p);
        let statics = Arc::new(Statics {
            dir: existing(root.join("assets/statics")),
            v_hash: v_hash.clone(),
            immutable: settings.is_prod(),
        });

        let mut hooks = self.hooks;
        let url_statics = statics.clone();
        hooks.insert(
            0,
            Arc::new(move |env: &mut Environment<'static>| {
                let s = url_statics.clone();
                env.add_function("static_url", move |path: String| s.url(&path));
            }),
        );
        let template_urls = urls.clone();
        hooks.insert(
            1,
            Arc::new(move |env: &mut Environment<'static>| {
                let u = template_urls.clone();
                env.add_function(
                    "url_for",
                    move |name: String, kwargs: minijinja::value::Kwargs| {
                        u.template_path(&name, &kwargs)
                    },
                );
            }),
        );
        let renderer = Arc::new(Renderer::new(
            existing(root.join("templates/frontend")),
            settings.template_reload,
            base_context(&project, &settings, &version, &v_hash),
            &hooks,
            self.providers,
        ));

        let mut checks = Vec::new();
        if settings.mongodb_url.is_some() {
            let db = store.clone();
            checks.push(ServiceCheck::new("mongodb", move || {
                let db = db.clone();
                async move { db.ping().await.map_err(|e| e.to_string()) }
            }));
        }
        checks.extend(crate::jobs::health_checks(&jobs));
        checks.extend(self.checks);
        let health = Arc::new(Health {
            app: project.project_slug.clone(),
            version: version.clone(),
            debug: settings.debug,
            port: settings.port,
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            checks,
        });
        let favicon = root.join("assets/statics/favicons/favicon.ico");
        let meta = Arc::new(Meta {
            renderer: renderer.clone(),
            favicon: favicon.is_file().then_some(favicon),
            fqdn: project.fqdn.clone(),
            brand_color: settings
                .source
                .get("BRAND_PRIMARY_COLOR")
                .unwrap_or("#5b2333")
                .to_owned(),
        });
        let security = Arc::new(crate::security::SecurityConfig::from_settings(&settings)?);
        let data_dir = crate::store::data_dir(&settings, root);
        let mailer = crate::mail::Mailer::from_settings(
            &settings,
            &data_dir,
            &format!(
                "{} <noreply@{}>",
                project.project_name,
                Some(project.fqdn.as_str())
                    .filter(|d| !d.is_empty())
                    .unwrap_or("localhost")
            ),
        )?;
        let prefix = jobs_settings.key_prefix(&project.project_slug);
        let (sessions, limiter) = match redis {
            Some((_, conn)) => (
                crate::auth::session::SessionBackend::Redis {
                    conn: conn.clone(),
                    prefix: prefix.clone(),
                },
                crate::ratelimit::RateLimiter::redis(conn, &prefix),
            ),
            None => (
                crate::auth::session::SessionBackend::Store(store.clone()),
                crate::ratelimit::RateLimiter::in_memory(),
            ),
        };
        let auth = crate::auth::Auth::new(
            crate::auth::AuthConfig::from_settings(&settings, &project)?,
            mailer,
            limiter,
        )?;
        let pages = ErrorPages {
            renderer: renderer.clone(),
            max_body_size: settings.max_body_size,
        };

        let router = self
            .routes
            .merge(crate::auth::router(&auth))
            .fallback(home_or_not_found)
            .layer(axum::Extension(renderer.clone()))
            .layer(axum::Extension(store.clone()))
            .layer(axum::Extension(urls.clone()))
            .layer(axum::Extension(jobs.clone()))
            .layer(axum::Extension(broadcaster.clone()))
            .layer(axum::Extension(auth.mailer.clone()))
            .layer(axum::Extension(Arc::new(auth)))
            .layer(axum::Extension(security.clone()))
            .layer(middleware::from_fn(crate::auth::load_user))
            .layer(crate::auth::session::layer(sessions, &settings))
            .layer(middleware::from_fn_with_state(
                security.clone(),
                crate::security::csrf_protection,
            ))
            // Static files and meta files need no session: no session read per asset.
            .merge(crate::meta::router(meta))
            .merge(statics::router(statics))
            .layer(DefaultBodyLimit::max(settings.max_body_size))
            .layer(RequestBodyLimitLayer::new(settings.max_body_size))
            .layer(CatchPanicLayer::new())
            .layer(middleware::from_fn_with_state(
                pages,
                crate::error::error_pages,
            ))
            .layer(middleware::from_fn_with_state(
                security.clone(),
                crate::security::security_headers,
            ))
            .layer(middleware::from_fn_with_state(security, access_log))
            // Health probes skip the page stack (logs, error pages, limits) on their hot path.
            .merge(crate::health::router(health))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));

        Ok(BuiltApp {
            router,
            settings,
            project,
            root: root.to_owned(),
            version,
            renderer,
            store,
            urls,
            jobs,
            broadcaster,
            jobs_settings,
            models: self.models,
        })
    }

    /// Serves on `listener` until `shutdown` resolves, then lets in-flight requests finish
    /// (up to `SHUTDOWN_TIMEOUT` seconds).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        mut settings: Settings,
        root: &Path,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        settings.port = addr.port();
        if let Some(warning) = settings.session_key_warning() {
            tracing::warn!("{warning}");
        }
        let built = self.build(settings, root).await?;
        warn_if_bundle_missing(&built.root);
        let indexes = built
            .ensure_indexes()
            .await
            .context("cannot create the database indexes")?;
        built
            .store
            .spawn_ttl_sweeper(Duration::from_secs(built.settings.store_ttl_interval_secs));
        tracing::info!(store = built.store.kind(), indexes, "database ready");
        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
        let mut worker_stopping = stopping_rx.clone();
        let in_process_worker = crate::jobs::spawn_in_process(&built, async move {
            let _ = worker_stopping.wait_for(|stopping| *stopping).await;
        });
        notify_systemd();
        let grace = Duration::from_secs(built.settings.shutdown_timeout_secs);
        tracing::info!(
            app = %built.project.project_slug,
            version = %built.version,
            environment = %built.settings.environment,
            root = %built.root.display(),
            "listening on http://{addr}"
        );
        let broadcaster = built.broadcaster.clone();
        let server = axum::serve(
            listener,
            built
                .router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stopping_tx.send(true);
            broadcaster.close();
        });
        let deadline = async move {
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => result.context("server failed")?,
            () = deadline => tracing::warn!("requests still running after {}s; exiting anyway", grace.as_secs()),
        }
        if let Some(worker) = in_process_worker {
            worker.stop().await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the web server (HOST/PORT settings, 127.0.0.1:8000 in dev).
    Serve {
        /// Address to bind, e.g. 0.0.0.0 (default: HOST, else 127.0.0.1 in dev, 0.0.0.0 in prod).
        #[arg(long)]
        host: Option<String>,
        /// Port to bind, 0 for any free port (default: PORT, else 8000).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Validate settings and compile every template, then exit (0 when all is well).
    Check,
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
        command: crate::jobs::DeadLetterCommand,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Create the indexes every registered model declares (safe to repeat).
    EnsureIndexes,
    /// Check that the database answers.
    Ping,
}

/// Command names must be `'static` in clap; the app's name lives for the whole process.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn base_context(
    project: &Project,
    settings: &Settings,
    version: &str,
    v_hash: &str,
) -> BTreeMap<String, Value> {
    use chrono::Datelike;
    let year = chrono::Utc::now().year();
    BTreeMap::from([
        ("project".into(), Value::from_serialize(project)),
        (
            "project_name".into(),
            Value::from(project.project_name.clone()),
        ),
        (
            "project_slug".into(),
            Value::from(project.project_slug.clone()),
        ),
        (
            "project_description".into(),
            Value::from(project.project_description.clone()),
        ),
        (
            "company_name".into(),
            Value::from(project.company_name.clone()),
        ),
        ("fqdn".into(), Value::from(project.fqdn.clone())),
        (
            "default_language".into(),
            Value::from(project.default_language.clone()),
        ),
        ("languages".into(), Value::from(project.languages())),
        ("copyright".into(), Value::from(project.copyright(year))),
        ("version".into(), Value::from(version)),
        ("v_hash".into(), Value::from(v_hash)),
        ("DEBUG".into(), Value::from(settings.debug)),
        (
            "environment".into(),
            Value::from(settings.environment.to_string()),
        ),
    ])
}

async fn home_or_not_found(render: Render, method: Method) -> Result<Response, Error> {
    if render.request().path == "/" && (method == Method::GET || method == Method::HEAD) {
        return render
            .page("index.html.jinja", ())
            .map(IntoResponse::into_response);
    }
    Err(Error::not_found())
}

async fn access_log(
    axum::extract::State(security): axum::extract::State<Arc<crate::security::SecurityConfig>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let client = crate::security::ClientIp::resolve(&security, peer, request.headers()).0;
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        %request_id,
        %client
    );
    let response = next.run(request).instrument(span.clone()).await;
    let ms = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = ms,
            "response"
        )
    });
    response
}

/// Tells systemd (`Type=notify`) the server is ready and, when `WatchdogSec` is set, keeps
/// pinging its watchdog from the runtime so a stalled process gets restarted. No-op elsewhere.
fn notify_systemd() {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!("cannot notify systemd of readiness: {e}");
    }
    if let Some(timeout) = sd_notify::watchdog_enabled().filter(|t| !t.is_zero()) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(timeout / 2);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
}

fn warn_if_bundle_missing(root: &Path) {
    let bundle = root.join("assets/statics/css/bundle.css");
    if !bundle.is_file() {
        tracing::warn!(
            "CSS bundle not built ({}): pages render unstyled. Build it with `bun install && bun run build` (or `npm install && npm run build`) in {}",
            bundle.display(),
            root.display()
        );
    }
}

/// Marker file that makes an export folder safe to replace.
const EXPORT_MARKER: &str = ".vibetuner-export";

/// Writes the framework's frontend templates to `dir`, replacing an earlier export.
pub fn export_templates(dir: &Path) -> anyhow::Result<usize> {
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
    let app_dir = built.root.join("templates/frontend");
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
                .renderer
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

/// Installs the tracing subscriber: JSON in prod, human-readable in dev; `LOG_LEVEL` filters.
pub fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _ = if settings.log_json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

/// Background jobs and SSE registration.
impl App {
    /// Registers a task that handlers and other tasks enqueue by name.
    pub fn task(mut self, task: crate::jobs::Task) -> Self {
        self.registry.add(task);
        self
    }

    /// Registers a task fired on a cron schedule (five fields, or six with seconds first);
    /// each fire time runs once, however many workers there are.
    ///
    /// # Panics
    /// When the pattern is invalid, so the app refuses to start.
    pub fn cron(mut self, pattern: &str, task: crate::jobs::Task) -> Self {
        if let Err(e) = self.registry.add_cron(pattern, task) {
            panic!("{e}");
        }
        self
    }

    /// Adds an SSE endpoint streaming a fixed channel.
    ///
    /// # Panics
    /// When the channel name is invalid (see [`crate::sse::valid_channel`]).
    pub fn sse(self, path: &str, channel: &str) -> Self {
        assert!(
            crate::sse::valid_channel(channel),
            "invalid SSE channel name {channel:?}: use 1 to 128 characters from A-Z a-z 0-9 - : _ ."
        );
        let channel = channel.to_owned();
        self.route(
            path,
            axum::routing::get(move |sse: crate::sse::Sse| {
                let channel = channel.clone();
                async move { sse.channel(&channel).await }
            }),
        )
    }
}
