//! The app's entry point: every route, template extension and check is registered here,
//! explicitly, on the framework's app builder.

mod notes;
mod routes;

use vibetuner::prelude::*;

fn main() -> std::process::ExitCode {
    let app = App::new(vibetuner::project!())
        .route("/hello", get(routes::hello))
        .templates(|env| env.add_filter("shout", |s: String| s.to_uppercase()));
    let app = notes::register(app);
    app.run()
}
