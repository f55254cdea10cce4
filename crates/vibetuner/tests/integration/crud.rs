//! The CRUD route factory driven in-process on both backends: every query parameter, every 4xx,
//! hooks that modify or reject, unique violations, layers and route names.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::ServiceExt;
use vibetuner::Error;
use vibetuner::crud::{Crud, Operation};
use vibetuner::store::{FieldError, Filter, Index, Model};
use vibetuner::testing::{TestClient, TestResponse};

use crate::support::{SOURCE, TestStore};

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
struct Note {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    priority: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

impl Model for Note {
    const COLLECTION: &'static str = "notes";
    fn indexes() -> Vec<Index> {
        vec![Index::on(["title"]).unique()]
    }
    fn validate(&self) -> Result<(), FieldError> {
        if self.title.trim().is_empty() {
            return Err(FieldError::new("title", "must not be empty"));
        }
        Ok(())
    }
}

fn crud() -> Crud<Note> {
    Crud::<Note>::new("/api/notes")
        .public()
        .sortable(["title", "priority", "db_insert_dt"])
        .filterable(["done", "priority", "owner"])
        .searchable(["title", "body"])
}

/// A client of the CRUD routes inside a whole app (every framework layer) on the test's store.
async fn app(t: &TestStore, crud: Crud<Note>) -> TestClient {
    t.test_app(vibetuner::App::new(SOURCE).crud(crud))
        .start()
        .await
        .client()
}

/// Status and JSON body (`null` when empty) of one request, with an optional JSON body.
async fn call(
    app: &TestClient,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.request(method.parse().expect("an HTTP method"), uri);
    if let Some(v) = body {
        req = req.json(&v);
    }
    let res = req.send().await;
    (res.status(), json_or_null(&res))
}

fn json_or_null(res: &TestResponse) -> Value {
    let text = res.text();
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

fn detail(v: &Value) -> &str {
    v["detail"].as_str().unwrap_or_default()
}

async fn seed(app: &TestClient) -> Vec<String> {
    let mut ids = Vec::new();
    for (title, body, done, priority) in [
        ("Buy milk", "semi-skimmed", false, 2),
        ("Call Ana", "about the trip", true, 1),
        ("Fix bike", "rear brake (again)", false, 3),
        ("Read book", "chapter 3.1", true, 2),
    ] {
        let (status, v) = call(
            app,
            "POST",
            "/api/notes",
            Some(json!({ "title": title, "body": body, "done": done, "priority": priority })),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    ids
}

fn titles(v: &Value) -> Vec<&str> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect()
}

/// `If-Match` with the `ETag` a read answered: the change applies to that version only, and a
/// stale one answers 412 (a lost update otherwise).
async fn conditional_updates_with_if_match(t: TestStore) {
    let app = app(&t, crud()).await;
    let (_, created) = call(&app, "POST", "/api/notes", Some(json!({ "title": "A" }))).await;
    let path = format!("/api/notes/{}", created["id"].as_str().unwrap());
    let read = app.request("GET".parse().unwrap(), &path).send().await;
    let tag = read.header("etag").expect("an ETag").to_owned();
    let patch = |tag: &str, title: &str| {
        app.request("PATCH".parse().unwrap(), &path)
            .header("if-match", tag)
            .json(&json!({ "title": title }))
    };
    let first = patch(&tag, "B").send().await;
    assert_eq!(first.status(), StatusCode::OK, "{}", first.text());
    let newer = first
        .header("etag")
        .expect("the new version's ETag")
        .to_owned();
    assert_ne!(newer, tag);
    let stale = patch(&tag, "C").send().await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert!(
        stale.text().contains("changed since you read it"),
        "{}",
        stale.text()
    );
    let (_, now) = call(&app, "GET", &path, None).await;
    assert_eq!(now["title"], "B", "the stale write changed nothing");
    assert_eq!(patch(&newer, "D").send().await.status(), StatusCode::OK);
    assert_eq!(patch("*", "E").send().await.status(), StatusCode::OK);
}

async fn create_read_update_delete(t: TestStore) {
    let app = app(&t, crud()).await;
    let (status, created) = call(
        &app,
        "POST",
        "/api/notes",
        Some(json!({ "title": "Hello", "body": "world" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap();
    assert_eq!(id.len(), 24);
    assert_eq!(created["title"], "Hello");
    assert_eq!(created["done"], false);
    assert!(created["db_insert_dt"].as_str().unwrap().ends_with('Z'));

    let (status, read) = call(&app, "GET", &format!("/api/notes/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, created);

    let (status, updated) = call(
        &app,
        "PATCH",
        &format!("/api/notes/{id}"),
        Some(json!({ "done": true })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["done"], true);
    assert_eq!(updated["title"], "Hello", "fields not sent are kept");
    assert!(updated["db_update_dt"].as_str().unwrap() >= created["db_update_dt"].as_str().unwrap());

    let (status, body) = call(&app, "DELETE", &format!("/api/notes/{id}"), None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, body) = call(&app, "GET", &format!("/api/notes/{id}"), None).await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({ "detail": "Not Found" }))
    );
    let (status, _) = call(&app, "DELETE", &format!("/api/notes/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &app,
        "PATCH",
        &format!("/api/notes/{id}"),
        Some(json!({ "done": false })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn list_parameters(t: TestStore) {
    let app = app(&t, crud()).await;
    let ids = seed(&app).await;
    let (status, all) = call(&app, "GET", "/api/notes", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            all["total"].clone(),
            all["offset"].clone(),
            all["limit"].clone()
        ),
        (json!(4), json!(0), json!(25))
    );
    assert_eq!(
        titles(&all),
        ["Buy milk", "Call Ana", "Fix bike", "Read book"],
        "insertion order by default"
    );

    let (_, page) = call(&app, "GET", "/api/notes?offset=1&limit=2", None).await;
    assert_eq!(titles(&page), ["Call Ana", "Fix bike"]);
    assert_eq!(
        (
            page["total"].clone(),
            page["offset"].clone(),
            page["limit"].clone()
        ),
        (json!(4), json!(1), json!(2))
    );

    let (_, sorted) = call(&app, "GET", "/api/notes?sort=-priority,title", None).await;
    assert_eq!(
        titles(&sorted),
        ["Fix bike", "Buy milk", "Read book", "Call Ana"]
    );
    let (_, sorted) = call(&app, "GET", "/api/notes?sort=title", None).await;
    assert_eq!(
        titles(&sorted),
        ["Buy milk", "Call Ana", "Fix bike", "Read book"]
    );

    let (_, done) = call(&app, "GET", "/api/notes?done=true", None).await;
    assert_eq!(titles(&done), ["Call Ana", "Read book"]);
    assert_eq!(done["total"], 2);
    let (_, p2) = call(&app, "GET", "/api/notes?priority=2&done=false", None).await;
    assert_eq!(titles(&p2), ["Buy milk"]);

    let (_, found) = call(&app, "GET", "/api/notes?search=BRAKE", None).await;
    assert_eq!(titles(&found), ["Fix bike"]);
    let (_, found) = call(&app, "GET", "/api/notes?search=3.1", None).await;
    assert_eq!(titles(&found), ["Read book"], "search text is literal");
    let (_, found) = call(&app, "GET", "/api/notes?search=(again)", None).await;
    assert_eq!(titles(&found), ["Fix bike"]);
    let (_, found) = call(&app, "GET", "/api/notes?search=.*", None).await;
    assert_eq!(found["total"], 0);

    let (_, slim) = call(&app, "GET", "/api/notes?fields=title&limit=1", None).await;
    assert_eq!(
        slim["items"],
        json!([{ "id": ids[0], "title": "Buy milk" }])
    );
    let (_, one) = call(
        &app,
        "GET",
        &format!("/api/notes/{}?fields=done,priority", ids[1]),
        None,
    )
    .await;
    assert_eq!(one, json!({ "id": ids[1], "done": true, "priority": 1 }));
}

async fn bad_requests_answer_422_naming_the_field(t: TestStore) {
    let app = app(&t, crud()).await;
    seed(&app).await;
    for (uri, needle) in [
        ("/api/notes?limit=0", "limit must be between 1 and 100"),
        ("/api/notes?limit=101", "limit must be between 1 and 100"),
        ("/api/notes?limit=ten", "limit"),
        ("/api/notes?offset=-1", "offset"),
        ("/api/notes?sort=body", "cannot sort by `body`"),
        ("/api/notes?sort=-secret", "cannot sort by `secret`"),
        (
            "/api/notes?done=maybe",
            "filter `done` expects true or false",
        ),
        (
            "/api/notes?priority=high",
            "filter `priority` expects a whole number",
        ),
        ("/api/notes?title=x", "unknown query parameter `title`"),
        ("/api/notes?fields=title,nope", "unknown field `nope`"),
        ("/api/notes/not-an-id", "invalid id \"not-an-id\""),
        ("/api/notes/0123456789abcdef0123456789abcdef", "invalid id"),
        // Costly repeats are refused up front, not answered with the store's 500.
        (
            &format!("/api/notes?{}", ["search=a"; 1000].join("&")),
            "query parameter `search` is given more than once",
        ),
        (
            &format!("/api/notes?sort={}", ["title"; 3000].join(",")),
            "sort names `title` more than once",
        ),
        (
            "/api/notes?done=true&done=false",
            "query parameter `done` is given more than once",
        ),
        (
            &format!("/api/notes?search={}", "a".repeat(201)),
            "search is limited to 200 characters",
        ),
    ] {
        let (status, v) = call(&app, "GET", uri, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {v}");
        assert!(detail(&v).contains(needle), "{uri}: {v}");
    }
    for (body, needle) in [
        (json!({ "body": "no title" }), "missing field `title`"),
        (json!({ "title": 5 }), "invalid field `title`"),
        (
            json!({ "title": "x", "priority": "high" }),
            "invalid field `priority`",
        ),
        (
            json!({ "title": "x", "colour": "red" }),
            "unknown field `colour`",
        ),
        (
            json!({ "title": "x", "id": "0123456789abcdef01234567" }),
            "field `id` is set by the server",
        ),
        (
            json!({ "title": "x", "db_insert_dt": "2020-01-01T00:00:00Z" }),
            "field `db_insert_dt`",
        ),
        (
            json!({ "title": "   " }),
            "invalid field `title`: must not be empty",
        ),
        (json!(["title"]), "must be a JSON object"),
    ] {
        let (status, v) = call(&app, "POST", "/api/notes", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert!(detail(&v).contains(needle), "{body}: {v}");
    }
    let (_, list) = call(&app, "GET", "/api/notes?limit=1", None).await;
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    for (body, needle) in [
        (json!({ "done": "yes" }), "invalid field `done`"),
        (json!({ "title": "" }), "must not be empty"),
        (json!({ "shape": 1 }), "unknown field `shape`"),
    ] {
        let (status, v) = call(
            &app,
            "PATCH",
            &format!("/api/notes/{id}"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert!(detail(&v).contains(needle), "{body}: {v}");
    }
    let (_, after) = call(&app, "GET", &format!("/api/notes/{id}"), None).await;
    assert_eq!(
        after["title"], "Buy milk",
        "a refused update changes nothing"
    );

    let raw = |ct: &str, body: &'static str| {
        app.request(Method::POST, "/api/notes")
            .body(ct, body)
            .send()
    };
    let res = raw("text/plain", r#"{"title":"x"}"#).await;
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let res = raw("application/json", r#"{"title":"#).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

async fn unique_violations_answer_409(t: TestStore) {
    let app = app(&t, crud()).await;
    let ids = seed(&app).await;
    let (status, v) = call(
        &app,
        "POST",
        "/api/notes",
        Some(json!({ "title": "Buy milk" })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(detail(&v), "a note with the same title already exists");
    let (status, _) = call(
        &app,
        "PATCH",
        &format!("/api/notes/{}", ids[1]),
        Some(json!({ "title": "Buy milk" })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, list) = call(&app, "GET", "/api/notes", None).await;
    assert_eq!(list["total"], 4);
}

async fn hooks_modify_and_reject(t: TestStore) {
    let audit = t.store.collection("audit");
    let crud = crud()
        .pre_create(|ctx, mut note: Note| async move {
            if note.title.starts_with('!') {
                return Err(Error::new(
                    StatusCode::FORBIDDEN,
                    "titles may not start with !",
                ));
            }
            note.owner = ctx
                .request
                .headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            note.title = note.title.trim().to_owned();
            Ok(note)
        })
        .post_create(|ctx, rec| async move {
            ctx.store()
                .collection("audit")
                .insert(bson::doc! { "event": "created", "note": rec.id })
                .await?;
            Ok(())
        })
        .pre_update(|_, current, mut patch| async move {
            if current.done && patch.contains_key("title") {
                return Err(Error::new(
                    StatusCode::CONFLICT,
                    "finished notes cannot be renamed",
                ));
            }
            patch.insert("priority".into(), json!(9));
            Ok(patch)
        })
        .post_update(|ctx, rec| async move {
            ctx.store()
                .collection("audit")
                .insert(bson::doc! { "event": "updated", "note": rec.id })
                .await?;
            Ok(())
        })
        .pre_delete(|_, rec| async move {
            if rec.priority >= 9 {
                return Err(Error::new(
                    StatusCode::CONFLICT,
                    "important notes cannot be deleted",
                ));
            }
            Ok(())
        })
        .post_delete(|ctx, rec| async move {
            ctx.store()
                .collection("audit")
                .insert(bson::doc! { "event": "deleted", "note": rec.id })
                .await?;
            Ok(())
        });
    let app = app(&t, crud).await;
    let res = app
        .request(Method::POST, "/api/notes")
        .header("x-user", "ana")
        .body("application/json", r#"{"title": "  spaced  "}"#)
        .send()
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json();
    assert_eq!(
        (created["title"].as_str(), created["owner"].as_str()),
        (Some("spaced"), Some("ana"))
    );
    let id = created["id"].as_str().unwrap();

    let (status, v) = call(
        &app,
        "POST",
        "/api/notes",
        Some(json!({ "title": "!nope" })),
    )
    .await;
    assert_eq!(
        (status, detail(&v)),
        (StatusCode::FORBIDDEN, "titles may not start with !")
    );
    assert_eq!(
        t.store
            .collection("notes")
            .count(&Filter::All)
            .await
            .unwrap(),
        1,
        "rejected create stores nothing"
    );

    let (_, updated) = call(
        &app,
        "PATCH",
        &format!("/api/notes/{id}"),
        Some(json!({ "done": true })),
    )
    .await;
    assert_eq!(
        (updated["done"].clone(), updated["priority"].clone()),
        (json!(true), json!(9)),
        "hook added a change"
    );
    let (status, v) = call(
        &app,
        "PATCH",
        &format!("/api/notes/{id}"),
        Some(json!({ "title": "renamed" })),
    )
    .await;
    assert_eq!(
        (status, detail(&v)),
        (StatusCode::CONFLICT, "finished notes cannot be renamed")
    );
    let (status, _) = call(&app, "DELETE", &format!("/api/notes/{id}"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        t.store
            .collection("notes")
            .count(&Filter::All)
            .await
            .unwrap(),
        1,
        "rejected delete keeps it"
    );

    let (_, other) = call(
        &app,
        "POST",
        "/api/notes",
        Some(json!({ "title": "temporary" })),
    )
    .await;
    let (status, _) = call(
        &app,
        "DELETE",
        &format!("/api/notes/{}", other["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let events: Vec<String> = audit
        .find(&vibetuner::store::Query::all())
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_str("event").unwrap().to_owned())
        .collect();
    assert_eq!(events, ["created", "updated", "created", "deleted"]);
}

#[derive(Deserialize)]
struct NewNote {
    title: String,
}

impl From<NewNote> for Note {
    fn from(n: NewNote) -> Self {
        Note {
            title: n.title,
            body: "(from the short form)".into(),
            done: false,
            priority: 1,
            owner: None,
        }
    }
}

#[derive(Deserialize, Serialize)]
struct NotePatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    done: Option<bool>,
}

#[derive(Serialize)]
struct PublicNote {
    id: String,
    title: String,
}

impl From<vibetuner::Record<Note>> for PublicNote {
    fn from(r: vibetuner::Record<Note>) -> Self {
        PublicNote {
            id: r.id.to_string(),
            title: r.data.title,
        }
    }
}

async fn separate_types_subsets_layers_and_names(t: TestStore) {
    let crud = Crud::<Note>::new("/api/short")
        .public()
        .operations([Operation::List, Operation::Create, Operation::Update])
        .page_size(2, 3)
        .create_as::<NewNote>()
        .update_as::<NotePatch>()
        .respond_as::<PublicNote>()
        .layer(middleware::from_fn(
            |req: axum::extract::Request, next: Next| async move {
                if req.headers().contains_key("x-api-key") {
                    next.run(req).await
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({ "detail": "missing x-api-key" })),
                    )
                        .into_response()
                }
            },
        ));
    assert_eq!(
        crud.route_names(),
        [
            ("notes_list".to_owned(), "/api/short".to_owned()),
            ("notes_create".to_owned(), "/api/short".to_owned()),
            ("notes_update".to_owned(), "/api/short/{id}".to_owned()),
        ]
    );
    let app = app(&t, crud).await;
    let send = |method: &'static str, uri: String, body: Option<Value>, key: bool| {
        let mut req = app
            .request(method.parse().expect("an HTTP method"), &uri)
            .header("content-type", "application/json");
        if key {
            req = req.header("x-api-key", "k");
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move {
            let res = req.send().await;
            let body = serde_json::from_str(&res.text()).unwrap_or(Value::Null);
            (res.status(), body)
        }
    };
    let (status, _) = send("GET", "/api/short".into(), None, false).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the layer guards every route"
    );
    let (status, created) = send(
        "POST",
        "/api/short".into(),
        Some(json!({ "title": "short" })),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["id", "title"],
        "response type"
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let stored = t
        .store
        .models::<Note>()
        .get(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.body, "(from the short form)",
        "create type converted"
    );
    let (status, _) = send(
        "PATCH",
        format!("/api/short/{id}"),
        Some(json!({ "done": true })),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        t.store
            .models::<Note>()
            .get(stored.id)
            .await
            .unwrap()
            .unwrap()
            .done
    );
    let (status, v) = send(
        "PATCH",
        format!("/api/short/{id}"),
        Some(json!({ "done": "x" })),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (status, _) = send("GET", format!("/api/short/{id}"), None, true).await;
    assert_eq!(
        status,
        StatusCode::METHOD_NOT_ALLOWED,
        "read is not generated"
    );
    for i in 0..3 {
        send(
            "POST",
            "/api/short".into(),
            Some(json!({ "title": format!("n{i}") })),
            true,
        )
        .await;
    }
    let (_, page) = send("GET", "/api/short".into(), None, true).await;
    assert_eq!(
        (
            page["limit"].clone(),
            page["items"].as_array().unwrap().len()
        ),
        (json!(2), 2)
    );
    let (status, _) = send("GET", "/api/short?limit=4".into(), None, true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[test]
#[should_panic(expected = "sortable field `nope` is not a field of the model")]
fn misconfigured_fields_fail_at_startup() {
    let _ = Crud::<Note>::new("/x")
        .public()
        .sortable(["nope"])
        .into_router();
}

#[test]
#[should_panic(expected = "Crud<notes> at /x: say who may use these routes")]
fn routes_nobody_said_who_may_use_fail_at_startup() {
    let _ = Crud::<Note>::new("/x").into_router();
}

#[test]
#[should_panic(expected = "read-only field `nope` is not a field of the model")]
fn misconfigured_read_only_fields_fail_at_startup() {
    let _ = Crud::<Note>::new("/x")
        .public()
        .read_only(["nope"])
        .into_router();
}

#[tokio::test]
async fn the_store_must_be_installed() {
    let app = Crud::<Note>::new("/api/notes").public().into_router();
    let req = Request::get("/api/notes").body(Body::empty()).unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// A model owned by a user, with a server-written counter and a status scopes can limit.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
struct Link {
    owner_id: vibetuner::Id,
    url: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    clicks: u32,
    #[serde(default = "open")]
    status: String,
}

fn open() -> String {
    "open".into()
}

impl Model for Link {
    const COLLECTION: &'static str = "links";
}

async fn links_app(t: &TestStore, crud: Crud<Link>) -> vibetuner::testing::TestApp {
    t.test_app(vibetuner::App::new(SOURCE).crud(crud))
        .start()
        .await
}

/// `owned_by`: anonymous callers get 401 JSON, each user sees and changes only their own
/// records (others' answer 404 and stay untouched), the owner is set by the server and neither
/// it nor a read-only field can be written.
async fn owned_records_stay_with_their_owner(t: TestStore) {
    let app = links_app(
        &t,
        Crud::<Link>::new("/api/links")
            .owned_by("owner_id")
            .read_only(["clicks"])
            .filterable(["tags"]),
    )
    .await;
    let anonymous = app.client();
    let res = anonymous.get_json("/api/links").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.json::<Value>()["detail"], "Sign in first");
    let res = anonymous
        .post_json("/api/links", &json!({"url": "u"}))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let alice = app.sign_in("alice@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    let res = alice
        .post_json(
            "/api/links",
            &json!({"url": "https://a.example", "tags": ["web"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text());
    let a: Value = res.json();
    let alice_id = a["owner_id"].as_str().unwrap().to_owned();
    assert_eq!(alice_id.len(), 24);
    let res = bob
        .post_json("/api/links", &json!({"url": "https://b.example"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let b: Value = res.json();
    assert_ne!(b["owner_id"], a["owner_id"]);

    for body in [
        json!({"url": "x", "owner_id": alice_id}),
        json!({"url": "x", "clicks": 5}),
    ] {
        let res = bob.post_json("/api/links", &body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            res.text()
                .contains("is set by the server and cannot be written"),
            "{}",
            res.text()
        );
    }

    let list: Value = alice.get_json("/api/links").await.json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["url"], "https://a.example");
    let list: Value = alice.get_json("/api/links?tags=web").await.json();
    assert_eq!(list["total"], 1);
    let list: Value = bob.get_json("/api/links?tags=web").await.json();
    assert_eq!(list["total"], 0);

    let a_path = format!("/api/links/{}", a["id"].as_str().unwrap());
    assert_eq!(bob.get_json(&a_path).await.status(), StatusCode::NOT_FOUND);
    let res = bob.patch_json(&a_path, &json!({"url": "stolen"})).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.json::<Value>()["detail"], "Not Found");
    assert_eq!(bob.delete(&a_path).await.status(), StatusCode::NOT_FOUND);
    let res = alice.get_json(&a_path).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>()["url"], "https://a.example");

    let bob_id = b["owner_id"].as_str().unwrap();
    let res = alice
        .patch_json(&a_path, &json!({"owner_id": bob_id}))
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = alice.patch_json(&a_path, &json!({"clicks": 1})).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = alice
        .patch_json(&a_path, &json!({"url": "https://a2.example"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>()["owner_id"], alice_id.as_str());
    assert_eq!(alice.delete(&a_path).await.status(), StatusCode::NO_CONTENT);
    let total = |v: Value| v["total"].as_u64().unwrap();
    assert_eq!(total(alice.get_json("/api/links").await.json()), 0);
    assert_eq!(total(bob.get_json("/api/links").await.json()), 1);
    app.stop().await;
}

/// A scope with more than equalities: new records outside it are refused (403) and not kept,
/// updates cannot touch the fields it names; `authorize` rules run per operation.
async fn scopes_and_rules(t: TestStore) {
    let app = links_app(
        &t,
        Crud::<Link>::new("/api/links")
            .scope(|ctx| async move {
                Ok(Filter::eq("owner_id", ctx.user_id()?)
                    .and(Filter::is_in("status", ["open", "draft"])))
            })
            .authorize(|ctx, op| async move {
                match op {
                    Operation::Delete => Err(Error::new(
                        StatusCode::FORBIDDEN,
                        format!(
                            "{} may not delete links",
                            ctx.require_user()?.email.clone().unwrap_or_default()
                        ),
                    )),
                    _ => Ok(()),
                }
            }),
    )
    .await;
    let carol = app.sign_in("carol@example.com").await;
    let res = carol
        .post_json("/api/links", &json!({"url": "c", "status": "closed"}))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "{}", res.text());
    assert_eq!(
        res.json::<Value>()["detail"],
        "this link would be outside the records you may use"
    );
    let res = carol.post_json("/api/links", &json!({"url": "c"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<Value>()["id"].as_str().unwrap().to_owned();
    let list: Value = carol.get_json("/api/links").await.json();
    assert_eq!(list["total"], 1, "the refused link was not kept");
    let res = carol
        .patch_json(&format!("/api/links/{id}"), &json!({"status": "closed"}))
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = carol.delete(&format!("/api/links/{id}")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.json::<Value>()["detail"],
        "carol@example.com may not delete links"
    );
    app.stop().await;
}

/// `signed_in`: every operation needs a user, records are shared; browsers are sent to sign in.
async fn signed_in_only(t: TestStore) {
    let app = links_app(
        &t,
        Crud::<Link>::new("/api/links")
            .signed_in()
            .create_with(|ctx, body: Value| async move {
                Ok(Link {
                    owner_id: ctx.user_id()?,
                    url: body["url"].as_str().unwrap_or_default().to_owned(),
                    tags: Vec::new(),
                    clicks: 0,
                    status: open(),
                })
            }),
    )
    .await;
    let anonymous = app.client();
    assert_eq!(
        anonymous.get_json("/api/links").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let dave = app.sign_in("dave@example.com").await;
    let erin = app.sign_in("erin@example.com").await;
    let res = dave.post_json("/api/links", &json!({"url": "d"})).await;
    assert_eq!(res.status(), StatusCode::CREATED, "{}", res.text());
    let list: Value = erin.get_json("/api/links").await.json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["url"], "d");
    app.stop().await;
}

on_both_backends!(
    conditional_updates_with_if_match,
    owned_records_stay_with_their_owner,
    scopes_and_rules,
    signed_in_only,
    create_read_update_delete,
    list_parameters,
    bad_requests_answer_422_naming_the_field,
    unique_violations_answer_409,
    hooks_modify_and_reject,
    separate_types_subsets_layers_and_names,
);
