//! `vibetuner`: generates vibetuner projects and does project-level work.
//! Runtime commands (`serve`, `check`, ...) belong to each app's own binary.

mod answers;
mod dev;
mod doctor;
mod eject;
mod generate;
mod new;
mod project;
mod update;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Parser, Subcommand};

use crate::answers::{QUESTIONS, default_for, parse_data, to_project, validate};
use crate::new::Framework;

#[derive(Parser)]
#[command(
    name = "vibetuner",
    version,
    about = "Generate and manage vibetuner web apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new app project in DIR (asks questions on a terminal).
    New(NewArgs),
    /// Build, run and live-reload the app of the project you are in: rebuilds and restarts it
    /// when its Rust sources change (keeping the socket, so no request is refused), runs the
    /// CSS/JS watch and reloads the browser.
    Dev(dev::DevArgs),
    /// Bring the project you are in to the template of this CLI (or of --template) by a
    /// 3-way merge; conflicts get markers and exit status 1.
    Update(update::UpdateArgs),
    /// Write vibetuner.toml (the answers `vibetuner update` needs) into an existing project.
    Adopt(AdoptArgs),
    /// Check the project around this folder: toolchain, files, settings, services, bundles, port.
    Doctor(doctor::DoctorArgs),
    /// Generate code in the project: a resource (scaffold), a model, a page, a task or an email.
    Generate {
        #[command(subcommand)]
        command: generate::GenerateCommand,
    },
    /// Copy a framework template into the app's templates/frontend/ to edit it (the app's copy
    /// wins); without TEMPLATE, list them.
    Eject(eject::EjectArgs),
    /// Run the app binary with ARGS from anywhere in the project (`cargo run --quiet -- ARGS`),
    /// e.g. `vibetuner run routes` or `vibetuner run db ping`.
    Run {
        /// The app binary's subcommand and its arguments (`vibetuner run --help` for this help,
        /// `vibetuner run help` for the app's).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Key management.
    Crypto {
        #[command(subcommand)]
        command: CryptoCommand,
    },
}

#[derive(clap::Args)]
struct NewArgs {
    /// Folder to create; must not exist or be empty.
    dir: PathBuf,
    /// Take the default for every question not given with --data (no prompts).
    #[arg(short, long)]
    defaults: bool,
    /// Answer a question: --data project_name="My Blog" (repeatable).
    #[arg(long = "data", value_name = "KEY=VALUE")]
    data: Vec<String>,
    /// Depend on the framework at this path (default: this checkout, when run from one).
    #[arg(long, value_name = "DIR", conflicts_with = "framework_version")]
    framework_path: Option<PathBuf>,
    /// Depend on this released framework version: the git tag v<VERSION> of the framework's
    /// repository (default when not run from a checkout: this CLI's own version).
    #[arg(long, value_name = "VERSION")]
    framework_version: Option<String>,
}

#[derive(clap::Args)]
struct AdoptArgs {
    /// The project folder.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Take the default for every question not given with --data (no prompts).
    #[arg(short, long)]
    defaults: bool,
    /// Answer a question: --data project_slug=my-app (repeatable).
    #[arg(long = "data", value_name = "KEY=VALUE")]
    data: Vec<String>,
    /// Template version the project matches (default: this CLI's); `vibetuner update` merges
    /// from the template at that version.
    #[arg(long, value_name = "VERSION")]
    template_version: Option<String>,
    /// Replace an existing vibetuner.toml.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
enum CryptoCommand {
    /// Print a new random key for SESSION_KEY (URL-safe base64).
    GenerateKey {
        /// Number of random bytes.
        #[arg(short, long, default_value_t = 48, value_parser = clap::value_parser!(u16).range(32..=1024))]
        length: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::New(args) => new_project(args),
        Command::Dev(args) => dev::run(args),
        Command::Update(args) => match update::run(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Adopt(args) => adopt(args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Generate { command } => generate::generate(&command),
        Command::Eject(args) => eject::eject(&args),
        Command::Run { args } => return run_app(&args),
        Command::Crypto {
            command: CryptoCommand::GenerateKey { length },
        } => generate_key(length.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the app binary in the project root, passing its exit code through.
fn run_app(args: &[String]) -> ExitCode {
    let status = project::root().and_then(|root| {
        project::app_command(&root, args)
            .status()
            .context("cannot run cargo: install Rust with rustup (https://rustup.rs)")
    });
    match status {
        Ok(status) => status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .map_or(ExitCode::FAILURE, ExitCode::from),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn generate_key(length: usize) -> anyhow::Result<()> {
    let mut bytes = vec![0u8; length];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    println!(
        "{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    Ok(())
}

/// The framework crate of the checkout this CLI was built from, if it is still there.
fn checkout_framework() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vibetuner");
    dir.join("Cargo.toml")
        .is_file()
        .then(|| dir.canonicalize().unwrap_or(dir))
}

fn new_project(args: NewArgs) -> anyhow::Result<()> {
    new::check_target(&args.dir)?;
    let data = parse_data(&args.data).map_err(anyhow::Error::msg)?;
    let interactive = !args.defaults;
    if interactive && !std::io::stdin().is_terminal() {
        bail!(
            "standard input is not a terminal, so questions cannot be asked: pass --defaults (and --data key=value for the answers you want)"
        );
    }
    let folder = args
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let answers = collect_answers(&folder, data, interactive)?;
    let project = to_project(&answers);
    let framework = match (args.framework_path, args.framework_version) {
        (Some(path), _) => {
            let path = path
                .canonicalize()
                .with_context(|| format!("--framework-path {} does not exist", path.display()))?;
            if !path.join("Cargo.toml").is_file() {
                bail!(
                    "--framework-path {} has no Cargo.toml; point it at crates/vibetuner of a checkout",
                    path.display()
                );
            }
            Framework::Path(path)
        }
        (None, Some(version)) => Framework::Release(version),
        (None, None) => checkout_framework().map_or_else(
            || Framework::Release(env!("CARGO_PKG_VERSION").into()),
            Framework::Path,
        ),
    };
    // The template's Cargo.lock pins the versions the framework's own lock has, so the app
    // builds offline from a checkout and reuses artifacts from a shared target directory.
    let files = new::render(&project, &framework)?;
    new::write(&args.dir, &files)?;
    print_next_steps(&args.dir, &project.project_name, &project.project_slug);
    Ok(())
}

fn adopt(args: AdoptArgs) -> anyhow::Result<()> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("{} does not exist", args.dir.display()))?;
    let path = dir.join(vibetuner::project::ANSWERS_FILE);
    if path.exists() && !args.force {
        bail!(
            "{} exists already (pass --force to replace it)",
            path.display()
        );
    }
    let data = parse_data(&args.data).map_err(anyhow::Error::msg)?;
    let interactive = !args.defaults;
    if interactive && !std::io::stdin().is_terminal() {
        bail!(
            "standard input is not a terminal, so questions cannot be asked: pass --defaults (and --data key=value for the answers you want)"
        );
    }
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let answers = collect_answers(&folder, data, interactive)?;
    let file = vibetuner::project::AnswersFile {
        template: vibetuner::project::TemplateInfo {
            name: "app".into(),
            version: args
                .template_version
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").into()),
        },
        project: to_project(&answers),
    };
    std::fs::write(&path, file.to_toml())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "wrote {}: `vibetuner update` now merges newer templates into this project (from the template at v{})",
        path.display(),
        file.template.version
    );
    Ok(())
}

fn collect_answers(
    folder: &str,
    data: BTreeMap<String, String>,
    interactive: bool,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut answers = BTreeMap::new();
    for question in QUESTIONS {
        let key = question.key;
        let value = match data.get(key) {
            Some(given) => given.clone(),
            None if interactive => {
                let default = default_for(key, folder, &answers);
                dialoguer::Input::<String>::new()
                    .with_prompt(question.prompt)
                    .default(default)
                    .allow_empty(true)
                    .validate_with(|v: &String| validate(key, v.trim()))
                    .interact_text()
                    .with_context(|| format!("cannot read the answer to {key}"))?
            }
            None => default_for(key, folder, &answers),
        };
        let value = value.trim().to_owned();
        validate(key, &value).map_err(anyhow::Error::msg)?;
        answers.insert(key.to_owned(), value);
    }
    Ok(answers)
}

fn print_next_steps(dir: &Path, name: &str, slug: &str) {
    println!(
        "Created {name} in {dir}\n\nNext steps:\n  cd {dir}\n  cargo build                          # compiles the app ({slug})\n  npm install && npm run build         # CSS and JS bundles (or: bun install && bun run build)\n  cargo run -- serve                   # http://127.0.0.1:8000\n\nOr, after npm install, all at once with live reload:\n  vibetuner dev                        # http://127.0.0.1:{port}\n\nThe app starts with no services: set MONGODB_URL or REDIS_URL in .env when you want them.",
        dir = dir.display(),
        port = dev::stable_port(slug)
    );
}
