//! The OAuth providers' clients: one HTTP client, OIDC discovery documents cached for
//! [`DISCOVERY_TTL`], and the OAuth 2 clients built from each provider's settings.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{AuthUrl, ClientId, ClientSecret, IssuerUrl, RedirectUrl, TokenUrl};

use crate::auth::providers::ProviderConfig;

/// How long a provider's discovery document (endpoints and signing keys) is reused before it is
/// fetched again, so rotated signing keys are picked up without a restart.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// The providers with their HTTP client and cached OIDC discovery documents.
pub(crate) struct Providers {
    configs: Vec<ProviderConfig>,
    discovered: HashMap<String, std::sync::Mutex<Option<(Instant, CoreProviderMetadata)>>>,
    /// Built only when a provider is configured: an app without one starts no HTTP client or
    /// TLS stack.
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.configs.iter().map(|c| &c.id))
            .finish()
    }
}

impl Providers {
    pub(crate) fn new(configs: &[ProviderConfig]) -> anyhow::Result<Self> {
        let http = if configs.is_empty() {
            None
        } else {
            Some(
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(Duration::from_secs(15))
                    .user_agent(concat!("vibetuner/", env!("CARGO_PKG_VERSION")))
                    .build()?,
            )
        };
        Ok(Self {
            discovered: configs
                .iter()
                .map(|c| (c.id.clone(), std::sync::Mutex::new(None)))
                .collect(),
            configs: configs.to_vec(),
            http,
        })
    }

    pub(super) fn http(&self) -> Result<&reqwest::Client, ProviderError> {
        self.http.as_ref().ok_or(ProviderError::NotConfigured)
    }

    pub(super) fn get(&self, id: &str) -> Option<&ProviderConfig> {
        self.configs.iter().find(|c| c.id == id)
    }

    pub(super) async fn oidc_client(
        &self,
        config: &ProviderConfig,
        issuer: &str,
        redirect: &str,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        ProviderError,
    > {
        let cell = self
            .discovered
            .get(&config.id)
            .ok_or(ProviderError::NotConfigured)?;
        let cached = cell
            .lock()
            .expect("discovery lock")
            .as_ref()
            .filter(|(at, _)| at.elapsed() < DISCOVERY_TTL)
            .map(|(_, metadata)| metadata.clone());
        let metadata = match cached {
            Some(metadata) => metadata,
            None => {
                let issuer = IssuerUrl::new(issuer.to_owned())?;
                let metadata = CoreProviderMetadata::discover_async(issuer, self.http()?)
                    .await
                    .map_err(|e| ProviderError::Discovery(error_chain(&e)))?;
                *cell.lock().expect("discovery lock") = Some((Instant::now(), metadata.clone()));
                metadata
            }
        };
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            Some(ClientSecret::new(config.client_secret.clone())),
        )
        .set_redirect_uri(RedirectUrl::new(redirect.to_owned())?))
    }

    pub(super) fn oauth2_client(
        config: &ProviderConfig,
        authorize_url: &str,
        token_url: &str,
        redirect: &str,
    ) -> Result<
        oauth2::basic::BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        ProviderError,
    > {
        Ok(
            oauth2::basic::BasicClient::new(ClientId::new(config.client_id.clone()))
                .set_client_secret(ClientSecret::new(config.client_secret.clone()))
                .set_auth_uri(AuthUrl::new(authorize_url.to_owned())?)
                .set_token_uri(TokenUrl::new(token_url.to_owned())?)
                .set_redirect_uri(RedirectUrl::new(redirect.to_owned())?),
        )
    }
}

/// Why signing in with a provider failed: logged, and the person is asked to try again.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProviderError {
    #[error("provider not configured")]
    NotConfigured,
    #[error("bad provider URL: {0}")]
    Url(#[from] url::ParseError),
    #[error("OpenID discovery failed: {0}")]
    Discovery(String),
    #[error("cannot exchange the code: {0}")]
    Configuration(#[from] openidconnect::ConfigurationError),
    #[error("token exchange failed: {0}")]
    Exchange(String),
    #[error("the provider sent no ID token")]
    NoIdToken,
    #[error("ID token rejected: {0}")]
    IdToken(#[from] openidconnect::ClaimsVerificationError),
    #[error("userinfo has no id")]
    NoSubject,
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
