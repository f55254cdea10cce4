//! The framework crate's module import graph, file to file, with re-exports resolved: a
//! `use crate::Error` counts as an import of `error.rs`, not of `lib.rs`. Each `src/` file is a
//! node; an edge is a private `use` or a path in code that reaches an item of another file
//! (`pub use` re-exports are transparent; `#[cfg(test)]` modules are left out). The graph must
//! have no cycle except the ones listed in [`ALLOWED_CYCLES`] (and justified in the README).
//!
//! `cargo nextest run -p vibetuner -E 'test(architecture::)' --no-capture` prints the graph
//! by floors (a file stands above everything it imports).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Cycles the crate keeps on purpose, each as its files (sorted): none. A new one fails here
/// with the imports that close it; keeping one means listing it and justifying it in the
/// README's "Architecture".
const ALLOWED_CYCLES: &[&[&str]] = &[];

type ModPath = Vec<String>;

/// One module: a file, or an inline `mod x { .. }` inside one.
#[derive(Default)]
struct Module {
    file: String,
    children: BTreeSet<String>,
    items: BTreeSet<String>,
    /// Names bound by `use`, with their target paths (as written, made absolute).
    uses: BTreeMap<String, Vec<ModPath>>,
    globs: Vec<ModPath>,
}

#[derive(Default)]
struct Crate {
    modules: BTreeMap<ModPath, Module>,
    /// Per file: (module, referenced path as written, whether it came from a private `use`).
    references: Vec<(ModPath, ModPath)>,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .map(|l| l.tokens.to_string() == "test")
                .unwrap_or(false)
    })
}

fn is_pub(vis: &syn::Visibility) -> bool {
    !matches!(vis, syn::Visibility::Inherited)
}

impl Crate {
    fn load() -> Self {
        let mut krate = Crate::default();
        let root = src_dir();
        krate.load_file(&root.join("lib.rs"), &root, Vec::new());
        krate
    }

    /// Reads a file module; `dir` is where its child modules' files live.
    fn load_file(&mut self, path: &Path, dir: &Path, module: ModPath) {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let rel = path
            .strip_prefix(src_dir())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        self.load_items(&file.items, &rel, dir, module);
    }

    fn load_items(&mut self, items: &[syn::Item], file: &str, dir: &Path, module: ModPath) {
        self.modules.entry(module.clone()).or_default().file = file.to_owned();
        for item in items {
            let (attrs, name): (&[syn::Attribute], Option<String>) = match item {
                syn::Item::Const(i) => (&i.attrs, Some(i.ident.to_string())),
                syn::Item::Enum(i) => (&i.attrs, Some(i.ident.to_string())),
                syn::Item::Fn(i) => (&i.attrs, Some(i.sig.ident.to_string())),
                syn::Item::Macro(i) => (&i.attrs, i.ident.as_ref().map(|i| i.to_string())),
                syn::Item::Static(i) => (&i.attrs, Some(i.ident.to_string())),
                syn::Item::Struct(i) => (&i.attrs, Some(i.ident.to_string())),
                syn::Item::Trait(i) => (&i.attrs, Some(i.ident.to_string())),
                syn::Item::Type(i) => (&i.attrs, Some(i.ident.to_string())),
                syn::Item::Union(i) => (&i.attrs, Some(i.ident.to_string())),
                syn::Item::Impl(i) => (&i.attrs, None),
                syn::Item::Mod(i) => (&i.attrs, None),
                syn::Item::Use(i) => (&i.attrs, None),
                _ => (&[][..], None),
            };
            if is_cfg_test(attrs) {
                continue;
            }
            if let Some(name) = name {
                self.module(&module).items.insert(name);
            }
            match item {
                syn::Item::Mod(m) => {
                    let name = m.ident.to_string();
                    self.module(&module).children.insert(name.clone());
                    let mut child = module.clone();
                    child.push(name.clone());
                    match &m.content {
                        Some((_, items)) => {
                            self.load_items(items, file, &dir.join(&name), child);
                        }
                        None => {
                            let flat = dir.join(format!("{name}.rs"));
                            let (path, child_dir) = if flat.exists() {
                                (flat, dir.join(&name))
                            } else {
                                (dir.join(&name).join("mod.rs"), dir.join(&name))
                            };
                            self.load_file(&path, &child_dir, child);
                        }
                    }
                }
                syn::Item::Use(u) => {
                    let mut leaves = Vec::new();
                    use_leaves(&u.tree, Vec::new(), &mut leaves);
                    for (path, bound) in leaves {
                        let Some(abs) = self.absolute(&module, &path) else {
                            continue;
                        };
                        match bound {
                            Some(name) => {
                                self.module(&module)
                                    .uses
                                    .entry(name)
                                    .or_default()
                                    .push(abs.clone());
                            }
                            None => self.module(&module).globs.push(abs.clone()),
                        }
                        // A re-export is transparent: whoever names it is resolved through it.
                        if !is_pub(&u.vis) {
                            self.references.push((module.clone(), abs));
                        }
                    }
                }
                other => {
                    let mut paths = PathCollector::default();
                    paths.visit_item(other);
                    for path in paths.paths {
                        self.references.push((module.clone(), path));
                    }
                }
            }
        }
    }

    fn module(&mut self, path: &ModPath) -> &mut Module {
        self.modules.get_mut(path).unwrap()
    }

    /// `crate::`/`super::`/`self::` paths made absolute (without `crate`); others are left
    /// as written (resolved later through the module's `use` bindings) or dropped when they
    /// start with something that cannot be ours.
    fn absolute(&self, module: &ModPath, path: &ModPath) -> Option<ModPath> {
        let mut base = module.clone();
        let mut rest = path.as_slice();
        match rest.first().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest = &rest[1..];
            }
            Some("self") => rest = &rest[1..],
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
            }
            // A first segment that names a child module of this one (`use store::Filter` in lib.rs).
            Some(first)
                if self
                    .modules
                    .get(module)
                    .is_some_and(|m| m.children.contains(first)) => {}
            _ => return None,
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file that defines what `path` (absolute, without `crate`) names, following `use`
    /// bindings and globs of the modules on the way.
    fn resolve(&self, path: &[String], depth: usize) -> Option<String> {
        assert!(depth < 32, "re-export loop at {path:?}");
        let mut module: ModPath = Vec::new();
        for (i, segment) in path.iter().enumerate() {
            let m = &self.modules[&module];
            if m.children.contains(segment) {
                module.push(segment.clone());
                continue;
            }
            if m.items.contains(segment) {
                return Some(m.file.clone());
            }
            if let Some(targets) = m.uses.get(segment) {
                let target = &targets[0];
                let mut next = target.clone();
                next.extend(path[i + 1..].iter().cloned());
                return self.resolve(&next, depth + 1);
            }
            for glob in &m.globs {
                let mut next = glob.clone();
                next.extend(path[i..].iter().cloned());
                if let Some(file) = self.resolve_strict(&next, depth + 1) {
                    return Some(file);
                }
            }
            return Some(m.file.clone());
        }
        Some(self.modules[&module].file.clone())
    }

    /// Like [`Crate::resolve`], but `None` when the name is not found (for glob candidates).
    fn resolve_strict(&self, path: &[String], depth: usize) -> Option<String> {
        let (last, parent) = path.split_last()?;
        let mut module: ModPath = Vec::new();
        for segment in parent {
            let m = self.modules.get(&module)?;
            if !m.children.contains(segment) {
                return None;
            }
            module.push(segment.clone());
        }
        let m = self.modules.get(&module)?;
        (m.items.contains(last) || m.children.contains(last) || m.uses.contains_key(last))
            .then(|| self.resolve(path, depth))
            .flatten()
    }

    /// Edges file -> file with the names that make them.
    fn edges(&self) -> BTreeMap<(String, String), BTreeSet<String>> {
        let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for (module, path) in &self.references {
            let from = &self.modules[module].file;
            let Some(abs) = self.expand(module, path) else {
                continue;
            };
            let Some(to) = self.resolve(&abs, 0) else {
                continue;
            };
            if &to != from {
                let name = abs.last().cloned().unwrap_or_default();
                edges.entry((from.clone(), to)).or_default().insert(name);
            }
        }
        edges
    }

    /// A path as the module sees it, made absolute: through `crate`/`super`/`self`, a child
    /// module, or a name the module binds with `use`.
    fn expand(&self, module: &ModPath, path: &ModPath) -> Option<ModPath> {
        if let Some(abs) = self.absolute(module, path) {
            return Some(abs);
        }
        let first = path.first()?;
        let target = self.modules[module].uses.get(first)?.first()?;
        let mut abs = target.clone();
        abs.extend(path[1..].iter().cloned());
        Some(abs)
    }
}

/// The leaves of a `use` tree: the path and the name it binds (`None` for a glob).
fn use_leaves(tree: &syn::UseTree, prefix: ModPath, out: &mut Vec<(ModPath, Option<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            let mut prefix = prefix;
            prefix.push(p.ident.to_string());
            use_leaves(&p.tree, prefix, out);
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                let bound = prefix.last().cloned();
                out.push((prefix, bound));
            } else {
                let mut path = prefix;
                path.push(name.clone());
                out.push((path, Some(name)));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix;
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            out.push((path, Some(r.rename.to_string())));
        }
        syn::UseTree::Glob(_) => out.push((prefix, None)),
        syn::UseTree::Group(g) => {
            for tree in &g.items {
                use_leaves(tree, prefix.clone(), out);
            }
        }
    }
}

/// Every path in an item's code, skipping `#[cfg(test)]` parts.
#[derive(Default)]
struct PathCollector {
    paths: Vec<ModPath>,
}

impl<'ast> Visit<'ast> for PathCollector {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            self.paths
                .push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {
        // `pub(super)` names a module, but imports nothing.
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // Inline modules are read as modules of their own by `Crate::load_items`.
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_cfg_test(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
}

/// Strongly connected components of more than one file (Tarjan), each sorted.
fn cycles(
    nodes: &BTreeSet<String>,
    edges: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[w].min(self.low[v]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.index[w].min(self.low[v]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in nodes {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out.sort();
    t.out
}

/// Each file's floor: 1 + the highest floor among what it imports (cycles collapsed).
fn floors(
    nodes: &BTreeSet<String>,
    edges: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, usize> {
    fn floor(
        v: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        memo: &mut BTreeMap<String, usize>,
        visiting: &mut BTreeSet<String>,
    ) -> usize {
        if let Some(f) = memo.get(v) {
            return *f;
        }
        if !visiting.insert(v.to_owned()) {
            return 0;
        }
        let f = 1 + edges
            .get(v)
            .into_iter()
            .flatten()
            .map(|w| floor(w, edges, memo, visiting))
            .max()
            .unwrap_or(0);
        visiting.remove(v);
        memo.insert(v.to_owned(), f);
        f
    }
    let mut memo = BTreeMap::new();
    for v in nodes {
        floor(v, edges, &mut memo, &mut BTreeSet::new());
    }
    memo
}

#[test]
fn module_imports_have_no_cycle() {
    let krate = Crate::load();
    let named = krate.edges();
    let nodes: BTreeSet<String> = krate.modules.values().map(|m| m.file.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in named.keys() {
        edges.entry(from.clone()).or_default().insert(to.clone());
    }
    let found = cycles(&nodes, &edges);

    let floors = floors(&nodes, &edges);
    let mut report = format!(
        "{} files, {} imports (file to file), {} cycle(s)\n",
        nodes.len(),
        named.len(),
        found.len()
    );
    let mut by_floor: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (file, floor) in &floors {
        by_floor.entry(*floor).or_default().push(file);
    }
    for (floor, files) in by_floor.iter().rev() {
        report += &format!("floor {floor:2}: {}\n", files.join(" "));
    }
    for cycle in &found {
        report += &format!("cycle of {} files:\n", cycle.len());
        for ((from, to), names) in &named {
            if cycle.contains(from) && cycle.contains(to) {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                report += &format!("  {from} -> {to}: {}\n", names.join(", "));
            }
        }
    }
    println!("{report}");

    let allowed: Vec<Vec<String>> = ALLOWED_CYCLES
        .iter()
        .map(|c| c.iter().map(|f| (*f).to_owned()).collect())
        .collect();
    assert_eq!(
        found, allowed,
        "the module import graph's cycles differ from the allowed ones:\n{report}"
    );
}

/// The README's map of the crate ("Architecture of the framework crate") names every top-level
/// module, so a new one cannot land without its line.
#[test]
fn the_readme_map_names_every_module() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let section = readme
        .split("## Architecture of the framework crate")
        .nth(1)
        .expect("README.md has the architecture section");
    let map = section
        .split("```")
        .nth(1)
        .expect("the section opens with the map");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(src_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let shown = if path.is_dir() {
            format!("{name}/")
        } else {
            name
        };
        if !map.contains(&shown) {
            missing.push(shown);
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "README.md's architecture map does not name: {missing:?}"
    );
}
