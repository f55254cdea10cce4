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

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::config::{ConfigError, Settings};
use crate::error::Error;
use crate::mail::Mailer;
use crate::models::User;
use crate::project::Project;
use crate::ratelimit::{Rate, RateLimiter};
use crate::store::{Id, Record};

pub use providers::{ProviderConfig, ProviderKind};
pub use redirect::safe_next;

/// Session key holding the signed-in user.
pub const USER_KEY: &str = "user";

/// Session key holding the day (since the epoch) the session's lifetime was last renewed.
const RENEWED_KEY: &str = "renewed";

/// The signed-in user as kept in the session (no database read per request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionUser {
    /// The user's id (hex).
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Avatar URL.
    pub picture: Option<String>,
    /// Preferred language, if chosen.
    pub language: Option<String>,
}

impl SessionUser {
    /// Builds the session copy of a stored user.
    pub fn from_record(user: &Record<User>) -> Self {
        Self {
            id: user.id.to_hex(),
            name: user.data.name.clone(),
            email: user.data.email.clone(),
            picture: user.data.picture.clone(),
            language: user.data.user_settings.language.clone(),
        }
    }

    /// The id of the user's record, for filters and owner fields (`id` is its hex form).
    pub fn record_id(&self) -> Result<Id, Error> {
        self.id
            .parse()
            .map_err(|_| Error::internal(format!("session user id {:?} is not an id", self.id)))
    }

    /// Name, else email, else "Account".
    pub fn display_name(&self) -> &str {
        self.name
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(self.email.as_deref())
            .unwrap_or("Account")
    }
}

/// Marks `user` signed in: a new session id (against fixation), then the user in the session.
pub async fn sign_in(session: &Session, user: &Record<User>) -> Result<(), Error> {
    session.cycle_id().await.map_err(session_error)?;
    session
        .insert(RENEWED_KEY, today())
        .await
        .map_err(session_error)?;
    session
        .insert(USER_KEY, SessionUser::from_record(user))
        .await
        .map_err(session_error)
}

/// "Signed in as ...", shown on the page a sign-in leads to.
fn signed_in_flash(user: &Record<User>) -> crate::flash::Flash {
    let who = SessionUser::from_record(user);
    crate::flash::Flash::success(format!("Signed in as {}.", who.display_name()))
}

fn session_error(e: tower_sessions::session::Error) -> Error {
    tracing::error!("session store failed: {e}");
    Error::unavailable("The session store is unavailable; try again in a moment.")
}

/// Extractor for the account services of the app's context (the framework's own handlers).
pub(crate) struct AuthState(pub(crate) Arc<Auth>);

impl<S: Send + Sync> FromRequestParts<S> for AuthState {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Ok(Self(crate::AppContext::from_parts(parts)?.auth().clone()))
    }
}

/// The user loaded for this request (a request extension set by [`load_user`]).
#[derive(Debug, Clone, Default)]
pub struct LoadedUser(pub Option<SessionUser>);

/// Middleware: reads the signed-in user from the session once per request, for extractors
/// and templates (`user`).
pub async fn load_user(mut request: Request, next: Next) -> Response {
    let user = match request.extensions().get::<Session>() {
        // No session cookie: nobody is signed in, and the store need not be asked.
        Some(session) if session.id().is_none() => None,
        Some(session) => {
            let user = session
                .get::<SessionUser>(USER_KEY)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!("cannot read the session: {e}");
                    None
                });
            if user.is_some() {
                renew_daily(session).await;
            }
            user
        }
        None => None,
    };
    let signed_in = user.clone();
    request.extensions_mut().insert(LoadedUser(user));
    let mut response = next.run(request).await;
    if signed_in.is_some()
        && (response.status().is_client_error() || response.status().is_server_error())
    {
        // For the error page rendered further out (`error::error_pages`).
        response.extensions_mut().insert(LoadedUser(signed_in));
    }
    response
}

/// Keeps an active user's session alive: the lifetime counts from the last activity, but the
/// session is written (and its cookie re-sent) at most once a day rather than on every request.
async fn renew_daily(session: &Session) {
    let today = today();
    if session.get::<i64>(RENEWED_KEY).await.ok().flatten() != Some(today)
        && let Err(e) = session.insert(RENEWED_KEY, today).await
    {
        tracing::warn!("cannot renew the session: {e}");
    }
}

/// Days since the Unix epoch.
fn today() -> i64 {
    crate::store::Timestamp::now().millis() / 86_400_000
}

/// The signed-in user; anonymous visitors are sent to the login page.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub SessionUser);

impl std::ops::Deref for CurrentUser {
    type Target = SessionUser;
    fn deref(&self) -> &SessionUser {
        &self.0
    }
}

/// Middleware guarding a whole router: anonymous visitors get [`CurrentUser`]'s answer.
///
/// ```no_run
/// use vibetuner::prelude::*;
/// use vibetuner::axum::{Router, middleware};
///
/// async fn admin() -> &'static str { "admins only" }
///
/// # fn main() {
/// App::new(vibetuner::project!()).merge(
///     Router::new()
///         .route("/admin", get(admin))
///         .route_layer(middleware::from_fn(vibetuner::auth::require_user)),
/// );
/// # }
/// ```
pub async fn require_user(request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    match CurrentUser::from_request_parts(&mut parts, &()).await {
        Ok(_) => next.run(Request::from_parts(parts, body)).await,
        Err(login) => login.into_response(),
    }
}

/// The signed-in user, if any.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<SessionUser>);

/// The rejection of [`CurrentUser`]: 303 to `/auth/login?next=<this page>` for browsers, for htmx
/// a 401 with `HX-Redirect` so the whole page navigates, and for API clients (no `text/html` in
/// `Accept`) a 401 with `{"detail": "Sign in first"}`.
#[derive(Debug)]
pub struct LoginRequired {
    next: String,
    htmx: bool,
    api: bool,
}

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        if self.api {
            return crate::Error::new(StatusCode::UNAUTHORIZED, "Sign in first").into_response();
        }
        let target = format!("/auth/login?next={}", urlencode(&self.next));
        let location = HeaderValue::from_str(&target).unwrap_or(HeaderValue::from_static("/"));
        if self.htmx {
            (StatusCode::UNAUTHORIZED, [("hx-redirect", location)]).into_response()
        } else {
            (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
        }
    }
}

/// Percent-encodes a query value.
pub(crate) fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = LoginRequired;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, LoginRequired> {
        match parts
            .extensions
            .get::<LoadedUser>()
            .and_then(|u| u.0.clone())
        {
            Some(user) => Ok(Self(user)),
            None => {
                let htmx = parts.headers.contains_key("hx-request");
                let api = !htmx && !crate::error::wants_html(&parts.headers);
                let next = if htmx {
                    parts
                        .headers
                        .get("hx-current-url")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|u| url::Url::parse(u).ok())
                        .map(|u| match u.query() {
                            Some(q) => format!("{}?{q}", u.path()),
                            None => u.path().to_owned(),
                        })
                        .unwrap_or_else(|| "/".into())
                } else {
                    parts
                        .uri
                        .path_and_query()
                        .map_or("/".into(), |p| p.as_str().to_owned())
                };
                Err(LoginRequired { next, htmx, api })
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MaybeUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<LoadedUser>()
                .and_then(|u| u.0.clone()),
        ))
    }
}

/// Accounts settings read from the environment.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `BASE_URL`: the public origin used in emailed links and OAuth callbacks (default in prod
    /// `https://{fqdn}`, and prod refuses to start with neither; in dev, the request's own host).
    pub base_url: Option<String>,
    /// `AUTH_RATE_LIMIT`: sign-in emails and OAuth starts per IP and per address (`5/minute`).
    pub rate: Rate,
    /// Minutes a magic link stays valid (15).
    pub token_minutes: i64,
    /// The configured OAuth providers.
    pub providers: Vec<ProviderConfig>,
    /// The brand name (`BRAND_NAME`, else the project's), for email subjects and the sender.
    pub site_name: String,
    /// Languages a user may choose.
    pub languages: Vec<String>,
    /// `VIBETUNER_COMPAT`: write users that Vibetuner also accepts while both run on one
    /// database (languages saved as two-letter codes).
    pub vibetuner_compat: bool,
}

impl AuthConfig {
    /// Reads the accounts settings for `project`.
    pub fn from_settings(settings: &Settings, project: &Project) -> Result<Self, ConfigError> {
        let fqdn = &project.fqdn;
        let source = &settings.source;
        let base_url = source
            .value("BASE_URL")
            .map(|v| v.trim_end_matches('/').to_owned())
            .filter(|v| !v.is_empty())
            .or_else(|| {
                (settings.is_prod() && !fqdn.is_empty()).then(|| format!("https://{fqdn}"))
            });
        if let Some(url) = &base_url {
            let origin = url::Url::parse(url).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty())
                    && u.path() == "/"
                    && u.query().is_none()
            });
            if origin.is_none() {
                return Err(ConfigError::Invalid {
                    key: "BASE_URL".into(),
                    value: url.clone(),
                    expected: "an origin like https://example.com".into(),
                });
            }
        } else if settings.is_prod() {
            return Err(ConfigError::NoPublicOrigin);
        }
        let rate = match source.value("AUTH_RATE_LIMIT") {
            None => Rate {
                max: 5,
                per: std::time::Duration::from_secs(60),
            },
            Some(raw) => {
                raw.parse()
                    .map_err(|reason: crate::ratelimit::RateError| ConfigError::Invalid {
                        key: "AUTH_RATE_LIMIT".into(),
                        value: raw.to_owned(),
                        expected: reason.to_string(),
                    })?
            }
        };
        Ok(Self {
            base_url,
            rate,
            token_minutes: 15,
            providers: providers::providers_from_settings(settings)?,
            site_name: settings
                .brand
                .name
                .clone()
                .unwrap_or_else(|| project.project_name.clone()),
            languages: project.languages(),
            vibetuner_compat: source.bool("VIBETUNER_COMPAT")?.unwrap_or(false),
        })
    }
}

/// Everything the account routes share (an `Extension`).
#[derive(Debug, Clone)]
pub struct Auth {
    /// Settings.
    pub config: Arc<AuthConfig>,
    /// Outgoing mail.
    pub mailer: Mailer,
    /// Rate limits for sign-in attempts.
    pub limiter: RateLimiter,
    /// OAuth provider clients.
    #[cfg(feature = "oauth")]
    pub(crate) oauth: Arc<oauth::Providers>,
}

impl Auth {
    /// Assembles the account services.
    pub fn new(config: AuthConfig, mailer: Mailer, limiter: RateLimiter) -> anyhow::Result<Self> {
        #[cfg(feature = "oauth")]
        let oauth = Arc::new(oauth::Providers::new(&config.providers)?);
        #[cfg(not(feature = "oauth"))]
        if let Some(p) = config.providers.first() {
            anyhow::bail!(
                "OAuth sign-in with {} is configured, but this app was built without vibetuner's \
                 `oauth` feature: add it to the vibetuner dependency's features in Cargo.toml, or \
                 remove the {}_CLIENT_ID setting",
                p.name,
                p.id.to_ascii_uppercase()
            );
        }
        Ok(Self {
            config: Arc::new(config),
            mailer,
            limiter,
            #[cfg(feature = "oauth")]
            oauth,
        })
    }

    /// The public origin for absolute links: `BASE_URL`, else this request's scheme and host.
    pub fn base_url(&self, parts: &Parts) -> String {
        if let Some(base) = &self.config.base_url {
            return base.clone();
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        format!("{}://{host}", crate::security::request_scheme(parts))
    }

    /// Checks the rate limit for each key; a 429 page when one is over.
    pub async fn limit(&self, keys: &[String]) -> Result<(), Error> {
        for key in keys {
            if let Err(limited) = self.limiter.hit(key, self.config.rate).await {
                tracing::warn!(key, "sign-in rate limit reached");
                return Err(Error::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many sign-in attempts. Please wait {} seconds and try again.",
                        limited.retry_after
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Refuses (404) peers that are not on this machine: the dev outbox shows every sign-in link,
/// the dev reload stream the compiler's errors.
pub(crate) async fn loopback_only(request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    // In-process requests (tests) have no peer address: they come from this machine. A
    // forwarding header means a proxy relayed someone else's request.
    let proxied = ["x-forwarded-for", "forwarded"]
        .iter()
        .any(|h| request.headers().contains_key(*h));
    if peer.is_none_or(|ip| ip.is_loopback()) && !proxied {
        next.run(request).await
    } else {
        tracing::warn!(peer = ?peer, "the dev outbox answers only this machine");
        Error::not_found().into_response()
    }
}

/// The account routes: `/auth/*` and `/user/*` (plus `/_dev/outbox` when mail goes there),
/// with their table for the `routes` command.
pub(crate) fn router(auth: &Auth) -> (Router, Vec<crate::app::RouteInfo>) {
    let mut router = crate::app::Recorder::new(crate::app::APP_LAYERS)
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
                get(crate::mail::outbox_page).route_layer(axum::middleware::from_fn(loopback_only)),
            )
            .note("loopback only");
    }
    router.into_parts()
}
