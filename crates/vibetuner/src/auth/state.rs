//! The account services the `/auth` and `/user` routes share ([`Auth`]) and the settings they
//! are made from ([`AuthConfig`]).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};

use super::providers::{self, ProviderConfig};
use crate::config::{ConfigError, Settings};
use crate::error::Error;
use crate::mail::Mailer;
use crate::project::Project;
use crate::ratelimit::{Rate, RateError, RateLimiter};

/// Accounts settings read from the environment.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `BASE_URL`: the public origin used in emailed links and OAuth callbacks (default in prod
    /// `https://{fqdn}`, and prod refuses to start with neither; in dev, the request's own host).
    pub base_url: Option<String>,
    /// `AUTH_RATE_LIMIT`: sign-in emails and OAuth starts per IP and per address (`5/minute`).
    pub rate: Rate,
    /// `SESSION_RATE_LIMIT`: sessions a visitor who is not signed in may start per address
    /// (`60/minute`); over it, nothing is stored and no cookie is set.
    pub session_rate: Rate,
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
        let rate = |key: &str, max: u32| match source.value(key) {
            None => Ok(Rate {
                max,
                per: std::time::Duration::from_secs(60),
            }),
            Some(raw) => raw
                .parse()
                .map_err(|reason: RateError| ConfigError::Invalid {
                    key: key.into(),
                    value: raw.to_owned(),
                    expected: reason.to_string(),
                }),
        };
        Ok(Self {
            base_url,
            rate: rate("AUTH_RATE_LIMIT", 5)?,
            session_rate: rate("SESSION_RATE_LIMIT", 60)?,
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
    pub(crate) oauth: Arc<super::oauth::clients::Providers>,
}

impl Auth {
    /// Assembles the account services.
    pub fn new(config: AuthConfig, mailer: Mailer, limiter: RateLimiter) -> anyhow::Result<Self> {
        #[cfg(feature = "oauth")]
        let oauth = Arc::new(super::oauth::clients::Providers::new(&config.providers)?);
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

    /// The public origin for absolute links: `BASE_URL`, else this request's scheme and host
    /// (a host name that is not this machine's becomes `localhost`: [`crate::security::link_host`]).
    pub fn base_url(&self, parts: &Parts) -> String {
        if let Some(base) = &self.config.base_url {
            return base.clone();
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| "localhost".to_owned(), crate::security::link_host);
        let scheme = crate::security::request_scheme(crate::context::security_config(parts), parts);
        format!("{scheme}://{host}")
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

/// Extractor for the account services, which the account router carries as an extension.
pub(crate) struct AuthState(pub(crate) Arc<Auth>);

impl<S: Send + Sync> FromRequestParts<S> for AuthState {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        parts
            .extensions
            .get::<Arc<Auth>>()
            .cloned()
            .map(Self)
            .ok_or_else(|| Error::internal("the account services are missing on this route"))
    }
}

/// The origin for absolute links in emails (`BASE_URL`, else this request's host in dev).
pub(crate) struct BaseUrl(pub String);

impl<S: Send + Sync> FromRequestParts<S> for BaseUrl {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let AuthState(auth) = AuthState::from_request_parts(parts, state).await?;
        Ok(Self(auth.base_url(parts)))
    }
}
