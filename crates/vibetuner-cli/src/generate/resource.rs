//! `vibetuner generate scaffold|model`: a resource's model with validation, its CRUD JSON API
//! and htmx pages (scaffold), and its tests, registered in the app's `src/lib.rs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::ensure;

use super::field::{Field, Kind, parse_field};
use super::names::{camel, label, plural};
use super::output::{Force, Generated, crate_name};

/// The resource's name and fields.
#[derive(clap::Args)]
pub(crate) struct ResourceArgs {
    /// Singular name in snake_case, e.g. post or blog_post (collection and paths: posts, blog_posts).
    #[arg(value_parser = super::names::snake_name)]
    name: String,
    /// Fields as NAME:TYPE (see below).
    #[arg(value_name = "FIELD:TYPE")]
    fields: Vec<String>,
    #[command(flatten)]
    pub(super) force: Force,
}

/// Writes the resource in the project at `root`: its module, with `scaffold` its tests, with
/// `html` its pages' template.
pub(super) fn write(
    root: &Path,
    spec: &ResourceArgs,
    scaffold: bool,
    api: bool,
    html: bool,
) -> anyhow::Result<()> {
    let resource = Resource::new(spec, api, html, root)?;
    let plural = &resource.plural;
    let mut files: Vec<(PathBuf, String)> =
        vec![(format!("src/{plural}.rs").into(), resource.module(scaffold))];
    if html {
        files.push((
            format!("templates/frontend/{plural}.html.jinja").into(),
            resource.template(),
        ));
    }
    if scaffold {
        files.push((format!("tests/{plural}.rs").into(), resource.tests()));
    }
    Generated {
        files,
        module: plural.clone(),
        apply: true,
    }
    .write(root, &spec.force)?;
    println!(
        "\nNext: cargo test{}",
        if html {
            " · then open /".to_owned() + plural + " (npm run build picks up the new classes)"
        } else {
            String::new()
        }
    );
    Ok(())
}

/// What a `generate` run writes.
struct Resource {
    /// snake_case singular, e.g. `blog_post`.
    name: String,
    /// Its plural: the module, collection and path, e.g. `blog_posts`.
    plural: String,
    /// The model type, e.g. `BlogPost`.
    model: String,
    fields: Vec<Field>,
    api: bool,
    html: bool,
    /// The app crate's name in Rust (`my_app`), for the tests.
    krate: String,
}

impl Resource {
    fn new(args: &ResourceArgs, api: bool, html: bool, root: &Path) -> anyhow::Result<Self> {
        let fields = args
            .fields
            .iter()
            .map(|f| parse_field(f))
            .collect::<anyhow::Result<Vec<_>>>()?;
        ensure!(
            !fields.is_empty(),
            "give the fields as NAME:TYPE, e.g. `vibetuner generate scaffold post title:string body:text` (see --help)"
        );
        for (i, f) in fields.iter().enumerate() {
            ensure!(
                !fields[..i].iter().any(|g| g.name == f.name),
                "field {} is given twice",
                f.name
            );
        }
        let plural = plural(&args.name);
        ensure!(
            !["notes", "users", "routes", "sessions"].contains(&plural.as_str()),
            "{plural} is taken by the app or the framework; choose another name"
        );
        Ok(Self {
            model: camel(&args.name),
            name: args.name.clone(),
            plural,
            fields,
            api,
            html,
            krate: crate_name(root)?,
        })
    }

    fn fill(&self, template: &str) -> String {
        template
            .replace("__Model__", &self.model)
            .replace("__Label__", &label(&self.name))
            .replace("__Labels__", &label(&self.plural))
            .replace("__label__", &self.name.replace('_', " "))
            .replace("__labels__", &self.plural.replace('_', " "))
            .replace("__plural__", &self.plural)
            .replace("__name__", &self.name)
            .replace("__crate__", &self.krate)
    }

    fn uses(&self, pick: impl Fn(&Field) -> bool) -> bool {
        self.fields.iter().any(pick)
    }

    /// `src/PLURAL.rs`.
    fn module(&self, scaffold: bool) -> String {
        let mut fields = String::new();
        let mut checks = String::new();
        for f in &self.fields {
            f.struct_field(&mut fields);
            f.validation(&mut checks);
        }
        let mut out = String::new();
        if scaffold {
            let what = match (self.api, self.html) {
                (true, true) => {
                    "as a JSON API at `/api/__plural__` made by the CRUD factory and htmx pages at\n//! `/__plural__` that list, create, edit and delete them"
                }
                (true, false) => "as a JSON API at `/api/__plural__` made by the CRUD factory",
                _ => "as htmx pages at `/__plural__` that list, create, edit and delete them",
            };
            let _ = write!(
                out,
                "//! __Labels__: each signed-in user's own, {what}. Visitors are\n//! refused (401, or sent to sign in), and another user's __labels__ answer 404.\n//!\n//! Generated by `vibetuner generate scaffold`: change it as you like.\n\nuse vibetuner::prelude::*;\n\n/// A __label__, stored in the `__plural__` collection.\n#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]\npub struct __Model__ {{\n    /// The user it belongs to; set by the server.\n    pub owner_id: Id,\n{fields}}}\n\nimpl Model for __Model__ {{\n    const COLLECTION: &'static str = \"__plural__\";\n\n    fn indexes() -> Vec<Index> {{\n        vec![Index::on([\"owner_id\", \"db_insert_dt\"])]\n    }}\n"
            );
        } else {
            let _ = write!(
                out,
                "//! The __label__ model.\n//!\n//! Generated by `vibetuner generate model`: change it as you like.\n\nuse vibetuner::prelude::*;\n\n/// A __label__, stored in the `__plural__` collection.\n#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]\npub struct __Model__ {{\n{fields}}}\n\nimpl Model for __Model__ {{\n    const COLLECTION: &'static str = \"__plural__\";\n"
            );
        }
        if !checks.is_empty() {
            let _ = write!(
                out,
                "\n    fn validate(&self) -> Result<(), FieldError> {{\n{checks}        Ok(())\n    }}\n"
            );
        }
        out.push_str("}\n");
        if !scaffold {
            out.push_str("\n/// Registers the model on the app (its indexes are created at startup).\npub fn register(app: App) -> App {\n    app.model::<__Model__>()\n}\n");
            return self.fill(&out);
        }
        out.push_str("\n/// Registers the __label__ ");
        out.push_str(match (self.api, self.html) {
            (true, true) => "API and pages",
            (true, false) => "API",
            _ => "pages",
        });
        out.push_str(" on the app.\npub fn register(app: App) -> App {\n    app");
        if self.api {
            out.push_str(".crud(\n        Crud::<__Model__>::new(\"/api/__plural__\")\n            .owned_by(\"owner_id\")\n            .sortable([\"db_insert_dt\"])\n            .default_sort(\"-db_insert_dt\"),\n    )");
        } else {
            out.push_str(".model::<__Model__>()");
        }
        if self.html {
            out.push_str("\n    .named_route(\"__plural___page\", \"/__plural__\", get(index).post(create))\n    .named_route(\n        \"__plural___item\",\n        \"/__plural__/{id}\",\n        get(show).post(update).delete(remove),\n    )\n    .named_route(\"__plural___edit\", \"/__plural__/{id}/edit\", get(edit))");
        }
        out.push_str("\n}\n");
        if self.html {
            out.push_str(&self.pages());
        }
        self.fill(&out)
    }

    /// The form type, its conversions and the page handlers.
    fn pages(&self) -> String {
        let mut form_fields = String::new();
        let mut to_model = String::new();
        let mut to_form = String::new();
        for f in &self.fields {
            f.form_field(&mut form_fields);
            let _ = writeln!(to_model, "            {}: {},", f.name, f.parse_expr());
            let _ = writeln!(to_form, "            {}: {},", f.name, f.text_expr());
        }
        let mut out = format!(
            "
/// The __label__ form's fields, as the browser sends them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct __Model__Form {{
{form_fields}}}

impl __Model__Form {{
    /// The __label__ these fields describe, owned by `owner_id`, or the first field that is wrong.
    pub fn to_model(&self, owner_id: Id) -> Result<__Model__, FieldError> {{
        let item = __Model__ {{
            owner_id,
{to_model}        }};
        item.validate()?;
        Ok(item)
    }}
}}

impl From<&__Model__> for __Model__Form {{
    fn from(item: &__Model__) -> Self {{
        Self {{
{to_form}        }}
    }}
}}
"
        );
        let parses = self.uses(|f| matches!(f.kind, Kind::Int | Kind::Float | Kind::Id));
        let datetimes = self.uses(|f| f.kind == Kind::Datetime);
        if parses || self.uses(|f| f.kind == Kind::Datetime && !f.optional) {
            out.push_str(
                "
/// A required value: none is an error.
fn required<T>(field: &str, value: Option<T>) -> Result<T, FieldError> {
    value.ok_or_else(|| FieldError::new(field, \"is required\"))
}
",
            );
        }
        if parses {
            out.push_str(
                "
/// A form value parsed as `T`; blank is none.
fn parse<T: std::str::FromStr>(field: &str, value: &str) -> Result<Option<T>, FieldError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| FieldError::new(field, \"is not valid\"))
}
",
            );
        }
        if self.uses(|f| matches!(f.kind, Kind::String | Kind::Text) && f.optional) {
            out.push_str(
                "
/// Trimmed text; blank is none.
fn optional_text(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}
",
            );
        }
        if datetimes {
            out.push_str(
                "
/// A form's date and time (`datetime-local` sends `2030-01-02T03:04`, taken as UTC; RFC 3339
/// works too); blank is none.
fn timestamp(field: &str, value: &str) -> Result<Option<Timestamp>, FieldError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let rfc3339 = if value.len() == 16 {
        format!(\"{value}:00Z\")
    } else {
        value.to_owned()
    };
    vibetuner::serde_json::from_value(vibetuner::serde_json::Value::String(rfc3339))
        .map(Some)
        .map_err(|_| FieldError::new(field, \"is not a date and time\"))
}

/// A timestamp as a `datetime-local` input's value.
fn datetime_input(at: Timestamp) -> String {
    at.to_rfc3339().chars().take(16).collect()
}
",
            );
        }
        out.push_str(PAGE_HANDLERS);
        out
    }

    /// `templates/frontend/PLURAL.html.jinja`.
    fn template(&self) -> String {
        let controls: Vec<String> = self
            .fields
            .iter()
            .map(|f| format!("        {}", f.control()))
            .collect();
        let display: Vec<String> = self
            .fields
            .iter()
            .map(|f| format!("      {}", f.display()))
            .collect();
        self.fill(
            &PAGE_TEMPLATE
                .replace("__CONTROLS__", &controls.join("\n"))
                .replace("__DISPLAY__", &display.join("\n")),
        )
    }

    fn sample_json(&self, changed: bool) -> String {
        let pairs: Vec<String> = self
            .fields
            .iter()
            .map(|f| format!("\"{}\": {}", f.name, f.sample_json(changed)))
            .collect();
        format!("json!({{ {} }})", pairs.join(", "))
    }

    fn sample_form(&self, changed: bool) -> String {
        let pairs: Vec<String> = self
            .fields
            .iter()
            .map(|f| format!("(\"{}\", \"{}\")", f.name, f.sample_form(changed)))
            .collect();
        format!("&[{}]", pairs.join(", "))
    }

    /// The sample form with `blank` left empty.
    fn sample_form_without(&self, blank: &str) -> String {
        let pairs: Vec<String> = self
            .fields
            .iter()
            .map(|f| {
                let value = if f.name == blank {
                    String::new()
                } else {
                    f.sample_form(false)
                };
                format!("(\"{}\", \"{value}\")", f.name)
            })
            .collect();
        format!("&[{}]", pairs.join(", "))
    }

    /// `tests/PLURAL.rs`.
    fn tests(&self) -> String {
        let first = &self.fields[0];
        let mut out = String::from(
            "//! __Labels__ (generated by `vibetuner generate scaffold`), driven in-process through the\n//! app's whole router on a fresh embedded store.\n\n",
        );
        if self.api {
            out.push_str("use vibetuner::serde_json::{Value, json};\n");
        }
        out.push_str("use vibetuner::testing::TestApp;\n");
        if self.html {
            out.push_str(
                "
/// The id of the first __label__ on a `/__plural__` page.
fn first_id(page: &str) -> String {
    let mark = \"id=\\\"__name__-\";
    let at = page.find(mark).expect(\"a __label__ on the page\") + mark.len();
    page[at..at + 24].to_owned()
}
",
            );
        }
        if self.api {
            let _ = write!(
                out,
                "
#[vibetuner::test]
async fn the_api_creates_reads_updates_and_deletes___plural__() {{
    let app = TestApp::new(__crate__::app()).await;
    let client = app.sign_in(\"ada@example.com\").await;

    let created = client
        .post_json(\"/api/__plural__\", &{sample})
        .await;
    assert_eq!(created.status(), 201, \"{{}}\", created.text());
    let item: Value = created.json();
    let path = format!(\"/api/__plural__/{{}}\", item[\"id\"].as_str().expect(\"an id\"));

    let list: Value = client.get_json(\"/api/__plural__\").await.json();
    assert_eq!(list[\"total\"], 1);

    let changed = client
        .patch_json(&path, &json!({{ \"{first}\": {changed} }}))
        .await;
    assert_eq!(changed.status(), 200, \"{{}}\", changed.text());
{read_back}",
                sample = self.sample_json(false),
                first = first.name,
                changed = first.sample_json(true),
                read_back = if first.kind == Kind::Datetime {
                    String::new()
                } else {
                    format!(
                        "    let read: Value = client.get_json(&path).await.json();\n    assert_eq!(read[\"{}\"], json!({}));\n",
                        first.name,
                        first.sample_json(true)
                    )
                },
            );
            if self.uses(Field::required) {
                out.push_str(
                    "
    let incomplete = client.post_json(\"/api/__plural__\", &json!({})).await;
    assert_eq!(incomplete.status(), 422, \"required fields are required\");
",
                );
            }
            out.push_str(
                "
    assert_eq!(client.delete(&path).await.status(), 204);
    assert_eq!(client.get_json(&path).await.status(), 404);
}
",
            );
        }
        if self.html {
            let _ = write!(
                out,
                "
#[vibetuner::test]
async fn the_pages_add_edit_and_delete___plural__() {{
    let app = TestApp::new(__crate__::app()).await;
    let client = app.sign_in(\"ada@example.com\").await;

    let page = client.get(\"/__plural__\").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().contains(\"<form\"), \"the page has the form\");

    let added = client
        .request(vibetuner::axum::http::Method::POST, \"/__plural__\")
        .htmx()
        .form({sample})
        .send()
        .await;
    assert_eq!(added.status(), 200, \"{{}}\", added.text());
    let id = first_id(&added.text());
",
                sample = self.sample_form(false),
            );
            if let Some(text) = self
                .fields
                .iter()
                .find(|f| matches!(f.kind, Kind::String | Kind::Text))
            {
                let _ = writeln!(
                    out,
                    "    assert!(client.get(\"/__plural__\").await.text().contains({}));",
                    text.sample_json(false)
                );
            }
            let _ = write!(
                out,
                "
    let form = client
        .request(vibetuner::axum::http::Method::GET, &format!(\"/__plural__/{{id}}/edit\"))
        .htmx()
        .send()
        .await;
    assert_eq!(form.status(), 200);
    assert!(form.text().contains(\"name=\\\"{first}\\\"\"), \"{{}}\", form.text());
    let saved = client
        .request(vibetuner::axum::http::Method::POST, &format!(\"/__plural__/{{id}}\"))
        .htmx()
        .form({changed})
        .send()
        .await;
    assert_eq!(saved.status(), 200, \"{{}}\", saved.text());
",
                first = first.name,
                changed = self.sample_form(true),
            );
            if let Some(required) = self.fields.iter().find(|f| f.required()) {
                let _ = write!(
                    out,
                    "
    let invalid = client
        .request(vibetuner::axum::http::Method::POST, \"/__plural__\")
        .htmx()
        .form({form})
        .send()
        .await;
    assert_eq!(invalid.status(), 422);
    assert!(
        invalid.text().contains(\"{label} is required\"),
        \"{{}}\",
        invalid.text()
    );
",
                    form = self.sample_form_without(&required.name),
                    label = required.name.replace('_', " "),
                );
            }
            out.push_str(
                "
    let deleted = client
        .request(vibetuner::axum::http::Method::DELETE, &format!(\"/__plural__/{id}\"))
        .htmx()
        .send()
        .await;
    assert_eq!(deleted.status(), 200);
    assert!(!client.get(\"/__plural__\").await.text().contains(&id));
}
",
            );
        }
        let _ = write!(
            out,
            "
#[vibetuner::test]
async fn __plural___belong_to_their_author() {{
    let app = TestApp::new(__crate__::app()).await;
    let anonymous = app.client();
    let ada = app.sign_in(\"ada@example.com\").await;
    let bob = app.sign_in(\"bob@example.com\").await;
"
        );
        if self.api {
            let _ = write!(
                out,
                "
    assert_eq!(anonymous.get_json(\"/api/__plural__\").await.status(), 401);
    let item: Value = ada
        .post_json(\"/api/__plural__\", &{sample})
        .await
        .json();
    let path = format!(\"/api/__plural__/{{}}\", item[\"id\"].as_str().expect(\"an id\"));
    assert_eq!(bob.get_json(&path).await.status(), 404);
    assert_eq!(bob.delete(&path).await.status(), 404);
    let theirs: Value = bob.get_json(\"/api/__plural__\").await.json();
    assert_eq!(theirs[\"total\"], 0);
    assert_eq!(ada.get_json(&path).await.status(), 200, \"still there for its author\");
",
                sample = self.sample_json(false),
            );
        }
        if self.html {
            let _ = write!(
                out,
                "
    assert_eq!(
        anonymous.get(\"/__plural__\").await.status(),
        303,
        \"the page sends visitors to sign in\"
    );
    let added = ada
        .request(vibetuner::axum::http::Method::POST, \"/__plural__\")
        .htmx()
        .form({sample})
        .send()
        .await;
    let id = first_id(&added.text());
    let edit = bob
        .request(vibetuner::axum::http::Method::GET, &format!(\"/__plural__/{{id}}/edit\"))
        .htmx()
        .send()
        .await;
    assert_eq!(edit.status(), 404);
    let delete = bob
        .request(vibetuner::axum::http::Method::DELETE, &format!(\"/__plural__/{{id}}\"))
        .htmx()
        .send()
        .await;
    assert_eq!(delete.status(), 404);
    assert!(!bob.get(\"/__plural__\").await.text().contains(&id));
",
                sample = self.sample_form(false),
            );
        }
        out.push_str("}\n");
        self.fill(&out)
    }
}

const PAGE_HANDLERS: &str = r#"
/// The signed-in user's 100 newest __labels__.
async fn latest(store: &Store, owner: Id) -> Result<Vec<Record<__Model__>>> {
    let query = Filter::eq("owner_id", owner)
        .sort("db_insert_dt", Order::Desc)
        .limit(100);
    Ok(store.models::<__Model__>().find(&query).await?)
}

/// The user's __label__ `id`; another user's is "not found", like a missing one.
async fn owned(store: &Store, owner: Id, id: Id) -> Result<Record<__Model__>> {
    let mine = Filter::eq("_id", id).and(Filter::eq("owner_id", owner));
    store
        .models::<__Model__>()
        .find_one(mine)
        .await?
        .ok_or_else(Error::not_found)
}

/// A field's problem, for people.
fn describe(e: &FieldError) -> String {
    format!("The {} {}.", e.field.replace('_', " "), e.message)
}

/// The list and the new-__label__ form: the page, or only its section for htmx.
async fn section(
    render: &Render,
    store: &Store,
    owner: Id,
    form: &__Model__Form,
    error: Option<String>,
) -> Result<Html<String>> {
    let items = latest(store, owner).await?;
    render.page_or_block(
        "__plural__.html.jinja",
        "section",
        context! { items, form, error },
    )
}

/// `GET /__plural__`
async fn index(user: CurrentUser, render: Render, store: Store) -> Result<Html<String>> {
    let form = __Model__Form::default();
    section(&render, &store, user.record_id()?, &form, None).await
}

/// `POST /__plural__`: stores a new __label__ and answers with the section (422 with the form
/// and its error when invalid); without htmx, redirects back to the list.
async fn create(
    user: CurrentUser,
    render: Render,
    store: Store,
    Form(form): Form<__Model__Form>,
) -> Result<Response> {
    let owner = user.record_id()?;
    match form.to_model(owner) {
        Ok(item) => {
            store.models::<__Model__>().insert(item).await?;
            if !render.request().htmx {
                return Ok(Redirect::to("/__plural__").into_response());
            }
            let empty = __Model__Form::default();
            Ok(section(&render, &store, owner, &empty, None)
                .await?
                .into_response())
        }
        Err(e) => {
            let html = section(&render, &store, owner, &form, Some(describe(&e))).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
    }
}

/// `GET /__plural__/{id}`: the __label__'s list item (htmx).
async fn show(
    user: CurrentUser,
    render: Render,
    store: Store,
    Path(id): Path<Id>,
) -> Result<Html<String>> {
    let item = owned(&store, user.record_id()?, id).await?;
    render.block("__plural__.html.jinja", "item", context! { item })
}

/// `GET /__plural__/{id}/edit`: the list item as a form (htmx).
async fn edit(
    user: CurrentUser,
    render: Render,
    store: Store,
    Path(id): Path<Id>,
) -> Result<Html<String>> {
    let item = owned(&store, user.record_id()?, id).await?;
    let form = __Model__Form::from(&item.data);
    render.block(
        "__plural__.html.jinja",
        "edit",
        context! { id => id.to_string(), form },
    )
}

/// `POST /__plural__/{id}`: saves the changes and answers with the list item (422 with the
/// form and its error when invalid).
async fn update(
    user: CurrentUser,
    render: Render,
    store: Store,
    Path(id): Path<Id>,
    Form(form): Form<__Model__Form>,
) -> Result<Response> {
    let owner = user.record_id()?;
    let mut item = owned(&store, owner, id).await?;
    match form.to_model(owner) {
        Ok(data) => {
            item.data = data;
            store.models::<__Model__>().save(&mut item).await?;
            Ok(render
                .block("__plural__.html.jinja", "item", context! { item })?
                .into_response())
        }
        Err(e) => {
            let html = render.block(
                "__plural__.html.jinja",
                "edit",
                context! { id => id.to_string(), form, error => describe(&e) },
            )?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
    }
}

/// `DELETE /__plural__/{id}`: removes the user's __label__; htmx swaps its list item for the
/// empty answer.
async fn remove(
    user: CurrentUser,
    store: Store,
    Path(id): Path<Id>,
) -> Result<Html<&'static str>> {
    let mine = Filter::eq("_id", id).and(Filter::eq("owner_id", user.record_id()?));
    if store.models::<__Model__>().delete_many(mine).await? == 1 {
        Ok(Html(""))
    } else {
        Err(Error::not_found())
    }
}
"#;

const PAGE_TEMPLATE: &str = r##"{% extends "base/skeleton.html.jinja" %}
{#- __Labels__ (generated by `vibetuner generate scaffold`): the list with a form for a new one;
    each item turns into its own edit form in place. -#}
{#- A block is rendered after the whole page, where `form` may be absent: hence the `if`. -#}
{% macro fields(form) %}{% if form %}
__CONTROLS__
{% endif %}{% endmacro %}
{% macro list_item(item) %}
<li class="card bg-base-100 shadow" id="__name__-{{ item.id }}">
  <div class="card-body py-4 flex-row items-start gap-4">
    <dl class="flex-1 grid grid-cols-[auto_1fr] gap-x-4 gap-y-1">
__DISPLAY__
    </dl>
    <button class="btn btn-ghost btn-sm" hx-get="{{ url_for('__plural___edit', id=item.id) }}" hx-target="closest li" hx-swap="outerHTML">Edit</button>
    <button class="btn btn-ghost btn-sm" hx-delete="{{ url_for('__plural___item', id=item.id) }}" hx-target="closest li" hx-swap="outerHTML" aria-label="Delete">Delete</button>
  </div>
</li>
{% endmacro %}
{% block title %}__Labels__ · {{ project_name }}{% endblock %}
{% block content %}
<div class="max-w-2xl mx-auto">
  <h1 class="text-3xl font-bold mb-6">__Labels__</h1>
  {% block section %}
  <section id="__plural__-section" class="space-y-6">
    <form class="card bg-base-200" method="post" action="{{ url_for('__plural___page') }}" hx-post="{{ url_for('__plural___page') }}" hx-target="#__plural__-section" hx-swap="outerHTML">
      <div class="card-body gap-3">
        {% if error %}<div role="alert" class="alert alert-error">{{ error }}</div>{% endif %}
        {{ fields(form) }}
        <div class="card-actions justify-end">
          <button class="btn btn-primary" type="submit">Add __label__</button>
        </div>
      </div>
    </form>
    <ul class="space-y-3">
      {% for item in items %}
      {{ list_item(item) }}
      {% else %}
      <li class="opacity-60">No __labels__ yet.</li>
      {% endfor %}
    </ul>
  </section>
  {% endblock %}
</div>
{% endblock %}
{% block item %}{{ list_item(item) }}{% endblock %}
{% block edit %}
<li class="card bg-base-200" id="__name__-{{ id }}">
  <form class="card-body gap-3" hx-post="{{ url_for('__plural___item', id=id) }}" hx-target="closest li" hx-swap="outerHTML">
    {% if error %}<div role="alert" class="alert alert-error">{{ error }}</div>{% endif %}
    {{ fields(form) }}
    <div class="card-actions justify-end">
      <button class="btn btn-ghost" type="button" hx-get="{{ url_for('__plural___item', id=id) }}" hx-target="closest li" hx-swap="outerHTML">Cancel</button>
      <button class="btn btn-primary" type="submit">Save</button>
    </div>
  </form>
</li>
{% endblock %}
"##;
