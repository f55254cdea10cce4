//! The queue contract, [`QueueBackend`], written once: Redis Streams (`redis_queue.rs`) and a
//! collection in the store (`store_queue.rs`) implement it, and the queue handle and the worker
//! see only a [`Queue`]. Each call is a network or database round trip, so the dynamic dispatch
//! (one boxed future per call) costs nothing measurable next to it.

use std::sync::Arc;
use std::time::Duration;

use super::message::{Delivery, Envelope, JobError, QueueDepth};

/// The queue the settings select.
pub(crate) type Queue = Arc<dyn QueueBackend>;

/// What a task queue does, whichever backend holds it.
#[async_trait::async_trait]
pub(crate) trait QueueBackend: Send + Sync {
    /// `redis` or `store`, for health reports and logs.
    fn kind(&self) -> &'static str;

    /// True when an app serves its own tasks by default (the store queue); with Redis a
    /// separate `worker` process does, unless `serve --worker` asks.
    fn serves_in_process(&self) -> bool {
        false
    }

    /// The backend's own health checks (Redis answering `PING`), besides the queue depth.
    fn health_checks(&self) -> Vec<crate::health::ServiceCheck> {
        Vec::new()
    }

    /// Enqueues a run, available after `delay`.
    async fn push(&self, envelope: &Envelope, delay: Option<Duration>) -> Result<(), JobError>;

    /// Up to `max` runs, waiting at most `wait` for the first.
    async fn fetch(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, JobError>;

    /// The run finished (done or dead-lettered): remove it.
    async fn complete(&self, receipt: &str) -> Result<(), JobError>;

    /// The run failed and will be retried: store `envelope` (tries counted) for after `delay`.
    async fn reschedule(
        &self,
        receipt: &str,
        envelope: &Envelope,
        delay: Duration,
    ) -> Result<(), JobError>;

    /// The worker is stopping without finishing the run: make it available again now.
    async fn release(&self, delivery: &Delivery) -> Result<(), JobError>;

    /// The runs (never empty) are still in progress: restart their visibility timeout.
    async fn extend(&self, consumer: &str, receipts: &[String]) -> Result<(), JobError>;

    /// How many runs wait, are delayed, are running.
    async fn depth(&self) -> Result<QueueDepth, JobError>;

    /// Enqueues the cron run `envelope` for one fire time; true for exactly one caller per
    /// `(task, fire time)`, however many workers try.
    async fn fire_cron(&self, envelope: &Envelope, fire_at_ms: i64) -> Result<bool, JobError>;

    /// Flushes pending acknowledgements (at shutdown).
    async fn flush(&self) {}

    /// Records that worker `id` is alive now (`worker-health` reads it back).
    async fn beat(&self, id: &str) -> anyhow::Result<()>;

    /// Forgets worker `id`'s heartbeat (it stopped cleanly).
    async fn clear_beat(&self, id: &str) -> anyhow::Result<()>;
}
