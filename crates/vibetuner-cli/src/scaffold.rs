//! `vibetuner generate`: code for a resource (model, CRUD API, htmx pages, tests) registered
//! in the app's `src/lib.rs`, and `vibetuner eject`: a framework template copied into the app.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};

/// The marker line in `src/lib.rs` above which `mod` lines are added.
const MODULES_MARKER: &str = "// vibetuner:modules";
/// The marker line in `src/lib.rs` above which `.apply(NAME::register)` lines are added.
const REGISTER_MARKER: &str = "// vibetuner:register";

const FIELD_HELP: &str = "\
FIELDS are NAME:TYPE, with NAME in snake_case and TYPE one of:
  string     one line of text, required, at most 200 characters (String)
  text       longer text, required, at most 10000 characters (String)
  int        whole number (i64)
  float      finite number (f64)
  bool       yes/no, false when absent (bool; a checkbox on pages)
  datetime   UTC date and time, RFC 3339 in JSON (Timestamp)
  id         the id of another record (Id)
Add ? for an optional field (Option<...>; blank on a form is none): subtitle:string? due:datetime?
Reserved names: id, owner_id, db_insert_dt, db_update_dt.";

/// `vibetuner generate` subcommands.
#[derive(clap::Subcommand)]
pub enum GenerateCommand {
    /// A resource: model with validation, CRUD JSON API at /api/PLURAL and htmx pages at
    /// /PLURAL (list, create, edit, delete), tests in tests/PLURAL.rs, registered in src/lib.rs.
    /// Each signed-in user sees and changes only their own records (owner_id).
    #[command(after_help = FIELD_HELP)]
    Scaffold {
        #[command(flatten)]
        spec: ResourceArgs,
        /// Only the JSON API (no pages).
        #[arg(long, conflicts_with = "html")]
        api: bool,
        /// Only the htmx pages (no JSON API).
        #[arg(long)]
        html: bool,
    },
    /// A model only: a struct stored in the PLURAL collection, with validation, registered in
    /// src/lib.rs so its indexes are created.
    #[command(after_help = FIELD_HELP)]
    Model {
        #[command(flatten)]
        spec: ResourceArgs,
    },
    /// A page: a handler rendering templates/frontend/NAME.html.jinja (whole, or its `page`
    /// block for htmx), a test in tests/NAME.rs, registered in src/lib.rs.
    Page(crate::generators::PageArgs),
    /// A background task: a typed `TaskKey<ARG_TYPE>` and its async function, a test that
    /// enqueues and runs it, registered in src/lib.rs.
    Task(crate::generators::TaskArgs),
    /// An email: HTML and text templates in templates/frontend/email/, a `send_NAME` function
    /// rendering both and sending them through the mailer, a test reading it from the outbox.
    Email(crate::generators::EmailArgs),
}

/// The resource's name and fields.
#[derive(clap::Args)]
pub struct ResourceArgs {
    /// Singular name in snake_case, e.g. post or blog_post (collection and paths: posts, blog_posts).
    #[arg(value_parser = snake_name)]
    name: String,
    /// Fields as NAME:TYPE (see below).
    #[arg(value_name = "FIELD:TYPE")]
    fields: Vec<String>,
    #[command(flatten)]
    force: Force,
}

/// `--force`, shared by the generators.
#[derive(clap::Args)]
pub(crate) struct Force {
    /// Overwrite files a previous run wrote.
    #[arg(long)]
    force: bool,
}

/// Field types of generated models (and argument types of generated tasks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Text,
    Int,
    Float,
    Bool,
    Datetime,
    Id,
}

impl Kind {
    /// The type called `name` on the command line.
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "string" => Self::String,
            "text" => Self::Text,
            "int" => Self::Int,
            "float" => Self::Float,
            "bool" => Self::Bool,
            "datetime" => Self::Datetime,
            "id" => Self::Id,
            _ => return None,
        })
    }

    /// The Rust type of a required value.
    pub(crate) fn rust_type(self) -> &'static str {
        match self {
            Self::String | Self::Text => "String",
            Self::Int => "i64",
            Self::Float => "f64",
            Self::Bool => "bool",
            Self::Datetime => "Timestamp",
            Self::Id => "Id",
        }
    }

    /// A Rust expression of a sample value, for generated tests.
    pub(crate) fn sample_rust(self) -> &'static str {
        match self {
            Self::String | Self::Text => "\"Sample\".to_owned()",
            Self::Int => "42",
            Self::Float => "1.5",
            Self::Bool => "true",
            Self::Datetime => "vibetuner::Timestamp::from_millis(1_893_553_440_000)",
            Self::Id => "\"0123456789abcdef01234567\".parse::<vibetuner::Id>().unwrap()",
        }
    }
}

/// A clap value parser for a task's argument type.
pub(crate) fn arg_kind(name: &str) -> Result<Kind, String> {
    Kind::parse(name).ok_or_else(|| {
        format!("unknown type {name:?}; use string, text, int, float, bool, datetime or id")
    })
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    kind: Kind,
    optional: bool,
}

const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "box", "break", "const", "continue", "crate", "dyn", "else", "enum",
    "extern", "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod",
    "move", "mut", "priv", "pub", "ref", "return", "self", "static", "struct", "super", "trait",
    "true", "try", "type", "unsafe", "use", "where", "while", "yield",
];

/// True for `snake_case` names that are not Rust keywords.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__")
        && !RUST_KEYWORDS.contains(&name)
}

/// Module names a generator must not write: the crate's own files.
const RESERVED_MODULES: &[&str] = &["lib", "main", "build", "tests"];

/// A clap value parser for a generated item's NAME: snake_case, not a Rust keyword, not a
/// file of the crate itself (a bad name is a usage error: exit status 2).
pub(crate) fn snake_name(name: &str) -> Result<String, String> {
    if !valid_name(name) {
        return Err(format!(
            "{name:?} is not a snake_case name (a-z, 0-9, _; starting with a letter; not a Rust keyword), e.g. post or blog_post"
        ));
    }
    if RESERVED_MODULES.contains(&name) {
        return Err(format!(
            "{name:?} is the name of one of the crate's own files; choose another name"
        ));
    }
    Ok(name.to_owned())
}

fn parse_field(spec: &str) -> anyhow::Result<Field> {
    let (name, ty) = spec
        .split_once(':')
        .with_context(|| format!("{spec:?} is not NAME:TYPE (e.g. title:string)"))?;
    ensure!(
        valid_name(name),
        "field name {name:?} must be snake_case (a-z, 0-9, _; starting with a letter) and not a Rust keyword"
    );
    ensure!(
        !["id", "owner_id", "db_insert_dt", "db_update_dt"].contains(&name),
        "field name {name:?} is reserved: the framework or the generated code sets it"
    );
    let (ty, optional) = ty.strip_suffix('?').map_or((ty, false), |t| (t, true));
    let Some(kind) = Kind::parse(ty) else {
        bail!(
            "field {name}: unknown type {ty:?}; use string, text, int, float, bool, datetime or id (with ? for optional)"
        )
    };
    ensure!(
        !(optional && kind == Kind::Bool),
        "field {name}: bool? is not a type: a bool is already false when absent; use {name}:bool"
    );
    Ok(Field {
        name: name.to_owned(),
        kind,
        optional,
    })
}

/// `blog_post` → `BlogPost`.
pub(crate) fn camel(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// `published_at` → `Published at`.
pub(crate) fn label(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_ascii_uppercase().to_string() + chars.as_str()
    })
}

/// English plural of a snake_case name's last word.
fn plural(name: &str) -> String {
    if let Some(stem) = name.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|end| name.ends_with(end))
    {
        format!("{name}es")
    } else {
        format!("{name}s")
    }
}

impl Field {
    fn rust_type(&self) -> String {
        if self.optional {
            format!("Option<{}>", self.kind.rust_type())
        } else {
            self.kind.rust_type().to_owned()
        }
    }

    fn max_chars(&self) -> Option<usize> {
        match self.kind {
            Kind::String => Some(200),
            Kind::Text => Some(10_000),
            _ => None,
        }
    }

    /// Required on forms and in the API (bools are false when absent).
    fn required(&self) -> bool {
        !self.optional && self.kind != Kind::Bool
    }

    fn struct_field(&self, out: &mut String) {
        let what = match self.kind {
            Kind::String => "One line of text",
            Kind::Text => "Text",
            Kind::Int => "A whole number",
            Kind::Float => "A number",
            Kind::Bool => "Yes or no",
            Kind::Datetime => "A date and time (UTC)",
            Kind::Id => "The id of another record",
        };
        let optional = if self.optional { "; optional" } else { "" };
        let _ = writeln!(
            out,
            "    /// {}: {}{optional}.",
            label(&self.name),
            what.to_lowercase()
        );
        if self.optional || self.kind == Kind::Bool {
            out.push_str("    #[serde(default)]\n");
        }
        let _ = writeln!(out, "    pub {}: {},", self.name, self.rust_type());
    }

    /// Checks beyond the type, as statements of `validate`.
    fn validation(&self, out: &mut String) {
        let n = &self.name;
        match (self.kind, self.optional) {
            (Kind::String | Kind::Text, false) => {
                let max = self.max_chars().unwrap_or_default();
                let _ = write!(
                    out,
                    "        if self.{n}.trim().is_empty() {{\n            return Err(FieldError::new(\"{n}\", \"is required\"));\n        }}\n        if self.{n}.chars().count() > {max} {{\n            return Err(FieldError::new(\"{n}\", \"is longer than {max} characters\"));\n        }}\n"
                );
            }
            (Kind::String | Kind::Text, true) => {
                let max = self.max_chars().unwrap_or_default();
                let _ = write!(
                    out,
                    "        if self.{n}.as_ref().is_some_and(|v| v.chars().count() > {max}) {{\n            return Err(FieldError::new(\"{n}\", \"is longer than {max} characters\"));\n        }}\n"
                );
            }
            (Kind::Float, false) => {
                let _ = write!(
                    out,
                    "        if !self.{n}.is_finite() {{\n            return Err(FieldError::new(\"{n}\", \"is not a finite number\"));\n        }}\n"
                );
            }
            (Kind::Float, true) => {
                let _ = write!(
                    out,
                    "        if self.{n}.is_some_and(|v| !v.is_finite()) {{\n            return Err(FieldError::new(\"{n}\", \"is not a finite number\"));\n        }}\n"
                );
            }
            _ => {}
        }
    }

    /// The form field, as a struct field of the form type.
    fn form_field(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "    /// {}.\n    #[serde(default)]\n    pub {}: String,",
            label(&self.name),
            self.name
        );
    }

    /// The expression turning the form's text into the model's value.
    fn parse_expr(&self) -> String {
        let n = &self.name;
        match (self.kind, self.optional) {
            (Kind::String | Kind::Text, false) => format!("self.{n}.trim().to_owned()"),
            (Kind::String | Kind::Text, true) => format!("optional_text(&self.{n})"),
            (Kind::Bool, _) => format!("!self.{n}.is_empty()"),
            (Kind::Datetime, false) => {
                format!("required(\"{n}\", timestamp(\"{n}\", &self.{n})?)?")
            }
            (Kind::Datetime, true) => format!("timestamp(\"{n}\", &self.{n})?"),
            (_, false) => format!("required(\"{n}\", parse(\"{n}\", &self.{n})?)?"),
            (_, true) => format!("parse(\"{n}\", &self.{n})?"),
        }
    }

    /// The expression turning the model's value (of `item`) into the form's text.
    fn text_expr(&self) -> String {
        let n = &self.name;
        match (self.kind, self.optional) {
            (Kind::String | Kind::Text, false) => format!("item.{n}.clone()"),
            (Kind::String | Kind::Text, true) => format!("item.{n}.clone().unwrap_or_default()"),
            (Kind::Bool, _) => format!("if item.{n} {{ \"on\".into() }} else {{ String::new() }}"),
            (Kind::Datetime, false) => format!("datetime_input(item.{n})"),
            (Kind::Datetime, true) => format!("item.{n}.map(datetime_input).unwrap_or_default()"),
            (_, false) => format!("item.{n}.to_string()"),
            (_, true) => format!("item.{n}.as_ref().map(ToString::to_string).unwrap_or_default()"),
        }
    }

    /// The form control in the page template.
    fn control(&self) -> String {
        let n = &self.name;
        let label = label(n);
        let required = if self.required() { " required" } else { "" };
        let input = |ty: &str, extra: &str| {
            format!(
                "<label class=\"fieldset\"><span class=\"fieldset-legend\">{label}</span><input class=\"input w-full\" type=\"{ty}\" name=\"{n}\" value=\"{{{{ form.{n} }}}}\"{extra}{required}></label>"
            )
        };
        match self.kind {
            Kind::String => input("text", " maxlength=\"200\""),
            Kind::Text => format!(
                "<label class=\"fieldset\"><span class=\"fieldset-legend\">{label}</span><textarea class=\"textarea w-full\" name=\"{n}\" maxlength=\"10000\"{required}>{{{{ form.{n} }}}}</textarea></label>"
            ),
            Kind::Int => input("number", " step=\"1\""),
            Kind::Float => input("number", " step=\"any\""),
            Kind::Datetime => input("datetime-local", ""),
            Kind::Id => input("text", " pattern=\"[0-9a-f]{24}\""),
            Kind::Bool => format!(
                "<label class=\"label\"><input class=\"checkbox\" type=\"checkbox\" name=\"{n}\"{{% if form.{n} %}} checked{{% endif %}}> {label}</label>"
            ),
        }
    }

    /// The value in a list item.
    fn display(&self) -> String {
        let n = &self.name;
        let value = match (self.kind, self.optional) {
            (Kind::Bool, _) => format!("{{{{ \"yes\" if item.{n} else \"no\" }}}}"),
            (_, true) => {
                format!("{{% if item.{n} is none %}}—{{% else %}}{{{{ item.{n} }}}}{{% endif %}}")
            }
            (_, false) => format!("{{{{ item.{n} }}}}"),
        };
        format!(
            "<dt class=\"font-semibold\">{}</dt><dd class=\"whitespace-pre-line\">{value}</dd>",
            label(n)
        )
    }

    /// A sample value in JSON (`changed`: a second, different one).
    fn sample_json(&self, changed: bool) -> String {
        match self.kind {
            Kind::String | Kind::Text if changed => format!("\"Changed {}\"", label(&self.name)),
            Kind::String | Kind::Text => format!("\"Sample {}\"", label(&self.name)),
            Kind::Int => if changed { "7" } else { "42" }.into(),
            Kind::Float => if changed { "2.5" } else { "1.5" }.into(),
            Kind::Bool => (!changed).to_string(),
            Kind::Datetime if changed => "\"2031-05-06T07:08:00Z\"".into(),
            Kind::Datetime => "\"2030-01-02T03:04:00Z\"".into(),
            Kind::Id if changed => "\"0123456789abcdef0123456a\"".into(),
            Kind::Id => "\"0123456789abcdef01234567\"".into(),
        }
    }

    /// A sample value as a form sends it.
    fn sample_form(&self, changed: bool) -> String {
        match self.kind {
            Kind::Bool if changed => String::new(),
            Kind::Bool => "on".into(),
            Kind::Datetime if changed => "2031-05-06T07:08".into(),
            Kind::Datetime => "2030-01-02T03:04".into(),
            _ => self.sample_json(changed).trim_matches('"').to_owned(),
        }
    }
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

/// The app crate's name as Rust spells it.
pub(crate) fn crate_name(root: &Path) -> anyhow::Result<String> {
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .context("cannot read Cargo.toml")?
        .parse()
        .context("Cargo.toml is not valid TOML")?;
    let name = manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .context("Cargo.toml has no [package] name")?;
    Ok(name.replace('-', "_"))
}

/// Adds `line` above the line holding `marker` (indented like it, plus `extra`), unless the
/// file already has it.
fn insert_above(text: &str, marker: &str, line: &str, extra: &str) -> Option<String> {
    if text.lines().any(|l| l.trim() == line.trim()) {
        return Some(text.to_owned());
    }
    let at = text.find(marker)?;
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let indent = &text[start..at];
    Some(format!(
        "{}{indent}{extra}{}\n{}",
        &text[..start],
        line.trim(),
        &text[start..]
    ))
}

/// `src/lib.rs` with module `module` declared at its markers and, when `apply`, its
/// `register` function applied to the app.
fn register(root: &Path, module: &str, apply: bool) -> anyhow::Result<String> {
    let path = root.join("src/lib.rs");
    let text = std::fs::read_to_string(&path).context("cannot read src/lib.rs")?;
    let mod_line = format!("pub mod {module};");
    let apply_line = format!(".apply({module}::register)");
    let missing = |marker: &str, line: &str, place: &str| {
        anyhow::anyhow!(
            "src/lib.rs has no `{marker}` line, so the generator cannot register {module}: add `{line}` {place} yourself (or put the marker line back), then build"
        )
    };
    let text = insert_above(&text, MODULES_MARKER, &mod_line, "")
        .ok_or_else(|| missing(MODULES_MARKER, &mod_line, "next to the other `mod` lines"))?;
    if !apply {
        return Ok(text);
    }
    insert_above(&text, REGISTER_MARKER, &apply_line, "    ").ok_or_else(|| {
        missing(
            REGISTER_MARKER,
            &apply_line,
            "to the end of the `App::new(...)` chain in `app()`",
        )
    })
}

/// What a generator writes into the project.
pub(crate) struct Generated {
    /// Files relative to the project root, with their text (`.rs` files go through rustfmt).
    pub files: Vec<(PathBuf, String)>,
    /// The module declared in `src/lib.rs`.
    pub module: String,
    /// Whether `.apply(MODULE::register)` joins the app's builder chain.
    pub apply: bool,
}

impl Generated {
    /// Registers the module and writes the files, refusing to overwrite any without `force`
    /// (checked before anything is written).
    pub fn write(&self, root: &Path, force: &Force) -> anyhow::Result<()> {
        let lib = register(root, &self.module, self.apply)?;
        let existing: Vec<String> = self
            .files
            .iter()
            .filter(|(path, _)| root.join(path).exists())
            .map(|(path, _)| path.display().to_string())
            .collect();
        ensure!(
            existing.is_empty() || force.force,
            "{} already exist(s); pass --force to overwrite",
            existing.join(", ")
        );
        for (path, text) in &self.files {
            let text = if path.extension().is_some_and(|e| e == "rs") {
                rustfmt(text)
            } else {
                text.clone()
            };
            let target = root.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&target, text)
                .with_context(|| format!("cannot write {}", target.display()))?;
            println!("wrote {}", path.display());
        }
        std::fs::write(root.join("src/lib.rs"), rustfmt(&lib))
            .context("cannot write src/lib.rs")?;
        println!("registered {} in src/lib.rs", self.module);
        Ok(())
    }
}

/// Runs a `generate` subcommand in the project around the current folder.
pub fn generate(command: &GenerateCommand) -> anyhow::Result<()> {
    let root = crate::project::root()?;
    let (spec, scaffold, api, html) = match command {
        GenerateCommand::Scaffold { spec, api, html } => (spec, true, !html, !api),
        GenerateCommand::Model { spec } => (spec, false, false, false),
        GenerateCommand::Page(args) => return crate::generators::page(&root, args),
        GenerateCommand::Task(args) => return crate::generators::task(&root, args),
        GenerateCommand::Email(args) => return crate::generators::email(&root, args),
    };
    let resource = Resource::new(spec, api, html, &root)?;
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
    .write(&root, &spec.force)?;
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

/// `text` formatted by rustfmt (through standard input, so no other file is touched), or as it
/// is when rustfmt is not there.
fn rustfmt(text: &str) -> String {
    use std::io::Write as _;
    let child = std::process::Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return text.to_owned();
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes());
    }
    match child.wait_with_output() {
        Ok(out) if out.status.success() => {
            String::from_utf8(out.stdout).unwrap_or_else(|_| text.to_owned())
        }
        _ => text.to_owned(),
    }
}

/// Arguments of `vibetuner eject`.
#[derive(clap::Args)]
pub struct EjectArgs {
    /// The framework template, e.g. `base/skeleton.html.jinja` (run without it for the list).
    template: Option<String>,
    /// Overwrite the app's copy.
    #[arg(long)]
    force: bool,
}

/// Copies a framework template into the app's `templates/frontend/`, which the framework
/// reads before its own.
pub fn eject(args: &EjectArgs) -> anyhow::Result<()> {
    let available: Vec<String> = vibetuner::render::FrameworkTemplates::iter()
        .filter_map(|n| n.strip_prefix("frontend/").map(str::to_owned))
        .collect();
    let Some(name) = &args.template else {
        println!("{}", available.join("\n"));
        return Ok(());
    };
    let name = name.strip_prefix("frontend/").unwrap_or(name);
    let Some(file) = vibetuner::render::FrameworkTemplates::get(&format!("frontend/{name}")) else {
        bail!(
            "no framework template {name:?}; the templates are:\n  {}",
            available.join("\n  ")
        );
    };
    let root = crate::project::root()?;
    let relative = Path::new("templates/frontend").join(name);
    let target = root.join(&relative);
    ensure!(
        !target.exists() || args.force,
        "{} exists; pass --force to overwrite it with the framework's version",
        relative.display()
    );
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&target, &file.data)
        .with_context(|| format!("cannot write {}", target.display()))?;
    println!(
        "wrote {}: the app now renders its copy instead of the framework's",
        relative.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_and_refuse_with_the_reason() {
        let f = parse_field("due:datetime?").unwrap();
        assert_eq!((f.kind, f.optional), (Kind::Datetime, true));
        for (spec, reason) in [
            ("title", "is not NAME:TYPE"),
            ("Title:string", "snake_case"),
            ("type:string", "snake_case"),
            ("id:string", "reserved"),
            ("x:money", "unknown type"),
            ("x:bool?", "already false"),
        ] {
            let e = parse_field(spec).unwrap_err().to_string();
            assert!(e.contains(reason), "{spec}: {e}");
        }
    }

    #[test]
    fn names_are_snake_case_and_not_the_crates_files() {
        assert_eq!(snake_name("blog_post").unwrap(), "blog_post");
        for (name, reason) in [
            ("Post", "snake_case"),
            ("my-page", "snake_case"),
            ("a__b", "snake_case"),
            ("type", "Rust keyword"),
            ("main", "crate's own files"),
        ] {
            let e = snake_name(name).unwrap_err();
            assert!(e.contains(reason), "{name}: {e}");
        }
        assert_eq!(arg_kind("datetime").unwrap().rust_type(), "Timestamp");
        assert!(arg_kind("money").unwrap_err().contains("unknown type"));
    }

    #[test]
    fn names_become_types_labels_and_plurals() {
        assert_eq!(camel("blog_post"), "BlogPost");
        assert_eq!(label("published_at"), "Published at");
        assert_eq!(plural("post"), "posts");
        assert_eq!(plural("category"), "categories");
        assert_eq!(plural("day"), "days");
        assert_eq!(plural("box"), "boxes");
    }

    #[test]
    fn registration_goes_above_the_markers_once() {
        let lib = "mod notes;\n// vibetuner:modules (x)\n\nfn app() -> App {\n    App::new()\n        .apply(notes::register)\n    // vibetuner:register (x)\n}\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), lib).unwrap();
        let once = register(dir.path(), "posts", true).unwrap();
        assert_eq!(
            once,
            "mod notes;\npub mod posts;\n// vibetuner:modules (x)\n\nfn app() -> App {\n    App::new()\n        .apply(notes::register)\n        .apply(posts::register)\n    // vibetuner:register (x)\n}\n"
        );
        std::fs::write(dir.path().join("src/lib.rs"), &once).unwrap();
        assert_eq!(register(dir.path(), "posts", true).unwrap(), once);

        std::fs::write(dir.path().join("src/lib.rs"), "mod notes;\n").unwrap();
        let e = register(dir.path(), "posts", true).unwrap_err().to_string();
        assert!(e.contains("`pub mod posts;`"), "{e}");
    }
}
