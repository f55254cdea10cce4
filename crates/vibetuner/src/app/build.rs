//! Start-up: from the registrations and the settings to one [`AppContext`] and the router.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use minijinja::{Environment, Value};

use super::{App, Hook, ModelEntry};
use crate::config::Settings;
use crate::context::{AppContext, Inner};
use crate::error::Error;
use crate::health::{Health, ServiceCheck};
use crate::meta::Meta;
use crate::project::Project;
use crate::render::{Render, Renderer};
use crate::routes::{APP_LAYERS, RouteInfo, render};
use crate::statics::{self, Statics};
use crate::store::{IndexConflict, Store, StoreError, conflicts_report};
use crate::urls::Urls;

/// A built app: its router and its [`AppContext`] (which it dereferences to).
pub struct BuiltApp {
    /// The complete router with every framework layer.
    pub router: axum::Router,
    /// The same stack as a service, as the server calls it (no routing level around it).
    pub(crate) stack: crate::middleware::Stack,
    /// What handlers, tasks and hooks see.
    pub context: AppContext,
    /// The registered tasks and cron schedules, for the worker and the `task` command.
    pub(crate) tasks: Arc<crate::tasks::Registry>,
    models: Vec<ModelEntry>,
    on_startup: Vec<Hook>,
    on_shutdown: Vec<Hook>,
    routes: RouteTable,
}

/// What the `routes` command prints.
struct RouteTable {
    table: Vec<RouteInfo>,
    opaque: usize,
    app_layers: usize,
}

impl std::ops::Deref for BuiltApp {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.context
    }
}

impl BuiltApp {
    /// Creates the indexes of every registered model (framework and app); returns how many.
    /// Existing indexes are never dropped or changed: when some stand in the way of declared
    /// ones, nothing is created and the error lists every conflict with what to do.
    pub async fn ensure_indexes(&self) -> Result<usize, StoreError> {
        let conflicts = self.index_conflicts().await?;
        if !conflicts.is_empty() {
            return Err(StoreError::Config(conflicts_report(&conflicts)));
        }
        let mut total = 0;
        for model in &self.models {
            total += (model.ensure_indexes)(self.store().clone())
                .await
                .map_err(|e| StoreError::Backend(format!("{}: {e}", model.collection)))?;
        }
        Ok(total)
    }

    /// The existing indexes that stop declared ones from being created, over every model.
    pub(crate) async fn index_conflicts(&self) -> Result<Vec<IndexConflict>, StoreError> {
        let mut conflicts = Vec::new();
        for model in &self.models {
            conflicts.extend(
                self.store()
                    .collection(model.collection)
                    .index_conflicts(&(model.indexes)())
                    .await?,
            );
        }
        Ok(conflicts)
    }

    /// The route table the `routes` command prints: every route the builder and the framework
    /// recorded, and a note on routers merged whole.
    pub(crate) fn route_table(&self) -> String {
        render(
            &self.routes.table,
            self.routes.opaque,
            self.routes.app_layers,
        )
    }

    /// The collections of every registered model.
    pub fn collections(&self) -> Vec<&'static str> {
        self.models.iter().map(|m| m.collection).collect()
    }

    /// What `serve` and `worker` do before they take work: create the indexes, then run the
    /// app's [`App::on_startup`] hooks in order. Returns the number of indexes.
    pub async fn start(&self) -> anyhow::Result<usize> {
        let indexes = self
            .ensure_indexes()
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the database indexes: {e}"))?;
        for hook in &self.on_startup {
            hook(self.context.clone())
                .await
                .map_err(|e| anyhow::anyhow!("an on_startup hook failed: {}", e.detail()))?;
        }
        Ok(indexes)
    }

    /// Runs the app's [`App::on_shutdown`] hooks in order, logging their errors.
    pub async fn stop(&self) {
        for hook in &self.on_shutdown {
            if let Err(e) = hook(self.context.clone()).await {
                tracing::error!("an on_shutdown hook failed: {}", e.detail());
            }
        }
    }
}

impl App {
    /// Builds the context and the router with every framework route and layer.
    pub async fn build(self, settings: Settings, root: &Path) -> anyhow::Result<BuiltApp> {
        let project = Project::from_answers(self.source.answers)?;
        let store = Store::from_settings(&settings, root, &project.project_slug).await?;
        let jobs_settings = crate::config::JobsSettings::from_source(&settings.source)?;
        let prefix = jobs_settings.key_prefix(&project.project_slug);
        // One connection (opened on first use) for every ordinary Redis command of this process.
        let redis = crate::redis_conn::from_settings(&settings)?;
        let redis = redis.as_ref();
        let jobs = crate::jobs::Jobs::connect(
            redis,
            &jobs_settings,
            &prefix,
            &store,
            crate::jobs::heartbeat_file(&settings, root),
            self.registry.names().map(str::to_owned).collect(),
        );
        let broadcaster = crate::sse::Broadcaster::connect(redis, &jobs_settings, &prefix)?;
        let urls = Urls::new(self.names.clone())?;
        let mut version = settings
            .app_version
            .clone()
            .unwrap_or_else(|| self.source.version.to_owned());
        if !settings.is_prod() && settings.app_version.is_none() {
            version.push_str("-dev");
        }
        let existing = |p: PathBuf| p.is_dir().then_some(p);
        let statics = Arc::new(Statics {
            dir: existing(root.join("assets/statics")),
            v_hash: statics::version_hash(&version),
            immutable: settings.is_prod(),
        });
        let renderer = Arc::new(Renderer::new(
            existing(root.join("templates/frontend")),
            settings.template_reload,
            base_context(&project, &settings, &version, &statics),
            &template_hooks(self.hooks, &statics, &urls),
            self.providers,
        ));

        let mut checks = Vec::new();
        if settings.mongodb_url.is_some() {
            let db = store.clone();
            checks.push(ServiceCheck::new("mongodb", move || {
                let db = db.clone();
                async move { db.ping().await }
            }));
        }
        checks.extend(crate::jobs::health_checks(&jobs));
        checks.extend(self.checks);
        let health = Arc::new(Health {
            app: project.project_slug.clone(),
            version: version.clone(),
            debug: settings.debug,
            port: settings.port,
            prod: settings.is_prod(),
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            checks,
        });
        let favicon = root.join("assets/statics/favicons/favicon.ico");
        let auth_config = crate::auth::state::AuthConfig::from_settings(&settings, &project)?;
        let meta = Arc::new(Meta {
            renderer: renderer.clone(),
            favicon: favicon.is_file().then_some(favicon),
            origin: auth_config.base_url.clone(),
            brand_color: brand_color(&settings).to_owned(),
        });
        let security = Arc::new(crate::security::SecurityConfig {
            public_origin: auth_config.base_url.clone(),
            ..crate::security::SecurityConfig::from_settings(&settings)?
        });
        let data_dir = crate::store::data_dir(&settings, root);
        // The sender's domain: the project's fqdn, else the public origin's host (BASE_URL),
        // else localhost (dev).
        let origin_host = auth_config
            .base_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_owned));
        let mailer = crate::mail::Mailer::from_settings(
            &settings,
            &data_dir,
            &auth_config.site_name,
            Some(project.fqdn.as_str())
                .filter(|d| !d.is_empty())
                .or(origin_host.as_deref())
                .unwrap_or("localhost"),
        )?;
        let (sessions, limiter) = match redis {
            #[cfg(feature = "redis")]
            Some(redis) => (
                crate::auth::session::SessionBackend::Redis {
                    conn: redis.conn.clone(),
                    prefix: prefix.clone(),
                },
                crate::ratelimit::RateLimiter::redis(redis.conn.clone(), &prefix),
            ),
            _ => (
                crate::auth::session::SessionBackend::Store(store.clone()),
                crate::ratelimit::RateLimiter::in_memory(),
            ),
        };
        let new_sessions = crate::auth::session::NewSessions {
            limiter: limiter.clone(),
            rate: auth_config.session_rate,
        };
        let auth = Arc::new(crate::auth::state::Auth::new(
            auth_config,
            mailer.clone(),
            limiter,
        )?);

        let (auth_routes, auth_table) = crate::auth::router(&auth);
        let mut table = self.table;
        table.extend(auth_table);
        let mut routes = self.routes.merge(auth_routes);
        if settings.dev_reload {
            routes = routes.route(
                "/_dev/reload",
                axum::routing::get(crate::dev::reload)
                    .route_layer(axum::middleware::from_fn(crate::auth::loopback_only)),
            );
            table.push(RouteInfo::new(
                "GET",
                "/_dev/reload",
                format!("dev live reload (DEV_RELOAD), loopback only; {APP_LAYERS}"),
            ));
        }
        table.push(RouteInfo::new(
            "ANY",
            "*",
            format!("fallback: the home page at /, else 404; {APP_LAYERS}"),
        ));
        let app_layers = self.layers.len();
        let mut routes = routes.fallback(home_or_not_found);
        for layer in self.layers {
            routes = layer(routes);
        }
        let context = AppContext::new(Inner {
            settings,
            jobs_settings,
            project,
            root: root.to_owned(),
            version,
            store,
            renderer,
            jobs,
            broadcaster,
            mailer,
            urls,
            services: self.services,
            security,
        });
        let stack = crate::middleware::stack(
            routes,
            &context,
            crate::middleware::Outer {
                sessions,
                new_sessions,
                meta,
                statics,
                health,
            },
            &mut table,
        );
        Ok(BuiltApp {
            router: axum::Router::new().fallback_service(stack.clone()),
            stack,
            context,
            tasks: Arc::new(self.registry),
            models: self.models,
            on_startup: self.on_startup,
            on_shutdown: self.on_shutdown,
            routes: RouteTable {
                table,
                opaque: self.opaque,
                app_layers,
            },
        })
    }
}

/// The framework's template functions (`static_url`, `url_for`) ahead of the app's hooks.
fn template_hooks(
    app_hooks: Vec<crate::render::EnvHook>,
    statics: &Arc<Statics>,
    urls: &Urls,
) -> Vec<crate::render::EnvHook> {
    let statics = statics.clone();
    let urls = urls.clone();
    let mut hooks: Vec<crate::render::EnvHook> = vec![
        Arc::new(move |env: &mut Environment<'static>| {
            let s = statics.clone();
            env.add_function("static_url", move |path: String| s.url(&path));
        }),
        Arc::new(move |env: &mut Environment<'static>| {
            let u = urls.clone();
            env.add_function(
                "url_for",
                move |name: String, kwargs: minijinja::value::Kwargs| {
                    u.template_path(&name, &kwargs)
                },
            );
        }),
    ];
    hooks.extend(app_hooks);
    hooks
}

/// The brand colour of emails, the favicon and the browser's UI: `BRAND_PRIMARY_COLOR`, else
/// the framework's wine red.
fn brand_color(settings: &Settings) -> &str {
    settings.brand.primary_color.as_deref().unwrap_or("#5b2333")
}

/// Black or white, whichever reads better on `color` (`#rrggbb`), by WCAG contrast.
fn readable_on(color: &str) -> &'static str {
    let channel = |i: usize| {
        let c = f64::from(u8::from_str_radix(&color[i..i + 2], 16).unwrap_or(0)) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let luminance = 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
    // Contrast with black is (L + 0.05) / 0.05, with white 1.05 / (L + 0.05).
    if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) {
        "#000000"
    } else {
        "#ffffff"
    }
}

fn base_context(
    project: &Project,
    settings: &Settings,
    version: &str,
    statics: &Statics,
) -> BTreeMap<String, Value> {
    use chrono::Datelike;
    let year = chrono::Utc::now().year();
    let brand = &settings.brand;
    let logo = brand.logo.as_ref().map(|logo| {
        if logo.starts_with('/') || logo.contains("://") {
            logo.clone()
        } else {
            statics.url(logo)
        }
    });
    BTreeMap::from([
        (
            "brand_name".into(),
            Value::from(
                brand
                    .name
                    .clone()
                    .unwrap_or_else(|| project.project_name.clone()),
            ),
        ),
        ("brand_color".into(), Value::from(brand_color(settings))),
        (
            "brand_text_color".into(),
            Value::from(readable_on(brand_color(settings))),
        ),
        (
            "brand_primary_color".into(),
            Value::from(brand.primary_color.clone()),
        ),
        (
            "brand_primary_content".into(),
            Value::from(brand.primary_color.as_deref().map(readable_on)),
        ),
        ("brand_logo".into(), Value::from(logo)),
        ("themes".into(), Value::from(settings.themes.clone())),
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
        ("v_hash".into(), Value::from(statics.v_hash.clone())),
        ("DEBUG".into(), Value::from(settings.debug)),
        ("dev_reload".into(), Value::from(settings.dev_reload)),
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

#[cfg(test)]
mod tests {
    #[test]
    fn text_on_a_brand_colour_is_black_or_white_whichever_contrasts_more() {
        assert_eq!(super::readable_on("#5b2333"), "#ffffff");
        assert_eq!(super::readable_on("#ffee00"), "#000000");
        assert_eq!(super::readable_on("#000000"), "#ffffff");
    }
}
