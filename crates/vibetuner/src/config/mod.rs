//! Typed settings read from the process environment, systemd credentials, `.env` and
//! `.env.local`.
//!
//! Precedence (highest first): process environment, the files in `$CREDENTIALS_DIRECTORY`
//! (systemd's `LoadCredential=`; each file named like a setting holds its value, so secrets never
//! enter the environment), `<root>/.env.local`, `<root>/.env`, built-in defaults. Keys are
//! case-insensitive.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod registry;

pub use registry::{
    Kind, SETTINGS, Section, SettingInfo, describe, likely_typo, setting_info, typo_warnings,
};

/// Session keys that ship in templates and docs; refused in production.
pub const PLACEHOLDER_SESSION_KEYS: &[&str] = &[
    "CHANGE_ME_RUN_vibetuner_crypto_generate",
    "ct-!secret-must-change-me",
];

/// Minimum length of a production session key.
pub const MIN_SESSION_KEY_LEN: usize = 32;

/// Least entropy a production session key must show (see [`estimated_bits`]): 32 random hex
/// digits show about 115, a generated key about 350; 36 times `a` shows 0.
const MIN_SESSION_KEY_BITS: f64 = 96.0;

/// The key's length times the Shannon entropy of its characters: an upper bound on the
/// guessing work for keys made of repeats or few distinct characters, which it refuses.
fn estimated_bits(key: &str) -> f64 {
    let mut counts = HashMap::new();
    for c in key.chars() {
        *counts.entry(c).or_insert(0_u32) += 1;
    }
    let len = key.chars().count() as f64;
    let per_char: f64 = counts
        .values()
        .map(|&n| {
            let p = f64::from(n) / len;
            -p * p.log2()
        })
        .sum();
    per_char * len
}

/// A setting that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A value does not parse as the setting's type.
    #[error("invalid value for {key}: {value:?} is not {expected}")]
    Invalid {
        /// The setting name (upper case).
        key: String,
        /// The offending value.
        value: String,
        /// What was expected, in words.
        expected: String,
    },
    /// The session key is unusable in production.
    #[error(
        "SESSION_KEY {problem} while ENVIRONMENT=prod. Generate a key with `vibetuner crypto generate-key` (or `openssl rand -base64 48`) and set SESSION_KEY in the environment or in .env.local"
    )]
    WeakSessionKey {
        /// What is wrong with the key.
        problem: &'static str,
    },
    /// A credential in `$CREDENTIALS_DIRECTORY` cannot be read.
    #[error("cannot read the credential {path}: {reason}")]
    Credential {
        /// The file (or the folder).
        path: PathBuf,
        /// The system's message.
        reason: String,
    },
    /// Production needs a public origin for the links it sends and the pages that name it.
    #[error(
        "no public origin while ENVIRONMENT=prod: emailed sign-in links and sitemap URLs would be built from whatever Host a request claims. Set BASE_URL (e.g. https://example.com) or fqdn in vibetuner.toml"
    )]
    NoPublicOrigin,
    /// A dotenv file exists but cannot be parsed.
    #[error("cannot read {path}: {reason}")]
    DotenvFile {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
}

/// Deployment environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Development: template reload, relaxed checks, no static caching.
    #[default]
    Dev,
    /// Production: strict checks, JSON logs, immutable static caching.
    Prod,
}

impl FromStr for Environment {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "dev" | "development" => Ok(Self::Dev),
            "prod" | "production" => Ok(Self::Prod),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dev => "dev",
            Self::Prod => "prod",
        })
    }
}

/// The merged key/value source (environment over `.env.local` over `.env`), keys upper-cased.
#[derive(Debug, Clone, Default)]
pub struct Source {
    values: HashMap<String, String>,
}

impl Source {
    /// Reads `.env` and `.env.local` from `root`, then the credentials in
    /// `$CREDENTIALS_DIRECTORY` (when set), then overlays the process environment.
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        Self::layered(root, credentials.as_deref(), std::env::vars())
    }

    /// The layers of [`Source::load`], lowest first: `.env`, `.env.local`, the credentials in
    /// `credentials`, then `env`.
    pub fn layered<K: AsRef<str>, V: Into<String>>(
        root: &Path,
        credentials: Option<&Path>,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        let mut source = Self::default();
        for name in [".env", ".env.local"] {
            source.overlay_file(&root.join(name))?;
        }
        if let Some(dir) = credentials {
            source.overlay_credentials(dir)?;
        }
        source.overlay(env);
        Ok(source)
    }

    /// Overlays systemd credentials: every regular file in `dir` named like a setting (letters,
    /// digits and `_`) sets that setting to its contents, without a final line break. Other
    /// files are left alone.
    pub fn overlay_credentials(&mut self, dir: &Path) -> Result<(), ConfigError> {
        let bad = |path: &Path, e: std::io::Error| ConfigError::Credential {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut pairs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| bad(dir, e))? {
            let path = entry.map_err(|e| bad(dir, e))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let setting_name = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !setting_name || !path.is_file() {
                continue;
            }
            let value = std::fs::read_to_string(&path).map_err(|e| bad(&path, e))?;
            let value = value.strip_suffix('\n').unwrap_or(&value);
            let value = value.strip_suffix('\r').unwrap_or(value);
            pairs.push((name.to_owned(), value.to_owned()));
        }
        self.overlay(pairs);
        Ok(())
    }

    /// Builds a source from explicit pairs (tests, embedding).
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut source = Self::default();
        source.overlay(pairs);
        source
    }

    /// Overlays pairs; later values win.
    pub fn overlay<K: AsRef<str>, V: Into<String>>(
        &mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) {
        for (k, v) in pairs {
            self.values
                .insert(k.as_ref().to_ascii_uppercase(), v.into());
        }
    }

    /// Overlays a dotenv file if it exists.
    pub fn overlay_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        if !path.is_file() {
            return Ok(());
        }
        let bad = |e: dotenvy::Error| ConfigError::DotenvFile {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let pairs = dotenvy::from_path_iter(path)
            .map_err(bad)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        self.overlay(pairs);
        Ok(())
    }

    /// Every key set (upper case), in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The raw value of `key` (case-insensitive), if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(&key.to_ascii_uppercase())
            .map(String::as_str)
    }

    /// The trimmed value of `key`; `None` when unset or blank.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The value of `key` parsed as `T`; `None` when unset or empty.
    pub fn parse<T: FromStr>(&self, key: &str, expected: &str) -> Result<Option<T>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(raw) => raw.parse().map(Some).map_err(|_| ConfigError::Invalid {
                key: key.to_ascii_uppercase(),
                value: raw.to_owned(),
                expected: expected.to_owned(),
            }),
        }
    }

    /// A boolean setting (`true/false/1/0/yes/no/on/off`).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.parse::<Flag>(key, "a boolean (true/false, 1/0, yes/no, on/off)")
            .map(|f| f.map(|Flag(b)| b))
    }
}

struct Flag(bool);

impl FromStr for Flag {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Self(true)),
            "0" | "false" | "no" | "off" => Ok(Self(false)),
            _ => Err(()),
        }
    }
}

/// The framework's typed settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DEBUG`: verbose errors and debug helpers.
    pub debug: bool,
    /// `ENVIRONMENT`: `dev` (default) or `prod`.
    pub environment: Environment,
    /// `SESSION_KEY`: secret for signing sessions and tokens.
    pub session_key: String,
    /// `HOST`: bind address for `serve` (127.0.0.1 in dev, 0.0.0.0 in prod).
    pub host: String,
    /// `PORT`: bind port for `serve` (8000).
    pub port: u16,
    /// `MONGODB_URL`: MongoDB connection string (database from its path, else the project slug);
    /// unset selects the embedded store.
    pub mongodb_url: Option<String>,
    /// `REDIS_URL`: Redis connection string; unset selects in-process fallbacks.
    pub redis_url: Option<String>,
    /// `APP_VERSION`: overrides the compiled-in version.
    pub app_version: Option<String>,
    /// `LOG_LEVEL`: a level, or target=level pairs, such as `info` or `info,vibetuner=debug`.
    pub log_level: String,
    /// `LOG_FORMAT`: `json` or `pretty` (json in prod, pretty in dev).
    pub log_json: bool,
    /// `MAX_BODY_SIZE`: largest accepted request body in bytes (2 MiB).
    pub max_body_size: usize,
    /// `TEMPLATE_RELOAD`: re-read templates on every render (on in dev).
    pub template_reload: bool,
    /// `DEV_RELOAD`: serve `/_dev/reload` and put the live-reload script on pages (set by
    /// `vibetuner dev`; never in prod).
    pub dev_reload: bool,
    /// `SHUTDOWN_TIMEOUT`: seconds to let in-flight requests finish after SIGTERM (30).
    pub shutdown_timeout_secs: u64,
    /// `DATA_DIR`: folder for the embedded store and other local data (`<root>/data`).
    pub data_dir: Option<PathBuf>,
    /// `STORE_TTL_INTERVAL`: seconds between sweeps of expired documents in the embedded store (60).
    pub store_ttl_interval_secs: u64,
    /// `STORE_SYNC`: `full` or `normal` (full in prod): whether each write to the embedded store
    /// waits until it is on disk (survives a power loss) or only in the operating system's
    /// hands (survives the process being killed; a power loss may take the last writes).
    pub store_sync_full: bool,
    /// `STORE_READ_TIMEOUT`: seconds one store read (a find or a count) may run before it is
    /// stopped and answers 503 (5), so one costly query cannot hold a reader for long.
    pub store_read_timeout_secs: u64,
    /// `HEADER_READ_TIMEOUT`: seconds a client has to send a request's headers, counted from
    /// the connection or from the request's first byte (10).
    pub header_read_timeout_secs: u64,
    /// `BODY_READ_TIMEOUT`: seconds a request body may pause between two parts before the
    /// request is refused and its connection closed (15).
    pub body_read_timeout_secs: u64,
    /// `BODY_MIN_RATE`: bytes per second a request body must keep up on average once it has
    /// had `BODY_READ_TIMEOUT` seconds (1,024): a body trickling slower is refused and its
    /// connection closed.
    pub body_min_rate: u64,
    /// `SEND_TIMEOUT`: seconds a response may wait for the client to take more of it before
    /// the connection is closed (30): a client that stops reading does not hold its place.
    pub send_timeout_secs: u64,
    /// `SEND_BUFFER_BUDGET`: bytes of responses waiting for their clients to read them, across
    /// all connections (128 MiB); over it, a connection whose client has not read for a second
    /// is closed, so slow readers cannot make the server hold their pages without bound.
    pub send_buffer_budget: u64,
    /// `REQUEST_TIMEOUT`: seconds a handler has to produce its response (60; a stream, once
    /// started, is not counted); slower ones answer 503.
    pub request_timeout_secs: u64,
    /// `KEEPALIVE_TIMEOUT`: seconds an idle keep-alive connection stays open between requests
    /// (75, longer than the usual proxy's 60 so the proxy closes first).
    pub keepalive_timeout_secs: u64,
    /// `MAX_CONNECTIONS`: open connections served at once; more are refused (10,000, or half
    /// the process's open-file limit when that is lower).
    pub max_connections: usize,
    /// `MAX_CONNECTIONS_PER_IP`: open connections from one address (IPv6: one /64) (100);
    /// peers in `TRUSTED_PROXIES` are exempt, the proxy being many clients.
    pub max_connections_per_ip: usize,
    /// `REQUESTS_PER_CLIENT`: requests one client (the signed-in user, else the address, IPv6
    /// by its /64) has in its handlers at once (4); more wait their turn, and past 100 waiting
    /// answer 429, so one client's burst of costly requests cannot delay everyone else's.
    pub requests_per_client: usize,
    /// `BRAND_*`: the name, colour and logo that pages, the favicon and emails show.
    pub brand: Brand,
    /// `THEMES`: the daisyUI themes the header's switcher offers, comma-separated
    /// (`light,dark`); each must be built into the app's CSS (`assets/config.css`).
    pub themes: Vec<String>,
    /// Every key/value the settings were read from, for app-specific settings.
    pub source: Source,
}

/// The `BRAND_*` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Brand {
    /// `BRAND_NAME`: the name in the header, page titles and emails (the project's name).
    pub name: Option<String>,
    /// `BRAND_PRIMARY_COLOR`: `#rrggbb` (or `#rgb`) for buttons and links in both themes,
    /// emails and the generated favicon; unset keeps the themes' own primary colour.
    pub primary_color: Option<String>,
    /// `BRAND_LOGO`: the header's logo, a URL (`https://...`, `/...`) or a file under
    /// `assets/statics` (`img/logo.svg`).
    pub logo: Option<String>,
}

impl Brand {
    fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let invalid = |key: &str, value: &str, expected: &str| ConfigError::Invalid {
            key: key.into(),
            value: value.into(),
            expected: expected.into(),
        };
        let primary_color = match source.value("BRAND_PRIMARY_COLOR") {
            None => None,
            Some(raw) => Some(hex_color(raw).ok_or_else(|| {
                invalid(
                    "BRAND_PRIMARY_COLOR",
                    raw,
                    "a hex colour such as #5b2333 or #e63",
                )
            })?),
        };
        let logo = match source.value("BRAND_LOGO") {
            None => None,
            Some(raw) => {
                let url = raw.starts_with("https://") || raw.starts_with("http://");
                let safe = raw
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~/:%?=&+@".contains(&b));
                let relative = !raw.starts_with('/') && !raw.split('/').any(|p| p == "..");
                if !(safe && (url || raw.starts_with('/') || relative)) {
                    return Err(invalid(
                        "BRAND_LOGO",
                        raw,
                        "a URL or a path under assets/statics such as img/logo.svg",
                    ));
                }
                Some(raw.to_owned())
            }
        };
        Ok(Self {
            name: source.value("BRAND_NAME").map(str::to_owned),
            primary_color,
            logo,
        })
    }
}

/// `#rgb` or `#rrggbb` as lower-case `#rrggbb`.
fn hex_color(raw: &str) -> Option<String> {
    let hex = raw.strip_prefix('#')?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let full = match hex.len() {
        3 => hex.chars().flat_map(|c| [c, c]).collect(),
        6 => hex.to_owned(),
        _ => return None,
    };
    Some(format!("#{}", full.to_ascii_lowercase()))
}

/// `THEMES`: comma-separated theme names (letters, digits, `-`), `light,dark` when unset.
fn themes(source: &Source) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = source.value("THEMES") else {
        return Ok(vec!["light".into(), "dark".into()]);
    };
    let names: Vec<String> = raw
        .split(',')
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    let valid = |n: &String| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if names.is_empty() || !names.iter().all(valid) {
        return Err(ConfigError::Invalid {
            key: "THEMES".into(),
            value: raw.to_owned(),
            expected: "comma-separated daisyUI theme names such as light,dark".into(),
        });
    }
    Ok(names)
}

impl Settings {
    /// Reads settings for the project rooted at `root`.
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        Self::from_source(Source::load(root)?)
    }

    /// Builds typed settings from a merged source and validates them.
    pub fn from_source(source: Source) -> Result<Self, ConfigError> {
        let environment = source
            .parse::<Environment>("ENVIRONMENT", "dev or prod")?
            .unwrap_or_default();
        let prod = environment == Environment::Prod;
        let log_json = match source
            .get("LOG_FORMAT")
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => prod,
            Some(v) if v.is_empty() => prod,
            Some(v) if v == "json" => true,
            Some(v) if v == "pretty" || v == "text" => false,
            Some(v) => {
                return Err(ConfigError::Invalid {
                    key: "LOG_FORMAT".into(),
                    value: v,
                    expected: "json or pretty".into(),
                });
            }
        };
        let settings = Self {
            debug: source.bool("DEBUG")?.unwrap_or(false),
            environment,
            session_key: source
                .get("SESSION_KEY")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            host: source
                .get("HOST")
                .filter(|h| !h.trim().is_empty())
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|| if prod { "0.0.0.0" } else { "127.0.0.1" }.to_owned()),
            port: source
                .parse("PORT", "a TCP port (0-65535)")?
                .unwrap_or(8000),
            mongodb_url: source.value("MONGODB_URL").map(str::to_owned),
            redis_url: source.value("REDIS_URL").map(str::to_owned),
            app_version: source.value("APP_VERSION").map(str::to_owned),
            log_level: {
                let level = source.value("LOG_LEVEL").unwrap_or("info");
                log_filter_is_valid(level)
                    .then_some(())
                    .ok_or_else(|| ConfigError::Invalid {
                        key: "LOG_LEVEL".into(),
                        value: level.into(),
                        expected:
                            "a level (error, warn, info, debug, trace) or target=level pairs \
                                   such as info,vibetuner=debug"
                                .into(),
                    })?;
                level.to_owned()
            },
            log_json,
            max_body_size: source
                .parse("MAX_BODY_SIZE", "a size in bytes")?
                .unwrap_or(2 * 1024 * 1024),
            template_reload: source.bool("TEMPLATE_RELOAD")?.unwrap_or(!prod),
            dev_reload: !prod && source.bool("DEV_RELOAD")?.unwrap_or(false),
            shutdown_timeout_secs: source
                .parse("SHUTDOWN_TIMEOUT", "a number of seconds")?
                .unwrap_or(30),
            data_dir: source
                .value("DATA_DIR")
                .map(str::to_owned)
                .map(PathBuf::from),
            store_ttl_interval_secs: source
                .parse("STORE_TTL_INTERVAL", "a number of seconds")?
                .unwrap_or(60),
            store_read_timeout_secs: positive(&source, "STORE_READ_TIMEOUT", 5)?,
            store_sync_full: match source
                .get("STORE_SYNC")
                .map(|v| v.trim().to_ascii_lowercase())
            {
                None => prod,
                Some(v) if v.is_empty() => prod,
                Some(v) if v == "full" => true,
                Some(v) if v == "normal" => false,
                Some(v) => {
                    return Err(ConfigError::Invalid {
                        key: "STORE_SYNC".into(),
                        value: v,
                        expected: "full or normal".into(),
                    });
                }
            },
            header_read_timeout_secs: positive(&source, "HEADER_READ_TIMEOUT", 10)?,
            body_read_timeout_secs: positive(&source, "BODY_READ_TIMEOUT", 15)?,
            body_min_rate: positive(&source, "BODY_MIN_RATE", 1024)?,
            send_timeout_secs: positive(&source, "SEND_TIMEOUT", 30)?,
            send_buffer_budget: positive(&source, "SEND_BUFFER_BUDGET", 128 << 20)?,
            request_timeout_secs: positive(&source, "REQUEST_TIMEOUT", 60)?,
            keepalive_timeout_secs: positive(&source, "KEEPALIVE_TIMEOUT", 75)?,
            max_connections: positive(&source, "MAX_CONNECTIONS", default_max_connections())?
                as usize,
            max_connections_per_ip: positive(&source, "MAX_CONNECTIONS_PER_IP", 100)? as usize,
            requests_per_client: positive(&source, "REQUESTS_PER_CLIENT", 4)? as usize,
            brand: Brand::from_source(&source)?,
            themes: themes(&source)?,
            source,
        };
        settings.check_session_key()?;
        Ok(settings)
    }

    /// The app's own setting `key` (environment > `.env.local` > `.env`, like the framework's),
    /// parsed as `T`; `None` when unset or blank, an error naming the key when it does not parse.
    ///
    /// ```no_run
    /// # fn f(settings: &vibetuner::Settings) -> Result<(), vibetuner::config::ConfigError> {
    /// let days: u32 = settings.get("ARCHIVE_RETENTION_DAYS")?.unwrap_or(30);
    /// # Ok(()) }
    /// ```
    pub fn get<T: FromStr>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        self.source.parse(key, std::any::type_name::<T>())
    }

    /// True in production.
    pub fn is_prod(&self) -> bool {
        self.environment == Environment::Prod
    }

    /// Fails in prod when the session key is empty, a known placeholder or too short.
    pub fn check_session_key(&self) -> Result<(), ConfigError> {
        if !self.is_prod() {
            return Ok(());
        }
        let problem = if self.session_key.is_empty() {
            "is empty"
        } else if PLACEHOLDER_SESSION_KEYS.contains(&self.session_key.as_str()) {
            "is the template placeholder"
        } else if self.session_key.len() < MIN_SESSION_KEY_LEN {
            "is shorter than 32 characters"
        } else if estimated_bits(&self.session_key) < MIN_SESSION_KEY_BITS {
            "is too predictable (repeated characters or a short pattern)"
        } else {
            return Ok(());
        };
        Err(ConfigError::WeakSessionKey { problem })
    }

    /// A warning to log in dev when the session key is a placeholder.
    pub fn session_key_warning(&self) -> Option<&'static str> {
        (!self.is_prod()
            && (self.session_key.is_empty()
                || PLACEHOLDER_SESSION_KEYS.contains(&self.session_key.as_str())))
        .then_some("SESSION_KEY is unset or a placeholder: fine in dev, refused in prod")
    }
}

/// The whole number `key` (`default` when unset); 0 is refused.
fn positive(source: &Source, key: &str, default: u64) -> Result<u64, ConfigError> {
    let value = source
        .parse::<u64>(key, "a positive whole number")?
        .unwrap_or(default);
    if value == 0 {
        return Err(ConfigError::Invalid {
            key: key.into(),
            value: "0".into(),
            expected: "a positive whole number".into(),
        });
    }
    Ok(value)
}

/// 10,000, or half the soft open-file limit (`/proc/self/limits`) when that is lower, so the
/// connection cap is reached before `accept` fails for want of file descriptors.
fn default_max_connections() -> u64 {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<u64>().ok()
        });
    soft.map_or(10_000, |soft| (soft / 2).clamp(64, 10_000))
}

/// Settings of background jobs, the worker and SSE, read from the same [`Source`] as
/// [`Settings`] (`JobsSettings::from_source(&settings.source)`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobsSettings {
    /// `REDIS_KEY_PREFIX`: prefix of every Redis key the framework writes (`<project_slug>:`).
    pub redis_key_prefix: Option<String>,
    /// `WORKER_CONCURRENCY`: tasks one worker runs at once (16).
    pub worker_concurrency: usize,
    /// `TASK_VISIBILITY_TIMEOUT`: seconds after which a task taken by a worker that stopped
    /// renewing it (crashed, killed) is handed to another worker (30).
    pub visibility_timeout_secs: u64,
    /// `WORKER_HEARTBEAT_INTERVAL`: seconds between worker heartbeats (5); `worker-health`
    /// reports a worker dead after three missed beats.
    pub heartbeat_interval_secs: u64,
    /// `WORKER_STALL_TIMEOUT`: seconds the worker's runtime may stall before its watchdog exits
    /// the process with status 1 so the supervisor restarts it (60).
    pub stall_timeout_secs: u64,
    /// `SSE_KEEPALIVE`: seconds between `: keepalive` comments on SSE streams (30).
    pub sse_keepalive_secs: u64,
    /// `SSE_BUFFER_SIZE`: events kept per channel for `Last-Event-ID` replay (100).
    pub sse_buffer_size: usize,
    /// `SSE_BUFFER_BYTES`: bytes of events kept per channel for replay, and queued for one
    /// subscriber before it counts as too slow and is disconnected (1 MiB; the newest event is
    /// kept even when larger).
    pub sse_buffer_bytes: usize,
    /// `SSE_REPLAY_BUDGET`: bytes of replay kept across every channel of this process
    /// (64 MiB); the least recently active channels lose theirs first.
    pub sse_replay_budget: usize,
    /// `SSE_MAX_SUBSCRIBERS`: SSE streams open at once in this process (5,000); more get 503.
    pub sse_max_subscribers: usize,
    /// `SSE_MAX_SUBSCRIBERS_PER_IP`: SSE streams open at once from one client address (32).
    pub sse_max_subscribers_per_ip: usize,
}

impl JobsSettings {
    /// Reads and validates the jobs settings.
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let positive = |key: &str, default: u64| positive(source, key, default);
        Ok(Self {
            redis_key_prefix: source.get("REDIS_KEY_PREFIX").map(str::to_owned),
            worker_concurrency: positive("WORKER_CONCURRENCY", 16)? as usize,
            visibility_timeout_secs: positive("TASK_VISIBILITY_TIMEOUT", 30)?,
            heartbeat_interval_secs: positive("WORKER_HEARTBEAT_INTERVAL", 5)?,
            stall_timeout_secs: positive("WORKER_STALL_TIMEOUT", 60)?,
            sse_keepalive_secs: positive("SSE_KEEPALIVE", 30)?,
            sse_buffer_size: positive("SSE_BUFFER_SIZE", 100)? as usize,
            sse_buffer_bytes: positive("SSE_BUFFER_BYTES", 1 << 20)? as usize,
            sse_replay_budget: positive("SSE_REPLAY_BUDGET", 64 << 20)? as usize,
            sse_max_subscribers: positive("SSE_MAX_SUBSCRIBERS", 5_000)? as usize,
            sse_max_subscribers_per_ip: positive("SSE_MAX_SUBSCRIBERS_PER_IP", 32)? as usize,
        })
    }

    /// The Redis key prefix: `REDIS_KEY_PREFIX`, else `<slug>:`.
    pub fn key_prefix(&self, slug: &str) -> String {
        self.redis_key_prefix
            .clone()
            .unwrap_or_else(|| format!("{slug}:"))
    }
}

/// A `LOG_LEVEL` is comma-separated levels or `target=level` pairs (a bare word that is not a
/// level would otherwise read as a target name with every level on).
fn log_filter_is_valid(filter: &str) -> bool {
    use tracing_subscriber::filter::LevelFilter;
    let is_level = |level: &str| !level.is_empty() && level.parse::<LevelFilter>().is_ok();
    filter
        .split(',')
        .map(str::trim)
        .all(|directive| match directive.split_once('=') {
            Some((target, level)) => !target.is_empty() && is_level(level),
            None => is_level(directive),
        })
        && filter
            .parse::<tracing_subscriber::filter::Targets>()
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_source(Source::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_need_no_environment() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.environment, Environment::Dev);
        assert!(!s.debug);
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 8000));
        assert!(s.mongodb_url.is_none() && s.redis_url.is_none());
        assert!(s.template_reload);
        assert!(!s.log_json);
        assert!(s.session_key_warning().is_some());
        assert_eq!(
            (s.header_read_timeout_secs, s.keepalive_timeout_secs),
            (10, 75)
        );
        assert!((64..=10_000).contains(&s.max_connections));
        assert_eq!(s.max_connections_per_ip, 100);
    }

    #[test]
    fn precedence_is_env_then_env_local_then_env_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "PORT=1111\nDEBUG=true\nlog_level=warn\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".env.local"), "PORT=2222\n").unwrap();
        let mut source = Source::default();
        source.overlay_file(&dir.path().join(".env")).unwrap();
        source.overlay_file(&dir.path().join(".env.local")).unwrap();
        let s = Settings::from_source(source.clone()).unwrap();
        assert_eq!(s.port, 2222, ".env.local beats .env");
        assert!(s.debug, ".env applies when nothing overrides it");
        assert_eq!(s.log_level, "warn", "keys are case-insensitive");
        source.overlay([("port", "3333")]);
        assert_eq!(
            Settings::from_source(source).unwrap().port,
            3333,
            "environment beats files"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = settings(&[("DEBUG", "maybe")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for DEBUG: \"maybe\" is not a boolean (true/false, 1/0, yes/no, on/off)"
        );
        let err = settings(&[("PORT", "99999")]).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid value for PORT"),
            "{err}"
        );
        let err = settings(&[("ENVIRONMENT", "staging")]).unwrap_err();
        assert!(err.to_string().contains("dev or prod"), "{err}");
        let err = settings(&[("MAX_CONNECTIONS_PER_IP", "0")]).unwrap_err();
        assert!(err.to_string().contains("MAX_CONNECTIONS_PER_IP"), "{err}");
        for bad in ["loud", "info,vibetuner", "=debug", "vibetuner=loud"] {
            let err = settings(&[("LOG_LEVEL", bad)]).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid value for LOG_LEVEL"),
                "{bad}: {err}"
            );
        }
        for good in ["warn", "DEBUG", "info,vibetuner=debug,tower_http=warn"] {
            assert_eq!(settings(&[("LOG_LEVEL", good)]).unwrap().log_level, good);
        }
    }

    #[test]
    fn brand_settings_are_checked_and_normalised() {
        let s = settings(&[
            ("BRAND_NAME", "Acme"),
            ("BRAND_PRIMARY_COLOR", "#E63"),
            ("BRAND_LOGO", "img/logo.svg"),
            ("THEMES", "light, dark, cupcake"),
        ])
        .unwrap();
        assert_eq!(s.brand.name.as_deref(), Some("Acme"));
        assert_eq!(s.brand.primary_color.as_deref(), Some("#ee6633"));
        assert_eq!(s.brand.logo.as_deref(), Some("img/logo.svg"));
        assert_eq!(s.themes, ["light", "dark", "cupcake"]);
        assert_eq!(settings(&[]).unwrap().themes, ["light", "dark"]);
        for (key, value) in [
            ("BRAND_PRIMARY_COLOR", "red"),
            ("BRAND_PRIMARY_COLOR", "#12345"),
            ("BRAND_PRIMARY_COLOR", "#gggggg"),
            ("BRAND_LOGO", "../secret.png"),
            ("BRAND_LOGO", "javascript:alert(1)\""),
            ("THEMES", "light;dark"),
        ] {
            let err = settings(&[(key, value)]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid value for {key}")),
                "{err}"
            );
        }
    }

    #[test]
    fn prod_refuses_placeholder_empty_and_short_session_keys() {
        for (key, problem) in [
            ("", "is empty"),
            (
                "CHANGE_ME_RUN_vibetuner_crypto_generate",
                "is the template placeholder",
            ),
            ("ct-!secret-must-change-me", "is the template placeholder"),
            ("short", "is shorter than 32 characters"),
            (
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "is too predictable (repeated characters or a short pattern)",
            ),
            (
                "abababababababababababababababababab",
                "is too predictable (repeated characters or a short pattern)",
            ),
        ] {
            let err = settings(&[("ENVIRONMENT", "prod"), ("SESSION_KEY", key)]).unwrap_err();
            assert_eq!(err, ConfigError::WeakSessionKey { problem });
            assert!(err.to_string().contains("vibetuner crypto generate-key"));
        }
        let ok = settings(&[
            ("ENVIRONMENT", "prod"),
            ("SESSION_KEY", "0f3a9c1e7b2d4f60a8c5e1b9d7f3a2c4"),
        ])
        .unwrap();
        assert!(ok.is_prod() && ok.log_json && !ok.template_reload);
        assert_eq!(ok.host, "0.0.0.0");
    }

    #[test]
    fn dev_accepts_placeholder_with_warning() {
        let s = settings(&[("SESSION_KEY", PLACEHOLDER_SESSION_KEYS[0])]).unwrap();
        assert!(s.session_key_warning().is_some());
    }

    #[test]
    fn credentials_beat_dotenv_files_and_lose_to_the_environment() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join(".env"),
            "SESSION_KEY=CHANGE_ME_RUN_vibetuner_crypto_generate\nSMTP_URL=smtp://dotenv\nPORT=1111\n",
        )
        .unwrap();
        let credentials = tempfile::tempdir().unwrap();
        let key = "Hk3v9QzR2mXw7TbN4pLc8YsJ1dFg6AeU0oKi";
        std::fs::write(credentials.path().join("SESSION_KEY"), format!("{key}\n")).unwrap();
        std::fs::write(credentials.path().join("smtp_url"), "smtps://u:p@mail:465").unwrap();
        std::fs::write(credentials.path().join("PORT"), "2222").unwrap();
        // Not a setting name, or not a file: left alone.
        std::fs::write(credentials.path().join("tls.key"), "x").unwrap();
        std::fs::create_dir(credentials.path().join("DEBUG")).unwrap();

        let source = Source::layered(
            root.path(),
            Some(credentials.path()),
            [("PORT", "3333"), ("ENVIRONMENT", "prod")],
        )
        .unwrap();
        assert_eq!(
            source.get("SESSION_KEY"),
            Some(key),
            "final newline dropped"
        );
        assert_eq!(source.get("SMTP_URL"), Some("smtps://u:p@mail:465"));
        assert_eq!(source.get("PORT"), Some("3333"), "the environment wins");
        assert_eq!(source.get("TLS.KEY"), None);
        assert_eq!(source.get("DEBUG"), None);
        let s = Settings::from_source(source).unwrap();
        assert!(
            s.is_prod(),
            "the credential's session key is accepted in prod"
        );

        let err = Source::layered(
            root.path(),
            Some(&root.path().join("missing")),
            [("A", "b")],
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::Credential { .. }), "{err}");
        let without = Source::layered(root.path(), None, [("A", "b")]).unwrap();
        assert_eq!(without.get("SMTP_URL"), Some("smtp://dotenv"));
    }

    #[test]
    fn malformed_dotenv_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "GOOD=1\nBAD LINE WITHOUT EQUALS\n").unwrap();
        let err = Source::load(dir.path()).unwrap_err();
        assert!(matches!(err, ConfigError::DotenvFile { .. }), "{err}");
    }
}
