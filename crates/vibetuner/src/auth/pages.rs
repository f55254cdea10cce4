//! Profile, profile editing and logout.

use axum::extract::Form;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;
use tower_sessions::Session;

use super::state::AuthState;
use super::user::{CurrentUser, MaybeUser, SessionUser, USER_KEY, session_error};
use crate::error::Error;
use crate::flash::Flash;
use crate::models::{OAuthAccount, User};
use crate::render::Render;
use crate::store::{Filter, Id, Query, Record, Store};

async fn load_user(store: &Store, user: &SessionUser) -> Result<Record<User>, Error> {
    let id: Id = user
        .id
        .parse()
        .map_err(|_| Error::bad_request("The session names an unknown user."))?;
    store.models::<User>().get(id).await?.ok_or_else(|| {
        Error::new(
            StatusCode::NOT_FOUND,
            "Your account no longer exists. Sign out and sign in again.",
        )
    })
}

/// `GET /user/`: the profile with linked accounts.
pub(super) async fn profile(
    render: Render,
    store: Store,
    CurrentUser(me): CurrentUser,
) -> Result<Html<String>, Error> {
    let user = load_user(&store, &me).await?;
    // Accounts linked either way: ours (`user_id`) and Vibetuner's (the user's DBRefs).
    let linked = user.data.oauth_accounts.iter().map(|l| l.id);
    let accounts = store
        .models::<OAuthAccount>()
        .find(&Query::filter(Filter::Or(vec![
            Filter::eq("user_id", user.id),
            Filter::is_in("_id", linked),
        ])))
        .await?
        .into_iter()
        .map(|a| a.data)
        .collect::<Vec<_>>();
    render.page(
        "user/profile.html.jinja",
        context! { profile => user.data, accounts },
    )
}

/// `GET /user/edit`: name and language.
pub(super) async fn edit_page(
    render: Render,
    store: Store,
    CurrentUser(me): CurrentUser,
) -> Result<Html<String>, Error> {
    let user = load_user(&store, &me).await?;
    render.page(
        "user/edit.html.jinja",
        context! { profile => user.data, error => None::<String> },
    )
}

/// The profile form.
#[derive(Debug, Deserialize)]
pub(super) struct EditForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    language: String,
}

/// `POST /user/edit`: saves name and language (`""` = automatic; otherwise one the site
/// supports), refreshes the session copy, 303 to `/user/`.
pub(super) async fn edit(
    render: Render,
    store: Store,
    session: Session,
    AuthState(auth): AuthState,
    CurrentUser(me): CurrentUser,
    Form(form): Form<EditForm>,
) -> Result<Response, Error> {
    let mut user = load_user(&store, &me).await?;
    let name = form.name.trim().to_owned();
    let mut language = form.language.trim().to_owned();
    let error = if name.chars().count() > 100 {
        Some("Name must be at most 100 characters.")
    } else if name.chars().any(char::is_control) {
        Some("Name must not contain control characters.")
    } else if !language.is_empty() && !auth.config.languages.contains(&language) {
        Some("Choose one of the languages offered.")
    } else {
        None
    };
    if let Some(error) = error {
        user.data.name = Some(name);
        let page = render.page(
            "user/edit.html.jinja",
            context! { profile => user.data, error },
        )?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    if auth.config.vibetuner_compat {
        // Vibetuner's `LanguageAlpha2` accepts two-letter codes only: `pt-BR` is saved as `pt`.
        language = language
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
    }
    user.data.name = (!name.is_empty()).then_some(name);
    user.data.user_settings.language = (!language.is_empty()).then_some(language);
    store.models::<User>().save(&mut user).await?;
    session
        .insert(USER_KEY, SessionUser::from_record(&user))
        .await
        .map_err(session_error)?;
    Ok((Flash::success("Profile saved."), Redirect::to("/user/")).into_response())
}

/// `GET /auth/logout`: a confirmation page whose button POSTs.
pub(super) async fn logout_page(
    render: Render,
    MaybeUser(user): MaybeUser,
) -> Result<Response, Error> {
    if user.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    Ok(render
        .page("auth/logout.html.jinja", context! {})?
        .into_response())
}

/// `POST /auth/logout`: deletes the session server-side and clears the cookie; 303 home,
/// saying so to a user who was signed in. Nobody signed in: nothing is stored (an anonymous
/// client cannot make the server keep a session per request).
pub(super) async fn logout(
    session: Session,
    MaybeUser(user): MaybeUser,
) -> Result<Response, Error> {
    if session.id().is_some() {
        session.flush().await.map_err(session_error)?;
    }
    if user.is_none() {
        return Ok(Redirect::to("/").into_response());
    }
    Ok((Flash::success("You are signed out."), Redirect::to("/")).into_response())
}
