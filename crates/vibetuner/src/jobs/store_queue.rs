//! The queue without Redis: runs are documents in the store's `task_queue` collection, so
//! they survive a restart. A worker claims a run by moving its `locked_until` forward; a run
//! whose worker died becomes visible again when that time passes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bson::{DateTime, doc};
use tokio::sync::{Notify, OnceCell};

use super::message::{Delivery, Envelope, JobError, QueueDepth, now_ms};
use super::queue::QueueBackend;
use crate::store::{Collection, Filter, Id, Index, Order, Query, Store, StoreError, Update};

/// The queue collection.
pub(crate) const QUEUE_COLLECTION: &str = "task_queue";
const CRON_COLLECTION: &str = "task_cron_fires";

/// Wait between two looks at the collection (for delayed runs and other processes' pushes)
/// while there is work about; a push from this process wakes the worker at once.
const POLL: Duration = Duration::from_millis(250);
/// The wait doubles while the queue stays empty, up to this: an idle app looks once a second.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub(crate) struct StoreQueue {
    queue: Collection,
    cron: Collection,
    visibility: Duration,
    wake: Notify,
    /// The current wait between looks, in milliseconds (`POLL` ..= `IDLE_POLL`).
    nap_ms: AtomicU64,
    indexes: OnceCell<()>,
    /// The workers' heartbeat file (see [`heartbeat_file`]).
    heartbeat: PathBuf,
}

impl StoreQueue {
    /// The queue in `store`; workers beat into the file `heartbeat`.
    pub(crate) fn new(store: &Store, visibility: Duration, heartbeat: PathBuf) -> Self {
        Self {
            queue: store.collection(QUEUE_COLLECTION),
            cron: store.collection(CRON_COLLECTION),
            visibility,
            wake: Notify::new(),
            nap_ms: AtomicU64::new(POLL.as_millis() as u64),
            indexes: OnceCell::new(),
            heartbeat,
        }
    }

    async fn ensure_indexes(&self) -> Result<(), JobError> {
        self.indexes
            .get_or_try_init(|| async {
                self.queue.create_index(&Index::on(["run_at"])).await?;
                self.cron.create_index(&Index::on(["key"]).unique()).await?;
                self.cron
                    .create_index(&Index::on(["expires_at"]).ttl(Duration::ZERO))
                    .await?;
                Ok::<_, JobError>(())
            })
            .await?;
        Ok(())
    }

    async fn claim(&self, max: usize) -> Result<Vec<Delivery>, JobError> {
        let now = DateTime::now();
        let due = self
            .queue
            .find(
                &Query::filter(Filter::lte("run_at", now).and(Filter::lte("locked_until", now)))
                    .sort("run_at", Order::Asc)
                    .limit(max as u64),
            )
            .await?;
        let mut out = Vec::with_capacity(due.len());
        for doc in due {
            let (Ok(id), Ok(lock)) = (doc.get_object_id("_id"), doc.get_datetime("locked_until"))
            else {
                continue;
            };
            // A lock that ran out means the worker that took the run died: a failed try.
            let reclaimed = lock.timestamp_millis() > 0;
            let Some(mut envelope) = envelope(&doc) else {
                tracing::error!(%id, "dropping an unreadable task_queue document");
                self.queue.delete(Id(id)).await?;
                continue;
            };
            if reclaimed {
                envelope.tries += 1;
            }
            let taken = self
                .queue
                .update_one(
                    Filter::eq("_id", id).and(Filter::eq("locked_until", *lock)),
                    Update::set(doc! {
                        "locked_until": after(self.visibility),
                        "tries": envelope.tries as i64,
                    }),
                )
                .await?;
            if taken.is_none() {
                continue;
            }
            out.push(Delivery {
                envelope,
                receipt: id.to_hex(),
                reclaimed,
            });
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl QueueBackend for StoreQueue {
    fn kind(&self) -> &'static str {
        "store"
    }

    fn serves_in_process(&self) -> bool {
        true
    }

    /// The time of the last beat in a file: the worker shares the app's `DATA_DIR`.
    async fn beat(&self, _id: &str) -> anyhow::Result<()> {
        if let Some(dir) = self.heartbeat.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::write(&self.heartbeat, now_ms().to_string()).await?;
        Ok(())
    }

    async fn clear_beat(&self, _id: &str) -> anyhow::Result<()> {
        tokio::fs::remove_file(&self.heartbeat).await?;
        Ok(())
    }

    async fn push(&self, envelope: &Envelope, delay: Option<Duration>) -> Result<(), JobError> {
        self.ensure_indexes().await?;
        let run_at = after(delay.unwrap_or_default());
        self.queue
            .insert(doc! {
                "task_id": &envelope.id,
                "task": &envelope.task,
                "args": serde_json::to_string(&envelope.args).expect("JSON values serialize"),
                "tries": envelope.tries as i64,
                "run_at": run_at,
                "locked_until": DateTime::from_millis(0),
            })
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    async fn fetch(
        &self,
        _consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, JobError> {
        self.ensure_indexes().await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let claimed = self.claim(max).await?;
            if !claimed.is_empty() {
                self.nap_ms
                    .store(POLL.as_millis() as u64, Ordering::Relaxed);
                return Ok(claimed);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(claimed);
            }
            let nap = Duration::from_millis(self.nap_ms.load(Ordering::Relaxed));
            let woken = tokio::time::timeout(
                nap.min(deadline - tokio::time::Instant::now()),
                self.wake.notified(),
            )
            .await
            .is_ok();
            let next = if woken {
                POLL
            } else {
                (nap * 2).min(IDLE_POLL)
            };
            self.nap_ms
                .store(next.as_millis() as u64, Ordering::Relaxed);
            // The next fetch looks first thing: looking here as well would look twice.
            if !woken && tokio::time::Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    async fn complete(&self, receipt: &str) -> Result<(), JobError> {
        self.queue.delete(receipt_id(receipt)?).await?;
        Ok(())
    }

    async fn reschedule(
        &self,
        receipt: &str,
        envelope: &Envelope,
        delay: Duration,
    ) -> Result<(), JobError> {
        self.queue
            .update(
                receipt_id(receipt)?,
                Update::set(doc! {
                    "tries": envelope.tries as i64,
                    "run_at": after(delay),
                    "locked_until": DateTime::from_millis(0),
                }),
            )
            .await?;
        Ok(())
    }

    async fn release(&self, delivery: &Delivery) -> Result<(), JobError> {
        self.queue
            .update(
                receipt_id(&delivery.receipt)?,
                Update::set(doc! { "locked_until": DateTime::from_millis(0) }),
            )
            .await?;
        Ok(())
    }

    async fn extend(&self, _consumer: &str, receipts: &[String]) -> Result<(), JobError> {
        let ids = receipts
            .iter()
            .map(|r| receipt_id(r).map(|id| id.0))
            .collect::<Result<Vec<_>, _>>()?;
        self.queue
            .update_many(
                Filter::is_in("_id", ids),
                Update::set(doc! { "locked_until": after(self.visibility) }),
            )
            .await?;
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, JobError> {
        let now = DateTime::now();
        let ready = self.queue.count(&Filter::lte("run_at", now)).await?;
        let delayed = self.queue.count(&Filter::gt("run_at", now)).await?;
        Ok(QueueDepth { ready, delayed })
    }

    /// Claims the fire time (a unique key), then enqueues the run. The two steps are not atomic:
    /// the store queue runs inside `serve`, usually one process.
    async fn fire_cron(&self, envelope: &Envelope, fire_at_ms: i64) -> Result<bool, JobError> {
        self.ensure_indexes().await?;
        let inserted = self
            .cron
            .insert(doc! {
                "key": format!("{}:{fire_at_ms}", envelope.task),
                "expires_at": after(Duration::from_secs(24 * 3600)),
            })
            .await;
        match inserted {
            Ok(_) => {
                self.push(envelope, None).await?;
                Ok(true)
            }
            Err(StoreError::Duplicate { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

fn after(delay: Duration) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + delay.as_millis() as i64)
}

fn receipt_id(receipt: &str) -> Result<Id, JobError> {
    receipt
        .parse::<Id>()
        .map_err(|_| JobError::Store(StoreError::Invalid(format!("bad receipt {receipt:?}"))))
}

fn envelope(doc: &bson::Document) -> Option<Envelope> {
    Some(Envelope {
        id: doc.get_str("task_id").ok()?.to_owned(),
        task: doc.get_str("task").ok()?.to_owned(),
        args: serde_json::from_str(doc.get_str("args").ok()?).ok()?,
        tries: match doc.get("tries")? {
            bson::Bson::Int32(n) => *n as u32,
            bson::Bson::Int64(n) => *n as u32,
            _ => 0,
        },
    })
}

/// Where workers without Redis record their heartbeat: `worker.heartbeat` in `DATA_DIR`.
pub(crate) fn heartbeat_file(settings: &crate::config::Settings, root: &Path) -> PathBuf {
    crate::store::data_dir(settings, root).join("worker.heartbeat")
}

/// When the most recent worker beat (ms since the epoch), from the heartbeat file at `path`.
pub(crate) fn newest_beat(path: &Path) -> Result<Option<i64>, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("no heartbeat file {} ({e})", path.display()))
        .and_then(|s| {
            s.trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| format!("unreadable heartbeat file {}", path.display()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nap(queue: &StoreQueue) -> u64 {
        queue.nap_ms.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn an_empty_queue_is_looked_at_less_often_until_a_push() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::embedded(&dir.path().join("store.sqlite3")).unwrap();
        let queue = StoreQueue::new(
            &store,
            Duration::from_secs(30),
            dir.path().join("worker.heartbeat"),
        );
        assert_eq!(nap(&queue), 250);
        let idle = queue.fetch("w", 1, Duration::from_millis(900)).await;
        assert!(idle.unwrap().is_empty());
        assert_eq!(nap(&queue), 1000, "250, 500, then the idle ceiling");

        let pushed = Envelope::new("demo", serde_json::json!({ "n": 1 }));
        queue.push(&pushed, None).await.unwrap();
        let got = queue.fetch("w", 1, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].envelope.id, pushed.id);
        assert_eq!(nap(&queue), 250, "work about: back to the short wait");
    }
}
