//! Redis connections shared by the job queue, SSE fan-out and health checks.
//!
//! Every connection has a response timeout, and a connection that issues blocking reads gets
//! one longer than the longest block (Vibetuner's workers died when a socket timeout was shorter
//! than their blocking read, its issue #2035).

#![cfg_attr(not(feature = "redis"), allow(dead_code))]

/// Why a `REDIS_URL` cannot be used by an app built without the `redis` feature.
#[cfg(not(feature = "redis"))]
pub(crate) const DISABLED: &str = "REDIS_URL is set, but this app was built without vibetuner's \
    `redis` feature: add it to the vibetuner dependency's features in Cargo.toml, or unset \
    REDIS_URL to keep sessions and tasks in the store and SSE in-process";

/// The process's Redis: its URL and the one connection every ordinary command shares.
/// (Without the `redis` feature this type has no values.)
#[cfg(feature = "redis")]
pub(crate) struct Shared {
    pub(crate) url: String,
    pub(crate) conn: redis::aio::ConnectionManager,
}

/// Without the `redis` feature there is never a Redis connection.
#[cfg(not(feature = "redis"))]
pub(crate) enum Shared {}

/// The Redis the settings select: `REDIS_URL`, opened on first use; an error without the
/// `redis` feature when it is set.
pub(crate) fn from_settings(settings: &crate::config::Settings) -> anyhow::Result<Option<Shared>> {
    match settings.redis_url.as_deref() {
        None => Ok(None),
        #[cfg(feature = "redis")]
        Some(url) => Ok(Some(Shared {
            url: url.to_owned(),
            conn: connect(url, std::time::Duration::ZERO)?,
        })),
        #[cfg(not(feature = "redis"))]
        Some(_) => anyhow::bail!("{DISABLED}"),
    }
}

#[cfg(feature = "redis")]
pub(crate) use enabled::*;

#[cfg(feature = "redis")]
mod enabled {
    use std::time::Duration;

    use redis::aio::{ConnectionManager, ConnectionManagerConfig};

    use crate::health::CheckError;

    /// Response timeout of ordinary (non-blocking) commands.
    pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

    /// How long connecting may take.
    pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

    /// A reconnecting connection to `url`, opened on first use (so a process starts, and reports
    /// itself not ready, while Redis is down). `longest_block` is the longest blocking command
    /// (`XREADGROUP BLOCK`, ...) it will carry; its response timeout is that plus [`RESPONSE_TIMEOUT`].
    pub(crate) fn connect(url: &str, longest_block: Duration) -> anyhow::Result<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(longest_block + RESPONSE_TIMEOUT))
            .set_number_of_retries(2);
        ConnectionManager::new_lazy_with_config(client(url)?, config)
            .map_err(|e| unreachable_error(url, &e))
    }

    /// A client for `url` (no connection yet).
    pub(crate) fn client(url: &str) -> anyhow::Result<redis::Client> {
        redis::Client::open(url).map_err(|e| {
            anyhow::anyhow!(
                "REDIS_URL {} is not a Redis URL ({e}); use redis://host:6379/0",
                crate::health::redact(url)
            )
        })
    }

    /// The error for a Redis server that does not answer, saying what to do.
    pub(crate) fn unreachable_error(url: &str, e: &redis::RedisError) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot reach Redis at {} ({e}): start it, fix REDIS_URL, or unset REDIS_URL to use in-process fallbacks",
            crate::health::redact(url)
        )
    }

    /// How long a health check's `PING` may take.
    pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(1);

    /// Sends `PING` and checks the answer (within [`PING_TIMEOUT`]).
    pub(crate) async fn ping(conn: &mut ConnectionManager) -> Result<(), CheckError> {
        let pong: String = tokio::time::timeout(PING_TIMEOUT, redis::cmd("PING").query_async(conn))
            .await
            .map_err(|_| CheckError::TimedOut(PING_TIMEOUT))?
            .map_err(CheckError::failed)?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(CheckError::failed(format_args!(
                "unexpected PING answer {pong:?}"
            )))
        }
    }
}
