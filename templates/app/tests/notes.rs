//! The example notes resource, driven in-process through the app's whole router on a fresh
//! embedded store: `cargo test` runs these with no server and no network.

use vibetuner::serde_json::{Value, json};
use vibetuner::testing::TestApp;

#[vibetuner::test]
async fn the_api_creates_lists_and_enriches_notes() {
    let app = TestApp::new(app::app()).await;
    let client = app.sign_in("ada@example.com").await;

    let created = client
        .post_json(
            "/api/notes",
            &json!({ "title": "Buy oat milk", "body": "and bread" }),
        )
        .await;
    assert_eq!(created.status(), 201, "{}", created.text());
    let note: Value = created.json();
    let id = note["id"].as_str().expect("the note has an id").to_owned();

    let list: Value = client.get_json("/api/notes").await.json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["title"], "Buy oat milk");

    // Creating a note enqueued `enrich_note`, which stores its word count.
    app.wait_for_tasks().await;
    let read: Value = client.get_json(&format!("/api/notes/{id}")).await.json();
    assert_eq!(read["word_count"], 5);

    let invalid = client
        .post_json("/api/notes", &json!({ "title": " " }))
        .await;
    assert_eq!(invalid.status(), 422);
    assert_eq!(
        client.delete(&format!("/api/notes/{id}")).await.status(),
        204
    );
    assert_eq!(
        client.get_json(&format!("/api/notes/{id}")).await.status(),
        404
    );
}

#[vibetuner::test]
async fn the_page_adds_notes_and_explains_invalid_ones() {
    let app = TestApp::new(app::app()).await;
    let client = app.sign_in("ada@example.com").await;

    let page = client.get("/notes").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.text().contains("<form"),
        "the page has the new-note form"
    );

    let added = client
        .request(vibetuner::axum::http::Method::POST, "/notes")
        .htmx()
        .form(&[("title", "Call the plumber"), ("body", "")])
        .send()
        .await;
    assert_eq!(added.status(), 200, "{}", added.text());
    assert!(
        client
            .get("/notes")
            .await
            .text()
            .contains("Call the plumber")
    );

    let empty = client
        .request(vibetuner::axum::http::Method::POST, "/notes")
        .htmx()
        .form(&[("title", ""), ("body", "no title")])
        .send()
        .await;
    assert_eq!(empty.status(), 422);
    assert!(
        empty.text().contains("title is required"),
        "{}",
        empty.text()
    );
}

#[vibetuner::test]
async fn notes_belong_to_their_author() {
    let app = TestApp::new(app::app()).await;
    let anonymous = app.client();
    assert_eq!(anonymous.get_json("/api/notes").await.status(), 401);
    assert_eq!(
        anonymous
            .post_json("/api/notes", &json!({ "title": "x" }))
            .await
            .status(),
        401
    );
    assert_eq!(
        anonymous.get("/notes").await.status(),
        303,
        "the page sends visitors to sign in"
    );

    let ada = app.sign_in("ada@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    let note: Value = ada
        .post_json("/api/notes", &json!({ "title": "Ada's secret" }))
        .await
        .json();
    let path = format!("/api/notes/{}", note["id"].as_str().expect("an id"));

    let forged = bob
        .post_json(
            "/api/notes",
            &json!({ "title": "x", "owner_id": note["owner_id"] }),
        )
        .await;
    assert_eq!(forged.status(), 422, "the owner is set by the server");
    let inflated = ada
        .post_json(
            "/api/notes",
            &json!({ "title": "x", "word_count": 4000000000u32 }),
        )
        .await;
    assert_eq!(
        inflated.status(),
        422,
        "the word count is set by the server"
    );

    let others: Value = bob.get_json("/api/notes").await.json();
    assert_eq!(others["total"], 0);
    assert_eq!(bob.get_json(&path).await.status(), 404);
    assert_eq!(bob.delete(&path).await.status(), 404);
    assert!(!bob.get("/notes").await.text().contains("Ada's secret"));
    let page_delete = bob
        .request(
            vibetuner::axum::http::Method::DELETE,
            &format!("/notes/{}", note["id"].as_str().unwrap()),
        )
        .htmx()
        .send()
        .await;
    assert_eq!(page_delete.status(), 404);
    assert_eq!(
        ada.get_json(&path).await.status(),
        200,
        "still there for its author"
    );
}

#[vibetuner::test]
async fn signed_in_visitors_see_their_profile() {
    let app = TestApp::new(app::app()).await;
    assert_eq!(
        app.client().get("/user/").await.status(),
        303,
        "anonymous visitors are sent to sign in"
    );

    let ada = app.sign_in("ada@example.com").await;
    let profile = ada.get("/user/").await;
    assert_eq!(profile.status(), 200);
    assert!(profile.text().contains("ada@example.com"));
}
