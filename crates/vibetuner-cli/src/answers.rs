//! The questions `vibetuner new` asks, their defaults and their validation.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex_lite::Regex;
use vibetuner::project::Project;

static SLUG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9-]*[a-z0-9]$").unwrap());
static LANGUAGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$").unwrap());
static FQDN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$").unwrap());

/// Names cargo refuses as package names, or that clash with Rust itself.
const RESERVED_SLUGS: &[&str] = &[
    "build",
    "core",
    "deps",
    "examples",
    "incremental",
    "self",
    "std",
    "test",
    "vibetuner",
];

/// One question: its key (for `--data`), prompt and help.
pub(crate) struct Question {
    /// Key used with `--data key=value` and in `vibetuner.toml`.
    pub key: &'static str,
    /// Prompt shown on a terminal.
    pub prompt: &'static str,
}

/// The questions, in the order they are asked.
pub(crate) const QUESTIONS: &[Question] = &[
    Question {
        key: "project_name",
        prompt: "Project name",
    },
    Question {
        key: "project_slug",
        prompt: "Project slug (crate, binary and database name)",
    },
    Question {
        key: "project_description",
        prompt: "Description",
    },
    Question {
        key: "company_name",
        prompt: "Company name",
    },
    Question {
        key: "author_name",
        prompt: "Author name",
    },
    Question {
        key: "author_email",
        prompt: "Author email",
    },
    Question {
        key: "default_language",
        prompt: "Default language",
    },
    Question {
        key: "supported_languages",
        prompt: "Other supported languages (comma-separated, may be empty)",
    },
    Question {
        key: "fqdn",
        prompt: "Public domain name (empty if none yet)",
    },
    Question {
        key: "example",
        prompt: "Include the example notes resource (true/false)",
    },
    Question {
        key: "features",
        prompt: "Framework features: all, none, or some of mongodb,redis,oauth (fewer build faster)",
    },
];

/// Parses repeated `--data key=value` into a map, refusing unknown keys.
pub(crate) fn parse_data(pairs: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut data = BTreeMap::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--data {pair:?} must look like key=value"))?;
        let key = key.trim();
        if !QUESTIONS.iter().any(|q| q.key == key) {
            return Err(format!(
                "--data: unknown key {key:?}; known keys: {}",
                known_keys()
            ));
        }
        data.insert(key.to_owned(), value.trim().to_owned());
    }
    Ok(data)
}

fn known_keys() -> String {
    QUESTIONS
        .iter()
        .map(|q| q.key)
        .collect::<Vec<_>>()
        .join(", ")
}

/// "my-cool_app" → "My Cool App".
pub(crate) fn humanize(folder: &str) -> String {
    folder
        .split(['-', '_', ' ', '.'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A folder name turned into a valid slug, or `app`.
pub(crate) fn slugify(folder: &str) -> String {
    let mut slug = String::new();
    for c in folder.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug
        .trim_matches('-')
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
    if validate("project_slug", slug).is_ok() {
        slug.to_owned()
    } else {
        "app".to_owned()
    }
}

/// The default answer for `key`, given the answers so far and the target folder name.
pub(crate) fn default_for(key: &str, folder: &str, so_far: &BTreeMap<String, String>) -> String {
    let defaults = Project::default();
    match key {
        "project_name" => {
            let name = humanize(folder);
            if name.is_empty() {
                defaults.project_name
            } else {
                name
            }
        }
        "project_slug" => slugify(so_far.get("project_name").map_or(folder, String::as_str)),
        "project_description" => defaults.project_description,
        "company_name" => defaults.company_name,
        "author_name" => defaults.author_name,
        "author_email" => defaults.author_email,
        "default_language" => defaults.default_language,
        "example" => defaults.example.to_string(),
        "features" => "all".into(),
        _ => String::new(),
    }
}

/// Checks one answer; the message says what a valid one looks like.
pub(crate) fn validate(key: &str, value: &str) -> Result<(), String> {
    let ok = match key {
        "project_name" | "company_name" | "author_name" => !value.trim().is_empty(),
        "project_slug" => {
            if RESERVED_SLUGS.contains(&value) {
                return Err(format!(
                    "project_slug {value:?} is reserved; choose another name"
                ));
            }
            SLUG.is_match(value)
        }
        "author_email" => {
            let mut parts = value.split('@');
            matches!((parts.next(), parts.next(), parts.next()), (Some(u), Some(d), None) if !u.is_empty() && d.contains('.') && !value.contains(char::is_whitespace))
        }
        "default_language" => LANGUAGE.is_match(value),
        "supported_languages" => split_list(value).iter().all(|l| LANGUAGE.is_match(l)),
        "fqdn" => value.is_empty() || FQDN.is_match(value),
        "example" => value == "true" || value == "false",
        "features" => {
            value == "all"
                || value == "none"
                || split_list(value)
                    .iter()
                    .all(|f| vibetuner::project::FEATURES.contains(&f.as_str()))
        }
        _ => true,
    };
    if ok {
        return Ok(());
    }
    let rule = match key {
        "project_slug" => {
            "lower-case letters, digits and dashes, starting with a letter and not ending with a dash (regex ^[a-z][a-z0-9-]*[a-z0-9]$), e.g. my-app"
        }
        "author_email" => "an email address such as dev@example.com",
        "default_language" => "a language code such as en, es or pt-BR",
        "supported_languages" => "comma-separated language codes such as es,ca,pt-BR",
        "fqdn" => "a lower-case domain name such as app.example.com, or empty",
        "example" => "true or false",
        "features" => "all, none, or a comma-separated list of mongodb, redis, oauth",
        _ => "a non-empty value",
    };
    Err(format!("invalid {key} {value:?}: expected {rule}"))
}

/// Splits a comma-separated list, dropping blanks.
pub(crate) fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The features an answer selects, in the framework's order (`all` or empty: every one).
fn features(value: &str) -> Vec<String> {
    let chosen = split_list(value);
    vibetuner::project::FEATURES
        .iter()
        .filter(|f| matches!(value.trim(), "all" | "") || chosen.iter().any(|c| c == *f))
        .map(|f| (*f).to_owned())
        .collect()
}

/// Turns complete, validated answers into the project record.
pub(crate) fn to_project(answers: &BTreeMap<String, String>) -> Project {
    let get = |k: &str| answers.get(k).cloned().unwrap_or_default();
    Project {
        project_name: get("project_name"),
        project_slug: get("project_slug"),
        project_description: get("project_description"),
        company_name: get("company_name"),
        author_name: get("author_name"),
        author_email: get("author_email"),
        default_language: get("default_language"),
        supported_languages: split_list(&get("supported_languages")),
        fqdn: get("fqdn"),
        example: get("example") != "false",
        features: features(&get("features")),
        copyright_start: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_rules() {
        for good in ["app", "my-app", "a1", "blog2-api"] {
            assert!(validate("project_slug", good).is_ok(), "{good}");
        }
        for bad in [
            "", "a", "App", "1app", "my_app", "my-app-", "-app", "my app", "ñu",
        ] {
            let err = validate("project_slug", bad).unwrap_err();
            assert!(err.contains("^[a-z][a-z0-9-]*[a-z0-9]$"), "{bad}: {err}");
        }
        assert!(
            validate("project_slug", "test")
                .unwrap_err()
                .contains("reserved")
        );
    }

    #[test]
    fn other_rules() {
        assert!(validate("author_email", "a@b.io").is_ok());
        assert!(validate("author_email", "nope").is_err());
        assert!(validate("author_email", "a@b@c.d").is_err());
        assert!(validate("default_language", "pt-BR").is_ok());
        assert!(validate("default_language", "english").is_err());
        assert!(validate("supported_languages", "es, ca").is_ok());
        assert!(validate("supported_languages", "es,xx-yy-zz").is_err());
        assert!(validate("fqdn", "").is_ok());
        assert!(validate("fqdn", "app.example.com").is_ok());
        assert!(validate("fqdn", "http://x.com").is_err());
        assert!(validate("project_name", "  ").is_err());
    }

    #[test]
    fn data_parsing() {
        let data = parse_data(&[
            "project_name=My Blog".into(),
            "fqdn = blog.example.com ".into(),
        ])
        .unwrap();
        assert_eq!(data["project_name"], "My Blog");
        assert_eq!(data["fqdn"], "blog.example.com");
        assert!(
            parse_data(&["project_name".into()])
                .unwrap_err()
                .contains("key=value")
        );
        let err = parse_data(&["colour=red".into()]).unwrap_err();
        assert!(
            err.contains("unknown key \"colour\"") && err.contains("project_slug"),
            "{err}"
        );
        assert_eq!(parse_data(&["fqdn=a=b".into()]).unwrap()["fqdn"], "a=b");
    }

    #[test]
    fn defaults_from_folder() {
        assert_eq!(humanize("my-cool_app"), "My Cool App");
        assert_eq!(slugify("My Cool App"), "my-cool-app");
        assert_eq!(slugify("42"), "app");
        assert_eq!(slugify("2fast"), "fast");
        let so_far = BTreeMap::from([("project_name".to_owned(), "Shop Front".to_owned())]);
        assert_eq!(default_for("project_slug", "x", &so_far), "shop-front");
        assert_eq!(default_for("project_name", "app", &BTreeMap::new()), "App");
    }
}
