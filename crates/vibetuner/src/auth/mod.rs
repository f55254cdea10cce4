//! Accounts: server-side sessions, magic-link and OAuth sign-in, profile pages, and the
//! extractors handlers use to know who is signed in.
//!
//! ```no_run
//! use vibetuner::prelude::*;
//!
//! async fn dashboard(user: CurrentUser, render: Render) -> Result<Html<String>> {
//!     render.page("dashboard.html.jinja", context! { name => user.display_name() })
//! }
//! ```
//! [`CurrentUser`] sends an anonymous visitor to `/auth/login?next=...` (or answers htmx with
//! `HX-Redirect`); [`MaybeUser`] never rejects.

mod magic_link;
#[cfg(feature = "oauth")]
mod oauth;
mod pages;
mod providers;
mod redirect;
pub mod session;
pub(crate) mod state;
pub(crate) mod user;

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use crate::error::Error;
use crate::routes::{APP_LAYERS, Recorder, RouteInfo};

pub use providers::{ProviderConfig, ProviderKind};
pub use redirect::safe_next;
pub use state::{Auth, AuthConfig};
pub use user::{
    CurrentUser, LoadedUser, LoginRequired, MaybeUser, SessionUser, USER_KEY, load_user,
    require_user, sign_in,
};

/// Refuses (404) peers that are not on this machine: the dev outbox shows every sign-in link,
/// the dev reload stream the compiler's errors.
pub(crate) async fn loopback_only(request: Request, next: Next) -> Response {
    if crate::security::from_this_machine(&request) {
        next.run(request).await
    } else {
        tracing::warn!("the dev pages answer only this machine");
        Error::not_found().into_response()
    }
}

/// The account routes: `/auth/*` and `/user/*` (plus `/_dev/outbox` when mail goes there),
/// with their table for the `routes` command.
pub(crate) fn router(auth: &Arc<Auth>) -> (Router, Vec<RouteInfo>) {
    let mut router = Recorder::new(APP_LAYERS)
        .route("/auth/login", get(magic_link::login_page))
        .route(
            "/auth/magic-link-login",
            axum::routing::post(magic_link::send_link),
        )
        .route(
            "/auth/email-verify/{token}",
            get(magic_link::verify_page).post(magic_link::verify),
        )
        .route("/auth/logout", get(pages::logout_page).post(pages::logout))
        .route("/user/", get(pages::profile))
        .route("/user", get(pages::profile))
        .route("/user/edit", get(pages::edit_page).post(pages::edit));
    #[cfg(feature = "oauth")]
    {
        router = router
            .route("/auth/login/provider/{provider}", get(oauth::start))
            .route("/auth/provider/{provider}", get(oauth::callback));
    }
    if auth.mailer.outbox_dir().is_some() {
        router = router
            .route(
                "/_dev/outbox",
                get(crate::dev::outbox_page).route_layer(axum::middleware::from_fn(loopback_only)),
            )
            .note("loopback only");
    }
    let (router, table) = router.into_parts();
    (router.layer(Extension(auth.clone())), table)
}
