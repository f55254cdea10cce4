//! Who is signed in: the session's copy of the user, the middleware that loads it once per
//! request, and the extractors ([`CurrentUser`], [`MaybeUser`]) handlers and templates use.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::error::{Error, wants_html};
use crate::flash::Flash;
use crate::models::User;
use crate::store::{Id, Record, Timestamp};

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
pub(crate) fn signed_in_flash(user: &Record<User>) -> Flash {
    let who = SessionUser::from_record(user);
    Flash::success(format!("Signed in as {}.", who.display_name()))
}

pub(crate) fn session_error(e: tower_sessions::session::Error) -> Error {
    tracing::error!("session store failed: {e}");
    Error::unavailable("The session store is unavailable; try again in a moment.")
}

/// The user loaded for this request (a request extension set by [`load_user`]).
#[derive(Debug, Clone, Default)]
pub struct LoadedUser(pub Option<SessionUser>);

impl LoadedUser {
    /// The signed-in user that [`load_user`] put on a request or response, if any.
    pub fn of(extensions: &Extensions) -> Option<&SessionUser> {
        extensions.get::<LoadedUser>().and_then(|u| u.0.as_ref())
    }
}

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
    Timestamp::now().millis() / 86_400_000
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
            return Error::new(StatusCode::UNAUTHORIZED, "Sign in first").into_response();
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
        match LoadedUser::of(&parts.extensions).cloned() {
            Some(user) => Ok(Self(user)),
            None => {
                let htmx = parts.headers.contains_key("hx-request");
                let api = !htmx && !wants_html(&parts.headers);
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
        Ok(Self(LoadedUser::of(&parts.extensions).cloned()))
    }
}
