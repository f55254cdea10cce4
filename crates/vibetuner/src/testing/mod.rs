//! A test kit for apps (feature `testing`): build the app in-process on a fresh embedded store
//! (or MongoDB/Redis when asked), call it with a cookie-keeping client, sign in through the real
//! magic-link flow, read the dev outbox and wait for background tasks.
//!
//! ```no_run
//! use vibetuner::testing::TestApp;
//!
//! # fn app() -> vibetuner::App { vibetuner::App::new(vibetuner::project!()) }
//! #[vibetuner::test]
//! async fn profile_needs_a_sign_in() {
//!     let app = TestApp::new(app()).await;
//!     let anonymous = app.client();
//!     assert_eq!(anonymous.get("/user/").await.status(), 303);
//!     let ada = app.sign_in("ada@example.com").await;
//!     assert!(ada.get("/user/").await.text().contains("ada@example.com"));
//! }
//! ```
//!
//! Requests go through the app's complete router (every framework layer) without a socket,
//! so a test costs milliseconds. Settings come only from what the test gives (no `.env`, no
//! process environment): a test sees the same app on every machine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use crate::app::{App, BuiltApp};
use crate::config::{Settings, Source};
use crate::context::AppContext;
use crate::mail::OutboxMessage;

mod services;
pub use services::{OwnRedis, ServiceError, TestService, service_url, try_service_url};

/// Where a [`TestApp`]'s data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestBackend {
    /// A fresh SQLite file in a temporary folder (the default).
    Embedded,
    /// A fresh database on the MongoDB server at this URL.
    Mongo(String),
}

/// Builds a [`TestApp`] with settings and backends of the test's choosing.
#[must_use = "call .start() to build the app"]
pub struct TestAppBuilder {
    app: App,
    settings: BTreeMap<String, String>,
    backend: TestBackend,
    redis: Option<String>,
}

impl TestAppBuilder {
    /// Sets one setting (as an environment variable would), e.g. `("AUTH_RATE_LIMIT", "2/minute")`.
    pub fn setting(mut self, key: &str, value: impl Into<String>) -> Self {
        self.settings.insert(key.to_ascii_uppercase(), value.into());
        self
    }

    /// Stores data in a fresh database on the MongoDB server at `url`.
    pub fn mongodb(mut self, url: impl Into<String>) -> Self {
        self.backend = TestBackend::Mongo(url.into());
        self
    }

    /// Uses the Redis server at `url` for sessions, the queue, SSE and rate limits (keys under a
    /// prefix of this test's own).
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis = Some(url.into());
        self
    }

    /// Builds the app, creates its indexes and runs its startup hooks.
    ///
    /// # Panics
    /// When the app cannot be built (settings, a server that does not answer, a failing hook):
    /// the test fails with the reason.
    pub async fn start(self) -> TestApp {
        let dir = tempfile::tempdir().expect("cannot create a temporary folder for the test app");
        let unique = unique_name();
        let mut pairs = BTreeMap::from([
            ("ENVIRONMENT".to_owned(), "dev".to_owned()),
            ("DATA_DIR".to_owned(), dir.path().display().to_string()),
            ("AUTH_RATE_LIMIT".to_owned(), "10000/minute".to_owned()),
            ("SESSION_RATE_LIMIT".to_owned(), "10000/minute".to_owned()),
            ("LOG_LEVEL".to_owned(), "warn".to_owned()),
        ]);
        if let TestBackend::Mongo(url) = &self.backend {
            pairs.insert("MONGODB_URL".into(), with_database(url, &unique));
        }
        if let Some(url) = &self.redis {
            pairs.insert("REDIS_URL".into(), url.clone());
            pairs.insert("REDIS_KEY_PREFIX".into(), format!("{unique}:"));
        }
        pairs.extend(self.settings);
        let settings = Settings::from_source(Source::from_pairs(pairs))
            .unwrap_or_else(|e| panic!("test app settings are invalid: {e}"));
        let root = self.app.root();
        let built = self
            .app
            .build(settings, &root)
            .await
            .unwrap_or_else(|e| panic!("the test app does not build: {e:#}"));
        built
            .start()
            .await
            .unwrap_or_else(|e| panic!("the test app does not start: {e:#}"));
        let worker = crate::tasks::spawn_background(&built);
        TestApp {
            built,
            worker,
            _dir: dir,
        }
    }
}

/// An app built in-process for tests; dereferences to its [`AppContext`].
pub struct TestApp {
    built: BuiltApp,
    worker: Option<crate::tasks::InProcessWorker>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestApp {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.built.context
    }
}

impl TestApp {
    /// The app on a fresh embedded store, in dev, with no Redis.
    pub async fn new(app: App) -> Self {
        Self::builder(app).start().await
    }

    /// A builder for settings, MongoDB or Redis.
    pub fn builder(app: App) -> TestAppBuilder {
        TestAppBuilder {
            app,
            settings: BTreeMap::new(),
            backend: TestBackend::Embedded,
            redis: None,
        }
    }

    /// The app's complete router, for driving it with `tower::ServiceExt::oneshot`.
    pub fn router(&self) -> axum::Router {
        self.built.router.clone()
    }

    /// A new client with no cookies (an anonymous visitor).
    pub fn client(&self) -> TestClient {
        TestClient {
            router: self.built.router.clone(),
            cookies: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// A new client signed in as `email` through the magic-link flow: the link's confirmation
    /// page, then its button (the account is created on first sign-in, as for a real visitor).
    ///
    /// # Panics
    /// When any step of the sign-in fails.
    pub async fn sign_in(&self, email: &str) -> TestClient {
        let client = self.client();
        let before: Vec<String> = self.outbox().into_iter().map(|m| m.file).collect();
        let sent = client
            .post_form("/auth/magic-link-login", &[("email", email)])
            .await;
        assert!(
            sent.status().is_success(),
            "requesting a sign-in link for {email} answered {}: {}",
            sent.status(),
            sent.text()
        );
        let mail = self
            .outbox()
            .into_iter()
            .find(|m| !before.contains(&m.file) && m.to.eq_ignore_ascii_case(email))
            .unwrap_or_else(|| panic!("no sign-in mail to {email} reached the outbox"));
        let link = mail
            .links
            .iter()
            .find_map(|l| l.find("/auth/email-verify/").map(|at| l[at..].to_owned()))
            .unwrap_or_else(|| panic!("the sign-in mail has no link: {}", mail.text));
        // The link opens a confirmation page whose button POSTs to the same address.
        let page = client.get(&link).await;
        assert!(
            page.status() == StatusCode::OK && page.text().contains("Sign in as"),
            "opening the sign-in link answered {}: {}",
            page.status(),
            page.text()
        );
        let signed_in = client.post_form(&link, &[]).await;
        assert_eq!(
            signed_in.status(),
            StatusCode::SEE_OTHER,
            "confirming the sign-in link answered {}: {}",
            signed_in.status(),
            signed_in.text()
        );
        client
    }

    /// The mails in the dev outbox, newest first.
    pub fn outbox(&self) -> Vec<OutboxMessage> {
        self.mailer()
            .outbox_dir()
            .map(crate::mail::read_outbox)
            .unwrap_or_default()
    }

    /// Waits until no task is ready to run (queued ones have run; delayed ones may wait).
    ///
    /// # Panics
    /// After 10 seconds, naming how many tasks are still ready.
    pub async fn wait_for_tasks(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let depth = self
                .jobs()
                .depth()
                .await
                .unwrap_or_else(|e| panic!("cannot read the task queue: {e}"));
            if depth.ready == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} tasks still ready to run after 10 s (is the task failing? see the dead letters)",
                depth.ready
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the background worker and runs the app's shutdown hooks.
    pub async fn stop(mut self) {
        if let Some(worker) = self.worker.take() {
            worker.stop().await;
        }
        self.built.stop().await;
    }
}

/// A client calling the app in-process and keeping its cookies, like one browser.
#[derive(Clone)]
pub struct TestClient {
    router: axum::Router,
    cookies: Arc<Mutex<BTreeMap<String, String>>>,
}

impl TestClient {
    /// A request to build and [`send`](TestRequest::send).
    pub fn request(&self, method: Method, path: &str) -> TestRequest {
        TestRequest {
            client: self.clone(),
            method,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            body: Body::empty(),
        }
    }

    /// `GET` as a browser navigation (`Accept: text/html`).
    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Method::GET, path).html().send().await
    }

    /// `GET` as an API client (`Accept: application/json`).
    pub async fn get_json(&self, path: &str) -> TestResponse {
        self.request(Method::GET, path).accept_json().send().await
    }

    /// `POST` of a form, as a browser submits it.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> TestResponse {
        self.request(Method::POST, path)
            .html()
            .form(fields)
            .send()
            .await
    }

    /// `POST` of a JSON body, as an API client.
    pub async fn post_json(&self, path: &str, body: &impl Serialize) -> TestResponse {
        self.request(Method::POST, path).json(body).send().await
    }

    /// `PATCH` of a JSON body, as an API client.
    pub async fn patch_json(&self, path: &str, body: &impl Serialize) -> TestResponse {
        self.request(Method::PATCH, path).json(body).send().await
    }

    /// `DELETE`, as an API client.
    pub async fn delete(&self, path: &str) -> TestResponse {
        self.request(Method::DELETE, path)
            .accept_json()
            .send()
            .await
    }

    /// The value of a cookie this client holds.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().expect("cookie jar").get(name).cloned()
    }

    fn keep_cookies(&self, headers: &HeaderMap) {
        let mut jar = self.cookies.lock().expect("cookie jar");
        for set in headers.get_all(header::SET_COOKIE) {
            let Ok(set) = set.to_str() else { continue };
            let mut attributes = set.split(';').map(str::trim);
            let Some((name, value)) = attributes.next().and_then(|nv| nv.split_once('=')) else {
                continue;
            };
            let expired = attributes.any(|a| {
                let a = a.to_ascii_lowercase();
                a == "max-age=0" || a.starts_with("max-age=-")
            });
            if expired || value.is_empty() {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
    }
}

/// A request under construction.
#[must_use = "call .send() to make the request"]
pub struct TestRequest {
    client: TestClient,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Body,
}

impl TestRequest {
    /// Adds a header.
    ///
    /// # Panics
    /// When the name or value is not a valid header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(
            HeaderName::try_from(name).expect("valid header name"),
            HeaderValue::try_from(value).expect("valid header value"),
        );
        self
    }

    /// Sends `HX-Request: true`, as htmx does.
    pub fn htmx(self) -> Self {
        self.header("hx-request", "true")
    }

    /// Asks for HTML, as a browser does.
    pub fn html(self) -> Self {
        self.header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
    }

    /// Asks for JSON, as an API client does.
    pub fn accept_json(self) -> Self {
        self.header("accept", "application/json")
    }

    /// A URL-encoded form body.
    pub fn form(mut self, fields: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.body = Body::from(body);
        self.header("content-type", "application/x-www-form-urlencoded")
    }

    /// A raw body with its content type, for bodies the other builders refuse to make.
    pub fn body(mut self, content_type: &str, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self.header("content-type", content_type)
    }

    /// A JSON body (and `Accept: application/json`).
    ///
    /// # Panics
    /// When `body` does not serialize.
    pub fn json(mut self, body: &impl Serialize) -> Self {
        self.body = Body::from(serde_json::to_vec(body).expect("serializable body"));
        self.header("content-type", "application/json")
            .accept_json()
    }

    /// Sends the request through the app's router.
    ///
    /// # Panics
    /// When the path is not a valid URI.
    pub async fn send(self) -> TestResponse {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .body(self.body)
            .unwrap_or_else(|e| panic!("invalid request {} {}: {e}", self.method, self.path));
        *request.headers_mut() = self.headers;
        let cookies = {
            let jar = self.client.cookies.lock().expect("cookie jar");
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !cookies.is_empty() {
            request.headers_mut().insert(
                header::COOKIE,
                HeaderValue::try_from(cookies).expect("cookie values are header-safe"),
            );
        }
        let response = match self.client.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        self.client.keep_cookies(&parts.headers);
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_else(|e| {
                panic!(
                    "cannot read the response of {} {}: {e}",
                    self.method, self.path
                )
            });
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl TestResponse {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Location` header (redirects).
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded from JSON.
    ///
    /// # Panics
    /// When it is not JSON of that shape; the message shows the body.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the response ({}) is not the JSON expected: {e}\n{}",
                self.status,
                self.text()
            )
        })
    }
}

fn with_database(url: &str, name: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_path(&format!("/{name}"));
            parsed.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

fn unique_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "test_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mongodb_urls_get_the_test_database() {
        assert_eq!(
            with_database("mongodb://127.0.0.1:27017", "t1"),
            "mongodb://127.0.0.1:27017/t1"
        );
        assert_eq!(
            with_database("mongodb://h:1/old?replicaSet=rs", "t2"),
            "mongodb://h:1/t2?replicaSet=rs"
        );
    }
}
