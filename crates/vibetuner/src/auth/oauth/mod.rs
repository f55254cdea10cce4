//! OAuth sign-in: Google (OpenID Connect), GitHub (OAuth 2 + its user API) and custom providers
//! from settings, with `state`, PKCE and (for OIDC) a nonce and a JWKS-verified ID token.
//!
//! Settings per provider id `P` (upper-cased): `P_CLIENT_ID` and `P_CLIENT_SECRET` enable it;
//! `P_ISSUER_URL` (OIDC) or `P_AUTHORIZE_URL` + `P_TOKEN_URL` + `P_USERINFO_URL` (OAuth 2) say
//! where it lives (Google and GitHub have defaults); `P_SCOPES`, `P_NAME` and `P_EMAILS_URL`
//! are optional. `OAUTH_PROVIDERS=gitlab,acme` adds custom ids.

pub(super) mod clients;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge,
    PkceCodeVerifier, Scope, TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use super::magic_link::{NextQuery, login_response, user_by_email_or_insert};
use super::providers::{ProviderConfig, ProviderKind};
use super::redirect::safe_next;
use super::state::{Auth, AuthState, BaseUrl};
use super::user::{session_error, sign_in, signed_in_flash};
use crate::error::Error;
use crate::models::{Link, OAuthAccount, User};
use crate::render::Render;
use crate::security::ClientIp;
use crate::store::bson::{Bson, doc};
use crate::store::{Filter, Record, Store, Update};
use clients::{ProviderError, Providers, error_chain};

/// What the session remembers between the redirect to the provider and its callback.
#[derive(Debug, Serialize, Deserialize)]
struct PendingLogin {
    provider: String,
    state: String,
    pkce_verifier: String,
    nonce: String,
    next: String,
}

const PENDING_KEY: &str = "oauth_pending";

/// `GET /auth/login/provider/{p}?next=`: redirects to the provider (rate-limited per IP).
pub(super) async fn start(
    render: Render,
    session: Session,
    AuthState(auth): AuthState,
    client: ClientIp,
    BaseUrl(base): BaseUrl,
    Path(provider): Path<String>,
    Query(query): Query<NextQuery>,
) -> Result<Response, Error> {
    let next = safe_next(query.next.as_deref());
    let Some(config) = auth.oauth.get(&provider) else {
        return Err(Error::new(
            StatusCode::NOT_FOUND,
            format!("There is no sign-in provider called {provider:?} on this site."),
        ));
    };
    auth.limit(&[format!("auth:ip:{}", client.rate_key())])
        .await?;
    let redirect = format!("{base}/auth/provider/{provider}");
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let scopes = config.scopes.iter().map(|s| Scope::new(s.clone()));
    let built = match &config.kind {
        ProviderKind::Oidc { issuer } => {
            match auth.oauth.oidc_client(config, issuer, &redirect).await {
                Ok(client) => {
                    let (url, state, nonce) = client
                        .authorize_url(
                            CoreAuthenticationFlow::AuthorizationCode,
                            CsrfToken::new_random,
                            Nonce::new_random,
                        )
                        .add_scopes(scopes.filter(|s| s.as_str() != "openid"))
                        .set_pkce_challenge(challenge)
                        .url();
                    Ok((url, state, nonce.secret().clone()))
                }
                Err(e) => Err(e),
            }
        }
        ProviderKind::OAuth2 {
            authorize_url,
            token_url,
            ..
        } => Providers::oauth2_client(config, authorize_url, token_url, &redirect).map(|client| {
            let (url, state) = client
                .authorize_url(CsrfToken::new_random)
                .add_scopes(scopes)
                .set_pkce_challenge(challenge)
                .url();
            (url, state, String::new())
        }),
    };
    let (url, state, nonce) = match built {
        Ok(parts) => parts,
        Err(e) => {
            tracing::error!(provider, "cannot start OAuth sign-in: {e}");
            return Ok(failure(&render, &auth, &next, &config.name));
        }
    };
    let pending = PendingLogin {
        provider: provider.clone(),
        state: state.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        nonce,
        next,
    };
    session
        .insert(PENDING_KEY, pending)
        .await
        .map_err(session_error)?;
    Ok(Redirect::to(url.as_str()).into_response())
}

fn failure(render: &Render, auth: &Auth, next: &str, provider: &str) -> Response {
    let message = format!(
        "Signing in with {provider} did not work. Please try again, or use your email address."
    );
    login_response(
        render,
        auth,
        next,
        StatusCode::BAD_REQUEST,
        Some(&message),
        "",
    )
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// Who the provider says the person is.
#[derive(Debug, Clone, Default)]
struct Identity {
    subject: String,
    email: Option<String>,
    email_verified: bool,
    name: Option<String>,
    picture: Option<String>,
}

/// `GET /auth/provider/{p}`: the provider's callback. Checks `state`, exchanges the code with the
/// PKCE verifier, reads the identity, then finds, links or creates the account. Any failure shows
/// a message on the login page.
pub(super) async fn callback(
    render: Render,
    session: Session,
    AuthState(auth): AuthState,
    store: Store,
    BaseUrl(base): BaseUrl,
    Path(provider): Path<String>,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, Error> {
    let pending: Option<PendingLogin> = session.remove(PENDING_KEY).await.map_err(session_error)?;
    let next = pending
        .as_ref()
        .map_or_else(|| "/".to_owned(), |p| p.next.clone());
    let Some(config) = auth.oauth.get(&provider) else {
        return Err(Error::new(
            StatusCode::NOT_FOUND,
            format!("There is no sign-in provider called {provider:?} on this site."),
        ));
    };
    let name = config.name.clone();
    let fail = |reason: String| {
        tracing::warn!(provider, "OAuth sign-in failed: {reason}");
        Ok(failure(&render, &auth, &next, &name))
    };
    if let Some(error) = &query.error {
        return fail(format!(
            "provider returned {error}: {}",
            query.error_description.as_deref().unwrap_or("")
        ));
    }
    let Some(pending) = pending.filter(|p| p.provider == provider) else {
        return fail("no sign-in in progress in this session (expired, or another browser)".into());
    };
    let state_ok = query.state.as_deref().is_some_and(|s| {
        s.len() == pending.state.len()
            && s.bytes()
                .zip(pending.state.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if !state_ok {
        return fail("state does not match".into());
    }
    let Some(code) = query.code.clone() else {
        return fail("no authorization code".into());
    };
    let redirect = format!("{base}/auth/provider/{provider}");
    let identity = match identify(&auth, config, &redirect, code, &pending).await {
        Ok(identity) => identity,
        Err(reason) => return fail(reason.to_string()),
    };
    let user = match link_account(&store, &provider, identity).await {
        Ok(user) => user,
        Err(e) => return fail(e.to_string()),
    };
    sign_in(&session, &user).await?;
    tracing::info!(user = %user.id.to_hex(), provider, "signed in with OAuth");
    Ok((signed_in_flash(&user), Redirect::to(&pending.next)).into_response())
}

async fn identify(
    auth: &Auth,
    config: &ProviderConfig,
    redirect: &str,
    code: String,
    pending: &PendingLogin,
) -> Result<Identity, ProviderError> {
    let http = auth.oauth.http()?;
    let verifier = PkceCodeVerifier::new(pending.pkce_verifier.clone());
    match &config.kind {
        ProviderKind::Oidc { issuer } => {
            let client = auth.oauth.oidc_client(config, issuer, redirect).await?;
            let token = client
                .exchange_code(AuthorizationCode::new(code))?
                .set_pkce_verifier(verifier)
                .request_async(http)
                .await
                .map_err(|e| ProviderError::Exchange(error_chain(&e)))?;
            let id_token = token.id_token().ok_or(ProviderError::NoIdToken)?;
            let claims = id_token.claims(
                &client.id_token_verifier(),
                &Nonce::new(pending.nonce.clone()),
            )?;
            Ok(Identity {
                subject: claims.subject().as_str().to_owned(),
                email: claims.email().map(|e| e.as_str().to_lowercase()),
                email_verified: claims.email_verified().unwrap_or(false),
                name: claims
                    .name()
                    .and_then(|n| n.get(None))
                    .map(|n| n.as_str().to_owned()),
                picture: claims
                    .picture()
                    .and_then(|p| p.get(None))
                    .map(|p| p.as_str().to_owned()),
            })
        }
        ProviderKind::OAuth2 {
            authorize_url,
            token_url,
            userinfo_url,
            emails_url,
        } => {
            let client = Providers::oauth2_client(config, authorize_url, token_url, redirect)?;
            let token = client
                .exchange_code(AuthorizationCode::new(code))
                .set_pkce_verifier(verifier)
                .request_async(http)
                .await
                .map_err(|e| ProviderError::Exchange(error_chain(&e)))?;
            let access = token.access_token().secret();
            let info: serde_json::Value = get_json(http, userinfo_url, access).await?;
            let text = |keys: &[&str]| {
                keys.iter().find_map(|k| match &info[*k] {
                    serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
            };
            let subject = text(&["sub", "id"]).ok_or(ProviderError::NoSubject)?;
            let mut email = text(&["email"]).map(|e| e.to_lowercase());
            let mut email_verified = info["email_verified"].as_bool().unwrap_or(false);
            if let Some(url) = emails_url {
                let emails: Vec<ProviderEmail> = get_json(http, url, access).await?;
                let best = emails
                    .iter()
                    .filter(|e| e.verified)
                    .max_by_key(|e| e.primary);
                if let Some(best) = best {
                    email = Some(best.email.to_lowercase());
                    email_verified = true;
                }
            }
            Ok(Identity {
                subject,
                email,
                email_verified,
                name: text(&["name", "login", "preferred_username"]),
                picture: text(&["picture", "avatar_url"]),
            })
        }
    }
}

#[derive(Debug, Deserialize)]
struct ProviderEmail {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    access: &str,
) -> Result<T, ProviderError> {
    let http_error = |reason: String| ProviderError::Http {
        url: url.to_owned(),
        reason,
    };
    let response = http
        .get(url)
        .bearer_auth(access)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| http_error(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(http_error(format!("answered {}", response.status())));
    }
    response
        .json()
        .await
        .map_err(|e| http_error(format!("unexpected answer: {e}")))
}

/// Finds the account by (provider, subject); else links it to the user with the same verified
/// email; else creates the user. Unverified emails are never used to link or stored.
async fn link_account(
    store: &Store,
    provider: &str,
    identity: Identity,
) -> Result<Record<User>, Error> {
    let accounts = store.models::<OAuthAccount>();
    let users = store.models::<User>();
    let email = identity.email.clone().filter(|_| identity.email_verified);
    let (mut account, inserted) = accounts
        .find_or_insert(
            Filter::eq("provider", provider.to_owned())
                .and(Filter::eq("provider_user_id", identity.subject.clone())),
            || OAuthAccount {
                provider: provider.to_owned(),
                provider_user_id: identity.subject.clone(),
                email: email.clone(),
                name: identity.name.clone(),
                picture: identity.picture.clone(),
                user_id: None,
            },
        )
        .await?;
    if !inserted {
        // Refresh what the provider reports, touching nothing else (a racing sign-in may be
        // linking this account right now).
        let mut fresh = doc! {};
        for (field, value) in [
            ("name", &identity.name),
            ("picture", &identity.picture),
            ("email", &email),
        ] {
            if let Some(value) = value {
                fresh.insert(field, value.clone());
            }
        }
        if !fresh.is_empty() {
            account = accounts
                .update(account.id, Update::set(fresh))
                .await?
                .unwrap_or(account);
        }
    }
    let linked = match account.data.user_id {
        Some(id) => users.get(id).await?,
        None => None,
    };
    // Vibetuner links from the user's side only; following that link keeps a user whose
    // provider address changed (or who has none) and never gives one account to two users.
    let linked = match linked {
        Some(user) => Some(user),
        None => crate::models::users_holding_account(store, account.id)
            .await?
            .into_iter()
            .next(),
    };
    let new_user = || User {
        email: email.clone(),
        name: identity.name.clone(),
        picture: identity.picture.clone(),
        ..User::default()
    };
    let (mut user, created) = match (linked, &email) {
        (Some(user), _) => (user, false),
        (None, Some(address)) => user_by_email_or_insert(store, address, |_| new_user()).await?,
        (None, None) => (users.insert(new_user()).await?, true),
    };
    if account.data.user_id != Some(user.id) {
        // Link only if nobody else did meanwhile (two first sign-ins racing): the loser
        // signs in as the winner's user and drops the user it made.
        let read = account.data.user_id.map_or(Bson::Null, Bson::from);
        let linked_here = accounts
            .collection()
            .update_one(
                Filter::eq("_id", account.id).and(Filter::eq("user_id", read)),
                Update::set(doc! { "user_id": user.id }),
            )
            .await?
            .is_some();
        if linked_here {
            account.data.user_id = Some(user.id);
        } else {
            let winner = accounts
                .get(account.id)
                .await?
                .and_then(|a| a.data.user_id)
                .ok_or_else(|| Error::internal("the OAuth account lost its user while linking"))?;
            if created && winner != user.id {
                users.delete(user.id).await?;
            }
            return users
                .get(winner)
                .await?
                .ok_or_else(|| Error::internal("the OAuth account's user is gone"));
        }
    }
    if !user.data.oauth_accounts.iter().any(|l| l.id == account.id) {
        user.data
            .oauth_accounts
            .push(Link::oauth_account(account.id));
        if user.data.picture.is_none() {
            user.data.picture = identity.picture;
        }
        users.save(&mut user).await?;
    }
    Ok(user)
}
