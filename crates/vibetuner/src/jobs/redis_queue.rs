//! The Redis queue: a stream read by a consumer group (`XREADGROUP`), a sorted set of delayed
//! runs promoted into the stream when due, `XAUTOCLAIM` to take over runs whose worker stopped
//! renewing them (the visibility timeout), and acknowledgements batched into pipelines.
//!
//! A task enqueued while Redis does not answer is not lost and does not fail the request: it
//! waits in the store's queue (the fallback) and a relay in every process moves it to Redis
//! when Redis answers again, once (a marker key set with the push makes a repeated relay of the
//! same task a no-op).

use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tokio::sync::{OnceCell, mpsc};

use super::message::{Delivery, Envelope, JobError, QueueDepth};
use super::queue::QueueBackend;
use super::store_queue::StoreQueue;

/// Longest `XREADGROUP BLOCK`; the fetching connection's response timeout is longer.
use super::message::{FETCH_BLOCK, now_ms};

const GROUP: &str = "workers";

/// Moves due runs from the delayed set into the stream; returns how many, and the next due
/// time (ms) or -1.
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'd', m)
  redis.call('ZREM', KEYS[1], m)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if next[2] then return {#due, tonumber(next[2])} end
return {#due, -1}
";

/// Claims a cron fire time and enqueues its run in one step, so a worker dying in between cannot
/// lose the fire; returns 1 for the one caller that fired it, 0 for the others.
const FIRE_CRON: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', 86400) then
  redis.call('XADD', KEYS[2], '*', 'd', ARGV[2])
  return 1
end
return 0
";

/// Pushes a relayed run unless a marker says it was relayed already; 1 when pushed.
const PUSH_ONCE: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', 86400) then
  redis.call('XADD', KEYS[2], '*', 'd', ARGV[1])
  return 1
end
return 0
";

/// How often the relay looks for runs waiting in the store.
const RELAY_EVERY: Duration = Duration::from_secs(2);

pub(crate) struct RedisQueue {
    url: String,
    conn: ConnectionManager,
    fetch_conn: OnceCell<ConnectionManager>,
    stream: String,
    delayed: String,
    cron_prefix: String,
    visibility: Duration,
    promote: redis::Script,
    fire_cron: redis::Script,
    push_once: redis::Script,
    relayed_prefix: String,
    /// The workers' heartbeats (see [`newest_beat`]).
    workers: String,
    /// Where runs wait while Redis does not answer.
    fallback: StoreQueue,
    maintenance: Mutex<Maintenance>,
    acks: Mutex<Option<mpsc::UnboundedSender<String>>>,
    acker: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Maintenance {
    last_claim: Option<Instant>,
    last_promote: Option<Instant>,
    /// Earliest known due time of a delayed run (ms), -1 when none is known. Other processes
    /// add delayed runs too, so the set is also checked every [`PROMOTE_EVERY`].
    next_due_ms: i64,
}

/// Longest time between two checks of the delayed set.
const PROMOTE_EVERY: Duration = Duration::from_millis(500);

impl RedisQueue {
    /// The queue on `conn` (shared, for ordinary commands); blocking reads get their own
    /// connection to `url`, opened on first fetch.
    pub(crate) fn new(
        url: &str,
        conn: ConnectionManager,
        prefix: &str,
        visibility: Duration,
        fallback: StoreQueue,
    ) -> Self {
        Self {
            url: url.to_owned(),
            conn,
            fetch_conn: OnceCell::new(),
            stream: format!("{prefix}jobs:stream"),
            delayed: format!("{prefix}jobs:delayed"),
            cron_prefix: format!("{prefix}jobs:cron:"),
            visibility,
            promote: redis::Script::new(PROMOTE),
            fire_cron: redis::Script::new(FIRE_CRON),
            push_once: redis::Script::new(PUSH_ONCE),
            relayed_prefix: format!("{prefix}jobs:relayed:"),
            workers: workers_key(prefix),
            fallback,
            maintenance: Mutex::new(Maintenance {
                last_claim: None,
                last_promote: None,
                next_due_ms: -1,
            }),
            acks: Mutex::new(None),
            acker: tokio::sync::Mutex::new(None),
        }
    }

    async fn push_to_redis(
        &self,
        envelope: &Envelope,
        delay: Option<Duration>,
    ) -> Result<(), JobError> {
        let data = serde_json::to_string(envelope).expect("envelopes serialize");
        let mut conn = self.conn.clone();
        match delay.filter(|d| !d.is_zero()) {
            None => {
                let _: String = redis::cmd("XADD")
                    .arg(&self.stream)
                    .arg("*")
                    .arg("d")
                    .arg(data)
                    .query_async(&mut conn)
                    .await?;
            }
            Some(delay) => {
                let due = now_ms() + delay.as_millis() as i64;
                let _: i64 = redis::cmd("ZADD")
                    .arg(&self.delayed)
                    .arg(due)
                    .arg(data)
                    .query_async(&mut conn)
                    .await?;
                self.note_due(due);
            }
        }
        Ok(())
    }

    /// Moves the runs waiting in the store to Redis; returns how many moved. Stops at the first
    /// push Redis refuses, leaving that run and the rest for the next round.
    pub(crate) async fn relay_fallback(&self) -> Result<usize, JobError> {
        let waiting = self.fallback.fetch("relay", 100, Duration::ZERO).await?;
        let mut moved = 0;
        for delivery in &waiting {
            let mut envelope = delivery.envelope.clone();
            // Taking a run over counts a try; a relay that died is not a failed run.
            if delivery.reclaimed {
                envelope.tries = envelope.tries.saturating_sub(1);
            }
            let data = serde_json::to_string(&envelope).expect("envelopes serialize");
            let mut conn = self.conn.clone();
            let pushed: Result<i64, redis::RedisError> = self
                .push_once
                .key(format!("{}{}", self.relayed_prefix, envelope.id))
                .key(&self.stream)
                .arg(data)
                .invoke_async(&mut conn)
                .await;
            match pushed {
                Ok(_) => {
                    self.fallback.complete(&delivery.receipt).await?;
                    moved += 1;
                }
                Err(e) => {
                    for left in waiting.iter().skip(moved) {
                        self.fallback.release(left).await?;
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(moved)
    }

    /// Relays runs waiting in the store every [`RELAY_EVERY`] for as long as the queue lives.
    pub(crate) fn spawn_relay(queue: Weak<Self>) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELAY_EVERY).await;
                let Some(queue) = queue.upgrade() else {
                    return;
                };
                match queue.relay_fallback().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("moved {n} task(s) that waited in the store to Redis"),
                    Err(e) => tracing::debug!("tasks wait in the store: {e}"),
                }
            }
        });
    }

    async fn fetch_connection(&self) -> Result<ConnectionManager, JobError> {
        let conn = self
            .fetch_conn
            .get_or_try_init(|| async {
                let conn = crate::redis_conn::connect(&self.url, FETCH_BLOCK).map_err(|e| {
                    redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "cannot open the worker's fetch connection",
                        e.to_string(),
                    ))
                })?;
                let mut c = conn.clone();
                let created: redis::RedisResult<String> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&self.stream)
                    .arg(GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut c)
                    .await;
                match created {
                    Err(e) if e.code() != Some("BUSYGROUP") => return Err(JobError::Redis(e)),
                    _ => {}
                }
                self.start_acker();
                Ok::<_, JobError>(conn)
            })
            .await?;
        Ok(conn.clone())
    }

    fn deliveries(&self, ids: Vec<StreamId>, reclaimed: bool) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(ids.len());
        for entry in ids {
            let parsed = entry
                .get::<String>("d")
                .and_then(|d| serde_json::from_str::<Envelope>(&d).ok());
            match parsed {
                Some(envelope) => out.push(Delivery {
                    envelope,
                    receipt: entry.id,
                    reclaimed,
                }),
                None => {
                    tracing::error!(id = %entry.id, stream = %self.stream, "dropping an unreadable queue entry");
                    self.ack(entry.id);
                }
            }
        }
        out
    }

    fn start_acker(&self) {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        *self.acks.lock().expect("acks lock") = Some(tx);
        let mut conn = self.conn.clone();
        let stream = self.stream.clone();
        let handle = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut ids = vec![first];
                while ids.len() < 1000 {
                    match rx.try_recv() {
                        Ok(id) => ids.push(id),
                        Err(_) => break,
                    }
                }
                let result: redis::RedisResult<()> = redis::pipe()
                    .cmd("XACK")
                    .arg(&stream)
                    .arg(GROUP)
                    .arg(&ids)
                    .ignore()
                    .cmd("XDEL")
                    .arg(&stream)
                    .arg(&ids)
                    .ignore()
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = result {
                    tracing::warn!(
                        count = ids.len(),
                        "cannot acknowledge finished tasks ({e}); they will run again after the visibility timeout"
                    );
                }
            }
        });
        if let Ok(mut acker) = self.acker.try_lock() {
            *acker = Some(handle);
        }
    }

    fn ack(&self, receipt: String) {
        if let Some(tx) = &*self.acks.lock().expect("acks lock") {
            let _ = tx.send(receipt);
        }
    }

    fn note_due(&self, due: i64) {
        let mut m = self.maintenance.lock().expect("maintenance lock");
        if m.next_due_ms == -1 || due < m.next_due_ms {
            m.next_due_ms = due;
        }
    }
}

#[async_trait::async_trait]
impl QueueBackend for RedisQueue {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn health_checks(&self) -> Vec<crate::health::ServiceCheck> {
        let conn = self.conn.clone();
        vec![crate::health::ServiceCheck::new("redis", move || {
            let mut conn = conn.clone();
            async move { crate::redis_conn::ping(&mut conn).await }
        })]
    }

    /// A sorted set of worker ids scored by their last beat (entries a day old are dropped).
    async fn beat(&self, id: &str) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let now = now_ms();
        let () = redis::pipe()
            .cmd("ZADD")
            .arg(&self.workers)
            .arg(now)
            .arg(id)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&self.workers)
            .arg("-inf")
            .arg(now - 24 * 3600 * 1000)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn clear_beat(&self, id: &str) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("ZREM")
            .arg(&self.workers)
            .arg(id)
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// Enqueues a run; while Redis does not answer, into the store's queue for the relay.
    async fn push(&self, envelope: &Envelope, delay: Option<Duration>) -> Result<(), JobError> {
        if let Err(e) = self.push_to_redis(envelope, delay).await {
            tracing::warn!(
                task = %envelope.task,
                id = %envelope.id,
                "Redis does not answer ({e}): the task waits in the store and moves to Redis when it answers"
            );
            self.fallback.push(envelope, delay).await?;
        }
        Ok(())
    }

    async fn fetch(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, JobError> {
        let mut conn = self.fetch_connection().await?;
        let now = now_ms();
        let (claim_due, promote_due) = {
            let m = self.maintenance.lock().expect("maintenance lock");
            let claim_every = (self.visibility / 4).max(Duration::from_millis(200));
            (
                m.last_claim.is_none_or(|t| t.elapsed() >= claim_every),
                (m.next_due_ms != -1 && m.next_due_ms <= now)
                    || m.last_promote.is_none_or(|t| t.elapsed() >= PROMOTE_EVERY),
            )
        };
        if promote_due {
            let (_, next): (i64, i64) = self
                .promote
                .key(&self.delayed)
                .key(&self.stream)
                .arg(now)
                .arg(1000)
                .invoke_async(&mut conn)
                .await?;
            let mut m = self.maintenance.lock().expect("maintenance lock");
            m.next_due_ms = next;
            m.last_promote = Some(Instant::now());
        }
        if claim_due {
            self.maintenance
                .lock()
                .expect("maintenance lock")
                .last_claim = Some(Instant::now());
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(GROUP)
                .arg(consumer)
                .arg(self.visibility.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(max)
                .query_async(&mut conn)
                .await?;
            if !reply.claimed.is_empty() {
                tracing::warn!(
                    count = reply.claimed.len(),
                    "took over tasks whose worker stopped renewing them (crashed or killed?)"
                );
                // Each delivery after the first was a take-over: a lost worker, a failed try.
                let pending: Vec<(String, String, u64, u32)> = redis::cmd("XPENDING")
                    .arg(&self.stream)
                    .arg(GROUP)
                    .arg("-")
                    .arg("+")
                    .arg(10_000)
                    .arg(consumer)
                    .query_async(&mut conn)
                    .await?;
                let counts: std::collections::HashMap<String, u32> = pending
                    .into_iter()
                    .map(|(id, _, _, delivered)| (id, delivered))
                    .collect();
                let mut deliveries = self.deliveries(reply.claimed, true);
                for d in &mut deliveries {
                    let lost = counts
                        .get(&d.receipt)
                        .copied()
                        .unwrap_or(2)
                        .saturating_sub(1);
                    d.envelope.tries += lost.max(1);
                }
                return Ok(deliveries);
            }
        }
        let next_due = self
            .maintenance
            .lock()
            .expect("maintenance lock")
            .next_due_ms;
        let mut block = wait.min(FETCH_BLOCK);
        if next_due > 0 {
            let until_due = Duration::from_millis((next_due - now).max(10) as u64);
            block = block.min(until_due);
        }
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(&mut conn)
            .await?;
        Ok(reply
            .map(|r| {
                let ids = r.keys.into_iter().flat_map(|k| k.ids).collect();
                self.deliveries(ids, false)
            })
            .unwrap_or_default())
    }

    async fn complete(&self, receipt: &str) -> Result<(), JobError> {
        self.ack(receipt.to_owned());
        Ok(())
    }

    async fn reschedule(
        &self,
        receipt: &str,
        envelope: &Envelope,
        delay: Duration,
    ) -> Result<(), JobError> {
        self.push(envelope, Some(delay)).await?;
        self.ack(receipt.to_owned());
        Ok(())
    }

    async fn release(&self, delivery: &Delivery) -> Result<(), JobError> {
        self.push(&delivery.envelope, None).await?;
        self.ack(delivery.receipt.clone());
        Ok(())
    }

    async fn extend(&self, consumer: &str, receipts: &[String]) -> Result<(), JobError> {
        let mut conn = self.conn.clone();
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(receipts)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, JobError> {
        let mut conn = self.conn.clone();
        let (ready, delayed): (u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(&self.stream)
            .cmd("ZCARD")
            .arg(&self.delayed)
            .query_async(&mut conn)
            .await?;
        Ok(QueueDepth { ready, delayed })
    }

    async fn fire_cron(&self, envelope: &Envelope, fire_at_ms: i64) -> Result<bool, JobError> {
        let mut conn = self.conn.clone();
        let fired: i64 = self
            .fire_cron
            .key(format!(
                "{}{}:{fire_at_ms}",
                self.cron_prefix, envelope.task
            ))
            .key(&self.stream)
            .arg(std::process::id())
            .arg(serde_json::to_string(envelope).expect("envelopes serialize"))
            .invoke_async(&mut conn)
            .await?;
        Ok(fired == 1)
    }

    /// Waits for queued acknowledgements to be sent.
    async fn flush(&self) {
        self.acks.lock().expect("acks lock").take();
        if let Some(handle) = self.acker.lock().await.take() {
            let _ = handle.await;
        }
    }
}

fn workers_key(prefix: &str) -> String {
    format!("{prefix}jobs:workers")
}

/// When the most recent worker beat (ms since the epoch) in the Redis at `url`, keys under
/// `prefix`; a connection of its own with short timeouts, for `worker-health`.
pub(crate) async fn newest_beat(url: &str, prefix: &str) -> Result<Option<i64>, String> {
    let client = crate::redis_conn::client(url).map_err(|e| e.to_string())?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| crate::redis_conn::unreachable_error(url, &e).to_string())?;
    let newest: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(workers_key(prefix))
        .arg(-1)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("Redis did not answer: {e}"))?;
    Ok(newest.first().map(|(_, score)| *score as i64))
}
