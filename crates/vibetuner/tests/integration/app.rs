//! The app's extension points seen through the test kit: services (`App::provide`), app-wide
//! middleware (`App::layer`), startup and shutdown hooks, app commands, typed task keys, and the
//! one `AppContext` that handlers, tasks and CRUD hooks share; and the kit itself (cookies,
//! sign-in through the outbox, waiting for tasks) on the embedded store, MongoDB and Redis.

use crate::support;
use crate::support::SOURCE;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use vibetuner::axum::extract::Request;
use vibetuner::axum::http::Method;
use vibetuner::axum::middleware::{self, Next};
use vibetuner::crud::HookContext;
use vibetuner::prelude::*;
use vibetuner::store::FieldError;
use vibetuner::testing::{TestApp, TestAppBuilder};

/// An app service: a greeting and a counter of startup/shutdown hook runs.
struct Greeter {
    greeting: String,
    started: AtomicUsize,
    stopped: AtomicUsize,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Memo {
    text: String,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    shouted: Option<String>,
}

impl Model for Memo {
    const COLLECTION: &'static str = "memos";

    fn validate(&self) -> std::result::Result<(), FieldError> {
        Ok(())
    }
}

const SHOUT: TaskKey<Id> = TaskKey::new("shout");

async fn shout(ctx: TaskContext, id: Id) -> Result<()> {
    let memos = ctx.store().models::<Memo>();
    let mut memo = memos.get(id).await?.ok_or_else(Error::not_found)?;
    let greeter = ctx.service::<Arc<Greeter>>()?;
    memo.shouted = Some(format!("{} {}", greeter.greeting, memo.text.to_uppercase()));
    memos.save(&mut memo).await?;
    Ok(())
}

async fn greet(Service(greeter): Service<Arc<Greeter>>, ctx: AppContext) -> String {
    format!("{} from {}", greeter.greeting, ctx.project().project_slug)
}

async fn stamp(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert("x-app-layer", "on".parse().unwrap());
    response
}

fn app(greeter: Arc<Greeter>) -> App {
    App::new(SOURCE)
        .provide(greeter)
        .route("/greet", get(greet))
        .layer(middleware::from_fn(stamp))
        .crud(
            Crud::<Memo>::new("/api/memos")
                .public()
                .pre_create(|ctx: HookContext, mut memo: Memo| async move {
                    memo.owner = ctx.user().and_then(|u| u.email.clone());
                    Ok(memo)
                })
                .post_create(|ctx, memo| async move {
                    ctx.jobs().enqueue(SHOUT, &memo.id).await?;
                    Ok(())
                }),
        )
        .task(Task::new(SHOUT, shout))
        .on_startup(|ctx| async move {
            let greeter = ctx.service::<Arc<Greeter>>()?;
            greeter.started.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .on_shutdown(|ctx| async move {
            let greeter = ctx.service::<Arc<Greeter>>()?;
            greeter.stopped.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
}

fn greeter() -> Arc<Greeter> {
    Arc::new(Greeter {
        greeting: "hello".into(),
        started: AtomicUsize::new(0),
        stopped: AtomicUsize::new(0),
    })
}

/// Handlers, tasks and hooks share one context; services, layers and hooks work; the kit's
/// sign-in, cookies and task waiting work on `builder`'s backends.
async fn the_context_reaches_handlers_tasks_and_hooks(builder: fn(App) -> TestAppBuilder) {
    let greeter = greeter();
    let app = builder(app(greeter.clone())).start().await;
    assert_eq!(
        greeter.started.load(Ordering::SeqCst),
        1,
        "on_startup ran once"
    );

    let anonymous = app.client();
    let greeting = anonymous.get("/greet").await;
    assert_eq!(greeting.status(), 200);
    assert_eq!(greeting.text(), "hello from fixture");
    assert_eq!(
        greeting.header("x-app-layer"),
        Some("on"),
        "App::layer wraps app routes"
    );
    let login = anonymous.get("/auth/login").await;
    assert_eq!(
        login.header("x-app-layer"),
        Some("on"),
        "and the framework's pages"
    );

    let ada = app.sign_in("ada@example.com").await;
    assert!(
        ada.cookie("session").is_some(),
        "the client keeps the session cookie"
    );
    let created = ada
        .post_json("/api/memos", &json!({ "text": "ship it" }))
        .await;
    assert_eq!(created.status(), 201, "{}", created.text());
    let memo: Value = created.json();
    assert_eq!(
        memo["owner"], "ada@example.com",
        "the hook saw the signed-in user"
    );

    let id = memo["id"].as_str().unwrap().to_owned();
    app.wait_for_tasks().await;
    let read: Value = ada.get_json(&format!("/api/memos/{id}")).await.json();
    assert_eq!(
        read["shouted"], "hello SHIP IT",
        "the task used the store and the service"
    );

    let by_anonymous: Value = anonymous
        .post_json("/api/memos", &json!({ "text": "psst" }))
        .await
        .json();
    assert_eq!(by_anonymous["owner"], Value::Null);

    app.stop().await;
    assert_eq!(
        greeter.stopped.load(Ordering::SeqCst),
        1,
        "on_shutdown ran once"
    );
}

fn embedded(app: App) -> TestAppBuilder {
    TestApp::builder(app)
}

fn mongodb(app: App) -> TestAppBuilder {
    TestApp::builder(app).mongodb(support::mongodb_url())
}

fn redis(app: App) -> TestAppBuilder {
    TestApp::builder(app).redis(support::redis_url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_on_the_embedded_store() {
    the_context_reaches_handlers_tasks_and_hooks(embedded).await;
}

#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_on_mongodb() {
    the_context_reaches_handlers_tasks_and_hooks(mongodb).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_with_redis() {
    the_context_reaches_handlers_tasks_and_hooks(redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_service_is_a_500_naming_it() {
    let app = TestApp::new(App::new(SOURCE).route("/greet", get(greet))).await;
    let response = app.client().get_json("/greet").await;
    assert_eq!(response.status(), 500);
    // The detail is logged, not shown: the client sees a generic message.
    assert_eq!(response.json::<Value>()["detail"], "Internal Server Error");
    assert!(app.get::<Arc<Greeter>>().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_overrides_and_htmx_requests() {
    let app = TestApp::builder(App::new(SOURCE))
        .setting("AUTH_RATE_LIMIT", "1/minute")
        .setting("MY_LIMIT", "42")
        .start()
        .await;
    assert_eq!(app.settings().get::<u32>("MY_LIMIT").unwrap(), Some(42));
    assert!(app.settings().get::<u32>("NOT_SET").unwrap().is_none());
    let bad = app.settings().get::<u32>("AUTH_RATE_LIMIT").unwrap_err();
    assert!(bad.to_string().contains("AUTH_RATE_LIMIT"), "{bad}");

    let client = app.client();
    let first = client
        .post_form("/auth/magic-link-login", &[("email", "bo@example.com")])
        .await;
    assert_eq!(first.status(), 200);
    let second = client
        .post_form("/auth/magic-link-login", &[("email", "bo@example.com")])
        .await;
    assert_eq!(second.status(), 429, "the overridden rate limit applies");
    assert_eq!(app.outbox().len(), 1);

    let guarded = client.request(Method::GET, "/user/").htmx().send().await;
    assert_eq!(guarded.status(), 401);
    assert!(guarded.header("hx-redirect").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_commands_parse_their_arguments_and_see_the_context() {
    #[derive(vibetuner::clap::Args)]
    struct Seed {
        /// How many memos.
        #[arg(long)]
        count: u32,
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let app = || {
        App::new(SOURCE).model::<Memo>().command(
            "seed",
            "Insert memos",
            |ctx, args: Seed| async move {
                for n in 0..args.count {
                    let memo = Memo {
                        text: format!("memo {n}"),
                        owner: None,
                        shouted: None,
                    };
                    ctx.store().models::<Memo>().insert(memo).await?;
                }
                Ok(())
            },
        )
    };
    let args = |extra: &[&str]| {
        let mut v = vec!["demo".to_owned()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let env = [
        ("DATA_DIR", data.clone()),
        ("ENVIRONMENT", "dev".to_owned()),
    ];
    let run = |extra: Vec<String>| app().run_with_env(extra, env.clone());
    let code = run(args(&["seed", "--count", "3"])).await;
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let store = Store::embedded(&dir.path().join("store.sqlite3")).unwrap();
    let count = store.models::<Memo>().count(&Filter::All).await.unwrap();
    assert_eq!(count, 3);
    let bad = run(args(&["seed", "--count", "many"])).await;
    assert_eq!(
        bad,
        std::process::ExitCode::from(2),
        "clap rejects a bad argument"
    );

    let clash = std::panic::catch_unwind(|| {
        App::new(SOURCE).command("serve", "Clash", |_ctx, _: Seed| async { Ok(()) })
    });
    assert!(clash.is_err(), "a framework command name cannot be taken");
}
