//! The app a new user built to try the framework, written with today's API and driven end to
//! end on both backends: signed-in users save links (url, tags) through an owner-only JSON API,
//! a hook enforces a per-user limit read from the app's own setting, a task fills in each
//! link's title, a daily cron purges archived links after a retention period (another app
//! setting), and list fields filter the same on both stores. The whole app is `app()` below.

use crate::support::SOURCE;
use crate::support::TestStore;
use serde_json::{Value, json};
use vibetuner::prelude::*;

/// A saved link; the owner and the title are the server's to write.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Link {
    owner_id: Id,
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    archived: bool,
}

impl Model for Link {
    const COLLECTION: &'static str = "links";

    fn indexes() -> Vec<Index> {
        vec![Index::on(["owner_id", "db_insert_dt"])]
    }

    fn validate(&self) -> Result<(), FieldError> {
        if self.url.starts_with("https://") || self.url.starts_with("http://") {
            Ok(())
        } else {
            Err(FieldError::new(
                "url",
                "must start with http:// or https://",
            ))
        }
    }
}

const FILL_TITLE: TaskKey<Id> = TaskKey::new("fill_title");

/// Titles a link after its host (a real app would fetch the page).
async fn fill_title(ctx: TaskContext, id: Id) -> Result<()> {
    let links = ctx.store().models::<Link>();
    let Some(mut link) = links.get(id).await? else {
        return Ok(());
    };
    let host = link.url.split('/').nth(2).unwrap_or_default().to_owned();
    link.title = Some(host);
    links.save(&mut link).await?;
    Ok(())
}

/// Deletes archived links older than `ARCHIVE_RETENTION_DAYS` (30 by default).
async fn purge_archived(ctx: TaskContext, _: ()) -> Result<()> {
    let days: i64 = ctx.settings().get("ARCHIVE_RETENTION_DAYS")?.unwrap_or(30);
    let cutoff = Timestamp::from_millis(Timestamp::now().millis() - days * 86_400_000);
    let old = Filter::eq("archived", true).and(Filter::lte("db_update_dt", cutoff));
    ctx.store().models::<Link>().delete_many(old).await?;
    Ok(())
}

fn app() -> App {
    App::new(SOURCE)
        .crud(
            Crud::<Link>::new("/api/links")
                .owned_by("owner_id")
                .read_only(["title"])
                .filterable(["tags", "archived"])
                .sortable(["db_insert_dt"])
                .pre_create(|ctx, link| async move {
                    let max: u64 = ctx.settings().get("MAX_LINKS_PER_USER")?.unwrap_or(100);
                    let mine = Filter::eq("owner_id", ctx.user_id()?);
                    if ctx.store().models::<Link>().count(&mine).await? >= max {
                        return Err(Error::new(
                            StatusCode::CONFLICT,
                            format!("you already keep {max} links; archive some first"),
                        ));
                    }
                    Ok(link)
                })
                .post_create(|ctx, link| async move {
                    ctx.jobs().enqueue(FILL_TITLE, &link.id).await?;
                    Ok(())
                }),
        )
        .task(Task::new(FILL_TITLE, fill_title))
        .cron("0 3 * * *", Task::new("purge_archived", purge_archived))
        .route("/limits", get(limits))
}

/// `GET /limits`: the app's own setting, read by a handler.
async fn limits(settings: Settings) -> Result<String> {
    let max: u64 = settings.get("MAX_LINKS_PER_USER")?.unwrap_or(100);
    Ok(format!("{max} links per user"))
}

fn urls(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|l| l["url"].as_str().expect("a url"))
        .collect()
}

async fn links_app(t: TestStore) {
    let app = t
        .test_app(app())
        .setting("MAX_LINKS_PER_USER", "2")
        .setting("ARCHIVE_RETENTION_DAYS", "0")
        .start()
        .await;
    let ada = app.sign_in("ada@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    assert_eq!(ada.get("/limits").await.text(), "2 links per user");

    for (url, tags) in [
        ("https://rust-lang.org/learn", json!(["rust", "web"])),
        ("https://htmx.org/docs", json!(["web"])),
    ] {
        let res = ada
            .post_json("/api/links", &json!({ "url": url, "tags": tags }))
            .await;
        assert_eq!(res.status(), 201, "{}", res.text());
    }
    let third = ada
        .post_json("/api/links", &json!({ "url": "https://example.org" }))
        .await;
    assert_eq!(third.status(), 409, "the app's own limit, from its setting");
    assert!(third.text().contains("you already keep 2 links"));
    let res = bob
        .post_json(
            "/api/links",
            &json!({ "url": "https://bob.example", "tags": ["web"] }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let invalid = bob
        .post_json("/api/links", &json!({ "url": "ftp://x" }))
        .await;
    assert_eq!(invalid.status(), 422);
    assert!(invalid.text().contains("must start with http"));

    // List fields filter by membership, on both stores; each user sees only their links.
    let web: Value = ada
        .get_json("/api/links?tags=web&sort=db_insert_dt")
        .await
        .json();
    assert_eq!(
        urls(&web),
        ["https://rust-lang.org/learn", "https://htmx.org/docs"]
    );
    let rust: Value = ada.get_json("/api/links?tags=rust").await.json();
    assert_eq!(urls(&rust), ["https://rust-lang.org/learn"]);
    let bobs: Value = bob.get_json("/api/links?tags=web").await.json();
    assert_eq!(urls(&bobs), ["https://bob.example"]);

    // The task filled in the titles; clients cannot write them.
    app.wait_for_tasks().await;
    let id = web["items"][1]["id"].as_str().unwrap().to_owned();
    let link: Value = ada.get_json(&format!("/api/links/{id}")).await.json();
    assert_eq!(link["title"], "htmx.org");
    let res = ada
        .patch_json(&format!("/api/links/{id}"), &json!({ "title": "mine" }))
        .await;
    assert_eq!(res.status(), 422);

    // Archived, then purged by the cron task (run now, as `task run purge_archived` would).
    let res = ada
        .patch_json(&format!("/api/links/{id}"), &json!({ "archived": true }))
        .await;
    assert_eq!(res.status(), 200);
    let archived: Value = ada.get_json("/api/links?archived=true").await.json();
    assert_eq!(urls(&archived), ["https://htmx.org/docs"]);
    app.jobs().enqueue("purge_archived", &()).await.unwrap();
    app.wait_for_tasks().await;
    assert_eq!(
        ada.get_json(&format!("/api/links/{id}")).await.status(),
        404
    );
    let left: Value = ada.get_json("/api/links").await.json();
    assert_eq!(urls(&left), ["https://rust-lang.org/learn"]);
    let bobs: Value = bob.get_json("/api/links").await.json();
    assert_eq!(bobs["total"], 1, "another user's links are untouched");
    app.stop().await;
}

on_both_backends!(links_app);
