//! The fields of generated models (`NAME:TYPE`), their types, and the Rust, JSON, form and
//! template code each field becomes.

use std::fmt::Write as _;

use anyhow::{Context, bail, ensure};

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

/// Field types of generated models (and argument types of generated tasks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    pub(super) fn max_chars(&self) -> Option<usize> {
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

    pub(super) fn struct_field(&self, out: &mut String) {
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
    pub(super) fn validation(&self, out: &mut String) {
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
    pub(super) fn form_field(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "    /// {}.\n    #[serde(default)]\n    pub {}: String,",
            label(&self.name),
            self.name
        );
    }

    /// The expression turning the form's text into the model's value.
    pub(super) fn parse_expr(&self) -> String {
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
    pub(super) fn text_expr(&self) -> String {
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
    pub(super) fn control(&self) -> String {
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
    pub(super) fn display(&self) -> String {
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
    pub(super) fn sample_json(&self, changed: bool) -> String {
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
    pub(super) fn sample_form(&self, changed: bool) -> String {
        match self.kind {
            Kind::Bool if changed => String::new(),
            Kind::Bool => "on".into(),
            Kind::Datetime if changed => "2031-05-06T07:08".into(),
            Kind::Datetime => "2030-01-02T03:04".into(),
            _ => self.sample_json(changed).trim_matches('"').to_owned(),
        }
    }
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
