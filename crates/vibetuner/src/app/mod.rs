//! The app builder: where an app registers its routes, models, tasks, services, middleware,
//! hooks and commands (Vibetuner's `tune.py`, Loco's `Hooks`), and runs its command line.
//!
//! - [`context`]: [`AppContext`], what handlers, tasks, hooks and commands see;
//! - `build`: turns the registrations and the settings into a [`BuiltApp`];
//! - `cli`: the app binary's subcommands (`serve`, `worker`, `db`, ... and the app's own);
//! - `serve`: listening, readiness, graceful shutdown.

mod build;
mod cli;
mod listen;
mod serve;
mod take_over;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, Route};
use minijinja::{Environment, Value};
use serde::Serialize;
use tower::{Layer, Service};

pub use build::BuiltApp;
pub use serve::shutdown_signal;
pub use take_over::Finding;

use crate::context::AppContext;
use crate::health::ServiceCheck;
use crate::project;
use crate::render::{ContextProvider, EnvHook, RequestInfo};
use crate::store::{Index, Model, Store, StoreError};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Hook = Arc<dyn Fn(AppContext) -> BoxFuture<crate::error::Result<()>> + Send + Sync>;
type RouterLayer = Box<dyn FnOnce(Router) -> Router + Send>;

type CommandRun =
    Arc<dyn Fn(AppContext, &clap::ArgMatches) -> BoxFuture<crate::error::Result<()>> + Send + Sync>;

/// A subcommand registered by the app.
pub(super) struct AppCommand {
    pub(super) command: clap::Command,
    pub(super) run: CommandRun,
}

impl AppCommand {
    pub(super) fn new<A, F, Fut>(name: &'static str, about: &'static str, run: F) -> Self
    where
        A: clap::FromArgMatches + clap::Args + Send + 'static,
        F: Fn(AppContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = crate::error::Result<()>> + Send + 'static,
    {
        let command = A::augment_args(clap::Command::new(name).about(about));
        let run: CommandRun = Arc::new(move |ctx, matches| match A::from_arg_matches(matches) {
            Ok(args) => Box::pin(run(ctx, args)),
            Err(e) => {
                let e = crate::error::Error::bad_request(e.to_string());
                Box::pin(async move { Err(e) })
            }
        });
        Self { command, run }
    }
}

/// A registered model: its collection and how to create its indexes.
#[derive(Clone)]
pub(super) struct ModelEntry {
    pub(super) collection: &'static str,
    indexes: fn() -> Vec<Index>,
    ensure_indexes: fn(Store) -> BoxFuture<Result<usize, StoreError>>,
}

impl ModelEntry {
    pub(super) fn of<T: Model>() -> Self {
        Self {
            collection: T::COLLECTION,
            indexes: T::indexes,
            ensure_indexes: |store| {
                Box::pin(async move { store.models::<T>().ensure_indexes().await })
            },
        }
    }
}

/// The framework's own models, registered on every app.
pub(super) fn framework_models() -> Vec<ModelEntry> {
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
        $crate::app::ProjectSource {
            answers: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/vibetuner.toml")),
            version: env!("CARGO_PKG_VERSION"),
            manifest_dir: env!("CARGO_MANIFEST_DIR"),
        }
    };
}

/// An app under construction. Every registration returns the builder, so an app reads as one
/// chain; [`App::run`] parses the command line and runs the chosen subcommand.
///
/// ```no_run
/// use vibetuner::prelude::*;
///
/// async fn hello(render: Render) -> Result<Html<String>> {
///     render.page("index.html.jinja", ())
/// }
///
/// fn main() -> std::process::ExitCode {
///     App::new(vibetuner::project!())
///         .route("/hello", get(hello))
///         .run()
/// }
/// ```
#[must_use = "an App does nothing until it is run or built"]
pub struct App {
    source: ProjectSource,
    routes: Router,
    hooks: Vec<EnvHook>,
    providers: Vec<ContextProvider>,
    checks: Vec<ServiceCheck>,
    models: Vec<ModelEntry>,
    names: Vec<(String, String)>,
    registry: crate::tasks::Registry,
    services: crate::context::Services,
    layers: Vec<RouterLayer>,
    on_startup: Vec<Hook>,
    on_shutdown: Vec<Hook>,
    commands: Vec<AppCommand>,
    table: Vec<crate::routes::RouteInfo>,
    opaque: usize,
    /// The environment commands read in place of the process's ([`App::run_with_env`]).
    environment: Option<Vec<(String, String)>>,
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
            registry: crate::tasks::Registry::default(),
            services: crate::context::Services::default(),
            layers: Vec::new(),
            on_startup: Vec::new(),
            on_shutdown: Vec::new(),
            commands: Vec::new(),
            table: Vec::new(),
            opaque: 0,
            environment: None,
        }
    }

    /// Passes the builder through `register`, a module's registration function, so an app
    /// stays one chain: `.apply(notes::register)`.
    pub fn apply(self, register: impl FnOnce(Self) -> Self) -> Self {
        register(self)
    }

    /// Registers a model: its indexes are created at startup and by `db ensure-indexes`.
    pub fn model<T: Model>(mut self) -> Self {
        if !self.models.iter().any(|m| m.collection == T::COLLECTION) {
            self.models.push(ModelEntry::of::<T>());
        }
        self
    }

    /// Adds a model's CRUD routes (and registers the model and the routes' names).
    pub fn crud<T: Model>(mut self, crud: crate::crud::Crud<T>) -> Self {
        self.names.extend(crud.route_names());
        self.table.extend(crud.route_table());
        self.routes = self.routes.merge(crud.into_router());
        self.model::<T>()
    }

    /// Adds a route with a name, for `url_for(name, ...)` in templates and [`crate::urls::Urls`] in handlers.
    pub fn named_route(mut self, name: &str, path: &str, method_router: MethodRouter) -> Self {
        self.names.push((name.to_owned(), path.to_owned()));
        let mut app = self.route(path, method_router);
        if let Some(last) = app.table.last_mut() {
            last.name = Some(name.to_owned());
        }
        app
    }

    /// Adds a route. Registering `/` replaces the framework's home page.
    pub fn route(mut self, path: &str, method_router: MethodRouter) -> Self {
        self.table
            .push(crate::routes::RouteInfo::of(&method_router, path, "app"));
        self.routes = self.routes.route(path, method_router);
        self
    }

    /// Merges a whole router (its routes keep their paths; `routes` counts it but cannot list
    /// its routes).
    pub fn merge(mut self, router: Router) -> Self {
        self.opaque += 1;
        self.routes = self.routes.merge(router);
        self
    }

    /// Wraps every page, API and auth route (not statics or health probes) in an app-wide
    /// middleware. It runs inside the framework's layers, so it can use extractors such as
    /// [`AppContext`] and [`crate::auth::MaybeUser`]; layers added later run first.
    ///
    /// ```no_run
    /// use vibetuner::prelude::*;
    /// use vibetuner::axum::{extract::Request, middleware::{self, Next}};
    ///
    /// async fn stamp(request: Request, next: Next) -> Response {
    ///     let mut response = next.run(request).await;
    ///     response.headers_mut().insert("x-app", "demo".parse().unwrap());
    ///     response
    /// }
    ///
    /// # fn main() {
    /// App::new(vibetuner::project!()).layer(middleware::from_fn(stamp));
    /// # }
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<std::convert::Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.layers
            .push(Box::new(move |router: Router| router.layer(layer)));
        self
    }

    /// Makes `value` available to handlers ([`crate::context::Service`] extractor), tasks, hooks and
    /// commands (`ctx.service::<T>()`): an HTTP client, an API key, a cache. One value per type;
    /// a later one replaces an earlier one.
    pub fn provide<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.services.insert(value);
        self
    }

    /// Runs `hook` once the app is built, before `serve` listens and before a `worker` takes
    /// tasks (indexes exist by then); an error stops the process with its message.
    pub fn on_startup<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(AppContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = crate::error::Result<()>> + Send + 'static,
    {
        self.on_startup
            .push(Arc::new(move |ctx| Box::pin(hook(ctx))));
        self
    }

    /// Runs `hook` after `serve` or `worker` stopped (in-flight requests and tasks are done);
    /// an error is logged.
    pub fn on_shutdown<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(AppContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = crate::error::Result<()>> + Send + 'static,
    {
        self.on_shutdown
            .push(Arc::new(move |ctx| Box::pin(hook(ctx))));
        self
    }

    /// Changes the template environment: add filters, functions, tests.
    ///
    /// ```no_run
    /// # let app = vibetuner::App::new(vibetuner::project!());
    /// app.templates(|env| env.add_filter("shout", |s: String| s.to_uppercase()));
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

    /// Registers a task that handlers and other tasks enqueue (by its name or [`crate::jobs::TaskKey`]).
    pub fn task(mut self, task: crate::tasks::Task) -> Self {
        self.registry.add(task);
        self
    }

    /// Registers a task fired on a cron schedule (five fields, or six with seconds first);
    /// each fire time runs once, however many workers there are.
    ///
    /// # Panics
    /// When the pattern is invalid, so the app refuses to start.
    pub fn cron(mut self, pattern: &str, task: crate::tasks::Task) -> Self {
        if let Err(e) = self.registry.add_cron(pattern, task) {
            panic!("{e}");
        }
        self
    }

    /// Adds a public SSE endpoint streaming a fixed channel: anyone who can reach `path`
    /// subscribes. For channels that belong to someone, use [`App::sse_for`].
    ///
    /// # Panics
    /// When the channel name is invalid (see [`crate::sse::valid_channel`]).
    pub fn sse(self, path: &str, channel: &str) -> Self {
        assert!(
            crate::sse::valid_channel(channel),
            "invalid SSE channel name {channel:?}: use 1 to 128 characters from A-Z a-z 0-9 - : _ ."
        );
        let channel = channel.to_owned();
        self.sse_for(path, move |(): ()| {
            let channel = channel.clone();
            async move { Ok(channel) }
        })
    }

    /// Adds an SSE endpoint whose channel `authorize` picks per request from its extractors
    /// (the signed-in user, path parameters, ...), or refuses with an error (for example
    /// [`crate::auth::CurrentUser`]'s 401 or redirect). Nothing streams before it answers.
    ///
    /// ```no_run
    /// use vibetuner::prelude::*;
    ///
    /// fn register(app: App) -> App {
    ///     // Each user follows their own channel; anonymous clients are refused.
    ///     app.sse_for("/inbox/events", |user: CurrentUser| async move {
    ///         Ok(format!("inbox:{}", user.record_id()?))
    ///     })
    /// }
    /// ```
    pub fn sse_for<E, F, Fut>(self, path: &str, authorize: F) -> Self
    where
        E: axum::extract::FromRequestParts<()> + Send + 'static,
        F: Fn(E) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<String, crate::error::Error>> + Send + 'static,
    {
        self.route(
            path,
            axum::routing::get(move |sse: crate::sse::Sse, allowed: E| async move {
                let channel = authorize(allowed).await?;
                sse.channel(&channel).await
            }),
        )
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
}
