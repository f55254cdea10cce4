//! Every setting the framework reads, declared once: its name, type, default, whether it is a
//! secret, and one line of documentation. The app's `settings` command prints it with the
//! values in effect, `check` and `vibetuner doctor` name unknown keys that look like one of
//! these, and the README's settings table and the NixOS module's `settings` options
//! (`nix/settings.json`) are generated from it; a test fails when either is stale or when code
//! reads a framework setting this list does not declare.

use serde::Serialize;

/// What values a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    Bool,
    /// A whole number.
    Integer,
    /// A whole number of seconds.
    Seconds,
    /// A size in bytes.
    Bytes,
    /// A TCP port.
    Port,
    /// Free text.
    Text,
    /// A URL.
    Url,
    /// Comma-separated values.
    List,
    /// One of a few words (see [`SettingInfo::choices`]).
    Enum,
}

/// Which part of the framework reads a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    /// The app as a whole: environment, secrets, logging, look.
    App,
    /// The HTTP server and its limits.
    Server,
    /// MongoDB, Redis, mail.
    Services,
    /// Background jobs, the worker and server-sent events.
    Jobs,
    /// Proxies, CSRF, content security policy.
    Security,
    /// Accounts: magic links, OAuth providers.
    Auth,
}

/// One setting of the framework.
#[derive(Debug, Clone, Serialize)]
pub struct SettingInfo {
    /// The environment variable (upper case); a name with `<PROVIDER>` stands for one per
    /// OAuth provider, e.g. `GITHUB_CLIENT_ID`.
    pub name: &'static str,
    /// The part of the framework that reads it.
    pub section: Section,
    /// What values it takes.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The allowed words of an [`Kind::Enum`].
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub choices: &'static [&'static str],
    /// The value used when it is unset, or how it is worked out (see `computed`); `None`: unset
    /// means off or absent.
    pub default: Option<&'static str>,
    /// True when `default` describes how the value is worked out rather than being one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub computed: bool,
    /// A secret (or a URL that may hold a password): never logged, shown redacted, kept out
    /// of the Nix store.
    pub secret: bool,
    /// One line of documentation.
    pub doc: &'static str,
}

const fn setting(
    name: &'static str,
    section: Section,
    kind: Kind,
    default: Option<&'static str>,
    doc: &'static str,
) -> SettingInfo {
    SettingInfo {
        name,
        section,
        kind,
        choices: &[],
        default,
        computed: false,
        secret: false,
        doc,
    }
}

const fn secret(
    name: &'static str,
    section: Section,
    kind: Kind,
    doc: &'static str,
) -> SettingInfo {
    SettingInfo {
        secret: true,
        ..setting(name, section, kind, None, doc)
    }
}

const fn computed(
    name: &'static str,
    section: Section,
    kind: Kind,
    how: &'static str,
    doc: &'static str,
) -> SettingInfo {
    SettingInfo {
        computed: true,
        ..setting(name, section, kind, Some(how), doc)
    }
}

use Kind::{Bool, Bytes, Enum, Integer, List, Port, Seconds, Text, Url};
use Section::{App, Auth, Jobs, Security, Server, Services};

/// Every setting the framework reads, by section.
pub const SETTINGS: &[SettingInfo] = &[
    SettingInfo {
        choices: &["dev", "prod"],
        ..setting(
            "ENVIRONMENT",
            App,
            Enum,
            Some("dev"),
            "prod requires a strong SESSION_KEY, a public origin and a mail transport, and turns on JSON logs and static caching",
        )
    },
    setting(
        "DEBUG",
        App,
        Bool,
        Some("false"),
        "verbose error pages and debug helpers",
    ),
    secret(
        "SESSION_KEY",
        App,
        Text,
        "signs sessions and tokens; prod refuses it empty, a placeholder or under 32 characters (`vibetuner crypto generate`)",
    ),
    setting(
        "APP_VERSION",
        App,
        Text,
        None,
        "overrides the compiled-in version (statics' cache busting, /health)",
    ),
    setting(
        "LOG_LEVEL",
        App,
        Text,
        Some("info"),
        "a level, or target=level pairs such as info,vibetuner=debug",
    ),
    SettingInfo {
        choices: &["json", "pretty"],
        ..computed(
            "LOG_FORMAT",
            App,
            Enum,
            "json in prod, pretty in dev",
            "log lines as JSON or for people",
        )
    },
    computed(
        "TEMPLATE_RELOAD",
        App,
        Bool,
        "true in dev",
        "re-read templates on every render",
    ),
    setting(
        "DEV_RELOAD",
        App,
        Bool,
        Some("false"),
        "serve /_dev/reload and the live-reload script (set by `vibetuner dev`; ignored in prod)",
    ),
    computed(
        "DATA_DIR",
        App,
        Text,
        "<root>/data",
        "folder of the embedded store, worker heartbeat and other local data",
    ),
    setting(
        "BRAND_NAME",
        App,
        Text,
        None,
        "the site name pages and emails show (else the project name)",
    ),
    setting(
        "BRAND_PRIMARY_COLOR",
        App,
        Text,
        None,
        "the primary colour as #rgb or #rrggbb",
    ),
    setting(
        "BRAND_LOGO",
        App,
        Text,
        None,
        "the header's logo: a URL (https://…, /…) or a file under assets/statics",
    ),
    setting(
        "THEMES",
        App,
        List,
        Some("light,dark"),
        "the daisyUI themes the theme switcher offers (each built into assets/config.css)",
    ),
    computed(
        "HOST",
        Server,
        Text,
        "127.0.0.1 in dev, 0.0.0.0 in prod",
        "address `serve` listens on",
    ),
    setting(
        "PORT",
        Server,
        Port,
        Some("8000"),
        "port `serve` listens on",
    ),
    setting(
        "MAX_BODY_SIZE",
        Server,
        Bytes,
        Some("2097152"),
        "largest request body accepted",
    ),
    setting(
        "SHUTDOWN_TIMEOUT",
        Server,
        Seconds,
        Some("30"),
        "time in-flight requests and tasks get to finish after SIGTERM",
    ),
    setting(
        "HEADER_READ_TIMEOUT",
        Server,
        Seconds,
        Some("10"),
        "time a client has to send a request's headers",
    ),
    setting(
        "BODY_READ_TIMEOUT",
        Server,
        Seconds,
        Some("15"),
        "longest pause inside a request body before the request is refused (and the grace before BODY_MIN_RATE counts)",
    ),
    setting(
        "BODY_MIN_RATE",
        Server,
        Integer,
        Some("1024"),
        "bytes per second a request body must average once BODY_READ_TIMEOUT has passed",
    ),
    setting(
        "SEND_TIMEOUT",
        Server,
        Seconds,
        Some("30"),
        "time a response may wait for a client that stopped reading before its connection is closed",
    ),
    setting(
        "SEND_BUFFER_BUDGET",
        Server,
        Bytes,
        Some("134217728"),
        "response bytes waiting for slow clients across all connections; over it, a client that stopped reading for a second is dropped",
    ),
    setting(
        "REQUEST_TIMEOUT",
        Server,
        Seconds,
        Some("60"),
        "time a handler has to produce its response (streams, once started, are not counted); then 503",
    ),
    setting(
        "KEEPALIVE_TIMEOUT",
        Server,
        Seconds,
        Some("75"),
        "time an idle keep-alive connection stays open (longer than a proxy's usual 60)",
    ),
    computed(
        "MAX_CONNECTIONS",
        Server,
        Integer,
        "10000, or half the open-file limit when lower",
        "connections served at once; more are refused",
    ),
    setting(
        "MAX_CONNECTIONS_PER_IP",
        Server,
        Integer,
        Some("100"),
        "connections from one address (IPv6: one /64); trusted proxies are exempt",
    ),
    setting(
        "REQUESTS_PER_CLIENT",
        Server,
        Integer,
        Some("4"),
        "requests one client (signed-in user, else address) has in its handlers at once; more wait, past 100 waiting 429",
    ),
    SettingInfo {
        choices: &["full", "normal"],
        ..computed(
            "STORE_SYNC",
            Services,
            Enum,
            "full in prod, normal in dev",
            "embedded store: each write waits until it is on disk (full: survives a power loss) or only handed to the OS (normal: survives a killed process, about 7x the commits/s)",
        )
    },
    setting(
        "STORE_READ_TIMEOUT",
        Services,
        Seconds,
        Some("5"),
        "time one store read (find, count) may run before it is stopped and the request answers 503",
    ),
    setting(
        "STORE_TTL_INTERVAL",
        Services,
        Seconds,
        Some("60"),
        "time between sweeps of expired documents in the embedded store",
    ),
    secret(
        "MONGODB_URL",
        Services,
        Url,
        "MongoDB connection string (database from its path, else the project slug); unset: the embedded store",
    ),
    secret(
        "REDIS_URL",
        Services,
        Url,
        "Redis for sessions, the task queue, SSE fan-out and rate limits; unset: in-process fallbacks",
    ),
    secret(
        "SMTP_URL",
        Services,
        Url,
        "mail transport, smtps://user:password@host:465 or smtp://…:587?tls=required; unset: the dev outbox (prod refuses)",
    ),
    setting(
        "SMTP_CA_FILE",
        Services,
        Text,
        None,
        "PEM file of a certificate authority the SMTP server's certificate may chain to (a private relay), beside the public ones",
    ),
    computed(
        "MAIL_FROM",
        Services,
        Text,
        "<site name> <noreply@fqdn, else BASE_URL's host>",
        "sender of the framework's emails, like `Acme <noreply@acme.com>`",
    ),
    computed(
        "REDIS_KEY_PREFIX",
        Jobs,
        Text,
        "<project_slug>:",
        "prefix of every Redis key the framework writes",
    ),
    setting(
        "WORKER_CONCURRENCY",
        Jobs,
        Integer,
        Some("16"),
        "tasks one worker runs at once",
    ),
    setting(
        "TASK_VISIBILITY_TIMEOUT",
        Jobs,
        Seconds,
        Some("30"),
        "time after which a task whose worker stopped renewing it goes to another worker",
    ),
    setting(
        "WORKER_HEARTBEAT_INTERVAL",
        Jobs,
        Seconds,
        Some("5"),
        "time between worker heartbeats; `worker-health` fails after three missed",
    ),
    setting(
        "WORKER_STALL_TIMEOUT",
        Jobs,
        Seconds,
        Some("60"),
        "time the worker's runtime may stall before its watchdog exits for a restart",
    ),
    setting(
        "SSE_KEEPALIVE",
        Jobs,
        Seconds,
        Some("30"),
        "time between keepalive comments on SSE streams",
    ),
    setting(
        "SSE_BUFFER_SIZE",
        Jobs,
        Integer,
        Some("100"),
        "events kept per channel for Last-Event-ID replay",
    ),
    setting(
        "SSE_BUFFER_BYTES",
        Jobs,
        Bytes,
        Some("1048576"),
        "bytes kept per channel for replay, and queued per subscriber before it is dropped as too slow",
    ),
    setting(
        "SSE_REPLAY_BUDGET",
        Jobs,
        Bytes,
        Some("67108864"),
        "bytes of replay kept across all channels of a process (least recently active dropped first; only channels followed in the last day keep any)",
    ),
    setting(
        "SSE_MAX_SUBSCRIBERS",
        Jobs,
        Integer,
        Some("5000"),
        "SSE streams open at once in a process",
    ),
    setting(
        "SSE_MAX_SUBSCRIBERS_PER_IP",
        Jobs,
        Integer,
        Some("32"),
        "SSE streams open at once from one client address",
    ),
    setting(
        "TRUSTED_PROXIES",
        Security,
        List,
        Some("127.0.0.1,::1"),
        "addresses or CIDR ranges whose X-Forwarded-* headers are believed",
    ),
    setting(
        "CSRF_TRUSTED_ORIGINS",
        Security,
        List,
        None,
        "other origins allowed to send unsafe requests (besides the app's own)",
    ),
    computed(
        "CONTENT_SECURITY_POLICY",
        Security,
        Text,
        "a strict policy with per-request script nonces",
        "replaces the Content-Security-Policy header; {nonce} is substituted",
    ),
    computed(
        "BASE_URL",
        Auth,
        Url,
        "https://<fqdn> in prod",
        "the public origin for links in emails and OAuth callbacks",
    ),
    setting(
        "AUTH_RATE_LIMIT",
        Auth,
        Text,
        Some("5/minute"),
        "sign-in attempts allowed per address and per email, as N/second, N/minute, N/hour or N/day",
    ),
    setting(
        "SESSION_RATE_LIMIT",
        Auth,
        Text,
        Some("60/minute"),
        "sessions a visitor who is not signed in may start per address (a flash, an OAuth start); over it none is stored",
    ),
    setting(
        "VIBETUNER_COMPAT",
        Auth,
        Bool,
        Some("false"),
        "accept sessions and magic links issued by a Python Vibetuner app during a takeover",
    ),
    setting(
        "OAUTH_PROVIDERS",
        Auth,
        List,
        None,
        "custom OAuth providers to enable by id (google and github need only their credentials)",
    ),
    setting(
        "<PROVIDER>_CLIENT_ID",
        Auth,
        Text,
        None,
        "an OAuth provider's client id (GOOGLE_, GITHUB_ or a custom id)",
    ),
    secret(
        "<PROVIDER>_CLIENT_SECRET",
        Auth,
        Text,
        "an OAuth provider's client secret",
    ),
    setting(
        "<PROVIDER>_ISSUER_URL",
        Auth,
        Url,
        None,
        "a custom provider's OpenID Connect issuer (endpoints discovered)",
    ),
    setting(
        "<PROVIDER>_AUTHORIZE_URL",
        Auth,
        Url,
        None,
        "a custom provider's authorization endpoint",
    ),
    setting(
        "<PROVIDER>_TOKEN_URL",
        Auth,
        Url,
        None,
        "a custom provider's token endpoint",
    ),
    setting(
        "<PROVIDER>_USERINFO_URL",
        Auth,
        Url,
        None,
        "a custom provider's user-info endpoint",
    ),
    setting(
        "<PROVIDER>_EMAILS_URL",
        Auth,
        Url,
        None,
        "a custom provider's endpoint listing verified emails",
    ),
    setting(
        "<PROVIDER>_SCOPES",
        Auth,
        List,
        None,
        "scopes to request (the preset's, else openid,email,profile)",
    ),
    setting(
        "<PROVIDER>_NAME",
        Auth,
        Text,
        None,
        "the provider's name on the sign-in page",
    ),
];

/// The declaration of `key` (case-insensitive), a `<PROVIDER>_…` one for provider keys.
pub fn setting_info(key: &str) -> Option<&'static SettingInfo> {
    let key = key.to_ascii_uppercase();
    SETTINGS
        .iter()
        .find(|s| match s.name.strip_prefix("<PROVIDER>") {
            Some(suffix) => key.len() > suffix.len() && key.ends_with(suffix),
            None => s.name == key,
        })
}

/// The framework setting `key` was probably meant to be: one a letter or two away (a typo of
/// `SESSION_KEY` such as `SESION_KEY`), `None` when it is one, or is nothing like any.
pub fn likely_typo(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_uppercase();
    if setting_info(&key).is_some() {
        return None;
    }
    SETTINGS
        .iter()
        .filter(|s| !s.name.starts_with('<'))
        .map(|s| (strsim::damerau_levenshtein(&key, s.name), s.name))
        .filter(|(distance, name)| *distance <= 2 && name.len() >= 5)
        .min()
        .map(|(_, name)| name)
}

/// Every framework setting with the value `source` gives it, by section: secrets as `(set,
/// hidden)`, unset ones with their default. Per-provider settings are listed for each key set.
pub fn describe(source: &super::Source) -> String {
    let mut out = String::new();
    let mut section = None;
    for s in SETTINGS {
        if section != Some(s.section) {
            section = Some(s.section);
            out += &format!(
                "{}# {:?}\n",
                if out.is_empty() { "" } else { "\n" },
                s.section
            )
            .to_ascii_lowercase();
        }
        let keys: Vec<String> = match s.name.strip_prefix("<PROVIDER>") {
            Some(suffix) => {
                let mut keys: Vec<String> = source
                    .keys()
                    .filter(|k| k.len() > suffix.len() && k.ends_with(suffix))
                    .map(str::to_owned)
                    .collect();
                keys.sort();
                keys
            }
            None => vec![s.name.to_owned()],
        };
        for key in keys {
            let shown = match (source.value(&key), s.default) {
                (Some(_), _) if s.secret => "(set, hidden)".to_owned(),
                (Some(value), _) => value.to_owned(),
                (None, Some(default)) if s.computed => format!("(default: {default})"),
                (None, Some(default)) => format!("{default} (default)"),
                (None, None) => "(unset)".to_owned(),
            };
            out += &format!("{key:<28} {shown}\n");
        }
    }
    out
}

/// A warning for each key in `source` that nothing reads but that is one or two letters away
/// from a framework setting (`SESION_KEY`), naming the setting.
pub fn typo_warnings(source: &super::Source) -> Vec<String> {
    let mut warnings: Vec<String> = source
        .keys()
        .filter_map(|key| {
            likely_typo(key).map(|meant| {
                format!("{key} is set, but no setting has that name: did you mean {meant}?")
            })
        })
        .collect();
    warnings.sort();
    warnings
}

/// The settings table of the README, in Markdown.
#[cfg(test)]
fn markdown_table() -> String {
    let mut out = String::from(
        "| Setting | Type | Default | Secret | What it does |\n|---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        let kind = match s.kind {
            Enum => s.choices.join(" \\| "),
            other => format!("{other:?}").to_ascii_lowercase(),
        };
        let default = match (s.default, s.computed) {
            (None, _) => String::new(),
            (Some(d), true) => d.to_owned(),
            (Some(d), false) => format!("`{d}`"),
        };
        out += &format!(
            "| `{}` | {kind} | {default} | {} | {} |\n",
            s.name,
            if s.secret { "yes" } else { "" },
            s.doc.replace('|', "\\|")
        );
    }
    out
}

/// `nix/settings.json`: the registry for the NixOS module's options.
#[cfg(test)]
fn json() -> String {
    serde_json::to_string_pretty(SETTINGS).expect("the registry serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::{JobsSettings, Settings, Source};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The setting names the framework's code reads: string literals handed to `Source`'s
    /// readers (`get`, `value`, `parse`, `bool`, `positive`, `rate`), and per provider `pick("X")` and
    /// `format!("{p}_X")` (as `<PROVIDER>_X`); doc comments and tests left out.
    fn keys_read() -> BTreeSet<String> {
        let reader = regex_lite::Regex::new(
            r#"\b(?:get|value|parse(?:::<[^>]+>)?|bool|positive|rate)\(\s*(?:&?source,\s*)?"([A-Z][A-Z0-9_]+)""#,
        )
        .unwrap();
        let provider =
            regex_lite::Regex::new(r#"(?:\bpick\(|format!\("\{p\}_)"?([A-Z][A-Z0-9_]+)"#).unwrap();
        let mut files = Vec::new();
        sources(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let mut keys = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                keys.extend(reader.captures_iter(line).map(|c| c[1].to_owned()));
                keys.extend(
                    provider
                        .captures_iter(line)
                        .map(|c| format!("<PROVIDER>_{}", &c[1])),
                );
            }
        }
        keys
    }

    #[test]
    fn every_setting_the_code_reads_is_declared_and_every_declared_one_is_read() {
        let read = keys_read();
        assert!(read.len() > 40, "the scan found too little: {read:?}");
        let declared: BTreeSet<String> = SETTINGS.iter().map(|s| s.name.to_owned()).collect();
        let undeclared: Vec<_> = read.difference(&declared).collect();
        assert!(
            undeclared.is_empty(),
            "read but not declared in config/registry.rs: {undeclared:?}"
        );
        let unread: Vec<_> = declared.difference(&read).collect();
        assert!(unread.is_empty(), "declared but never read: {unread:?}");
    }

    #[test]
    fn names_are_unique_and_documented() {
        let mut seen = BTreeSet::new();
        for s in SETTINGS {
            assert!(seen.insert(s.name), "{} declared twice", s.name);
            assert!(
                !s.doc.is_empty() && !s.doc.ends_with('.'),
                "{}: one line, no final stop",
                s.name
            );
            assert_eq!(s.kind == Enum, !s.choices.is_empty(), "{}", s.name);
        }
    }

    /// Setting a key to its declared default changes nothing: the declaration says what the
    /// code does when the key is unset.
    #[test]
    fn declared_defaults_are_the_defaults_in_effect() {
        let typed = |pairs: &[(&str, &str)]| -> Result<String, String> {
            let source = Source::from_pairs(pairs.iter().copied());
            let mut settings = Settings::from_source(source).map_err(|e| e.to_string())?;
            let jobs = JobsSettings::from_source(&settings.source).map_err(|e| e.to_string())?;
            let security = crate::security::SecurityConfig::from_settings(&settings)
                .map_err(|e| e.to_string())?;
            settings.source = Source::default();
            Ok(format!("{settings:?}\n{jobs:?}\n{security:?}"))
        };
        let unset = typed(&[]);
        let mut checked = 0;
        for s in SETTINGS
            .iter()
            .filter(|s| !s.computed && !s.name.starts_with('<'))
        {
            let Some(default) = s.default else { continue };
            assert_eq!(typed(&[(s.name, default)]), unset, "{} = {default}", s.name);
            if s.kind != Bool {
                let other = match s.kind {
                    Port | Integer | Seconds | Bytes => "7",
                    _ => "x,y",
                };
                if typed(&[(s.name, other)]) != unset {
                    checked += 1;
                }
            }
        }
        assert!(
            checked >= 20,
            "only {checked} settings were seen to change anything"
        );
    }

    #[test]
    fn settings_are_described_with_their_values_secrets_hidden() {
        let source = Source::from_pairs([
            ("PORT", "9000"),
            ("SESSION_KEY", "s3cret-value"),
            ("GITHUB_CLIENT_ID", "gh-id"),
            ("SESION_KEY", "typo"),
        ]);
        let text = describe(&source);
        assert!(text.contains("# server\n"), "{text}");
        assert!(
            text.contains("\nPORT                         9000\n"),
            "{text}"
        );
        assert!(
            text.contains("\nSESSION_KEY                  (set, hidden)\n"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("\nGITHUB_CLIENT_ID             gh-id\n"),
            "{text}"
        );
        assert!(
            text.contains("\nWORKER_CONCURRENCY           16 (default)\n"),
            "{text}"
        );
        assert!(
            text.contains("\nHOST                         (default: 127.0.0.1 in dev"),
            "{text}"
        );
        assert_eq!(
            typo_warnings(&source),
            ["SESION_KEY is set, but no setting has that name: did you mean SESSION_KEY?"]
        );
    }

    #[test]
    fn typos_of_settings_are_named() {
        assert_eq!(likely_typo("SESION_KEY"), Some("SESSION_KEY"));
        assert_eq!(likely_typo("redis_ulr"), Some("REDIS_URL"));
        assert_eq!(likely_typo("SESSION_KEY"), None);
        assert_eq!(likely_typo("GITHUB_CLIENT_SECRET"), None);
        assert_eq!(likely_typo("ARCHIVE_RETENTION_DAYS"), None);
        assert_eq!(likely_typo("PATH"), None);
    }

    /// The generated files are what the registry says today; `VIBETUNER_WRITE_GENERATED=1`
    /// rewrites them.
    #[test]
    fn the_readme_table_and_the_nix_options_are_generated_from_the_registry() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let write = std::env::var_os("VIBETUNER_WRITE_GENERATED").is_some();
        let readme_path = repo.join("README.md");
        let readme = std::fs::read_to_string(&readme_path).unwrap();
        let (begin, end) = ("<!-- settings:begin -->\n", "<!-- settings:end -->");
        let start = readme
            .find(begin)
            .expect("README.md has the settings markers")
            + begin.len();
        let stop = readme
            .find(end)
            .expect("README.md has the settings markers");
        let table = markdown_table();
        let nix_path = repo.join("nix/settings.json");
        let nix = std::fs::read_to_string(&nix_path).unwrap_or_default();
        if write {
            std::fs::write(
                &readme_path,
                format!("{}{table}{}", &readme[..start], &readme[stop..]),
            )
            .unwrap();
            std::fs::write(&nix_path, json()).unwrap();
            return;
        }
        assert!(
            readme[start..stop] == table,
            "README.md's settings table is stale: run VIBETUNER_WRITE_GENERATED=1 cargo test -p vibetuner the_readme_table"
        );
        assert!(
            nix == json(),
            "nix/settings.json is stale: run VIBETUNER_WRITE_GENERATED=1 cargo test -p vibetuner the_readme_table"
        );
    }
}
