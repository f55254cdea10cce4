//! Helpers the benches share: a raw HTTP/1.1 request, sign-in through the SMTP sink, a
//! process's RSS and CPU time.
//! Each bench uses a part of them.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use vibetuner_e2e::{APP_SLUG, GeneratedApp, SmtpSink, generated_app, target_dir};

/// The shared generated app, built in release; `binary` is the release binary.
pub fn release_app() -> GeneratedApp {
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
pub fn ping_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.write_all(b"GET /health/ping HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && &buf[9..12] == b"200"
}

/// The resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used, in milliseconds.
pub fn cpu_ms(pid: u32) -> f64 {
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
pub fn send(port: u16, method: &str, path: &str, headers: &str, body: &str) -> String {
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
pub fn sign_in(port: u16, smtp: &SmtpSink, email: &str) -> String {
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
    let mail = smtp.wait_for("/auth/email-verify/");
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
