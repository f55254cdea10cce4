//! A small OAuth 2 / OpenID Connect provider on 127.0.0.1 for the sign-in tests: discovery,
//! authorize (consents at once), token (checks client secret, redirect URI and PKCE), userinfo,
//! GitHub-style `/user/emails`, and RS256 ID tokens whose key is published as a JWKS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use openidconnect::core::{
    CoreIdToken, CoreIdTokenClaims, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreResponseType, CoreRsaPrivateSigningKey, CoreSubjectIdentifierType,
};
use openidconnect::{
    Audience, AuthUrl, EmptyAdditionalClaims, EmptyAdditionalProviderMetadata, EndUserEmail,
    EndUserName, IssuerUrl, JsonWebKeyId, JsonWebKeySetUrl, LocalizedClaim, Nonce,
    PrivateSigningKey as _, ResponseTypes, StandardClaims, SubjectIdentifier, TokenUrl,
    UserInfoUrl,
};
use serde::Deserialize;
use serde_json::json;
use sha2::Digest as _;

pub(crate) const CLIENT_ID: &str = "test-client";
pub(crate) const CLIENT_SECRET: &str = "test-secret";
const KEY_PEM: &str = include_str!("../../fixture/oidc-test-key.pem");
/// A key the JWKS does not publish, for forged ID tokens.
const FORGED_KEY_PEM: &str = include_str!("../../fixture/oidc-forged-key.pem");

/// Who the provider says signs in next, and how it misbehaves.
#[derive(Debug, Clone)]
pub(crate) struct FakeUser {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    /// Refuse at the authorize step (`error=access_denied`).
    pub deny: bool,
    /// Sign the ID token with a key the JWKS does not publish.
    pub forge_signature: bool,
}

impl FakeUser {
    pub(crate) fn new(sub: &str, email: &str, verified: bool) -> Self {
        Self {
            sub: sub.into(),
            email: email.into(),
            email_verified: verified,
            name: format!("User {sub}"),
            deny: false,
            forge_signature: false,
        }
    }
}

struct Grant {
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    user: FakeUser,
}

struct Inner {
    issuer: String,
    key: CoreRsaPrivateSigningKey,
    next_user: Mutex<FakeUser>,
    grants: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, FakeUser>>,
    /// Every request the provider saw, `METHOD path`.
    pub log: Mutex<Vec<String>>,
}

/// A running provider.
#[derive(Clone)]
pub(crate) struct FakeProvider {
    inner: Arc<Inner>,
}

impl FakeProvider {
    /// Starts on a free port.
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let key = CoreRsaPrivateSigningKey::from_pem(KEY_PEM, Some(JsonWebKeyId::new("k1".into())))
            .unwrap();
        let inner = Arc::new(Inner {
            issuer,
            key,
            next_user: Mutex::new(FakeUser::new("u1", "ada@example.com", true)),
            grants: Mutex::default(),
            tokens: Mutex::default(),
            log: Mutex::default(),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .route("/user/emails", get(emails))
            .route("/jwks", get(jwks))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { inner }
    }

    /// The issuer URL (also the base of every endpoint).
    pub(crate) fn issuer(&self) -> String {
        self.inner.issuer.clone()
    }

    /// Sets who signs in next.
    pub(crate) fn set_user(&self, user: FakeUser) {
        *self.inner.next_user.lock().unwrap() = user;
    }

    /// Settings that configure this provider as OIDC provider `id`.
    pub(crate) fn oidc_settings(&self, id: &str) -> Vec<(String, String)> {
        let p = id.to_ascii_uppercase();
        vec![
            ("OAUTH_PROVIDERS".into(), id.into()),
            (format!("{p}_CLIENT_ID"), CLIENT_ID.into()),
            (format!("{p}_CLIENT_SECRET"), CLIENT_SECRET.into()),
            (format!("{p}_ISSUER_URL"), self.issuer()),
        ]
    }

    /// Settings that point the built-in GitHub provider at this one.
    pub(crate) fn github_settings(&self) -> Vec<(String, String)> {
        let base = self.issuer();
        vec![
            ("GITHUB_CLIENT_ID".into(), CLIENT_ID.into()),
            ("GITHUB_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("GITHUB_AUTHORIZE_URL".into(), format!("{base}/authorize")),
            ("GITHUB_TOKEN_URL".into(), format!("{base}/token")),
            ("GITHUB_USERINFO_URL".into(), format!("{base}/userinfo")),
            ("GITHUB_EMAILS_URL".into(), format!("{base}/user/emails")),
        ]
    }

    /// Requests seen so far.
    pub(crate) fn log(&self) -> Vec<String> {
        self.inner.log.lock().unwrap().clone()
    }
}

async fn discovery(State(s): State<Arc<Inner>>) -> Json<CoreProviderMetadata> {
    let base = &s.issuer;
    let metadata = CoreProviderMetadata::new(
        IssuerUrl::new(base.clone()).unwrap(),
        AuthUrl::new(format!("{base}/authorize")).unwrap(),
        JsonWebKeySetUrl::new(format!("{base}/jwks")).unwrap(),
        vec![ResponseTypes::new(vec![CoreResponseType::Code])],
        vec![CoreSubjectIdentifierType::Public],
        vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
        EmptyAdditionalProviderMetadata {},
    )
    .set_token_endpoint(Some(TokenUrl::new(format!("{base}/token")).unwrap()))
    .set_userinfo_endpoint(Some(UserInfoUrl::new(format!("{base}/userinfo")).unwrap()));
    Json(metadata)
}

async fn jwks(State(s): State<Arc<Inner>>) -> Json<CoreJsonWebKeySet> {
    Json(CoreJsonWebKeySet::new(vec![s.key.as_verification_key()]))
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    nonce: Option<String>,
}

async fn authorize(State(s): State<Arc<Inner>>, Query(q): Query<AuthorizeQuery>) -> Response {
    s.log.lock().unwrap().push("GET /authorize".into());
    let user = s.next_user.lock().unwrap().clone();
    let sep = if q.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    if user.deny {
        return Redirect::to(&format!(
            "{}{sep}error=access_denied&error_description=The+user+said+no&state={}",
            q.redirect_uri, q.state
        ))
        .into_response();
    }
    if q.client_id != CLIENT_ID
        || q.code_challenge_method.as_deref() != Some("S256")
        || q.code_challenge.is_none()
    {
        return (StatusCode::BAD_REQUEST, "client_id and S256 PKCE required").into_response();
    }
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    s.grants.lock().unwrap().insert(
        code.clone(),
        Grant {
            redirect_uri: q.redirect_uri.clone(),
            challenge: q.code_challenge.unwrap(),
            nonce: q.nonce,
            user,
        },
    );
    Redirect::to(&format!(
        "{}{sep}code={code}&state={}",
        q.redirect_uri,
        urlencode(&q.state)
    ))
    .into_response()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[derive(Deserialize)]
struct TokenForm {
    code: String,
    redirect_uri: String,
    code_verifier: Option<String>,
}

fn token_error(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_grant", "error_description": msg})),
    )
        .into_response()
}

async fn token(
    State(s): State<Arc<Inner>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    s.log.lock().unwrap().push("POST /token".into());
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let Some(grant) = s.grants.lock().unwrap().remove(&form.code) else {
        return token_error("unknown or used code");
    };
    if grant.redirect_uri != form.redirect_uri {
        return token_error("redirect_uri mismatch");
    }
    let verifier = form.code_verifier.unwrap_or_default();
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    if computed != grant.challenge {
        return token_error("PKCE verification failed");
    }
    let access = format!("at-{}", uuid::Uuid::new_v4().simple());
    s.tokens
        .lock()
        .unwrap()
        .insert(access.clone(), grant.user.clone());
    let mut body = json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600});
    if let Some(nonce) = grant.nonce {
        let user = &grant.user;
        let now = chrono::Utc::now();
        let claims = CoreIdTokenClaims::new(
            IssuerUrl::new(s.issuer.clone()).unwrap(),
            vec![Audience::new(CLIENT_ID.into())],
            now + chrono::Duration::minutes(5),
            now,
            StandardClaims::new(SubjectIdentifier::new(user.sub.clone()))
                .set_email(Some(EndUserEmail::new(user.email.clone())))
                .set_email_verified(Some(user.email_verified))
                .set_name(Some(LocalizedClaim::from(EndUserName::new(
                    user.name.clone(),
                )))),
            EmptyAdditionalClaims {},
        )
        .set_nonce(Some(Nonce::new(nonce)));
        let forged;
        let key = if user.forge_signature {
            forged = CoreRsaPrivateSigningKey::from_pem(
                FORGED_KEY_PEM,
                Some(JsonWebKeyId::new("k1".into())),
            )
            .unwrap();
            &forged
        } else {
            &s.key
        };
        let id_token = CoreIdToken::new(
            claims,
            key,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            None,
            None,
        )
        .unwrap();
        body["id_token"] = json!(id_token.to_string());
    }
    Json(body).into_response()
}

fn bearer_user(s: &Inner, headers: &HeaderMap) -> Option<FakeUser> {
    let token = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    s.tokens.lock().unwrap().get(token).cloned()
}

async fn userinfo(State(s): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    s.log.lock().unwrap().push("GET /userinfo".into());
    let Some(user) = bearer_user(&s, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let id: i64 = user.sub.trim_start_matches('u').parse().unwrap_or(7);
    Json(json!({
        "id": id,
        "login": user.sub,
        "name": user.name,
        "email": null,
        "avatar_url": "https://avatars.githubusercontent.com/u/1",
    }))
    .into_response()
}

async fn emails(State(s): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    s.log.lock().unwrap().push("GET /user/emails".into());
    let Some(user) = bearer_user(&s, &headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    Json(json!([
        {"email": user.email, "primary": true, "verified": user.email_verified},
    ]))
    .into_response()
}
