//! The route table of the app binary's `routes` command. An axum router cannot list its routes,
//! so the app builder and the framework's own routers record each route as they add it; a
//! router merged whole ([`App::merge`](crate::app::App::merge)) is counted, not listed.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::routing::MethodRouter;

/// One route: its methods, path, name (for `url_for`) and the layers around it.
#[derive(Clone)]
pub(crate) struct RouteInfo {
    pub(crate) methods: Methods,
    pub(crate) path: String,
    pub(crate) name: Option<String>,
    pub(crate) layers: String,
}

impl RouteInfo {
    pub(crate) fn new(methods: &str, path: &str, layers: impl Into<String>) -> Self {
        Self {
            methods: Methods::Known(methods.to_owned()),
            path: path.to_owned(),
            name: None,
            layers: layers.into(),
        }
    }

    /// A route whose methods are read from its method router when the table is printed.
    pub(crate) fn of<S: Send + Sync + 'static>(
        method_router: &MethodRouter<S>,
        path: &str,
        layers: impl Into<String>,
    ) -> Self {
        let method_router = method_router.clone();
        Self {
            methods: Methods::Deferred(Arc::new(move || methods(&method_router))),
            ..Self::new("", path, layers)
        }
    }
}

/// A route's methods, as [`methods`] spells them.
#[derive(Clone)]
pub(crate) enum Methods {
    Known(String),
    /// Read when the table is printed: formatting every method router at startup maps in
    /// code (axum's `Debug` impls) that only the `routes` command needs.
    Deferred(Arc<dyn Fn() -> String + Send + Sync>),
}

impl Methods {
    fn text(&self) -> String {
        match self {
            Self::Known(text) => text.clone(),
            Self::Deferred(read) => read(),
        }
    }
}

/// The layers around the app's routes and the account routes (outermost last).
pub(crate) const APP_LAYERS: &str =
    "session, csrf, body limit, error pages, security headers, access log";
/// The layers around the meta files and statics.
pub(crate) const OUTER_LAYERS: &str = "body limit, error pages, security headers, access log";
/// The layers around the health probes.
pub(crate) const HEALTH_LAYERS: &str = "request id";

/// The methods a method router answers, as axum computes its `Allow` header (`HEAD` left out
/// beside `GET`); `ANY` for `any(..)`, `?` when axum's debug output is not understood.
///
/// axum offers no accessor, so this reads the router's `Debug` output; a unit test pins it.
fn methods<S>(method_router: &MethodRouter<S>) -> String {
    let debug = format!("{method_router:?}");
    let Some(allow) = debug.split("allow_header: ").nth(1) else {
        return "?".into();
    };
    if allow.starts_with("Skip") {
        return "ANY".into();
    }
    let Some(list) = allow
        .strip_prefix("Bytes(b\"")
        .and_then(|rest| rest.split('"').next())
    else {
        return "?".into();
    };
    let methods: Vec<&str> = list.split(',').collect();
    let get = methods.contains(&"GET");
    methods
        .into_iter()
        .filter(|m| !(get && *m == "HEAD"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A router that records the routes added to it.
pub(crate) struct Recorder<S = ()> {
    router: Router<S>,
    table: Vec<RouteInfo>,
    layers: &'static str,
}

impl<S: Clone + Send + Sync + 'static> Recorder<S> {
    /// An empty router whose routes sit inside `layers`.
    pub(crate) fn new(layers: &'static str) -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
            layers,
        }
    }

    /// Adds and records a route.
    pub(crate) fn route(mut self, path: &str, method_router: MethodRouter<S>) -> Self {
        self.table
            .push(RouteInfo::of(&method_router, path, self.layers));
        self.router = self.router.route(path, method_router);
        self
    }

    /// Adds a layer of its own to the route added last.
    pub(crate) fn note(mut self, layer: &str) -> Self {
        if let Some(last) = self.table.last_mut() {
            last.layers = format!("{layer}, {}", last.layers);
        }
        self
    }

    /// The router and what it holds.
    pub(crate) fn into_parts(self) -> (Router<S>, Vec<RouteInfo>) {
        (self.router, self.table)
    }
}

/// The table as the `routes` command prints it, sorted by path.
pub(crate) fn render(table: &[RouteInfo], opaque: usize, app_layers: usize) -> String {
    let mut rows: Vec<(String, &RouteInfo)> = table.iter().map(|r| (r.methods.text(), r)).collect();
    rows.sort_by(|(am, a), (bm, b)| a.path.cmp(&b.path).then(am.cmp(bm)));
    let width = |f: fn(&(String, &RouteInfo)) -> usize, title: &str| {
        rows.iter().map(f).max().unwrap_or(0).max(title.len())
    };
    let m = width(|(methods, _)| methods.len(), "METHOD");
    let p = width(|(_, r)| r.path.len(), "PATH");
    let n = width(|(_, r)| r.name.as_deref().map_or(0, str::len), "NAME");
    let mut out = format!("{:m$}  {:p$}  {:n$}  LAYERS\n", "METHOD", "PATH", "NAME");
    for (methods, r) in &rows {
        let _ = writeln!(
            out,
            "{:m$}  {:p$}  {:n$}  {}",
            methods,
            r.path,
            r.name.as_deref().unwrap_or(""),
            r.layers
        );
    }
    if app_layers > 0 {
        let _ = writeln!(
            out,
            "\n{app_layers} app layer(s) (App::layer) wrap every `app` and account route, inside the session."
        );
    }
    if opaque > 0 {
        let _ = writeln!(
            out,
            "\nnot listed: {opaque} router(s) added whole with App::merge (axum cannot list a router's routes; register them with App::route to see them here)."
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use axum::routing::{any, get};

    use super::*;

    #[test]
    fn methods_follow_axums_allow_header() {
        assert_eq!(methods::<()>(&get(|| async {})), "GET");
        assert_eq!(
            methods::<()>(&get(|| async {}).post(|| async {}).delete(|| async {})),
            "GET,POST,DELETE"
        );
        assert_eq!(methods::<()>(&axum::routing::patch(|| async {})), "PATCH");
        assert_eq!(methods::<()>(&any(|| async {})), "ANY");
    }

    #[test]
    fn the_table_lists_sorted_routes_and_owns_up_to_merged_routers() {
        let (_, table) = Recorder::<()>::new("app")
            .route("/b", get(|| async {}))
            .route("/a", get(|| async {}).post(|| async {}))
            .note("loopback only")
            .into_parts();
        let text = render(&table, 1, 0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "METHOD    PATH  NAME  LAYERS");
        assert_eq!(lines[1], "GET,POST  /a          loopback only, app");
        assert_eq!(lines[2], "GET       /b          app");
        assert!(text.contains("not listed: 1 router(s) added whole with App::merge"));
    }
}
