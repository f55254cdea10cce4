//! [`Sse`], the extractor of SSE endpoints, and the streaming response: the SSE headers, a
//! keepalive comment after each quiet interval, the end of the stream at shutdown.

use std::convert::Infallible;
use std::net::IpAddr;

use axum::body::{Body, Bytes};
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};

use super::broadcaster::Broadcaster;
use super::event::SseEvent;
use crate::limits::Slot;

/// Extractor for SSE endpoints: stream a channel or your own events.
pub struct Sse {
    broadcaster: Broadcaster,
    last_event_id: Option<String>,
    client: IpAddr,
}

impl Sse {
    pub(crate) fn new(
        broadcaster: Broadcaster,
        last_event_id: Option<String>,
        client: IpAddr,
    ) -> Self {
        Self {
            broadcaster,
            last_event_id,
            client,
        }
    }

    /// The `Last-Event-ID` the client sent when reconnecting.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Streams `channel` (400 with the reason when the name is invalid, 503 when the
    /// subscriber caps are reached).
    pub async fn channel(self, channel: &str) -> Result<Response, crate::error::Error> {
        let slot = self.broadcaster.admit(self.client)?;
        let events = self
            .broadcaster
            .subscribe(channel, self.last_event_id.as_deref())
            .await?;
        Ok(respond(
            events.map(|e| e.wire.clone()),
            &self.broadcaster,
            slot,
        ))
    }

    /// Streams events a handler produces itself (with keepalives and the SSE headers); 503
    /// when the subscriber caps are reached.
    pub fn stream(self, events: impl Stream<Item = SseEvent> + Send + 'static) -> Response {
        match self.broadcaster.admit(self.client) {
            Ok(slot) => respond(events.map(|e| e.encode()), &self.broadcaster, slot),
            Err(e) => e.into_response(),
        }
    }
}

/// The streaming response: `events`, a keepalive comment after each quiet interval, ending when
/// the server shuts down; `slot` is held as long as the stream.
fn respond(
    events: impl Stream<Item = Bytes> + Send + 'static,
    broadcaster: &Broadcaster,
    slot: Slot,
) -> Response {
    let keepalive = broadcaster.keepalive();
    let mut closing = broadcaster.closing();
    let closed = async move {
        let _ = closing.wait_for(|closing| *closing).await;
    };
    let events = Box::pin(events.take_until(closed));
    let body = futures_util::stream::unfold((events, slot), move |(mut events, slot)| async move {
        let next = match tokio::time::timeout(keepalive, events.next()).await {
            Ok(Some(event)) => event,
            Ok(None) => return None,
            Err(_) => Bytes::from_static(b": keepalive\n\n"),
        };
        Some((Ok::<_, Infallible>(next), (events, slot)))
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
