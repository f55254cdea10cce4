//! SSE fan-out through Redis (feature `redis`): each channel is a capped Redis stream (ids and
//! the shared replay buffer) plus a pub/sub message per event, relayed by each process to its
//! own subscribers.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use super::{Broadcaster, Inner, SseEvent};

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
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2], 'd', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', KEYS[2], id .. '\n' .. ARGV[2] .. '\n' .. ARGV[3])
return id
";

impl RedisFanout {
    fn stream_key(&self, channel: &str) -> String {
        format!("{}sse:stream:{channel}", self.prefix)
    }

    fn pubsub_channel(&self, channel: &str) -> String {
        format!("{}sse:{channel}", self.prefix)
    }

    /// Events of `channel` after `after`, oldest first.
    pub(super) async fn since(
        &self,
        channel: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<SseEvent>, redis::RedisError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.stream_key(channel))
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|entry| SseEvent {
                event: entry.get("e").unwrap_or_default(),
                data: entry.get("d").unwrap_or_default(),
                id: entry.id,
            })
            .collect())
    }

    /// Appends the event to the channel's stream and publishes it; returns its id.
    pub(super) async fn publish(
        &self,
        channel: &str,
        event: &str,
        data: String,
        buffer_size: usize,
        retention: Duration,
    ) -> Result<String, crate::Error> {
        let mut conn = self.conn.clone();
        let id: String = self
            .publish
            .key(self.stream_key(channel))
            .key(self.pubsub_channel(channel))
            .arg(buffer_size)
            .arg(event)
            .arg(data)
            .arg(retention.as_secs().max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| crate::Error::internal(format!("SSE broadcast to Redis: {e}")))?;
        Ok(id)
    }

    /// Starts the relay from Redis to this process's subscribers, subscribed before it returns
    /// when Redis answers within the connect timeout (otherwise it keeps trying, and says so).
    pub(super) async fn start_relay(&self, inner: &Arc<Inner>) {
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
    pub fn redis(
        url: &str,
        conn: redis::aio::ConnectionManager,
        prefix: &str,
        buffer_size: usize,
        keepalive: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self::with(
            Some(RedisFanout {
                conn,
                prefix: prefix.to_owned(),
                publish: redis::Script::new(PUBLISH),
                client: crate::redis_conn::client(url)?,
                url: url.to_owned(),
                relay: tokio::sync::OnceCell::new(),
            }),
            buffer_size,
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
                let mut parts = payload.splitn(3, '\n');
                if let (Some(id), Some(event), Some(data)) =
                    (parts.next(), parts.next(), parts.next())
                {
                    inner.relayed(
                        channel,
                        SseEvent {
                            id: id.to_owned(),
                            event: event.to_owned(),
                            data: data.to_owned(),
                        },
                    );
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
