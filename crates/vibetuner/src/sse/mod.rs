//! Server-sent events: channels that handlers and tasks [`broadcast`](Broadcaster::broadcast)
//! to, endpoints that stream a channel (fixed, or computed per request), and handlers that
//! stream their own events.
//!
//! Every stream sends a `: keepalive` comment every `SSE_KEEPALIVE` seconds and the headers
//! `Cache-Control: no-cache` and `X-Accel-Buffering: no`. Each event has an id; a client that
//! reconnects with `Last-Event-ID` first receives the events it missed (up to
//! `SSE_BUFFER_SIZE` per channel).
//!
//! With `REDIS_URL`, a broadcast is appended to a capped Redis stream per channel (which gives
//! the event its id and keeps the replay buffer, shared by every process) and published; each
//! process relays what it receives to its own subscribers, skipping ids it has already
//! delivered, so each subscriber gets each event once. After losing Redis, the relay reconnects
//! with backoff (1 s doubling to 30 s) and fetches what it missed. Without Redis, delivery and
//! replay are in-process.
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
//! # fn main() {
//! App::new(vibetuner::project!())
//!     .sse("/notes/events", "notes") // a fixed channel
//!     .route("/rooms/{room}/events", get(room_events)) // a channel per request
//!     .route("/rooms/{room}/messages", post(post_message));
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::header::CACHE_CONTROL;
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;

#[cfg(feature = "redis")]
mod redis;
#[cfg(not(feature = "redis"))]
mod redis {
    //! Without the `redis` feature there is no fan-out: a type with no values.
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Inner, SseEvent};

    pub(super) enum RedisFanout {}

    impl RedisFanout {
        pub(super) async fn publish(
            &self,
            _: &str,
            _: &str,
            _: String,
            _: usize,
            _: Duration,
        ) -> Result<String, crate::Error> {
            match *self {}
        }

        pub(super) async fn start_relay(&self, _: &Arc<Inner>) {
            match *self {}
        }

        pub(super) async fn since(
            &self,
            _: &str,
            _: &str,
            _: usize,
        ) -> Result<Vec<SseEvent>, std::convert::Infallible> {
            match *self {}
        }
    }
}

use redis::RedisFanout;

/// Longest channel name.
pub const MAX_CHANNEL_LEN: usize = 128;

/// Capacity of a channel's in-process fan-out; a subscriber further behind is disconnected and
/// catches up through `Last-Event-ID` when its browser reconnects.
const FANOUT_CAPACITY: usize = 1024;

/// How long a channel's replay buffer outlives its last event (in Redis and in-process).
const REPLAY_RETENTION: Duration = Duration::from_secs(86_400);

/// How often idle in-process channels are looked for (at most).
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event id (`<ms>-<seq>`), empty for events a handler streams without one.
    pub id: String,
    /// The event name; `message` is sent without an `event:` line (htmx swaps those).
    pub event: String,
    /// The payload, often rendered HTML.
    pub data: String,
}

impl SseEvent {
    /// An event without an id, for handlers that stream their own events.
    pub fn new(event: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            id: String::new(),
            event: event.into(),
            data: data.into(),
        }
    }

    fn to_axum(&self) -> Event {
        let data = self.data.replace("\r\n", "\n").replace('\r', "\n");
        let mut event = Event::default().data(data);
        if !self.id.is_empty() {
            event = event.id(&self.id);
        }
        if !self.event.is_empty() && self.event != "message" {
            event = event.event(&self.event);
        }
        event
    }
}

/// True for names of 1 to 128 characters from `A-Z a-z 0-9 - : _ .`.
pub fn valid_channel(name: &str) -> bool {
    (1..=MAX_CHANNEL_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'_' | b'.'))
}

fn channel_error(name: &str) -> crate::Error {
    let shown: String = name.chars().take(40).collect();
    crate::Error::bad_request(format!(
        "invalid SSE channel name {shown:?}: use 1 to {MAX_CHANNEL_LEN} characters from A-Z a-z 0-9 - : _ ."
    ))
}

/// An event id: milliseconds and a sequence number, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct EventId(u64, u64);

impl EventId {
    fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

struct Channel {
    tx: broadcast::Sender<Arc<SseEvent>>,
    buffer: VecDeque<Arc<SseEvent>>,
    last: Option<EventId>,
    touched: Instant,
}

impl Channel {
    fn new() -> Self {
        Self {
            tx: broadcast::channel(FANOUT_CAPACITY).0,
            buffer: VecDeque::new(),
            last: None,
            touched: Instant::now(),
        }
    }
}

struct Inner {
    channels: Mutex<HashMap<String, Channel>>,
    redis: Option<RedisFanout>,
    buffer_size: usize,
    keepalive: Duration,
    retention: Duration,
    sweep_every: Duration,
    swept: Mutex<Instant>,
    /// Set when the server shuts down: open streams end so connections can close.
    closing: tokio::sync::watch::Sender<bool>,
}

/// Broadcasts events to SSE channels; cheap to clone, and an axum extractor.
#[derive(Clone)]
pub struct Broadcaster {
    inner: Arc<Inner>,
}

impl Broadcaster {
    /// The broadcaster the settings select: fan-out through Redis when `redis` (its URL and
    /// the process's shared connection) is given, else in-process.
    pub(crate) fn connect(
        redis: Option<&crate::redis_conn::Shared>,
        settings: &crate::config::JobsSettings,
        prefix: &str,
    ) -> anyhow::Result<Self> {
        let keepalive = Duration::from_secs(settings.sse_keepalive_secs);
        match redis {
            #[cfg(feature = "redis")]
            Some(redis) => Self::redis(
                &redis.url,
                redis.conn.clone(),
                prefix,
                settings.sse_buffer_size,
                keepalive,
            ),
            _ => {
                let _ = prefix;
                Ok(Self::local(settings.sse_buffer_size, keepalive))
            }
        }
    }

    /// In-process delivery and replay (no Redis).
    pub fn local(buffer_size: usize, keepalive: Duration) -> Self {
        Self::with(None, buffer_size, keepalive)
    }

    fn with(redis: Option<RedisFanout>, buffer_size: usize, keepalive: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                channels: Mutex::new(HashMap::new()),
                redis,
                buffer_size: buffer_size.max(1),
                keepalive,
                retention: REPLAY_RETENTION,
                sweep_every: SWEEP_INTERVAL,
                swept: Mutex::new(Instant::now()),
                closing: tokio::sync::watch::channel(false).0,
            }),
        }
    }

    /// Ends every open stream (the server is shutting down: clients reconnect to the next
    /// process and catch up through `Last-Event-ID`).
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// The keepalive interval of streams.
    pub fn keepalive(&self) -> Duration {
        self.inner.keepalive
    }

    /// Sends `data` as event `event` to every subscriber of `channel` (in every process with
    /// Redis); returns the event id. `event` is `message` for htmx to swap the data in.
    pub async fn broadcast(
        &self,
        channel: &str,
        event: &str,
        data: impl Into<String>,
    ) -> Result<String, crate::Error> {
        if !valid_channel(channel) {
            return Err(channel_error(channel));
        }
        if event.is_empty() || event.contains(['\n', '\r']) {
            return Err(crate::Error::bad_request(format!(
                "invalid SSE event name {event:?}: one non-empty line"
            )));
        }
        let data = data.into();
        match &self.inner.redis {
            Some(fanout) => {
                fanout
                    .publish(
                        channel,
                        event,
                        data,
                        self.inner.buffer_size,
                        self.inner.retention,
                    )
                    .await
            }
            None => {
                let mut channels = self.inner.channels.lock().expect("channels lock");
                self.inner.sweep(&mut channels);
                let ch = channels
                    .entry(channel.to_owned())
                    .or_insert_with(Channel::new);
                let now = crate::store::Timestamp::now().millis().max(0) as u64;
                let id = match ch.last {
                    Some(EventId(ms, seq)) if ms >= now => EventId(ms, seq + 1),
                    _ => EventId(now, 0),
                };
                let event = SseEvent {
                    id: format!("{}-{}", id.0, id.1),
                    event: event.to_owned(),
                    data,
                };
                let out = event.id.clone();
                self.inner.deliver(ch, id, event);
                Ok(out)
            }
        }
    }

    /// Subscribes to `channel`: the events after `last_event_id` (replay), then live ones.
    pub async fn subscribe(
        &self,
        channel: &str,
        last_event_id: Option<&str>,
    ) -> Result<impl Stream<Item = Arc<SseEvent>> + Send + 'static, crate::Error> {
        if !valid_channel(channel) {
            return Err(channel_error(channel));
        }
        if let Some(fanout) = &self.inner.redis {
            fanout.start_relay(&self.inner).await;
        }
        let after = last_event_id.and_then(EventId::parse);
        let (rx, mut replay) = {
            let mut channels = self.inner.channels.lock().expect("channels lock");
            self.inner.sweep(&mut channels);
            let ch = channels
                .entry(channel.to_owned())
                .or_insert_with(Channel::new);
            let replay: VecDeque<Arc<SseEvent>> = match after {
                Some(after) if self.inner.redis.is_none() => ch
                    .buffer
                    .iter()
                    .filter(|e| EventId::parse(&e.id).is_some_and(|id| id > after))
                    .cloned()
                    .collect(),
                _ => VecDeque::new(),
            };
            (ch.tx.subscribe(), replay)
        };
        if let (Some(fanout), Some(last)) =
            (&self.inner.redis, last_event_id.filter(|_| after.is_some()))
        {
            let missed = fanout
                .since(channel, last, self.inner.buffer_size)
                .await
                .map_err(|e| crate::Error::internal(format!("SSE replay from Redis: {e}")))?;
            replay.extend(missed.into_iter().map(Arc::new));
        }
        let high = replay.back().and_then(|e| EventId::parse(&e.id)).or(after);
        Ok(futures_util::stream::unfold(
            (replay, rx, high),
            |(mut replay, mut rx, mut high)| async move {
                if let Some(event) = replay.pop_front() {
                    return Some((event, (replay, rx, high)));
                }
                loop {
                    match rx.recv().await {
                        Ok(event) => {
                            let id = EventId::parse(&event.id);
                            if high.is_some() && id <= high {
                                continue;
                            }
                            high = id.or(high);
                            return Some((event, (replay, rx, high)));
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(
                                skipped = n,
                                "SSE subscriber too slow; closing its stream so it reconnects and replays"
                            );
                            return None;
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        ))
    }

    /// Subscribers connected to `channel` in this process.
    pub fn subscribers(&self, channel: &str) -> usize {
        self.inner
            .channels
            .lock()
            .expect("channels lock")
            .get(channel)
            .map_or(0, |c| c.tx.receiver_count())
    }
}

impl Inner {
    /// Forgets channels nobody follows (per-user channels would pile up otherwise), checked at
    /// most once a minute: with Redis, which keeps the replay buffers, all of them; in-process,
    /// once their last event is older than the retention.
    fn sweep(&self, channels: &mut HashMap<String, Channel>) {
        let local = self.redis.is_none();
        {
            let mut swept = self.swept.lock().expect("sweep lock");
            if swept.elapsed() < self.sweep_every {
                return;
            }
            *swept = Instant::now();
        }
        channels.retain(|_, c| {
            c.tx.receiver_count() > 0
                || (local && !c.buffer.is_empty() && c.touched.elapsed() < self.retention)
        });
    }

    /// Hands an event to the channel's subscribers unless it was already delivered.
    fn deliver(&self, ch: &mut Channel, id: EventId, event: SseEvent) {
        if ch.last.is_some_and(|last| id <= last) {
            return;
        }
        ch.last = Some(id);
        ch.touched = Instant::now();
        let event = Arc::new(event);
        if self.redis.is_none() {
            ch.buffer.push_back(event.clone());
            while ch.buffer.len() > self.buffer_size {
                ch.buffer.pop_front();
            }
        }
        let _ = ch.tx.send(event);
    }

    /// An event relayed from Redis: delivered when this process has the channel.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn relayed(&self, channel: &str, event: SseEvent) {
        let Some(id) = EventId::parse(&event.id) else {
            return;
        };
        let mut channels = self.channels.lock().expect("channels lock");
        match channels.get_mut(channel) {
            Some(ch) if ch.tx.receiver_count() == 0 => {
                channels.remove(channel);
            }
            Some(ch) => self.deliver(ch, id, event),
            None => {}
        }
    }

    /// After a reconnect: fetches what each known channel missed.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    async fn catch_up(&self) {
        let Some(fanout) = &self.redis else { return };
        let known: Vec<(String, EventId)> = self
            .channels
            .lock()
            .expect("channels lock")
            .iter()
            .filter_map(|(name, ch)| ch.last.map(|l| (name.clone(), l)))
            .collect();
        for (channel, last) in known {
            match fanout
                .since(
                    &channel,
                    &format!("{}-{}", last.0, last.1),
                    self.buffer_size,
                )
                .await
            {
                Ok(events) => {
                    for event in events {
                        self.relayed(&channel, event);
                    }
                }
                Err(e) => tracing::warn!(%channel, "cannot fetch missed SSE events: {e}"),
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Broadcaster {
    type Rejection = crate::Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(crate::AppContext::from_parts(parts)?.broadcaster().clone())
    }
}

/// Extractor for SSE endpoints: stream a channel or your own events.
pub struct Sse {
    broadcaster: Broadcaster,
    last_event_id: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Sse {
    type Rejection = crate::Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            broadcaster: Broadcaster::from_request_parts(parts, state).await?,
            last_event_id: parts
                .headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        })
    }
}

impl Sse {
    /// The `Last-Event-ID` the client sent when reconnecting.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Streams `channel` (400 with the reason when the name is invalid).
    pub async fn channel(self, channel: &str) -> Result<Response, crate::Error> {
        let keepalive = self.broadcaster.keepalive();
        let events = self
            .broadcaster
            .subscribe(channel, self.last_event_id.as_deref())
            .await?;
        Ok(respond(
            events.map(|e| e.to_axum()),
            keepalive,
            &self.broadcaster,
        ))
    }

    /// Streams events a handler produces itself (with keepalives and the SSE headers).
    pub fn stream(self, events: impl Stream<Item = SseEvent> + Send + 'static) -> Response {
        respond(
            events.map(|e| e.to_axum()),
            self.broadcaster.keepalive(),
            &self.broadcaster,
        )
    }
}

fn respond(
    events: impl Stream<Item = Event> + Send + 'static,
    keepalive: Duration,
    broadcaster: &Broadcaster,
) -> Response {
    let mut closing = broadcaster.inner.closing.subscribe();
    let closed = async move {
        let _ = closing.wait_for(|closing| *closing).await;
    };
    let events = events.take_until(closed).map(Ok::<_, Infallible>);
    let mut response = axum::response::Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keepalive).text("keepalive"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        assert!(valid_channel("notes"));
        assert!(valid_channel("room:42.a_b-c"));
        assert!(valid_channel(&"x".repeat(128)));
        assert!(!valid_channel(""));
        assert!(!valid_channel(&"x".repeat(129)));
        assert!(!valid_channel("a b"));
        assert!(!valid_channel("a/b"));
        assert!(!valid_channel("é"));
    }

    #[test]
    fn event_ids_order() {
        assert!(EventId::parse("5-1") > EventId::parse("5-0"));
        assert!(EventId::parse("6-0") > EventId::parse("5-9"));
        assert_eq!(EventId::parse("7"), Some(EventId(7, 0)));
        assert_eq!(EventId::parse("x"), None);
    }

    #[tokio::test]
    async fn local_replay_after_last_event_id() {
        let b = Broadcaster::local(2, Duration::from_secs(30));
        let first = b.broadcast("c", "message", "1").await.unwrap();
        b.broadcast("c", "message", "2").await.unwrap();
        b.broadcast("c", "message", "3").await.unwrap();
        assert_eq!(replay(&b, "c", &first, 2).await, ["2", "3"]);
    }

    /// The data of the first `n` events a subscriber resuming after `last` receives.
    async fn replay(b: &Broadcaster, channel: &str, last: &str, n: usize) -> Vec<String> {
        b.subscribe(channel, Some(last))
            .await
            .unwrap()
            .take(n)
            .map(|e| e.data.clone())
            .collect()
            .await
    }

    #[tokio::test]
    async fn idle_local_channels_are_forgotten_after_the_retention() {
        let mut b = Broadcaster::local(10, Duration::from_secs(30));
        let inner = Arc::get_mut(&mut b.inner).unwrap();
        inner.retention = Duration::from_secs(10);
        inner.sweep_every = Duration::ZERO;
        let followed = b.subscribe("followed", None).await.unwrap();
        for user in 0..1000 {
            b.broadcast(&format!("user:{user}"), "message", "hi")
                .await
                .unwrap();
        }
        {
            let mut channels = b.inner.channels.lock().unwrap();
            assert_eq!(channels.len(), 1001, "all kept within the retention");
            let long_ago = Instant::now()
                .checked_sub(Duration::from_secs(20))
                .expect("the machine has been up for 20 s");
            for channel in channels.values_mut() {
                channel.touched = long_ago;
            }
        }
        let first = b.broadcast("recent", "message", "1").await.unwrap();
        b.broadcast("recent", "message", "2").await.unwrap();
        let mut left: Vec<String> = b.inner.channels.lock().unwrap().keys().cloned().collect();
        left.sort();
        assert_eq!(
            left,
            ["followed", "recent"],
            "idle channels dropped; followed and recently used ones kept"
        );
        assert_eq!(
            replay(&b, "recent", &first, 1).await,
            ["2"],
            "a recent channel keeps its replay buffer"
        );
        drop(followed);
    }
}
