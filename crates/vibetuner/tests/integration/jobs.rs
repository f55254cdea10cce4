//! Background jobs in-process against real backends: the Redis queue (`TEST_REDIS_URL`), and the
//! store queue on the embedded store and MongoDB (`TEST_MONGODB_URL`).

use crate::support;
use crate::support::SOURCE;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use vibetuner::config::Source;
use vibetuner::models::DeadLetter;
use vibetuner::store::bson::doc;
use vibetuner::tasks::{DeadLetterCommand, Worker, run_dead_letter_command, worker_health};
use vibetuner::{App, BuiltApp, Filter, Settings, Task, TaskContext};

use crate::support::{eventually, mongodb_url, redis_url, unique_name};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Redis,
    Embedded,
    Mongo,
}

struct Env {
    built: BuiltApp,
    settings: Settings,
    root: std::path::PathBuf,
    _data: Arc<tempfile::TempDir>,
}

fn pairs(kind: Kind, data: &Path, prefix: &str) -> Vec<(String, String)> {
    let mut pairs = vec![
        ("DATA_DIR".to_owned(), data.display().to_string()),
        ("WORKER_HEARTBEAT_INTERVAL".into(), "1".into()),
        ("SHUTDOWN_TIMEOUT".into(), "1".into()),
        ("TASK_VISIBILITY_TIMEOUT".into(), "2".into()),
    ];
    match kind {
        Kind::Redis => {
            pairs.push(("REDIS_URL".into(), redis_url()));
            pairs.push(("REDIS_KEY_PREFIX".into(), format!("{prefix}:")));
        }
        Kind::Mongo => pairs.push((
            "MONGODB_URL".into(),
            format!("{}/{prefix}", mongodb_url().trim_end_matches('/')),
        )),
        Kind::Embedded => {}
    }
    pairs
}

async fn build_in(app: App, kind: Kind, data: Arc<tempfile::TempDir>, prefix: &str) -> Env {
    build_with(app, kind, data, prefix, &[]).await
}

/// [`build_in`] with some settings replaced.
async fn build_with(
    app: App,
    kind: Kind,
    data: Arc<tempfile::TempDir>,
    prefix: &str,
    overrides: &[(&str, &str)],
) -> Env {
    let mut pairs = pairs(kind, data.path(), prefix);
    for (key, value) in overrides {
        pairs.retain(|(k, _)| k != key);
        pairs.push(((*key).to_owned(), (*value).to_owned()));
    }
    let settings = Settings::from_source(Source::from_pairs(pairs)).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    let built = app.build(settings.clone(), &root).await.unwrap();
    built.ensure_indexes().await.unwrap();
    Env {
        built,
        settings,
        root,
        _data: data,
    }
}

async fn build(app: App, kind: Kind) -> Env {
    let data = Arc::new(tempfile::tempdir().unwrap());
    build_in(app, kind, data, &unique_name("jobs")).await
}

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("the worker stops")
            .unwrap();
    }
}

fn start_worker(env: &Env) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(&env.built, Some(4));
    let handle = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    Running { stop, handle }
}

#[derive(Serialize, Deserialize)]
struct Add {
    key: String,
    a: i64,
    b: i64,
}

async fn add(ctx: TaskContext, args: Add) -> vibetuner::Result<()> {
    ctx.store()
        .collection("results")
        .insert(doc! { "key": args.key, "sum": args.a + args.b, "task_id": ctx.task_id })
        .await?;
    Ok(())
}

async fn result(env: &Env, key: &str) -> Option<bson::Document> {
    env.built
        .store()
        .collection("results")
        .find_one(Filter::eq("key", key))
        .await
        .unwrap()
}

/// Waits until `env`'s queue holds no run: none ready, taken by a worker and not acknowledged,
/// or delayed. After that nothing more can run, so "ran once" can be checked without a fixed wait.
async fn drained(env: &Env) {
    eventually(30, "the queue to drain", || async {
        let depth = env.built.jobs().depth().await.ok()?;
        (depth.ready == 0 && depth.delayed == 0).then_some(())
    })
    .await;
}

/// An integer field, whichever width the backend stored it with.
fn number(value: &bson::Bson) -> Option<i64> {
    match value {
        bson::Bson::Int32(n) => Some(i64::from(*n)),
        bson::Bson::Int64(n) => Some(*n),
        _ => None,
    }
}

async fn enqueue_run_result(kind: Kind) {
    let env = build(App::new(SOURCE).task(Task::new("add", add)), kind).await;
    let jobs = &env.built.jobs();
    let err = jobs.enqueue("nope", &()).await.unwrap_err();
    assert!(err.to_string().contains("no task named \"nope\""), "{err}");

    let id = jobs
        .enqueue(
            "add",
            &Add {
                key: "now".into(),
                a: 2,
                b: 3,
            },
        )
        .await
        .unwrap();
    jobs.enqueue_in(
        "add",
        &Add {
            key: "later".into(),
            a: 1,
            b: 1,
        },
        Duration::from_secs(4),
    )
    .await
    .unwrap();
    let depth = jobs.depth().await.unwrap();
    assert_eq!((depth.ready, depth.delayed), (1, 1), "{depth:?}");

    let worker = start_worker(&env);
    let done = eventually(10, "the task result", || result(&env, "now")).await;
    assert_eq!(done.get("sum").and_then(number).unwrap(), 5);
    assert_eq!(done.get_str("task_id").unwrap(), id);
    let later = eventually(20, "the delayed task", || result(&env, "later")).await;
    assert_eq!(later.get("sum").and_then(number).unwrap(), 2);
    worker.stop().await;
    let depth = eventually(5, "an empty queue", || async {
        let d = jobs.depth().await.unwrap();
        (d.ready == 0 && d.delayed == 0).then_some(d)
    })
    .await;
    assert_eq!(depth.ready, 0);
}

per_variant!(Kind, enqueue_run_result:
    redis_enqueue_run_result => Redis,
    embedded_store_enqueue_run_result => Embedded,
    mongodb_store_enqueue_run_result => Mongo,
);

/// Redis stops: enqueueing still succeeds (the run waits in the store), and once Redis is back
/// the relay moves it over and a worker runs it exactly once.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_enqueued_while_redis_is_down_runs_once_redis_is_back() {
    let mut redis = support::OwnRedis::start();
    let url = redis.url();
    let data = Arc::new(tempfile::tempdir().unwrap());
    let app = App::new(SOURCE).task(Task::new("add", add));
    let env = build_with(
        app,
        Kind::Redis,
        data,
        &unique_name("fallback"),
        &[("REDIS_URL", &url)],
    )
    .await;
    let worker = start_worker(&env);
    redis.stop();
    let args = Add {
        key: "while-down".into(),
        a: 20,
        b: 22,
    };
    let id = env
        .built
        .jobs()
        .enqueue("add", &args)
        .await
        .expect("enqueue succeeds");
    let waiting = env.built.store().collection("task_queue");
    assert_eq!(
        waiting.count(&Filter::All).await.unwrap(),
        1,
        "the run waits in the store"
    );

    redis.restart();
    let done = eventually(30, "the task run after Redis came back", || {
        result(&env, "while-down")
    })
    .await;
    assert_eq!(done.get("sum").and_then(number), Some(42));
    assert_eq!(done.get_str("task_id").unwrap(), id);
    // Relayed once: no second run, nothing left waiting.
    eventually(30, "the store's queue to empty", || async {
        (waiting.count(&Filter::All).await.ok()? == 0).then_some(())
    })
    .await;
    drained(&env).await;
    let runs = env
        .built
        .store()
        .collection("results")
        .count(&Filter::All)
        .await
        .unwrap();
    assert_eq!(runs, 1);
    assert_eq!(waiting.count(&Filter::All).await.unwrap(), 0);
    worker.stop().await;
}

async fn retries_then_dead_letter(kind: Kind) {
    let attempts = Arc::new(AtomicU32::new(0));
    // What each run saw as `ctx.tries`, checked here rather than in the handler: an assertion
    // there would only fail the task, which is what the task does anyway.
    let tries_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel::<DeadLetter>();
    let (counter, seen_tries) = (attempts.clone(), tries_seen.clone());
    let task = Task::new("flaky", move |ctx: TaskContext, n: u32| {
        let (counter, seen_tries) = (counter.clone(), seen_tries.clone());
        async move {
            let seen = counter.fetch_add(1, Ordering::SeqCst);
            seen_tries.lock().unwrap().push(ctx.tries);
            Err(vibetuner::Error::internal(format!(
                "attempt {} of {n} failed",
                seen + 1
            )))
        }
    })
    .max_retries(2)
    .backoff(2.0, Duration::from_millis(50))
    .on_failure(move |_ctx, dead| {
        let tx = failed_tx.clone();
        async move {
            let _ = tx.send(dead);
        }
    });
    let env = build(App::new(SOURCE).task(task), kind).await;
    let id = env.built.jobs().enqueue("flaky", &7u32).await.unwrap();
    let worker = start_worker(&env);
    let dead = tokio::time::timeout(Duration::from_secs(15), failed_rx.recv())
        .await
        .expect("the failure callback runs")
        .unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 3, "first try + 2 retries");
    assert_eq!(
        *tries_seen.lock().unwrap(),
        [0, 1, 2],
        "tries counts earlier failures"
    );
    assert_eq!(dead.task_name, "flaky");
    assert_eq!(dead.task_id, id);
    assert_eq!(dead.tries, 3);
    assert_eq!(dead.error_type, "Error");
    assert_eq!(dead.error, "attempt 3 of 7 failed");
    assert_eq!(dead.args, serde_json::json!(7));
    let stored = env
        .built
        .store()
        .models::<DeadLetter>()
        .find_one(Filter::eq("task_id", id.as_str()))
        .await
        .unwrap()
        .expect("the dead letter is stored");
    assert_eq!(stored.tries, 3);

    run_dead_letter_command(
        &env.built,
        DeadLetterCommand::Retry {
            id: Some(stored.id.to_string()),
            all: false,
        },
    )
    .await
    .unwrap();
    eventually(15, "the retried task to fail again", || async {
        (attempts.load(Ordering::SeqCst) == 6).then_some(())
    })
    .await;
    let again = tokio::time::timeout(Duration::from_secs(15), failed_rx.recv())
        .await
        .expect("the failure callback runs for the retried task")
        .unwrap();
    assert_eq!((again.task_name.as_str(), again.tries), ("flaky", 3));
    assert_eq!(again.args, serde_json::json!(7));
    assert_eq!(
        *tries_seen.lock().unwrap(),
        [0, 1, 2, 0, 1, 2],
        "a dead letter sent back starts its tries again"
    );
    worker.stop().await;
    let letters = env.built.store().models::<DeadLetter>();
    assert_eq!(letters.count(&Filter::All).await.unwrap(), 1);
    run_dead_letter_command(&env.built, DeadLetterCommand::Purge { task: None })
        .await
        .unwrap();
    assert_eq!(letters.count(&Filter::All).await.unwrap(), 0);
}

per_variant!(Kind, retries_then_dead_letter:
    redis_retries_then_dead_letter_and_callback => Redis,
    embedded_store_retries_then_dead_letter_and_callback => Embedded,
);

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_timeout_and_bad_arguments_become_dead_letters() {
    let task = Task::new("sleepy", |_ctx, secs: u64| async move {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        Ok(())
    })
    .timeout(Duration::from_millis(200))
    .max_retries(0);
    let env = build(App::new(SOURCE).task(task), Kind::Redis).await;
    let slow = env.built.jobs().enqueue("sleepy", &30u64).await.unwrap();
    let bad = env.built.jobs().enqueue("sleepy", &"soon").await.unwrap();
    let worker = start_worker(&env);
    let letters = env.built.store().models::<DeadLetter>();
    for (id, kind, detail) in [
        (slow, "Timeout", "timed out after 0.2s"),
        (bad, "InvalidArguments", "invalid type"),
    ] {
        let dead = eventually(10, "the dead letter", || async {
            letters
                .find_one(Filter::eq("task_id", id.as_str()))
                .await
                .unwrap()
        })
        .await;
        assert_eq!(dead.error_type, kind);
        assert!(dead.error.contains(detail), "{}", dead.error);
        assert_eq!(dead.tries, 1);
    }
    worker.stop().await;
}

async fn cron_fires_once_per_time_across_workers(kind: Kind) {
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let tick = move || {
        let counter = counter.clone();
        Task::new("tick", move |_ctx, ()| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
    };
    let data = Arc::new(tempfile::tempdir().unwrap());
    let prefix = unique_name("cron");
    let scheduled = || App::new(SOURCE).cron("* * * * * *", tick());
    let first = build_in(scheduled(), kind, data.clone(), &prefix).await;
    let second = build_in(scheduled(), kind, data.clone(), &prefix).await;
    let (w1, w2) = (start_worker(&first), start_worker(&second));
    eventually(10, "three cron runs", || async {
        (runs.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    w1.stop().await;
    w2.stop().await;
    let fired = match kind {
        #[cfg(feature = "redis")]
        Kind::Redis => {
            let client = redis::Client::open(redis_url()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}:jobs:cron:tick:*"))
                .query_async(&mut conn)
                .await
                .unwrap();
            keys.len()
        }
        _ => first
            .built
            .store()
            .collection("task_cron_fires")
            .count(&Filter::All)
            .await
            .unwrap() as usize,
    };
    // A worker without the schedule runs whatever fired but did not run yet: every claimed fire
    // time then ran exactly once. None is lost: on Redis the claim and its enqueue are one
    // script, and a stopping worker lets a fire in progress finish.
    let drain = build_in(App::new(SOURCE).task(tick()), kind, data, &prefix).await;
    let w3 = start_worker(&drain);
    let ran = eventually(10, "every fired time to run", || async {
        let n = runs.load(Ordering::SeqCst) as usize;
        (n >= fired).then_some(n)
    })
    .await;
    drained(&drain).await;
    w3.stop().await;
    assert_eq!(
        (ran, runs.load(Ordering::SeqCst) as usize),
        (fired, fired),
        "runs for {fired} claimed fire times with two workers"
    );
}

per_variant!(Kind, cron_fires_once_per_time_across_workers:
    redis_cron_fires_once_per_time_across_workers => Redis,
    embedded_store_cron_fires_once_per_time_across_workers => Embedded,
    mongodb_store_cron_fires_once_per_time_across_workers => Mongo,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_queue_survives_a_restart() {
    let data = Arc::new(tempfile::tempdir().unwrap());
    let prefix = unique_name("restart");
    let app = || App::new(SOURCE).task(Task::new("add", add));
    {
        let before = build_in(app(), Kind::Embedded, data.clone(), &prefix).await;
        before
            .built
            .jobs()
            .enqueue(
                "add",
                &Add {
                    key: "kept".into(),
                    a: 20,
                    b: 22,
                },
            )
            .await
            .unwrap();
    }
    let after = build_in(app(), Kind::Embedded, data, &prefix).await;
    assert_eq!(after.built.jobs().depth().await.unwrap().ready, 1);
    let worker = start_worker(&after);
    let done = eventually(10, "the task enqueued before the restart", || {
        result(&after, "kept")
    })
    .await;
    assert_eq!(done.get("sum").and_then(number).unwrap(), 42);
    worker.stop().await;
}

async fn health_follows_the_worker(kind: Kind) {
    let env = build(App::new(SOURCE).task(Task::new("add", add)), kind).await;
    let slug = "fixture";
    let health = worker_health(&env.settings, &env.root, slug).await;
    assert!(!health.healthy, "{health:?}");
    let worker = start_worker(&env);
    let up = eventually(5, "a healthy worker", || async {
        let h = worker_health(&env.settings, &env.root, slug).await;
        h.healthy.then_some(h)
    })
    .await;
    assert!(up.detail.contains("heartbeat"), "{up:?}");
    worker.stop().await;
    let down = worker_health(&env.settings, &env.root, slug).await;
    assert!(
        !down.healthy,
        "a stopped worker removes its heartbeat: {down:?}"
    );
}

per_variant!(Kind, health_follows_the_worker:
    redis_worker_health_follows_the_worker => Redis,
    store_worker_health_follows_the_worker => Embedded,
);

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_running_tasks_to_the_queue() {
    let task = Task::new("hold", |ctx: TaskContext, key: String| async move {
        if ctx.tries == 0 && key == "held" {
            let first = ctx
                .store()
                .collection("results")
                .count(&Filter::eq("key", "started"))
                .await?;
            if first == 0 {
                ctx.store()
                    .collection("results")
                    .insert(doc! { "key": "started" })
                    .await?;
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
        ctx.store()
            .collection("results")
            .insert(doc! { "key": key, "sum": 1 })
            .await?;
        Ok(())
    });
    let env = build(App::new(SOURCE).task(task), Kind::Redis).await;
    env.built.jobs().enqueue("hold", &"held").await.unwrap();
    let first = start_worker(&env);
    eventually(10, "the task to start", || result(&env, "started")).await;
    first.stop().await;
    let second = start_worker(&env);
    eventually(10, "the returned task to finish on the next worker", || {
        result(&env, "held")
    })
    .await;
    second.stop().await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_finishing_during_the_shutdown_drain_is_not_taken_over() {
    let task = Task::new("long", |ctx: TaskContext, key: String| async move {
        let marks = ctx.store().collection("results");
        marks.insert(doc! { "key": "started" }).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        marks.insert(doc! { "key": key }).await?;
        Ok(())
    });
    // The drain (8 s) outlasts the visibility timeout (2 s): the stopping worker must keep
    // renewing its claim, or the other worker takes the run over and runs it a second time.
    let data = Arc::new(tempfile::tempdir().unwrap());
    let env = build_with(
        App::new(SOURCE).task(task),
        Kind::Redis,
        data,
        &unique_name("drain"),
        &[("SHUTDOWN_TIMEOUT", "8")],
    )
    .await;
    env.built.jobs().enqueue("long", &"long").await.unwrap();
    let first = start_worker(&env);
    eventually(10, "the task to start", || result(&env, "started")).await;
    let second = start_worker(&env);
    first.stop().await;
    eventually(10, "the task to finish", || result(&env, "long")).await;
    drained(&env).await;
    second.stop().await;
    let results = env.built.store().collection("results");
    assert_eq!(
        results.count(&Filter::eq("key", "started")).await.unwrap(),
        1,
        "run once, not taken over while it finished"
    );
    assert_eq!(results.count(&Filter::eq("key", "long")).await.unwrap(), 1);
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_redis_and_queue_depth() {
    let env = build(App::new(SOURCE).task(Task::new("add", add)), Kind::Redis).await;
    env.built
        .jobs()
        .enqueue_in(
            "add",
            &Add {
                key: "x".into(),
                a: 0,
                b: 0,
            },
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    for path in ["/health?detailed=true", "/health/ready"] {
        let response = env
            .built
            .router
            .clone()
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let services = &json["services"];
        assert_eq!(services["redis"]["status"], "connected", "{json}");
        assert_eq!(services["task_queue"]["backend"], "redis", "{json}");
        assert_eq!(services["task_queue"]["depth"]["delayed"], 1, "{json}");
    }
}

/// A worker dropped mid-task (as if killed: no hand-back) leaves the run to another worker after
/// the visibility timeout, and the lost worker counts as a failed try.
async fn dead_workers_task_is_taken_over(kind: Kind) {
    let task = Task::new("hang", |ctx: TaskContext, key: String| async move {
        let results = ctx.store().collection("results");
        if ctx.tries == 0 {
            results.insert(doc! { "key": "hanging" }).await?;
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        results
            .insert(doc! { "key": key, "sum": ctx.tries as i64 })
            .await?;
        Ok(())
    });
    let env = build(App::new(SOURCE).task(task), kind).await;
    env.built.jobs().enqueue("hang", &"taken").await.unwrap();
    let first = start_worker(&env);
    eventually(10, "the first worker to start the task", || {
        result(&env, "hanging")
    })
    .await;
    first.handle.abort();
    let _ = first.handle.await;
    let second = start_worker(&env);
    let done = eventually(15, "the second worker to take the task over", || {
        result(&env, "taken")
    })
    .await;
    assert_eq!(done.get("sum").and_then(number), Some(1), "one lost try");
    second.stop().await;
}

per_variant!(Kind, dead_workers_task_is_taken_over:
    redis_dead_workers_task_is_taken_over => Redis,
    embedded_store_dead_workers_task_is_taken_over => Embedded,
);
