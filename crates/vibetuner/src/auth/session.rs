//! Server-side sessions on `tower-sessions` with the framework's own stores: Redis when
//! `REDIS_URL` is set, otherwise the app's store (collection `sessions`). The cookie only
//! carries a signed random id; logout deletes the record. On the embedded store, a session read
//! is remembered until the database changes (any commit, from any process), so the session
//! every request reads costs no query while nothing is written.

use std::fmt;

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

use crate::config::Settings;
use crate::store::{Filter, Index, Model, Store, Timestamp, Update};

/// How long a session lives without activity (Vibetuner: 14 days).
pub const SESSION_LIFETIME_DAYS: i64 = 14;

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
        let expires = to_millis(record.expiry_date);
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
        loop {
            record.id = Id::default();
            if self.write(record, true).await? {
                return Ok(());
            }
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
    let key = Key::from(sha2::Sha512::digest(secret.as_bytes()).as_slice());
    SessionManagerLayer::new(backend)
        .with_name("session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(settings.is_prod())
        .with_expiry(Expiry::OnInactivity(time::Duration::days(
            SESSION_LIFETIME_DAYS,
        )))
        .with_signed(key)
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
