//! Harness for the end-to-end tests: the `vibetuner` CLI, one generated app per test run
//! (generated, compiled and given its CSS/JS bundle once, under a file lock), and app servers
//! started on free ports and stopped on drop.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The shared Cargo target directory (apps built by the tests reuse its artifacts).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// Path of the `vibetuner` binary, rebuilt once per test process so it is never stale.
pub fn cli() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            run(
                Command::new(env!("CARGO"))
                    .args(["build", "--quiet", "-p", "vibetuner-cli"])
                    .env("CARGO_TARGET_DIR", target_dir())
                    .current_dir(workspace_root()),
                "cargo build -p vibetuner-cli",
            )
            .expect("the CLI builds");
            target_dir().join("debug/vibetuner")
        })
        .clone()
}

/// Runs the CLI with `args` in `dir`, with no terminal on standard input.
pub fn run_cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(cli())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("the CLI starts")
}

/// Rewrites the file at `path` with `change`.
///
/// # Panics
/// When the file cannot be read or written, or `change` leaves it as it was (an edit a test
/// relies on must change something).
pub fn edit_file(path: &Path, change: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    let changed = change(text.clone());
    assert_ne!(
        text,
        changed,
        "the edit of {} changed nothing",
        path.display()
    );
    std::fs::write(path, changed).unwrap();
}

/// A generated, compiled app with its assets built.
pub struct GeneratedApp {
    /// Project folder.
    pub dir: PathBuf,
    /// The compiled app binary.
    pub binary: PathBuf,
}

/// What a production server needs to start that a benchmark does not exercise: a long session
/// key, a public origin and a mail transport (production refuses to start without them; no
/// mail is sent).
pub const PROD_ENV: [(&str, &str); 4] = [
    ("ENVIRONMENT", "prod"),
    ("BASE_URL", "https://e2e.example.com"),
    (
        "SESSION_KEY",
        "bench-session-key-that-is-long-enough-0123456789",
    ),
    ("SMTP_URL", "smtp://127.0.0.1:25"),
];

/// Name of the shared test app.
pub const APP_NAME: &str = "E2E Shop";
/// Its slug (binary name).
pub const APP_SLUG: &str = "e2e-shop";

/// The app shared by this test run: generated with `--defaults`, built offline with the
/// workspace's target directory, `npm install` + `npm run build` for its assets.
pub fn generated_app() -> GeneratedApp {
    let base = target_dir().join("e2e");
    std::fs::create_dir_all(&base).expect("target/e2e");
    let lock = File::create(base.join("lock")).expect("lock file");
    lock.lock().expect("exclusive lock");
    let dir = base.join("app");
    let marker = base.join("ready");
    let run_id =
        std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| format!("pid-{}", std::process::id()));
    let app = GeneratedApp {
        binary: target_dir().join("debug").join(APP_SLUG),
        dir,
    };
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(run_id.as_str()) {
        prepare_app(&app).expect("the generated app builds");
        std::fs::write(&marker, &run_id).expect("marker");
    }
    app
}

fn prepare_app(app: &GeneratedApp) -> anyhow::Result<()> {
    let node_modules = app.dir.join("node_modules");
    let kept = app.dir.with_extension("node_modules");
    if node_modules.is_dir() {
        let _ = std::fs::remove_dir_all(&kept);
        std::fs::rename(&node_modules, &kept)?;
    }
    if app.dir.exists() {
        std::fs::remove_dir_all(&app.dir)?;
    }
    let parent = app.dir.parent().expect("app dir has a parent");
    let name = format!("project_name={APP_NAME}");
    run(
        Command::new(cli())
            .args(["new", "app", "--defaults", "--data", &name])
            .current_dir(parent)
            .stdin(Stdio::null()),
        "vibetuner new",
    )?;
    if kept.is_dir() {
        std::fs::rename(&kept, &node_modules)?;
    }
    run(
        Command::new(env!("CARGO"))
            .args(["build", "--offline"])
            .env("CARGO_TARGET_DIR", target_dir())
            .current_dir(&app.dir),
        "cargo build of the generated app",
    )?;
    // npm has been seen to hang after unpacking here: bound each attempt and retry once.
    let npm_install = || {
        run(
            Command::new("timeout")
                .args([
                    "180",
                    "npm",
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--prefer-offline",
                    "--ignore-scripts",
                ])
                .current_dir(&app.dir),
            "npm install in the generated app",
        )
    };
    npm_install().or_else(|_| npm_install())?;
    run(
        Command::new("npm")
            .args(["run", "build"])
            .env("CARGO_TARGET_DIR", target_dir())
            .current_dir(&app.dir),
        "npm run build in the generated app",
    )?;
    Ok(())
}

/// Generates `name` (its slug names the binary: one per test, so tests building at the same
/// time never share one) with `--defaults` in a scratch folder `tag-PID` for `vibetuner dev`,
/// removing an earlier run's `tag-*` copies: a copy of the same package still on disk would
/// let cargo take its build as fresh for this one.
pub fn dev_project(tag: &str, name: &str) -> PathBuf {
    let base = scratch_dir(tag);
    let mine = base.file_name().expect("a folder name").to_owned();
    for entry in std::fs::read_dir(base.parent().expect("target/e2e"))
        .expect("target/e2e")
        .flatten()
    {
        let other = entry.file_name();
        if other != mine && other.to_string_lossy().starts_with(&format!("{tag}-")) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let out = run_cli(
        &base,
        &[
            "new",
            "project",
            "--defaults",
            "--data",
            &format!("project_name={name}"),
        ],
    );
    assert!(
        out.status.success(),
        "vibetuner new: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    base.join("project")
}

/// `vibetuner dev` in its own process group, its output collected.
pub struct Dev {
    /// The `vibetuner dev` process.
    pub child: Child,
    log: Arc<Mutex<String>>,
}

impl Dev {
    /// Starts `vibetuner dev --port PORT` in `dir` (offline, the shared target directory,
    /// data under `dir/data`).
    pub fn start(dir: &Path, port: u16) -> Self {
        Self::start_with_target(dir, port, &target_dir())
    }

    /// [`Dev::start`] building into the Cargo target directory `target`.
    pub fn start_with_target(dir: &Path, port: u16, target: &Path) -> Self {
        let mut child = Command::new(cli())
            .args(["dev", "--port", &port.to_string()])
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", target)
            .env("CARGO_NET_OFFLINE", "true")
            .env("DATA_DIR", dir.join("data"))
            .env_remove("PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    eprintln!("[dev] {line}");
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Self { child, log }
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Polls `GET url` with `client` every `every` until a 2xx body contains `want`.
    ///
    /// # Panics
    /// After 30 minutes (first builds included), showing what `vibetuner dev` printed.
    pub async fn until_body(
        &self,
        client: &reqwest::Client,
        url: &str,
        want: &str,
        every: Duration,
    ) {
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            if let Ok(resp) = client.get(url).send().await
                && resp.status().is_success()
                && resp.text().await.is_ok_and(|body| body.contains(want))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{url} never answered with {want:?}; dev output:\n{}",
                self.log()
            );
            tokio::time::sleep(every).await;
        }
    }

    /// Every process below `vibetuner dev`.
    pub fn descendants(&self) -> Vec<u32> {
        let mut found = Vec::new();
        let mut parents = vec![self.child.id()];
        while let Some(parent) = parents.pop() {
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                // pid (comm) state ppid ...
                let after = &stat[stat.rfind(')').unwrap() + 2..];
                let ppid: u32 = after.split(' ').nth(1).unwrap().parse().unwrap();
                if ppid == parent {
                    found.push(pid);
                    parents.push(pid);
                }
            }
        }
        found
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// A project from [`dev_project`] with a CSS bundle, served by `vibetuner dev` on a free port:
/// its folder, `http://127.0.0.1:PORT` and the dev process, once `/hello` answers.
pub async fn dev_serving(tag: &str, name: &str) -> (PathBuf, String, Dev) {
    let dir = dev_project(tag, name);
    let css = dir.join("assets/statics/css/bundle.css");
    std::fs::create_dir_all(css.parent().expect("a folder")).expect("assets/statics/css");
    std::fs::write(&css, "body { margin: 0 }\n").expect("the CSS bundle");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dev = Dev::start(&dir, port);
    let client = reqwest::Client::new();
    dev.until_body(
        &client,
        &format!("{base}/hello"),
        "Hello, world!",
        Duration::from_millis(100),
    )
    .await;
    (dir, base, dev)
}

/// A `/_dev/reload` stream (`vibetuner dev`'s live-reload events), read event by event.
pub struct Events {
    resp: reqwest::Response,
    buffer: String,
}

impl Events {
    /// Opens the stream of the server at `base` (`http://127.0.0.1:PORT`).
    ///
    /// # Panics
    /// When it does not answer 200 with `text/event-stream`.
    pub async fn open(base: &str) -> Self {
        let resp = reqwest::Client::new()
            .get(format!("{base}/_dev/reload"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Self {
            resp,
            buffer: String::new(),
        }
    }

    /// The next event with its data, skipping keepalives.
    ///
    /// # Panics
    /// When none comes within 10 minutes or the stream ends.
    pub async fn next_any(&mut self) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = None;
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event = Some(name.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push(d);
                    }
                }
                if let Some(event) = event {
                    return (event, data.join("\n"));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.resp.chunk())
                .await
                .expect("no event within 10 minutes")
                .unwrap()
                .expect("the stream ended");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The data of the next event named `want` (others are skipped).
    pub async fn next(&mut self, want: &str) -> String {
        loop {
            let (event, data) = self.next_any().await;
            if event == want {
                return data;
            }
        }
    }
}

/// An empty folder under `target/e2e` for one test process.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = target_dir()
        .join("e2e")
        .join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// An empty folder `target/e2e/<tag>` that keeps its name across runs: an app built there
/// reuses its compiled artifacts instead of adding new ones (cargo treats a new path as a new
/// package). For one test at a time, like the shared app.
pub fn fixed_dir(tag: &str) -> PathBuf {
    let dir = target_dir().join("e2e").join(tag);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// A name no other test run uses (databases, Redis key prefixes): `tag`, the process id and the
/// time, so that services left running between runs never show a test an earlier run's data.
pub fn unique_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{tag}_{}_{nanos:x}", std::process::id())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A running app server, killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Port it listens on.
    pub port: u16,
    log: PathBuf,
}

impl Server {
    /// Starts `binary serve` in `dir` with only `env` (and PATH) in its environment; `DATA_DIR`
    /// defaults to a fresh folder so servers do not share an embedded store.
    pub fn start(binary: &Path, dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with(binary, dir, env, &[])
    }

    /// [`Server::start`] with more arguments to `serve` (`--worker`).
    pub fn start_with(
        binary: &Path,
        dir: &Path,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let name = unique_name("server");
        let log = std::env::temp_dir().join(format!("vibetuner-e2e-{name}.log"));
        let mut cmd = Command::new(binary);
        // Port 0: the server binds a free port itself and logs it, so no other process can
        // take the port between choosing and binding it.
        cmd.args(["serve", "--port", "0"])
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(Stdio::piped());
        if !env.iter().any(|(k, _)| *k == "DATA_DIR") {
            cmd.env("DATA_DIR", scratch_dir(&format!("data-{name}")));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[server] {line}");
            }
        });
        let mut server = Self {
            child,
            base: String::new(),
            port: 0,
            log,
        };
        server.port = server.wait_listening()?;
        server.base = format!("http://127.0.0.1:{}", server.port);
        Ok(server)
    }

    /// Waits for the server's "listening on http://127.0.0.1:PORT" line and returns the port.
    fn wait_listening(&mut self) -> anyhow::Result<u16> {
        const MARK: &str = "listening on http://127.0.0.1:";
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let log = self.log();
            // Digits count only once something follows them: the line may be half-written.
            if let Some(port) = log.split(MARK).nth(1).and_then(|rest| {
                let end = rest.find(|c: char| !c.is_ascii_digit())?;
                rest[..end].parse().ok()
            }) {
                return Ok(port);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("server exited ({status}) before listening; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("server did not listen within 30s; log:\n{}", self.log())
    }

    /// A client signed in as `email` through the login form, the dev outbox and the link's
    /// confirmation page, as a person would (it keeps cookies and does not follow redirects).
    ///
    /// # Panics
    /// When any step of the sign-in fails.
    pub async fn sign_in(&self, email: &str) -> reqwest::Client {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        let sent = client
            .post(format!("{}/auth/magic-link-login", self.base))
            .form(&[("email", email)])
            .send()
            .await
            .expect("the login form answers");
        assert!(
            sent.status().is_success(),
            "requesting a link for {email}: {}",
            sent.status()
        );
        let outbox = client
            .get(format!("{}/_dev/outbox", self.base))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("the dev outbox answers")
            .text()
            .await
            .expect("the dev outbox page");
        // Newest mail first: the link just sent.
        let at = outbox
            .find("/auth/email-verify/")
            .unwrap_or_else(|| panic!("no sign-in link in the dev outbox: {outbox}"));
        let link: String = outbox[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(*c))
            .collect();
        // The link opens a confirmation page whose button POSTs to the same address.
        let url = format!("{}{link}", self.base);
        let opened = client
            .get(&url)
            .header("accept", "text/html")
            .send()
            .await
            .expect("the sign-in link answers");
        assert_eq!(opened.status(), reqwest::StatusCode::OK, "opening {link}");
        let confirmed = client
            .post(&url)
            .header("accept", "text/html")
            .form(&[("replace", "")])
            .send()
            .await
            .expect("the confirmation answers");
        assert_eq!(
            confirmed.status(),
            reqwest::StatusCode::SEE_OTHER,
            "confirming {link}"
        );
        client
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's stdout so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal and waits for the process to exit.
    pub fn signal_and_wait(mut self, signal: &str) -> anyhow::Result<std::process::ExitStatus> {
        run(
            Command::new("kill").args([format!("-{signal}"), self.child.id().to_string()]),
            "kill",
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            ensure!(
                Instant::now() < deadline,
                "server did not exit within 10s of SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A minimal SMTP server on 127.0.0.1 that accepts every message and keeps it, so an app in
/// prod (which refuses to start without `SMTP_URL`) can send sign-in links that a bench reads.
pub struct SmtpSink {
    /// `smtp://127.0.0.1:PORT`, for `SMTP_URL`.
    pub url: String,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    /// Starts the sink on a free port (a thread per connection).
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let url = format!("smtp://{}", listener.local_addr().expect("bound"));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let kept = messages.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let _ = smtp_session(stream, &kept);
                });
            }
        });
        Self { url, messages }
    }

    /// Waits up to 10 s for a message containing `needle` and returns it (soft line breaks of
    /// quoted-printable text joined).
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .messages
                .lock()
                .expect("messages")
                .iter()
                .map(|m| m.replace("=\r\n", "").replace("=3D", "="))
                .find(|m| m.contains(needle));
            if let Some(message) = found {
                return message;
            }
            assert!(
                Instant::now() < deadline,
                "no mail containing {needle:?} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Serves one SMTP connection, keeping each message as soon as it is sent (a mailer may keep
/// the connection open for the next one).
fn smtp_session(stream: std::net::TcpStream, kept: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 sink ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => writer.write_all(b"250 sink\r\n")?,
            "DATA" => {
                writer.write_all(b"354 go on\r\n")?;
                let mut message = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line == ".\r\n" {
                        break;
                    }
                    message.push_str(&line);
                }
                kept.lock().expect("messages").push(message);
                writer.write_all(b"250 kept\r\n")?;
            }
            "QUIT" => {
                writer.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => writer.write_all(b"250 ok\r\n")?,
        }
    }
}
