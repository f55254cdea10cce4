//! Server-sent events: channels that handlers and tasks [`broadcast`](Broadcaster::broadcast)
//! to, endpoints that stream a channel (fixed, or computed per request), and handlers that
//! stream their own events.
//!
//! Every stream sends a `: keepalive` comment every `SSE_KEEPALIVE` seconds and the headers
//! `Cache-Control: no-cache` and `X-Accel-Buffering: no`. Each event has an id; a client that
//! reconnects with `Last-Event-ID` first receives the events it missed (up to
//! `SSE_BUFFER_SIZE` events and `SSE_BUFFER_BYTES` per channel, the newest kept).
//!
//! Bounds: an event is encoded once and shared by every subscriber; a subscriber that falls
//! more than `SSE_BUFFER_BYTES` behind is disconnected (its browser reconnects and replays);
//! at most `SSE_MAX_SUBSCRIBERS` streams are open in a process and `SSE_MAX_SUBSCRIBERS_PER_IP`
//! from one client address (more get 503 with the reason).
//!
//! Items that can be deleted: broadcast their events with a key
//! ([`broadcast_keyed`](Broadcaster::broadcast_keyed), say `note:42`); a later event with the
//! same key (the deletion, or a newer version) replaces the earlier ones in the replay, so a
//! reconnecting client is never sent a deleted item, only the event that deletes it.
//!
//! With `REDIS_URL`, a broadcast is appended to a capped Redis stream per channel (which gives
//! the event its id and keeps the replay buffer, shared by every process) and published; each
//! process relays what it receives to its own subscribers, skipping ids it has already
//! delivered, so each subscriber gets each event once. After losing Redis, the relay reconnects
//! with backoff (1 s doubling to 30 s) and fetches what it missed. A broadcast while Redis does
//! not answer reaches this process's subscribers only (logged), rather than failing the request
//! that made it. Without Redis, delivery and replay are in-process.
//!
//! ```no_run
//! use vibetuner::prelude::*;
//!
//! async fn room_events(sse: Sse, Path(room): Path<String>) -> Result<Response> {
//!     sse.channel(&format!("room:{room}")).await
//! }
//!
//! async fn post_message(broadcaster: Broadcaster, Path(room): Path<String>) -> Result<()> {
//!     broadcaster.broadcast(&format!("room:{room}"), "message", "<p>hi</p>").await?;
//!     Ok(())
//! }
//!
//! async fn delete_message(broadcaster: Broadcaster, Path((room, id)): Path<(String, u64)>) -> Result<()> {
//!     // Replaces the message's earlier events in the replay.
//!     let html = format!(r#"<div id="msg-{id}" hx-swap-oob="delete"></div>"#);
//!     broadcaster
//!         .broadcast_keyed(&format!("room:{room}"), &format!("msg:{id}"), "message", html)
//!         .await?;
//!     Ok(())
//! }
//!
//! # fn main() {
//! App::new(vibetuner::project!())
//!     .sse("/notes/events", "notes") // a fixed channel
//!     .route("/rooms/{room}/events", get(room_events)) // a channel per request
//!     .route("/rooms/{room}/messages", post(post_message))
//!     .route("/rooms/{room}/messages/{id}", delete(delete_message));
//! # }
//! ```
//!
//! `event.rs` is the wire format, `broadcaster.rs` the channels and their delivery,
//! `stream.rs` the HTTP side ([`Sse`]), `redis.rs` the fan-out across processes.

use std::time::Duration;

mod broadcaster;
mod event;
#[cfg(feature = "redis")]
mod redis;
mod stream;

pub use broadcaster::Broadcaster;
use broadcaster::SseLimits;
pub use event::{MAX_CHANNEL_LEN, SseEvent, valid_channel};
pub use stream::Sse;

impl Broadcaster {
    /// The broadcaster the settings select: fan-out through Redis when `redis` (its URL and
    /// the process's shared connection) is given, else in-process.
    pub(crate) fn connect(
        redis: Option<&crate::redis_conn::Shared>,
        settings: &crate::config::JobsSettings,
        prefix: &str,
    ) -> anyhow::Result<Self> {
        let keepalive = Duration::from_secs(settings.sse_keepalive_secs);
        let limits = SseLimits::from_settings(settings);
        match redis {
            #[cfg(feature = "redis")]
            Some(redis) => Self::redis(&redis.url, redis.conn.clone(), prefix, limits, keepalive),
            _ => {
                let _ = prefix;
                Ok(Self::with(None, limits, keepalive))
            }
        }
    }
}
