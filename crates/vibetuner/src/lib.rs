//! # vibetuner
//!
//! A batteries-included web framework on axum, minijinja and htmx. An app registers its parts
//! on an [`App`] and gets, from the framework: settings from the environment and `.env` files,
//! Jinja templates that override the framework's own file by file, versioned static files,
//! health and meta routes, request ids, error pages and graceful shutdown, accounts (sessions,
//! magic links, OAuth) and security headers.
//!
//! ```no_run
//! use vibetuner::prelude::*;
//!
//! fn main() -> std::process::ExitCode {
//!     App::new(vibetuner::project!())
//!         .route("/hello", get(hello))
//!         .run()
//! }
//!
//! async fn hello(render: Render) -> Result<Html<String>> {
//!     render.page("hello.html.jinja", context! { name => "world" })
//! }
//! ```

pub mod app;
pub mod auth;
pub mod config;
pub mod context;
pub mod crud;
pub mod dev;
pub mod error;
mod escape;
pub mod filters;
pub mod flash;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod jobs;
mod limits;
mod logging;
pub mod mail;
mod meta;
mod middleware;
pub mod models;
pub mod project;
pub mod ratelimit;
mod redis_conn;
pub mod render;
mod routes;
pub mod security;
pub mod sse;
mod statics;
pub mod store;
pub mod tasks;
#[cfg(feature = "testing")]
pub mod testing;
pub mod urls;

pub use app::{App, BuiltApp, ProjectSource};
pub use auth::{CurrentUser, MaybeUser, SessionUser};
pub use config::{Environment, Settings};
pub use context::{AppContext, Service};
pub use crud::Crud;
pub use error::{Error, Result};
pub use flash::Flash;
pub use health::ServiceCheck;
pub use jobs::{Jobs, TaskKey};
pub use project::Project;
pub use render::{Render, RequestInfo};
pub use sse::{Broadcaster, Sse, SseEvent};
pub use store::{Filter, Id, Index, Model, Query, Record, Store, Timestamp};
pub use tasks::{Task, TaskContext};
pub use urls::Urls;

/// Marks an async test, with the Tokio runtime vibetuner re-exports: an app's tests need no
/// `tokio` dependency of their own (arguments pass through to `tokio::test`).
///
/// ```no_run
/// # fn app() -> vibetuner::App { vibetuner::App::new(vibetuner::project!()) }
/// #[vibetuner::test]
/// async fn home_page_renders() {
///     let app = vibetuner::testing::TestApp::new(app()).await;
///     assert_eq!(app.client().get("/").await.status(), 200);
/// }
/// ```
pub use vibetuner_macros::test;

pub use anyhow;
pub use axum;
pub use clap;
pub use minijinja;
pub use minijinja::context;
#[cfg(feature = "redis")]
pub use redis;
pub use schemars;
pub use serde;
pub use serde_json;
pub use tokio;
pub use tracing;

/// The names most apps need. Its `Query` is axum's query-string extractor; store queries start
/// from a [`Filter`] (`Filter::eq("done", false).sort("title", Order::Asc).limit(20)`), or are
/// [`vibetuner::Query`](crate::Query) when named.
pub mod prelude {
    pub use crate::crud::{HookContext, Operation};
    pub use crate::store::{FieldError, Order, Update};
    pub use crate::{
        App, AppContext, Broadcaster, Crud, CurrentUser, Error, Filter, Flash, Id, Index, Jobs,
        MaybeUser, Model, Record, Render, RequestInfo, Result, Service, ServiceCheck, Settings,
        Sse, SseEvent, Store, Task, TaskContext, TaskKey, Timestamp, context,
    };
    pub use axum::extract::{Form, Json, Path, Query};
    pub use axum::http::StatusCode;
    pub use axum::response::{Html, IntoResponse, Redirect, Response};
    pub use axum::routing::{delete, get, patch, post, put};
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}
