//! Mail over SMTP to a real SMTP server: aiosmtpd (PyPI, pinned by `scripts/prerequisites.sh`),
//! started on a free loopback port for each test, keeping what it receives in a Maildir; in
//! plain text and with STARTTLS required, on a certificate made for the test by `openssl` and
//! trusted through `SMTP_CA_FILE`. The message is checked as the server received it: headers,
//! the plain and HTML parts, the link.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::SOURCE;
use vibetuner::App;
use vibetuner::testing::TestApp;

/// An aiosmtpd server writing each message it accepts to a Maildir.
struct SmtpServer {
    child: Child,
    port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

/// A self-signed certificate for `localhost` and its key, made with `openssl`.
fn certificate(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        // An end-entity certificate trusted as its own root (rustls refuses a CA certificate
        // presented as the server's own).
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(made.success(), "openssl made no certificate");
    (cert, key)
}

impl SmtpServer {
    /// A server; with STARTTLS required when `tls` holds a certificate and its key.
    fn start(tls: Option<(PathBuf, PathBuf)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(tls.iter().flat_map(|(cert, key)| {
                [
                    "--tlscert".into(),
                    cert.clone().into_os_string(),
                    "--tlskey".into(),
                    key.clone().into_os_string(),
                ]
            }))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (scripts/prerequisites.sh installs aiosmtpd)");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "aiosmtpd did not listen on {port}: is it installed (pip install aiosmtpd==1.4.6)?"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            maildir,
            _dir: dir,
        }
    }

    /// The messages received so far, raw.
    fn received(&self) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| std::fs::read(e.path()).unwrap())
            .collect()
    }

    /// Waits (10 s at most) for `n` messages.
    async fn wait_for(&self, n: usize) -> Vec<Vec<u8>> {
        for _ in 0..200 {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{} of {n} messages reached the SMTP server",
            self.received().len()
        );
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_mail_reaches_an_smtp_server_whole() {
    let server = SmtpServer::start(None);
    let url = format!("smtp://127.0.0.1:{}", server.port);
    sign_in_mail_through(&server, &[("SMTP_URL", url)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_mail_goes_over_starttls_to_a_server_with_a_private_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let server = SmtpServer::start(Some((cert.clone(), key)));
    let url = format!("smtp://localhost:{}?tls=required", server.port);
    sign_in_mail_through(
        &server,
        &[
            ("SMTP_URL", url),
            ("SMTP_CA_FILE", cert.display().to_string()),
        ],
    )
    .await;
}

/// Without `SMTP_CA_FILE` the same server's certificate is not trusted: nothing is sent, and the
/// visitor is told to try again (503), not shown a sign-in that will never arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_smtp_certificate_sends_nothing() {
    let certs = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(Some(certificate(certs.path())));
    let app = TestApp::builder(App::new(SOURCE))
        .setting(
            "SMTP_URL",
            format!("smtp://localhost:{}?tls=required", server.port),
        )
        .start()
        .await;
    let sent = app
        .client()
        .post_form("/auth/magic-link-login", &[("email", "ada@example.com")])
        .await;
    assert_eq!(sent.status(), 503, "{}", sent.text());
    assert!(sent.text().contains("could not be sent"), "{}", sent.text());
    assert!(server.received().is_empty());
}

/// Requests a sign-in link with `settings` and checks the message the server received.
async fn sign_in_mail_through(server: &SmtpServer, settings: &[(&str, String)]) {
    let mut builder =
        TestApp::builder(App::new(SOURCE)).setting("MAIL_FROM", "Fixture <noreply@fixture.test>");
    for (key, value) in settings {
        builder = builder.setting(key, value.clone());
    }
    let app = builder.start().await;
    let sent = app
        .client()
        .post_form("/auth/magic-link-login", &[("email", "ada@example.com")])
        .await;
    assert!(sent.status().is_success(), "{}", sent.text());
    assert!(app.outbox().is_empty(), "SMTP, not the dev outbox");

    let received = server.wait_for(1).await;
    assert_eq!(received.len(), 1, "in {}", server.maildir.display());
    let message = mail_parser::MessageParser::default()
        .parse(&received[0])
        .expect("a parsable message");
    let from = message.from().and_then(|a| a.first()).unwrap();
    assert_eq!(
        (from.name(), from.address()),
        (Some("Fixture"), Some("noreply@fixture.test"))
    );
    let to = message.to().and_then(|a| a.first()).unwrap();
    assert_eq!(to.address(), Some("ada@example.com"));
    assert!(
        message
            .subject()
            .unwrap_or_default()
            .starts_with("Sign in to"),
        "{:?}",
        message.subject()
    );
    assert!(message.date().is_some(), "a Date header");
    let id = message.message_id().expect("a Message-ID header");
    assert!(
        id.ends_with("@fixture.test"),
        "on the sender's domain: {id}"
    );
    let text = message.body_text(0).expect("a plain part").into_owned();
    let html = message.body_html(0).expect("an HTML part").into_owned();
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/auth/email-verify/"))
        .unwrap_or_else(|| panic!("no sign-in link in the plain part: {text}"));
    assert!(
        html.contains(&format!("href=\"{}\"", link.replace('&', "&amp;"))),
        "the HTML part links to the same address {link}: {html}"
    );
    // The link works: it opens the confirmation page.
    let path = &link[link.find("/auth/email-verify/").unwrap()..];
    let page = app.client().get(path).await;
    assert!(page.text().contains("Sign in as"), "{}", page.text());
}
