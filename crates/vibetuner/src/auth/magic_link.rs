//! Magic-link sign-in: the login page, sending a link, and following it.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;
use tower_sessions::Session;

use super::redirect::safe_next;
use super::state::{Auth, AuthState, BaseUrl};
use super::user::{MaybeUser, SessionUser, sign_in, signed_in_flash};
use crate::error::Error;
use crate::mail::Mail;
use crate::models::{EmailVerificationToken, User};
use crate::render::Render;
use crate::security::{ClientIp, random_token, sha256_hex};
use crate::store::{Filter, Store, Timestamp, Update};

/// The `next` query parameter: where to go after signing in.
#[derive(Debug, Default, Deserialize)]
pub(super) struct NextQuery {
    #[serde(default)]
    pub(super) next: Option<String>,
}

/// Renders the login page with `status`, an optional error and the address typed so far.
pub(super) fn login_response(
    render: &Render,
    auth: &Auth,
    next: &str,
    status: StatusCode,
    error: Option<&str>,
    email: &str,
) -> Response {
    let providers = super::providers::buttons(&auth.config.providers);
    match render.page(
        "auth/login.html.jinja",
        context! { next, error, email, providers },
    ) {
        Ok(page) => (status, page).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /auth/login?next=`: the email form and one button per provider; signed-in visitors go on.
pub(super) async fn login_page(
    render: Render,
    MaybeUser(user): MaybeUser,
    AuthState(auth): AuthState,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if user.is_some() {
        return Redirect::to(&next).into_response();
    }
    login_response(&render, &auth, &next, StatusCode::OK, None, "")
}

/// The magic-link form.
#[derive(Debug, Deserialize)]
pub(super) struct LinkForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    next: Option<String>,
}

/// A plausible single address, `local@domain.tld`, in one form: lower case, the domain in its
/// ASCII (IDNA) form, so `x@exämple.com` and `x@xn--exmple-cua.com` are one account and
/// full-width letters become their ASCII twins. Refused, with the reason to show: anything
/// but one address, a non-ASCII part before the `@`, a domain label mixing Latin letters with
/// Cyrillic or Greek ones (a look-alike of another address).
fn normalize_email(raw: &str) -> Result<String, &'static str> {
    const INVALID: &str = "Enter a valid email address, like name@example.com.";
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@').ok_or(INVALID)?;
    if !local.is_ascii() {
        return Err("Enter the address with plain letters before the @ (a-z, 0-9 and . _ + -).");
    }
    if domain.split('.').any(mixes_scripts) {
        return Err(
            "This address mixes Latin letters with look-alike letters of another alphabet: type it again.",
        );
    }
    let domain = match url::Host::parse(domain) {
        Ok(url::Host::Domain(ascii)) => ascii,
        _ => return Err(INVALID),
    };
    let email = format!("{local}@{domain}");
    let plausible = email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.contains([' ', ',', '<', '>', '"', '\\', ';'])
        && email.chars().all(|c| !c.is_control())
        && email.matches('@').count() == 1
        && email.parse::<lettre::Address>().is_ok();
    plausible.then_some(email).ok_or(INVALID)
}

/// True for a domain label with Latin letters and Cyrillic or Greek ones together, the usual
/// make-up of a look-alike (`аpple`, its first letter Cyrillic).
fn mixes_scripts(label: &str) -> bool {
    let latin = label
        .chars()
        .any(|c| c.is_ascii_alphabetic() || ('\u{c0}'..='\u{24f}').contains(&c));
    let other = label
        .chars()
        .any(|c| ('\u{370}'..='\u{3ff}').contains(&c) || ('\u{400}'..='\u{52f}').contains(&c));
    latin && other
}

/// `POST /auth/magic-link-login` (`email`, `next`): emails a sign-in link. The page shown is the
/// same whether or not an account exists, and whether or not the address is over its limit.
/// Earlier links stay valid: using any one of them invalidates the others.
pub(super) async fn send_link(
    render: Render,
    AuthState(auth): AuthState,
    store: Store,
    client: ClientIp,
    BaseUrl(base): BaseUrl,
    Form(form): Form<LinkForm>,
) -> Result<Response, Error> {
    let next = safe_next(form.next.as_deref());
    let email = match normalize_email(&form.email) {
        Ok(email) => email,
        Err(reason) => {
            return Ok(login_response(
                &render,
                &auth,
                &next,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(reason),
                form.email.trim(),
            ));
        }
    };
    auth.limit(&[format!("auth:ip:{}", client.rate_key())])
        .await?;
    let sent_page = |email: &str| -> Result<Response, Error> {
        Ok(render
            .page("auth/email_sent.html.jinja", context! { email, next })?
            .into_response())
    };
    // Over the per-address limit, nothing is sent but the answer is the usual one: a 429 would
    // tell whoever asks that the address is busy and lock its owner out, while the links already
    // sent stay valid until one of them is used.
    let per_address = format!("auth:email:{email}");
    if auth
        .limiter
        .hit(&per_address, auth.config.rate)
        .await
        .is_err()
    {
        tracing::warn!(%email, "sign-in link not sent: too many requested for this address");
        return sent_page(&email);
    }

    let token = random_token(32);
    let tokens = store.models::<EmailVerificationToken>();
    let expires_at =
        Timestamp::from_millis(Timestamp::now().millis() + auth.config.token_minutes * 60 * 1000);
    tokens
        .insert(EmailVerificationToken {
            email: email.clone(),
            token: sha256_hex(&token),
            expires_at,
            used: false,
        })
        .await?;

    let link = format!("{base}{}", verify_path(&token, &next));
    let ctx = context! { link, email, minutes => auth.config.token_minutes };
    let html = render.page("email/magic_link.html.jinja", ctx.clone())?.0;
    let text = render.page("email/magic_link.txt.jinja", ctx)?.0;
    let project = &auth.config.site_name;
    let mail = Mail {
        to: email.clone(),
        subject: format!("Sign in to {project}"),
        text,
        html,
    };
    if let Err(e) = auth.mailer.send(mail).await {
        tracing::error!("cannot send the sign-in email: {e}");
        return Err(Error::unavailable(
            "The sign-in email could not be sent. Please try again in a few minutes.",
        ));
    }
    sent_page(&email)
}

/// A sign-in link's token and its safe `next`, from `/auth/email-verify/{token}?next=`.
pub(super) struct LinkParams {
    token: String,
    next: String,
}

impl<S: Send + Sync> FromRequestParts<S> for LinkParams {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let Path(token) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Query(query) = Query::<NextQuery>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            token,
            next: safe_next(query.next.as_deref()),
        })
    }
}

/// The path a sign-in link opens, and its confirmation form posts to.
fn verify_path(token: &str, next: &str) -> String {
    let mut path = format!("/auth/email-verify/{token}");
    if next != "/" {
        path.push_str("?next=");
        path.push_str(&super::user::urlencode(next));
    }
    path
}

/// The answer to a link that is unknown, expired or used: the login page with a message.
fn invalid_link(render: &Render, auth: &Auth, next: &str) -> Response {
    login_response(
        render,
        auth,
        next,
        StatusCode::BAD_REQUEST,
        Some(
            "This sign-in link is invalid, has expired or was already used. Enter your email to get a new one.",
        ),
        "",
    )
}

/// The stored token a link carries, if it is unused and unexpired.
async fn live_token(
    store: &Store,
    token: &str,
) -> Result<Option<crate::store::Record<EmailVerificationToken>>, Error> {
    if token.len() != 43 {
        return Ok(None);
    }
    let found = store
        .models::<EmailVerificationToken>()
        .find_one(Filter::eq("token", sha256_hex(token)))
        .await?;
    Ok(found.filter(|t| !t.data.used && t.data.expires_at > Timestamp::now()))
}

/// The signed-in user when it is someone other than `email`: signing in would replace them.
fn other_user(user: Option<SessionUser>, email: &str) -> Option<SessionUser> {
    user.filter(|u| {
        !u.email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(email))
    })
}

/// The confirmation page for a live link (`status`), never cached: its form holds the token.
fn confirm_page(
    render: &Render,
    status: StatusCode,
    token: &str,
    next: &str,
    email: &str,
    other: Option<&SessionUser>,
) -> Result<Response, Error> {
    let page = render.page(
        "auth/confirm_sign_in.html.jinja",
        context! {
            email,
            action => verify_path(token, next),
            signed_in_as => other.map(|u| u.email.as_deref().unwrap_or(u.display_name())),
            replace => other.map(|u| u.id.as_str()).unwrap_or_default(),
        },
    )?;
    Ok((status, [(header::CACHE_CONTROL, "no-store")], page).into_response())
}

/// `GET /auth/email-verify/{token}?next=`: for a live link, a page whose button signs in as the
/// link's address (saying so when someone else is signed in). Nothing is used up: mail scanners
/// that fetch links burn nothing, and a link opened by accident signs nobody in.
pub(super) async fn verify_page(
    render: Render,
    AuthState(auth): AuthState,
    store: Store,
    MaybeUser(user): MaybeUser,
    LinkParams { token, next }: LinkParams,
) -> Result<Response, Error> {
    let Some(found) = live_token(&store, &token).await? else {
        return Ok(invalid_link(&render, &auth, &next));
    };
    let other = other_user(user, &found.data.email);
    confirm_page(
        &render,
        StatusCode::OK,
        &token,
        &next,
        &found.data.email,
        other.as_ref(),
    )
}

/// The confirmation form: `replace` is the id of the signed-in user the page offered to replace.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ConfirmForm {
    #[serde(default)]
    replace: String,
}

/// `POST /auth/email-verify/{token}?next=`: signs in with an unused, unexpired link (creating the
/// account on first use; the address's other links die), then goes to a safe `next`. When a
/// different user is signed in and the form did not offer to replace that user, the confirmation
/// page comes back (409) and the link stays unused.
pub(super) async fn verify(
    render: Render,
    session: Session,
    AuthState(auth): AuthState,
    store: Store,
    MaybeUser(user): MaybeUser,
    LinkParams { token, next }: LinkParams,
    form: Result<Form<ConfirmForm>, FormRejection>,
) -> Result<Response, Error> {
    // A bare POST (no body) is a confirmation that replaces nobody.
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let Some(found) = live_token(&store, &token).await? else {
        return Ok(invalid_link(&render, &auth, &next));
    };
    if let Some(other) = other_user(user, &found.data.email)
        && other.id != form.replace
    {
        return confirm_page(
            &render,
            StatusCode::CONFLICT,
            &token,
            &next,
            &found.data.email,
            Some(&other),
        );
    }
    let tokens = store.models::<EmailVerificationToken>();
    let claimed = tokens
        .collection()
        .update_one(
            Filter::eq("_id", found.id).and(Filter::eq("used", false)),
            Update::set(bson::doc! { "used": true }),
        )
        .await?;
    if claimed.is_none() {
        return Ok(invalid_link(&render, &auth, &next));
    }
    // One link used: the address's other links die with it.
    tokens
        .collection()
        .update_many(
            Filter::eq("email", found.data.email.clone()).and(Filter::eq("used", false)),
            Update::set(bson::doc! { "used": true }),
        )
        .await?;
    let user = find_or_create_user(&store, &found.data.email).await?;
    sign_in(&session, &user).await?;
    tracing::info!(user = %user.id.to_hex(), "signed in with a magic link");
    Ok((signed_in_flash(&user), Redirect::to(&next)).into_response())
}

/// The user with this (verified) address, ignoring case, created on first sign-in with the
/// address's local part as name (once, even when two sign-ins race: the email index is unique).
async fn find_or_create_user(
    store: &Store,
    email: &str,
) -> Result<crate::store::Record<User>, Error> {
    let (user, _) = user_by_email_or_insert(store, email, |email| User {
        name: email.split('@').next().map(str::to_owned),
        email: Some(email),
        ..User::default()
    })
    .await?;
    Ok(user)
}

/// The user with this address ignoring case (its domain in ASCII form), else the one `make`
/// builds from that form of the address, inserted; `true` when inserted. Concurrent first sign-ins insert the same
/// lower-cased address, so the unique email index keeps them to one user.
pub(super) async fn user_by_email_or_insert(
    store: &Store,
    email: &str,
    make: impl FnOnce(String) -> User,
) -> Result<(crate::store::Record<User>, bool), crate::store::StoreError> {
    // The form a magic link would give (an OAuth provider's `x@exämple.com` is the same
    // account as a link to `x@xn--exmple-cua.com`); else, lower case as the provider sent it.
    let lower = normalize_email(email).unwrap_or_else(|_| email.to_lowercase());
    if let Some(user) = crate::models::user_by_email(store, &lower).await? {
        return Ok((user, false));
    }
    store
        .models::<User>()
        .find_or_insert(Filter::eq("email", lower.clone()), || make(lower))
        .await
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn emails_are_normalized_or_refused() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").as_deref(),
            Ok("ada@example.com")
        );
        // One account per address, whatever form of the domain is typed.
        assert_eq!(
            normalize_email("x@exämple.com").as_deref(),
            Ok("x@xn--exmple-cua.com")
        );
        assert_eq!(
            normalize_email("x@xn--exmple-cua.com").as_deref(),
            Ok("x@xn--exmple-cua.com")
        );
        assert_eq!(
            normalize_email("ada@ｅｘａｍｐｌｅ.com").as_deref(),
            Ok("ada@example.com"),
            "full-width letters are their ASCII twins"
        );
        assert_eq!(
            normalize_email("ivan@пример.рф").as_deref(),
            Ok("ivan@xn--e1afmkfd.xn--p1ai"),
            "a domain in one alphabet is fine"
        );
        let lookalike = normalize_email("ada@\u{430}pple.com").unwrap_err();
        assert!(lookalike.contains("look-alike"), "{lookalike}");
        let local = normalize_email("\u{430}da@example.com").unwrap_err();
        assert!(local.contains("plain letters before the @"), "{local}");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@example.com, eve@evil.com",
            "Eve <eve@evil.com>",
            "ada@@example.com",
            "ada@example.com\r\nBcc: x@y.z",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
    }
}
