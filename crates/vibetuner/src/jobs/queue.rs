//! The queue backends behind one interface: Redis Streams, or a collection in the store.

use std::sync::Arc;
use std::time::Duration;

use super::message::{Delivery, Envelope, JobError, QueueDepth};
#[cfg(feature = "redis")]
use super::redis_queue::RedisQueue;
use super::store_queue::StoreQueue;

/// The queue the settings select.
#[derive(Clone)]
pub(crate) enum Queue {
    #[cfg(feature = "redis")]
    Redis(Arc<RedisQueue>),
    Store(Arc<StoreQueue>),
}

macro_rules! both {
    ($self:ident, $q:ident => $e:expr) => {
        match $self {
            #[cfg(feature = "redis")]
            Queue::Redis($q) => $e,
            Queue::Store($q) => $e,
        }
    };
}

impl Queue {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            #[cfg(feature = "redis")]
            Queue::Redis(_) => "redis",
            Queue::Store(_) => "store",
        }
    }

    pub(crate) async fn push(
        &self,
        envelope: &Envelope,
        delay: Option<Duration>,
    ) -> Result<(), JobError> {
        both!(self, q => q.push(envelope, delay).await)
    }

    /// Up to `max` runs, waiting at most `wait` for the first.
    pub(crate) async fn fetch(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, JobError> {
        both!(self, q => q.fetch(consumer, max, wait).await)
    }

    /// The run finished (done or dead-lettered): remove it.
    pub(crate) async fn complete(&self, receipt: &str) -> Result<(), JobError> {
        both!(self, q => q.complete(receipt).await)
    }

    /// The run failed and will be retried: store `envelope` (tries counted) for after `delay`.
    pub(crate) async fn reschedule(
        &self,
        receipt: &str,
        envelope: &Envelope,
        delay: Duration,
    ) -> Result<(), JobError> {
        both!(self, q => q.reschedule(receipt, envelope, delay).await)
    }

    /// The worker is stopping without finishing the run: make it available again now.
    pub(crate) async fn release(&self, delivery: &Delivery) -> Result<(), JobError> {
        both!(self, q => q.release(delivery).await)
    }

    /// The runs are still in progress: restart their visibility timeout.
    pub(crate) async fn extend(&self, consumer: &str, receipts: &[String]) -> Result<(), JobError> {
        if receipts.is_empty() {
            return Ok(());
        }
        both!(self, q => q.extend(consumer, receipts).await)
    }

    pub(crate) async fn depth(&self) -> Result<QueueDepth, JobError> {
        both!(self, q => q.depth().await)
    }

    /// Enqueues the cron run `envelope` for one fire time; true for exactly one caller per
    /// `(task, fire time)`, however many workers try.
    pub(crate) async fn fire_cron(
        &self,
        envelope: &Envelope,
        fire_at_ms: i64,
    ) -> Result<bool, JobError> {
        both!(self, q => q.fire_cron(envelope, fire_at_ms).await)
    }

    /// Flushes pending acknowledgements (at shutdown).
    pub(crate) async fn flush(&self) {
        #[cfg(feature = "redis")]
        if let Queue::Redis(q) = self {
            q.flush().await;
        }
    }
}
