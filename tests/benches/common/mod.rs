//! Helpers the benches share: a raw HTTP/1.1 request, sign-in through the SMTP sink, a
//! process's RSS and CPU time.
//! Each bench uses a part of them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use vibetuner_e2e::{APP_SLUG, GeneratedApp, SmtpSink, generated_app, target_dir};

/// The shared generated app, built in release; `binary` is the release binary.
pub(crate) fn release_app() -> GeneratedApp {
    let app = generated_app();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(&app.dir)
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "release build of the generated app failed"
    );
    GeneratedApp {
        binary: target_dir().join("release").join(APP_SLUG),
        dir: app.dir,
    }
}

/// Whether `/health/ping` answers 200 on the port.
pub(crate) fn ping_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.write_all(b"GET /health/ping HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && &buf[9..12] == b"200"
}

/// The resident memory of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    memory_kib(pid).rss
}

/// A process's resident memory in KiB, whole and split as `/proc/PID/status` splits it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    /// `VmRSS`.
    pub rss: u64,
    /// `RssAnon`: the process's own memory (heap, stacks).
    pub anon: u64,
    /// `RssFile`: mapped files, mostly the binary's code. How much of a file a touched page
    /// brings with it depends on how the file sits in the page cache, not on the process.
    pub file: u64,
}

/// The resident memory of a process.
pub(crate) fn memory_kib(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
    }
}

/// CPU time (user + system) a process has used, in milliseconds.
pub(crate) fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    ticks as f64 * 1000.0 / hz
}

/// Sends one request (`headers` end with `\r\n` each); returns the whole response.
pub(crate) fn send(port: u16, method: &str, path: &str, headers: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("server listens");
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: b\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Signs in as `email` (the link arrives at `smtp`); returns the `Cookie` header value.
pub(crate) fn sign_in(port: u16, smtp: &SmtpSink, email: &str) -> String {
    let form = format!("email={}", email.replace('@', "%40"));
    let sent = send(
        port,
        "POST",
        "/auth/magic-link-login",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        &form,
    );
    assert!(
        sent.starts_with("HTTP/1.1 200"),
        "requesting a link: {sent}"
    );
    // This address's message (a bench may sign in several users).
    let mail = smtp.wait_for(&format!("To: {email}"));
    let at = mail.find("/auth/email-verify/").expect("a link");
    let link: String = mail[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(*c))
        .collect();
    let opened = send(port, "GET", &link, "Accept: text/html\r\n", "");
    assert!(
        opened.starts_with("HTTP/1.1 200"),
        "opening the link shows a confirmation: {opened}"
    );
    let confirmed = send(
        port,
        "POST",
        &link,
        "Accept: text/html\r\nContent-Type: application/x-www-form-urlencoded\r\n",
        "replace=",
    );
    let cookies: Vec<&str> = confirmed
        .lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .filter_map(|c| c.split(';').next())
        .collect();
    assert!(
        !cookies.is_empty(),
        "no session cookie after confirming the link: {confirmed}"
    );
    cookies.join("; ")
}

/// Creates `n` notes through the API as the user whose `Cookie` header value is `cookie`;
/// returns the id of the last one.
pub(crate) fn seed_notes(port: u16, cookie: &str, n: usize) -> String {
    seed_notes_with(port, cookie, n, |i| {
        format!("Benchmark body number {i}, with a few words.")
    })
}

/// [`seed_notes`] with the body of note `i` from `body` (JSON-safe text).
pub(crate) fn seed_notes_with(
    port: u16,
    cookie: &str,
    n: usize,
    body: impl Fn(usize) -> String,
) -> String {
    let headers = format!("Content-Type: application/json\r\nCookie: {cookie}\r\n");
    let mut last = String::new();
    for i in 0..n {
        last = send(
            port,
            "POST",
            "/api/notes",
            &headers,
            &format!(r#"{{"title":"Note {i}","body":"{}"}}"#, body(i)),
        );
        assert!(last.starts_with("HTTP/1.1 201"), "seeding: {last}");
    }
    last.split("\"id\":\"")
        .nth(1)
        .and_then(|r| r.get(..24))
        .unwrap_or_else(|| panic!("no id in the create response: {last}"))
        .to_owned()
}

/// One HTTP/1.1 connection kept alive across requests.
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
}

/// A response: status, headers (lower-case names, in order) and body.
pub(crate) struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, lower-case names in order.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Conn {
    /// Connects to 127.0.0.1:`port`.
    pub(crate) fn open(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("the server listens");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("a timeout");
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// `GET path` (with a `Cookie` header if given), read to the end of the body.
    pub(crate) fn get(&mut self, path: &str, cookie: Option<&str>) -> Reply {
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        self.get_with(path, &cookie)
    }

    /// `GET path` with `headers` (whole lines, each ending in CRLF) added, read to the end of
    /// the body.
    pub(crate) fn get_with(&mut self, path: &str, headers: &str) -> Reply {
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n{headers}\r\n"
        )
        .expect("the request is sent");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("a header line");
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let mut body = Vec::new();
        if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(len, 0);
            self.reader.read_exact(&mut body).expect("the body");
        } else if header("transfer-encoding") == Some("chunked") {
            loop {
                line.clear();
                self.reader.read_line(&mut line).expect("a chunk size");
                let size = usize::from_str_radix(line.trim(), 16).expect("a hex chunk size");
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).expect("a chunk");
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// `text` with every `(from, to)` replaced.
fn masked(text: &str, masks: &[(&str, &str)]) -> String {
    masks
        .iter()
        .filter(|(from, _)| !from.is_empty())
        .fold(text.to_owned(), |t, (from, to)| t.replace(from, to))
}

/// The CSP nonce in a response's headers.
fn nonce_of(reply: &Reply) -> String {
    reply
        .headers
        .iter()
        .find(|(n, _)| n == "content-security-policy")
        .and_then(|(_, v)| v.split("'nonce-").nth(1))
        .and_then(|v| v.split('\'').next())
        .expect("a CSP nonce on /")
        .to_owned()
}

/// The response's request id (empty when there is none).
fn request_id_of(reply: &Reply) -> String {
    reply
        .headers
        .iter()
        .find(|(n, _)| n == "x-request-id")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// The headers of `/` as the baseline's `HEADERS` file wants them.
pub(crate) fn headers_file(reply: &Reply) -> String {
    let nonce = nonce_of(reply);
    let id = request_id_of(reply);
    reply
        .headers
        .iter()
        .filter(|(n, _)| !["date", "content-length"].contains(&n.as_str()))
        .map(|(n, v)| {
            format!(
                "{n}: {}\n",
                masked(v, &[(&nonce, "{nonce}"), (&id, "{request_id}")])
            )
        })
        .collect()
}

/// Panics unless the baseline's `/` matches the app's, nonce and request id aside.
pub(crate) fn assert_like_for_like(app: &Reply, base: &Reply) {
    let normal = |r: &Reply| {
        let nonce = nonce_of(r);
        let id = request_id_of(r);
        let masks = [(nonce.as_str(), "NONCE"), (id.as_str(), "ID")];
        let headers: BTreeMap<String, String> = r
            .headers
            .iter()
            .filter(|(n, _)| n != "date")
            .map(|(n, v)| (n.clone(), masked(v, &masks)))
            .collect();
        (headers, masked(&r.body, &masks))
    };
    let (app_headers, app_body) = normal(app);
    let (base_headers, base_body) = normal(base);
    assert_eq!(
        app_headers, base_headers,
        "the baseline's headers differ from the app's"
    );
    if app_body != base_body {
        let at = app_body
            .bytes()
            .zip(base_body.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(app_body.len().min(base_body.len()));
        let around = |s: &str| {
            s.get(at.saturating_sub(80)..(at + 80).min(s.len()))
                .unwrap_or("")
                .to_owned()
        };
        panic!(
            "the / baseline renders a different page from the app's at byte {at}:\napp:  {}\nbase: {}",
            around(&app_body),
            around(&base_body)
        );
    }
}

/// The arguments of `bare_axum` serving the like-for-like `/` of the app answering on `port`:
/// the app's headers for `/` go to `headers` (a file), then `PORT APP_DIR HEADERS` with
/// `{port}` for the port.
pub(crate) fn home_baseline_args(
    port: u16,
    app_dir: &std::path::Path,
    headers: &std::path::Path,
) -> Vec<String> {
    let home = Conn::open(port).get("/", None);
    assert_eq!(home.status, 200, "the app's /");
    std::fs::write(headers, headers_file(&home)).expect("the headers file");
    let hello = Conn::open(port).get_with(HELLO, HTMX);
    assert_eq!(hello.status, 200, "the app's {HELLO}");
    std::fs::write(headers.with_extension("hello"), headers_file(&hello))
        .expect("the /hello headers file");
    vec![
        "{port}".to_owned(),
        app_dir.to_string_lossy().into_owned(),
        headers.to_string_lossy().into_owned(),
    ]
}

/// Panics unless `bare_axum` on `base_port` answers `/` and htmx's `/hello` as the app on
/// `app_port` does (nonce and request id aside); returns the size of `/`.
pub(crate) fn check_home_baseline(app_port: u16, base_port: u16) -> usize {
    let app = Conn::open(app_port).get_with(HELLO, HTMX);
    let base = Conn::open(base_port).get_with(HELLO, HTMX);
    assert_like_for_like(&app, &base);
    let app = Conn::open(app_port).get("/", None);
    let base = Conn::open(base_port).get("/", None);
    assert_like_for_like(&app, &base);
    app.body.len()
}

/// The routed endpoint the benches measure through the whole stack: the generated app's
/// greeting, as htmx asks for it (`HTMX`), which renders one small block.
pub(crate) const HELLO: &str = "/hello";
/// The header htmx sends.
pub(crate) const HTMX: &str = "HX-Request: true\r\n";

/// The app `binary` serving in prod from `dir` on 127.0.0.1:`port`, with `env` on top of
/// [`PROD_ENV`] and logs at `log_level`, its output discarded.
pub(crate) fn spawn_prod(
    binary: &std::path::Path,
    dir: &std::path::Path,
    port: u16,
    env: &[(String, String)],
    log_level: &str,
) -> std::process::Child {
    Command::new(binary)
        .args(["serve", "--port", &port.to_string()])
        .current_dir(dir)
        .env_clear()
        .envs(vibetuner_e2e::PROD_ENV)
        .env("HOST", "127.0.0.1")
        .env("LOG_LEVEL", log_level)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the server starts")
}
