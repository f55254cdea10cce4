//! Security defaults every app gets: response headers with a per-request CSP nonce, CSRF
//! protection for state-changing requests, and client IPs that honour only trusted proxies.
//!
//! CSRF protection checks where a request comes from (`Sec-Fetch-Site`, else `Origin` against
//! `Host`) instead of tokens: browsers send these headers on every cross-origin POST and they
//! cannot be forged by a page, so htmx requests, plain forms and JSON APIs need no token
//! plumbing. Requests without either header (curl, server-to-server) carry no ambient browser
//! credentials and pass.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use ipnet::IpNet;
use sha2::Digest as _;

use crate::config::{ConfigError, Settings};
use crate::error::Error;

/// The default Content-Security-Policy; `{nonce}` is replaced per request.
pub const DEFAULT_CSP: &str = "default-src 'self'; script-src 'nonce-{nonce}' 'strict-dynamic'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data: https://lh3.googleusercontent.com \
https://avatars.githubusercontent.com; font-src 'self' data:; connect-src 'self'; \
object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// Security settings read from the environment.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// Production: adds HSTS.
    pub prod: bool,
    /// `TRUSTED_PROXIES`: addresses or CIDR ranges whose `X-Forwarded-*` headers are believed
    /// (default `127.0.0.1,::1`; empty string trusts none).
    pub trusted_proxies: Vec<IpNet>,
    /// `CSRF_TRUSTED_ORIGINS`: extra origins (`https://admin.example.com`) allowed to send
    /// state-changing requests.
    pub trusted_origins: Vec<String>,
    /// `CONTENT_SECURITY_POLICY`: replaces [`DEFAULT_CSP`]; `{nonce}` is substituted.
    pub csp: String,
    /// The site's public origin (`BASE_URL`, else `https://{fqdn}` in prod), when known: a
    /// state-changing request from this host must then also come from its scheme.
    pub public_origin: Option<String>,
}

impl SecurityConfig {
    /// Dev with no proxy trusted and no extra origin: what a request that did not come through
    /// a framework-built app is checked with.
    pub(crate) fn dev() -> &'static Self {
        static DEV: SecurityConfig = SecurityConfig {
            prod: false,
            trusted_proxies: Vec::new(),
            trusted_origins: Vec::new(),
            csp: String::new(),
            public_origin: None,
        };
        &DEV
    }

    /// Reads the security settings.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let source = &settings.source;
        let trusted_proxies = source
            .get("TRUSTED_PROXIES")
            .unwrap_or("127.0.0.1,::1")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| ConfigError::Invalid {
                        key: "TRUSTED_PROXIES".into(),
                        value: s.to_owned(),
                        expected: "a comma-separated list of IP addresses or CIDR ranges".into(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let trusted_origins = source
            .get("CSRF_TRUSTED_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        Ok(Self {
            prod: settings.is_prod(),
            trusted_proxies,
            trusted_origins,
            csp: source
                .get("CONTENT_SECURITY_POLICY")
                .filter(|v| !v.trim().is_empty())
                .unwrap_or(DEFAULT_CSP)
                .to_owned(),
            public_origin: None,
        })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// `n` random bytes from the operating system, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of `text`, lowercase hex.
pub fn sha256_hex(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The per-request CSP nonce (a request extension; templates see it as `csp_nonce`).
#[derive(Debug, Clone)]
pub struct CspNonce(pub Arc<str>);

/// Adds the security headers to every response and a fresh CSP nonce to every request.
pub async fn security_headers(
    State(config): State<Arc<SecurityConfig>>,
    mut request: Request,
    next: Next,
) -> Response {
    let nonce = random_token(16);
    request
        .extensions_mut()
        .insert(CspNonce(Arc::from(nonce.as_str())));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        let policy = config.csp.replace("{nonce}", &nonce);
        if let Ok(value) = HeaderValue::from_str(&policy) {
            headers.insert(header::CONTENT_SECURITY_POLICY, value);
        }
    }
    let fixed = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
        (
            header::HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=(), payment=()",
        ),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    if config.prod {
        headers
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static(
                "max-age=63072000; includeSubDomains",
            ));
    }
    response
}

/// Refuses state-changing requests (POST, PUT, PATCH, DELETE) sent by another site: 403.
pub async fn csrf_protection(
    State(config): State<Arc<SecurityConfig>>,
    request: Request,
    next: Next,
) -> Result<Response, Error> {
    if let Err(reason) = check_origin(&config, request.method(), request.headers()) {
        tracing::warn!(
            method = %request.method(),
            path = %request.uri().path(),
            "{reason}"
        );
        return Err(Error::new(StatusCode::FORBIDDEN, reason.to_string()));
    }
    Ok(next.run(request).await)
}

/// Why a state-changing request was refused as cross-site; the text is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrfRefusal {
    /// An `Origin` header is present but is not an origin.
    #[error("Request refused: its Origin header ({0}) is not an origin like https://example.com.")]
    UnreadableOrigin(String),
    /// The browser says the request comes from another site (`Sec-Fetch-Site`).
    #[error(
        "Cross-site request refused (Sec-Fetch-Site: {0}). Submit the form from this site, or add the sending origin to CSRF_TRUSTED_ORIGINS."
    )]
    CrossSite(String),
    /// The `Origin` names another host than the request's `Host`.
    #[error(
        "Cross-origin request refused: Origin {origin} does not match this site ({host}). Add it to CSRF_TRUSTED_ORIGINS if it is yours."
    )]
    OtherHost {
        /// The request's origin.
        origin: String,
        /// The request's `Host`.
        host: String,
    },
    /// The `Origin` is this host over the other scheme than the public origin's.
    #[error("Cross-origin request refused: Origin {origin} is not this site's {public}.")]
    OtherScheme {
        /// The request's origin.
        origin: String,
        /// The site's public origin.
        public: String,
    },
}

impl crate::error::HttpStatus for CsrfRefusal {
    /// 403.
    fn status(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }
}

/// The CSRF decision for one request: `Err` says why it is refused.
pub fn check_origin(
    config: &SecurityConfig,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), CsrfRefusal> {
    if matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return Ok(());
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // A present Origin must be one: an unreadable one is refused, never taken for absent.
    let origin = match headers.get(header::ORIGIN) {
        None => None,
        Some(raw) => Some(Origin::parse(raw.as_bytes()).ok_or_else(|| {
            CsrfRefusal::UnreadableOrigin(
                String::from_utf8_lossy(raw.as_bytes())
                    .escape_debug()
                    .to_string(),
            )
        })?),
    };
    let trusted = |origin: &Option<Origin>| {
        origin
            .as_ref()
            .is_some_and(|o| config.trusted_origins.contains(&o.serialized()))
    };
    match text("sec-fetch-site") {
        Some("same-origin" | "none") => return Ok(()),
        Some(site) if !trusted(&origin) => {
            return Err(CsrfRefusal::CrossSite(site.to_owned()));
        }
        _ => {}
    }
    let Some(origin) = origin else {
        return Ok(());
    };
    if trusted(&Some(origin.clone())) {
        return Ok(());
    }
    let host = text("host").unwrap_or_default().to_ascii_lowercase();
    if host.is_empty() || origin.authority != host {
        return Err(CsrfRefusal::OtherHost {
            origin: origin.serialized(),
            host,
        });
    }
    // The same host over the other scheme (a page served over plain http, say) is another site.
    let public = config
        .public_origin
        .as_deref()
        .and_then(|p| Origin::parse(p.as_bytes()));
    match public {
        Some(public) if public.authority == host && public.scheme != origin.scheme => {
            Err(CsrfRefusal::OtherScheme {
                origin: origin.serialized(),
                public: public.serialized(),
            })
        }
        _ => Ok(()),
    }
}

/// A parsed `Origin` header: `scheme://host[:port]`, lower-cased, nothing more.
#[derive(Debug, Clone, PartialEq)]
struct Origin {
    scheme: String,
    /// `host[:port]`, as a `Host` header carries it.
    authority: String,
}

impl Origin {
    /// `http(s)://host[:port]` exactly (a trailing `/` tolerated); `None` for anything else,
    /// including `null`, paths, credentials and bytes that are not ASCII.
    fn parse(raw: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(raw).ok()?.trim();
        let text = text.strip_suffix('/').unwrap_or(text).to_ascii_lowercase();
        let url = url::Url::parse(&text).ok()?;
        let origin = url.origin();
        if !matches!(url.scheme(), "http" | "https") || origin.ascii_serialization() != text {
            return None;
        }
        let (scheme, rest) = text.split_once("://")?;
        Some(Self {
            scheme: scheme.to_owned(),
            authority: rest.to_owned(),
        })
    }

    fn serialized(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

/// The client's IP address: the peer, or — when the peer is a trusted proxy — the nearest
/// untrusted address in `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// Resolves the client address from the peer and the forwarding headers.
    pub fn resolve(config: &SecurityConfig, peer: Option<IpAddr>, headers: &HeaderMap) -> Self {
        let Some(peer) = peer else {
            return Self(IpAddr::from([127, 0, 0, 1]));
        };
        if !config.trusts(peer) {
            if headers.contains_key("x-forwarded-for") {
                warn_untrusted_forwarding(peer);
            }
            return Self(peer.to_canonical());
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let mut client = peer.to_canonical();
        for hop in forwarded.iter().rev() {
            match parse_hop(hop) {
                Some(ip) => {
                    client = ip.to_canonical();
                    if !config.trusts(ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        Self(client)
    }
}

/// True for a request made on this machine, not relayed: the peer is a loopback address (or
/// none: an in-process request, as in tests), no forwarding header says a proxy relayed someone
/// else's request, and the `Host` is a loopback name (another site's page that reached us
/// through DNS rebinding sends its own). Dev pages and `/health/id`'s details need it.
pub(crate) fn from_this_machine(request: &Request) -> bool {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    let headers = request.headers();
    let proxied = [
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
        "x-forwarded-host",
    ]
    .iter()
    .any(|h| headers.contains_key(*h));
    let host = headers
        .get(header::HOST)
        .map(|h| h.to_str().is_ok_and(loopback_host));
    peer.is_none_or(|ip| ip.is_loopback()) && !proxied && host != Some(false)
}

/// The host for a link built from the request when no `BASE_URL` is set (dev): the `Host` when
/// it names this machine or is an IP address, else `localhost` with the same port. A page that
/// reached this server through DNS rebinding sends its own name, and a sign-in link built from
/// it would hand the token to that site; rebinding needs a name, so IP addresses are kept (a
/// phone on the LAN at `192.168.1.5:8000` gets links that work for it).
pub(crate) fn link_host(host: &str) -> String {
    let (name, port) = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((name, rest)) => (name, rest.strip_prefix(':')),
            None => (host, None),
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let port = port.filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if loopback_host(host) || name.parse::<IpAddr>().is_ok() {
        return host.to_owned();
    }
    match port {
        Some(port) => format!("localhost:{port}"),
        None => "localhost".to_owned(),
    }
}

/// True for a `Host` naming this machine: `localhost` (and `*.localhost`) or a loopback
/// address, with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One `X-Forwarded-For` hop: an address, with or without a port (`10.5.0.1:1234`,
/// `[2001:db8::1]:443`, `[2001:db8::1]`), as proxies write them.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(hop)
                .parse::<IpAddr>()
        })
        .ok()
}

impl ClientIp {
    /// The key rate limits count this client under: an IPv4 address as it is, an IPv6 address
    /// by its /64 (one host or one subscriber line usually holds a whole /64, so counting per
    /// address would hand it countless fresh buckets).
    pub fn rate_key(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{}/64", std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        }
    }
}

/// Logs once per process that a peer outside `TRUSTED_PROXIES` sent `X-Forwarded-For`: behind
/// such a proxy every client shares the proxy's address, and so its rate limits.
fn warn_untrusted_forwarding(peer: IpAddr) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            %peer,
            "X-Forwarded-For from {peer}, which is not in TRUSTED_PROXIES, is ignored: every \
             client behind that proxy counts as {peer} (one rate-limit bucket for all). Add the \
             proxy to TRUSTED_PROXIES, and make it overwrite (or append to) the header rather \
             than pass a client's own through"
        );
    });
}

/// The scheme the client used: `X-Forwarded-Proto` from a trusted proxy, else `http`.
pub fn request_scheme(config: &SecurityConfig, parts: &Parts) -> &'static str {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let trusted = peer.is_some_and(|ip| config.trusts(ip));
    let https = trusted
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    if https { "https" } else { "http" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SecurityConfig {
        SecurityConfig::from_settings(
            &Settings::from_source(crate::config::Source::from_pairs([(
                "CSRF_TRUSTED_ORIGINS",
                "https://admin.example.com/",
            )]))
            .unwrap(),
        )
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn csrf_decisions() {
        let c = config();
        let post = Method::POST;
        let ok = |h: &[(&'static str, &str)]| check_origin(&c, &post, &headers(h)).is_ok();
        assert!(ok(&[]), "non-browser clients pass");
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(ok(&[("sec-fetch-site", "none")]), "typed URL / bookmark");
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[("sec-fetch-site", "same-site")]), "sibling subdomain");
        assert!(ok(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://admin.example.com")
        ]));
        assert!(ok(&[
            ("origin", "http://app.test:8000"),
            ("host", "app.test:8000")
        ]));
        assert!(!ok(&[("origin", "http://evil.test"), ("host", "app.test")]));
        assert!(!ok(&[("origin", "null"), ("host", "app.test")]));
        for unreadable in [
            "app.test",
            "http://app.test/path",
            "http://user@app.test",
            "ftp://app.test",
            "http://app.test:80",
            "http://",
            " ",
        ] {
            assert!(
                !ok(&[("origin", unreadable), ("host", "app.test")]),
                "{unreadable:?}"
            );
        }
        let mut bytes = HeaderMap::new();
        bytes.insert(
            "origin",
            HeaderValue::from_bytes(b"http://app.t\xc3\xa9st").unwrap(),
        );
        let reason = check_origin(&c, &post, &bytes).unwrap_err();
        assert!(
            reason.to_string().contains("not an origin"),
            "an Origin that is not text is not taken for absent: {reason}"
        );
        assert!(ok(&[("origin", "HTTP://App.Test/"), ("host", "app.test")]));
        let mut known = c.clone();
        known.public_origin = Some("https://app.test".into());
        let known_ok =
            |h: &[(&'static str, &str)]| check_origin(&known, &post, &headers(h)).is_ok();
        assert!(known_ok(&[
            ("origin", "https://app.test"),
            ("host", "app.test")
        ]));
        assert!(
            !known_ok(&[("origin", "http://app.test"), ("host", "app.test")]),
            "the same host over plain http is another site"
        );
        assert!(
            known_ok(&[
                ("origin", "http://10.0.0.5:8000"),
                ("host", "10.0.0.5:8000")
            ]),
            "a host other than the public origin's is compared by host only"
        );
        assert!(
            check_origin(
                &c,
                &Method::GET,
                &headers(&[("sec-fetch-site", "cross-site")])
            )
            .is_ok()
        );
        let reason = check_origin(
            &c,
            &Method::DELETE,
            &headers(&[("sec-fetch-site", "cross-site")]),
        )
        .unwrap_err();
        assert!(
            reason.to_string().contains("CSRF_TRUSTED_ORIGINS"),
            "{reason}"
        );
    }

    #[test]
    fn link_hosts_never_name_another_site() {
        for (host, link) in [
            ("localhost:8000", "localhost:8000"),
            ("app.localhost:3000", "app.localhost:3000"),
            ("127.0.0.1:8000", "127.0.0.1:8000"),
            ("192.168.1.5:8000", "192.168.1.5:8000"),
            ("[::1]:8000", "[::1]:8000"),
            ("[fd00::5]:8000", "[fd00::5]:8000"),
            ("rebind.evil.test:8000", "localhost:8000"),
            ("rebind.evil.test", "localhost"),
            ("localhost.evil.test:80", "localhost:80"),
            ("evil.test:80/x", "localhost"),
            ("[evil:8000", "localhost"),
        ] {
            assert_eq!(link_host(host), link, "{host}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:8000",
            "app.localhost:3000",
            "127.0.0.1:8000",
            "[::1]:8000",
            "LOCALHOST.",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "rebind.evil.test",
            "rebind.evil.test:8000",
            "10.0.0.1",
            "[2001:db8::1]:80",
            "localhost.evil.test",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn requests_relayed_by_a_local_proxy_are_not_from_this_machine() {
        let request = |headers: &[(&str, &str)]| {
            let mut builder = Request::builder().uri("/health/id");
            for (k, v) in headers {
                builder = builder.header(*k, *v);
            }
            let mut request = builder.body(axum::body::Body::empty()).unwrap();
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
            request
        };
        assert!(from_this_machine(&request(&[("host", "localhost:8000")])));
        assert!(!from_this_machine(&request(&[(
            "x-forwarded-for",
            "203.0.113.9"
        )])));
        assert!(!from_this_machine(&request(&[(
            "x-real-ip",
            "203.0.113.9"
        )])));
        assert!(!from_this_machine(&request(&[(
            "host",
            "shop.example.com"
        )])));
    }

    #[test]
    fn forwarded_hops_with_ports_are_read() {
        let config = &config();
        let peer = Some(IpAddr::from([127, 0, 0, 1]));
        for (hop, client) in [
            ("10.5.0.1:1234", "10.5.0.1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("203.0.113.7", "203.0.113.7"),
        ] {
            let resolved = ClientIp::resolve(config, peer, &headers(&[("x-forwarded-for", hop)]));
            assert_eq!(resolved.0.to_string(), client, "{hop}");
        }
    }

    #[test]
    fn client_ip_trusts_only_configured_proxies() {
        let c = config();
        let fwd = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.0.2")]);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            ClientIp::resolve(&c, Some(remote), &fwd).0,
            remote,
            "an untrusted peer cannot spoof its address"
        );
        assert_eq!(
            ClientIp::resolve(&c, Some(local), &fwd).0.to_string(),
            "10.0.0.2",
            "the nearest untrusted hop wins"
        );
        let mut c2 = c.clone();
        c2.trusted_proxies.push("10.0.0.0/8".parse().unwrap());
        assert_eq!(
            ClientIp::resolve(&c2, Some(local), &fwd).0.to_string(),
            "203.0.113.9"
        );
        let bad = Settings::from_source(crate::config::Source::from_pairs([(
            "TRUSTED_PROXIES",
            "10.0.0.0/8,nonsense",
        )]))
        .unwrap();
        assert!(
            SecurityConfig::from_settings(&bad)
                .unwrap_err()
                .to_string()
                .contains("TRUSTED_PROXIES")
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let key = |ip: &str| ClientIp(ip.parse().unwrap()).rate_key();
        assert_eq!(key("203.0.113.9"), "203.0.113.9");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::7"), key("2001:db8:1:2::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
