//! `vibetuner update`: brings a project to a newer template by a 3-way merge, file by file
//! (lines merged by `diffy`): base = the template the project was generated from, rendered
//! with the answers in `vibetuner.toml`; ours = the project; theirs = the new template
//! rendered with the same answers.
//!
//! The base is the template at the git tag `v<version>` (the version in `vibetuner.toml`) of
//! the framework checkout (`--template`, else the checkout this CLI was built from), or the
//! checkout given with `--base`. `vibetuner adopt` writes `vibetuner.toml` into a project
//! that has none.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use vibetuner::project::{ANSWERS_FILE, AnswersFile, TemplateInfo};

use crate::new::{Framework, SPEC, read_template_dir, render_from, template_files};

/// Options of `vibetuner update`.
#[derive(clap::Args)]
pub(crate) struct UpdateArgs {
    /// Take the new template from this framework checkout (the folder holding
    /// `templates/app`), instead of the one built into this CLI.
    #[arg(long, value_name = "PATH")]
    template: Option<PathBuf>,
    /// The checkout of the template version the project was generated from (default: the
    /// tag v<version in vibetuner.toml> of the --template checkout, or of this CLI's).
    #[arg(long, value_name = "PATH")]
    base: Option<PathBuf>,
    /// Run even when the project's git tree has uncommitted changes (or is not in git).
    #[arg(long)]
    allow_dirty: bool,
}

/// A template: its files and substitution spec, and its version.
struct Template {
    files: BTreeMap<String, Vec<u8>>,
    spec: String,
    version: String,
}

impl Template {
    /// The template of a framework checkout at `root`.
    fn from_checkout(root: &Path) -> anyhow::Result<Self> {
        let app = root.join("templates/app");
        let spec_path = root.join("templates/app.toml");
        if !app.is_dir() || !spec_path.is_file() {
            bail!(
                "{} is not a vibetuner checkout: it has no templates/app and templates/app.toml",
                root.display()
            );
        }
        let spec = std::fs::read_to_string(&spec_path)
            .with_context(|| format!("cannot read {}", spec_path.display()))?;
        Ok(Self {
            files: read_template_dir(&app)?,
            spec,
            version: checkout_version(root)?,
        })
    }

    fn render(&self, answers: &AnswersFile, framework: &Framework) -> anyhow::Result<Files> {
        let mut files = render_from(
            self.files.clone(),
            &self.spec,
            &self.version,
            &answers.project,
            framework,
        )?;
        // The answers file is the project's own (its template version is set after the merge).
        files.remove(ANSWERS_FILE);
        Ok(files)
    }
}

type Files = BTreeMap<String, Vec<u8>>;

/// The version in the checkout's workspace `Cargo.toml`.
fn checkout_version(root: &Path) -> anyhow::Result<String> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is invalid", path.display()))?;
    table
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("{} has no [workspace.package] version", path.display()))
}

/// The framework checkout this CLI was built from, if it is still there.
fn own_checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("templates/app.toml")
        .is_file()
        .then(|| root.canonicalize().unwrap_or(root))
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run git: is it installed?")
}

/// The template at tag `v<version>` of the git checkout `root`, extracted into `into`.
fn template_at_tag(root: &Path, version: &str, into: &Path) -> anyhow::Result<Template> {
    let tag = format!("v{version}");
    let found = git(
        root,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{tag}^{{commit}}"),
        ],
    )?;
    if !found.status.success() {
        bail!(
            "{} has no tag {tag}, the template version this project was generated from: pass \
             --base PATH to a checkout of that version",
            root.display()
        );
    }
    let archive = Command::new("git")
        .args(["archive", "--format=tar", &tag, "Cargo.toml", "templates"])
        .current_dir(root)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run git archive")?;
    let status = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(into)
        .stdin(archive.stdout.context("piped")?)
        .status()
        .context("cannot run tar to unpack the old template")?;
    if !status.success() {
        bail!("cannot unpack {tag} of {}", root.display());
    }
    Template::from_checkout(into)
}

/// The framework dependency the project has now (so the merge leaves that line alone).
fn project_framework(root: &Path) -> Framework {
    let release = || Framework::Release(env!("CARGO_PKG_VERSION").into());
    let Ok(text) = std::fs::read_to_string(root.join("Cargo.toml")) else {
        return release();
    };
    let Ok(table) = toml::from_str::<toml::Table>(&text) else {
        return release();
    };
    let dep = &table.get("dependencies").and_then(|d| d.get("vibetuner"));
    if let Some(path) = dep
        .and_then(|d| d.get("path"))
        .and_then(toml::Value::as_str)
    {
        return Framework::Path(path.into());
    }
    dep.and_then(|d| d.get("tag"))
        .and_then(toml::Value::as_str)
        .map_or_else(release, |tag| {
            Framework::Release(tag.trim_start_matches('v').to_owned())
        })
}

/// Refuses a project with uncommitted changes (the merge must be easy to look at and undo).
fn check_clean(root: &Path) -> anyhow::Result<()> {
    let out = git(root, &["status", "--porcelain"])?;
    if !out.status.success() {
        bail!(
            "{} is not in a git repository: commit it first so the update can be reviewed and \
             undone (or pass --allow-dirty)",
            root.display()
        );
    }
    if !out.stdout.is_empty() {
        bail!(
            "the project has uncommitted changes:\n{}commit or stash them first so the update can be reviewed and undone (or pass --allow-dirty)",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(())
}

/// What happened to one file.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Updated,
    Added,
    Removed,
    /// Both sides changed it and their changes overlap: conflict markers written.
    Conflict,
    /// Both sides changed a file that cannot be merged by lines: ours kept, theirs next to it.
    Kept(String),
}

/// Merges one file; `ours` is the project's copy. Returns the new contents (`None` to
/// delete) and what happened, or `None` when nothing changes.
fn merge_file(
    name: &str,
    base: Option<&[u8]>,
    ours: Option<&[u8]>,
    theirs: Option<&[u8]>,
) -> Option<(Option<Vec<u8>>, Outcome)> {
    if theirs == base || theirs == ours {
        return None;
    }
    match (base, ours, theirs) {
        // Unchanged here: take the template's (new, changed or removed) file.
        (_, o, t) if o == base => Some((
            t.map(<[u8]>::to_vec),
            match (o, t) {
                (None, _) => Outcome::Added,
                (_, None) => Outcome::Removed,
                _ => Outcome::Updated,
            },
        )),
        // Removed from the template but changed here, or removed here but changed there: keep
        // the project's choice, put the template's copy next to it.
        (_, Some(_), None) => None,
        (_, None, Some(_)) => Some((None, Outcome::Kept(side_file(name)))),
        (base, Some(o), Some(t)) => {
            let lockfile = name.ends_with("Cargo.lock") || name.ends_with("package-lock.json");
            let texts = (
                std::str::from_utf8(base.unwrap_or_default()),
                std::str::from_utf8(o),
                std::str::from_utf8(t),
            );
            match texts {
                (Ok(b), Ok(o), Ok(t)) if !lockfile => match diffy::merge(b, o, t) {
                    Ok(merged) => Some((Some(merged.into_bytes()), Outcome::Updated)),
                    Err(conflicted) => Some((Some(conflicted.into_bytes()), Outcome::Conflict)),
                },
                _ => Some((Some(o.to_vec()), Outcome::Kept(side_file(name)))),
            }
        }
        (_, None, None) => None,
    }
}

/// Where the template's copy of a file goes when the project's is kept.
const THEIRS_SUFFIX: &str = ".template-new";

fn side_file(name: &str) -> String {
    format!("{name}{THEIRS_SUFFIX}")
}

/// Runs `vibetuner update`; exit status 1 (after writing everything) on conflicts.
pub(crate) fn run(args: UpdateArgs) -> anyhow::Result<bool> {
    let root = crate::project::root()?;
    if !args.allow_dirty {
        check_clean(&root)?;
    }
    let answers = crate::dev::read_answers(&root)?;
    let recorded = answers.template.version.clone();
    let framework = project_framework(&root);
    let theirs = match &args.template {
        Some(path) => Template::from_checkout(path)?,
        None => Template {
            files: template_files(),
            spec: SPEC.to_owned(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
    };
    let scratch = tempfile::tempdir().context("cannot create a temporary folder")?;
    let base =
        match &args.base {
            Some(path) => Template::from_checkout(path)?,
            None => {
                let checkout = args.template.clone().or_else(own_checkout).with_context(|| {
                format!(
                    "cannot find the template {recorded} this project was generated from: pass \
                     --base PATH to a checkout of vibetuner v{recorded}"
                )
            })?;
                template_at_tag(&checkout, &recorded, scratch.path())?
            }
        };
    let base_files = base.render(&answers, &framework)?;
    let their_files = theirs.render(&answers, &framework)?;
    let names: BTreeSet<&String> = base_files.keys().chain(their_files.keys()).collect();
    let mut conflicts = Vec::new();
    let mut changed = 0;
    for name in names {
        let path = root.join(name);
        let ours = std::fs::read(&path).ok();
        let Some((contents, outcome)) = merge_file(
            name,
            base_files.get(name).map(Vec::as_slice),
            ours.as_deref(),
            their_files.get(name).map(Vec::as_slice),
        ) else {
            continue;
        };
        changed += 1;
        match &contents {
            Some(data) => write_file(&path, data)?,
            None if ours.is_some() => std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?,
            None => {}
        }
        match outcome {
            Outcome::Updated => println!("updated   {name}"),
            Outcome::Added => println!("added     {name}"),
            Outcome::Removed => println!("removed   {name}"),
            Outcome::Conflict => {
                println!("CONFLICT  {name}");
                conflicts.push(name.clone());
            }
            Outcome::Kept(side) => {
                write_file(&root.join(&side), &their_files[name])?;
                println!("CONFLICT  {name} (the template's version is in {side})");
                conflicts.push(name.clone());
            }
        }
    }
    let updated = AnswersFile {
        template: TemplateInfo {
            name: answers.template.name.clone(),
            version: theirs.version.clone(),
        },
        project: answers.project.clone(),
    };
    if updated.template != answers.template {
        write_file(&root.join(ANSWERS_FILE), updated.to_toml().as_bytes())?;
    }
    if conflicts.is_empty() {
        println!(
            "ok: template {recorded} → {} ({changed} files changed); review with `git diff`",
            theirs.version
        );
        Ok(true)
    } else {
        eprintln!(
            "{} conflict(s): resolve the <<<<<<< ======= >>>>>>> markers (ours above, the \
             template's below) or merge the {THEIRS_SUFFIX} copies, then commit:\n  {}",
            conflicts.len(),
            conflicts.join("\n  ")
        );
        Ok(false)
    }
}

fn write_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(base: &str, ours: &str, theirs: &str) -> (String, Outcome) {
        let (data, outcome) = merge_file(
            "a.txt",
            Some(base.as_bytes()),
            Some(ours.as_bytes()),
            Some(theirs.as_bytes()),
        )
        .expect("a change");
        (String::from_utf8(data.unwrap()).unwrap(), outcome)
    }

    #[test]
    fn separate_changes_merge_and_overlapping_ones_conflict() {
        let base = "one\ntwo\nthree\nfour\nfive\n";
        let (text, outcome) = merged(
            base,
            "one\nTWO\nthree\nfour\nfive\n",
            "one\ntwo\nthree\nfour\nFIVE\n",
        );
        assert_eq!(
            (text.as_str(), outcome),
            ("one\nTWO\nthree\nfour\nFIVE\n", Outcome::Updated)
        );
        let (text, outcome) = merged(
            base,
            "one\nmine\nthree\nfour\nfive\n",
            "one\nyours\nthree\nfour\nfive\n",
        );
        assert_eq!(outcome, Outcome::Conflict);
        assert!(
            text.contains("<<<<<<< ours\nmine\n")
                && text.contains("=======\nyours\n>>>>>>> theirs"),
            "{text}"
        );
    }

    #[test]
    fn one_sided_changes_and_removals() {
        assert_eq!(merge_file("a", Some(b"x"), Some(b"x"), Some(b"x")), None);
        assert_eq!(merge_file("a", Some(b"x"), Some(b"mine"), Some(b"x")), None);
        assert_eq!(
            merge_file("a", Some(b"x"), Some(b"x"), Some(b"y")),
            Some((Some(b"y".to_vec()), Outcome::Updated))
        );
        assert_eq!(
            merge_file("a", None, None, Some(b"new")),
            Some((Some(b"new".to_vec()), Outcome::Added))
        );
        assert_eq!(
            merge_file("a", Some(b"x"), Some(b"x"), None),
            Some((None, Outcome::Removed))
        );
        // Changed here, removed from the template: kept.
        assert_eq!(merge_file("a", Some(b"x"), Some(b"mine"), None), None);
        // Lock files are never merged by lines.
        assert_eq!(
            merge_file("Cargo.lock", Some(b"x"), Some(b"mine"), Some(b"y")),
            Some((
                Some(b"mine".to_vec()),
                Outcome::Kept("Cargo.lock.template-new".into())
            ))
        );
    }
}
