//! Accounts end to end against a served app: magic links (sessions in the embedded store, in
//! MongoDB and in Redis), every bad token and redirect, rate limits, CSRF, security headers,
//! profile pages, the dev outbox, and OAuth against a provider these tests run on 127.0.0.1.

use crate::support;
use crate::support::{SOURCE, redis_url};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(feature = "oauth")]
use crate::support::oauth_provider::{FakeProvider, FakeUser};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use vibetuner::axum::routing::get;
use vibetuner::config::Source;
use vibetuner::models::{EmailVerificationToken, OAuthAccount, User};
use vibetuner::store::{Filter, Query, Update};
use vibetuner::{App, CurrentUser, ProjectSource, Settings, Store};

/// Where sessions (and the store) live for a test.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sessions {
    /// Embedded store, in-memory rate limits.
    Embedded,
    /// MongoDB store (`TEST_MONGODB_URL`).
    Mongo,
    /// Redis sessions and rate limits (`TEST_REDIS_URL`), embedded store.
    Redis,
}

struct TestApp {
    base: String,
    data: tempfile::TempDir,
    client: reqwest::Client,
    ip: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn random_ip() -> String {
    let n = uuid::Uuid::new_v4().as_bytes()[..3].to_vec();
    format!("10.{}.{}.{}", n[0], n[1], n[2])
}

/// A browser-like client: it asks for HTML, so sign-in refusals are redirects, not 401 JSON.
fn client(ip: &str, cookies: bool) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", HeaderValue::from_str(ip).unwrap());
    headers.insert(
        "accept",
        HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
    );
    reqwest::Client::builder()
        .cookie_store(cookies)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

/// `/slow-flash` started, and may finish.
static SLOW_FLASH_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();
static SLOW_FLASH_RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();

async fn start(sessions: Sessions, extra: Vec<(String, String)>) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let data = tempfile::tempdir().unwrap();
    let mut pairs = vec![
        (
            "DATA_DIR".to_owned(),
            data.path().to_str().unwrap().to_owned(),
        ),
        ("AUTH_RATE_LIMIT".to_owned(), AUTH_LIMIT.to_owned()),
    ];
    match sessions {
        Sessions::Embedded => {}
        Sessions::Mongo => pairs.push((
            "MONGODB_URL".into(),
            format!(
                "{}/{}",
                support::mongodb_url().trim_end_matches('/'),
                support::unique_name("auth")
            ),
        )),
        Sessions::Redis => {
            pairs.push(("REDIS_URL".into(), redis_url()));
            // Keys of their own, so runs within one rate-limit window do not add up.
            pairs.push((
                "REDIS_KEY_PREFIX".into(),
                format!("auth-test-{}:", uuid::Uuid::new_v4().simple()),
            ));
        }
    }
    pairs.extend(extra);
    let settings = Settings::from_source(Source::from_pairs(pairs)).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let guarded = axum::Router::new()
            .route("/guarded/report", get(|| async { "report" }))
            .route_layer(axum::middleware::from_fn(vibetuner::auth::require_user));
        let app = App::new(SOURCE)
            // Writes the session late: a request still in flight when the user signs out
            // (it says when it started and finishes when the test lets it).
            .route(
                "/slow-flash",
                axum::routing::post(|| async {
                    SLOW_FLASH_STARTED.notify_one();
                    SLOW_FLASH_RELEASE.notified().await;
                    (
                        vibetuner::flash::Flash::success("saved"),
                        axum::response::Redirect::to("/"),
                    )
                }),
            )
            .route(
                "/flash",
                axum::routing::post(|| async {
                    (
                        vibetuner::flash::Flash::success("noted"),
                        axum::response::Redirect::to("/"),
                    )
                }),
            )
            .route(
                "/private",
                get(|user: CurrentUser| async move { format!("hello {}", user.display_name()) }),
            )
            .merge(guarded);
        if let Err(e) = app
            .serve(listener, settings, &root, async {
                let _ = stopped.await;
            })
            .await
        {
            panic!("the app did not start: {e:#}");
        }
    });
    let ip = random_ip();
    let app = TestApp {
        base,
        data,
        client: client(&ip, true),
        ip,
        stop: Some(stop),
    };
    for _ in 0..100 {
        if app.client.get(app.url("/health/ping")).send().await.is_ok() {
            return app;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the app did not answer on {}", app.base);
}

impl TestApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// GET as a browser asking for a page (`Accept: text/html`).
    async fn get_page(&self, path: &str) -> reqwest::Response {
        let request = self
            .client
            .get(self.url(path))
            .header("accept", "text/html");
        request.send().await.unwrap()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    fn outbox(&self) -> PathBuf {
        self.data.path().join("outbox")
    }

    /// A store handle on the app's own database (embedded file or the MongoDB database).
    async fn store(&self, settings_url: Option<&str>) -> Store {
        match settings_url {
            #[cfg(feature = "mongodb")]
            Some(url) => Store::mongo(url, "unused").await.unwrap(),
            #[cfg(not(feature = "mongodb"))]
            Some(_) => unreachable!("MongoDB tests need the mongodb feature"),
            None => Store::embedded(&self.data.path().join("store.sqlite3")).unwrap(),
        }
    }

    /// Requests a link for `email` and returns it (from the dev outbox).
    async fn request_link(&self, email: &str, next: &str) -> String {
        let before: Vec<String> = vibetuner::mail::read_outbox(&self.outbox())
            .into_iter()
            .map(|m| m.file)
            .collect();
        let res = self
            .post(
                "/auth/magic-link-login",
                &[("email", email), ("next", next)],
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.text().await.unwrap();
        assert!(body.contains("Check your email"), "{body}");
        // The new file, not the newest by mtime: two messages can share a (coarse) mtime.
        let mut new: Vec<_> = vibetuner::mail::read_outbox(&self.outbox())
            .into_iter()
            .filter(|m| !before.contains(&m.file))
            .collect();
        assert_eq!(new.len(), 1, "one new message");
        let message = new.pop().unwrap();
        assert_eq!(
            message.to,
            email.to_lowercase(),
            "addressed to the requester"
        );
        assert!(message.subject.contains("Sign in to Fixture"));
        message.links[0].clone()
    }

    async fn sign_in(&self, email: &str) {
        let link = self.request_link(email, "/").await;
        let res = open_link(&self.client, &link).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{link}");
    }
}

/// Opens a sign-in link with `client` as a person would: the confirmation page, then its
/// button. Returns the button's answer, or the link's when it shows no confirmation.
async fn open_link(client: &reqwest::Client, link: &str) -> reqwest::Response {
    open_link_with(client, link, HeaderMap::new()).await
}

/// [`open_link`] sending `headers` with both requests.
async fn open_link_with(
    client: &reqwest::Client,
    link: &str,
    headers: HeaderMap,
) -> reqwest::Response {
    let page = client
        .get(link)
        .headers(headers.clone())
        .send()
        .await
        .unwrap();
    if page.status() != StatusCode::OK {
        return page;
    }
    let body = page.text().await.unwrap();
    assert!(body.contains("Sign in as"), "a confirmation page: {body}");
    client
        .post(link)
        .headers(headers)
        .form(&[("replace", form_value(&body, "replace"))])
        .send()
        .await
        .unwrap()
}

/// The `value` of the form field `name` in `page`.
fn form_value(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no field {name}: {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// A signed-in user's page is kept out of shared caches and varies with `HX-Request`.
fn assert_kept_private(page: &reqwest::Response) {
    let headers = page.headers();
    assert_eq!(
        headers["cache-control"], "private, no-store",
        "a signed-in user's page is kept out of shared caches"
    );
    assert!(
        headers.get_all("vary").iter().any(|v| v == "HX-Request"),
        "{headers:?}"
    );
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn token_of(link: &str) -> String {
    link.split("/auth/email-verify/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned()
}

async fn magic_link_round_trip(sessions: Sessions) {
    let app = start(sessions, vec![]).await;
    let login = app.get("/auth/login").await;
    assert_eq!(login.status(), StatusCode::OK);
    let page = login.text().await.unwrap();
    assert!(page.contains("action=\"/auth/magic-link-login\""), "{page}");

    let anonymous = app.get("/private").await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&anonymous), "/auth/login?next=%2Fprivate");
    let api = app
        .client
        .get(app.url("/private"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        api.status(),
        StatusCode::UNAUTHORIZED,
        "API clients get 401"
    );
    let detail: serde_json::Value = api.json().await.unwrap();
    assert_eq!(detail, serde_json::json!({ "detail": "Sign in first" }));

    let guarded = app.get("/guarded/report?x=1").await;
    assert_eq!(
        location(&guarded),
        "/auth/login?next=%2Fguarded%2Freport%3Fx%3D1"
    );

    let link = app.request_link("Ada@Example.com", "/private").await;
    assert!(
        link.starts_with(&app.base),
        "absolute link to this site: {link}"
    );
    assert!(link.ends_with("?next=%2Fprivate"), "{link}");
    let res = open_link(&app.client, &link).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/private");
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "not Secure in dev: {cookie}");
    let max_age: i64 = cookie
        .split("Max-Age=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (14 * 86_400 - 60..=14 * 86_400).contains(&max_age),
        "{cookie}"
    );

    let private = app.get("/private").await;
    assert_eq!(private.text().await.unwrap(), "hello ada");
    assert_eq!(
        app.get("/guarded/report?x=1").await.text().await.unwrap(),
        "report"
    );
    let profile = app.get("/user/").await;
    assert_kept_private(&profile);
    let profile = profile.text().await.unwrap();
    assert!(profile.contains("ada@example.com"), "{profile}");
    assert!(profile.contains("id=\"nav-user\""), "header shows the user");
    let missing = app.get_page("/no-such-page").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let missing = missing.text().await.unwrap();
    assert!(
        missing.contains("id=\"nav-user\""),
        "error pages show the signed-in user too: {missing}"
    );

    let reused = open_link(&app.client, &link).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    assert!(reused.text().await.unwrap().contains("already used"));

    let session_value = cookie.split(';').next().unwrap().to_owned();
    let logout = app.post("/auth/logout", &[]).await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&logout), "/");
    assert_eq!(app.get("/private").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        get_with_cookie(
            &client(&app.ip, false),
            &app.url("/private"),
            &session_value
        )
        .await,
        StatusCode::SEE_OTHER,
        "the old cookie no longer works: the session was deleted server-side"
    );
}

per_variant!(Sessions, magic_link_round_trip:
    magic_link_with_sessions_in_the_embedded_store => Embedded,
    magic_link_with_sessions_in_mongodb => Mongo,
    magic_link_with_sessions_in_redis => Redis,
);

async fn session_id_rotates_at_sign_in(sessions: Sessions) {
    let app = start(sessions, vec![]).await;
    app.sign_in("rot@example.com").await;
    let raw_cookie = |res: &reqwest::Response| {
        res.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .find(|c| c.starts_with("session="))
    };
    let first_link = app.request_link("rot@example.com", "/").await;
    let planted = client(&app.ip, false);
    let res = open_link(&planted, &first_link).await;
    let fixed = raw_cookie(&res).expect("a session cookie");
    let second_link = app.request_link("rot@example.com", "/").await;
    let mut cookie = HeaderMap::new();
    cookie.insert("cookie", HeaderValue::from_str(&fixed).unwrap());
    let res = open_link_with(&planted, &second_link, cookie).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "signed in");
    let rotated = raw_cookie(&res).expect("a new session cookie at sign-in");
    assert_ne!(rotated, fixed, "signing in issues a new session id");
    let private = app.url("/private");
    assert_eq!(
        get_with_cookie(&planted, &private, &fixed).await,
        StatusCode::SEE_OTHER,
        "the previous id is dead"
    );
    assert_eq!(
        get_with_cookie(&planted, &private, &rotated).await,
        StatusCode::OK
    );
}

/// The status of `url` fetched with exactly this `cookie` header.
async fn get_with_cookie(client: &reqwest::Client, url: &str, cookie: &str) -> StatusCode {
    let res = client.get(url).header("cookie", cookie).send().await;
    res.unwrap().status()
}

/// A request that was in flight when the user signed out cannot write the deleted session back:
/// the old cookie stays signed out (a stolen cookie does not survive the victim's logout).
async fn logout_sticks_while_a_request_is_in_flight(sessions: Sessions) {
    let app = start(sessions, vec![]).await;
    let link = app.request_link("ada@example.com", "/private").await;
    let res = open_link(&app.client, &link).await;
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("session="))
        .expect("a session cookie");
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let other = client(&app.ip, false);
    let in_flight = {
        let (other, url, cookie) = (other.clone(), app.url("/slow-flash"), cookie.clone());
        tokio::spawn(async move {
            other
                .post(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::timeout(Duration::from_secs(10), SLOW_FLASH_STARTED.notified())
        .await
        .expect("the slow request reached its handler");
    let logout = app.post("/auth/logout", &[]).await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        get_with_cookie(&other, &app.url("/private"), &cookie).await,
        StatusCode::SEE_OTHER,
        "signed out"
    );
    SLOW_FLASH_RELEASE.notify_one();
    assert_eq!(in_flight.await.unwrap(), StatusCode::SEE_OTHER);
    assert_eq!(
        get_with_cookie(&other, &app.url("/private"), &cookie).await,
        StatusCode::SEE_OTHER,
        "the request in flight wrote the deleted session back"
    );
}

/// Signing out without being signed in stores nothing: no session, no cookie.
async fn anonymous_logout_stores_no_session(sessions: Sessions) {
    let app = start(sessions, vec![]).await;
    let anonymous = client(&app.ip, false);
    for _ in 0..20 {
        let res = anonymous
            .post(app.url("/auth/logout"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&res), "/");
        assert!(
            !res.headers()
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap().starts_with("session=")),
            "an anonymous logout made a session: {:?}",
            res.headers()
        );
    }
}

/// A visitor who is not signed in starts at most `SESSION_RATE_LIMIT` sessions per address: over
/// it, the response comes without a session cookie and nothing is stored; signing in from that
/// address still works (sign-ins have their own limit).
async fn anonymous_sessions_per_address_are_capped(sessions: Sessions) {
    let app = start(
        sessions,
        vec![("SESSION_RATE_LIMIT".into(), "3/hour".into())],
    )
    .await;
    let anonymous = client(&app.ip, false);
    let mut started = Vec::new();
    for _ in 0..10 {
        let res = anonymous.post(app.url("/flash")).send().await.unwrap();
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "the answer is unchanged"
        );
        started.push(
            res.headers()
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap().starts_with("session=")),
        );
    }
    // Three in a window; ten requests cross at most one window's end.
    assert_eq!(started[..3], [true; 3], "{started:?}");
    let refused = started.iter().filter(|s| !**s).count();
    assert!(refused >= 4, "{started:?}");
    // Another address has its own budget.
    let elsewhere = client("203.0.113.250", false);
    let res = elsewhere.post(app.url("/flash")).send().await.unwrap();
    assert!(
        res.headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("session="))
    );
    // Signing in is not counted here.
    let link = app.request_link("ada@example.com", "/private").await;
    let res = open_link(&app.client, &link).await;
    assert_eq!(location(&res), "/private");
    let res = app.client.get(app.url("/private")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

per_variant!(Sessions, anonymous_sessions_per_address_are_capped:
    anonymous_sessions_capped_in_the_embedded_store => Embedded,
    anonymous_sessions_capped_in_redis => Redis,
);

per_variant!(Sessions, anonymous_logout_stores_no_session:
    anonymous_logout_in_the_embedded_store => Embedded,
    anonymous_logout_in_redis => Redis,
);

per_variant!(Sessions, logout_sticks_while_a_request_is_in_flight:
    logout_sticks_in_the_embedded_store => Embedded,
    logout_sticks_in_mongodb => Mongo,
    logout_sticks_in_redis => Redis,
);

per_variant!(Sessions, session_id_rotates_at_sign_in:
    session_rotation_in_the_store => Embedded,
    session_rotation_in_redis => Redis,
);

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_session_is_renewed_once_a_day() {
    let prefix = format!("{}:", support::unique_name("renew"));
    let app = start(
        Sessions::Redis,
        vec![("REDIS_KEY_PREFIX".into(), prefix.clone())],
    )
    .await;
    app.sign_in("renew@example.com").await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}session:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    // Pretend the session was last renewed long ago and is about to expire.
    let stored: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut data: serde_json::Value = serde_json::from_str(&stored).unwrap();
    data["renewed"] = serde_json::json!(0);
    let expiring = || async {
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let ms: i64 = redis::cmd("PEXPIRETIME")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        ms - chrono::Utc::now().timestamp_millis()
    };
    let () = redis::cmd("SET")
        .arg(key)
        .arg(data.to_string())
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(app.get("/private").await.status(), StatusCode::OK);
    let left = expiring().await;
    assert!(
        left > 13 * 86_400_000,
        "an active session gets its 14 days again: {left} ms left"
    );
    // Renewed today already: the next request writes nothing.
    let () = redis::cmd("PEXPIRE")
        .arg(key)
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(app.get("/private").await.status(), StatusCode::OK);
    let left = expiring().await;
    assert!(
        left <= 60_000,
        "no second write the same day: {left} ms left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_a_readable_page() {
    let app = start(Sessions::Embedded, vec![]).await;
    let store = app.store(None).await;

    app.request_link("bob@example.com", "/").await;
    let second = app.request_link("bob@example.com", "/").await;
    let raw = token_of(&second);
    let stored = store
        .models::<EmailVerificationToken>()
        .find(&Query::filter(Filter::eq("email", "bob@example.com")))
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert!(
        stored
            .iter()
            .all(|t| t.data.token != raw && t.data.token.len() == 64),
        "only hashes are stored"
    );
    assert!(
        stored
            .iter()
            .any(|t| t.data.token == vibetuner::security::sha256_hex(&raw))
    );

    for forged in [
        "A".repeat(43),
        vibetuner::security::random_token(32),
        "short".into(),
        format!("{raw}x"),
    ] {
        let res = app.get(&format!("/auth/email-verify/{forged}")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{forged}");
        let body = res.text().await.unwrap();
        assert!(
            body.contains("invalid, has expired or was already used"),
            "{body}"
        );
    }

    let third = app.request_link("bob@example.com", "/").await;
    store
        .collection("email_verification_tokens")
        .update_many(
            Filter::eq("token", vibetuner::security::sha256_hex(&token_of(&third))),
            Update::set(bson::doc! { "expires_at": vibetuner::Timestamp::from_millis(1_000) }),
        )
        .await
        .unwrap();
    let expired = open_link(&app.client, &third).await;
    assert_eq!(expired.status(), StatusCode::BAD_REQUEST, "expired link");

    let carol = app.request_link("carol@example.com", "/").await;
    let dave = app.request_link("dave@example.com", "/").await;
    let res = open_link(&app.client, &carol).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "dave's link did not invalidate carol's"
    );
    assert_eq!(
        app.get("/private").await.text().await.unwrap(),
        "hello carol"
    );
    let res = open_link(&app.client, &dave).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get("/private").await.text().await.unwrap(),
        "hello dave",
        "each link signs in its own address"
    );
    let users = store
        .models::<User>()
        .count(&Filter::eq("email", "dave@example.com"))
        .await
        .unwrap();
    assert_eq!(users, 1, "the account was created on first sign-in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_asks_before_signing_in() {
    let app = start(Sessions::Embedded, vec![]).await;
    let link = app.request_link("ann@example.com", "/private").await;
    // A mail scanner fetching the link, twice: a page each time, nothing used up.
    for _ in 0..2 {
        let page = app.client.get(&link).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()["cache-control"], "no-store");
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let nonce = csp_nonce(&csp);
        let body = page.text().await.unwrap();
        assert!(body.contains(&format!("nonce=\"{nonce}\"")), "{body}");
        assert!(body.contains("<form method=\"post\""), "{body}");
        assert!(body.contains("Sign in as ann@example.com"), "{body}");
        assert!(!body.contains("id=\"signed-in-as\""), "{body}");
    }
    assert_eq!(
        app.get("/private").await.status(),
        StatusCode::SEE_OTHER,
        "opening the link signs nobody in"
    );
    let forged = app
        .client
        .post(&link)
        .header("origin", "http://evil.test")
        .form(&[("replace", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        StatusCode::FORBIDDEN,
        "another site cannot press the button"
    );
    let res = app.client.post(&link).form(&[("replace", "")]).send().await;
    let res = res.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/private");
    assert_eq!(app.get("/private").await.text().await.unwrap(), "hello ann");
    assert_eq!(
        app.client.get(&link).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST,
        "a used link shows no confirmation"
    );
    let again = app.client.post(&link).send().await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::BAD_REQUEST,
        "nor signs in again"
    );

    // Someone else's link opened while signed in: the page says so and asks.
    let bens = app.request_link("ben@example.com", "/").await;
    let page = app.client.get(&bens).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.unwrap();
    assert!(
        body.contains("You are signed in as <strong>ann@example.com</strong>"),
        "{body}"
    );
    assert!(body.contains("Sign in as ben@example.com"), "{body}");
    // A POST that was not offered to replace ann (a bare one, or from a page shown before she
    // signed in) keeps her session and leaves the link unused.
    for bare in [
        app.client.post(&bens).send().await.unwrap(),
        app.client
            .post(&bens)
            .form(&[("replace", "")])
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(bare.status(), StatusCode::CONFLICT);
        let text = bare.text().await.unwrap();
        assert!(text.contains("id=\"signed-in-as\""), "{text}");
    }
    assert_eq!(app.get("/private").await.text().await.unwrap(), "hello ann");
    let res = app
        .client
        .post(&bens)
        .form(&[("replace", form_value(&body, "replace"))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "confirmed on the page");
    assert_eq!(app.get("/private").await.text().await.unwrap(), "hello ben");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_only_follows_local_paths() {
    let app = start(
        Sessions::Embedded,
        vec![("AUTH_RATE_LIMIT".into(), "100/minute".into())],
    )
    .await;
    for bad in [
        "//evil.com",
        "/\\evil.com",
        "https://evil.com/",
        "/%2F%2Fevil.com",
        "%2F%2Fevil.com",
        "/%5Cevil.com",
        "/%252F%252Fevil.com",
        "/\t/evil.com",
        "javascript:alert(1)",
    ] {
        let link = app.request_link("eve@example.com", bad).await;
        assert!(
            !link.contains("next="),
            "{bad:?} dropped from the link: {link}"
        );
        let forced = format!(
            "{}?next={}",
            link.split('?').next().unwrap(),
            url::form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>()
        );
        let res = open_link(&app.client, &forced).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&res), "/", "{bad:?} must not be followed");
        let signed_in = app
            .get(&format!(
                "/auth/login?next={}",
                url::form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>()
            ))
            .await;
        assert_eq!(location(&signed_in), "/", "{bad:?} on the login page");
    }
    let link = app
        .request_link("eve@example.com", "/user/edit?tab=1")
        .await;
    let res = open_link(&app.client, &link).await;
    assert_eq!(location(&res), "/user/edit?tab=1");
}

per_variant!(Sessions, rate_limits:
    sending_is_rate_limited_per_ip_and_per_address => Embedded,
    sending_is_rate_limited_per_ip_and_per_address_on_redis => Redis,
);

/// Counts live in Redis: two app processes on one Redis (one key prefix) share the limit, so
/// five sign-in requests split between them use it up; counted in each process, ten would pass.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_shared_through_redis_by_two_apps() {
    early_in_the_window().await;
    let prefix = vec![(
        "REDIS_KEY_PREFIX".to_owned(),
        format!("{}:", support::unique_name("shared-limit")),
    )];
    let apps = [
        start(Sessions::Redis, prefix.clone()).await,
        start(Sessions::Redis, prefix).await,
    ];
    let ip = random_ip();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let res = client(&ip, false)
            .post(apps[i % 2].url("/auth/magic-link-login"))
            .form(&[("email", format!("shared{i}-{tag}@example.com"))])
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 429],
        "one limit across the apps"
    );
}

/// The sign-in limit these tests run with: the usual count in an hour-long window, so that a
/// test (seconds long) almost never straddles two windows.
const AUTH_LIMIT: &str = "5/hour";

/// In the rare case that the limiter's window (an hour, fixed on the clock) ends within the next
/// 15 s, waits for the next one: every request of a test then falls into one window.
async fn early_in_the_window() {
    let into = chrono::Utc::now().timestamp_millis() % 3_600_000;
    if into > 3_585_000 {
        tokio::time::sleep(Duration::from_millis((3_600_100 - into) as u64)).await;
    }
}

/// Redis stops: the limits are counted in this process instead of letting every hit through,
/// and sign-in links are still sent.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_while_redis_is_down() {
    let mut redis = support::OwnRedis::start();
    early_in_the_window().await;
    let app = start(Sessions::Redis, vec![("REDIS_URL".into(), redis.url())]).await;
    redis.stop();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let res = app
            .client
            .post(app.url("/auth/magic-link-login"))
            .form(&[("email", format!("down{i}-{tag}@example.com"))])
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429], "6th from one IP");
}

async fn rate_limits(sessions: Sessions) {
    early_in_the_window().await;
    let app = start(sessions, vec![]).await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    for i in 0..5 {
        app.request_link(&format!("p{i}-{tag}@example.com"), "/")
            .await;
    }
    let limited = app
        .client
        .post(app.url("/auth/magic-link-login"))
        .header("accept", "text/html")
        .form(&[
            ("email", &format!("p9-{tag}@example.com")),
            ("next", &"/".to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        limited.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "6th from one IP"
    );
    let body = limited.text().await.unwrap();
    assert!(body.contains("Too many sign-in attempts"), "{body}");
    assert!(body.contains("<html"), "a readable page");

    let json = app
        .client
        .post(app.url("/auth/magic-link-login"))
        .header("accept", "application/json")
        .form(&[("email", format!("p9-{tag}@example.com"))])
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::TOO_MANY_REQUESTS);
    let detail: serde_json::Value = json.json().await.unwrap();
    assert!(detail["detail"].as_str().unwrap().contains("seconds"));

    // One address asked for from many IPs: the usual page every time, but only 5 mails.
    let victim = format!("victim-{tag}@example.com");
    for i in 0..7 {
        let res = client(&random_ip(), false)
            .post(app.url("/auth/magic-link-login"))
            .form(&[("email", victim.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "request {i} for one address from many IPs"
        );
        let body = res.text().await.unwrap();
        assert!(body.contains("Check your email"), "{body}");
    }
    let sent = vibetuner::mail::read_outbox(&app.outbox())
        .into_iter()
        .filter(|m| m.to == victim)
        .count();
    assert_eq!(sent, 5, "nothing is sent over the per-address limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_share_a_limit_per_64() {
    early_in_the_window().await;
    let app = start(Sessions::Embedded, vec![]).await;
    let n = uuid::Uuid::new_v4().as_bytes()[..2].to_vec();
    let net = format!("2001:db8:{:x}:{:x}", n[0], n[1]);
    let ask = |ip: String, i: usize| {
        let url = app.url("/auth/magic-link-login");
        async move {
            client(&ip, false)
                .post(url)
                .form(&[("email", format!("six{i}@example.com"))])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for i in 0..5 {
        let status = ask(format!("{net}::{:x}", i + 1), i).await;
        assert_eq!(status, StatusCode::OK, "request {i} from the /64");
    }
    assert_eq!(
        ask(format!("{net}:abcd::99"), 5).await,
        StatusCode::TOO_MANY_REQUESTS,
        "another address in the same /64 shares its limit"
    );
    let other = format!("2001:db9:{:x}:{:x}::1", n[0], n[1]);
    assert_eq!(ask(other, 7).await, StatusCode::OK, "another /64 is not");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requesting_links_for_someone_does_not_lock_them_out() {
    early_in_the_window().await;
    let app = start(Sessions::Embedded, vec![]).await;
    let mine = app.request_link("vic@example.com", "/private").await;
    // Someone else asks for links for the same address, past its limit, from many IPs.
    for _ in 0..8 {
        let res = client(&random_ip(), false)
            .post(app.url("/auth/magic-link-login"))
            .form(&[("email", "vic@example.com")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let others: Vec<String> = vibetuner::mail::read_outbox(&app.outbox())
        .into_iter()
        .map(|m| m.links[0].clone())
        .filter(|l| *l != mine)
        .collect();
    assert_eq!(others.len(), 4, "5 links in all for the address");
    let res = open_link(&app.client, &mine).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "the earlier link still signs in"
    );
    assert_eq!(location(&res), "/private");
    assert_eq!(app.get("/private").await.text().await.unwrap(), "hello vic");
    for link in others {
        let res = open_link(&client(&random_ip(), true), &link).await;
        assert_eq!(
            res.status(),
            StatusCode::BAD_REQUEST,
            "using one link invalidates the address's others: {link}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_email_gets_the_form_back() {
    let app = start(Sessions::Embedded, vec![]).await;
    for bad in [
        "",
        "not-an-email",
        "a@b",
        "Eve <eve@evil.com>",
        "x@y.z, w@v.u",
    ] {
        let res = app.post("/auth/magic-link-login", &[("email", bad)]).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        let body = res.text().await.unwrap();
        assert!(body.contains("Enter a valid email address"), "{body}");
    }
    assert!(vibetuner::mail::read_outbox(&app.outbox()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_are_refused() {
    let app = start(Sessions::Embedded, vec![]).await;
    app.sign_in("csrf@example.com").await;
    let host = app.base.trim_start_matches("http://").to_owned();
    for (name, value) in [
        ("origin", "http://evil.test".to_owned()),
        ("sec-fetch-site", "cross-site".to_owned()),
        ("sec-fetch-site", "same-site".to_owned()),
        // Present but not an origin: refused, not taken for absent.
        ("origin", "null".to_owned()),
        ("origin", host.clone()),
        ("origin", format!("http://{host}/auth")),
        ("origin", format!("http://x@{host}")),
    ] {
        let res = app
            .client
            .post(app.url("/auth/logout"))
            .header(name, &value)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{name}: {value}");
        let body = res.text().await.unwrap();
        assert!(body.contains("refused"), "{body}");
        assert_eq!(
            app.get("/private").await.status(),
            StatusCode::OK,
            "still signed in after a refused {name}: {value}"
        );
    }
    let res = app
        .client
        .post(app.url("/auth/logout"))
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "same origin passes");
    assert_eq!(app.get("/private").await.status(), StatusCode::SEE_OTHER);
}

/// Without `BASE_URL` (dev), a sign-in link is built from the request's `Host`, but never from
/// a name that is not this machine's: a page that rebinds its own name to 127.0.0.1 would
/// otherwise receive the token when the developer opens the link from the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_sign_in_links_never_point_at_another_site() {
    let app = start(Sessions::Embedded, vec![]).await;
    let port = app
        .url("/")
        .split(':')
        .nth(2)
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let mut seen = Vec::new();
    for (host, origin) in [
        (
            format!("rebind.evil.test:{port}"),
            format!("http://localhost:{port}"),
        ),
        (
            format!("127.0.0.1:{port}"),
            format!("http://127.0.0.1:{port}"),
        ),
    ] {
        let res = app
            .client
            .post(app.url("/auth/magic-link-login"))
            .header("host", &host)
            .form(&[("email", "ada@example.com")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{host}");
        let outbox = vibetuner::mail::read_outbox(&app.outbox());
        let new: Vec<_> = outbox.iter().filter(|m| !seen.contains(&m.file)).collect();
        assert_eq!(new.len(), 1, "{host}: one new message");
        let link = new[0].links[0].clone();
        seen.push(new[0].file.clone());
        assert!(
            link.starts_with(&format!("{origin}/auth/email-verify/")),
            "{host}: {link}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_origin_scheme_is_compared() {
    let app = start(
        Sessions::Embedded,
        vec![("BASE_URL".into(), "https://app.example".into())],
    )
    .await;
    let post = |origin: &'static str| {
        app.client
            .post(app.url("/auth/logout"))
            .header("host", "app.example")
            .header("origin", origin)
            .send()
    };
    let res = post("http://app.example").await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "the same host over plain http is another site"
    );
    assert!(res.text().await.unwrap().contains("https://app.example"));
    let res = post("https://app.example").await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "the public origin passes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers_with_a_fresh_nonce() {
    let app = start(Sessions::Embedded, vec![]).await;
    let mut nonces = Vec::new();
    for _ in 0..2 {
        let res = app.get("/").await;
        let headers = res.headers().clone();
        let csp = headers["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let nonce = csp_nonce(&csp);
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("object-src 'none'"));
        let body = res.text().await.unwrap();
        assert!(
            body.contains(&format!("nonce=\"{nonce}\"")),
            "the framework's script carries the nonce"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(
            headers["referrer-policy"],
            "strict-origin-when-cross-origin"
        );
        assert!(
            headers["permissions-policy"]
                .to_str()
                .unwrap()
                .contains("camera=()")
        );
        assert!(
            !headers.contains_key("strict-transport-security"),
            "no HSTS in dev"
        );
        nonces.push(nonce);
    }
    assert_ne!(nonces[0], nonces[1], "a new nonce per response");
    let missing = app.get_page("/nope").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let csp = missing.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = missing.text().await.unwrap();
    let nonce = csp_nonce(&csp);
    assert!(
        body.contains(&format!("nonce=\"{nonce}\"")),
        "error pages too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_adds_hsts_secure_cookies_and_hides_the_outbox() {
    let prod = vec![
        ("ENVIRONMENT".to_owned(), "prod".to_owned()),
        (
            "SESSION_KEY".to_owned(),
            "q7Vn2LxR9tKc4WbZ8mPf1HsJ6yGd3AeU5oNi0ElC".to_owned(),
        ),
        ("SMTP_URL".to_owned(), "smtp://127.0.0.1:9".to_owned()),
        ("LOG_LEVEL".to_owned(), "error".to_owned()),
        ("BASE_URL".to_owned(), "https://shop.example.com".to_owned()),
    ];
    let app = start(Sessions::Embedded, prod.clone()).await;
    let sitemap = app
        .client
        .get(app.url("/sitemap.xml"))
        .header("host", "evil.example")
        .send();
    let sitemap = sitemap.await.unwrap().text().await.unwrap();
    assert!(
        sitemap.contains("https://shop.example.com/") && !sitemap.contains("evil.example"),
        "prod names its public origin, never the request's Host: {sitemap}"
    );
    let res = app.get("/").await;
    assert!(
        res.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    assert_eq!(
        app.get("/_dev/outbox").await.status(),
        StatusCode::NOT_FOUND
    );
    let failed = app
        .post("/auth/magic-link-login", &[("email", "p@example.com")])
        .await;
    assert_eq!(
        failed.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "an unreachable SMTP server is reported, not hidden"
    );
    let page = failed.text().await.unwrap();
    assert!(page.contains("could not be sent"), "{page}");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    // The builds below open the store before they refuse: in a folder of their own, not the
    // fixture's.
    let data = tempfile::tempdir().unwrap();
    let prod: Vec<(String, String)> = prod
        .into_iter()
        .chain([("DATA_DIR".to_owned(), data.path().display().to_string())])
        .collect();
    let no_origin: Vec<(String, String)> = prod
        .iter()
        .filter(|(k, _)| k != "BASE_URL")
        .cloned()
        .collect();
    let settings = Settings::from_source(Source::from_pairs(no_origin)).unwrap();
    let err = match App::new(SOURCE).build(settings, &root).await {
        Ok(_) => panic!("prod without a public origin must not start"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("no public origin") && err.contains("Set BASE_URL"),
        "{err}"
    );

    let no_mail: Vec<(String, String)> =
        prod.into_iter().filter(|(k, _)| k != "SMTP_URL").collect();
    let settings = Settings::from_source(Source::from_pairs(no_mail)).unwrap();
    let err = match App::new(SOURCE).build(settings, &root).await {
        Ok(_) => panic!("prod without mail settings must not start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("SMTP_URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htmx_requests_get_hx_redirect_to_login() {
    let app = start(Sessions::Embedded, vec![]).await;
    let res = app
        .client
        .get(app.url("/private"))
        .header("hx-request", "true")
        .header("hx-current-url", format!("{}/notes?page=2", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()["hx-redirect"],
        "/auth/login?next=%2Fnotes%3Fpage%3D2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_edit_and_logout_pages() {
    let app = start(Sessions::Embedded, vec![]).await;
    assert_eq!(
        location(&app.get("/user/edit").await),
        "/auth/login?next=%2Fuser%2Fedit"
    );
    assert_eq!(location(&app.get("/auth/logout").await), "/");
    app.sign_in("grace@example.com").await;
    let edit = app.get("/user/edit").await.text().await.unwrap();
    assert!(edit.contains("value=\"grace\""), "{edit}");
    let bad = app
        .post("/user/edit", &[("name", "Grace"), ("language", "xx")])
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("Choose one of the languages")
    );
    let long = "n".repeat(101);
    let bad = app.post("/user/edit", &[("name", long.as_str())]).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let ok = app
        .post(
            "/user/edit",
            &[("name", "Grace Hopper"), ("language", "en")],
        )
        .await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&ok), "/user/");
    let profile = app.get("/user/").await.text().await.unwrap();
    assert!(profile.contains("Grace Hopper") && profile.contains("Language: en"));
    assert_eq!(
        app.get("/private").await.text().await.unwrap(),
        "hello Grace Hopper",
        "the session copy is refreshed"
    );
    let confirm = app.get("/auth/logout").await.text().await.unwrap();
    assert!(confirm.contains("action=\"/auth/logout\"") && confirm.contains("method=\"post\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_outbox_lists_messages_with_their_links() {
    let app = start(Sessions::Embedded, vec![]).await;
    // Only this machine may read it: a request relayed by a proxy (the suite's client sends
    // X-Forwarded-For) is refused.
    assert_eq!(
        app.get("/_dev/outbox").await.status(),
        StatusCode::NOT_FOUND
    );
    let local = reqwest::Client::new();
    let outbox = || async {
        let res = local.get(app.url("/_dev/outbox")).send().await.unwrap();
        res.text().await.unwrap()
    };
    let empty = outbox().await;
    assert!(empty.contains("outbox-empty"));
    // A page of another site that rebinds its name to 127.0.0.1 sends its own Host; X-Real-IP
    // is a forwarding header like the others.
    for (header, value) in [("host", "rebind.evil.test"), ("x-real-ip", "127.0.0.1")] {
        let res = local
            .get(app.url("/_dev/outbox"))
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{header}: {value}");
    }
    let res = local
        .get(app.url("/_dev/outbox"))
        .header("host", "localhost:8000")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "localhost is this machine");
    let link = app.request_link("ivy@example.com", "/").await;
    let page = outbox().await;
    assert!(page.contains(&format!("href=\"{link}\"")), "{page}");
    assert!(page.contains("Sign in to Fixture"));
    let files: Vec<_> = std::fs::read_dir(app.outbox()).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let raw = std::fs::read_to_string(files[0].path()).unwrap();
    assert!(
        raw.contains("text/html") && raw.contains("text/plain"),
        "HTML and text bodies"
    );
}

/// With no fqdn in vibetuner.toml, mail comes from the public origin's domain, not localhost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_comes_from_the_public_origins_domain_without_an_fqdn() {
    let app = start(
        Sessions::Embedded,
        vec![("BASE_URL".into(), "https://shop.example.com".into())],
    )
    .await;
    app.request_link("kim@example.com", "/").await;
    let files: Vec<_> = std::fs::read_dir(app.outbox()).unwrap().flatten().collect();
    let raw = std::fs::read_to_string(files[0].path()).unwrap();
    assert!(raw.contains("<noreply@shop.example.com>"), "{raw}");
}

#[cfg(feature = "oauth")]
async fn oauth_app(provider: &FakeProvider, sessions: Sessions) -> TestApp {
    let mut settings = provider.oidc_settings("acme");
    settings.extend(provider.github_settings());
    start(sessions, settings).await
}

/// Follows start → provider → callback; returns the callback's response.
#[cfg(feature = "oauth")]
async fn oauth_sign_in(app: &TestApp, provider: &str, next: &str) -> reqwest::Response {
    let callback = oauth_consent(app, &app.client, provider, next).await;
    app.client.get(&callback).send().await.unwrap()
}

/// Starts a sign-in with `provider` as `client` and consents: the callback URL to visit.
#[cfg(feature = "oauth")]
async fn oauth_consent(
    app: &TestApp,
    client: &reqwest::Client,
    provider: &str,
    next: &str,
) -> String {
    let start = client
        .get(app.url(&format!("/auth/login/provider/{provider}?next={next}")))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER, "start redirects");
    let to_provider = location(&start);
    assert!(
        to_provider.contains("code_challenge_method=S256"),
        "{to_provider}"
    );
    assert!(to_provider.contains("state="), "{to_provider}");
    let consent = client.get(&to_provider).send().await.unwrap();
    assert_eq!(consent.status(), StatusCode::SEE_OTHER);
    let callback = location(&consent);
    assert!(
        callback.starts_with(&format!("{}/auth/provider/{provider}?", app.base)),
        "{callback}"
    );
    callback
}

#[cfg(feature = "oauth")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_first_oauth_sign_ins_make_one_user() {
    let provider = FakeProvider::start().await;
    let app = oauth_app(&provider, Sessions::Embedded).await;
    let store = app.store(None).await;
    for round in 0..5 {
        // Unverified: nothing to find the user by but the account's link.
        provider.set_user(FakeUser::new(
            &format!("race{round}"),
            "race@example.com",
            false,
        ));
        let browsers = [client(&random_ip(), true), client(&random_ip(), true)];
        let mut callbacks = Vec::new();
        for browser in &browsers {
            callbacks.push(oauth_consent(&app, browser, "acme", "%2F").await);
        }
        let (a, b) = tokio::join!(
            browsers[0].get(&callbacks[0]).send(),
            browsers[1].get(&callbacks[1]).send()
        );
        assert_eq!(a.unwrap().status(), StatusCode::SEE_OTHER);
        assert_eq!(b.unwrap().status(), StatusCode::SEE_OTHER);
        let users = store.models::<User>().count(&Filter::All).await.unwrap();
        assert_eq!(
            users,
            round + 1,
            "round {round}: one user per provider account"
        );
        let mut seen = Vec::new();
        for browser in &browsers {
            let res = browser.get(app.url("/private")).send().await.unwrap();
            seen.push(res.text().await.unwrap());
        }
        assert_eq!(seen[0], seen[1], "both browsers signed in as the same user");
    }
}

#[cfg(feature = "oauth")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_creates_then_finds_the_account() {
    let provider = FakeProvider::start().await;
    let app = oauth_app(&provider, Sessions::Embedded).await;
    let login = app.get("/auth/login").await.text().await.unwrap();
    assert!(login.contains("/auth/login/provider/acme") && login.contains("Continue with GitHub"));
    provider.set_user(FakeUser::new("sub-1", "Oid@Example.com", true));
    let res = oauth_sign_in(&app, "acme", "%2Fuser%2F").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/user/");
    let profile = app.get("/user/").await;
    assert_kept_private(&profile);
    let profile = profile.text().await.unwrap();
    assert!(
        profile.contains("oid@example.com") && profile.contains("User sub-1"),
        "{profile}"
    );
    assert!(
        profile.contains("acme"),
        "linked accounts list the provider"
    );
    assert!(provider.log().contains(&"POST /token".to_owned()));

    app.post("/auth/logout", &[]).await;
    let again = oauth_sign_in(&app, "acme", "%2F").await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    let store = app.store(None).await;
    assert_eq!(store.models::<User>().count(&Filter::All).await.unwrap(), 1);
    assert_eq!(
        store
            .models::<OAuthAccount>()
            .count(&Filter::All)
            .await
            .unwrap(),
        1
    );
}

#[cfg(feature = "oauth")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_links_by_verified_email_only() {
    let provider = FakeProvider::start().await;
    let app = oauth_app(&provider, Sessions::Redis).await;
    app.sign_in("linked@example.com").await;
    app.post("/auth/logout", &[]).await;

    provider.set_user(FakeUser::new("u42", "Linked@example.com", true));
    let res = oauth_sign_in(&app, "github", "%2F").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let store = app.store(None).await;
    let users = store.models::<User>();
    assert_eq!(
        users.count(&Filter::All).await.unwrap(),
        1,
        "linked, not duplicated"
    );
    let user = users
        .find_one(Filter::eq("email", "linked@example.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.data.oauth_accounts.len(), 1);
    let account = store
        .models::<OAuthAccount>()
        .find_one(Filter::eq("provider", "github"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.data.provider_user_id, "42", "GitHub's numeric id");
    assert_eq!(account.data.user_id, Some(user.id));
    assert_eq!(
        app.get("/private").await.text().await.unwrap(),
        "hello linked"
    );
    app.post("/auth/logout", &[]).await;

    provider.set_user(FakeUser::new("u77", "linked@example.com", false));
    let res = oauth_sign_in(&app, "github", "%2F").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        users.count(&Filter::All).await.unwrap(),
        2,
        "an unverified address gets its own account"
    );
    let stranger = app.get("/private").await.text().await.unwrap();
    assert_eq!(stranger, "hello User u77");
}

#[cfg(feature = "oauth")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_failures_show_a_message_on_the_login_page() {
    let provider = FakeProvider::start().await;
    let app = oauth_app(&provider, Sessions::Embedded).await;

    let mut denied = FakeUser::new("d1", "d@example.com", true);
    denied.deny = true;
    provider.set_user(denied);
    let res = oauth_sign_in(&app, "acme", "%2F").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body = res.text().await.unwrap();
    assert!(body.contains("Signing in with acme did not work"), "{body}");

    let mut forged = FakeUser::new("f1", "f@example.com", true);
    forged.forge_signature = true;
    provider.set_user(forged);
    let res = oauth_sign_in(&app, "acme", "%2F").await;
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "an ID token not signed by the JWKS key"
    );

    provider.set_user(FakeUser::new("s1", "s@example.com", true));
    let start = app.get("/auth/login/provider/acme").await;
    let consent = app.client.get(location(&start)).send().await.unwrap();
    let callback = location(&consent);
    let tampered = callback.replace("state=", "state=x");
    let res = app.client.get(&tampered).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "state mismatch");
    let replay = app.client.get(&callback).send().await.unwrap();
    assert_eq!(
        replay.status(),
        StatusCode::BAD_REQUEST,
        "the pending login was consumed by the failed attempt"
    );

    let other_browser = client(&random_ip(), true);
    let start = app.get("/auth/login/provider/acme").await;
    let consent = app.client.get(location(&start)).send().await.unwrap();
    let res = other_browser.get(location(&consent)).send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "a callback without the session"
    );

    assert_eq!(app.get("/private").await.status(), StatusCode::SEE_OTHER);
    let store = app.store(None).await;
    assert_eq!(store.models::<User>().count(&Filter::All).await.unwrap(), 0);
    let unknown = app.get("/auth/login/provider/nope").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[cfg(feature = "oauth")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_provider_without_credentials_fails_startup() {
    let settings = Settings::from_source(Source::from_pairs([
        ("OAUTH_PROVIDERS", "gitlab"),
        ("GITLAB_CLIENT_ID", "x"),
    ]))
    .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings;
    settings.data_dir = Some(dir.path().to_owned());
    let err = match App::new(SOURCE).build(settings, &root).await {
        Ok(_) => panic!("must fail"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("GITLAB_CLIENT_ID"), "{err}");
}

/// Vibetuner links accounts only through the user's `oauth_accounts` DBRefs: a provider sign-in
/// whose address changed, or that has no verified address, finds that user, records the link on
/// the account, and creates nobody.
#[cfg(feature = "oauth")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_follows_vibetuner_links() {
    use vibetuner::store::bson::{doc, oid::ObjectId};
    let provider = FakeProvider::start().await;
    let app = oauth_app(&provider, Sessions::Embedded).await;
    let store = app.store(None).await;
    let mut planted = Vec::new();
    for (sub, email) in [
        ("sub-moved", "Moved@Example.com"),
        ("sub-none", "none@example.com"),
    ] {
        let (user, account) = (ObjectId::new(), ObjectId::new());
        let vibetuner_account =
            doc! { "_id": account, "provider": "acme", "provider_user_id": sub, "email": email };
        store
            .collection("oauth_accounts")
            .insert(vibetuner_account)
            .await
            .unwrap();
        let vibetuner_user = doc! {
            "_id": user, "email": email, "name": sub,
            "oauth_accounts": [{ "$ref": "oauth_accounts", "$id": account }],
            "user_settings": {},
        };
        store
            .collection("users")
            .insert(vibetuner_user)
            .await
            .unwrap();
        planted.push((sub, user, account));
    }
    let users = store.models::<User>();
    for ((sub, user, account), (email, verified)) in planted
        .into_iter()
        .zip([("changed@example.com", true), ("none@example.com", false)])
    {
        provider.set_user(FakeUser::new(sub, email, verified));
        let res = oauth_sign_in(&app, "acme", "%2F").await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{sub}");
        assert_eq!(
            app.get("/private").await.text().await.unwrap(),
            format!("hello {sub}")
        );
        let profile = app.get("/user/").await;
        assert_eq!(
            profile.headers()["cache-control"],
            "private, no-store",
            "a signed-in user's page is kept out of shared caches"
        );
        assert!(
            profile
                .headers()
                .get_all("vary")
                .iter()
                .any(|v| v == "HX-Request"),
            "{:?}",
            profile.headers()
        );
        let profile = profile.text().await.unwrap();
        assert!(
            profile.contains("acme"),
            "the profile lists the account: {profile}"
        );
        let linked = store
            .models::<OAuthAccount>()
            .get(account.into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            linked.data.user_id,
            Some(user.into()),
            "user_id backfilled for {sub}"
        );
        assert_eq!(
            users.count(&Filter::All).await.unwrap(),
            2,
            "nobody created for {sub}"
        );
        app.post("/auth/logout", &[]).await;
    }
    let holding = users.find(&Query::all()).await.unwrap();
    assert!(
        holding.iter().all(|u| u.data.oauth_accounts.len() == 1),
        "one DBRef each"
    );
}

/// With `VIBETUNER_COMPAT`, a regional language is stored as the two-letter code Vibetuner's
/// `LanguageAlpha2` accepts; without it, as chosen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vibetuner_compat_stores_two_letter_languages() {
    const REGIONAL: ProjectSource = ProjectSource {
        answers: "[project]\nproject_name = \"Fixture\"\nproject_slug = \"fixture\"\nsupported_languages = [\"pt-BR\"]\n",
        version: "1.0.0",
        manifest_dir: env!("CARGO_MANIFEST_DIR"),
    };
    for (compat, stored) in [("true", "pt"), ("false", "pt-BR")] {
        let app = vibetuner::testing::TestApp::builder(App::new(REGIONAL))
            .setting("VIBETUNER_COMPAT", compat)
            .start()
            .await;
        let ada = app.sign_in("ada@example.com").await;
        let saved = ada
            .request(axum::http::Method::POST, "/user/edit")
            .html()
            .header("sec-fetch-site", "same-origin")
            .form(&[("name", "Ada"), ("language", "pt-BR")])
            .send()
            .await;
        assert!(
            saved.status().is_redirection(),
            "{}: {}",
            saved.status(),
            saved.text()
        );
        let user = app
            .store()
            .models::<User>()
            .find_one(Filter::eq("email", "ada@example.com"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            user.data.user_settings.language.as_deref(),
            Some(stored),
            "VIBETUNER_COMPAT={compat}"
        );
        app.stop().await;
    }
}

/// The nonce a `Content-Security-Policy` header allows scripts with.
fn csp_nonce(csp: &str) -> String {
    let after = csp.split("'nonce-").nth(1).expect("a nonce in the CSP");
    after
        .split('\'')
        .next()
        .expect("a closing quote")
        .to_owned()
}
