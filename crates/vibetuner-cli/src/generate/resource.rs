//! `vibetuner generate scaffold|model`: a resource's model with validation, its CRUD JSON API
//! and htmx pages (scaffold), and its tests, registered in the app's `src/lib.rs`.

use std::path::{Path, PathBuf};

use anyhow::ensure;
use serde::Serialize;

use super::field::{Field, FieldView, parse_field};
use super::names::{camel, label, plural};
use super::output::{Force, Generated, crate_name};
use super::templates::render;

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
    let generated = generate(spec, scaffold, api, html, &crate_name(root)?)?;
    generated.write(root, &spec.force)?;
    println!(
        "\nNext: cargo test{}",
        if html {
            format!(
                " · then open /{} (npm run build picks up the new classes)",
                generated.module
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// What [`write`] writes, for the app crate `krate`.
pub(super) fn generate(
    spec: &ResourceArgs,
    scaffold: bool,
    api: bool,
    html: bool,
    krate: &str,
) -> anyhow::Result<Generated> {
    let resource = Resource::new(spec, api, html, krate)?;
    let plural = &resource.plural;
    let context = resource.context(scaffold);
    let mut files = vec![(format!("src/{plural}.rs"), "module.rs.jinja")];
    if html {
        files.push((
            format!("templates/frontend/{plural}.html.jinja"),
            "page.html.jinja",
        ));
    }
    if scaffold {
        files.push((format!("tests/{plural}.rs"), "test.rs.jinja"));
    }
    let files = files
        .into_iter()
        .map(|(path, name)| {
            let text = render(&format!("resource/{name}"), &context)?;
            Ok((PathBuf::from(path), text))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Generated {
        files,
        module: plural.clone(),
        apply: true,
    })
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
    fn new(args: &ResourceArgs, api: bool, html: bool, krate: &str) -> anyhow::Result<Self> {
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
            krate: krate.to_owned(),
        })
    }

    /// What the resource templates see.
    fn context(&self, scaffold: bool) -> ResourceContext {
        ResourceContext {
            name: self.name.clone(),
            plural: self.plural.clone(),
            model: self.model.clone(),
            labels: label(&self.plural),
            words: self.name.replace('_', " "),
            words_plural: self.plural.replace('_', " "),
            fields: self.fields.iter().map(Field::view).collect(),
            scaffold,
            api: self.api,
            html: self.html,
            krate: self.krate.clone(),
        }
    }
}

/// What the resource templates see.
#[derive(Serialize)]
struct ResourceContext {
    /// snake_case singular, e.g. `blog_post`.
    name: String,
    /// Its plural: the module, collection and path, e.g. `blog_posts`.
    plural: String,
    /// The model type, e.g. `BlogPost`.
    model: String,
    /// The plural for people, e.g. `Blog posts`.
    labels: String,
    /// The singular and the plural in a sentence, e.g. `blog post`, `blog posts`.
    words: String,
    words_plural: String,
    fields: Vec<FieldView>,
    /// Scaffold (with an owner, tests and pages or an API) or a model alone.
    scaffold: bool,
    api: bool,
    html: bool,
    /// The app crate's name in Rust, for the tests.
    krate: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of `text` from `first` to just before the next `end`.
    fn lines_between<'a>(text: &'a str, first: &str, end: &str) -> &'a str {
        let start = text
            .find(first)
            .unwrap_or_else(|| panic!("{first:?} in {text}"));
        let len = text[start..]
            .find(end)
            .unwrap_or_else(|| panic!("{end:?} in {text}"));
        &text[start..start + len]
    }

    /// The template app's example resource, `src/notes.rs`, is more than a scaffold (live
    /// updates, a background task, a read-only field, search, no edit page, a body that is
    /// empty rather than absent), so it is not the generator's output. Its model is, though,
    /// with the notes' additions after it: the struct up to `title`, and `impl Model` up to the
    /// title's checks are what `generate scaffold note title:string --api` writes.
    #[test]
    fn the_template_apps_notes_model_is_the_generators() {
        let note = Resource {
            name: "note".into(),
            plural: "notes".into(),
            model: "Note".into(),
            fields: vec![parse_field("title:string").unwrap()],
            api: true,
            html: false,
            krate: "app".into(),
        };
        let generated = render("resource/module.rs.jinja", note.context(true)).unwrap();
        let files = crate::new::template_files();
        let notes = String::from_utf8_lossy(&files["src/notes.rs"]);
        for (first, end) in [
            ("/// A note, stored", "}\n"),
            ("impl Model for Note {", "        Ok(())"),
        ] {
            let shared = lines_between(&generated, first, end);
            assert!(
                notes.contains(shared),
                "templates/app/src/notes.rs differs from the generator's\n{shared}"
            );
        }
    }
}
