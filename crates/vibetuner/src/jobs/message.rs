//! What moves through a task queue, whichever backend holds it: the envelope of a task run,
//! its delivery to a worker, the queue's depth and what can go wrong.

use std::time::Duration;

use serde::Serialize;

/// The longest a worker's fetch waits for a task before it looks at its other duties.
pub(crate) const FETCH_BLOCK: Duration = Duration::from_secs(1);

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    crate::store::Timestamp::now().millis()
}

/// How many tasks wait in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// Runnable now, or taken by a worker and not finished.
    pub ready: u64,
    /// Scheduled for later (delayed tasks and retries in backoff).
    pub delayed: u64,
}

/// A task run handed to a worker; `receipt` identifies it for acknowledgement.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) envelope: Envelope,
    pub(crate) receipt: String,
    /// Taken over after its visibility timeout: the worker that had it died or stalled. The
    /// queue counts each such loss in `envelope.tries`.
    pub(crate) reclaimed: bool,
}

/// What can go wrong when enqueueing or inspecting the queue.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No task of this name is registered on the app.
    #[error("no task named {0:?} is registered; register it with App::task or App::cron")]
    UnknownTask(String),
    /// The arguments do not serialize to JSON.
    #[error("cannot serialize the arguments of task {task:?}: {reason}")]
    Arguments {
        /// The task.
        task: String,
        /// serde's message.
        reason: String,
    },
    /// Redis failed.
    #[cfg(feature = "redis")]
    #[error("task queue (redis): {0}")]
    Redis(#[from] redis::RedisError),
    /// The store failed.
    #[error("task queue (store): {0}")]
    Store(#[from] crate::store::StoreError),
}

impl crate::error::HttpStatus for JobError {
    /// 404 for a task that is not registered, 422 for arguments that do not serialize, 503
    /// when the queue's database fails.
    fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::UnknownTask(_) => StatusCode::NOT_FOUND,
            Self::Arguments { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            #[cfg(feature = "redis")]
            Self::Redis(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(e) => match crate::error::HttpStatus::status(e) {
                StatusCode::INTERNAL_SERVER_ERROR => StatusCode::SERVICE_UNAVAILABLE,
                other => other,
            },
        }
    }
}

/// A queued run of a task, as stored in the queue.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct Envelope {
    pub(crate) id: String,
    pub(crate) task: String,
    pub(crate) args: serde_json::Value,
    /// Failed attempts so far.
    #[serde(default)]
    pub(crate) tries: u32,
}

impl Envelope {
    pub(crate) fn new(task: &str, args: serde_json::Value) -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            task: task.to_owned(),
            args,
            tries: 0,
        }
    }
}
