//! Benchmark baselines: bare axum with no middleware. Usage: `bare_axum PORT [APP_DIR HEADERS]`.
//!
//! `/health/ping` answers like the framework does. With a generated app's folder and a headers
//! file (`HEADERS`, and `HEADERS` with the extension `.hello` for `/hello`), `/` is the limit
//! for the app's home page and `/hello` for its htmx greeting (the `greeting` block of
//! `hello.html.jinja`, for `name=world`): a bare minijinja environment renders *the same
//! template files* (the app's `templates/frontend/`, then the framework's) with the same context
//! and sends the same headers, with nothing else per request. The base context is the one the
//! framework computes once at start-up for that folder and the environment's settings; per request
//! come a fresh CSP nonce and request id and the request's path. `HEADERS` holds the app's
//! response headers for `/`, one `name: value` per line, `{nonce}` where the nonce goes and
//! `{request_id}` where the request id goes. The bench compares both responses before it measures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use vibetuner::minijinja::{self, Environment, Value, context};
use vibetuner::render::FrameworkTemplates;
use vibetuner::{App, ProjectSource, Settings};

/// What `/` and `/hello` need: the environment, the framework's base context and the header
/// lines of each.
struct Home {
    env: Environment<'static>,
    base: Value,
    headers: Vec<(HeaderName, String)>,
    hello_headers: Vec<(HeaderName, String)>,
}

async fn home(State(home): State<Arc<Home>>, uri: Uri) -> Response {
    render(&home, &uri, false, &home.headers, |env, ctx| {
        env.get_template("index.html.jinja")?.render(ctx)
    })
}

/// `/hello` as htmx asks for it: the app's `greeting` block alone, for `name=world`.
async fn hello(State(home): State<Arc<Home>>, uri: Uri) -> Response {
    render(&home, &uri, true, &home.hello_headers, |env, ctx| {
        let ctx = context! { name => "world", ..ctx };
        // As the framework renders a block (`Renderer::render_block`).
        env.get_template("hello.html.jinja")?
            .render_captured(ctx)?
            .with_state_mut(|state| state.render_block("greeting"))
    })
}

/// Renders with the context the framework gives a request (fresh nonce and request id) and
/// sends `header_lines`.
fn render(
    home: &Home,
    uri: &Uri,
    htmx: bool,
    header_lines: &[(HeaderName, String)],
    template: impl FnOnce(&Environment<'static>, Value) -> Result<String, minijinja::Error>,
) -> Response {
    let nonce = vibetuner::security::random_token(16);
    let request_id = uuid::Uuid::new_v4().to_string();
    let ctx = context! {
        request => context! {
            method => "GET",
            path => uri.path(),
            query => uri.query().unwrap_or_default(),
            htmx => htmx,
            request_id => &request_id,
        },
        csp_nonce => &nonce,
        user => (),
        flashes => Vec::<Value>::new(),
        ..home.base.clone()
    };
    let body = match template(&home.env, ctx) {
        Ok(body) => body,
        Err(e) => {
            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    for (name, value) in header_lines {
        let value = value
            .replace("{nonce}", &nonce)
            .replace("{request_id}", &request_id);
        headers.insert(
            name.clone(),
            HeaderValue::from_str(&value).expect("a header value"),
        );
    }
    response
}

/// A template from the app's folder, else the framework's embedded copy.
fn load(app: &Path, name: &str) -> Result<Option<String>, minijinja::Error> {
    let path = app.join(name);
    if path.is_file() {
        return Ok(std::fs::read_to_string(path).ok());
    }
    Ok(FrameworkTemplates::get(&format!("frontend/{name}"))
        .map(|file| String::from_utf8_lossy(&file.data).into_owned()))
}

async fn home_state(dir: PathBuf, headers_file: &Path) -> anyhow::Result<Home> {
    let answers: &'static str = std::fs::read_to_string(dir.join("vibetuner.toml"))?.leak();
    let settings = Settings::load(&dir)?;
    let built = App::new(ProjectSource {
        answers,
        version: "0.0.0",
        manifest_dir: "",
    })
    .build(settings, &dir)
    .await?;
    let base = built.renderer().context(None, Value::UNDEFINED);
    let v_hash = base
        .get_attr("v_hash")?
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let templates = dir.join("templates/frontend");
    let mut env = Environment::new();
    env.set_loader(move |name| load(&templates, name));
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env.set_formatter(vibetuner::render::markupsafe_formatter);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_function("static_url", move |path: String| {
        format!("/static/v{v_hash}/{}", path.trim_start_matches('/'))
    });
    let lines = |file: &Path| -> anyhow::Result<Vec<(HeaderName, String)>> {
        std::fs::read_to_string(file)?
            .lines()
            .filter_map(|line| line.split_once(": "))
            .map(|(name, value)| Ok((HeaderName::try_from(name)?, value.to_owned())))
            .collect()
    };
    Ok(Home {
        env,
        base,
        headers: lines(headers_file)?,
        hello_headers: lines(&headers_file.with_extension("hello"))?,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(8000);
    let mut app = Router::new().route(
        "/health/ping",
        get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
    );
    if let (Some(dir), Some(headers)) = (args.next(), args.next()) {
        let state = home_state(PathBuf::from(dir), Path::new(&headers)).await?;
        let state = Arc::new(state);
        app = app
            .route("/", get(home).with_state(state.clone()))
            .route("/hello", get(hello).with_state(state));
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
