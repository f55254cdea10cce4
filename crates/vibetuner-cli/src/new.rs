//! Turns `templates/app` into a new project.
//!
//! `templates/app` is itself a complete project with the default answers (so `nix flake init`
//! can copy it verbatim). `templates/app.toml` lists the few places where an answer appears;
//! `vibetuner new` replaces exactly those and writes the answers to `vibetuner.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use vibetuner::project::{ANSWERS_FILE, AnswersFile, Project, TemplateInfo};

/// The project template, embedded from `templates/app` through `template/app`, a folder of
/// links to its entries that lives inside this crate, so that `cargo package` (and so
/// `cargo install vibetuner-cli`) carries the template. Two links have other names (see
/// [`RENAMED`]): cargo leaves any folder holding a `Cargo.toml` out of a package, and git does
/// not follow a `.gitignore` that is a link.
#[derive(rust_embed::RustEmbed)]
#[folder = "template/app/"]
#[exclude = "node_modules/*"]
#[exclude = "target/*"]
#[exclude = ".vibetuner/*"]
#[exclude = "assets/statics/css/bundle.css"]
#[exclude = "assets/statics/js/bundle.js"]
#[exclude = "bun.lock"]
pub(crate) struct AppTemplate;

/// Files linked under another name: (name in the crate, name in the project).
const RENAMED: [(&str, &str); 2] = [
    ("Cargo.toml.in", "Cargo.toml"),
    ("gitignore.in", ".gitignore"),
];

/// The substitution spec, `templates/app.toml`.
pub(crate) const SPEC: &str = include_str!("../template/app.toml");

/// The framework's canonical repository (the workspace's `repository`, written once there).
pub(crate) const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

/// The template's files by their path in a project, with their contents.
pub(crate) fn template_files() -> BTreeMap<String, Vec<u8>> {
    AppTemplate::iter()
        .map(|name| {
            let data = AppTemplate::get(&name)
                .expect("listed files exist")
                .data
                .into_owned();
            let name = RENAMED
                .iter()
                .find(|(linked, _)| *linked == name)
                .map_or_else(|| name.into_owned(), |(_, real)| (*real).to_owned());
            (name, data)
        })
        .collect()
}

/// One substitution.
#[derive(Debug, Deserialize)]
pub(crate) struct Replace {
    /// File inside the template.
    pub file: String,
    /// Text in the verbatim template (the default answer in place).
    pub find: String,
    /// minijinja template producing the replacement.
    pub replace: String,
}

/// Files left out of a project when a condition on the answers holds.
#[derive(Debug, Deserialize)]
pub(crate) struct Remove {
    /// minijinja expression over the answers, e.g. `not example`.
    pub when: String,
    /// Files inside the template.
    pub files: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Spec {
    replace: Vec<Replace>,
    #[serde(default)]
    remove: Vec<Remove>,
}

/// Where the generated app gets the framework from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Framework {
    /// A local checkout (`vibetuner = { path = "..." }`): builds offline.
    Path(PathBuf),
    /// A released version: the tag `v<version>` of the canonical repository, as a git
    /// dependency (what `nix flake init -t` gives too).
    Release(String),
}

impl Framework {
    /// The value of the `vibetuner` dependency in Cargo.toml: the default features when
    /// `optional` is `None`, else only those (`default-features = false`), plus `extra`.
    pub(crate) fn dependency(&self, optional: Option<&[String]>, extra: &[&str]) -> String {
        let source = match self {
            Self::Path(p) => format!("path = {}", toml_string(&p.to_string_lossy())),
            Self::Release(v) => format!(
                "git = {}, tag = {}",
                toml_string(REPOSITORY),
                toml_string(&format!("v{v}"))
            ),
        };
        let mut features: Vec<String> = optional.unwrap_or_default().to_vec();
        features.extend(extra.iter().map(|f| (*f).to_owned()));
        let defaults = if optional.is_some() {
            ", default-features = false"
        } else {
            ""
        };
        if features.is_empty() {
            return format!("{{ {source}{defaults} }}");
        }
        let features: Vec<String> = features.iter().map(|f| toml_string(f)).collect();
        format!(
            "{{ {source}{defaults}, features = [{}] }}",
            features.join(", ")
        )
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Paths of `templates/app` that are built or installed there, never part of the template.
pub(crate) const NOT_TEMPLATE: [&str; 6] = [
    "node_modules/",
    "target/",
    ".vibetuner/",
    "assets/statics/css/bundle.css",
    "assets/statics/js/bundle.js",
    "bun.lock",
];

/// The files of a template folder on disk (`templates/app` of a checkout), as
/// [`template_files`] gives the embedded one.
pub(crate) fn read_template_dir(root: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let path = entry?.path();
            let name = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            if NOT_TEMPLATE
                .iter()
                .any(|n| name == n.trim_end_matches('/') || name.starts_with(n))
            {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else {
                let data = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                files.insert(name, data);
            }
        }
    }
    Ok(files)
}

/// Renders every file of the project in memory: relative path → contents.
pub(crate) fn render(
    project: &Project,
    framework: &Framework,
) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    render_from(
        template_files(),
        SPEC,
        env!("CARGO_PKG_VERSION"),
        project,
        framework,
    )
}

/// Renders `files` (a template, version `version`) by the substitution spec `spec`.
pub(crate) fn render_from(
    mut files: BTreeMap<String, Vec<u8>>,
    spec: &str,
    version: &str,
    project: &Project,
    framework: &Framework,
) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.add_filter("toml", |s: String| toml_string(&s));
    let mut ctx = minijinja::value::Value::from_serialize(project);
    // Every feature: the framework's defaults; fewer: exactly those.
    let optional = (project.features.len() < vibetuner::project::FEATURES.len())
        .then_some(project.features.as_slice());
    ctx = minijinja::context! {
        framework_dependency => framework.dependency(optional, &[]),
        framework_dependency_testing => framework.dependency(optional, &["testing"]),
        ..ctx
    };
    let spec: Spec = toml::from_str(spec).context("templates/app.toml is invalid")?;
    for rule in spec.replace {
        let Some(bytes) = files.get_mut(&rule.file) else {
            bail!(
                "templates/app.toml names {}, which is not in the template",
                rule.file
            );
        };
        let text = String::from_utf8(std::mem::take(bytes))
            .with_context(|| format!("{} is not UTF-8", rule.file))?;
        if !text.contains(&rule.find) {
            bail!(
                "templates/app.toml: {:?} does not occur in {}",
                rule.find,
                rule.file
            );
        }
        let replacement = env
            .render_str(&rule.replace, &ctx)
            .with_context(|| format!("bad replacement for {}", rule.file))?;
        *bytes = text.replace(&rule.find, &replacement).into_bytes();
    }
    // Removals come last, so a rule may also edit a file that some answers leave out.
    for rule in &spec.remove {
        let expr = env
            .compile_expression(&rule.when)
            .with_context(|| format!("templates/app.toml: bad condition {:?}", rule.when))?;
        if expr.eval(&ctx)?.is_true() {
            for file in &rule.files {
                if files.remove(file).is_none() {
                    bail!("templates/app.toml removes {file}, which is not in the template");
                }
            }
        }
    }
    let answers = AnswersFile {
        template: TemplateInfo {
            name: "app".into(),
            version: version.into(),
        },
        project: project.clone(),
    };
    files.insert(ANSWERS_FILE.into(), answers.to_toml().into_bytes());
    Ok(files)
}

/// Refuses a target that exists and is not an empty folder.
pub(crate) fn check_target(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        bail!(
            "{} exists and is a file; choose a new folder name",
            dir.display()
        );
    }
    let empty = dir
        .read_dir()
        .with_context(|| format!("cannot read {}", dir.display()))?
        .next()
        .is_none();
    if !empty {
        bail!(
            "{} already exists and is not empty; choose a new folder (nothing was written)",
            dir.display()
        );
    }
    Ok(())
}

/// Writes the files under `dir`; on failure removes what it created.
pub(crate) fn write(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
    check_target(dir)?;
    let created = !dir.exists();
    let result = (|| -> anyhow::Result<()> {
        for (name, data) in files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, data)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        if created {
            let _ = std::fs::remove_dir_all(dir);
        } else if let Ok(entries) = dir.read_dir() {
            for entry in entries.flatten() {
                let _ = std::fs::remove_dir_all(entry.path())
                    .or_else(|_| std::fs::remove_file(entry.path()));
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verbatim template is the defaults' rendering: `nix flake init` and
    /// `vibetuner new --defaults --framework-version <this version>` (in a folder named `app`)
    /// agree file by file.
    #[test]
    fn verbatim_template_equals_default_rendering() {
        let framework = Framework::Release(env!("CARGO_PKG_VERSION").into());
        let files = render(&Project::default(), &framework).unwrap();
        let verbatim = template_files();
        for (name, data) in &files {
            let expected = verbatim
                .get(name)
                .unwrap_or_else(|| panic!("{name} is generated but missing from templates/app"));
            assert_eq!(
                String::from_utf8_lossy(expected),
                String::from_utf8_lossy(data),
                "{name} differs from its default rendering"
            );
        }
    }

    /// Every file of `templates/app` is embedded (a new top-level entry needs its link in
    /// `crates/vibetuner-cli/template/app`), under its own name.
    #[test]
    fn every_template_file_is_embedded() {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else {
                    let name = path.strip_prefix(root).unwrap().to_string_lossy();
                    out.push(name.replace('\\', "/"));
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/app");
        let mut on_disk = Vec::new();
        walk(&root, &root, &mut on_disk);
        let embedded = template_files();
        for name in on_disk {
            if NOT_TEMPLATE.iter().any(|i| name.starts_with(i)) {
                continue;
            }
            let top = name.split('/').next().unwrap();
            assert!(
                embedded.contains_key(&name),
                "templates/app/{name} is not embedded: link it with \
                 `ln -s ../../../../templates/app/{top} crates/vibetuner-cli/template/app/{top}`"
            );
        }
        for name in [
            ".env",
            ".gitignore",
            "Cargo.toml",
            "Cargo.lock",
            "src/main.rs",
        ] {
            assert!(
                embedded.contains_key(name),
                "{name} missing from the embedded template"
            );
        }
        for (linked, _) in RENAMED {
            assert!(!embedded.contains_key(linked), "{linked} is not renamed");
        }
    }

    /// A checkout's template folder reads as the embedded template (what `update --template`
    /// renders is what `new` would).
    #[test]
    fn template_dir_reads_as_the_embedded_template() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/app");
        let on_disk = read_template_dir(&root).unwrap();
        let embedded = template_files();
        assert_eq!(
            on_disk.keys().collect::<Vec<_>>(),
            embedded.keys().collect::<Vec<_>>()
        );
        assert!(on_disk == embedded, "a file's contents differ");
    }

    /// The template's git dependency names the canonical repository at this version's tag,
    /// and its flake the same repository.
    #[test]
    fn template_depends_on_the_canonical_repository() {
        let files = template_files();
        let cargo: toml::Table =
            toml::from_str(std::str::from_utf8(&files["Cargo.toml"]).unwrap()).unwrap();
        let dep = &cargo["dependencies"]["vibetuner"];
        assert_eq!(dep["git"].as_str(), Some(REPOSITORY));
        assert_eq!(
            dep["tag"].as_str(),
            Some(format!("v{}", env!("CARGO_PKG_VERSION")).as_str())
        );
        let flake_ref = REPOSITORY
            .strip_prefix("https://github.com/")
            .map(|r| format!("github:{r}"))
            .expect("a GitHub repository");
        let flake = std::str::from_utf8(&files["flake.nix"]).unwrap();
        assert!(
            flake.contains(&format!("vibetuner.url = \"{flake_ref}\";")),
            "templates/app/flake.nix does not take the framework from {flake_ref}"
        );
    }

    #[test]
    fn example_false_leaves_out_the_notes_resource() {
        let project = Project {
            example: false,
            ..Project::default()
        };
        let files = render(&project, &Framework::Release("0.1.0".into())).unwrap();
        assert!(!files.contains_key("src/notes.rs"));
        assert!(!files.contains_key("templates/frontend/notes.html.jinja"));
        for name in ["src/main.rs", "README.md"] {
            let text = String::from_utf8(files[name].clone()).unwrap();
            assert!(
                !text.contains("notes"),
                "{name} still mentions notes:\n{text}"
            );
        }
        let answers = String::from_utf8(files[ANSWERS_FILE].clone()).unwrap();
        assert!(answers.contains("example = false"));
    }

    #[test]
    fn answers_land_in_their_places() {
        let project = Project {
            project_name: "Shop \"Front\"".into(),
            project_slug: "shop-front".into(),
            project_description: "Sells things".into(),
            ..Project::default()
        };
        let files = render(
            &project,
            &Framework::Path("/src/vt/crates/vibetuner".into()),
        )
        .unwrap();
        let cargo = String::from_utf8(files["Cargo.toml"].clone()).unwrap();
        let parsed: toml::Table = toml::from_str(&cargo).unwrap();
        assert_eq!(parsed["package"]["name"].as_str(), Some("shop-front"));
        assert_eq!(
            parsed["package"]["description"].as_str(),
            Some("Sells things")
        );
        assert_eq!(
            parsed["dependencies"]["vibetuner"]["path"].as_str(),
            Some("/src/vt/crates/vibetuner")
        );
        let answers =
            AnswersFile::parse(std::str::from_utf8(&files[ANSWERS_FILE]).unwrap()).unwrap();
        assert_eq!(answers.project, project);
    }

    #[test]
    fn non_empty_targets_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let err = write(dir.path(), &BTreeMap::from([("a".into(), b"x".to_vec())])).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        assert!(!dir.path().join("a").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
            "mine"
        );
    }
}
