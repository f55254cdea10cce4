//! Fixed-window rate limits: shared by every process through Redis (`INCR` + `PEXPIRE` in one
//! transaction) when `REDIS_URL` is set, else kept in this process's memory.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A limit such as `5/minute`: at most `max` hits per window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Hits allowed per window.
    pub max: u32,
    /// The window.
    pub per: Duration,
}

impl FromStr for Rate {
    type Err = String;

    /// Parses `N/second`, `N/minute`, `N/hour` or `N/day`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a rate like 5/minute (units: second, minute, hour, day)");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let max = n.trim().parse::<u32>().map_err(|_| bad())?;
        let secs = match unit.trim().trim_end_matches('s') {
            "second" | "sec" => 1,
            "minute" | "min" => 60,
            "hour" => 3600,
            "day" => 86_400,
            _ => return Err(bad()),
        };
        if max == 0 {
            return Err(bad());
        }
        Ok(Self {
            max,
            per: Duration::from_secs(secs),
        })
    }
}

/// A hit over the limit: when the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Seconds until a new window starts.
    pub retry_after: u64,
}

#[derive(Clone)]
enum Backend {
    #[cfg(feature = "redis")]
    Redis {
        conn: redis::aio::ConnectionManager,
        prefix: String,
    },
    Memory(Arc<Mutex<HashMap<String, (u64, u32)>>>),
}

/// Counts hits per key; cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    backend: Backend,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis { .. } => "RateLimiter::Redis",
            Backend::Memory(_) => "RateLimiter::Memory",
        })
    }
}

impl RateLimiter {
    /// Limits kept in this process.
    pub fn in_memory() -> Self {
        Self {
            backend: Backend::Memory(Arc::default()),
        }
    }

    #[cfg(feature = "redis")]
    /// Limits shared through Redis, keys under `{prefix}ratelimit:`.
    pub fn redis(conn: redis::aio::ConnectionManager, prefix: &str) -> Self {
        Self {
            backend: Backend::Redis {
                conn,
                prefix: prefix.to_owned(),
            },
        }
    }

    /// Records a hit on `key`; `Err` when it goes over `rate`. A Redis failure lets the hit
    /// through (logged): an outage must not lock everyone out.
    pub async fn hit(&self, key: &str, rate: Rate) -> Result<(), Limited> {
        let per_ms = rate.per.as_millis().max(1) as u64;
        let now_ms = crate::store::Timestamp::now().millis().max(0) as u64;
        let window = now_ms / per_ms;
        let retry_after = ((window + 1) * per_ms - now_ms).div_ceil(1000);
        let count = match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis { conn, prefix } => {
                let k = format!("{prefix}ratelimit:{key}:{window}");
                let result: redis::RedisResult<(u32, ())> = redis::pipe()
                    .atomic()
                    .incr(&k, 1u32)
                    .pexpire(&k, per_ms as i64)
                    .query_async(&mut conn.clone())
                    .await;
                match result {
                    Ok((count, ())) => count,
                    Err(e) => {
                        tracing::warn!("rate limit check skipped, Redis failed: {e}");
                        return Ok(());
                    }
                }
            }
            Backend::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                if map.len() > 10_000 {
                    map.retain(|_, (w, _)| *w == window);
                }
                let entry = map.entry(key.to_owned()).or_insert((window, 0));
                if entry.0 != window {
                    *entry = (window, 0);
                }
                entry.1 += 1;
                entry.1
            }
        };
        if count > rate.max {
            Err(Limited { retry_after })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_clear_errors() {
        assert_eq!(
            "5/minute".parse::<Rate>(),
            Ok(Rate {
                max: 5,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!("10/seconds".parse::<Rate>().unwrap().per.as_secs(), 1);
        assert_eq!("2/hour".parse::<Rate>().unwrap().per.as_secs(), 3600);
        for bad in ["5", "x/minute", "5/fortnight", "0/minute"] {
            assert!(
                bad.parse::<Rate>().unwrap_err().contains("5/minute"),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn memory_limits_count_per_key() {
        let limiter = RateLimiter::in_memory();
        let rate: Rate = "2/hour".parse().unwrap();
        assert!(limiter.hit("a", rate).await.is_ok());
        assert!(limiter.hit("a", rate).await.is_ok());
        let limited = limiter.hit("a", rate).await.unwrap_err();
        assert!(limited.retry_after > 0 && limited.retry_after <= 3600);
        assert!(limiter.hit("b", rate).await.is_ok(), "keys are independent");
    }
}
