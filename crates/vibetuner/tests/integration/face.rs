//! What a page looks like to the server: the theme chosen in the `theme` cookie rendered as
//! `data-theme` (unknown names follow the system), flash messages shown once after a redirect
//! or sent to htmx in `HX-Trigger`, the header's links and user menu, and the `BRAND_*`
//! settings in pages, the favicon's colour and emails.

use crate::support::SOURCE;
use serde_json::{Value, json};
use vibetuner::axum::http::Method;
use vibetuner::prelude::*;
use vibetuner::testing::{TestApp, TestClient};

/// `GET /save` answers a page with a flash (shown on the next page, or a toast for htmx);
/// `GET /bounce` redirects home with one.
fn app() -> App {
    App::new(SOURCE)
        .route(
            "/save",
            get(|| async {
                (
                    Flash::success("Saved.").and(vibetuner::flash::Level::Info, "Twice."),
                    Html("<p>saved</p>"),
                )
            }),
        )
        .route(
            "/bounce",
            get(|| async { (Flash::warning("Bounced."), Redirect::to("/")) }),
        )
}

/// A browser's page request: `Accept: text/html`.
async fn page(client: &TestClient, path: &str) -> String {
    let response = client.request(Method::GET, path).html().send().await;
    response.text()
}

/// The `<html ...>` tag of a page.
fn html_tag(page: &str) -> &str {
    let start = page.find("<html").expect("an <html> tag");
    &page[start..start + page[start..].find('>').unwrap() + 1]
}

#[vibetuner::test]
async fn the_theme_cookie_is_rendered_and_unknown_themes_follow_the_system() {
    let app = TestApp::new(app()).await;
    let with_cookie = |cookie: &'static str| {
        let client = app.client();
        async move {
            client
                .request(Method::GET, "/")
                .html()
                .header("cookie", cookie)
                .send()
                .await
                .text()
        }
    };
    let dark = with_cookie("theme=dark").await;
    assert_eq!(html_tag(&dark), r#"<html lang="en" data-theme="dark">"#);
    assert!(
        dark.contains(r#"data-theme-choice="dark""#),
        "the switcher shows the choice"
    );
    let light = with_cookie("other=1; theme=light").await;
    assert_eq!(html_tag(&light), r#"<html lang="en" data-theme="light">"#);
    for unknown in ["theme=neon", "theme=\"><script>", "theme="] {
        let page = with_cookie(unknown).await;
        assert_eq!(html_tag(&page), r#"<html lang="en">"#, "{unknown}");
        assert!(page.contains(r#"data-theme-choice="system""#), "{unknown}");
    }
    let none = page(&app.client(), "/").await;
    assert_eq!(html_tag(&none), r#"<html lang="en">"#);
    assert!(none.contains(r#"data-themes="light dark""#), "{none}");

    // Error pages, rendered outside the routes, keep the theme too.
    let missing = app
        .client()
        .request(Method::GET, "/no-such-page")
        .html()
        .header("cookie", "theme=dark")
        .send()
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        html_tag(&missing.text()),
        r#"<html lang="en" data-theme="dark">"#
    );
}

#[vibetuner::test]
async fn the_header_marks_the_current_page_and_holds_the_user_menu() {
    let app = TestApp::new(app()).await;
    let anonymous = page(&app.client(), "/").await;
    assert!(
        anonymous.contains(r#"id="nav-login" href="/auth/login""#),
        "{anonymous}"
    );
    assert!(
        anonymous.contains(r#"<a href="/" aria-current="page""#),
        "{anonymous}"
    );
    let login = page(&app.client(), "/auth/login").await;
    assert!(
        login.contains(r#"href="/auth/login" class="btn btn-primary" aria-current="page""#),
        "{login}"
    );
    assert!(!login.contains(r#"<a href="/" aria-current="page""#));

    let client = app.sign_in("menu@example.com").await;
    let profile = page(&client, "/user/").await;
    assert!(profile.contains(r#"id="nav-user""#), "{profile}");
    assert!(
        profile.contains(r#"<a href="/user/" aria-current="page">Profile</a>"#),
        "{profile}"
    );
    assert!(profile.contains(r#"<a id="nav-logout" href="/auth/logout">Sign out</a>"#));
    assert!(!profile.contains("nav-login"));
}

#[vibetuner::test]
async fn flashes_show_once_on_the_page_after_sign_in_profile_and_sign_out() {
    let app = TestApp::new(app()).await;
    let client = app.sign_in("flash@example.com").await;
    let home = page(&client, "/").await;
    assert!(home.contains("Signed in as flash."), "{home}");
    assert!(home.contains(r#"class="alert alert-success shadow-lg" data-flash"#));
    assert!(
        !page(&client, "/").await.contains("Signed in as"),
        "shown once"
    );
    let quiet = client.request(Method::GET, "/").html().send().await;
    assert_eq!(
        quiet.header("set-cookie"),
        None,
        "a page with no flash leaves the session unwritten"
    );

    let saved = client
        .post_form("/user/edit", &[("name", "Flo"), ("language", "")])
        .await;
    assert_eq!(saved.status(), 303);
    // JSON and htmx requests made before the next page do not use it up.
    assert_eq!(client.get_json("/health/ping").await.status(), 200);
    let profile = page(&client, "/user/").await;
    assert!(profile.contains("Profile saved."), "{profile}");
    assert!(!page(&client, "/user/").await.contains("Profile saved."));

    // A page that redirects again passes its messages on.
    let bounced = client.request(Method::GET, "/bounce").html().send().await;
    assert_eq!(bounced.status(), 303);
    let home = page(&client, "/").await;
    assert!(
        home.contains("Bounced.") && home.contains("alert-warning"),
        "{home}"
    );

    let out = client.post_form("/auth/logout", &[]).await;
    assert_eq!(out.status(), 303);
    let home = page(&client, "/").await;
    assert!(home.contains("You are signed out."), "{home}");
    assert!(home.contains("nav-login"), "signed out: {home}");
    assert!(!page(&client, "/").await.contains("signed out"));
}

#[vibetuner::test]
async fn htmx_answers_carry_their_flashes_in_hx_trigger() {
    let app = TestApp::new(app()).await;
    let client = app.client();
    let response = client.request(Method::GET, "/save").htmx().send().await;
    assert_eq!(response.status(), 200);
    let trigger: Value =
        serde_json::from_str(response.header("hx-trigger").expect("HX-Trigger")).unwrap();
    assert_eq!(
        trigger,
        json!({"vt:flash": {"messages": [
            {"level": "success", "message": "Saved."},
            {"level": "info", "message": "Twice."}
        ]}})
    );
    assert!(
        !page(&client, "/").await.contains("Saved."),
        "shown as a toast, not again on the next page"
    );

    // Without htmx, the next page shows them; an htmx request redirected keeps them too.
    client.request(Method::GET, "/save").html().send().await;
    let bounced = client.request(Method::GET, "/bounce").htmx().send().await;
    assert_eq!(bounced.status(), 303);
    assert!(bounced.header("hx-trigger").is_none());
    let home = page(&client, "/").await;
    assert!(
        home.contains("Saved.") && home.contains("Twice.") && home.contains("Bounced."),
        "{home}"
    );
}

#[vibetuner::test]
async fn brand_settings_reach_pages_the_manifest_and_emails() {
    let app = TestApp::builder(app())
        .setting("BRAND_NAME", "Acme Tools")
        .setting("BRAND_PRIMARY_COLOR", "#FE0")
        .setting("BRAND_LOGO", "img/logo.svg")
        .start()
        .await;
    let client = app.client();
    let home = page(&client, "/").await;
    assert!(home.contains("<title>Acme Tools</title>"), "{home}");
    assert!(
        home.contains(
            "<style>:root:root{--color-primary:#ffee00;--color-primary-content:#000000}</style>"
        ),
        "{home}"
    );
    assert!(home.contains(r##"<meta name="theme-color" content="#ffee00">"##));
    assert!(home.contains(r#"<img src="/static/v"#) && home.contains(r#"/img/logo.svg" alt="""#));
    let manifest = client.get("/site.webmanifest").await.text();
    assert!(manifest.contains(r#""name": "Acme Tools""#), "{manifest}");
    assert!(
        manifest.contains(r##""theme_color": "#ffee00""##),
        "{manifest}"
    );

    client
        .post_form("/auth/magic-link-login", &[("email", "brand@example.com")])
        .await;
    let mail = &app.outbox()[0];
    assert!(mail.subject.contains("Acme Tools"), "{}", mail.subject);
    let html = app
        .renderer()
        .render(
            "email/magic_link.html.jinja",
            None,
            context! { link => "https://x.test/l", email => "a@b.c", minutes => 15 },
        )
        .unwrap();
    assert!(html.contains("Sign in to Acme Tools"), "{html}");
    assert!(
        html.contains("background: #ffee00; color: #000000;"),
        "{html}"
    );

    // Without BRAND_*: the project's name and the themes' own primary colour.
    let plain = page(&TestApp::new(app_plain()).await.client(), "/").await;
    assert!(!plain.contains("--color-primary"), "{plain}");
    assert!(plain.contains(r##"<meta name="theme-color" content="#5b2333">"##));
}

fn app_plain() -> App {
    App::new(SOURCE)
}

/// An unversioned static URL redirects to the current version with its path as sent (the
/// `request` fuzz target found that a decoded control character turned the redirect into a 500).
#[tokio::test]
async fn unversioned_statics_redirect_with_the_path_as_sent() {
    let app = TestApp::new(app_plain()).await;
    let res = app.client().get("/static/img/..%1Fx%0A.png?v=1").await;
    assert_eq!(res.status(), 307);
    let location = res.location().unwrap();
    assert!(
        location.starts_with("/static/v") && location.ends_with("/img/..%1Fx%0A.png?v=1"),
        "{location}"
    );
}
