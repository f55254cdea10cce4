//! The app's pages and probes, driven in-process through the whole router on a fresh embedded
//! store (`cargo test`, no server needed).

use vibetuner::testing::TestApp;

#[vibetuner::test]
async fn the_home_and_hello_pages_render() {
    let app = TestApp::new(app::app()).await;
    let client = app.client();

    let home = client.get("/").await;
    assert_eq!(home.status(), 200);
    assert!(home.text().contains("<!DOCTYPE html>") || home.text().contains("<!doctype html>"));
    assert!(
        home.text().contains(r#"href="/auth/login""#),
        "links to sign-in"
    );
    assert!(home.text().contains("Next steps"), "the dev panel");

    let hello = client.get("/hello?name=Ada").await;
    assert_eq!(hello.status(), 200);
    assert!(hello.text().contains("Ada"), "{}", hello.text());

    assert_eq!(client.get("/no-such-page").await.status(), 404);
    assert_eq!(client.get_json("/health/ping").await.status(), 200);
}
