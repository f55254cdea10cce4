//! A model's top-level fields and their JSON types, read from its JSON schema: the names the
//! CRUD routes accept and how to parse a query value for each.

use std::collections::BTreeMap;

use bson::Bson;
use serde_json::Value;

use crate::error::Error;
use crate::store::{Id, Timestamp};

pub(super) struct ModelSchema {
    fields: BTreeMap<String, FieldKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FieldKind {
    Bool,
    Integer,
    Number,
    Text,
    DateTime,
    Id,
    Other,
}

impl ModelSchema {
    pub(super) fn of<T: schemars::JsonSchema>() -> Self {
        let schema = schemars::schema_for!(T);
        let root = schema.as_value();
        let defs = root.get("$defs").cloned().unwrap_or(Value::Null);
        let mut fields = BTreeMap::new();
        if let Some(props) = root.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                fields.insert(name.clone(), kind_of(prop, &defs));
            }
        }
        fields.insert("db_insert_dt".into(), FieldKind::DateTime);
        fields.insert("db_update_dt".into(), FieldKind::DateTime);
        Self { fields }
    }

    pub(super) fn has(&self, field: &str) -> bool {
        field == "id"
            || self
                .fields
                .contains_key(field.split('.').next().unwrap_or(field))
    }

    pub(super) fn names(&self) -> Vec<String> {
        self.fields.keys().cloned().collect()
    }

    pub(super) fn reject_unknown(&self, value: &Value) -> Result<(), Error> {
        if let Value::Object(map) = value {
            for key in map.keys() {
                if !self.fields.contains_key(key) {
                    return Err(Error::unprocessable(format!(
                        "unknown field `{key}` (fields: {})",
                        self.names().join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// Turns a query-string value into the field's type.
    pub(super) fn coerce(&self, field: &str, raw: &str) -> Result<Bson, Error> {
        let kind = if field == "id" {
            FieldKind::Id
        } else {
            self.fields.get(field).copied().unwrap_or(FieldKind::Other)
        };
        let bad = |expected: &str| {
            Error::unprocessable(format!("filter `{field}` expects {expected}, got {raw:?}"))
        };
        Ok(match kind {
            FieldKind::Bool => match raw {
                "true" | "1" => Bson::Boolean(true),
                "false" | "0" => Bson::Boolean(false),
                _ => return Err(bad("true or false")),
            },
            FieldKind::Integer => Bson::Int64(raw.parse().map_err(|_| bad("a whole number"))?),
            FieldKind::Number => Bson::Double(raw.parse().map_err(|_| bad("a number"))?),
            FieldKind::DateTime => {
                let ts: Timestamp = serde_json::from_value(Value::String(raw.to_owned()))
                    .map_err(|_| bad("an RFC 3339 date-time"))?;
                Bson::from(ts)
            }
            FieldKind::Id => Bson::from(
                raw.parse::<Id>()
                    .map_err(|_| bad("an id (24 hex digits)"))?,
            ),
            FieldKind::Text | FieldKind::Other => Bson::String(raw.to_owned()),
        })
    }
}

fn kind_of(prop: &Value, defs: &Value) -> FieldKind {
    if let Some(reference) = prop.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return defs
            .get(name)
            .map_or(FieldKind::Other, |d| kind_of(d, defs));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = prop.get(key).and_then(Value::as_array) {
            let kinds: Vec<FieldKind> = options
                .iter()
                .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                .map(|o| kind_of(o, defs))
                .collect();
            return if kinds.len() == 1 {
                kinds[0]
            } else {
                FieldKind::Other
            };
        }
    }
    let ty = match prop.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    };
    match ty {
        Some("boolean") => FieldKind::Bool,
        Some("integer") => FieldKind::Integer,
        Some("number") => FieldKind::Number,
        Some("string") if prop.get("format").and_then(Value::as_str) == Some("date-time") => {
            FieldKind::DateTime
        }
        Some("string") if prop.get("pattern").and_then(Value::as_str) == Some("^[0-9a-f]{24}$") => {
            FieldKind::Id
        }
        Some("string") => FieldKind::Text,
        _ => FieldKind::Other,
    }
}

/// API field names to store field names (`id` is `_id`).
pub(super) fn store_field(field: &str) -> String {
    if field == "id" {
        "_id".into()
    } else {
        field.to_owned()
    }
}
