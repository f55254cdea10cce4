//! `vibetuner generate page|task|email`: a page, a background task or an email with its
//! sender, each with a test, registered in the app's `src/lib.rs` like a scaffold.

use std::path::{Path, PathBuf};

use crate::scaffold::{Force, Generated, Kind, arg_kind, camel, crate_name, label, snake_name};

/// Path prefixes the framework serves itself.
const FRAMEWORK_PREFIXES: &[&str] = &["auth", "user", "health", "static", "_dev"];

/// Arguments of `vibetuner generate page`.
#[derive(clap::Args)]
pub struct PageArgs {
    /// The page's name in snake_case, e.g. about or pricing_plans: module src/NAME.rs,
    /// template templates/frontend/NAME.html.jinja, test tests/NAME.rs, route name NAME.
    #[arg(value_parser = snake_name)]
    name: String,
    /// The page's path (default: /NAME with - for _, e.g. /pricing-plans).
    #[arg(long, value_parser = page_path)]
    path: Option<String>,
    #[command(flatten)]
    force: Force,
}

/// Arguments of `vibetuner generate task`.
#[derive(clap::Args)]
pub struct TaskArgs {
    /// The task's name in snake_case, e.g. send_digest: module src/NAME.rs with the key
    /// NAME in capitals (`TaskKey<ARG_TYPE>`), test tests/NAME.rs.
    #[arg(value_parser = snake_name)]
    name: String,
    /// The argument's type: string, text, int, float, bool, datetime or id (String, i64, f64,
    /// bool, Timestamp, Id).
    #[arg(value_name = "ARG_TYPE", default_value = "id", value_parser = arg_kind)]
    arg: Kind,
    #[command(flatten)]
    force: Force,
}

/// Arguments of `vibetuner generate email`.
#[derive(clap::Args)]
pub struct EmailArgs {
    /// The email's name in snake_case, e.g. welcome: templates
    /// templates/frontend/email/NAME.{html,txt}.jinja, sender `send_NAME` in
    /// src/NAME_email.rs, test tests/NAME_email.rs.
    #[arg(value_parser = snake_name)]
    name: String,
    #[command(flatten)]
    force: Force,
}

/// A clap value parser for a page's path: absolute, plain characters, not the framework's.
fn page_path(path: &str) -> Result<String, String> {
    let plain = path.starts_with('/')
        && !path.contains("//")
        && path.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || ['/', '-', '_', '.'].contains(&c)
        });
    if !plain {
        return Err(format!(
            "{path:?} is not a page path: start with / and use a-z, 0-9, -, _, . and /, e.g. /about or /docs/getting-started"
        ));
    }
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if FRAMEWORK_PREFIXES.contains(&first) {
        return Err(format!(
            "{path:?} is under /{first}, which the framework serves; choose another path"
        ));
    }
    Ok(path.to_owned())
}

/// Replaces the `__key__` placeholders of `template`.
fn fill(template: &str, pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .fold(template.to_owned(), |text, (key, value)| {
            text.replace(key, value)
        })
}

/// What a generator writes: `src/MODULE.rs` from `code`, `tests/MODULE.rs` from `test` and the
/// `templates` (path, text), each with the placeholders of `pairs` filled.
fn generated(
    module: &str,
    apply: bool,
    pairs: &[(&str, &str)],
    code: &str,
    test: &str,
    templates: &[(String, &str)],
) -> Generated {
    let mut files = vec![
        (format!("src/{module}.rs"), code),
        (format!("tests/{module}.rs"), test),
    ];
    files.extend(templates.iter().map(|(path, text)| (path.clone(), *text)));
    Generated {
        files: files
            .into_iter()
            .map(|(path, text)| (PathBuf::from(path), fill(text, pairs)))
            .collect(),
        module: module.to_owned(),
        apply,
    }
}

/// Writes a page in the project at `root`.
pub fn page(root: &Path, args: &PageArgs) -> anyhow::Result<()> {
    let name = &args.name;
    let path = args
        .path
        .clone()
        .unwrap_or_else(|| format!("/{}", name.replace('_', "-")));
    let krate = crate_name(root)?;
    let title = label(name);
    let pairs = [
        ("__path__", path.as_str()),
        ("__name__", name.as_str()),
        ("__Label__", title.as_str()),
        ("__crate__", krate.as_str()),
    ];
    let template = (
        format!("templates/frontend/{name}.html.jinja"),
        PAGE_TEMPLATE,
    );
    generated(name, true, &pairs, PAGE_MODULE, PAGE_TEST, &[template]).write(root, &args.force)?;
    println!("\nNext: cargo test · then open {path}");
    Ok(())
}

/// Writes a background task in the project at `root`.
pub fn task(root: &Path, args: &TaskArgs) -> anyhow::Result<()> {
    let name = &args.name;
    let krate = crate_name(root)?;
    let key = name.to_ascii_uppercase();
    let model = camel(name);
    let pairs = [
        ("__KEY__", key.as_str()),
        ("__Model__", model.as_str()),
        ("__Type__", args.arg.rust_type()),
        ("__sample__", args.arg.sample_rust()),
        ("__name__", name.as_str()),
        ("__crate__", krate.as_str()),
    ];
    generated(name, true, &pairs, TASK_MODULE, TASK_TEST, &[]).write(root, &args.force)?;
    println!(
        "\nNext: cargo test · enqueue it with `ctx.jobs().enqueue({name}::{key}, &value).await?`"
    );
    Ok(())
}

/// Writes an email (HTML and text templates, a sender) in the project at `root`.
pub fn email(root: &Path, args: &EmailArgs) -> anyhow::Result<()> {
    let name = &args.name;
    let module = format!("{name}_email");
    let krate = crate_name(root)?;
    let title = label(name);
    let pairs = [
        ("__module__", module.as_str()),
        ("__name__", name.as_str()),
        ("__Label__", title.as_str()),
        ("__crate__", krate.as_str()),
    ];
    let templates = [
        (
            format!("templates/frontend/email/{name}.html.jinja"),
            EMAIL_HTML,
        ),
        (
            format!("templates/frontend/email/{name}.txt.jinja"),
            EMAIL_TEXT,
        ),
    ];
    generated(&module, false, &pairs, EMAIL_MODULE, EMAIL_TEST, &templates)
        .write(root, &args.force)?;
    println!(
        "\nNext: cargo test · send it with `{module}::send_{name}(&ctx, \"ada@example.com\", \"Ada\").await?`"
    );
    Ok(())
}

const PAGE_MODULE: &str = r#"//! The __Label__ page at `__path__`: the whole page, or only its `page` block for htmx
//! requests (e.g. `hx-get="__path__"`).
//!
//! Generated by `vibetuner generate page`: change it as you like.

use vibetuner::prelude::*;

/// Registers the page on the app; its route is named `__name__` (`url_for('__name__')`).
pub fn register(app: App) -> App {
    app.named_route("__name__", "__path__", get(page))
}

/// `GET __path__`
async fn page(render: Render) -> Result<Html<String>> {
    render.page_or_block("__name__.html.jinja", "page", context! { title => "__Label__" })
}
"#;

const PAGE_TEMPLATE: &str = r#"{#- The __Label__ page (src/__name__.rs); htmx requests get only the `page` block. -#}
{% extends "base/skeleton.html.jinja" %}
{% block title %}{{ title }} · {{ project_name }}{% endblock %}
{% block content %}
<section class="max-w-3xl mx-auto">
  {% block page %}
  <div id="__name__">
    <h1 class="text-3xl font-bold">{{ title }}</h1>
    <p class="mt-4">Edit <code>templates/frontend/__name__.html.jinja</code> for this page's content.</p>
  </div>
  {% endblock %}
</section>
{% endblock %}
"#;

const PAGE_TEST: &str = r#"//! The __Label__ page, driven in-process (`cargo test`).

use vibetuner::testing::TestApp;

#[vibetuner::test]
async fn the___name___page_renders_whole_or_as_a_block() {
    let app = TestApp::new(__crate__::app()).await;
    let client = app.client();

    let page = client.get("__path__").await;
    assert_eq!(page.status(), 200);
    let html = page.text();
    assert!(html.contains("<h1 class=\"text-3xl font-bold\">__Label__</h1>"), "{html}");
    assert!(html.contains("</html>"), "a whole page: {html}");

    let block = client
        .request(vibetuner::axum::http::Method::GET, "__path__")
        .htmx()
        .send()
        .await;
    assert_eq!(block.status(), 200);
    let html = block.text();
    assert!(html.contains("id=\"__name__\"") && !html.contains("</html>"), "only the block: {html}");
}
"#;

const TASK_MODULE: &str = r#"//! The `__name__` background task. Enqueue it from a handler, a hook or another task with
//! `ctx.jobs().enqueue(__name__::__KEY__, &value).await?` (a `__Type__` value);
//! without `REDIS_URL` it runs inside `serve`, with it in `cargo run -- worker`.
//!
//! Generated by `vibetuner generate task`: replace the body of `run` with the task's work (it
//! records each run in the `__name___runs` collection, which the generated test reads) and the
//! test with a check of that work.

use vibetuner::prelude::*;

/// The task's key: enqueueing it with a value of another type than `__Type__` does
/// not compile.
pub const __KEY__: TaskKey<__Type__> = TaskKey::new("__name__");

/// A run of the task, as `run` records it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct __Model__Run {
    /// The argument it ran with.
    pub arg: __Type__,
}

impl Model for __Model__Run {
    const COLLECTION: &'static str = "__name___runs";
}

/// Registers the task on the app.
pub fn register(app: App) -> App {
    app.task(Task::new(__KEY__, run))
}

/// Runs the task with its argument; an error retries it, then leaves a dead letter.
async fn run(ctx: TaskContext, arg: __Type__) -> Result<()> {
    ctx.store()
        .models::<__Model__Run>()
        .insert(__Model__Run { arg })
        .await?;
    Ok(())
}
"#;

const TASK_TEST: &str = r#"//! The `__name__` task, enqueued and run in-process (`cargo test`).

use __crate__::__name__::{__KEY__, __Model__Run};
use vibetuner::Query;
use vibetuner::testing::TestApp;

#[vibetuner::test]
async fn __name___runs_with_its_argument() {
    let app = TestApp::new(__crate__::app()).await;
    let arg = __sample__;
    app.jobs().enqueue(__KEY__, &arg).await.unwrap();
    app.wait_for_tasks().await;

    let runs = app
        .store()
        .models::<__Model__Run>()
        .find(&Query::all())
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "one run recorded");
    assert_eq!(runs[0].arg, arg);
}
"#;

const EMAIL_MODULE: &str = r#"//! The __Label__ email: `send___name__` renders `templates/frontend/email/__name__.html.jinja`
//! and `__name__.txt.jinja` and sends both through the app's mailer (SMTP with `SMTP_URL`; in
//! dev without it, the outbox at `/_dev/outbox`).
//!
//! Generated by `vibetuner generate email`: change the templates, the subject and the
//! arguments as you like.

use vibetuner::mail::Mail;
use vibetuner::prelude::*;

/// Sends the __Label__ email to `to`, greeting `name`.
pub async fn send___name__(ctx: &AppContext, to: &str, name: &str) -> Result<()> {
    let data = context! { name, to };
    let html = ctx
        .renderer()
        .render("email/__name__.html.jinja", None, data.clone())?;
    let text = ctx
        .renderer()
        .render("email/__name__.txt.jinja", None, data)?;
    ctx.mailer()
        .send(Mail {
            to: to.to_owned(),
            subject: "__Label__".to_owned(),
            text,
            html,
        })
        .await?;
    Ok(())
}
"#;

const EMAIL_HTML: &str = r#"{#- HTML body of the __Label__ email (src/__module__.rs sends it). Context: name, to, brand_name, brand_color. -#}
<!DOCTYPE html>
<html>
<body style="font-family: system-ui, sans-serif; color: #1f2937; padding: 24px;">
  <h1 style="font-size: 20px;">__Label__</h1>
  <p>Hello, {{ name }}!</p>
  <p style="font-size: 12px; color: #6b7280;">Sent by {{ brand_name }} to {{ to }}.</p>
</body>
</html>
"#;

const EMAIL_TEXT: &str = r#"{#- Plain-text body of the __Label__ email (src/__module__.rs sends it). Context: name, to, brand_name. -#}
__Label__

Hello, {{ name }}!

Sent by {{ brand_name }} to {{ to }}.
"#;

const EMAIL_TEST: &str = r#"//! The __Label__ email, sent in-process and read back from the dev outbox (`cargo test`).

use vibetuner::testing::TestApp;

#[vibetuner::test]
async fn the___name___email_reaches_the_outbox() {
    let app = TestApp::new(__crate__::app()).await;
    __crate__::__module__::send___name__(&app, "ada@example.com", "Ada")
        .await
        .unwrap();

    let mail = app
        .outbox()
        .into_iter()
        .find(|m| m.to == "ada@example.com")
        .expect("the mail is in the outbox");
    assert_eq!(mail.subject, "__Label__");
    assert!(mail.text.contains("Hello, Ada!"), "{}", mail.text);
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_paths_are_plain_and_not_the_frameworks() {
        assert_eq!(
            page_path("/docs/getting-started").unwrap(),
            "/docs/getting-started"
        );
        for (path, reason) in [
            ("about", "start with /"),
            ("/About", "a-z"),
            ("/a//b", "not a page path"),
            ("/auth/extra", "framework"),
            ("/_dev", "framework"),
        ] {
            let e = page_path(path).unwrap_err();
            assert!(e.contains(reason), "{path}: {e}");
        }
    }
}
