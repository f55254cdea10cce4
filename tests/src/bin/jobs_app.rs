//! A small vibetuner app for the worker and SSE end-to-end tests and the jobs benchmark:
//! tasks that record their progress in the store, sleep, block their thread, crash the worker
//! or do nothing,
//! and routes to enqueue them, write and read marks and broadcast SSE events.

use std::process::ExitCode;
use std::time::Duration;

use vibetuner::prelude::*;
use vibetuner::store::bson::doc;

const SOURCE: vibetuner::ProjectSource = vibetuner::ProjectSource {
    answers: "[project]\nproject_name = \"Jobs App\"\nproject_slug = \"jobs-app\"\n",
    version: "0.1.0",
    manifest_dir: env!("CARGO_MANIFEST_DIR"),
};

/// Arguments of `slow`.
#[derive(Serialize, Deserialize)]
struct Slow {
    key: String,
    ms: u64,
}

/// Marks `started`, sleeps (`ms` the first time, briefly when a run was started before, so a
/// test can kill the first run without racing its end), marks `done`; each mark records the
/// worker's pid.
async fn slow(ctx: TaskContext, args: Slow) -> Result<()> {
    let marks = ctx.store().collection("marks");
    let pid = std::process::id() as i64;
    let rerun = marks.count(&Filter::eq("key", args.key.as_str())).await? > 0;
    marks
        .insert(doc! { "key": &args.key, "stage": "started", "pid": pid })
        .await?;
    let ms = if rerun { args.ms.min(200) } else { args.ms };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    marks
        .insert(doc! { "key": &args.key, "stage": "done", "pid": pid })
        .await?;
    Ok(())
}

fn main() -> ExitCode {
    App::new(SOURCE)
        .task(Task::new("slow", slow).timeout(Duration::from_secs(120)))
        .task(Task::new("block", |_ctx, secs: u64| async move {
            std::thread::sleep(Duration::from_secs(secs));
            Ok(())
        }))
        .task(Task::new("noop", |_ctx, _n: u64| async { Ok(()) }))
        .task(Task::new("crash", |_ctx, ()| async { std::process::abort() }).max_retries(1))
        .sse("/events", "demo")
        .route("/enqueue/{task}", post(enqueue))
        .route("/marks/{key}", get(marks).post(write_mark))
        .route("/broadcast/{channel}", post(broadcast))
        .run()
}

/// `POST /enqueue/{task}` with the JSON arguments: the task id.
async fn enqueue(
    jobs: Jobs,
    Path(task): Path<String>,
    Json(args): Json<serde_json::Value>,
) -> Result<String> {
    Ok(jobs.enqueue(&task, &args).await?)
}

/// `GET /marks/{key}`: `[{stage, pid}]` in insertion order.
async fn marks(store: Store, Path(key): Path<String>) -> Result<Json<serde_json::Value>> {
    let found = store
        .collection("marks")
        .find(&vibetuner::Query::filter(Filter::eq("key", key)))
        .await?;
    Ok(Json(serde_json::Value::Array(
        found
            .iter()
            .map(|d| {
                serde_json::json!({
                    "stage": d.get_str("stage").unwrap_or_default(),
                    "pid": vibetuner::store::to_api_json(d.get("pid").unwrap_or(&vibetuner::store::bson::Bson::Null)),
                })
            })
            .collect(),
    )))
}

/// `POST /marks/{key}`: stores a `written` mark; its id once it is stored.
async fn write_mark(store: Store, Path(key): Path<String>) -> Result<String> {
    let id = store
        .collection("marks")
        .insert(doc! { "key": key, "stage": "written", "pid": std::process::id() as i64 })
        .await?;
    Ok(id.to_string())
}

/// `POST /broadcast/{channel}` with the data as body: the event id.
async fn broadcast(
    broadcaster: Broadcaster,
    Path(channel): Path<String>,
    body: String,
) -> Result<String> {
    broadcaster.broadcast(&channel, "message", body).await
}
