//! The worker: fetches runs, executes them with a timeout, retries with backoff, writes dead
//! letters, renews its runs' visibility and its heartbeat, fires cron schedules, and exits
//! through a watchdog when its runtime stalls.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{CronEntry, Registry, TaskContext, TaskOutcome};
use crate::config::{JobsSettings, Settings};
use crate::context::AppContext;
use crate::jobs::Delivery;
use crate::jobs::{FETCH_BLOCK, now_ms};
use crate::jobs::{Jobs, Queue};
use crate::models::DeadLetter;
use crate::store::Timestamp;

/// How many missed heartbeats make a worker dead for `worker-health`.
const MISSED_BEATS: u64 = 3;

/// A worker over the app's queue; build it with [`Worker::new`] and [`Worker::run`] it.
pub struct Worker {
    shared: Arc<Shared>,
    id: String,
    concurrency: usize,
    visibility: Duration,
    heartbeat_every: Duration,
    stall_timeout: Option<Duration>,
    grace: Duration,
}

struct Shared {
    app: AppContext,
    tasks: Arc<Registry>,
    inflight: Mutex<HashMap<String, Delivery>>,
}

impl Worker {
    /// A worker for a built app; `concurrency` overrides `WORKER_CONCURRENCY`.
    pub fn new(built: &crate::app::BuiltApp, concurrency: Option<usize>) -> Self {
        let settings = built.jobs_settings();
        Self {
            shared: Arc::new(Shared {
                app: built.context.clone(),
                tasks: built.tasks.clone(),
                inflight: Mutex::new(HashMap::new()),
            }),
            id: format!(
                "{}-{}-{}",
                hostname(),
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            concurrency: concurrency.unwrap_or(settings.worker_concurrency).max(1),
            visibility: Duration::from_secs(settings.visibility_timeout_secs),
            heartbeat_every: Duration::from_secs(settings.heartbeat_interval_secs),
            stall_timeout: None,
            grace: Duration::from_secs(built.settings().shutdown_timeout_secs),
        }
    }

    /// Exits the process with status 1 when the runtime stalls for `WORKER_STALL_TIMEOUT`
    /// (the `worker` command turns this on; an in-process worker leaves it to the server).
    pub fn with_watchdog(mut self, settings: &JobsSettings) -> Self {
        self.stall_timeout = Some(Duration::from_secs(settings.stall_timeout_secs));
        self
    }

    /// This worker's id (host, pid and a random suffix).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until `shutdown` resolves, then lets running tasks finish for `SHUTDOWN_TIMEOUT`
    /// seconds and hands the rest back to the queue.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        if let Some(stall) = self.stall_timeout {
            start_watchdog(stall);
        }
        let beating = tokio::spawn(heartbeat_loop(
            self.shared.app.jobs().queue.clone(),
            self.id.clone(),
            self.heartbeat_every,
            stop_rx.clone(),
        ));
        let mut background = JoinSet::new();
        let mut crons = JoinSet::new();
        // Running tasks keep their claim renewed through the shutdown drain, until they end.
        let (drained_tx, drained_rx) = watch::channel(false);
        background.spawn(extend_loop(
            self.shared.clone(),
            self.id.clone(),
            self.visibility,
            drained_rx,
        ));
        for entry in &self.shared.tasks.crons {
            crons.spawn(cron_loop(
                self.shared.app.jobs().clone(),
                entry.clone(),
                stop_rx.clone(),
            ));
        }
        tracing::info!(
            worker = %self.id,
            queue = self.shared.app.jobs().backend(),
            concurrency = self.concurrency,
            tasks = ?self.shared.tasks.names().collect::<Vec<_>>(),
            "worker started"
        );

        let running = self.fetch_loop(stop_rx.clone()).await;
        // Cron loops end on the stop signal once a fire in progress is enqueued (aborting one
        // between the store queue's claim and its enqueue would lose that fire); a fire stuck
        // on an unreachable database does not hold up the shutdown beyond a few seconds.
        let crons_done = async { while crons.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(5), crons_done).await;
        crons.abort_all();
        self.drain(running).await;
        let _ = drained_tx.send(true);
        background.abort_all();
        self.shared.app.jobs().queue.flush().await;
        // The heartbeat loop ends on the stop signal once a beat in progress is written
        // (aborting it could let that write land after the heartbeat is cleared).
        let _ = beating.await;
        if let Err(e) = self.shared.app.jobs().queue.clear_beat(&self.id).await {
            tracing::debug!("cannot clear the worker heartbeat: {e}");
        }
        tracing::info!(worker = %self.id, "worker stopped");
    }

    async fn fetch_loop(&self, stop: watch::Receiver<bool>) -> JoinSet<()> {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut running = JoinSet::new();
        let mut failures = 0u32;
        while !*stop.borrow() {
            while running.try_join_next().is_some() {}
            let first = {
                let mut stop = stop.clone();
                tokio::select! {
                    permit = slots.clone().acquire_owned() => permit.expect("semaphore open"),
                    () = stopped(&mut stop) => break,
                }
            };
            let max = 1 + slots.available_permits();
            let deliveries = match self
                .shared
                .app
                .jobs()
                .queue
                .fetch(&self.id, max, FETCH_BLOCK)
                .await
            {
                Ok(d) => {
                    if failures > 0 {
                        tracing::info!("task queue reachable again");
                    }
                    failures = 0;
                    d
                }
                Err(e) => {
                    failures += 1;
                    let wait = Duration::from_secs(1 << failures.min(5));
                    tracing::warn!("cannot fetch tasks ({e}); retrying in {}s", wait.as_secs());
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let mut first = Some(first);
            for delivery in deliveries {
                let permit = match first.take() {
                    Some(p) => p,
                    None => slots.clone().acquire_owned().await.expect("semaphore open"),
                };
                self.shared
                    .inflight
                    .lock()
                    .expect("inflight lock")
                    .insert(delivery.receipt.clone(), delivery.clone());
                let shared = self.shared.clone();
                running.spawn(async move {
                    let receipt = delivery.receipt.clone();
                    execute(&shared, delivery).await;
                    shared
                        .inflight
                        .lock()
                        .expect("inflight lock")
                        .remove(&receipt);
                    drop(permit);
                });
            }
        }
        running
    }

    async fn drain(&self, mut running: JoinSet<()>) {
        if running.is_empty() {
            return;
        }
        tracing::info!(
            running = running.len(),
            "stopping: letting running tasks finish (up to {}s)",
            self.grace.as_secs()
        );
        let finished = tokio::time::timeout(self.grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_ok() {
            return;
        }
        running.abort_all();
        let left: Vec<Delivery> = self
            .shared
            .inflight
            .lock()
            .expect("inflight lock")
            .drain()
            .map(|(_, d)| d)
            .collect();
        for delivery in left {
            match self.shared.app.jobs().queue.release(&delivery).await {
                Ok(()) => {
                    tracing::warn!(task = %delivery.envelope.task, id = %delivery.envelope.id, "task still running at shutdown: returned to the queue")
                }
                Err(e) => {
                    tracing::error!(task = %delivery.envelope.task, id = %delivery.envelope.id, "cannot return a running task to the queue ({e}); it runs again after the visibility timeout")
                }
            }
        }
    }
}

/// A worker running inside `serve` (no Redis: the queue is in the store).
pub struct InProcessWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl InProcessWorker {
    /// Stops fetching, lets running tasks finish (or returns them) and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.handle.await;
    }
}

/// Starts the in-process worker when the app has tasks and the queue is in the store (or
/// whatever the queue, with `any_queue`: `serve --worker` with Redis). It stops
/// when `stopping` resolves (the server begins its shutdown, so both drain at once) or at
/// [`InProcessWorker::stop`].
pub(crate) fn spawn_in_process(
    built: &crate::app::BuiltApp,
    stopping: impl Future<Output = ()> + Send + 'static,
    any_queue: bool,
) -> Option<InProcessWorker> {
    if !any_queue && !built.jobs().queue.serves_in_process() {
        return None;
    }
    spawn(built, stopping)
}

/// Starts a worker in this process whatever the queue, when the app has tasks (the test kit's).
#[cfg(feature = "testing")]
pub(crate) fn spawn_background(built: &crate::app::BuiltApp) -> Option<InProcessWorker> {
    spawn(built, std::future::pending())
}

fn spawn(
    built: &crate::app::BuiltApp,
    stopping: impl Future<Output = ()> + Send + 'static,
) -> Option<InProcessWorker> {
    if built.tasks.tasks.is_empty() {
        return None;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(built, None);
    let handle = tokio::spawn(worker.run(async move {
        tokio::select! {
            _ = stopped => {}
            () = stopping => {}
        }
    }));
    Some(InProcessWorker { stop, handle })
}

/// Why a run failed, for logs and dead letters.
struct Failure {
    kind: &'static str,
    message: String,
    retryable: bool,
}

async fn execute(shared: &Shared, delivery: Delivery) {
    let Delivery {
        envelope,
        receipt,
        reclaimed,
    } = delivery;
    let queue = &shared.app.jobs().queue;
    let task = shared.tasks.get(&envelope.task).cloned();
    if reclaimed {
        // Losing the worker counted as a failed try (the queue did it), so a task that kills
        // its worker every time ends as a dead letter instead of looping.
        tracing::warn!(task = %envelope.task, id = %envelope.id, tries = envelope.tries, "taking over a task whose worker stopped (crashed, killed or stalled)");
    }
    let lost = task
        .as_ref()
        .filter(|t| reclaimed && envelope.tries > t.options.max_retries);
    let ctx = TaskContext {
        app: shared.app.clone(),
        task_id: envelope.id.clone(),
        tries: envelope.tries,
    };
    let failure = match &task {
        _ if lost.is_some() => Some(Failure {
            kind: "WorkerLost",
            message: format!(
                "the worker running it stopped (crashed, killed or stalled) on each of {} attempts",
                envelope.tries
            ),
            retryable: false,
        }),
        None => Some(Failure {
            kind: "UnknownTask",
            // Retried: during a rolling deploy a newer worker may know it.
            message: format!(
                "no task named {:?} is registered in this worker",
                envelope.task
            ),
            retryable: true,
        }),
        Some(task) => {
            let started = std::time::Instant::now();
            let handle = tokio::spawn((task.handler)(ctx.clone(), envelope.args.clone()));
            let abort = AbortOnDrop(handle.abort_handle());
            let failure = match tokio::time::timeout(task.options.timeout, handle).await {
                Ok(Ok(TaskOutcome::Done)) => None,
                Ok(Ok(TaskOutcome::Failed(e))) => Some(Failure {
                    kind: "Error",
                    message: e.detail().to_owned(),
                    retryable: true,
                }),
                Ok(Ok(TaskOutcome::BadArguments(e))) => Some(Failure {
                    kind: "InvalidArguments",
                    message: e,
                    retryable: false,
                }),
                Ok(Err(e)) => Some(Failure {
                    kind: "Panic",
                    message: panic_message(e),
                    retryable: true,
                }),
                Err(_) => {
                    drop(abort);
                    Some(Failure {
                        kind: "Timeout",
                        message: format!("timed out after {}s", task.options.timeout.as_secs_f64()),
                        retryable: true,
                    })
                }
            };
            tracing::debug!(task = %envelope.task, id = %envelope.id, ms = started.elapsed().as_millis() as u64, ok = failure.is_none(), "task run");
            failure
        }
    };
    let Some(failure) = failure else {
        if let Err(e) = queue.complete(&receipt).await {
            tracing::warn!(task = %envelope.task, id = %envelope.id, "cannot acknowledge a finished task ({e}); it may run again");
        }
        return;
    };
    let tries = if lost.is_some() {
        envelope.tries
    } else {
        envelope.tries + 1
    };
    let options = task.as_ref().map(|t| t.options.clone()).unwrap_or_default();
    if failure.retryable && tries <= options.max_retries {
        let delay = options.backoff(tries);
        tracing::warn!(
            task = %envelope.task, id = %envelope.id, tries, error_type = failure.kind,
            "task failed: {}; retrying in {:.1}s", failure.message, delay.as_secs_f64()
        );
        let mut next = envelope.clone();
        next.tries = tries;
        if let Err(e) = queue.reschedule(&receipt, &next, delay).await {
            tracing::error!(task = %envelope.task, id = %envelope.id, "cannot schedule the retry ({e}); it runs again after the visibility timeout");
        }
        return;
    }
    let dead = DeadLetter {
        task_name: envelope.task.clone(),
        task_id: envelope.id.clone(),
        args: envelope.args.clone(),
        error: failure.message.clone(),
        error_type: failure.kind.to_owned(),
        tries,
        failed_at: Timestamp::now(),
    };
    tracing::error!(
        task = %envelope.task, id = %envelope.id, tries, error_type = failure.kind,
        "task failed for good: {}; stored as a dead letter", failure.message
    );
    if let Err(e) = shared
        .app
        .store()
        .models::<DeadLetter>()
        .insert(dead.clone())
        .await
    {
        tracing::error!(task = %envelope.task, id = %envelope.id, "cannot store the dead letter ({e}); the task stays queued and fails again later");
        let mut next = envelope.clone();
        next.tries = envelope.tries;
        let _ = queue
            .reschedule(&receipt, &next, Duration::from_secs(60))
            .await;
        return;
    }
    if let Some(callback) = task.as_ref().and_then(|t| t.on_failure.clone())
        && let Err(e) = tokio::spawn(callback(ctx, dead)).await
    {
        tracing::error!(task = %envelope.task, "the failure callback panicked: {}", panic_message(e));
    }
    if let Err(e) = queue.complete(&receipt).await {
        tracing::warn!(task = %envelope.task, id = %envelope.id, "cannot remove a dead-lettered task ({e})");
    }
}

/// Aborts the task when dropped: a run cancelled at shutdown or timed out stops its handler.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .map_or_else(
                || "task panicked".to_owned(),
                |m| format!("task panicked: {m}"),
            ),
        Err(e) => format!("task cancelled: {e}"),
    }
}

async fn heartbeat_loop(
    heartbeat: Queue,
    id: String,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = heartbeat.beat(&id).await {
                    tracing::warn!("cannot renew the worker heartbeat: {e}");
                }
            }
            () = stopped(&mut stop) => return,
        }
    }
}

async fn extend_loop(
    shared: Arc<Shared>,
    id: String,
    visibility: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(visibility / 3);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stopped(&mut stop) => return,
        }
        let receipts: Vec<String> = shared
            .inflight
            .lock()
            .expect("inflight lock")
            .keys()
            .cloned()
            .collect();
        if receipts.is_empty() {
            continue;
        }
        if let Err(e) = shared.app.jobs().queue.extend(&id, &receipts).await {
            tracing::warn!(
                running = receipts.len(),
                "cannot renew running tasks ({e}); another worker may take them over"
            );
        }
    }
}

async fn cron_loop(jobs: Jobs, entry: CronEntry, mut stop: watch::Receiver<bool>) {
    loop {
        let now = chrono::Utc::now();
        let next = match entry.cron.find_next_occurrence(&now, false) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(task = %entry.task, pattern = %entry.pattern, "cron schedule has no next time ({e}); it stops");
                return;
            }
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(&mut stop) => return,
        }
        match jobs.fire_cron(&entry.task, next.timestamp_millis()).await {
            Ok(Some(id)) => tracing::info!(task = %entry.task, %id, "cron fired"),
            Ok(None) => {}
            Err(e) => tracing::error!(task = %entry.task, "cannot enqueue the cron run: {e}"),
        }
    }
}

/// Exits the process when the async runtime has not ticked for `stall`: a stalled worker
/// (a task blocking its threads, a deadlock) is restarted by its supervisor instead of hanging.
fn start_watchdog(stall: Duration) {
    let last = Arc::new(AtomicI64::new(now_ms()));
    let ticker = last.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            ticker.store(now_ms(), Ordering::Relaxed);
        }
    });
    std::thread::Builder::new()
        .name("worker-watchdog".into())
        .spawn(move || {
            loop {
                let before = std::time::Instant::now();
                std::thread::sleep(Duration::from_millis(500));
                if before.elapsed() > Duration::from_secs(2) {
                    // The whole process was suspended (SIGSTOP, a paused VM), not its runtime:
                    // give the runtime a fresh interval to show it is alive.
                    last.store(now_ms(), Ordering::Relaxed);
                    continue;
                }
                let silent = now_ms() - last.load(Ordering::Relaxed);
                if silent > stall.as_millis() as i64 {
                    eprintln!(
                        "error: worker stalled: its runtime has not run for {:.1}s (WORKER_STALL_TIMEOUT={}s); exiting with status 1 so the supervisor restarts it",
                        silent as f64 / 1000.0,
                        stall.as_secs()
                    );
                    std::process::exit(1);
                }
            }
        })
        .expect("the watchdog thread starts");
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

/// The answer of `worker-health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerHealth {
    /// A worker renewed its heartbeat recently.
    pub healthy: bool,
    /// What was found, for people.
    pub detail: String,
}

/// Checks that a worker renewed its heartbeat within three heartbeat intervals, reading only
/// the settings and Redis (or the heartbeat file without Redis): no app start-up, well under a
/// second.
#[cfg_attr(not(feature = "redis"), allow(unused_variables))]
pub async fn worker_health(settings: &Settings, root: &Path, slug: &str) -> WorkerHealth {
    let jobs = match JobsSettings::from_source(&settings.source) {
        Ok(j) => j,
        Err(e) => {
            return WorkerHealth {
                healthy: false,
                detail: e.to_string(),
            };
        }
    };
    let window = (jobs.heartbeat_interval_secs * MISSED_BEATS * 1000) as i64;
    let newest = match &settings.redis_url {
        #[cfg(feature = "redis")]
        Some(url) => crate::jobs::newest_redis_beat(url, &jobs.key_prefix(slug)).await,
        #[cfg(not(feature = "redis"))]
        Some(_) => Err(crate::redis_conn::DISABLED.to_owned()),
        None => crate::jobs::newest_file_beat(&crate::jobs::heartbeat_file(settings, root)),
    };
    match newest {
        Err(detail) => WorkerHealth {
            healthy: false,
            detail,
        },
        Ok(None) => WorkerHealth {
            healthy: false,
            detail: "no worker has sent a heartbeat: is `worker` running?".into(),
        },
        Ok(Some(ms)) => {
            let age = now_ms() - ms;
            WorkerHealth {
                healthy: age <= window,
                detail: format!(
                    "newest worker heartbeat {:.1}s ago (limit {}s)",
                    age as f64 / 1000.0,
                    window / 1000
                ),
            }
        }
    }
}
