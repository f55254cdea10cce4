//! Flash messages: one-time notices ("Signed in", "Profile saved") that outlive a redirect.
//!
//! A handler returns a [`Flash`] with its response. The [`carry`] middleware keeps it in the
//! session until the next page, whose skeleton shows it once (`flashes` in templates). An htmx
//! request that is not redirected gets it at once as an `HX-Trigger` event (`vt:flash`), which
//! the app's bundle shows as a toast.

use axum::extract::Request;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponseParts, Response, ResponseParts};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

/// Session key holding the messages not shown yet.
const FLASH_KEY: &str = "_flash";

/// The event an htmx response carries its messages in (`HX-Trigger`).
const FLASH_EVENT: &str = "vt:flash";

/// How a message is styled (daisyUI's `alert-*` colours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Neutral information.
    Info,
    /// Something the user did worked.
    Success,
    /// Worth attention.
    Warning,
    /// Something failed.
    Error,
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashMessage {
    /// Its style.
    pub level: Level,
    /// Its text (plain, escaped when shown).
    pub message: String,
}

/// Messages to show once, on the next page (or as a toast for htmx): return it with the
/// response.
///
/// ```no_run
/// use vibetuner::flash::Flash;
/// use vibetuner::prelude::*;
///
/// async fn archive(user: CurrentUser) -> Result<(Flash, Redirect)> {
///     // ... archive something of `user`'s ...
///     Ok((Flash::success("Archived."), Redirect::to("/")))
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "a flash shows only when returned with a response"]
pub struct Flash(Vec<FlashMessage>);

impl Flash {
    /// One message of `level`.
    pub fn new(level: Level, message: impl Into<String>) -> Self {
        Self(vec![FlashMessage {
            level,
            message: message.into(),
        }])
    }

    /// A success message.
    pub fn success(message: impl Into<String>) -> Self {
        Self::new(Level::Success, message)
    }

    /// An informational message.
    pub fn info(message: impl Into<String>) -> Self {
        Self::new(Level::Info, message)
    }

    /// A warning.
    pub fn warning(message: impl Into<String>) -> Self {
        Self::new(Level::Warning, message)
    }

    /// An error message.
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Level::Error, message)
    }

    /// These messages and one more.
    pub fn and(mut self, level: Level, message: impl Into<String>) -> Self {
        self.0.extend(Self::new(level, message).0);
        self
    }

    /// The messages, in order.
    pub fn messages(&self) -> &[FlashMessage] {
        &self.0
    }
}

impl IntoResponseParts for Flash {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if let Some(pending) = res.extensions_mut().get_mut::<Flash>() {
            pending.0.extend(self.0);
        } else {
            res.extensions_mut().insert(self);
        }
        Ok(res)
    }
}

/// The messages this request's page shows (a request extension read by the renderer).
#[derive(Debug, Clone, Default)]
pub(crate) struct Shown(pub(crate) Vec<FlashMessage>);

/// Middleware (inside the session layer): hands the session's messages to the page being
/// rendered, or to an htmx response as an `HX-Trigger` event, and stores the messages a
/// handler returns until then.
pub(crate) async fn carry(mut request: Request, next: Next) -> Response {
    let Some(session) = request.extensions().get::<Session>().cloned() else {
        return next.run(request).await;
    };
    let htmx = request
        .headers()
        .get("hx-request")
        .is_some_and(|v| v == "true");
    let page =
        !htmx && request.method() == Method::GET && crate::error::wants_html(request.headers());
    let mut taken = Vec::new();
    // Read first: removing marks the session changed, and it is written only when it is.
    if (page || htmx) && session.id().is_some() {
        taken = session
            .get::<Vec<FlashMessage>>(FLASH_KEY)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("cannot read flash messages: {e}");
                None
            })
            .unwrap_or_default();
        if !taken.is_empty()
            && let Err(e) = session.remove_value(FLASH_KEY).await
        {
            tracing::warn!("cannot clear flash messages: {e}");
        }
    }
    if page && !taken.is_empty() {
        request.extensions_mut().insert(Shown(taken.clone()));
    }
    let mut response = next.run(request).await;
    let returned = response
        .extensions_mut()
        .remove::<Flash>()
        .unwrap_or_default();
    let status = response.status();
    let moves_on = status.is_redirection()
        || ["hx-redirect", "hx-location", "hx-refresh"]
            .iter()
            .any(|h| response.headers().contains_key(*h));
    let streams = response
        .headers()
        .get("content-type")
        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    // What no one has seen yet: the messages taken for a page that was not rendered (a
    // redirect, an error), then the handler's.
    let mut unseen = if status.is_success() && !moves_on && !streams {
        Vec::new()
    } else {
        taken.clone()
    };
    if htmx && status.is_success() && !moves_on && !streams {
        let mut messages = taken;
        messages.extend(returned.0);
        if !messages.is_empty() {
            trigger(&mut response, messages);
        }
    } else {
        unseen.extend(returned.0);
    }
    if !unseen.is_empty() {
        let mut kept = session
            .get::<Vec<FlashMessage>>(FLASH_KEY)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        kept.extend(unseen);
        if let Err(e) = session.insert(FLASH_KEY, kept).await {
            tracing::warn!("cannot store flash messages: {e}");
        }
    }
    response
}

/// Adds `messages` to the response's `HX-Trigger` header as the `vt:flash` event, keeping the
/// events it already names.
fn trigger(response: &mut Response, messages: Vec<FlashMessage>) {
    let mut events = match response
        .headers()
        .get("hx-trigger")
        .and_then(|v| v.to_str().ok())
    {
        Some(existing) if existing.trim_start().starts_with('{') => {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(existing)
                .unwrap_or_default()
        }
        Some(names) => names
            .split(',')
            .map(|n| (n.trim().to_owned(), serde_json::Value::Null))
            .filter(|(n, _)| !n.is_empty())
            .collect(),
        None => serde_json::Map::new(),
    };
    events.insert(
        FLASH_EVENT.to_owned(),
        serde_json::json!({ "messages": messages }),
    );
    let value = serde_json::Value::Object(events).to_string();
    match HeaderValue::from_str(&value) {
        Ok(value) => {
            response.headers_mut().insert("hx-trigger", value);
        }
        Err(e) => tracing::warn!("cannot send flash messages in HX-Trigger: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn flashes_returned_twice_add_up() {
        let response = (
            Flash::success("one"),
            Flash::error("two").and(Level::Info, "three"),
            "body",
        )
            .into_response();
        let flash = response.extensions().get::<Flash>().unwrap();
        let texts: Vec<_> = flash
            .messages()
            .iter()
            .map(|m| m.message.as_str())
            .collect();
        assert_eq!(texts, ["one", "two", "three"]);
    }

    #[test]
    fn trigger_keeps_the_events_already_named() {
        let mut response = ([("hx-trigger", "saved, closed")], "x").into_response();
        trigger(&mut response, Flash::info("Hi").0);
        let header = response.headers()["hx-trigger"].to_str().unwrap();
        let events: serde_json::Value = serde_json::from_str(header).unwrap();
        assert_eq!(
            events,
            serde_json::json!({
                "saved": null, "closed": null,
                "vt:flash": {"messages": [{"level": "info", "message": "Hi"}]}
            })
        );
    }
}
