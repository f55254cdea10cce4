//! Names of generated items: the snake_case check a NAME passes, and the names derived
//! from it (types, labels, plurals).

const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "box", "break", "const", "continue", "crate", "dyn", "else", "enum",
    "extern", "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod",
    "move", "mut", "priv", "pub", "ref", "return", "self", "static", "struct", "super", "trait",
    "true", "try", "type", "unsafe", "use", "where", "while", "yield",
];

/// True for `snake_case` names that are not Rust keywords.
pub(super) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__")
        && !RUST_KEYWORDS.contains(&name)
}

/// Module names a generator must not write: the crate's own files.
const RESERVED_MODULES: &[&str] = &["lib", "main", "build", "tests"];

/// A clap value parser for a generated item's NAME: snake_case, not a Rust keyword, not a
/// file of the crate itself (a bad name is a usage error: exit status 2).
pub(super) fn snake_name(name: &str) -> Result<String, String> {
    if !valid_name(name) {
        return Err(format!(
            "{name:?} is not a snake_case name (a-z, 0-9, _; starting with a letter; not a Rust keyword), e.g. post or blog_post"
        ));
    }
    if RESERVED_MODULES.contains(&name) {
        return Err(format!(
            "{name:?} is the name of one of the crate's own files; choose another name"
        ));
    }
    Ok(name.to_owned())
}

/// `blog_post` → `BlogPost`.
pub(super) fn camel(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// `published_at` → `Published at`.
pub(super) fn label(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_ascii_uppercase().to_string() + chars.as_str()
    })
}

/// English plural of a snake_case name's last word.
pub(super) fn plural(name: &str) -> String {
    if let Some(stem) = name.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|end| name.ends_with(end))
    {
        format!("{name}es")
    } else {
        format!("{name}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_snake_case_and_not_the_crates_files() {
        assert_eq!(snake_name("blog_post").unwrap(), "blog_post");
        for (name, reason) in [
            ("Post", "snake_case"),
            ("my-page", "snake_case"),
            ("a__b", "snake_case"),
            ("type", "Rust keyword"),
            ("main", "crate's own files"),
        ] {
            let e = snake_name(name).unwrap_err();
            assert!(e.contains(reason), "{name}: {e}");
        }
    }

    #[test]
    fn names_become_types_labels_and_plurals() {
        assert_eq!(camel("blog_post"), "BlogPost");
        assert_eq!(label("published_at"), "Published at");
        assert_eq!(plural("post"), "posts");
        assert_eq!(plural("category"), "categories");
        assert_eq!(plural("day"), "days");
        assert_eq!(plural("box"), "boxes");
    }
}
