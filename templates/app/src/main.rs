//! The app binary: `serve`, `worker`, `check`, `db` and the other commands of `--help`.

fn main() -> std::process::ExitCode {
    app::app().run()
}
