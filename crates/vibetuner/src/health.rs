//! Health endpoints with Vibetuner's JSON shapes: `/health/ping`, `/health`,
//! `/health/ready` (503 when a configured service is unreachable) and `/health/id`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

/// How long one service check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// A boxed asynchronous check: `Ok` with details (JSON object or null) when the service answers.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<Value, CheckError>> + Send>>;

/// Why a service check failed; shown in the health JSON as `<name>: service unavailable (<why>)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The service answered with an error, or not as expected.
    #[error("{0}")]
    Failed(String),
    /// No answer within the check's timeout.
    #[error("timed out after {}s", .0.as_secs())]
    TimedOut(Duration),
    /// The service URL names no host to reach.
    #[error("no host in {0}")]
    NoHost(String),
}

impl CheckError {
    /// A failure with the reason as the service (or its client) gave it.
    pub fn failed(reason: impl std::fmt::Display) -> Self {
        Self::Failed(reason.to_string())
    }
}

/// A named service check shown under `services` in the health JSON.
#[derive(Clone)]
pub struct ServiceCheck {
    /// Service name (`mongodb`, `redis`, ...).
    pub name: String,
    check: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ServiceCheck {
    /// A check from an async closure; its error (any error type, or a message) is the reason
    /// shown when the service is unavailable.
    ///
    /// ```no_run
    /// # use vibetuner::{App, ServiceCheck};
    /// # fn app(app: App) -> App {
    /// app.health_check(ServiceCheck::new("search", || async {
    ///     std::fs::metadata("/var/lib/search/index").map(drop)
    /// }))
    /// # }
    /// ```
    pub fn new<F, Fut, E>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        Self::with_details(name, move || {
            let answered = check();
            async move { answered.await.map(|()| Value::Null) }
        })
    }

    /// A check whose success carries details (a JSON object) merged into its report.
    pub fn with_details<F, Fut, E>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        Self {
            name: name.into(),
            check: Arc::new(move || {
                let answered = check();
                Box::pin(async move { answered.await.map_err(CheckError::failed) })
            }),
        }
    }

    /// A TCP reachability check of the first host in a service URL
    /// (`redis://h:6379/0`, `mongodb://u:p@h1:27017,h2/db`).
    pub fn tcp(name: impl Into<String>, url: &str, default_port: u16) -> Self {
        let target = service_address(url, default_port);
        Self::new(name, move || {
            let target = target.clone();
            async move {
                let addr = target?;
                tokio::net::TcpStream::connect(&addr)
                    .await
                    .map(drop)
                    .map_err(|e| CheckError::failed(format_args!("{addr}: {e}")))
            }
        })
    }

    /// Runs the check with the timeout, producing the JSON Vibetuner reports.
    pub async fn report(&self) -> (bool, Value) {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, (self.check)()).await {
            Ok(result) => result,
            Err(_) => Err(CheckError::TimedOut(CHECK_TIMEOUT)),
        };
        match outcome {
            Ok(details) => {
                let latency = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
                let mut report = json!({ "status": "connected", "latency_ms": latency });
                if let (Value::Object(report), Value::Object(details)) = (&mut report, details) {
                    report.extend(details);
                }
                (true, report)
            }
            Err(e) => (
                false,
                json!({ "status": "error", "error": format!("{}: service unavailable ({e})", self.name) }),
            ),
        }
    }
}

/// `host:port` of the first host in a service URL.
pub fn service_address(url: &str, default_port: u16) -> Result<String, CheckError> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    let first = hosts.split(',').next().unwrap_or_default();
    if first.is_empty() {
        return Err(CheckError::NoHost(redact(url)));
    }
    let has_port = if first.starts_with('[') {
        first.contains("]:")
    } else {
        first.contains(':')
    };
    Ok(if has_port {
        first.to_owned()
    } else {
        format!("{first}:{default_port}")
    })
}

/// A URL with its password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Shared state of the health routes.
pub struct Health {
    /// App name (project slug).
    pub app: String,
    /// Running version.
    pub version: String,
    /// DEBUG setting.
    pub debug: bool,
    /// Port the server listens on.
    pub port: u16,
    /// Production: `/health/id` shows its details (port, pid, start time) only to this
    /// machine; others get the app's name and status.
    pub prod: bool,
    /// When the process started.
    pub started: Instant,
    /// Wall-clock start time.
    pub started_at: DateTime<Utc>,
    /// Configured services.
    pub checks: Vec<ServiceCheck>,
}

impl Health {
    async fn services(&self) -> (bool, BTreeMap<String, Value>) {
        let reports = futures_util::future::join_all(
            self.checks
                .iter()
                .map(|c| async move { (c.name.clone(), c.report().await) }),
        )
        .await;
        let all_ok = reports.iter().all(|(_, (ok, _))| *ok);
        (
            all_ok,
            reports
                .into_iter()
                .map(|(name, (_, v))| (name, v))
                .collect(),
        )
    }
}

#[derive(Deserialize)]
struct DetailedQuery {
    #[serde(default)]
    detailed: bool,
}

/// The `/health/*` routes.
pub fn router(health: Arc<Health>) -> Router {
    recorded(health).0
}

/// The `/health/*` routes, with their table for the `routes` command.
pub(crate) fn recorded(health: Arc<Health>) -> (Router, Vec<crate::routes::RouteInfo>) {
    let (router, table) = crate::routes::Recorder::new(crate::routes::HEALTH_LAYERS)
        .route(
            "/health/ping",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/health", get(health_summary))
        .route("/health/ready", get(ready))
        .route("/health/id", get(identity))
        .into_parts();
    (router.with_state(health), table)
}

async fn health_summary(
    State(h): State<Arc<Health>>,
    Query(query): Query<DetailedQuery>,
) -> Json<Value> {
    let mut body = json!({
        "status": "healthy",
        "version": h.version,
        "uptime_seconds": h.started.elapsed().as_secs(),
    });
    if query.detailed {
        let (ok, services) = h.services().await;
        body["services"] = json!(services);
        if !ok {
            body["status"] = json!("degraded");
        }
    }
    Json(body)
}

async fn ready(State(h): State<Arc<Health>>) -> impl IntoResponse {
    let (ok, services) = h.services().await;
    if !ok {
        tracing::warn!(services = %json!(services), "not ready: a configured service is unreachable");
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "status": if ok { "ready" } else { "not_ready" }, "services": services });
    (status, Json(body))
}

async fn identity(State(h): State<Arc<Health>>, request: axum::extract::Request) -> Json<Value> {
    Json(identity_of(
        &h,
        crate::security::from_this_machine(&request),
    ))
}

/// What `/health/id` tells a client: everything in dev or to this machine (`local`; not
/// through a proxy), only the app and its status to others in production.
fn identity_of(h: &Health, local: bool) -> Value {
    if h.prod && !local {
        return json!({ "app": h.app, "status": "healthy" });
    }
    json!({
        "app": h.app,
        "port": h.port,
        "debug": h.debug,
        "status": "healthy",
        "root_path": "",
        "process_id": std::process::id(),
        "startup_time": h.started_at.to_rfc3339(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_details_are_for_this_machine_in_prod() {
        let health = |prod| Health {
            app: "shop".into(),
            version: "1".into(),
            debug: false,
            port: 8000,
            prod,
            started: Instant::now(),
            started_at: Utc::now(),
            checks: Vec::new(),
        };
        let shown = identity_of(&health(true), false);
        assert_eq!(shown, json!({ "app": "shop", "status": "healthy" }));
        assert!(identity_of(&health(true), true)["process_id"].is_number());
        assert!(identity_of(&health(false), false)["process_id"].is_number());
    }

    #[test]
    fn service_addresses() {
        assert_eq!(
            service_address("redis://localhost", 6379).unwrap(),
            "localhost:6379"
        );
        assert_eq!(
            service_address("redis://:pw@10.0.0.1:6380/2", 6379).unwrap(),
            "10.0.0.1:6380"
        );
        assert_eq!(
            service_address("mongodb://u:p@db1:27018,db2:27019/app?replicaSet=rs", 27017).unwrap(),
            "db1:27018"
        );
        assert_eq!(
            service_address("mongodb://[::1]/x", 27017).unwrap(),
            "[::1]:27017"
        );
        assert!(service_address("redis://", 6379).is_err());
    }

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(redact("redis://:secret@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("mongodb://u:p@h/db"), "mongodb://u:***@h/db");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    #[tokio::test]
    async fn unreachable_service_reports_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = ServiceCheck::tcp("redis", &format!("redis://127.0.0.1:{port}"), 6379);
        let (ok, json) = up.report().await;
        assert!(ok, "{json}");
        assert_eq!(json["status"], "connected");
        drop(listener);
        let (ok, json) = up.report().await;
        assert!(!ok);
        assert_eq!(json["status"], "error");
        assert!(
            json["error"]
                .as_str()
                .unwrap()
                .starts_with("redis: service unavailable ("),
            "{json}"
        );
    }
}
