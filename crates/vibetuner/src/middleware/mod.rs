//! The framework's middleware stack, in one place and in order (outermost last):
//!
//! 1. routes (the app's, auth, the home fallback) inside the app's own [`App::layer`]s;
//! 2. the [`AppContext`] extension, cache headers for private pages, a signed-in user's fair
//!    share of the handlers, the signed-in user (`auth::load_user`), flash messages, the
//!    session, the per-address budget of new sessions, CSRF, an address's fair share;
//! 3. meta files and statics join here: they need no session;
//! 4. the handler deadline, body limits and the body read timeout, panic catching, error pages,
//!    security headers, unambiguous request framing, the access log;
//! 5. health probes join here (no logs or error pages on their hot path); request ids outermost.
//!
//! [`App::layer`]: crate::app::App::layer

mod access_log;
mod cache;
mod error_pages;
mod fair_share;
mod framing;
mod request_id;
mod timeout;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::context::AppContext;

/// The routers and state that join the stack outside the session layers.
pub(crate) struct Outer {
    pub(crate) sessions: crate::auth::session::SessionBackend,
    pub(crate) new_sessions: crate::auth::session::NewSessions,
    pub(crate) meta: Arc<crate::meta::Meta>,
    pub(crate) statics: Arc<crate::statics::Statics>,
    pub(crate) health: Arc<crate::health::Health>,
}

/// The complete stack: every route inside every framework layer, request ids outermost.
pub(crate) type Stack = request_id::RequestId<Router>;

/// Wraps `routes` in every framework layer and adds the meta, static and health routes
/// (recorded in `table`).
pub(crate) fn stack(
    routes: Router,
    ctx: &AppContext,
    outer: Outer,
    table: &mut Vec<crate::routes::RouteInfo>,
) -> Stack {
    let settings = ctx.settings();
    let security = ctx.security().clone();
    let (meta, meta_table) = crate::meta::router(outer.meta);
    let (statics, statics_table) = crate::statics::router(outer.statics);
    let (health, health_table) = crate::health::recorded(outer.health);
    table.extend(meta_table);
    table.extend(statics_table);
    table.extend(health_table);
    // Each stage wraps a whole router once, rather than every route (`Router::layer`): a
    // request then clones one small stack of layers instead of a stack per matched route
    // (measured: a quarter of a page's instructions went to cloning and dropping them).
    let fair_share = fair_share::FairShare::new(settings.requests_per_client);
    let sessions = ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(
            fair_share.clone(),
            fair_share::by_address,
        ))
        .layer(middleware::from_fn_with_state(
            security.clone(),
            crate::security::csrf_protection,
        ))
        .layer(middleware::from_fn_with_state(
            (outer.new_sessions, ctx.security().clone()),
            crate::auth::session::limit_new_sessions,
        ))
        .layer(crate::auth::session::layer(outer.sessions, settings))
        .layer(middleware::from_fn(crate::flash::carry))
        .layer(middleware::from_fn(crate::auth::load_user))
        .layer(middleware::from_fn_with_state(
            fair_share.clone(),
            fair_share::by_user,
        ))
        .layer(middleware::from_fn(cache::cache_headers))
        .layer(axum::Extension(ctx.clone()))
        .service(routes);
    let framed = ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            access_log::access_log,
        ))
        .layer(middleware::from_fn_with_state(
            security,
            crate::security::security_headers,
        ))
        .layer(middleware::from_fn(framing::unambiguous_framing))
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            error_pages::error_pages,
        ))
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn_with_state(
            std::time::Duration::from_secs(settings.request_timeout_secs),
            timeout::request_deadline,
        ))
        .layer(RequestBodyTimeoutLayer::new(
            std::time::Duration::from_secs(settings.body_read_timeout_secs),
        ))
        .layer(RequestBodyLimitLayer::new(settings.max_body_size))
        .layer(DefaultBodyLimit::max(settings.max_body_size))
        .service(meta.merge(statics).fallback_service(sessions));
    // Around the whole router rather than each route (`Router::layer`), like the stages.
    request_id::RequestId::new(health.fallback_service(framed))
}
