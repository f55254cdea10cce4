//! The generators' templates: `generators/` in this crate, one `.jinja` file per generated
//! file, by generator (plus parts, named with a leading `_`: `resource/_fields.jinja`, the code
//! each field becomes, and `resource/_pages.rs.jinja`, the pages' code in the resource's module),
//! embedded in the binary and rendered with minijinja.
//! The generators keep the logic (names, fields, which files, registration) and hand the
//! templates a serializable context.
//!
//! Syntax: `[% %]` for statements, `[[ ]]` for expressions, `[# #]` for comments, in every
//! generator template. Many outputs are Jinja templates themselves (pages, emails), whose
//! `{% %}` and `{{ }}` must come out as written; other delimiters let those stay verbatim and
//! readable, where `{% raw %}` blocks would chop each line that mixes both. The generator's
//! parts stand out in the Rust templates too. Square brackets are rare where they would clash:
//! Rust's `#[...]` and HTML's `[auto_1fr]` hold no `[[`, `[%` or `[#`; the one place a slice
//! opens right before a statement (`&[ [%- for ...`) keeps a space, which `-` removes.
//!
//! `trim_blocks` and `lstrip_blocks` let statements sit on lines of their own; a variable the
//! context lacks is an error (`UndefinedBehavior::Strict`), and nothing is escaped (the output is
//! code). The tests render every template with sample contexts, so a broken one fails
//! `cargo test`.

use std::sync::LazyLock;

use anyhow::Context as _;
use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

/// `generators/`, embedded.
#[derive(rust_embed::RustEmbed)]
#[folder = "generators/"]
struct Sources;

/// The generators' environment, templates loaded from [`Sources`] by their path there.
static GENERATORS: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_syntax(
        SyntaxConfig::builder()
            .block_delimiters("[%", "%]")
            .variable_delimiters("[[", "]]")
            .comment_delimiters("[#", "#]")
            .build()
            .expect("the delimiters are distinct"),
    );
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_loader(|name| {
        Ok(Sources::get(name).map(|file| String::from_utf8_lossy(&file.data).into_owned()))
    });
    env
});

/// The template `name` (a path in `generators/`) rendered with `context`.
pub(super) fn render(name: &str, context: impl serde::Serialize) -> anyhow::Result<String> {
    #[cfg(test)]
    RENDERED.with_borrow_mut(|rendered| rendered.insert(name.to_owned()));
    GENERATORS
        .get_template(name)
        .and_then(|t| t.render(context))
        .with_context(|| format!("generator template {name}"))
}

#[cfg(test)]
thread_local! {
    /// The templates [`render`] was asked for on this thread.
    static RENDERED: std::cell::RefCell<std::collections::BTreeSet<String>> =
        std::cell::RefCell::default();
}

/// The generator templates [`render`] has not rendered on this thread, parts aside.
#[cfg(test)]
pub(super) fn not_rendered() -> Vec<String> {
    Sources::iter()
        .filter(|name| !name.rsplit('/').next().unwrap_or_default().starts_with('_'))
        .filter(|name| !RENDERED.with_borrow(|rendered| rendered.contains(name.as_ref())))
        .map(|name| name.into_owned())
        .collect()
}
