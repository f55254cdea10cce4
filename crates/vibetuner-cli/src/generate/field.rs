//! The fields of generated models (`NAME:TYPE`): their parsing, their types and what the
//! templates need of each (`resource/fields.jinja` holds the code each field becomes).

use anyhow::{Context, bail, ensure};
use serde::Serialize;

use super::names::{label, valid_name};

pub(super) const FIELD_HELP: &str = "\
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

/// Field types of generated models (and argument types of generated tasks); the templates see
/// them by their name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Kind {
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
    pub(super) fn rust_type(self) -> &'static str {
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
    pub(super) fn sample_rust(self) -> &'static str {
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
pub(super) fn arg_kind(name: &str) -> Result<Kind, String> {
    Kind::parse(name).ok_or_else(|| {
        format!("unknown type {name:?}; use string, text, int, float, bool, datetime or id")
    })
}

#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) optional: bool,
}

/// Parses one `NAME:TYPE` argument.
pub(super) fn parse_field(spec: &str) -> anyhow::Result<Field> {
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

impl Field {
    pub(super) fn rust_type(&self) -> String {
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
    pub(super) fn required(&self) -> bool {
        !self.optional && self.kind != Kind::Bool
    }

    /// What the templates see of the field.
    pub(super) fn view(&self) -> FieldView {
        FieldView {
            name: self.name.clone(),
            label: label(&self.name),
            words: self.name.replace('_', " "),
            kind: self.kind,
            optional: self.optional,
            required: self.required(),
            rust_type: self.rust_type(),
            max_chars: self.max_chars(),
            sample_json: self.sample_json(false),
            changed_json: self.sample_json(true),
            sample_form: self.sample_form(false),
            changed_form: self.sample_form(true),
        }
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

/// A field as the templates see it.
#[derive(Debug, Serialize)]
pub(super) struct FieldView {
    /// snake_case, e.g. `published_at`.
    name: String,
    /// For people, e.g. `Published at`.
    label: String,
    /// In a sentence, e.g. `published at`.
    words: String,
    kind: Kind,
    optional: bool,
    /// Required on forms and in the API.
    required: bool,
    /// e.g. `Option<Timestamp>`.
    rust_type: String,
    /// The longest text kept, for text fields.
    max_chars: Option<usize>,
    /// Sample values for the generated tests: in JSON (a Rust expression), as a form sends
    /// them, and a second, different one of each.
    sample_json: String,
    changed_json: String,
    sample_form: String,
    changed_form: String,
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
    fn task_argument_types_parse() {
        assert_eq!(arg_kind("datetime").unwrap().rust_type(), "Timestamp");
        assert!(arg_kind("money").unwrap_err().contains("unknown type"));
    }
}
