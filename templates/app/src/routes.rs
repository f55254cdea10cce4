//! Example page: `/hello` renders a full page; with htmx (`HX-Request`) only the greeting block.

use vibetuner::prelude::*;

/// Query string of `/hello`.
#[derive(Deserialize)]
pub struct HelloQuery {
    name: Option<String>,
}

/// `GET /hello?name=...`
pub async fn hello(render: Render, Query(query): Query<HelloQuery>) -> Result<Html<String>> {
    let name = query
        .name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "world".into());
    render.page_or_block("hello.html.jinja", "greeting", context! { name })
}
