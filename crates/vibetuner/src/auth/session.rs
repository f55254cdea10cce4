//! Server-side sessions on `tower-sessions` with the framework's own stores: Redis when
//! `REDIS_URL` is set, otherwise the app's store (collection `sessions`). The cookie only
//! carries a signed random id; logout deletes the record. On the embedded store, a session read
//! is remembered until the database changes (any commit, from any process), so the session
//! every request reads costs no query while nothing is written.
//!
//! A visitor who is not signed in gets a session only when something must be kept (a flash
//! message, an OAuth start); it lives [`ANONYMOUS_LIFETIME`], and one address may start
//! `SESSION_RATE_LIMIT` of them ([`limit_new_sessions`]), so a flood of them stays bounded.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
#[cfg(feature = "redis")]
use redis::AsyncCommands as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use time::OffsetDateTime;
use tower_sessions::cookie::{Key, SameSite};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{Expiry, SessionManagerLayer, service::SignedCookie};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::SET_COOKIE;
use axum::middleware::Next;
use axum::response::Response;

use crate::config::Settings;
use crate::ratelimit::{Rate, RateLimiter};
use crate::security::{ClientIp, SecurityConfig};
use crate::store::{Filter, Index, Model, Store, Timestamp, Update};

/// How long a session lives without activity (Vibetuner: 14 days).
pub const SESSION_LIFETIME_DAYS: i64 = 14;

/// How long the stored session of a visitor who is not signed in lives without activity: long
/// enough to carry a flash message or an OAuth round trip, short enough that a flood of them
/// does not pile up for two weeks.
pub const ANONYMOUS_LIFETIME: time::Duration = time::Duration::hours(1);

/// The per-address budget of new sessions for visitors who are not signed in
/// (`SESSION_RATE_LIMIT`).
#[derive(Debug, Clone)]
pub(crate) struct NewSessions {
    pub(crate) limiter: RateLimiter,
    pub(crate) rate: Rate,
}

/// Who may be starting a session in this request: set around the session layer, read when the
/// session is first stored.
#[derive(Clone)]
struct Starting {
    budget: NewSessions,
    /// The client; its rate-limit key is made only when a session is started.
    client: ClientIp,
    /// Set when the budget refused to store the session.
    refused: Arc<AtomicBool>,
}

tokio::task_local! {
    static STARTING: Starting;
}

/// Middleware around the session layer: counts the sessions a visitor who is not signed in
/// starts against `SESSION_RATE_LIMIT` per address. Over it, the session is not stored and its
/// cookie is taken off the response; the response is otherwise unchanged (a flash message is
/// lost, nothing else). Sign-ins are not counted here: `AUTH_RATE_LIMIT` bounds them.
pub(crate) async fn limit_new_sessions(
    State((budget, security)): State<(NewSessions, Arc<SecurityConfig>)>,
    request: Request,
    next: Next,
) -> Response {
    // The access log resolved the client already; resolved here only without it.
    let client = request
        .extensions()
        .get::<ClientIp>()
        .copied()
        .unwrap_or_else(|| {
            let peer = request
                .extensions()
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip());
            ClientIp::resolve(&security, peer, request.headers())
        });
    let refused = Arc::new(AtomicBool::new(false));
    let starting = Starting {
        budget,
        client,
        refused: refused.clone(),
    };
    let mut response = STARTING.scope(starting, next.run(request)).await;
    if refused.load(Ordering::Relaxed) {
        let headers = response.headers_mut();
        if let axum::http::header::Entry::Occupied(cookies) = headers.entry(SET_COOKIE) {
            let (_, cookies) = cookies.remove_entry_mult();
            let kept: Vec<_> = cookies
                .filter(|c| !c.as_bytes().starts_with(b"session="))
                .collect();
            for cookie in kept {
                headers.append(SET_COOKIE, cookie);
            }
        }
    }
    response
}

/// Whether this new session may be stored: always for a signed-in one, else within the
/// client's budget (no budget outside a request).
async fn may_start(record: &Record) -> bool {
    if record.data.contains_key(super::user::USER_KEY) {
        return true;
    }
    let Ok(starting) = STARTING.try_with(Starting::clone) else {
        return true;
    };
    let client = starting.client.rate_key();
    let key = format!("session:ip:{client}");
    if starting
        .budget
        .limiter
        .hit(&key, starting.budget.rate)
        .await
        .is_ok()
    {
        return true;
    }
    starting.refused.store(true, Ordering::Relaxed);
    warn_refused(&client);
    false
}

/// Logs a refused session at most once a minute: the log must not grow with the flood.
fn warn_refused(client: &str) {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let minute = Timestamp::now().millis() / 60_000;
    if LAST.swap(minute, Ordering::Relaxed) != minute {
        tracing::warn!(
            client,
            "SESSION_RATE_LIMIT reached: sessions of visitors not signed in are not stored"
        );
    }
}

/// A stored session (`sessions`): the data as JSON text, removed by a TTL index when expired.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StoredSession {
    /// The session id (as in the cookie, before signing).
    pub sid: String,
    /// The session data, JSON.
    pub data: String,
    /// When the session ends.
    pub expires_at: Timestamp,
}

impl Model for StoredSession {
    const COLLECTION: &'static str = "sessions";
    fn indexes() -> Vec<Index> {
        vec![
            Index::on(["sid"]).unique(),
            Index::on(["expires_at"]).ttl(std::time::Duration::ZERO),
        ]
    }
}

/// Where sessions live.
#[derive(Clone)]
pub enum SessionBackend {
    #[cfg(feature = "redis")]
    /// Redis: `{prefix}session:{id}` keys expiring with the session.
    Redis {
        /// The connection.
        conn: redis::aio::ConnectionManager,
        /// Key prefix (`{slug}:`).
        prefix: String,
    },
    /// The app's store.
    Store(Store),
}

impl fmt::Debug for SessionBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            #[cfg(feature = "redis")]
            Self::Redis { .. } => "SessionBackend::Redis",
            Self::Store(_) => "SessionBackend::Store",
        })
    }
}

fn backend_error(e: impl fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn to_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl SessionBackend {
    /// Writes the record, returning whether it was written: when `new`, only under an unused
    /// id; otherwise only over a stored session, so a request still in flight when its session
    /// was deleted (signed out elsewhere) cannot write it back.
    async fn write(&self, record: &Record, new: bool) -> session_store::Result<bool> {
        let data = serde_json::to_string(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let mut expires = to_millis(record.expiry_date);
        if !record.data.contains_key(super::user::USER_KEY) {
            expires = expires.min(to_millis(OffsetDateTime::now_utc() + ANONYMOUS_LIFETIME));
        }
        match self {
            #[cfg(feature = "redis")]
            Self::Redis { conn, prefix } => {
                let key = format!("{prefix}session:{}", record.id);
                let mut options = redis::SetOptions::default()
                    .with_expiration(redis::SetExpiry::PXAT(expires.max(0) as u64));
                options = options.conditional_set(if new {
                    redis::ExistenceCheck::NX
                } else {
                    redis::ExistenceCheck::XX
                });
                let written: Option<String> = conn
                    .clone()
                    .set_options(key, data, options)
                    .await
                    .map_err(backend_error)?;
                Ok(written.is_some())
            }
            Self::Store(store) => {
                let sessions = store.models::<StoredSession>();
                let sid = record.id.to_string();
                let expires_at = Timestamp::from_millis(expires);
                if !new {
                    let update = Update::set(bson::doc! {
                        "data": &data,
                        "expires_at": expires_at,
                    });
                    let updated = sessions
                        .collection()
                        .update_one(Filter::eq("sid", sid.clone()), update)
                        .await
                        .map_err(backend_error)?;
                    return Ok(updated.is_some());
                }
                match sessions
                    .insert(StoredSession {
                        sid,
                        data,
                        expires_at,
                    })
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(crate::store::StoreError::Duplicate { .. }) => Ok(false),
                    Err(e) => Err(backend_error(e)),
                }
            }
        }
    }
}

#[async_trait]
impl SessionStore for SessionBackend {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // Always under a fresh id: a session flushed at logout and then given a flash message
        // comes here with its old id, which must stay dead (a request in flight, or a stolen
        // cookie, would be signed in again). Written only under an unused id (SET NX / the
        // unique `sid` index): another on a collision.
        // Over the address's budget, nothing is stored (the cookie is taken off the response).
        record.id = Id::default();
        if !may_start(record).await {
            return Ok(());
        }
        loop {
            if self.write(record, true).await? {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.write(record, false).await.map(drop)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let (data, expires) = match self {
            #[cfg(feature = "redis")]
            Self::Redis { conn, prefix } => {
                let key = format!("{prefix}session:{id}");
                let (data, ms): (Option<String>, i64) = redis::pipe()
                    .get(&key)
                    .cmd("PEXPIRETIME")
                    .arg(&key)
                    .query_async(&mut conn.clone())
                    .await
                    .map_err(backend_error)?;
                let Some(data) = data else { return Ok(None) };
                if ms < 0 {
                    return Ok(None);
                }
                (data, ms)
            }
            Self::Store(store) => {
                let found = store
                    .models::<StoredSession>()
                    .find_one_remembered(Filter::eq("sid", id.to_string()))
                    .await
                    .map_err(backend_error)?;
                let Some(found) = found else { return Ok(None) };
                let expires = found.data.expires_at.millis();
                if expires <= Timestamp::now().millis() {
                    return Ok(None);
                }
                (found.data.data, expires)
            }
        };
        let data =
            serde_json::from_str(&data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(expires) * 1_000_000)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis { conn, prefix } => conn
                .clone()
                .del::<_, ()>(format!("{prefix}session:{id}"))
                .await
                .map_err(backend_error),
            Self::Store(store) => store
                .models::<StoredSession>()
                .delete_many(Filter::eq("sid", id.to_string()))
                .await
                .map(drop)
                .map_err(backend_error),
        }
    }
}

/// The session layer: cookie `session`, HttpOnly, SameSite=Lax, Secure in prod, signed with a
/// key derived from `SESSION_KEY`, 14 days of inactivity (renewed by `load_user` once a day).
pub fn layer(
    backend: SessionBackend,
    settings: &Settings,
) -> SessionManagerLayer<SessionBackend, SignedCookie> {
    let secret = if settings.session_key.is_empty() {
        crate::security::random_token(48)
    } else {
        settings.session_key.clone()
    };
    SessionManagerLayer::new(backend)
        .with_name("session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(settings.is_prod())
        .with_expiry(Expiry::OnInactivity(time::Duration::days(
            SESSION_LIFETIME_DAYS,
        )))
        .with_signed(cookie_key(&secret))
}

/// The key session cookies are signed with, derived from `SESSION_KEY`.
pub(crate) fn cookie_key(secret: &str) -> Key {
    Key::from(sha2::Sha512::digest(secret.as_bytes()).as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deleted_session_is_not_written_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionBackend::Store(Store::embedded(&dir.path().join("s.sqlite3")).unwrap());
        let mut record = Record {
            id: Id::default(),
            data: [("user".to_owned(), serde_json::json!("ada"))].into(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::days(1),
        };
        store.create(&mut record).await.unwrap();
        let old = record.id;
        store.delete(&old).await.unwrap();
        store.save(&record).await.unwrap();
        assert!(store.load(&old).await.unwrap().is_none(), "saved back");
        // A flushed session given new data (a flash after logout) is created anew, elsewhere.
        store.create(&mut record).await.unwrap();
        assert_ne!(record.id, old);
        assert!(
            store.load(&old).await.unwrap().is_none(),
            "created under its old id"
        );
    }

    #[tokio::test]
    async fn a_session_without_a_user_lives_an_hour_and_a_signed_in_one_its_full_term() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::embedded(&dir.path().join("s.sqlite3")).unwrap();
        let backend = SessionBackend::Store(store.clone());
        let term = OffsetDateTime::now_utc() + time::Duration::days(SESSION_LIFETIME_DAYS);
        let stored_for = async |data: serde_json::Value| {
            let mut record = Record {
                id: Id::default(),
                data: serde_json::from_value(data).unwrap(),
                expiry_date: term,
            };
            backend.create(&mut record).await.unwrap();
            let stored = store
                .models::<StoredSession>()
                .find_one(Filter::eq("sid", record.id.to_string()))
                .await
                .unwrap()
                .unwrap();
            stored.data.expires_at.millis() - Timestamp::now().millis()
        };
        let hour = ANONYMOUS_LIFETIME.whole_milliseconds() as i64;
        let flash = stored_for(serde_json::json!({ "_flash": ["saved"] })).await;
        assert!(flash <= hour && flash > hour - 60_000, "{flash} ms");
        let signed_in = stored_for(serde_json::json!({ "user": "ada" })).await;
        assert!(signed_in > 13 * 86_400_000, "{signed_in} ms");
    }

    #[tokio::test]
    async fn a_remembered_session_follows_changes_made_by_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store.sqlite3");
        let here = SessionBackend::Store(Store::embedded(&file).unwrap());
        // Another app process on the same store file.
        let there = SessionBackend::Store(Store::embedded(&file).unwrap());
        let mut record = Record {
            id: Id::default(),
            data: [("user".to_owned(), serde_json::json!("ada"))].into(),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::days(1),
        };
        here.create(&mut record).await.unwrap();
        let data = |r: Option<Record>| r.map(|r| r.data["user"].clone());
        assert_eq!(
            data(here.load(&record.id).await.unwrap()),
            Some("ada".into())
        );
        assert_eq!(
            data(here.load(&record.id).await.unwrap()),
            Some("ada".into())
        );
        record.data.insert("user".into(), "grace".into());
        there.save(&record).await.unwrap();
        assert_eq!(
            data(here.load(&record.id).await.unwrap()),
            Some("grace".into()),
            "a change made elsewhere is read at once"
        );
        there.delete(&record.id).await.unwrap();
        assert_eq!(
            data(here.load(&record.id).await.unwrap()),
            None,
            "signed out elsewhere: signed out here at once"
        );
    }
}
