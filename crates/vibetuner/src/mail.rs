//! Outgoing email: SMTP through `lettre` when `SMTP_URL` is set; in development without mail
//! settings, a **dev outbox** that writes each message as a `.eml` file under
//! `<DATA_DIR>/outbox` and lists them at `/_dev/outbox`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;

use crate::config::Settings;

/// One message to send: HTML and plain-text bodies of the same content.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The recipient or sender address is malformed.
    #[error("invalid address {0:?}")]
    Address(String),
    /// The transport failed (SMTP error, unwritable outbox).
    #[error("cannot send email: {0}")]
    Transport(String),
}

impl crate::error::HttpStatus for MailError {
    /// 422 for a malformed address, 503 when the transport fails.
    fn status(&self) -> axum::http::StatusCode {
        match self {
            Self::Address(_) => axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            Self::Transport(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

enum Transport {
    /// Checked at startup, connected on the first send: lettre's pool starts a task of its
    /// own, which an app that sends no mail does not need.
    Smtp(
        AsyncSmtpTransportBuilder,
        OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
    ),
    Outbox(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

/// Sends mail through the configured transport; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    transport: Arc<Transport>,
    from: Arc<Mailbox>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("outbox", &self.outbox_dir())
            .finish()
    }
}

impl Mailer {
    /// Chooses the transport: `SMTP_URL` (e.g. `smtps://user:pass@smtp.example.com:465` or
    /// `smtp://host:587?tls=required`), else the dev outbox in `data_dir/outbox`. Production
    /// without `SMTP_URL` is an error: sign-in links would go nowhere.
    /// Without `MAIL_FROM`, mail comes from `"{site_name}" <noreply@{domain}>` (the name quoted
    /// as needed, whatever characters it holds).
    pub fn from_settings(
        settings: &Settings,
        data_dir: &Path,
        site_name: &str,
        domain: &str,
    ) -> anyhow::Result<Self> {
        let from = match settings.source.value("MAIL_FROM") {
            Some(text) => text.parse::<Mailbox>().map_err(|e| {
                anyhow::anyhow!(
                    "MAIL_FROM {text:?} is not an email address ({e}); set it like `Acme <noreply@acme.com>`"
                )
            })?,
            None => {
                let address = format!("noreply@{domain}").parse().map_err(|e| {
                    anyhow::anyhow!(
                        "noreply@{domain} (from fqdn in vibetuner.toml) is not an email address ({e}); set MAIL_FROM like `Acme <noreply@acme.com>`"
                    )
                })?;
                let name = site_name.replace(['\r', '\n'], " ");
                Mailbox::new(Some(name), address)
            }
        };
        let smtp_url = settings.source.value("SMTP_URL");
        let transport = match smtp_url {
            Some(url) => {
                let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| {
                    anyhow::anyhow!(
                        "SMTP_URL is not usable ({e}); expected smtps://user:password@host:465 or smtp://user:password@host:587?tls=required"
                    )
                })?;
                let builder = match settings.source.value("SMTP_CA_FILE") {
                    Some(file) => builder.tls(private_tls(url, Path::new(file))?),
                    None => builder,
                };
                Transport::Smtp(
                    builder.timeout(Some(Duration::from_secs(15))),
                    OnceLock::new(),
                )
            }
            None if settings.is_prod() => anyhow::bail!(
                "no mail settings in production: sign-in emails cannot be sent. Set SMTP_URL (e.g. smtps://user:password@smtp.example.com:465) and MAIL_FROM"
            ),
            None => {
                let dir = data_dir.join("outbox");
                Transport::Outbox(AsyncFileTransport::new(&dir), dir)
            }
        };
        Ok(Self {
            transport: Arc::new(transport),
            from: Arc::new(from),
        })
    }

    /// The dev outbox folder, when mail goes there.
    pub fn outbox_dir(&self) -> Option<&Path> {
        match self.transport.as_ref() {
            Transport::Outbox(_, dir) => Some(dir),
            Transport::Smtp(..) => None,
        }
    }

    /// Sends one message.
    pub async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|_| MailError::Address(mail.to.clone()))?;
        // A Message-ID on the sender's domain (spam filters mark mail without one; the
        // machine's host name, lettre's default, is often `localhost` in a container).
        let message_id = format!(
            "<{}@{}>",
            crate::security::random_token(18),
            self.from.email.domain()
        );
        let message = Message::builder()
            .from(Mailbox::clone(&self.from))
            .to(to)
            .message_id(Some(message_id))
            .subject(mail.subject)
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
            .map_err(|e| MailError::Transport(e.to_string()))?;
        match self.transport.as_ref() {
            Transport::Smtp(builder, smtp) => smtp
                .get_or_init(|| builder.clone().build())
                .send(message)
                .await
                .map(drop)
                .map_err(|e| MailError::Transport(e.to_string())),
            Transport::Outbox(file, dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| MailError::Transport(format!("{}: {e}", dir.display())))?;
                let id = file
                    .send(message)
                    .await
                    .map_err(|e| MailError::Transport(e.to_string()))?;
                tracing::info!(
                    "dev outbox: wrote {} (see /_dev/outbox)",
                    dir.join(format!("{id}.eml")).display()
                );
                let dir = dir.clone();
                let _ = tokio::task::spawn_blocking(move || prune_outbox(&dir, OUTBOX_KEEP)).await;
                Ok(())
            }
        }
    }
}

/// The TLS of `SMTP_URL` (`smtps://`, or `tls=required` / `tls=opportunistic`) with the
/// certificate authority in `ca_file` trusted beside the public ones.
fn private_tls(url: &str, ca_file: &Path) -> anyhow::Result<Tls> {
    use lettre::transport::smtp::client::{Certificate, TlsParameters};
    let unusable = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "SMTP_CA_FILE {} is not usable ({e}); expected a PEM certificate",
            ca_file.display()
        )
    };
    let pem = std::fs::read(ca_file).map_err(|e| unusable(&e))?;
    let ca = Certificate::from_pem(&pem).map_err(|e| unusable(&e))?;
    let parsed =
        url::Url::parse(url).map_err(|e| anyhow::anyhow!("SMTP_URL is not a URL ({e})"))?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let params = TlsParameters::builder(host)
        .add_root_certificate(ca)
        .build_rustls()
        .map_err(|e| unusable(&e))?;
    let mode = parsed
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    match (parsed.scheme(), mode.as_deref()) {
        ("smtps", _) => Ok(Tls::Wrapper(params)),
        ("smtp", Some("required")) => Ok(Tls::Required(params)),
        ("smtp", Some("opportunistic")) => Ok(Tls::Opportunistic(params)),
        _ => anyhow::bail!(
            "SMTP_CA_FILE is set but SMTP_URL uses no TLS: use smtps://host:465 or smtp://host:587?tls=required"
        ),
    }
}

/// Messages the dev outbox keeps: older ones are deleted as new ones come, so a flood of
/// sign-in requests cannot fill the disk (or make `/_dev/outbox` slow to list).
pub const OUTBOX_KEEP: usize = 500;

/// Deletes the oldest `.eml` files of `dir` beyond the newest `keep`.
fn prune_outbox(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut messages: Vec<_> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .filter_map(|e| Some((e.metadata().and_then(|m| m.modified()).ok()?, e.path())))
        .collect();
    if messages.len() <= keep {
        return;
    }
    messages.sort();
    for (_, path) in &messages[..messages.len() - keep] {
        let _ = std::fs::remove_file(path);
    }
}

/// A message in the dev outbox, as the listing shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxMessage {
    /// File name.
    pub file: String,
    /// Recipient(s).
    pub to: String,
    /// Subject.
    pub subject: String,
    /// When it was written (RFC 3339).
    pub date: String,
    /// The plain-text body.
    pub text: String,
    /// Every `http(s)://` link in the text body, in order.
    pub links: Vec<String>,
}

/// Reads the outbox, newest first.
pub fn read_outbox(dir: &Path) -> Vec<OutboxMessage> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let link = regex_lite::Regex::new(r"https?://[^\s<>\x22]+").expect("valid regex");
    let mut messages: Vec<(std::time::SystemTime, OutboxMessage)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .filter_map(|entry| {
            let modified = entry.metadata().and_then(|m| m.modified()).ok()?;
            let raw = std::fs::read(entry.path()).ok()?;
            let parsed = mail_parser::MessageParser::default().parse(&raw)?;
            let text = parsed
                .body_text(0)
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let to = parsed
                .to()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .unwrap_or_default()
                .to_owned();
            let links = link
                .find_iter(&text)
                .map(|m| m.as_str().to_owned())
                .collect();
            Some((
                modified,
                OutboxMessage {
                    file: entry.file_name().to_string_lossy().into_owned(),
                    to,
                    subject: parsed.subject().unwrap_or_default().to_owned(),
                    date: chrono::DateTime::<chrono::Utc>::from(modified).to_rfc3339(),
                    text,
                    links,
                },
            ))
        })
        .collect();
    messages.sort_by_key(|m| std::cmp::Reverse(m.0));
    messages.into_iter().map(|(_, m)| m).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_keeps_only_the_newest_messages() {
        let dir = tempfile::tempdir().unwrap();
        let start = std::time::SystemTime::now() - Duration::from_secs(100);
        for i in 0..8u64 {
            let file = std::fs::File::create(dir.path().join(format!("m{i}.eml"))).unwrap();
            file.set_modified(start + Duration::from_secs(i)).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not a message").unwrap();
        prune_outbox(dir.path(), 5);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "m3.eml",
                "m4.eml",
                "m5.eml",
                "m6.eml",
                "m7.eml",
                "notes.txt"
            ]
        );
    }
}
