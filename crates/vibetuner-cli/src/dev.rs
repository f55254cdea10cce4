//! `vibetuner dev`: builds and runs the app, rebuilds and restarts it when its Rust sources
//! change, runs the CSS/JS watch and (with `--services`) Redis and MongoDB, all in one terminal.
//!
//! The listening socket is bound here once and handed to each app process as fd 3
//! (`LISTEN_FDS=1`, systemd style): a new build starts accepting on the same socket before the
//! old process is stopped, so no connection is ever refused. The app reports readiness over
//! `NOTIFY_SOCKET` (as under systemd). A failed build leaves the old process serving and writes
//! the compiler's errors to [`vibetuner::dev::BUILD_ERROR_FILE`], which the app's
//! `/_dev/reload` stream shows as an overlay in the browser.

use std::ffi::OsString;
use std::future::Future;
use std::io::IsTerminal;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use vibetuner::project::{ANSWERS_FILE, AnswersFile};

/// Options of `vibetuner dev`.
#[derive(clap::Args)]
pub(crate) struct DevArgs {
    /// Port to listen on (default: PORT, else a port derived from the project slug, the same
    /// every time, so that two projects do not fight over 8000).
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Start redis-server and mongod (if installed) with their data under
    /// `.vibetuner/services/`, and point the app at them (REDIS_URL, MONGODB_URL).
    #[arg(long)]
    services: bool,
}

/// How long an app gets to report it is ready, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The project's answers file.
pub(crate) fn read_answers(root: &Path) -> anyhow::Result<AnswersFile> {
    let path = root.join(ANSWERS_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    AnswersFile::parse(&text).with_context(|| format!("{} is invalid", path.display()))
}

/// The project's own port: 8000 plus a stable hash (FNV-1a) of its slug modulo 1000.
pub(crate) fn stable_port(slug: &str) -> u16 {
    let hash = slug.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    8000 + u16::try_from(hash % 1000).expect("below 1000")
}

/// Runs `vibetuner dev` until Ctrl-C.
pub(crate) fn run(args: DevArgs) -> anyhow::Result<()> {
    let root = crate::project::root()?;
    let answers = read_answers(&root)?;
    let slug = answers.project.project_slug;
    let port = match args.port {
        Some(port) => port,
        None => match std::env::var("PORT") {
            Ok(p) if !p.trim().is_empty() => p
                .trim()
                .parse()
                .with_context(|| format!("PORT={p} is not a port number"))?,
            _ => stable_port(&slug),
        },
    };
    let addr = format!("{}:{port}", args.host);
    let listener = std::net::TcpListener::bind(&addr).with_context(|| {
        format!("cannot listen on {addr}: is another server using it? Pick a port with --port")
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dev = Dev {
        out: Out::new(),
        root,
        slug,
        listener,
    };
    runtime.block_on(dev.run(args.services))
}

/// Coloured, prefixed output lines.
#[derive(Clone, Copy)]
struct Out {
    colour: bool,
}

#[derive(Clone, Copy)]
enum Source {
    Dev,
    Build,
    App,
    Css,
    Services,
}

impl Source {
    fn label(self) -> (&'static str, &'static str) {
        match self {
            Self::Dev => ("dev", "36"),
            Self::Build => ("build", "33"),
            Self::App => ("app", "32"),
            Self::Css => ("css", "35"),
            Self::Services => ("services", "34"),
        }
    }
}

impl Out {
    fn new() -> Self {
        Self {
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn line(self, source: Source, text: &str) {
        let (label, colour) = source.label();
        if self.colour {
            println!("\x1b[{colour}m[{label}]\x1b[0m {text}");
        } else {
            println!("[{label}] {text}");
        }
    }

    /// Prints every line of `stream` under `source`; when `keep` is given, sends them there too.
    fn follow(
        self,
        source: Source,
        stream: impl AsyncRead + Unpin + Send + 'static,
        keep: Option<mpsc::UnboundedSender<String>>,
    ) {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                self.line(source, &line);
                if let Some(keep) = &keep {
                    let _ = keep.send(line);
                }
            }
        });
    }
}

/// A child process in its own process group, stopped with the whole group.
struct Group {
    child: Child,
    name: String,
    pgid: i32,
}

/// The name of the app's [`Group`].
const APP: &str = "the app";

impl Group {
    /// Starts `command` in a new process group (dies with this process on Linux).
    fn spawn(mut command: Command, name: &str) -> anyhow::Result<Self> {
        command.process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe; this only asks for SIGTERM when the parent dies.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pgid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .context("the new process has no id")?;
        Ok(Self {
            child,
            name: name.to_owned(),
            pgid,
        })
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the child's own process group.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-self.pgid, signal);
        }
    }

    /// SIGTERM to the group, SIGKILL after [`STOP_TIMEOUT`].
    async fn stop(mut self) {
        self.signal(libc::SIGTERM);
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait().await;
        }
    }
}

impl Drop for Group {
    /// Kills whatever is left of the group (all of it when the leader was not stopped).
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

struct Dev {
    out: Out,
    root: PathBuf,
    slug: String,
    listener: std::net::TcpListener,
}

/// What a build gave.
enum Built {
    Binary(PathBuf),
    Failed(String),
}

impl Dev {
    async fn run(self, services: bool) -> anyhow::Result<()> {
        let out = self.out;
        let addr = self.listener.local_addr()?;
        out.line(
            Source::Dev,
            &format!("{} on http://{addr} (Ctrl-C stops everything)", self.slug),
        );
        let state = self.root.join(".vibetuner/dev");
        std::fs::create_dir_all(&state)
            .with_context(|| format!("cannot create {}", state.display()))?;
        // One listener for Ctrl-C/SIGTERM for the whole run, so no signal goes unseen.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            vibetuner::app::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = || {
            let mut stop_rx = stop_rx.clone();
            async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            }
        };
        let mut helpers = Vec::new();
        let result = self.serve(services, &mut helpers, stopped).await;
        self.out.line(Source::Dev, "stopping");
        for helper in helpers.into_iter().rev() {
            let name = helper.name.clone();
            helper.stop().await;
            self.out.line(Source::Dev, &format!("stopped {name}"));
        }
        self.clear_error();
        result
    }

    /// Builds, runs and rebuilds until `stopped` resolves; every process it starts is in
    /// `helpers` by then.
    async fn serve<F: Future<Output = ()>>(
        &self,
        services: bool,
        helpers: &mut Vec<Group>,
        stopped: impl Fn() -> F,
    ) -> anyhow::Result<()> {
        let out = self.out;
        let addr = self.listener.local_addr()?;
        let mut env: Vec<(String, String)> = Vec::new();
        if services {
            tokio::select! {
                started = self.start_services(&mut env, helpers) => started?,
                () = stopped() => return Ok(()),
            }
        }
        if let Some(assets) = self.start_assets()? {
            helpers.push(assets);
        }
        let (changes_tx, mut changes) = mpsc::unbounded_channel();
        let _watcher = self.watch(changes_tx)?;
        let mut generation = 0u32;
        loop {
            generation += 1;
            let built = tokio::select! {
                built = self.build() => built?,
                () = stopped() => return Ok(()),
            };
            match built {
                Built::Binary(binary) => {
                    self.clear_error();
                    let started = tokio::select! {
                        started = self.start_app(&binary, &env, generation) => started,
                        () = stopped() => return Ok(()),
                    };
                    match started {
                        Ok(new) => {
                            // The new process accepts on the socket already: the old one can go.
                            let old = helpers.iter().position(|g| g.name == APP);
                            helpers.push(new);
                            if let Some(old) = old {
                                helpers.remove(old).stop().await;
                            }
                            out.line(
                                Source::Dev,
                                &format!("serving the new build on http://{addr}"),
                            );
                        }
                        Err(e) => {
                            out.line(Source::App, &format!("{e:#}"));
                            self.write_error(&format!(
                                "{e:#}\n\nSee the terminal running `vibetuner dev`."
                            ));
                        }
                    }
                }
                Built::Failed(errors) => {
                    let running = helpers.iter().any(|g| g.name == APP);
                    out.line(
                        Source::Build,
                        if running {
                            "build failed: the last good build keeps serving; fix the code and save"
                        } else {
                            "build failed: fix the code and save"
                        },
                    );
                    self.write_error(&errors);
                }
            }
            // Wait for a change (noting when the app dies meanwhile), or for Ctrl-C.
            loop {
                enum Next {
                    Change(Option<PathBuf>),
                    Exited(Option<std::process::ExitStatus>),
                    Stop,
                }
                let next = {
                    let app = helpers.iter_mut().find(|g| g.name == APP);
                    let exited = async {
                        match app {
                            Some(group) => group.child.wait().await.ok(),
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        change = changes.recv() => Next::Change(change),
                        status = exited => Next::Exited(status),
                        () = stopped() => Next::Stop,
                    }
                };
                match next {
                    Next::Change(Some(path)) => {
                        // A save often touches several files (and one file several times).
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        while changes.try_recv().is_ok() {}
                        out.line(
                            Source::Dev,
                            &format!("{} changed: rebuilding", display(&self.root, &path)),
                        );
                        break;
                    }
                    Next::Change(None) => bail!("the file watcher stopped"),
                    Next::Exited(status) => {
                        let status =
                            status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
                        out.line(
                            Source::App,
                            &format!("the app exited ({status}); waiting for a change to rebuild"),
                        );
                        helpers.retain(|g| g.name != APP);
                    }
                    Next::Stop => return Ok(()),
                }
            }
        }
    }

    fn write_error(&self, text: &str) {
        let path = self.root.join(vibetuner::dev::BUILD_ERROR_FILE);
        if let Err(e) = std::fs::write(&path, text) {
            self.out.line(
                Source::Dev,
                &format!("cannot write {}: {e}", path.display()),
            );
        }
    }

    fn clear_error(&self) {
        let _ = std::fs::remove_file(self.root.join(vibetuner::dev::BUILD_ERROR_FILE));
    }

    /// Watches `src/`, `Cargo.toml` and `build.rs`; sends each created, changed or removed
    /// path (not reads: cargo opens Cargo.toml on every build).
    fn watch(
        &self,
        changes: mpsc::UnboundedSender<PathBuf>,
    ) -> anyhow::Result<notify::RecommendedWatcher> {
        use notify::{EventKind, RecursiveMode, Watcher};
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if matches!(
                    event.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                ) {
                    for path in event.paths {
                        let _ = changes.send(path);
                    }
                }
            })
            .context("cannot watch the project's files")?;
        watcher
            .watch(&self.root.join("src"), RecursiveMode::Recursive)
            .context("cannot watch src/")?;
        for file in ["Cargo.toml", "build.rs"] {
            let path = self.root.join(file);
            if path.is_file() {
                watcher
                    .watch(&path, RecursiveMode::NonRecursive)
                    .with_context(|| format!("cannot watch {file}"))?;
            }
        }
        Ok(watcher)
    }

    /// `cargo build`: the app's binary, or the compiler's errors.
    async fn build(&self) -> anyhow::Result<Built> {
        let out = self.out;
        out.line(Source::Build, "cargo build");
        let started = Instant::now();
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command
            .args(["build", "--message-format", "json-render-diagnostics"])
            .args(["--color", if out.colour { "always" } else { "never" }])
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut cargo = Group::spawn(command, "cargo build")?;
        let (lines_tx, mut lines) = mpsc::unbounded_channel();
        out.follow(
            Source::Build,
            cargo.child.stderr.take().expect("piped"),
            Some(lines_tx),
        );
        let mut stdout = BufReader::new(cargo.child.stdout.take().expect("piped")).lines();
        let mut executables = Vec::new();
        while let Some(line) = stdout.next_line().await? {
            let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if message["reason"] != "compiler-artifact" {
                continue;
            }
            if let Some(exe) = message["executable"].as_str() {
                let name = message["target"]["name"].as_str().unwrap_or_default();
                executables.push((name.to_owned(), PathBuf::from(exe)));
            }
        }
        let status = cargo.child.wait().await?;
        let mut errors = Vec::new();
        while let Some(line) = lines.recv().await {
            errors.push(strip_ansi(&line));
        }
        if !status.success() {
            return Ok(Built::Failed(errors.join("\n")));
        }
        let binary = match executables.iter().find(|(name, _)| *name == self.slug) {
            Some((_, path)) => path.clone(),
            None => match executables.as_slice() {
                [(_, path)] => path.clone(),
                [] => bail!(
                    "cargo build produced no binary: is {} an app (src/main.rs)?",
                    self.root.display()
                ),
                _ => bail!(
                    "cargo build produced several binaries and none is named {}: rename the app's binary to the project slug",
                    self.slug
                ),
            },
        };
        out.line(
            Source::Build,
            &format!("built in {:.1}s", started.elapsed().as_secs_f64()),
        );
        Ok(Built::Binary(binary))
    }

    /// Starts `binary serve --worker` on the shared socket; returns once it reports ready.
    async fn start_app(
        &self,
        binary: &Path,
        env: &[(String, String)],
        generation: u32,
    ) -> anyhow::Result<Group> {
        let socket_path = std::env::temp_dir().join(format!(
            "vibetuner-dev-{}-{generation}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&socket_path);
        let notify = tokio::net::UnixDatagram::bind(&socket_path)
            .with_context(|| format!("cannot create {}", socket_path.display()))?;
        let _remove = RemoveOnDrop(socket_path.clone());
        let mut command = Command::new(binary);
        command
            .args(["serve", "--worker"])
            .current_dir(&self.root)
            .env("DEV_RELOAD", "true")
            .env("VIBETUNER_ROOT", &self.root)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("LISTEN_FDS", "1")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var_os("SHUTDOWN_TIMEOUT").is_none() {
            command.env("SHUTDOWN_TIMEOUT", "5");
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let fd = self.listener.as_raw_fd();
        // SAFETY: dup2 and fcntl are async-signal-safe; they put the listening socket at fd 3
        // (without close-on-exec) in the child only.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                if fd == 3 {
                    if libc::fcntl(3, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, 3) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut app = Group::spawn(command, APP)?;
        self.out
            .follow(Source::App, app.child.stdout.take().expect("piped"), None);
        self.out
            .follow(Source::App, app.child.stderr.take().expect("piped"), None);
        let mut buf = [0u8; 512];
        let ready = async {
            loop {
                let n = notify.recv(&mut buf).await?;
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
                {
                    return Ok::<_, std::io::Error>(());
                }
            }
        };
        tokio::select! {
            ready = tokio::time::timeout(START_TIMEOUT, ready) => match ready {
                Ok(result) => {
                    result.context("cannot read the app's readiness")?;
                    Ok(app)
                }
                Err(_) => {
                    app.stop().await;
                    bail!("the new build did not report ready within {}s; stopped it", START_TIMEOUT.as_secs())
                }
            },
            status = app.child.wait() => {
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                bail!("the new build exited at start ({status}); the last good build keeps serving")
            }
        }
    }

    /// `npm run watch` (or `bun run watch` where the project uses bun) when `node_modules` is there.
    fn start_assets(&self) -> anyhow::Result<Option<Group>> {
        let out = self.out;
        if !self.root.join("package.json").is_file() {
            return Ok(None);
        }
        let bun = self.root.join("bun.lock").is_file() && which("bun").is_some();
        if !self.root.join("node_modules").is_dir() {
            out.line(
                Source::Css,
                "node_modules is missing, so CSS/JS are not rebuilt: run `npm install` (or `bun install`) and restart `vibetuner dev`",
            );
            return Ok(None);
        }
        let tool = if bun { "bun" } else { "npm" };
        let mut command = Command::new(tool);
        command
            .args(["run", "watch"])
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut group = Group::spawn(command, &format!("{tool} run watch"))?;
        out.follow(Source::Css, group.child.stdout.take().expect("piped"), None);
        out.follow(Source::Css, group.child.stderr.take().expect("piped"), None);
        out.line(Source::Css, &format!("{tool} run watch"));
        Ok(Some(group))
    }

    /// redis-server and mongod with their data under `.vibetuner/services/`; adds their URLs
    /// to `env`.
    async fn start_services(
        &self,
        env: &mut Vec<(String, String)>,
        started: &mut Vec<Group>,
    ) -> anyhow::Result<()> {
        let base = self.root.join(".vibetuner/services");
        let redis = Service {
            program: "redis-server",
            name: "Redis",
            folder: "redis",
            scheme: "redis",
            var: "REDIS_URL",
            missing: "redis-server not found: Redis not started (enter the dev shell with `nix develop`, or install Redis)",
        };
        let redis_args = |port: &str, dir: &Path| {
            let mut args: Vec<OsString> = [
                "--bind",
                "127.0.0.1",
                "--port",
                port,
                "--save",
                "60 1",
                "--dir",
            ]
            .map(OsString::from)
            .into();
            args.push(dir.into());
            args
        };
        self.start_service(&redis, &base, redis_args, env, started)
            .await?;
        let mongodb = Service {
            program: "mongod",
            name: "MongoDB",
            folder: "mongodb",
            scheme: "mongodb",
            var: "MONGODB_URL",
            missing: "mongod not found: MongoDB not started, the app uses its embedded store (install MongoDB, or use the dev shell)",
        };
        let mongod_args = |port: &str, dir: &Path| {
            let mut args: Vec<OsString> = [
                "--bind_ip",
                "127.0.0.1",
                "--port",
                port,
                "--quiet",
                "--dbpath",
            ]
            .map(OsString::from)
            .into();
            args.push(dir.into());
            args
        };
        self.start_service(&mongodb, &base, mongod_args, env, started)
            .await
    }

    /// Starts `service` on a free port with its data under `base`, its output prefixed
    /// `[services]`, and adds its URL to `env`; says so when its program is missing.
    async fn start_service(
        &self,
        service: &Service,
        base: &Path,
        args: impl Fn(&str, &Path) -> Vec<OsString>,
        env: &mut Vec<(String, String)>,
        started: &mut Vec<Group>,
    ) -> anyhow::Result<()> {
        let out = self.out;
        let Some(program) = which(service.program) else {
            out.line(Source::Services, service.missing);
            return Ok(());
        };
        let dir = base.join(service.folder);
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let mut command = Command::new(program);
        command
            .args(args(&port.to_string(), &dir))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut group = Group::spawn(command, service.program)?;
        out.follow(
            Source::Services,
            group.child.stdout.take().expect("piped"),
            None,
        );
        out.follow(
            Source::Services,
            group.child.stderr.take().expect("piped"),
            None,
        );
        started.push(group);
        wait_port(port, service.program).await?;
        let url = format!("{}://127.0.0.1:{port}", service.scheme);
        out.line(
            Source::Services,
            &format!("{} on {url} (data in {})", service.name, dir.display()),
        );
        env.push((service.var.into(), url));
        Ok(())
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A service `vibetuner dev --services` starts.
struct Service {
    program: &'static str,
    name: &'static str,
    folder: &'static str,
    scheme: &'static str,
    var: &'static str,
    missing: &'static str,
}

fn display(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `program` on PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_port(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} did not accept connections on port {port} within 20s (see its output above)")
}

/// `text` without ANSI colour sequences (for the browser overlay).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte (0x40..=0x7e).
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stable_and_in_range() {
        let port = stable_port("my-blog");
        assert_eq!(port, stable_port("my-blog"));
        assert!((8000..9000).contains(&port));
        assert_ne!(stable_port("my-blog"), stable_port("my-shop"));
    }

    #[test]
    fn colours_are_stripped() {
        assert_eq!(
            strip_ansi("\x1b[1m\x1b[38;5;9merror[E0425]\x1b[0m: x"),
            "error[E0425]: x"
        );
    }
}
