//! The app: every route, model, task and template extension is registered here, explicitly,
//! on the framework's app builder. `main.rs` runs it; the tests in `tests/` build the same app
//! in-process with `vibetuner::testing`.

mod notes;
mod routes;

use vibetuner::prelude::*;

/// The whole app, ready to run or test.
pub fn app() -> App {
    let app = App::new(vibetuner::project!())
        .route("/hello", get(routes::hello))
        .templates(|env| env.add_filter("shout", |s: String| s.to_uppercase()));
    notes::register(app)
}
