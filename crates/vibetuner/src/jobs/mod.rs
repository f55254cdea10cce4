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

mod dead_letters;
mod queue;
#[cfg(feature = "redis")]
mod redis_queue;
mod store_queue;
mod task_command;
mod worker;

use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::AppContext;
use crate::health::CheckError;
use crate::models::DeadLetter;
use crate::store::Store;

pub use dead_letters::{DeadLetterCommand, run_dead_letter_command};
pub(crate) use queue::Queue;
pub use queue::QueueDepth;
pub(crate) use task_command::{TaskCommand, run_task_command};
#[cfg(feature = "testing")]
pub(crate) use worker::spawn_background;
pub(crate) use worker::spawn_in_process;
pub use worker::{InProcessWorker, Worker, WorkerHealth, worker_health};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Arc<dyn Fn(TaskContext, serde_json::Value) -> BoxFuture<TaskOutcome> + Send + Sync>;
type FailureCallback = Arc<dyn Fn(TaskContext, DeadLetter) -> BoxFuture<()> + Send + Sync>;

/// What a task run ended with.
enum TaskOutcome {
    Done,
    /// The arguments do not decode: retrying cannot help.
    BadArguments(String),
    Failed(crate::Error),
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

/// Retry, backoff and timeout policy of a task; the defaults match Vibetuner's `robust_task`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOptions {
    /// Retries after the first attempt before the task becomes a dead letter (3).
    pub max_retries: u32,
    /// Delay before retry `n` is `backoff_base^n` seconds (2.0) ...
    pub backoff_base: f64,
    /// ... capped at this (300 s).
    pub backoff_max: Duration,
    /// A run taking longer fails with a timeout (300 s).
    pub timeout: Duration,
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self {
            max_retries: 3,
            backoff_base: 2.0,
            backoff_max: Duration::from_secs(300),
            timeout: Duration::from_secs(300),
        }
    }
}

impl TaskOptions {
    /// The delay before the retry that follows `tries` failed attempts.
    pub fn backoff(&self, tries: u32) -> Duration {
        let secs = self.backoff_base.powi(tries.min(64) as i32);
        if !secs.is_finite() || secs >= self.backoff_max.as_secs_f64() {
            self.backoff_max
        } else {
            Duration::from_secs_f64(secs.max(0.0))
        }
    }
}

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

/// A task definition: a name, an async function of typed arguments, and its policy.
#[derive(Clone)]
pub struct Task {
    name: String,
    options: TaskOptions,
    handler: Handler,
    on_failure: Option<FailureCallback>,
}

impl Task {
    /// A task running `f` with arguments decoded from the JSON they were enqueued with. `f`
    /// returns [`crate::Result`], so `?` works on store, queue, template and `anyhow` errors;
    /// an error's detail is what retries log and the dead letter keeps.
    pub fn new<A, F, Fut>(name: impl TaskName<A>, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        F: Fn(TaskContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = crate::Result<()>> + Send + 'static,
    {
        let f = Arc::new(f);
        Self {
            name: name.task_name().to_owned(),
            options: TaskOptions::default(),
            handler: Arc::new(move |ctx, args| {
                let f = f.clone();
                Box::pin(async move {
                    match serde_json::from_value::<A>(args) {
                        Ok(args) => match f(ctx, args).await {
                            Ok(()) => TaskOutcome::Done,
                            Err(e) => TaskOutcome::Failed(e),
                        },
                        Err(e) => TaskOutcome::BadArguments(e.to_string()),
                    }
                })
            }),
            on_failure: None,
        }
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Retries after the first attempt (default 3).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.options.max_retries = n;
        self
    }

    /// Backoff: retry `n` waits `base^n` seconds, at most `max` (default 2.0, 300 s).
    pub fn backoff(mut self, base: f64, max: Duration) -> Self {
        self.options.backoff_base = base;
        self.options.backoff_max = max;
        self
    }

    /// Longest run before it fails with a timeout (default 300 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = timeout;
        self
    }

    /// Called once the task has become a dead letter (after it is stored).
    pub fn on_failure<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(TaskContext, DeadLetter) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_failure = Some(Arc::new(move |ctx, dead| Box::pin(f(ctx, dead))));
        self
    }

    /// The task's policy.
    pub fn options(&self) -> &TaskOptions {
        &self.options
    }
}

/// A cron schedule firing a registered task with `null` arguments (take `()`).
#[derive(Clone)]
pub(crate) struct CronEntry {
    pub(crate) task: String,
    pub(crate) pattern: String,
    pub(crate) cron: croner::Cron,
}

/// A cron pattern that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid cron pattern {pattern:?} for task {task}: {reason}")]
pub(crate) struct CronError {
    pattern: String,
    task: String,
    reason: croner::errors::CronError,
}

/// Every task and cron schedule an app registered.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    tasks: BTreeMap<String, Task>,
    crons: Vec<CronEntry>,
}

impl Registry {
    /// Adds a task (a later one of the same name replaces it).
    pub(crate) fn add(&mut self, task: Task) {
        self.tasks.insert(task.name.clone(), task);
    }

    /// Adds a task fired by a cron pattern: five fields (minute precision) or six with seconds.
    pub(crate) fn add_cron(&mut self, pattern: &str, task: Task) -> Result<(), CronError> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(pattern)
            .map_err(|reason| CronError {
                pattern: pattern.to_owned(),
                task: task.name.clone(),
                reason,
            })?;
        self.crons.push(CronEntry {
            task: task.name.clone(),
            pattern: pattern.to_owned(),
            cron,
        });
        self.add(task);
        Ok(())
    }

    /// The registered task names.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.tasks.keys().map(String::as_str)
    }

    fn get(&self, name: &str) -> Option<&Task> {
        self.tasks.get(name)
    }
}

/// The queue handle: enqueue tasks from handlers (it is an axum extractor) and from tasks.
#[derive(Clone)]
pub struct Jobs {
    pub(crate) queue: Queue,
    pub(crate) registry: Arc<Registry>,
}

impl Jobs {
    pub(crate) fn new(queue: Queue, registry: Registry) -> Self {
        Self {
            queue,
            registry: Arc::new(registry),
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
        if self.registry.get(task).is_none() {
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
    /// shared connection) is given, else the store's `task_queue` collection.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) fn connect(
        redis: Option<&crate::redis_conn::Shared>,
        settings: &crate::config::JobsSettings,
        prefix: &str,
        store: &Store,
        registry: Registry,
    ) -> Self {
        let visibility = Duration::from_secs(settings.visibility_timeout_secs);
        let queue = match redis {
            #[cfg(feature = "redis")]
            Some(redis) => {
                let queue = Arc::new(redis_queue::RedisQueue::new(
                    &redis.url,
                    redis.conn.clone(),
                    prefix,
                    visibility,
                    store_queue::StoreQueue::new(store, visibility),
                ));
                redis_queue::RedisQueue::spawn_relay(Arc::downgrade(&queue));
                Queue::Redis(queue)
            }
            _ => Queue::Store(Arc::new(store_queue::StoreQueue::new(store, visibility))),
        };
        Jobs::new(queue, registry)
    }
}

/// How long the health check waits for the queue depth.
const DEPTH_TIMEOUT: Duration = Duration::from_secs(1);

/// Health checks: Redis answering `PING` (with Redis) and the queue's depth.
pub(crate) fn health_checks(jobs: &Jobs) -> Vec<crate::ServiceCheck> {
    let mut checks = Vec::new();
    #[cfg(feature = "redis")]
    if let Queue::Redis(q) = &jobs.queue {
        let conn = q.connection();
        checks.push(crate::ServiceCheck::new("redis", move || {
            let mut conn = conn.clone();
            async move { crate::redis_conn::ping(&mut conn).await }
        }));
    }
    let queue = jobs.clone();
    checks.push(crate::ServiceCheck::with_details("task_queue", move || {
        let queue = queue.clone();
        async move {
            let depth = tokio::time::timeout(DEPTH_TIMEOUT, queue.depth())
                .await
                .map_err(|_| CheckError::TimedOut(DEPTH_TIMEOUT))?
                .map_err(CheckError::failed)?;
            Ok::<_, CheckError>(serde_json::json!({ "backend": queue.backend(), "depth": depth }))
        }
    }));
    checks
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
    fn new(task: &str, args: serde_json::Value) -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            task: task.to_owned(),
            args,
            tries: 0,
        }
    }
}

/// What a running task sees: the whole [`AppContext`] (store, mailer, renderer, queue, SSE,
/// settings, the app's services; it dereferences to it) and its own run.
#[derive(Clone)]
pub struct TaskContext {
    /// The app's services.
    pub app: AppContext,
    /// This run's task id.
    pub task_id: String,
    /// Failed attempts before this one.
    pub tries: u32,
}

impl std::ops::Deref for TaskContext {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.app
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_exponential_and_capped() {
        let o = TaskOptions::default();
        assert_eq!(o.backoff(1), Duration::from_secs(2));
        assert_eq!(o.backoff(3), Duration::from_secs(8));
        assert_eq!(o.backoff(9), Duration::from_secs(300));
        assert_eq!(o.backoff(1000), Duration::from_secs(300));
    }

    #[test]
    fn cron_patterns_are_checked() {
        let mut r = Registry::default();
        let t = || Task::new("t", |_ctx, ()| async { Ok(()) });
        assert!(r.add_cron("*/5 * * * *", t()).is_ok());
        assert!(r.add_cron("*/2 * * * * *", t()).is_ok());
        let err = r.add_cron("every day", t()).unwrap_err().to_string();
        assert!(err.contains("invalid cron pattern"), "{err}");
    }
}
