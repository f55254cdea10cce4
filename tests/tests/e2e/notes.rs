//! The generated app's example resource over HTTP, on the embedded store and on MongoDB
//! (`TEST_MONGODB_URL`, set by scripts/test.sh): the JSON API and the htmx page, signed in (the
//! example's notes belong to their author).

use reqwest::StatusCode;
use serde_json::{Value, json};
use vibetuner_e2e::{Server, generated_app, scratch_dir, unique_name};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn mongodb_url(db: &str) -> String {
    let base = std::env::var("TEST_MONGODB_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        panic!("TEST_MONGODB_URL is not set: run scripts/test.sh (it starts SecantusDB) or point it at a MongoDB server")
    });
    format!("{}/{}", base.trim_end_matches('/'), unique_name(db))
}

/// GETs `url` and decodes its JSON body.
async fn get_json(c: &reqwest::Client, url: &str) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// Posts the page's form as htmx does.
async fn post_note(
    c: &reqwest::Client,
    server: &Server,
    title: &str,
    body: &str,
) -> reqwest::Response {
    c.post(format!("{}/notes", server.base))
        .header("HX-Request", "true")
        .form(&[("title", title), ("body", body)])
        .send()
        .await
        .unwrap()
}

async fn exercise(server: &Server) {
    let anonymous = client();
    let api = format!("{}/api/notes", server.base);
    let r = anonymous.get(&api).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = server.sign_in("notes@example.com").await;
    let created: Value = {
        let r = c
            .post(&api)
            .json(&json!({ "title": "From the API", "body": "hello" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.unwrap()
    };
    let id = created["id"].as_str().unwrap().to_owned();
    let list: Value = c.get(&api).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["title"], "From the API");
    let r = c.get(format!("{api}/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = c.get(format!("{api}?sort=body")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The page lists notes; the form posts with htmx and gets the refreshed section back.
    let page = c
        .get(format!("{}/notes", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<html") && page.contains("From the API"),
        "{page}"
    );
    assert!(
        page.contains(r#"hx-post="/notes""#)
            && page.contains(&format!(r#"hx-delete="/notes/{id}""#))
    );
    let r = post_note(&c, server, "From the page", "typed in a form").await;
    assert_eq!(r.status(), StatusCode::OK);
    let form = r.text().await.unwrap();
    assert!(
        form.trim_start().starts_with("<form id=\"note-form\""),
        "an empty form; the note itself arrives over SSE: {form}"
    );
    assert!(
        !form.contains("<html") && !form.contains("From the page"),
        "{form}"
    );
    let section = c
        .get(format!("{}/notes", server.base))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        section
            .trim_start()
            .starts_with("<section id=\"notes-section\""),
        "{section}"
    );
    assert!(!section.contains("<html"), "only the block");
    let newest = section.find("From the page").unwrap();
    assert!(
        newest < section.find("From the API").unwrap(),
        "newest first"
    );

    let r = post_note(&c, server, "   ", "kept").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let form = r.text().await.unwrap();
    assert!(
        form.contains("The title is required.") && form.contains(">kept</textarea>"),
        "{form}"
    );

    let r = c
        .post(format!("{}/notes", server.base))
        .form(&[("title", "No JS")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let r = c
        .delete(format!("{}/notes/{id}", server.base))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status(), r.text().await.unwrap()),
        (StatusCode::OK, String::new())
    );
    let r = c
        .delete(format!("{}/notes/{id}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let list: Value = c.get(&api).send().await.unwrap().json().await.unwrap();
    let titles: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["No JS", "From the page"]);
}

#[tokio::test]
async fn notes_work_on_the_embedded_store_and_survive_a_restart() {
    let app = generated_app();
    let data = scratch_dir("notes-embedded");
    let env = [("DATA_DIR", data.to_str().unwrap())];
    let server = Server::start(&app.binary, &app.dir, &env).unwrap();
    exercise(&server).await;
    assert!(data.join("store.sqlite3").is_file());
    server.signal_and_wait("TERM").unwrap();
    inspect_and_run_tasks(&app, &data);
    let server = Server::start(&app.binary, &app.dir, &env).unwrap();
    let c = server.sign_in("notes@example.com").await;
    let list: Value = get_json(&c, &format!("{}/api/notes", server.base)).await;
    assert_eq!(list["total"], 2, "notes survive a restart");
}

#[tokio::test]
async fn notes_work_on_mongodb() {
    let app = generated_app();
    let url = mongodb_url("e2e_notes");
    let server = Server::start(&app.binary, &app.dir, &[("MONGODB_URL", &url)]).unwrap();
    exercise(&server).await;
    let health: Value = get_json(&client(), &format!("{}/health?detailed=true", server.base)).await;
    assert_eq!(
        health["services"]["mongodb"]["status"], "connected",
        "{health}"
    );
}

/// Runs the app binary with `DATA_DIR` set; returns (success, stdout, stderr).
fn app_cli(
    app: &vibetuner_e2e::GeneratedApp,
    data: &std::path::Path,
    args: &[&str],
) -> (bool, String, String) {
    let out = std::process::Command::new(&app.binary)
        .args(args)
        .current_dir(&app.dir)
        .env("DATA_DIR", data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `db find` prints what `exercise` stored; `task list` and `task run` drive the example's task.
fn inspect_and_run_tasks(app: &vibetuner_e2e::GeneratedApp, data: &std::path::Path) {
    let (ok, out, err) = app_cli(app, data, &["db", "find", "notes", "title=No JS"]);
    assert!(ok, "{err}");
    let note: Value = serde_json::from_str(out.lines().next().expect("one note")).unwrap();
    assert_eq!(note["title"], "No JS");
    assert!(err.contains("1 of 1 matching documents in notes"), "{err}");
    let id = note["id"].as_str().unwrap().to_owned();
    let (ok, out, _) = app_cli(
        app,
        data,
        &["db", "find", "notes", "--sort=-title", "--limit", "1"],
    );
    assert!(ok && out.contains("No JS"), "{out}");
    let (ok, _, err) = app_cli(app, data, &["db", "find", "notes", "owner_id=nope"]);
    assert!(
        !ok && err.contains("owner_id takes an id (24 hex digits)"),
        "{err}"
    );

    let (ok, out, err) = app_cli(app, data, &["task", "list"]);
    assert!(ok && out.contains("enrich_note  retries=3"), "{out}{err}");
    let (ok, out, err) = app_cli(
        app,
        data,
        &["task", "run", "enrich_note", "--args", &format!("\"{id}\"")],
    );
    assert!(ok && out.contains("ok: enrich_note finished"), "{out}{err}");
    let (_, out, _) = app_cli(app, data, &["db", "find", "notes", &format!("id={id}")]);
    let note: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(note["word_count"], 2, "the task ran: {note}");
    let (ok, _, err) = app_cli(app, data, &["task", "run", "enrich_note", "--args", "42"]);
    assert!(!ok && err.contains("cannot take these arguments"), "{err}");
    let (ok, _, err) = app_cli(app, data, &["task", "run", "nope"]);
    assert!(
        !ok && err.contains("no task named \"nope\"; registered: enrich_note"),
        "{err}"
    );
}

#[test]
fn db_commands_create_indexes_and_ping() {
    let app = generated_app();
    let data = scratch_dir("notes-db-cmd");
    let out = std::process::Command::new(&app.binary)
        .args(["db", "ensure-indexes"])
        .current_dir(&app.dir)
        .env("DATA_DIR", &data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("indexes ensured on 8 collections (embedded store"),
        "{stdout}"
    );
    let out = std::process::Command::new(&app.binary)
        .args(["db", "ping"])
        .current_dir(&app.dir)
        .env(
            "MONGODB_URL",
            "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the mongodb store at mongodb://127.0.0.1:1/")
            && stderr.contains("does not answer"),
        "{stderr}"
    );
}

/// Subscribes to `/notes/events` on `watch`, creates a note through the page on `write`, and
/// checks the enriched note (its word count) arrives on the stream and in the API.
async fn live_update(write: &Server, watch: &Server) {
    // Sessions live in the shared store, and cookies are per host, not per port: one sign-in
    // serves both servers.
    let c = write.sign_in("live@example.com").await;
    let mut events = c
        .get(format!("{}/notes/events", watch.base))
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let r = post_note(&c, write, "Live note", "three more words").await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut text = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while !text.contains("5 words") {
            match events.chunk().await.unwrap() {
                Some(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                None => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no note event in time; got {text:?}"));
    let items: Vec<&str> = text
        .split("\n\n")
        .filter(|e| e.contains("data: <li class=\"card bg-base-100 shadow\" id=\"note-"))
        .collect();
    assert_eq!(
        items.len(),
        2,
        "the new note, then the enriched one: {text}"
    );
    assert!(
        items[0].contains("Live note") && !items[0].contains("note-words"),
        "{text}"
    );
    assert!(items[1].contains("5 words"), "{text}");
    let list: Value = get_json(&c, &format!("{}/api/notes", write.base)).await;
    assert_eq!(list["items"][0]["word_count"], 5, "{list}");

    // Deleted, the note is no longer replayed to a page that reconnects from the start.
    let id = list["items"][0]["id"].as_str().unwrap();
    let r = c
        .delete(format!("{}/api/notes/{id}", write.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let mut replay = c
        .get(format!("{}/notes/events", watch.base))
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while !text.contains("event: deleted") {
            match replay.chunk().await.unwrap() {
                Some(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                None => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no deletion in the replay; got {text:?}"));
    assert!(
        !text.contains("Live note"),
        "the deleted note was replayed: {text}"
    );
}

#[tokio::test]
async fn new_notes_are_enriched_and_pushed_live_in_process() {
    let app = generated_app();
    let data = scratch_dir("notes-live");
    let server = Server::start(
        &app.binary,
        &app.dir,
        &[("DATA_DIR", data.to_str().unwrap())],
    )
    .unwrap();
    live_update(&server, &server).await;
}

#[tokio::test]
async fn new_notes_reach_another_server_through_redis_and_a_worker() {
    let app = generated_app();
    let redis = std::env::var("TEST_REDIS_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        panic!("TEST_REDIS_URL is not set: run scripts/test.sh (it starts redis-server) or `eval \"$(scripts/services.sh start)\"`")
    });
    let url = mongodb_url("e2e_notes_live");
    let prefix = format!("{}:", unique_name("notes-live"));
    let env = [
        ("MONGODB_URL", url.as_str()),
        ("REDIS_URL", redis.as_str()),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    let (a, b) = (
        Server::start(&app.binary, &app.dir, &env).unwrap(),
        Server::start(&app.binary, &app.dir, &env).unwrap(),
    );
    let worker = std::process::Command::new(&app.binary)
        .arg("worker")
        .current_dir(&app.dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _worker = KillOnDrop(worker);
    live_update(&a, &b).await;
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An edit made right after a create is never reverted by the enrichment task that counts the
/// note's words meanwhile: the task writes only if the note did not change since it read it.
#[tokio::test]
async fn edits_made_while_a_note_is_enriched_are_kept() {
    let app = generated_app();
    let data = scratch_dir("notes-race");
    let server = Server::start(
        &app.binary,
        &app.dir,
        &[("DATA_DIR", data.to_str().unwrap())],
    )
    .unwrap();
    let c = server.sign_in("race@example.com").await;
    let api = format!("{}/api/notes", server.base);
    for _ in 0..40 {
        let created: Value = c
            .post(&api)
            .json(&json!({ "title": "two words", "body": "" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let r = c
            .patch(format!("{api}/{}", created["id"].as_str().unwrap()))
            .json(&json!({ "title": "now three words" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let mut list = Value::Null;
    for _ in 0..300 {
        list = get_json(&c, &format!("{api}?limit=100")).await;
        let items = list["items"].as_array().unwrap();
        if items.len() == 40 && items.iter().all(|n| !n["word_count"].is_null()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let items = list["items"].as_array().unwrap();
    assert!(
        items.iter().all(|n| !n["word_count"].is_null()),
        "every note enriched: {list}"
    );
    let reverted: Vec<&Value> = items
        .iter()
        .filter(|n| n["title"] != "now three words")
        .collect();
    assert!(
        reverted.is_empty(),
        "edits reverted by the task: {reverted:?}"
    );
}
