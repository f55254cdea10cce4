//! Background tasks: the functions an app registers ([`Task`], with their retry policy and
//! cron schedules), what a run sees ([`TaskContext`]), the worker that takes them from the
//! queue ([`crate::jobs`]) and runs them, and the `task` and `dead-letters` commands.
//!
//! ```no_run
//! use vibetuner::prelude::*;
//!
//! async fn nightly(ctx: TaskContext, _: ()) -> Result<()> {
//!     tracing::info!(task = %ctx.task_id, "nightly run");
//!     Ok(())
//! }
//!
//! # fn main() {
//! App::new(vibetuner::project!()).cron("0 3 * * *", Task::new("nightly", nightly));
//! # }
//! ```

mod command;
mod dead_letters;
mod worker;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::context::AppContext;
use crate::jobs::TaskName;
use crate::models::DeadLetter;

pub(crate) use command::{TaskCommand, run_task_command};
pub use dead_letters::{DeadLetterCommand, run_dead_letter_command};
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
    Failed(crate::error::Error),
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
    /// returns [`crate::error::Result`], so `?` works on store, queue, template and `anyhow` errors;
    /// an error's detail is what retries log and the dead letter keeps.
    pub fn new<A, F, Fut>(name: impl TaskName<A>, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        F: Fn(TaskContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = crate::error::Result<()>> + Send + 'static,
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
