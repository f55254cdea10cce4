//! Template rendering with minijinja.
//!
//! Template names are relative to `templates/frontend/`. The app's own
//! `<root>/templates/frontend/<name>` overrides the framework's embedded copy file by file.
//! With reload on (dev), every render reads templates afresh, so edits show without a restart.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, Uri};
use axum::response::Html;
use minijinja::{Environment, Value};
use serde::Serialize;

use crate::auth::user::{LoadedUser, SessionUser};
use crate::error::Error;

/// The framework's embedded templates (`crates/vibetuner/templates`).
#[derive(rust_embed::RustEmbed)]
#[folder = "templates/"]
pub struct FrameworkTemplates;

/// What a context provider sees of the request being rendered.
#[derive(Debug, Clone, Serialize)]
pub struct RequestInfo {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// True when the request came from htmx (`HX-Request: true`).
    pub htmx: bool,
    /// The request id (`X-Request-ID`).
    pub request_id: String,
    /// This response's Content-Security-Policy nonce: put `nonce="{{ csp_nonce }}"` on scripts
    /// (templates get it at the top level, not under `request`).
    #[serde(skip)]
    pub csp_nonce: String,
    /// The signed-in user, if any (templates get it as `user`, not under `request`).
    #[serde(skip)]
    pub user: Option<SessionUser>,
    /// The theme chosen with the header's switcher (the `theme` cookie); `None` follows the
    /// system's preference. Templates get it as `theme` when it names one of `THEMES`.
    #[serde(skip)]
    pub theme: Option<String>,
    /// Flash messages this page shows once (templates get them as `flashes`).
    #[serde(skip)]
    pub flashes: Vec<crate::flash::FlashMessage>,
}

impl RequestInfo {
    /// Reads the parts a template may need from a request.
    pub fn from_parts(parts: &Parts) -> Self {
        let mut info = Self::new(
            &parts.method,
            &parts.uri,
            parts.headers.get("hx-request"),
            parts.headers.get("x-request-id"),
        );
        info.csp_nonce = csp_nonce(&parts.extensions);
        info.user = LoadedUser::of(&parts.extensions).cloned();
        info.theme = theme_cookie(&parts.headers);
        info.flashes = parts
            .extensions
            .get::<crate::flash::Shown>()
            .map(|shown| shown.0.clone())
            .unwrap_or_default();
        info
    }

    /// Builds the info from the pieces a middleware can keep past `next.run`.
    pub fn new(
        method: &Method,
        uri: &Uri,
        hx_request: Option<&HeaderValue>,
        request_id: Option<&HeaderValue>,
    ) -> Self {
        let text = |v: Option<&HeaderValue>| {
            v.and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            htmx: text(hx_request) == "true",
            request_id: text(request_id),
            csp_nonce: String::new(),
            user: None,
            theme: None,
            flashes: Vec::new(),
        }
    }
}

/// The `theme` cookie's value when it looks like a theme name (letters, digits, `-`).
pub(crate) fn theme_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix("theme="))
        .find(|name| {
            !name.is_empty()
                && name.len() <= 40
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_owned)
}

/// The request's CSP nonce, or an empty string outside the security middleware.
pub fn csp_nonce(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<crate::security::CspNonce>()
        .map(|n| n.0.to_string())
        .unwrap_or_default()
}

/// A function that adds variables to every render; it may look at the request.
pub type ContextProvider = Arc<dyn Fn(&RequestInfo) -> Value + Send + Sync>;

/// A change to the template environment (filter, global, test) applied at build time.
pub type EnvHook = Arc<dyn Fn(&mut Environment<'static>) + Send + Sync>;

/// The shared renderer: environment, base context and providers.
pub struct Renderer {
    env: Environment<'static>,
    reload: bool,
    /// The base context, built once: every render shares it.
    base: Value,
    providers: Vec<ContextProvider>,
    /// The theme names a `theme` cookie may choose (the base context's `themes`).
    themes: Vec<String>,
}

impl Renderer {
    /// Builds a renderer reading app overrides from `app_templates` (if any).
    pub fn new(
        app_templates: Option<PathBuf>,
        reload: bool,
        base: BTreeMap<String, Value>,
        hooks: &[EnvHook],
        providers: Vec<ContextProvider>,
    ) -> Self {
        let mut env = Environment::new();
        env.set_loader(move |name| load_template(app_templates.as_deref(), name));
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        env.set_formatter(markupsafe_formatter);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        crate::filters::register(&mut env);
        for hook in hooks {
            hook(&mut env);
        }
        let themes = base
            .get("themes")
            .and_then(|t| t.try_iter().ok())
            .map(|names| {
                names
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            env,
            reload,
            base: Value::from(base),
            providers,
            themes,
        }
    }

    /// The environment for one render: a fresh copy (no cached templates) when reloading.
    fn environment(&self) -> std::borrow::Cow<'_, Environment<'static>> {
        if self.reload {
            std::borrow::Cow::Owned(self.env.clone())
        } else {
            std::borrow::Cow::Borrowed(&self.env)
        }
    }

    /// Merges base context, providers, the request and the call's context (later wins).
    /// The merge is lazy: a variable is looked up layer by layer, so nothing is copied.
    pub fn context(&self, request: Option<&RequestInfo>, ctx: Value) -> Value {
        let mut layers = Vec::with_capacity(self.providers.len() + 3);
        layers.push(self.base.clone());
        if let Some(req) = request {
            layers.extend(self.providers.iter().map(|provider| provider(req)));
            // An unknown theme stays undefined, so an earlier layer's `theme` shows through.
            let theme = req
                .theme
                .as_deref()
                .filter(|t| self.themes.iter().any(|n| n == t))
                .map_or(Value::UNDEFINED, Value::from);
            layers.push(minijinja::context! {
                request => Value::from_serialize(req),
                csp_nonce => req.csp_nonce.as_str(),
                user => Value::from_serialize(&req.user),
                flashes => Value::from_serialize(&req.flashes),
                theme => theme,
            });
        }
        layers.push(ctx);
        minijinja::value::merge_maps(layers)
    }

    /// Renders a whole template.
    pub fn render(
        &self,
        name: &str,
        request: Option<&RequestInfo>,
        ctx: Value,
    ) -> Result<String, Error> {
        let env = self.environment();
        let tmpl = env.get_template(name).map_err(template_error)?;
        tmpl.render(self.context(request, ctx))
            .map_err(template_error)
    }

    /// Renders one block of a template (for htmx partials).
    pub fn render_block(
        &self,
        name: &str,
        block: &str,
        request: Option<&RequestInfo>,
        ctx: Value,
    ) -> Result<String, Error> {
        let env = self.environment();
        let tmpl = env.get_template(name).map_err(template_error)?;
        let mut captured = tmpl
            .render_captured(self.context(request, ctx))
            .map_err(template_error)?;
        captured
            .with_state_mut(|state| state.render_block(block))
            .map_err(|e| {
                if e.kind() == minijinja::ErrorKind::UnknownBlock {
                    Error::internal(format!("template {name} has no block named {block:?}"))
                } else {
                    template_error(e)
                }
            })
    }

    /// True when the template exists (in the app or the framework).
    pub fn has_template(&self, name: &str) -> bool {
        self.compile(name).is_ok()
    }

    /// Loads and compiles a template, reporting syntax errors.
    pub fn compile(&self, name: &str) -> Result<(), Error> {
        self.environment()
            .get_template(name)
            .map(drop)
            .map_err(template_error)
    }
}

/// The framework environment's formatter: HTML-escapes like Jinja2's MarkupSafe (`& < > " '`),
/// leaving `/` alone so URLs stay readable. For a minijinja environment of an app's own that
/// should escape as the framework's templates do: `env.set_formatter(markupsafe_formatter)`.
pub fn markupsafe_formatter(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &Value,
) -> Result<(), minijinja::Error> {
    let html = matches!(state.auto_escape(), minijinja::AutoEscape::Html);
    if !html || value.is_safe() || value.is_undefined() || value.is_none() {
        return minijinja::escape_formatter(out, state, value);
    }
    match value.as_str() {
        Some(text) => write_escaped(out, text),
        None => write_escaped(out, &value.to_string()),
    }
}

/// Writes `text` HTML-escaped.
fn write_escaped(out: &mut minijinja::Output<'_>, text: &str) -> Result<(), minijinja::Error> {
    crate::escape::html(out, text).map_err(minijinja::Error::from)
}

fn template_error(err: minijinja::Error) -> Error {
    let mut message = format!("template error: {err}");
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        message.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    Error::internal(message)
}

/// Loads `name` from the app's folder, else from the framework's embedded templates.
fn load_template(app_dir: Option<&Path>, name: &str) -> Result<Option<String>, minijinja::Error> {
    let relative = Path::new(name);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Ok(None);
    }
    if let Some(dir) = app_dir {
        let path = dir.join(relative);
        if path.is_file() {
            return std::fs::read_to_string(&path).map(Some).map_err(|e| {
                minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("cannot read {}: {e}", path.display()),
                )
            });
        }
    }
    Ok(FrameworkTemplates::get(&format!("frontend/{name}"))
        .map(|file| String::from_utf8_lossy(&file.data).into_owned()))
}

/// Extractor that renders templates with the request's context.
///
/// ```no_run
/// # use vibetuner::prelude::*;
/// async fn hello(render: Render) -> vibetuner::Result<Html<String>> {
///     render.page("hello.html.jinja", context! { name => "world" })
/// }
/// ```
pub struct Render {
    renderer: Arc<Renderer>,
    request: RequestInfo,
}

impl Render {
    pub(crate) fn new(renderer: Arc<Renderer>, request: RequestInfo) -> Self {
        Self { renderer, request }
    }

    /// Renders a whole page.
    pub fn page(&self, name: &str, ctx: impl Serialize) -> Result<Html<String>, Error> {
        self.renderer
            .render(name, Some(&self.request), Value::from_serialize(&ctx))
            .map(Html)
    }

    /// Renders a single block of a template, for htmx swaps.
    pub fn block(
        &self,
        name: &str,
        block: &str,
        ctx: impl Serialize,
    ) -> Result<Html<String>, Error> {
        self.renderer
            .render_block(
                name,
                block,
                Some(&self.request),
                Value::from_serialize(&ctx),
            )
            .map(Html)
    }

    /// Renders `block` for htmx requests and the whole page otherwise.
    pub fn page_or_block(
        &self,
        name: &str,
        block: &str,
        ctx: impl Serialize,
    ) -> Result<Html<String>, Error> {
        if self.request.htmx {
            self.block(name, block, ctx)
        } else {
            self.page(name, ctx)
        }
    }

    /// The request as templates see it.
    pub fn request(&self) -> &RequestInfo {
        &self.request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn renderer(dir: Option<PathBuf>, reload: bool) -> Renderer {
        let base = BTreeMap::from([("project_name".to_owned(), Value::from("Demo"))]);
        let hook: EnvHook = Arc::new(|env| {
            env.add_filter("shout", |s: String| s.to_uppercase());
            env.add_global("tagline", "hello");
            env.add_function("static_url", |p: String| format!("/static/vtest/{p}"));
        });
        let provider: ContextProvider =
            Arc::new(|req| context! { who => req.path.clone(), tagline => "provided" });
        Renderer::new(dir, reload, base, &[hook], vec![provider])
    }

    fn request() -> RequestInfo {
        RequestInfo {
            method: "GET".into(),
            path: "/p".into(),
            query: String::new(),
            htmx: false,
            request_id: "rid".into(),
            csp_nonce: String::new(),
            user: None,
            theme: None,
            flashes: Vec::new(),
        }
    }

    #[test]
    fn app_templates_override_framework_ones_file_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = renderer(Some(dir.path().to_owned()), true);
        let page = r
            .render("index.html.jinja", Some(&request()), context! {})
            .unwrap();
        assert!(page.contains("<!DOCTYPE html>"), "framework index renders");
        std::fs::write(
            dir.path().join("index.html.jinja"),
            "mine {{ project_name }}",
        )
        .unwrap();
        assert_eq!(
            r.render("index.html.jinja", None, context! {}).unwrap(),
            "mine Demo"
        );
    }

    #[test]
    fn reload_picks_up_edits_and_cache_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.html.jinja");
        std::fs::write(&path, "one").unwrap();
        let live = renderer(Some(dir.path().to_owned()), true);
        let cached = renderer(Some(dir.path().to_owned()), false);
        assert_eq!(
            live.render("t.html.jinja", None, context! {}).unwrap(),
            "one"
        );
        assert_eq!(
            cached.render("t.html.jinja", None, context! {}).unwrap(),
            "one"
        );
        std::fs::write(&path, "two").unwrap();
        assert_eq!(
            live.render("t.html.jinja", None, context! {}).unwrap(),
            "two"
        );
        assert_eq!(
            cached.render("t.html.jinja", None, context! {}).unwrap(),
            "one"
        );
    }

    #[test]
    fn context_merge_order_filters_globals_and_providers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.txt.jinja"),
            "{{ project_name }}|{{ who }}|{{ tagline }}|{{ x|shout }}|{{ request.request_id }}",
        )
        .unwrap();
        let r = renderer(Some(dir.path().to_owned()), false);
        let out = r
            .render(
                "c.txt.jinja",
                Some(&request()),
                context! { x => "hey", project_name => "Call" },
            )
            .unwrap();
        assert_eq!(out, "Call|/p|provided|HEY|rid");
    }

    #[test]
    fn blocks_render_alone_and_unknown_blocks_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("b.html.jinja"),
            "{% extends \"base/skeleton.html.jinja\" %}{% block content %}<p>{{ n }}</p>{% endblock %}",
        )
        .unwrap();
        let r = renderer(Some(dir.path().to_owned()), false);
        let block = r
            .render_block("b.html.jinja", "content", None, context! { n => 7 })
            .unwrap();
        assert_eq!(block, "<p>7</p>");
        let err = r
            .render_block("b.html.jinja", "nope", None, context! {})
            .unwrap_err();
        assert!(err.to_string().contains("no block named \"nope\""), "{err}");
    }

    #[test]
    fn path_traversal_and_missing_templates_are_refused() {
        let r = renderer(None, false);
        assert!(!r.has_template("../Cargo.toml"));
        let err = r
            .render("missing.html.jinja", None, context! {})
            .unwrap_err();
        assert!(err.to_string().contains("missing.html.jinja"), "{err}");
    }

    #[test]
    fn html_is_escaped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("e.html.jinja"), "{{ v }}").unwrap();
        let r = renderer(Some(dir.path().to_owned()), false);
        let out = r
            .render("e.html.jinja", None, context! { v => "<a href='/x'>\"&" })
            .unwrap();
        assert_eq!(out, "&lt;a href=&#39;/x&#39;&gt;&#34;&amp;");
    }
}
