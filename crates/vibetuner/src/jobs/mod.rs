//! Background jobs: tasks with typed arguments, a queue in Redis (`REDIS_URL`) or in the store,
//! workers with retries, exponential backoff, timeouts and dead letters, and cron schedules.
//!
//! ```no_run
//! use vibetuner::prelude::*;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Welcome { email: String }
//!
//! const WELCOME: TaskKey<Welcome> = TaskKey::new("welcome");
//!
//! async fn welcome(ctx: TaskContext, args: Welcome) -> Result<()> {
//!     tracing::info!(task = %ctx.task_id, "welcome {}", args.email);
//!     Ok(())
//! }
//!
//! // in a handler (or a task, through `ctx.jobs()`):
//! async fn sign_up(jobs: Jobs, Form(form): Form<Welcome>) -> Result<String> {
//!     let id = jobs.enqueue(WELCOME, &form).await?;
//!     Ok(id)
//! }
//!
//! # fn main() {
//! App::new(vibetuner::project!())
//!     .task(Task::new(WELCOME, welcome).max_retries(5))
//!     .cron("0 3 * * *", Task::new("nightly", |_ctx, ()| async { Ok(()) }))
//!     .route("/sign-up", post(sign_up));
//! # }
//! ```
//!
//! Delivery is at least once: a task taken by a worker that dies is handed to another one after
//! `TASK_VISIBILITY_TIMEOUT`, so tasks should be idempotent.

mod message;
mod queue;
#[cfg(feature = "redis")]
mod redis_queue;
mod store_queue;

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::health::CheckError;
use crate::models::DeadLetter;
use crate::store::Store;

pub(crate) use message::{Delivery, Envelope, FETCH_BLOCK, now_ms};
pub use message::{JobError, QueueDepth};
pub(crate) use queue::Queue;
#[cfg(feature = "redis")]
pub(crate) use redis_queue::newest_beat as newest_redis_beat;
pub(crate) use store_queue::{heartbeat_file, newest_beat as newest_file_beat};

/// A task's name together with the type of its arguments: enqueueing through a key checks the
/// arguments at compile time.
///
/// ```no_run
/// use vibetuner::prelude::*;
///
/// const WELCOME: TaskKey<String> = TaskKey::new("welcome");
///
/// async fn welcome(_ctx: TaskContext, email: String) -> Result<()> {
///     tracing::info!("welcome {email}");
///     Ok(())
/// }
///
/// async fn sign_up(jobs: Jobs) -> Result<()> {
///     jobs.enqueue(WELCOME, &"ada@example.com".to_owned()).await?;
///     // jobs.enqueue(WELCOME, &42) would not compile.
///     Ok(())
/// }
///
/// # fn main() {
/// App::new(vibetuner::project!()).task(Task::new(WELCOME, welcome));
/// # }
/// ```
pub struct TaskKey<A> {
    name: &'static str,
    args: PhantomData<fn(A)>,
}

impl<A> TaskKey<A> {
    /// The key of the task called `name`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            args: PhantomData,
        }
    }

    /// The task's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<A> Clone for TaskKey<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for TaskKey<A> {}

impl<A> std::fmt::Debug for TaskKey<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskKey({:?})", self.name)
    }
}

/// What names a task: a [`TaskKey<A>`] (arguments of type `A` only) or a string (any arguments).
pub trait TaskName<A> {
    /// The task's name.
    fn task_name(&self) -> &str;
}

impl<A> TaskName<A> for TaskKey<A> {
    fn task_name(&self) -> &str {
        self.name
    }
}

impl<A, T: AsRef<str>> TaskName<A> for T {
    fn task_name(&self) -> &str {
        self.as_ref()
    }
}

/// The queue handle: enqueue tasks from handlers (it is an axum extractor) and from tasks.
#[derive(Clone)]
pub struct Jobs {
    pub(crate) queue: Queue,
    /// The registered tasks' names: enqueueing another is refused.
    tasks: Arc<BTreeSet<String>>,
}

impl Jobs {
    pub(crate) fn new(queue: Queue, tasks: BTreeSet<String>) -> Self {
        Self {
            queue,
            tasks: Arc::new(tasks),
        }
    }

    /// Enqueues `task` to run as soon as a worker is free; returns the task id.
    pub async fn enqueue<A: Serialize>(
        &self,
        task: impl TaskName<A>,
        args: &A,
    ) -> Result<String, JobError> {
        self.enqueue_at(task.task_name(), args, None).await
    }

    /// Enqueues `task` to run after `delay`; returns the task id.
    pub async fn enqueue_in<A: Serialize>(
        &self,
        task: impl TaskName<A>,
        args: &A,
        delay: Duration,
    ) -> Result<String, JobError> {
        self.enqueue_at(task.task_name(), args, Some(delay)).await
    }

    /// Enqueues the run of cron task `task` for the fire time `fire_at_ms` unless another
    /// worker did; returns the task id when this call fired it.
    pub(crate) async fn fire_cron(
        &self,
        task: &str,
        fire_at_ms: i64,
    ) -> Result<Option<String>, JobError> {
        let envelope = Envelope::new(task, serde_json::Value::Null);
        let fired = self.queue.fire_cron(&envelope, fire_at_ms).await?;
        Ok(fired.then_some(envelope.id))
    }

    async fn enqueue_at<A: Serialize>(
        &self,
        task: &str,
        args: &A,
        delay: Option<Duration>,
    ) -> Result<String, JobError> {
        if !self.tasks.contains(task) {
            return Err(JobError::UnknownTask(task.to_owned()));
        }
        let args = serde_json::to_value(args).map_err(|e| JobError::Arguments {
            task: task.to_owned(),
            reason: e.to_string(),
        })?;
        let envelope = Envelope::new(task, args);
        let id = envelope.id.clone();
        self.queue.push(&envelope, delay).await?;
        Ok(id)
    }

    /// How many tasks wait (ready and delayed).
    pub async fn depth(&self) -> Result<QueueDepth, JobError> {
        self.queue.depth().await
    }

    /// `redis` or `store`.
    pub fn backend(&self) -> &'static str {
        self.queue.kind()
    }

    /// Enqueues a dead letter's task again with its arguments (tries start over); returns the
    /// new task id.
    pub async fn retry_dead_letter(&self, dead: &DeadLetter) -> Result<String, JobError> {
        self.enqueue(&dead.task_name, &dead.args).await
    }
}

impl Jobs {
    /// The queue the settings select: Redis Streams when `redis` (its URL and the process's
    /// shared connection) is given, else the store's `task_queue` collection; workers without
    /// Redis beat into the file `heartbeat`.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) fn connect(
        redis: Option<&crate::redis_conn::Shared>,
        settings: &crate::config::JobsSettings,
        prefix: &str,
        store: &Store,
        heartbeat: std::path::PathBuf,
        tasks: BTreeSet<String>,
    ) -> Self {
        let visibility = Duration::from_secs(settings.visibility_timeout_secs);
        let in_store = store_queue::StoreQueue::new(store, visibility, heartbeat);
        let queue: Queue = match redis {
            #[cfg(feature = "redis")]
            Some(redis) => {
                let queue = Arc::new(redis_queue::RedisQueue::new(
                    &redis.url,
                    redis.conn.clone(),
                    prefix,
                    visibility,
                    in_store,
                ));
                redis_queue::RedisQueue::spawn_relay(Arc::downgrade(&queue));
                queue
            }
            _ => Arc::new(in_store),
        };
        Jobs::new(queue, tasks)
    }
}

/// How long the health check waits for the queue depth.
const DEPTH_TIMEOUT: Duration = Duration::from_secs(1);

/// Health checks: Redis answering `PING` (with Redis) and the queue's depth.
pub(crate) fn health_checks(jobs: &Jobs) -> Vec<crate::health::ServiceCheck> {
    let mut checks = jobs.queue.health_checks();
    let queue = jobs.clone();
    checks.push(crate::health::ServiceCheck::with_details(
        "task_queue",
        move || {
            let queue = queue.clone();
            async move {
                let depth = tokio::time::timeout(DEPTH_TIMEOUT, queue.depth())
                    .await
                    .map_err(|_| CheckError::TimedOut(DEPTH_TIMEOUT))?
                    .map_err(CheckError::failed)?;
                Ok::<_, CheckError>(
                    serde_json::json!({ "backend": queue.backend(), "depth": depth }),
                )
            }
        },
    ));
    checks
}
