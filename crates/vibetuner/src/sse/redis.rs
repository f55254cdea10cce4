//! SSE fan-out through Redis (feature `redis`): each channel is a capped Redis stream (ids and
//! the shared replay buffer) plus a pub/sub message per event, relayed by each process to its
//! own subscribers.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use super::broadcaster::{Broadcaster, Fanout, Inner, SseLimits};
use super::event::Encoded;

pub(super) struct RedisFanout {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    publish: redis::Script,
    /// For the relay's own subscriber connection.
    client: redis::Client,
    url: String,
    /// Started by the first subscriber: processes that only broadcast (workers, commands)
    /// neither wait for a subscription nor receive every event.
    relay: tokio::sync::OnceCell<()>,
}

/// Appends the event to the channel's capped stream, publishes it, returns its id.
const PUBLISH: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'e', ARGV[2], 'k', ARGV[3], 'd', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', KEYS[2], id .. '\n' .. ARGV[2] .. '\n' .. ARGV[3] .. '\n' .. ARGV[4])
return id
";

impl RedisFanout {
    fn stream_key(&self, channel: &str) -> String {
        format!("{}sse:stream:{channel}", self.prefix)
    }

    fn pubsub_channel(&self, channel: &str) -> String {
        format!("{}sse:{channel}", self.prefix)
    }
}

#[async_trait::async_trait]
impl Fanout for RedisFanout {
    /// Events of `channel` after `after`, oldest first, bounded like the in-process replay.
    async fn since(
        &self,
        channel: &str,
        after: &str,
        inner: &Inner,
    ) -> Result<Vec<Arc<Encoded>>, crate::error::Error> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.stream_key(channel))
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(inner.limits.buffer_size)
            .query_async(&mut conn)
            .await
            .map_err(|e| crate::error::Error::internal(format!("SSE replay from Redis: {e}")))?;
        Ok(inner.bounded(reply.ids.into_iter().map(|entry| {
            let field = |name: &str| entry.get::<String>(name).unwrap_or_default();
            Encoded::new(&entry.id, &field("e"), &field("k"), &field("d"))
        })))
    }

    /// Appends the event to the channel's stream and publishes it; returns its id.
    async fn publish(
        &self,
        channel: &str,
        event: &str,
        key: &str,
        data: &str,
        inner: &Inner,
    ) -> Result<String, crate::error::Error> {
        let mut conn = self.conn.clone();
        let id: String = self
            .publish
            .key(self.stream_key(channel))
            .key(self.pubsub_channel(channel))
            .arg(stream_cap(inner, event, key, data))
            .arg(event)
            .arg(key)
            .arg(data)
            .arg(inner.retention.as_secs().max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| crate::error::Error::internal(format!("SSE broadcast to Redis: {e}")))?;
        Ok(id)
    }

    /// Starts the relay from Redis to this process's subscribers, subscribed before it returns
    /// when Redis answers within the connect timeout (otherwise it keeps trying, and says so).
    async fn start_relay(&self, inner: &Arc<Inner>) {
        let fanout = self;
        fanout
            .relay
            .get_or_init(|| async {
                let pattern = format!("{}sse:*", fanout.prefix);
                let first = match tokio::time::timeout(
                    crate::redis_conn::CONNECT_TIMEOUT,
                    subscribe(&fanout.client, &pattern),
                )
                .await
                {
                    Ok(Ok(pubsub)) => Some(pubsub),
                    Ok(Err(e)) => {
                        tracing::warn!(
                            "{}; SSE fan-out waits for it",
                            crate::redis_conn::unreachable_error(&fanout.url, &e)
                        );
                        None
                    }
                    Err(_) => {
                        tracing::warn!(
                            "Redis at {} did not answer in time; SSE fan-out waits for it",
                            crate::health::redact(&fanout.url)
                        );
                        None
                    }
                };
                let weak = Arc::downgrade(inner);
                tokio::spawn(relay(weak, fanout.client.clone(), pattern, first));
            })
            .await;
    }
}

impl Broadcaster {
    /// Fan-out through Redis at `url` (commands on the shared `conn`, a subscriber connection of
    /// its own), keys under `prefix`. Subscribes before returning when
    /// Redis answers within the connect timeout; otherwise the relay keeps trying in the
    /// background (and logs it).
    pub(crate) fn redis(
        url: &str,
        conn: redis::aio::ConnectionManager,
        prefix: &str,
        limits: SseLimits,
        keepalive: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self::with(
            Some(Box::new(RedisFanout {
                conn,
                prefix: prefix.to_owned(),
                publish: redis::Script::new(PUBLISH),
                client: crate::redis_conn::client(url)?,
                url: url.to_owned(),
                relay: tokio::sync::OnceCell::new(),
            })),
            limits,
            keepalive,
        ))
    }
}

async fn subscribe(
    client: &redis::Client,
    pattern: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe(pattern).await?;
    Ok(pubsub)
}

/// Relays published events to this process's subscribers; reconnects with backoff.
async fn relay(
    inner: Weak<Inner>,
    client: redis::Client,
    pattern: String,
    first: Option<redis::aio::PubSub>,
) {
    let mut pubsub = first;
    let mut backoff = Duration::from_secs(1);
    let prefix_len = pattern.len() - 1;
    loop {
        if let Some(mut ps) = pubsub.take() {
            let mut messages = ps.on_message();
            while let Some(msg) = messages.next().await {
                let Some(inner) = inner.upgrade() else { return };
                let name = msg.get_channel_name();
                let Some(channel) = name.get(prefix_len..) else {
                    continue;
                };
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                let mut parts = payload.splitn(4, '\n');
                if let (Some(id), Some(event), Some(key), Some(data)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                {
                    inner.relayed(channel, Encoded::new(id, event, key, data));
                }
            }
            tracing::warn!(
                "SSE relay lost its Redis subscription; reconnecting in {}s",
                backoff.as_secs()
            );
        }
        if inner.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
        match subscribe(&client, &pattern).await {
            Ok(ps) => {
                tracing::info!("SSE relay reconnected to Redis; fetching missed events");
                backoff = Duration::from_secs(1);
                pubsub = Some(ps);
                if let Some(inner) = inner.upgrade() {
                    inner.catch_up().await;
                }
            }
            Err(e) => tracing::warn!(
                "SSE relay cannot reach Redis ({e}); retrying in {}s",
                backoff.as_secs()
            ),
        }
    }
}

/// How many events a channel's stream keeps once this one is added: `SSE_BUFFER_SIZE`, fewer
/// when events this size would exceed `SSE_BUFFER_BYTES` (never fewer than one), so a stream
/// of large events is capped in bytes too.
fn stream_cap(inner: &Inner, event: &str, key: &str, data: &str) -> usize {
    let size = data.len() + event.len() + key.len() + 64;
    (inner.limits.buffer_bytes / size).clamp(1, inner.limits.buffer_size.max(1))
}
