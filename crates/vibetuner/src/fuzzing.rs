//! Fuzz targets (feature `fuzzing`; not part of the API apps use). Each target takes arbitrary
//! bytes, feeds them to input an attacker controls, and panics when an invariant breaks. The
//! `fuzz/` crate runs them under libFuzzer (`scripts/fuzz.sh`); the test suite runs each over its
//! seed corpus (`fuzz/corpus/<target>/`) and a few thousand generated inputs on every run.
//!
//! | target | what it drives | what must hold |
//! |---|---|---|
//! | `safe_next` | the post-sign-in `next` redirect | the target resolves to this site |
//! | `headers` | the CSRF `Origin` check and the client address from `X-Forwarded-For` | a cross-origin write is refused; the address is the peer's or a forwarded one |
//! | `store_filter` | a filter tree on the embedded store | the store answers or refuses the query as invalid, never fails in SQL |
//! | `request` | a whole app (CRUD API, sign-in, pages, statics, health) in-process | no answer is a 5xx, every answer completes |
//! | `session` | the `Cookie` header: bytes as sent, a correctly signed cookie for an id the client chose, a signed-in user's cookie with bytes changed | nobody is signed in without the exact cookie the server issued, no answer is a 5xx, no session is stored for a cookie the server did not issue |
//! | `sse` | an SSE channel name, event name, data and `Last-Event-ID` | bad names are refused (400); the event reaches the wire with its name and data intact (nothing injected); the replay is exactly the events after the id |

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use bson::{Bson, Document, doc};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

use crate::app::{App, ProjectSource};
use crate::crud::Crud;
use crate::security::{ClientIp, SecurityConfig, check_origin};
use crate::store::{Cmp, Filter, Model, Query, Store, StoreError};
use crate::testing::TestApp;

/// A fuzz target: panics when an invariant breaks for this input.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, for the corpus runner and `scripts/fuzz.sh`.
pub const TARGETS: [(&str, Target); 6] = [
    ("safe_next", safe_next),
    ("headers", headers),
    ("store_filter", store_filter),
    ("request", request),
    ("session", session),
    ("sse", sse),
];

/// Splits input into fields at `0xFF` bytes (never valid UTF-8, so text fields stay whole).
fn fields(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == 0xFF)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `next` after sign-in: whatever it is, following it stays on this site, also after whatever
/// decodes it again on the way (up to four layers of percent-encoding).
pub fn safe_next(data: &[u8]) {
    let next = text(data);
    let target = crate::auth::safe_next(Some(&next));
    let site = url::Url::parse("https://app.test/base/").expect("a URL");
    let mut layer = target.clone();
    for _ in 0..4 {
        let resolved = site
            .join(&layer)
            .unwrap_or_else(|e| panic!("{next:?} became {layer:?}, not a reference: {e}"));
        assert_eq!(
            resolved.host_str(),
            Some("app.test"),
            "{next:?} became {target:?}, which leads to {resolved} once decoded to {layer:?}"
        );
        layer = percent_encoding::percent_decode_str(&layer)
            .decode_utf8_lossy()
            .into_owned();
    }
}

/// Request headers: a state-changing request passes the CSRF check only from this site (or a
/// trusted origin); the client address is the peer's or one of the forwarded hops.
pub fn headers(data: &[u8]) {
    let mut parts = fields(data);
    let mut map = HeaderMap::new();
    for name in ["origin", "host", "sec-fetch-site", "x-forwarded-for"] {
        if let Some(value) = parts.next()
            && let Ok(value) = HeaderValue::from_bytes(value)
        {
            map.insert(HeaderName::from_static(name), value);
        }
    }
    let config = SecurityConfig {
        prod: true,
        trusted_origins: vec!["https://trusted.test".into()],
        trusted_proxies: vec!["10.0.0.0/8".parse().expect("a network")],
        csp: String::new(),
        public_origin: Some("https://app.test".into()),
    };
    if check_origin(&config, &Method::POST, &map).is_ok() {
        let header = |n: &str| map.get(n).and_then(|v| v.to_str().ok());
        let site = header("sec-fetch-site");
        let from_site = matches!(site, Some("same-origin" | "none"));
        if let (false, Some(origin)) = (from_site, header("origin")) {
            let origin = url::Url::parse(origin.trim()).expect("an accepted Origin parses");
            let authority = match origin.port() {
                Some(port) => format!("{}:{port}", origin.host_str().unwrap_or_default()),
                None => origin.host_str().unwrap_or_default().to_owned(),
            };
            let trusted = origin.as_str().trim_end_matches('/') == "https://trusted.test";
            let same_host =
                authority.eq_ignore_ascii_case(header("host").unwrap_or_default().trim());
            assert!(
                trusted || same_host,
                "a POST from {origin} to host {:?} was let through",
                header("host")
            );
        }
    }
    let peer: IpAddr = [10, 1, 2, 3].into();
    let ClientIp(client) = ClientIp::resolve(&config, Some(peer), &map);
    let forwarded = map
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // A hop may carry a port (`10.5.0.1:1234`, `[2001:db8::1]:443`) or brackets alone.
    let readings = |hop: &str| -> Vec<String> {
        let hop = hop.trim();
        let bracketed = hop.strip_prefix('[').and_then(|h| h.split(']').next());
        let before_port = hop.rsplit_once(':').map(|(address, _)| address);
        [Some(hop), bracketed, before_port]
            .into_iter()
            .flatten()
            .map(str::to_owned)
            .collect()
    };
    assert!(
        client == peer
            || forwarded
                .split(',')
                .flat_map(readings)
                .filter_map(|hop| hop.parse::<IpAddr>().ok())
                .any(|hop| hop.to_canonical() == client),
        "client {client} is neither the peer nor a forwarded hop of {forwarded:?}"
    );
}

/// One document shape for the store and request targets.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
struct Note {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    priority: i64,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    tags: Vec<String>,
}

impl Model for Note {
    const COLLECTION: &'static str = "notes";
}

/// Records each signed-in user owns (`owned_by`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
struct Mine {
    owner_id: crate::store::Id,
    title: String,
}

impl Model for Mine {
    const COLLECTION: &'static str = "mine";
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    store: Store,
    router: axum::Router,
    /// The value of the `session` cookie of a signed-in user.
    signed_in: String,
}

/// The harness app's `SESSION_KEY`, so the session target can sign cookies of its own.
const SESSION_KEY: &str = "fuzzing-session-key-0123456789abcdefghijklmnopqrstuvwxyz";

/// One app on a temporary embedded store, built once per process.
fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let source = ProjectSource {
            answers: "[project]\nproject_name = \"Fuzz\"\nproject_slug = \"fuzz\"\n",
            version: "0.0.0",
            manifest_dir: env!("CARGO_MANIFEST_DIR"),
        };
        let app = App::new(source)
            .crud(
                Crud::<Note>::new("/api/notes")
                    .public()
                    .sortable(["title", "priority"])
                    .filterable(["done", "priority", "tags"])
                    .searchable(["title", "body"]),
            )
            .crud(Crud::<Mine>::new("/api/mine").owned_by("owner_id"));
        let test_app: &'static TestApp = Box::leak(Box::new(
            runtime.block_on(
                TestApp::builder(app)
                    .setting("AUTH_RATE_LIMIT", "1000000/second")
                    .setting("SESSION_RATE_LIMIT", "1000000/second")
                    .setting("SESSION_KEY", SESSION_KEY)
                    .start(),
            ),
        ));
        let store = test_app.store().clone();
        runtime.block_on(async {
            for (i, title) in ["Buy milk", "Call Ana", "50% off", "a_b", "\"quoted\""]
                .into_iter()
                .enumerate()
            {
                store
                    .collection("notes")
                    .insert(doc! { "title": title, "body": "x", "priority": i as i64,
                    "done": i % 2 == 0, "tags": ["a", "b"] })
                    .await
                    .expect("seed");
            }
        });
        let signed_in = runtime
            .block_on(test_app.sign_in("ada@fuzz.test"))
            .cookie("session")
            .expect("a session cookie after signing in");
        Harness {
            runtime,
            store,
            router: test_app.router(),
            signed_in,
        }
    })
}

/// Reads a filter tree from bytes: the first byte of each node picks its kind.
fn filter_from(bytes: &mut std::slice::Iter<'_, u8>, depth: u8) -> Filter {
    const FIELDS: [&str; 7] = ["title", "priority", "done", "tags", "body.x", "_id", "nope"];
    let field = |bytes: &mut std::slice::Iter<'_, u8>| -> String {
        match bytes.next() {
            Some(&b) if (b as usize) < FIELDS.len() * 30 => {
                FIELDS[b as usize % FIELDS.len()].into()
            }
            Some(&n) => {
                let n = usize::from(n % 12);
                text(&bytes.by_ref().take(n).copied().collect::<Vec<_>>())
            }
            None => "title".into(),
        }
    };
    let value = |bytes: &mut std::slice::Iter<'_, u8>| -> Bson {
        let kind = bytes.next().copied().unwrap_or(0);
        let raw: Vec<u8> = bytes
            .by_ref()
            .take(usize::from(kind >> 4))
            .copied()
            .collect();
        match kind % 8 {
            0 => Bson::String(text(&raw)),
            1 => Bson::Int64(
                raw.iter()
                    .fold(0i64, |a, &b| a.wrapping_mul(251).wrapping_add(b.into())),
            ),
            2 => Bson::Boolean(raw.first().is_some_and(|b| b % 2 == 1)),
            3 => Bson::Null,
            4 => Bson::Double(f64::from(raw.first().copied().unwrap_or(0)) / 7.0),
            5 => Bson::Array(raw.iter().map(|&b| Bson::Int32(b.into())).collect()),
            6 => Bson::Document(Document::from_iter([(text(&raw), Bson::Int32(1))])),
            _ => Bson::String("%_\\'\"".into()),
        }
    };
    let kind = bytes.next().copied().unwrap_or(0);
    if depth > 4 {
        return Filter::All;
    }
    match kind % 8 {
        0 => Filter::All,
        1 => Filter::Eq(field(bytes), value(bytes)),
        2 => Filter::In(field(bytes), (0..kind >> 6).map(|_| value(bytes)).collect()),
        3 => Filter::Contains(field(bytes), (0..kind >> 6).map(|_| value(bytes)).collect()),
        4 => {
            let op = [Cmp::Gt, Cmp::Gte, Cmp::Lt, Cmp::Lte][usize::from(kind >> 5) % 4];
            Filter::Cmp(field(bytes), op, value(bytes))
        }
        5 => {
            let n = usize::from(bytes.next().copied().unwrap_or(0) % 16);
            let needle = text(&bytes.by_ref().take(n).copied().collect::<Vec<_>>());
            Filter::Search(vec![field(bytes), field(bytes)], needle)
        }
        6 => Filter::And(
            (0..kind >> 6)
                .map(|_| filter_from(bytes, depth + 1))
                .collect(),
        ),
        _ => Filter::Or(
            (0..kind >> 6)
                .map(|_| filter_from(bytes, depth + 1))
                .collect(),
        ),
    }
}

/// A filter tree on the embedded store: answered, or refused as invalid; never a database error.
pub fn store_filter(data: &[u8]) {
    let harness = harness();
    let filter = filter_from(&mut data.iter(), 0);
    let query = Query {
        filter: filter.clone(),
        sort: Vec::new(),
        skip: 0,
        limit: Some(50),
    };
    let notes = harness.store.collection("notes");
    let (found, counted) = harness
        .runtime
        .block_on(async { (notes.find(&query).await, notes.count(&filter).await) });
    for outcome in [found.map(|docs| docs.len() as u64), counted] {
        assert!(
            matches!(outcome, Ok(_) | Err(StoreError::Invalid(_))),
            "{filter:?} failed in the database: {outcome:?}"
        );
    }
}

/// A whole request to the app: every answer is below 500 and completes.
pub fn request(data: &[u8]) {
    const METHODS: [Method; 5] = [
        Method::GET,
        Method::POST,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
    ];
    const PATHS: [&str; 10] = [
        "/api/notes",
        "/api/notes/",
        "/api/mine",
        "/auth/login",
        "/auth/email-verify/",
        "/user/",
        "/static/",
        "/health/",
        "/",
        "/robots.txt",
    ];
    const HEADERS: [&str; 8] = [
        "content-type",
        "cookie",
        "origin",
        "accept",
        "hx-request",
        "accept-language",
        "sec-fetch-site",
        "x-forwarded-for",
    ];
    let harness = harness();
    let mut parts = fields(data);
    let head = parts.next().unwrap_or_default();
    let method = METHODS[usize::from(head.first().copied().unwrap_or(0)) % METHODS.len()].clone();
    let base = PATHS[usize::from(head.get(1).copied().unwrap_or(0)) % PATHS.len()];
    let rest = text(parts.next().unwrap_or_default());
    let Ok(uri) = format!("{base}{rest}").parse::<axum::http::Uri>() else {
        return;
    };
    let mut request = Request::builder().method(method).uri(uri);
    for name in HEADERS {
        if let Some(value) = parts.next()
            && !value.is_empty()
            && let Ok(value) = HeaderValue::from_bytes(value)
        {
            request = request.header(name, value);
        }
    }
    let body = parts.next().unwrap_or_default().to_vec();
    let Ok(request) = request.body(Body::from(body)) else {
        return;
    };
    let described = format!("{} {}", request.method(), request.uri());
    let answer = harness.runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            let response = harness
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("infallible");
            let status = response.status();
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            (status, body)
        })
        .await
    });
    let (status, body) = answer.unwrap_or_else(|_| panic!("{described} did not complete"));
    let body = body.unwrap_or_else(|e| panic!("{described}: the body failed: {e}"));
    assert!(
        !status.is_server_error(),
        "{described} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
}

/// Session cookies. The first byte picks how the `Cookie` header is made from the rest: as sent;
/// `session=` with a cookie signed with the app's key for an id the input chose (a forged or
/// guessed session); or the cookie of a signed-in user with bytes of the input written over it.
/// Whatever it holds: no 5xx, the profile page is served only when the header carries the exact
/// cookie the server issued, and the request stores no session.
pub fn session(data: &[u8]) {
    use tower_sessions::cookie::{Cookie, CookieJar};
    let harness = harness();
    let mode = data.first().copied().unwrap_or(0) % 3;
    let rest = data.get(1..).unwrap_or_default();
    let header: Vec<u8> = match mode {
        0 => rest.to_vec(),
        1 => {
            let mut id = [0u8; 16];
            let n = rest.len().min(16);
            id[..n].copy_from_slice(&rest[..n]);
            let id = tower_sessions::session::Id(i128::from_le_bytes(id));
            let value = format!("{id}{}", text(rest.get(16..).unwrap_or_default()));
            let key = crate::auth::session::cookie_key(SESSION_KEY);
            let mut jar = CookieJar::new();
            jar.signed_mut(&key).add(Cookie::new("session", value));
            let signed = jar.get("session").map(|c| c.value().to_owned());
            format!("session={}", signed.unwrap_or_default()).into_bytes()
        }
        _ => {
            let mut cookie = format!("session={}", harness.signed_in).into_bytes();
            for pair in rest.chunks(2) {
                let at = usize::from(pair[0]) % (cookie.len() + 1);
                match pair.get(1) {
                    Some(&byte) if at < cookie.len() => cookie[at] = byte,
                    Some(&byte) => cookie.push(byte),
                    None => cookie.truncate(at),
                }
            }
            cookie
        }
    };
    let Ok(value) = HeaderValue::from_bytes(&header) else {
        return;
    };
    let issued = format!("session={}", harness.signed_in);
    let carries_issued = header
        .split(|&b| b == b';')
        .any(|pair| pair.trim_ascii() == issued.as_bytes());
    let sessions = || async {
        harness
            .store
            .collection("sessions")
            .count(&Filter::All)
            .await
            .expect("sessions count")
    };
    let (before, status, after) = harness.runtime.block_on(async {
        let before = sessions().await;
        let request = Request::get("/user/")
            .header("cookie", value)
            .body(Body::empty())
            .expect("a request");
        let answer = tokio::time::timeout(
            Duration::from_secs(20),
            harness.router.clone().oneshot(request),
        )
        .await
        .expect("the request completed")
        .expect("infallible");
        let status = answer.status();
        answer.into_body().collect().await.expect("the body");
        (before, status, sessions().await)
    });
    let shown = String::from_utf8_lossy(&header);
    assert!(!status.is_server_error(), "{shown:?} answered {status}");
    if status.is_success() {
        assert!(carries_issued, "{shown:?} was signed in");
    } else if header == issued.as_bytes() {
        panic!("the issued cookie alone answered {status}");
    }
    assert!(after <= before, "{shown:?} stored a session");
}

/// SSE: a channel name, an event name, data and a `Last-Event-ID`. Names outside the allowed
/// characters are refused with 400; an accepted event comes back from the wire with its name and
/// its data (line breaks normalised) and nothing else, whatever the data holds; a client
/// resuming after the id it sent is replayed exactly the events after it.
pub fn sse(data: &[u8]) {
    let mut parts = fields(data);
    let mut next = || text(parts.next().unwrap_or_default());
    let (channel, event, body, last) = (next(), next(), next(), next());
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    });
    runtime.block_on(async {
        let broadcaster = crate::sse::Broadcaster::local(16, Duration::from_secs(15));
        // A page followed the channel once: only followed channels keep a replay.
        let _ = broadcaster.replayed(&channel, "0").await;
        let sent = broadcaster.broadcast(&channel, &event, body.clone()).await;
        let allowed = |name: &str| {
            (1..=128).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-:_.".contains(&b))
        };
        let accepted = allowed(&channel) && !event.is_empty() && !event.contains(['\n', '\r']);
        let id = match sent {
            Ok(id) => id,
            Err(e) => {
                assert!(!accepted, "{channel:?}/{event:?} refused: {e}");
                assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{e}");
                return;
            }
        };
        assert!(accepted, "{channel:?}/{event:?} accepted");
        let wire = broadcaster
            .replayed(&channel, "0")
            .await
            .expect("the channel was accepted");
        assert_eq!(wire.len(), 1, "one event to replay");
        let text = std::str::from_utf8(&wire[0]).expect("UTF-8 on the wire");
        let (mut lines, mut name, mut sent_id) = (Vec::new(), None, None);
        for line in text.strip_suffix("\n\n").expect("one event").split('\n') {
            match line.split_once(": ") {
                Some(("data", d)) => lines.push(d),
                Some(("event", e)) if name.is_none() => name = Some(e),
                Some(("id", i)) if sent_id.is_none() => sent_id = Some(i),
                _ => panic!("{line:?} in the event for {event:?} / {body:?}:\n{text}"),
            }
        }
        let normalised = body.replace("\r\n", "\n").replace('\r', "\n");
        assert_eq!(lines.join("\n"), normalised, "the data came back whole");
        assert_eq!(name.unwrap_or("message"), event, "the event name");
        assert_eq!(sent_id, Some(id.as_str()));
        let number = |s: &str| -> Option<(u64, u64)> {
            let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
            Some((ms.parse().ok()?, seq.parse().ok()?))
        };
        let expected = match (number(&last), number(&id)) {
            (Some(after), Some(id)) if id > after => 1,
            _ => 0,
        };
        let replayed = broadcaster
            .replayed(&channel, &last)
            .await
            .expect("the channel was accepted");
        assert_eq!(
            replayed.len(),
            expected,
            "replay after {last:?} (event {id})"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every target over its checked-in seeds, then over generated inputs (a fixed-seed
    /// generator, so a failure reproduces): the corpus stays valid and the targets keep
    /// compiling and holding without a fuzzer installed.
    #[test]
    fn targets_hold_on_their_corpus_and_generated_inputs() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (name, target) in TARGETS {
            let seeds = std::fs::read_dir(corpus.join(name))
                .unwrap_or_else(|e| panic!("fuzz/corpus/{name}: {e}"))
                .map(|entry| std::fs::read(entry.expect("an entry").path()).expect("a seed"))
                .collect::<Vec<_>>();
            assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
            for seed in &seeds {
                target(seed);
            }
            let rounds = if name == "request" { 300 } else { 3000 };
            for _ in 0..rounds {
                let mut input = seeds[next() as usize % seeds.len()].clone();
                for _ in 0..next() % 8 {
                    let byte = next() as u8;
                    match next() % 3 {
                        0 if !input.is_empty() => {
                            let i = next() as usize % input.len();
                            input[i] = byte;
                        }
                        1 => {
                            let i = next() as usize % (input.len() + 1);
                            input.insert(i, byte);
                        }
                        _ if !input.is_empty() => {
                            input.remove(next() as usize % input.len());
                        }
                        _ => input.push(byte),
                    }
                }
                target(&input);
            }
        }
    }
}
