//! The request extractors of the context and of the services it holds: the one place that
//! reads the [`AppContext`] a framework-built router put on each request.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::{AppContext, Service, missing_service};
use crate::config::Settings;
use crate::error::Error;
use crate::jobs::Jobs;
use crate::render::{Render, RequestInfo};
use crate::security::{ClientIp, SecurityConfig};
use crate::sse::{Broadcaster, Sse};
use crate::store::Store;
use crate::urls::Urls;

impl AppContext {
    /// The context a framework-built router put on the request.
    pub(crate) fn from_parts(parts: &Parts) -> Result<&Self, Error> {
        parts.extensions.get::<AppContext>().ok_or_else(|| {
            Error::internal(
                "the app context is missing: this router was not built by vibetuner::App",
            )
        })
    }
}

/// The security settings of the request's app; for a request that did not come through one,
/// [`SecurityConfig::dev`] (no proxy trusted).
pub(crate) fn security_config(parts: &Parts) -> &SecurityConfig {
    parts
        .extensions
        .get::<AppContext>()
        .map_or(SecurityConfig::dev(), |c| c.security().as_ref())
}

impl<S: Send + Sync> FromRequestParts<S> for AppContext {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        AppContext::from_parts(parts).cloned()
    }
}

/// Handlers may take the settings directly (a copy; `AppContext::settings` borrows them):
/// `async fn h(settings: Settings) { let days: u32 = settings.get("RETENTION_DAYS")?... }`.
impl<S: Send + Sync> FromRequestParts<S> for Settings {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Ok(AppContext::from_parts(parts)?.settings().clone())
    }
}

impl<S: Send + Sync, T: Send + Sync + 'static> FromRequestParts<S> for Service<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        AppContext::from_parts(parts)?
            .inner()
            .services
            .get_arc::<T>()
            .map(Service)
            .ok_or_else(missing_service::<T>)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Store {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Ok(AppContext::from_parts(parts)?.store().clone())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Jobs {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Ok(AppContext::from_parts(parts)?.jobs().clone())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Broadcaster {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Ok(AppContext::from_parts(parts)?.broadcaster().clone())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Urls {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<AppContext>()
            .map(|ctx| ctx.urls().clone())
            .unwrap_or_default())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Render {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let renderer = AppContext::from_parts(parts)?.inner().renderer.clone();
        Ok(Render::new(renderer, RequestInfo::from_parts(parts)))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        if let Some(client) = parts.extensions.get::<ClientIp>() {
            return Ok(*client);
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(ClientIp::resolve(
            security_config(parts),
            peer,
            &parts.headers,
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Sse {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let Ok(ClientIp(client)) = ClientIp::from_request_parts(parts, state).await;
        let last_event_id = parts
            .headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let broadcaster = Broadcaster::from_request_parts(parts, state).await?;
        Ok(Sse::new(broadcaster, last_event_id, client))
    }
}
