//! The example notes resource, driven in-process through the app's whole router on a fresh
//! embedded store: `cargo test` runs these with no server and no network.

use vibetuner::serde_json::{Value, json};
use vibetuner::testing::TestApp;

#[vibetuner::tokio::test(crate = "vibetuner::tokio")]
async fn the_api_creates_lists_and_enriches_notes() {
    let app = TestApp::new(app::app()).await;
    let client = app.client();

    let created = client
        .post_json("/api/notes", &json!({ "title": "Buy oat milk", "body": "and bread" }))
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

    let invalid = client.post_json("/api/notes", &json!({ "title": " " })).await;
    assert_eq!(invalid.status(), 422);
    assert_eq!(client.delete(&format!("/api/notes/{id}")).await.status(), 204);
    assert_eq!(client.get_json(&format!("/api/notes/{id}")).await.status(), 404);
}

#[vibetuner::tokio::test(crate = "vibetuner::tokio")]
async fn the_page_adds_notes_and_explains_invalid_ones() {
    let app = TestApp::new(app::app()).await;
    let client = app.client();

    let page = client.get("/notes").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().contains("<form"), "the page has the new-note form");

    let added = client
        .request(vibetuner::axum::http::Method::POST, "/notes")
        .htmx()
        .form(&[("title", "Call the plumber"), ("body", "")])
        .send()
        .await;
    assert_eq!(added.status(), 200, "{}", added.text());
    assert!(client.get("/notes").await.text().contains("Call the plumber"));

    let empty = client
        .request(vibetuner::axum::http::Method::POST, "/notes")
        .htmx()
        .form(&[("title", ""), ("body", "no title")])
        .send()
        .await;
    assert_eq!(empty.status(), 422);
    assert!(empty.text().contains("title is required"), "{}", empty.text());
}

#[vibetuner::tokio::test(crate = "vibetuner::tokio")]
async fn signed_in_visitors_see_their_profile() {
    let app = TestApp::new(app::app()).await;
    assert_eq!(app.client().get("/user/").await.status(), 303, "anonymous visitors are sent to sign in");

    let ada = app.sign_in("ada@example.com").await;
    let profile = ada.get("/user/").await;
    assert_eq!(profile.status(), 200);
    assert!(profile.text().contains("ada@example.com"));
}
