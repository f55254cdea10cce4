//! The app: every route, model, task and template extension is registered here, explicitly,
//! on the framework's app builder. `main.rs` runs it; the tests in `tests/` build the same app
//! in-process with `vibetuner::testing`.

mod notes;
mod routes;
// vibetuner:modules (`vibetuner generate` adds its `mod` lines above this one)

use vibetuner::prelude::*;

/// The whole app, ready to run or test.
pub fn app() -> App {
    App::new(vibetuner::project!())
        .route("/hello", get(routes::hello))
        .templates(|env| env.add_filter("shout", |s: String| s.to_uppercase()))
        .apply(notes::register)
    // vibetuner:register (`vibetuner generate` adds its `.apply(...)` lines above this one)
}
