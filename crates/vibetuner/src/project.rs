//! The project's identity (answers recorded by `vibetuner new` in `vibetuner.toml`) and its root folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The framework's optional cargo features, all on by default.
pub const FEATURES: [&str; 3] = ["mongodb", "redis", "oauth"];

/// Name of the answers file that marks a project root.
pub const ANSWERS_FILE: &str = "vibetuner.toml";

/// The answers file does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{ANSWERS_FILE} is invalid: {0}")]
pub struct AnswersError(#[from] toml::de::Error);

/// Answers given to `vibetuner new`, compiled into the app binary by [`project!`](crate::project).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Project {
    /// Display name.
    pub project_name: String,
    /// Machine name: crate and binary name, database name, key prefix.
    pub project_slug: String,
    /// One-line description (meta tags, manifest).
    pub project_description: String,
    /// Copyright holder.
    pub company_name: String,
    /// Author's name.
    pub author_name: String,
    /// Author's email.
    pub author_email: String,
    /// Default UI language.
    pub default_language: String,
    /// Other supported UI languages.
    pub supported_languages: Vec<String>,
    /// Public host name, used in the sitemap and absolute URLs; empty when unknown.
    pub fqdn: String,
    /// Whether the generated app includes the example "notes" resource.
    pub example: bool,
    /// The framework's optional features the app compiles (`mongodb`, `redis`, `oauth`).
    pub features: Vec<String>,
    /// First year of the copyright notice.
    pub copyright_start: Option<i32>,
}

impl Default for Project {
    fn default() -> Self {
        Self {
            project_name: "App".into(),
            project_slug: "app".into(),
            project_description: "A web app built with vibetuner".into(),
            company_name: "Acme Corp".into(),
            author_name: "Developer".into(),
            author_email: "dev@example.com".into(),
            default_language: "en".into(),
            supported_languages: Vec::new(),
            fqdn: String::new(),
            example: true,
            features: FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            copyright_start: None,
        }
    }
}

/// The answers file: template metadata plus the project's answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AnswersFile {
    /// What generated the project.
    #[serde(default)]
    pub template: TemplateInfo,
    /// The answers.
    pub project: Project,
}

/// Which template version generated a project (for `vibetuner update`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TemplateInfo {
    /// Template name (`app`).
    pub name: String,
    /// Framework version the project was generated with.
    pub version: String,
}

impl AnswersFile {
    /// Parses an answers file; the message names the problem.
    pub fn parse(text: &str) -> Result<Self, AnswersError> {
        Ok(toml::from_str(text)?)
    }

    /// Serializes the answers in the canonical layout.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("answers always serialize");
        format!(
            "# Answers to `vibetuner new`: compiled into the app and read by `vibetuner update`.\n\n{body}"
        )
    }
}

impl Project {
    /// Parses the project section of an answers file (see [`project!`](crate::project)).
    pub fn from_answers(text: &str) -> Result<Self, AnswersError> {
        AnswersFile::parse(text).map(|a| a.project)
    }

    /// `© 2024-2026 Acme Corp`, or a single year.
    pub fn copyright(&self, this_year: i32) -> String {
        match self.copyright_start {
            Some(start) if start < this_year => {
                format!("© {start}-{this_year} {}", self.company_name)
            }
            _ => format!("© {this_year} {}", self.company_name),
        }
    }

    /// The default language followed by the other supported ones, without repeats.
    pub fn languages(&self) -> Vec<String> {
        let mut all = vec![self.default_language.clone()];
        for lang in &self.supported_languages {
            if !all.contains(lang) {
                all.push(lang.clone());
            }
        }
        all
    }
}

/// Finds the project root: `VIBETUNER_ROOT`, else the nearest ancestor of `start` holding
/// `vibetuner.toml`, else `fallback` (the app's source folder) when it exists, else `start`.
pub fn find_root(explicit: Option<&str>, start: &Path, fallback: Option<&Path>) -> PathBuf {
    if let Some(root) = explicit.filter(|r| !r.is_empty()) {
        return PathBuf::from(root);
    }
    if let Some(found) = start
        .ancestors()
        .find(|dir| dir.join(ANSWERS_FILE).is_file())
    {
        return found.to_owned();
    }
    match fallback {
        Some(dir) if dir.join(ANSWERS_FILE).is_file() => dir.to_owned(),
        _ => start.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip() {
        let answers = AnswersFile {
            template: TemplateInfo {
                name: "app".into(),
                version: "0.1.0".into(),
            },
            project: Project {
                supported_languages: vec!["es".into()],
                ..Project::default()
            },
        };
        let parsed = AnswersFile::parse(&answers.to_toml()).unwrap();
        assert_eq!(parsed.project, answers.project);
        assert_eq!(parsed.template, answers.template);
    }

    #[test]
    fn missing_fields_take_defaults_and_errors_are_named() {
        let p = Project::from_answers("[project]\nproject_name = \"X\"\n").unwrap();
        assert_eq!(
            (p.project_name.as_str(), p.project_slug.as_str()),
            ("X", "app")
        );
        let err = Project::from_answers("[project]\nproject_name = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("vibetuner.toml is invalid"), "{err}");
    }

    #[test]
    fn copyright_and_languages() {
        let mut p = Project {
            copyright_start: Some(2024),
            ..Project::default()
        };
        assert_eq!(p.copyright(2026), "© 2024-2026 Acme Corp");
        p.copyright_start = None;
        assert_eq!(p.copyright(2026), "© 2026 Acme Corp");
        p.supported_languages = vec!["es".into(), "en".into(), "ca".into()];
        assert_eq!(p.languages(), ["en", "es", "ca"]);
    }

    #[test]
    fn root_detection() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        assert_eq!(find_root(Some("/x"), &nested, None), PathBuf::from("/x"));
        assert_eq!(find_root(None, &nested, None), nested);
        std::fs::write(dir.path().join(ANSWERS_FILE), "").unwrap();
        assert_eq!(find_root(None, &nested, None), dir.path());
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(
            find_root(None, elsewhere.path(), Some(dir.path())),
            dir.path()
        );
    }
}
