//! Redis connections shared by the job queue, SSE fan-out and health checks.
//!
//! Every connection has a response timeout, and a connection that issues blocking reads gets
//! one longer than the longest block (Vibetuner's workers died when a socket timeout was shorter
//! than their blocking read, its issue #2035).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Response timeout of ordinary (non-blocking) commands.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A reconnecting connection to `url`, opened on first use (so a process starts, and reports
/// itself not ready, while Redis is down). `longest_block` is the longest blocking command
/// (`XREADGROUP BLOCK`, ...) it will carry; its response timeout is that plus [`RESPONSE_TIMEOUT`].
pub fn connect(url: &str, longest_block: Duration) -> anyhow::Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(longest_block + RESPONSE_TIMEOUT))
        .set_number_of_retries(2);
    ConnectionManager::new_lazy_with_config(client(url)?, config)
        .map_err(|e| unreachable_error(url, &e))
}

/// A client for `url` (no connection yet).
pub fn client(url: &str) -> anyhow::Result<redis::Client> {
    redis::Client::open(url).map_err(|e| {
        anyhow::anyhow!(
            "REDIS_URL {} is not a Redis URL ({e}); use redis://host:6379/0",
            crate::health::redact(url)
        )
    })
}

/// The error for a Redis server that does not answer, saying what to do.
pub fn unreachable_error(url: &str, e: &redis::RedisError) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot reach Redis at {} ({e}): start it, fix REDIS_URL, or unset REDIS_URL to use in-process fallbacks",
        crate::health::redact(url)
    )
}

/// How long a health check's `PING` may take.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends `PING` and checks the answer (within [`PING_TIMEOUT`]).
pub async fn ping(conn: &mut ConnectionManager) -> Result<(), String> {
    let pong: String = tokio::time::timeout(PING_TIMEOUT, redis::cmd("PING").query_async(conn))
        .await
        .map_err(|_| format!("no answer to PING within {}s", PING_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(format!("unexpected PING answer {pong:?}"))
    }
}
