//! The dev-only pages, both loopback only: `GET /_dev/outbox` lists the mails the dev outbox
//! caught, and live reload for `vibetuner dev` (`DEV_RELOAD`, never in prod): `GET
//! /_dev/reload` streams what changed in the project, and `dev/reload.html.jinja` (on every
//! page) acts on it.
//!
//! Events: `hello` (this process's id, first on every stream: a new id after a reconnect
//! means the server restarted, so the page reloads), `css` (the CSS bundle was rebuilt: the
//! page swaps its stylesheets), `template` (a template changed: the page reloads), and
//! `build-error` / `build-ok` (`vibetuner dev` writes the compiler's errors to
//! [`BUILD_ERROR_FILE`] and removes it after a good build: the page shows or hides an overlay).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use axum::response::{Html, Response};
use futures_util::StreamExt;
use minijinja::context;

use crate::context::AppContext;
use crate::error::Error;
use crate::mail::read_outbox;
use crate::render::Render;
use crate::sse::{Sse, SseEvent};

/// `GET /_dev/outbox`: the dev outbox, newest first (registered only when mail goes there).
pub(crate) async fn outbox_page(render: Render, ctx: AppContext) -> Result<Html<String>, Error> {
    let dir = ctx.mailer().outbox_dir().ok_or_else(Error::not_found)?;
    let messages = read_outbox(dir);
    render.page(
        "dev/outbox.html.jinja",
        context! { messages, outbox_dir => dir.display().to_string() },
    )
}

/// The failed build's compiler output, relative to the project root, while a build fails.
pub const BUILD_ERROR_FILE: &str = ".vibetuner/dev/build-error.txt";

/// How often a stream looks at the project's files.
const POLL: Duration = Duration::from_millis(100);

/// The CSS bundle the page links.
const CSS_BUNDLE: &str = "assets/statics/css/bundle.css";

/// This process's id in `hello` events.
fn server_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{started:x}", std::process::id())
    })
}

/// What a stream compares between polls.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    css: Option<(SystemTime, u64)>,
    templates: Option<SystemTime>,
    error: Option<String>,
}

impl Snapshot {
    fn take(root: &Path) -> Self {
        let css = std::fs::metadata(root.join(CSS_BUNDLE))
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        Self {
            css,
            templates: newest(&root.join("templates")),
            error: std::fs::read_to_string(root.join(BUILD_ERROR_FILE)).ok(),
        }
    }

    /// The events that take a page from `self` to `now`.
    fn changes(&self, now: &Self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if now.error != self.error {
            events.push(match &now.error {
                Some(error) => SseEvent::new("build-error", error.clone()),
                None => SseEvent::new("build-ok", ""),
            });
        }
        if now.templates != self.templates {
            events.push(SseEvent::new("template", ""));
        }
        if now.css != self.css && now.css.is_some() {
            events.push(SseEvent::new("css", ""));
        }
        events
    }
}

/// The newest modification time under `dir` (files and folders, so removals count too).
fn newest(dir: &Path) -> Option<SystemTime> {
    let mut newest = std::fs::metadata(dir).ok()?.modified().ok();
    let mut pending: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            newest = newest.max(meta.modified().ok());
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    newest
}

/// `GET /_dev/reload`: the live-reload stream (only with `DEV_RELOAD`, only from this machine).
pub(crate) async fn reload(sse: Sse, ctx: AppContext) -> Response {
    let root = ctx.root().to_owned();
    let first = Snapshot::take(&root);
    let mut opening = vec![SseEvent::new("hello", server_id())];
    if let Some(error) = &first.error {
        opening.push(SseEvent::new("build-error", error.clone()));
    }
    let changes = futures_util::stream::unfold((root, first), |(root, last)| async move {
        loop {
            tokio::time::sleep(POLL).await;
            let now = Snapshot::take(&root);
            let events = last.changes(&now);
            if !events.is_empty() {
                return Some((futures_util::stream::iter(events), (root, now)));
            }
        }
    })
    .flatten();
    sse.stream(futures_util::stream::iter(opening).chain(changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let before = Snapshot::take(root);
        assert!(before.changes(&Snapshot::take(root)).is_empty());

        std::fs::create_dir_all(root.join(".vibetuner/dev")).unwrap();
        std::fs::write(root.join(BUILD_ERROR_FILE), "error[E0425]: nope").unwrap();
        std::fs::create_dir_all(root.join("assets/statics/css")).unwrap();
        std::fs::write(root.join(CSS_BUNDLE), "body{}").unwrap();
        let after = Snapshot::take(root);
        let names: Vec<_> = before
            .changes(&after)
            .into_iter()
            .map(|e| (e.event, e.data))
            .collect();
        assert_eq!(
            names,
            [
                ("build-error".to_owned(), "error[E0425]: nope".to_owned()),
                ("css".to_owned(), String::new())
            ]
        );

        std::fs::remove_file(root.join(BUILD_ERROR_FILE)).unwrap();
        std::fs::create_dir_all(root.join("templates/frontend")).unwrap();
        let fixed = Snapshot::take(root);
        let names: Vec<_> = after.changes(&fixed).into_iter().map(|e| e.event).collect();
        assert_eq!(names, ["build-ok", "template"]);
    }
}
