//! The [`Broadcaster`]: channels, their subscribers and replay buffers, the subscriber caps,
//! and delivery in this process; delivery across processes goes through a [`Fanout`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::Stream;
use tokio::sync::Notify;

use super::event::{Encoded, EventId, channel_error, valid_channel};
use crate::limits::{Counter, Full, Slot};

/// Most events queued for one subscriber; one further behind is disconnected and catches up
/// through `Last-Event-ID` when its browser reconnects.
const FANOUT_CAPACITY: usize = 1024;

/// How long a channel's replay buffer outlives its last event (in Redis and in-process).
const REPLAY_RETENTION: Duration = Duration::from_secs(86_400);

/// How often idle in-process channels are looked for (at most).
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Delivery across processes (the Redis fan-out, feature `redis`): the broadcaster publishes
/// through it, and it hands what other processes publish back to [`Inner::relayed`].
#[async_trait::async_trait]
pub(super) trait Fanout: Send + Sync {
    /// Appends the event to the channel's shared log and publishes it; returns its id.
    async fn publish(
        &self,
        channel: &str,
        event: &str,
        key: &str,
        data: &str,
        inner: &Inner,
    ) -> Result<String, crate::error::Error>;

    /// Starts relaying other processes' events to this one's subscribers (once).
    async fn start_relay(&self, inner: &Arc<Inner>);

    /// The channel's events after `after`, oldest first, bounded like the in-process replay.
    async fn since(
        &self,
        channel: &str,
        after: &str,
        inner: &Inner,
    ) -> Result<Vec<Arc<Encoded>>, crate::error::Error>;
}

/// Events kept for replay, bounded in count and bytes (the newest kept even when larger), an
/// event with a key replacing the earlier ones with that key.
#[derive(Default)]
struct Replay {
    events: VecDeque<Arc<Encoded>>,
    bytes: usize,
}

impl Replay {
    fn push(&mut self, event: Arc<Encoded>, max_events: usize, max_bytes: usize) {
        if let Some(key) = &event.key {
            let before = self.events.len();
            self.events.retain(|e| e.key.as_ref() != Some(key));
            if self.events.len() != before {
                self.bytes = self.events.iter().map(|e| e.wire.len()).sum();
            }
        }
        self.bytes += event.wire.len();
        self.events.push_back(event);
        while self.events.len() > max_events.max(1)
            || (self.bytes > max_bytes && self.events.len() > 1)
        {
            if let Some(old) = self.events.pop_front() {
                self.bytes -= old.wire.len();
            }
        }
    }
}

/// One subscriber's queue of live events.
struct Subscriber {
    queue: Mutex<Queue>,
    ready: Notify,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Arc<Encoded>>,
    bytes: usize,
    closed: bool,
}

impl Subscriber {
    /// Queues `event`; false when the subscriber is gone, or too far behind (then it is closed
    /// and its queue dropped).
    fn push(&self, event: &Arc<Encoded>, max_bytes: usize) -> bool {
        let mut queue = self.queue.lock().expect("subscriber lock");
        if queue.closed {
            return false;
        }
        let len = event.wire.len();
        if !queue.events.is_empty()
            && (queue.bytes + len > max_bytes || queue.events.len() >= FANOUT_CAPACITY)
        {
            tracing::warn!(
                queued = queue.events.len(),
                bytes = queue.bytes,
                "SSE subscriber too slow; closing its stream so it reconnects and replays"
            );
            *queue = Queue {
                closed: true,
                ..Queue::default()
            };
            self.ready.notify_one();
            return false;
        }
        queue.bytes += len;
        queue.events.push_back(event.clone());
        self.ready.notify_one();
        true
    }

    fn is_open(&self) -> bool {
        !self.queue.lock().expect("subscriber lock").closed
    }

    fn close(&self) {
        *self.queue.lock().expect("subscriber lock") = Queue {
            closed: true,
            ..Queue::default()
        };
    }

    /// The next queued event; `None` once closed.
    async fn next(&self) -> Option<Arc<Encoded>> {
        loop {
            {
                let mut queue = self.queue.lock().expect("subscriber lock");
                if let Some(event) = queue.events.pop_front() {
                    queue.bytes -= event.wire.len();
                    return Some(event);
                }
                if queue.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }
}

/// A subscription's stream state; unregisters the subscriber when dropped.
struct Subscription {
    replay: VecDeque<Arc<Encoded>>,
    subscriber: Arc<Subscriber>,
    high: Option<EventId>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.subscriber.close();
    }
}

struct Channel {
    subscribers: Vec<Arc<Subscriber>>,
    replay: Replay,
    last: Option<EventId>,
    touched: Instant,
    /// When a subscriber last followed it: replay is kept only for channels followed within
    /// the retention (a per-user channel nobody opened keeps none).
    followed_at: Option<Instant>,
}

impl Channel {
    fn new() -> Self {
        Self {
            subscribers: Vec::new(),
            replay: Replay::default(),
            last: None,
            touched: Instant::now(),
            followed_at: None,
        }
    }

    fn followed(&mut self) -> bool {
        self.subscribers.retain(|s| s.is_open());
        if self.subscribers.is_empty() {
            return false;
        }
        self.followed_at = Some(Instant::now());
        true
    }

    /// Followed now or within `retention`: worth keeping a replay for.
    fn followed_within(&self, retention: Duration) -> bool {
        !self.subscribers.is_empty() || self.followed_at.is_some_and(|t| t.elapsed() < retention)
    }
}

/// The bounds of a [`Broadcaster`].
#[derive(Debug, Clone)]
pub(crate) struct SseLimits {
    pub(crate) buffer_size: usize,
    pub(crate) buffer_bytes: usize,
    pub(crate) max_subscribers: usize,
    pub(crate) max_per_ip: usize,
    /// Bytes of replay kept across every channel; the least recently active channels lose
    /// theirs first.
    pub(crate) replay_budget: usize,
}

impl SseLimits {
    pub(super) fn from_settings(settings: &crate::config::JobsSettings) -> Self {
        Self {
            buffer_size: settings.sse_buffer_size,
            buffer_bytes: settings.sse_buffer_bytes,
            max_subscribers: settings.sse_max_subscribers,
            max_per_ip: settings.sse_max_subscribers_per_ip,
            replay_budget: settings.sse_replay_budget,
        }
    }
}

pub(super) struct Inner {
    channels: Mutex<HashMap<String, Channel>>,
    fanout: Option<Box<dyn Fanout>>,
    pub(super) limits: SseLimits,
    keepalive: Duration,
    pub(super) retention: Duration,
    sweep_every: Duration,
    swept: Mutex<Instant>,
    /// Bytes held in every channel's replay (in-process delivery), within
    /// `limits.replay_budget`; changed under the channels lock.
    replay_total: std::sync::atomic::AtomicUsize,
    /// Open streams, for the subscriber caps.
    open: Arc<Counter>,
    /// Set when the server shuts down: open streams end so connections can close.
    closing: tokio::sync::watch::Sender<bool>,
}

/// Broadcasts events to SSE channels; cheap to clone, and an axum extractor.
#[derive(Clone)]
pub struct Broadcaster {
    inner: Arc<Inner>,
}

impl Broadcaster {
    /// In-process delivery and replay (no Redis), keeping `buffer_size` events per channel and
    /// the other bounds at their defaults.
    pub fn local(buffer_size: usize, keepalive: Duration) -> Self {
        let defaults = crate::config::JobsSettings::from_source(&crate::config::Source::default())
            .expect("the defaults are valid");
        let limits = SseLimits {
            buffer_size,
            ..SseLimits::from_settings(&defaults)
        };
        Self::with(None, limits, keepalive)
    }

    pub(super) fn with(
        fanout: Option<Box<dyn Fanout>>,
        limits: SseLimits,
        keepalive: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                channels: Mutex::new(HashMap::new()),
                fanout,
                limits,
                keepalive,
                retention: REPLAY_RETENTION,
                sweep_every: SWEEP_INTERVAL,
                swept: Mutex::new(Instant::now()),
                replay_total: std::sync::atomic::AtomicUsize::new(0),
                open: Arc::new(Counter::default()),
                closing: tokio::sync::watch::channel(false).0,
            }),
        }
    }

    /// Ends every open stream (the server is shutting down: clients reconnect to the next
    /// process and catch up through `Last-Event-ID`).
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Changes to `true` when the server shuts down (open streams end).
    pub(super) fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.closing.subscribe()
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
    ) -> Result<String, crate::error::Error> {
        self.send(channel, "", event, data.into()).await
    }

    /// Like [`broadcast`](Self::broadcast), for an item with a key (such as `note:42`, same
    /// characters as a channel name): this event replaces the earlier events with that key in
    /// the replay, so broadcasting an item's deletion keeps the deleted item from being
    /// replayed to clients that reconnect.
    pub async fn broadcast_keyed(
        &self,
        channel: &str,
        key: &str,
        event: &str,
        data: impl Into<String>,
    ) -> Result<String, crate::error::Error> {
        if !valid_channel(key) {
            return Err(channel_error("event key", key));
        }
        self.send(channel, key, event, data.into()).await
    }

    async fn send(
        &self,
        channel: &str,
        key: &str,
        event: &str,
        data: String,
    ) -> Result<String, crate::error::Error> {
        if !valid_channel(channel) {
            return Err(channel_error("channel name", channel));
        }
        if event.is_empty() || event.contains(['\n', '\r']) {
            return Err(crate::error::Error::bad_request(format!(
                "invalid SSE event name {event:?}: one non-empty line"
            )));
        }
        if let Some(fanout) = &self.inner.fanout {
            match fanout
                .publish(channel, event, key, &data, &self.inner)
                .await
            {
                Ok(id) => return Ok(id),
                // Live updates degrade rather than fail the write that triggered them.
                Err(e) => tracing::warn!(
                    channel,
                    "Redis does not answer ({}): the event reaches this process's subscribers only",
                    e.detail()
                ),
            }
        }
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
        let id = format!("{}-{}", id.0, id.1);
        self.inner.deliver(ch, Encoded::new(&id, event, key, &data));
        self.inner.within_budget(&mut channels);
        Ok(id)
    }

    /// Subscribes to `channel`: the events after `last_event_id` (replay), then live ones.
    pub(super) async fn subscribe(
        &self,
        channel: &str,
        last_event_id: Option<&str>,
    ) -> Result<impl Stream<Item = Arc<Encoded>> + Send + 'static, crate::error::Error> {
        if !valid_channel(channel) {
            return Err(channel_error("channel name", channel));
        }
        if let Some(fanout) = &self.inner.fanout {
            fanout.start_relay(&self.inner).await;
        }
        let after = last_event_id.and_then(EventId::parse);
        let subscriber = Arc::new(Subscriber {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
        });
        let mut replay = {
            let mut channels = self.inner.channels.lock().expect("channels lock");
            self.inner.sweep(&mut channels);
            let ch = channels
                .entry(channel.to_owned())
                .or_insert_with(Channel::new);
            ch.subscribers.push(subscriber.clone());
            ch.followed_at = Some(Instant::now());
            match after {
                Some(after) if self.inner.fanout.is_none() => ch
                    .replay
                    .events
                    .iter()
                    .filter(|e| e.id.is_some_and(|id| id > after))
                    .cloned()
                    .collect(),
                _ => VecDeque::new(),
            }
        };
        // Made before the fetch below so the subscriber is unregistered if that fails.
        let mut subscription = Subscription {
            replay: VecDeque::new(),
            subscriber,
            high: None,
        };
        if let (Some(fanout), Some(last)) = (
            &self.inner.fanout,
            last_event_id.filter(|_| after.is_some()),
        ) {
            let missed = fanout.since(channel, last, &self.inner).await?;
            replay.extend(missed);
        }
        subscription.high = replay.back().and_then(|e| e.id).or(after);
        subscription.replay = replay;
        Ok(futures_util::stream::unfold(
            subscription,
            |mut s| async move {
                if let Some(event) = s.replay.pop_front() {
                    return Some((event, s));
                }
                loop {
                    let event = s.subscriber.next().await?;
                    if s.high.is_some() && event.id <= s.high {
                        continue;
                    }
                    s.high = event.id.or(s.high);
                    return Some((event, s));
                }
            },
        ))
    }

    /// The wire form of the events a subscriber to `channel` resuming after `last_event_id`
    /// is sent before any new one (the replay), for the fuzz target.
    #[cfg(feature = "fuzzing")]
    pub(crate) async fn replayed(
        &self,
        channel: &str,
        last_event_id: &str,
    ) -> Result<Vec<axum::body::Bytes>, crate::error::Error> {
        use futures_util::{FutureExt, StreamExt};
        let mut events = Box::pin(self.subscribe(channel, Some(last_event_id)).await?);
        let mut wire = Vec::new();
        while let Some(Some(event)) = events.next().now_or_never() {
            wire.push(event.wire.clone());
        }
        Ok(wire)
    }

    /// Subscribers connected to `channel` in this process.
    pub fn subscribers(&self, channel: &str) -> usize {
        self.inner
            .channels
            .lock()
            .expect("channels lock")
            .get(channel)
            .map_or(0, |c| c.subscribers.iter().filter(|s| s.is_open()).count())
    }

    /// Counts one more open stream from `client`, or the 503 that says which cap is reached.
    pub(super) fn admit(&self, client: IpAddr) -> Result<Slot, crate::error::Error> {
        let limits = &self.inner.limits;
        self.inner
            .open
            .acquire(Some(client), limits.max_subscribers, limits.max_per_ip)
            .map_err(|full| {
                crate::error::Error::unavailable(match full {
                    Full::Total => {
                        "Too many live update streams on this server (SSE_MAX_SUBSCRIBERS); try again later"
                    }
                    Full::PerIp => {
                        "Too many live update streams from your address (SSE_MAX_SUBSCRIBERS_PER_IP); close some tabs"
                    }
                })
            })
    }
}

impl Inner {
    /// Forgets channels nobody follows (per-user channels would pile up otherwise), checked at
    /// most once a minute: with Redis, which keeps the replay buffers, all of them; in-process,
    /// once their last event is older than the retention.
    fn sweep(&self, channels: &mut HashMap<String, Channel>) {
        let local = self.fanout.is_none();
        {
            let mut swept = self.swept.lock().expect("sweep lock");
            if swept.elapsed() < self.sweep_every {
                return;
            }
            *swept = Instant::now();
        }
        channels.retain(|_, c| {
            // In-process, a channel followed lately is kept (with its replay, or waiting
            // for its first event) until it has been quiet for the retention.
            let keep = c.followed()
                || (local
                    && c.touched.elapsed() < self.retention
                    && (!c.replay.events.is_empty() || c.followed_within(self.retention)));
            if !keep {
                self.forget_replay(c);
            }
            keep
        });
    }

    /// Drops a channel's replay from the books.
    fn forget_replay(&self, ch: &mut Channel) {
        let bytes = std::mem::take(&mut ch.replay).bytes;
        self.replay_total.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Keeps the replay of every channel within the budget: the least recently active
    /// channels lose theirs first (their clients, reconnecting, miss what they missed, as
    /// after a restart).
    fn within_budget(&self, channels: &mut HashMap<String, Channel>) {
        while self.replay_total.load(Ordering::Relaxed) > self.limits.replay_budget {
            let Some(oldest) = channels
                .values_mut()
                .filter(|c| c.replay.bytes > 0)
                .min_by_key(|c| c.touched)
            else {
                return;
            };
            self.forget_replay(oldest);
        }
    }

    /// Hands an event to the channel's subscribers unless it was already delivered (keeping it
    /// for replay when there is no Redis).
    fn deliver(&self, ch: &mut Channel, event: Arc<Encoded>) {
        let Some(id) = event.id else { return };
        if ch.last.is_some_and(|last| id <= last) {
            return;
        }
        ch.last = Some(id);
        ch.touched = Instant::now();
        if self.fanout.is_none() && ch.followed_within(self.retention) {
            let before = ch.replay.bytes;
            ch.replay.push(
                event.clone(),
                self.limits.buffer_size,
                self.limits.buffer_bytes,
            );
            self.replay_total
                .fetch_add(ch.replay.bytes, Ordering::Relaxed);
            self.replay_total.fetch_sub(before, Ordering::Relaxed);
        }
        let max_bytes = self.limits.buffer_bytes;
        ch.subscribers.retain(|s| s.push(&event, max_bytes));
    }

    /// An event relayed from Redis: delivered when this process has the channel.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn relayed(&self, channel: &str, event: Arc<Encoded>) {
        let mut channels = self.channels.lock().expect("channels lock");
        let Some(ch) = channels.get_mut(channel) else {
            return;
        };
        if ch.followed() {
            self.deliver(ch, event);
        } else {
            channels.remove(channel);
        }
    }

    /// Bounds events fetched for a replay like the in-process buffer (count, bytes, keys).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn bounded(
        &self,
        events: impl IntoIterator<Item = Arc<Encoded>>,
    ) -> Vec<Arc<Encoded>> {
        let mut replay = Replay::default();
        for event in events {
            replay.push(event, self.limits.buffer_size, self.limits.buffer_bytes);
        }
        replay.events.into()
    }

    /// After a reconnect: fetches what each known channel missed.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) async fn catch_up(&self) {
        let Some(fanout) = &self.fanout else { return };
        let known: Vec<(String, EventId)> = self
            .channels
            .lock()
            .expect("channels lock")
            .iter()
            .filter_map(|(name, ch)| ch.last.map(|l| (name.clone(), l)))
            .collect();
        for (channel, last) in known {
            match fanout
                .since(&channel, &format!("{}-{}", last.0, last.1), self)
                .await
            {
                Ok(events) => {
                    for event in events {
                        self.relayed(&channel, event);
                    }
                }
                Err(e) => {
                    tracing::warn!(%channel, "cannot fetch missed SSE events: {}", e.detail())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn local_replay_after_last_event_id() {
        let b = Broadcaster::local(2, Duration::from_secs(30));
        follow(&b, "c").await;
        let first = b.broadcast("c", "message", "1").await.unwrap();
        b.broadcast("c", "message", "2").await.unwrap();
        b.broadcast("c", "message", "3").await.unwrap();
        assert_eq!(replay(&b, "c", &first, 2).await, ["2", "3"]);
    }

    /// A subscriber comes and goes: the channel keeps a replay from now on.
    async fn follow(b: &Broadcaster, channel: &str) {
        drop(b.subscribe(channel, None).await.unwrap());
    }

    #[tokio::test]
    async fn a_channel_nobody_followed_keeps_no_replay() {
        let b = bounded(100, 1 << 20);
        b.broadcast("user:1", "message", "x".repeat(1000))
            .await
            .unwrap();
        assert_eq!(b.inner.replay_total.load(Ordering::Relaxed), 0);
        follow(&b, "user:1").await;
        b.broadcast("user:1", "message", "y").await.unwrap();
        assert!(b.inner.replay_total.load(Ordering::Relaxed) > 0);
    }

    #[tokio::test]
    async fn the_replay_budget_drops_the_least_recently_active_channels_first() {
        let b = Broadcaster::with(
            None,
            SseLimits {
                buffer_size: 100,
                buffer_bytes: 1 << 20,
                max_subscribers: 10,
                max_per_ip: 10,
                replay_budget: 3000,
            },
            Duration::from_secs(30),
        );
        for channel in ["a", "b", "c", "d"] {
            follow(&b, channel).await;
            b.broadcast(channel, "message", "x".repeat(1000))
                .await
                .unwrap();
        }
        let total = b.inner.replay_total.load(Ordering::Relaxed);
        assert!(total <= 3000, "{total}");
        let channels = b.inner.channels.lock().unwrap();
        let kept: Vec<&str> = ["a", "b", "c", "d"]
            .into_iter()
            .filter(|c| channels[*c].replay.bytes > 0)
            .collect();
        assert_eq!(kept, ["c", "d"], "the oldest went first");
        let sum: usize = channels.values().map(|c| c.replay.bytes).sum();
        assert_eq!(sum, total, "the books match the replays");
    }

    /// The data of the first `n` events a subscriber resuming after `last` receives.
    async fn replay(b: &Broadcaster, channel: &str, last: &str, n: usize) -> Vec<String> {
        b.subscribe(channel, Some(last))
            .await
            .unwrap()
            .take(n)
            .map(|e| data(&e))
            .collect()
            .await
    }

    /// The data of an encoded event (one line).
    fn data(event: &Encoded) -> String {
        let text = std::str::from_utf8(&event.wire).unwrap();
        text.strip_prefix("data: ")
            .and_then(|t| t.split_once('\n'))
            .map(|(d, _)| d.to_owned())
            .unwrap()
    }

    fn bounded(buffer_size: usize, buffer_bytes: usize) -> Broadcaster {
        Broadcaster::with(
            None,
            SseLimits {
                buffer_size,
                buffer_bytes,
                max_subscribers: 10,
                max_per_ip: 10,
                replay_budget: usize::MAX,
            },
            Duration::from_secs(30),
        )
    }

    #[tokio::test]
    async fn replay_is_bounded_in_bytes_keeping_the_newest() {
        // Each event's wire form is about 30 bytes: 100 bytes hold three.
        let b = bounded(100, 100);
        follow(&b, "c").await;
        let first = b.broadcast("c", "message", "1").await.unwrap();
        for n in 2..=5 {
            b.broadcast("c", "message", n.to_string()).await.unwrap();
        }
        let kept = {
            let channels = b.inner.channels.lock().unwrap();
            let replay = &channels["c"].replay;
            assert!(replay.bytes <= 100, "{}", replay.bytes);
            replay.events.len()
        };
        assert!((1..5).contains(&kept), "{kept}");
        let newest: Vec<String> = (6 - kept..=5).map(|n| n.to_string()).collect();
        assert_eq!(replay(&b, "c", &first, kept).await, newest);
        b.broadcast("c", "message", "x".repeat(1000)).await.unwrap();
        let channels = b.inner.channels.lock().unwrap();
        let kept = &channels["c"].replay;
        assert_eq!(
            kept.events.len(),
            1,
            "only the newest, larger than the bound"
        );
        assert_eq!(kept.bytes, kept.events[0].wire.len());
    }

    #[tokio::test]
    async fn a_keyed_event_replaces_earlier_ones_with_its_key_in_the_replay() {
        let b = bounded(100, 1 << 20);
        follow(&b, "c").await;
        b.broadcast_keyed("c", "note:1", "message", "created 1")
            .await
            .unwrap();
        b.broadcast_keyed("c", "note:2", "message", "created 2")
            .await
            .unwrap();
        b.broadcast_keyed("c", "note:1", "message", "deleted 1")
            .await
            .unwrap();
        b.broadcast("c", "message", "unkeyed").await.unwrap();
        assert_eq!(
            replay(&b, "c", "0", 3).await,
            ["created 2", "deleted 1", "unkeyed"]
        );
        assert!(b.broadcast_keyed("c", "a b", "message", "").await.is_err());
    }

    #[tokio::test]
    async fn subscribers_share_one_copy_of_each_event() {
        let b = bounded(100, 1 << 20);
        let mut one = Box::pin(b.subscribe("c", None).await.unwrap());
        let mut two = Box::pin(b.subscribe("c", None).await.unwrap());
        b.broadcast("c", "message", "x".repeat(10_000))
            .await
            .unwrap();
        let (a, c) = (one.next().await.unwrap(), two.next().await.unwrap());
        assert_eq!(a.wire.as_ptr(), c.wire.as_ptr(), "the same bytes");
        let mut late = Box::pin(b.subscribe("c", Some("0")).await.unwrap());
        assert_eq!(late.next().await.unwrap().wire.as_ptr(), a.wire.as_ptr());
    }

    #[tokio::test]
    async fn a_subscriber_too_far_behind_is_disconnected() {
        let b = bounded(100, 1000);
        let mut slow = Box::pin(b.subscribe("c", None).await.unwrap());
        let mut fast = Box::pin(b.subscribe("c", None).await.unwrap());
        for n in 0..50 {
            b.broadcast("c", "message", format!("{n:>40}"))
                .await
                .unwrap();
            assert!(fast.next().await.is_some());
        }
        assert!(
            slow.next().await.is_none(),
            "its queue was dropped and its stream ends"
        );
        assert_eq!(b.subscribers("c"), 1, "the fast one stays");
        b.broadcast("c", "message", "still").await.unwrap();
        assert_eq!(data(&fast.next().await.unwrap()), "still");
    }

    #[test]
    fn the_subscriber_caps_answer_503_with_the_setting() {
        let b = Broadcaster::with(
            None,
            SseLimits {
                buffer_size: 1,
                buffer_bytes: 1,
                max_subscribers: 2,
                max_per_ip: 1,
                replay_budget: usize::MAX,
            },
            Duration::from_secs(30),
        );
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let held = b.admit(one).unwrap();
        let err = b.admit(one).err().unwrap();
        assert_eq!(err.status(), 503);
        assert!(
            err.detail().contains("SSE_MAX_SUBSCRIBERS_PER_IP"),
            "{err:?}"
        );
        let _other = b.admit("10.0.0.2".parse().unwrap()).unwrap();
        let err = b.admit("10.0.0.3".parse().unwrap()).err().unwrap();
        assert!(err.detail().contains("SSE_MAX_SUBSCRIBERS)"), "{err:?}");
        drop(held);
        assert!(b.admit(one).is_ok());
    }

    #[tokio::test]
    async fn idle_local_channels_are_forgotten_after_the_retention() {
        let mut b = Broadcaster::local(10, Duration::from_secs(30));
        let inner = Arc::get_mut(&mut b.inner).unwrap();
        inner.retention = Duration::from_secs(10);
        inner.sweep_every = Duration::ZERO;
        let followed = b.subscribe("followed", None).await.unwrap();
        for user in 0..1000 {
            // Each page open once, then closed: the channel keeps a replay.
            follow(&b, &format!("user:{user}")).await;
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
        follow(&b, "recent").await;
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
