//! [`AppContext`]: the one handle on everything a running app has — store, mailer, templates,
//! task queue, SSE, settings and the app's own services — seen alike by handlers (as an
//! extractor), tasks, CRUD hooks, cron, startup/shutdown hooks and app commands.
//!
//! This module sits below every feature that handlers use: it imports the services it holds,
//! and nothing it holds imports it. [`extract`] is the only code that reads the context out of
//! a request.

mod extract;

pub(crate) use extract::security_config;

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{JobsSettings, Settings};
use crate::error::Error;
use crate::jobs::Jobs;
use crate::mail::Mailer;
use crate::project::Project;
use crate::render::Renderer;
use crate::security::SecurityConfig;
use crate::sse::Broadcaster;
use crate::store::Store;
use crate::urls::Urls;

/// The running app's services. Cheap to clone (one `Arc`).
///
/// Handlers take it as an extractor (or take the narrower extractors: [`Store`], [`Jobs`],
/// [`Broadcaster`], [`crate::render::Render`], [`Service`]); tasks, CRUD hooks and app commands get it
/// through their own context types, which dereference to it.
///
/// ```no_run
/// use vibetuner::prelude::*;
///
/// #[derive(Clone)]
/// struct Weather { api_key: String }
///
/// async fn forecast(ctx: AppContext) -> Result<String> {
///     let weather = ctx.service::<Weather>()?;
///     let notes = ctx.store().models::<vibetuner::models::ConfigEntry>();
///     Ok(format!("key has {} chars, {} entries", weather.api_key.len(), notes.count(&Filter::All).await?))
/// }
///
/// # fn main() {
/// App::new(vibetuner::project!())
///     .provide(Weather { api_key: "secret".into() })
///     .route("/forecast", get(forecast));
/// # }
/// ```
#[derive(Clone)]
pub struct AppContext {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) settings: Settings,
    pub(crate) jobs_settings: JobsSettings,
    pub(crate) project: Project,
    pub(crate) root: PathBuf,
    pub(crate) version: String,
    pub(crate) store: Store,
    pub(crate) renderer: Arc<Renderer>,
    pub(crate) jobs: Jobs,
    pub(crate) broadcaster: Broadcaster,
    pub(crate) mailer: Mailer,
    pub(crate) urls: Urls,
    pub(crate) services: Services,
    pub(crate) security: Arc<SecurityConfig>,
}

impl AppContext {
    pub(crate) fn new(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The database (MongoDB or the embedded store).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The template renderer: render pages and blocks outside a request (to broadcast them).
    pub fn renderer(&self) -> &Renderer {
        &self.inner.renderer
    }

    /// The task queue.
    pub fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    /// SSE broadcasting.
    pub fn broadcaster(&self) -> &Broadcaster {
        &self.inner.broadcaster
    }

    /// Outgoing mail (SMTP, or the dev outbox).
    pub fn mailer(&self) -> &Mailer {
        &self.inner.mailer
    }

    /// The settings the app runs with; [`Settings::get`] reads the app's own keys.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The project's answers (`vibetuner.toml`).
    pub fn project(&self) -> &Project {
        &self.inner.project
    }

    /// The project root templates and statics are read from.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The running version (with `-dev` outside prod).
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// Route names and paths, for building URLs.
    pub fn urls(&self) -> &Urls {
        &self.inner.urls
    }

    /// The app's service of type `T`, registered with [`App::provide`](crate::app::App::provide).
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.inner.services.get::<T>()
    }

    /// Like [`AppContext::get`], but a missing service is a 500 naming the type (a wiring bug).
    pub fn service<T: Send + Sync + 'static>(&self) -> Result<&T, Error> {
        self.get::<T>().ok_or_else(|| missing_service::<T>())
    }

    pub(crate) fn jobs_settings(&self) -> &JobsSettings {
        &self.inner.jobs_settings
    }

    pub(crate) fn security(&self) -> &Arc<SecurityConfig> {
        &self.inner.security
    }
}

pub(crate) fn missing_service<T>() -> Error {
    Error::internal(format!(
        "no service of type {} is registered; add it with App::provide",
        type_name::<T>()
    ))
}

/// The app's own services by type: what [`App::provide`](crate::app::App::provide) registered.
#[derive(Default, Clone)]
pub(crate) struct Services {
    by_type: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Services {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.by_type.insert(TypeId::of::<T>(), Arc::new(value));
    }

    fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.by_type
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
    }

    pub(crate) fn get_arc<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.by_type
            .get(&TypeId::of::<T>())
            .and_then(|v| v.clone().downcast::<T>().ok())
    }
}

/// Extractor for an app service registered with [`App::provide`](crate::app::App::provide);
/// dereferences to it.
///
/// ```no_run
/// use vibetuner::prelude::*;
///
/// struct Greeting(String);
///
/// async fn hello(Service(greeting): Service<Greeting>) -> String {
///     greeting.0.clone()
/// }
/// ```
pub struct Service<T>(pub Arc<T>);

impl<T> std::ops::Deref for Service<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_found_by_type() {
        let mut services = Services::default();
        services.insert(7_u32);
        services.insert(String::from("key"));
        assert_eq!(services.get::<u32>(), Some(&7));
        assert_eq!(services.get::<String>().map(String::as_str), Some("key"));
        assert!(services.get::<u64>().is_none());
        assert_eq!(*services.get_arc::<u32>().unwrap(), 7);
    }

    #[test]
    fn a_missing_service_names_its_type() {
        let e = missing_service::<Vec<u8>>();
        assert!(e.detail().contains("alloc::vec::Vec<u8>"), "{}", e.detail());
        assert!(e.detail().contains("App::provide"), "{}", e.detail());
    }
}
