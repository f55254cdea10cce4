//! Named routes and URL building: `url_for("notes_read", id=note.id)` in templates, [`Urls`] in
//! handlers.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a URL cannot be built, or the route table is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Two routes were registered with one name.
    #[error("route name `{name}` is used twice ({first} and {second}); names must be unique")]
    DuplicateName {
        /// The name.
        name: String,
        /// The first route's pattern.
        first: String,
        /// The second route's pattern.
        second: String,
    },
    /// No route has this name.
    #[error("no route named `{name}` (known: {known})")]
    UnknownRoute {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// The pattern has an unclosed `{`.
    #[error("route `{name}` has a malformed pattern {pattern}")]
    MalformedPattern {
        /// The route.
        name: String,
        /// Its pattern.
        pattern: String,
    },
    /// A `{param}` of the pattern was not given.
    #[error("route `{name}` ({pattern}) needs `{param}`")]
    MissingParam {
        /// The route.
        name: String,
        /// Its pattern.
        pattern: String,
        /// The missing parameter.
        param: String,
    },
}

/// Route names with their path patterns (`/api/notes/{id}`); an axum extractor.
#[derive(Clone, Debug, Default)]
pub struct Urls {
    routes: Arc<BTreeMap<String, String>>,
}

impl Urls {
    /// Builds the table; two routes with one name are an error.
    pub fn new(names: impl IntoIterator<Item = (String, String)>) -> Result<Self, UrlError> {
        let mut routes = BTreeMap::new();
        for (name, path) in names {
            if let Some(first) = routes.insert(name.clone(), path.clone()) {
                return Err(UrlError::DuplicateName {
                    name,
                    first,
                    second: path,
                });
            }
        }
        Ok(Self {
            routes: Arc::new(routes),
        })
    }

    /// Every name with its pattern.
    pub fn all(&self) -> &BTreeMap<String, String> {
        &self.routes
    }

    /// The path of route `name` with each `{param}` replaced (values percent-encoded).
    pub fn path(&self, name: &str, params: &[(&str, &str)]) -> Result<String, UrlError> {
        let pattern = self
            .routes
            .get(name)
            .ok_or_else(|| UrlError::UnknownRoute {
                name: name.to_owned(),
                known: self.routes.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
        let mut out = String::with_capacity(pattern.len() + 16);
        let mut rest = pattern.as_str();
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').map(|e| start + e).ok_or_else(|| {
                UrlError::MalformedPattern {
                    name: name.to_owned(),
                    pattern: pattern.clone(),
                }
            })?;
            let param = rest[start + 1..end].trim_start_matches('*');
            let value = params
                .iter()
                .find(|(k, _)| *k == param)
                .map(|(_, v)| *v)
                .ok_or_else(|| UrlError::MissingParam {
                    name: name.to_owned(),
                    pattern: pattern.clone(),
                    param: param.to_owned(),
                })?;
            out.push_str(&encode_segment(value));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    pub(crate) fn template_path(
        &self,
        name: &str,
        kwargs: &minijinja::value::Kwargs,
    ) -> Result<String, minijinja::Error> {
        let values: Vec<(String, String)> = kwargs
            .args()
            .map(|k| {
                let v: minijinja::Value = kwargs.get(k)?;
                Ok((k.to_owned(), v.to_string()))
            })
            .collect::<Result<_, minijinja::Error>>()?;
        let params: Vec<(&str, &str)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.path(name, &params).map_err(|e| {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
        })
    }
}

fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_paths_and_reports_mistakes() {
        let urls = Urls::new([
            ("notes_list".to_owned(), "/api/notes".to_owned()),
            ("notes_read".to_owned(), "/api/notes/{id}".to_owned()),
        ])
        .unwrap();
        assert_eq!(urls.path("notes_list", &[]).unwrap(), "/api/notes");
        assert_eq!(
            urls.path("notes_read", &[("id", "a b/c")]).unwrap(),
            "/api/notes/a%20b%2Fc"
        );
        assert!(
            urls.path("notes_read", &[])
                .unwrap_err()
                .to_string()
                .contains("needs `id`")
        );
        assert!(matches!(
            urls.path("nope", &[]).unwrap_err(),
            UrlError::UnknownRoute { known, .. } if known == "notes_list, notes_read"
        ));
        assert!(Urls::new([("a".into(), "/x".into()), ("a".into(), "/y".into())]).is_err());
    }
}
