//! Fixed-window rate limits: shared by every process through Redis (`INCR` + `PEXPIRE` in one
//! transaction) when `REDIS_URL` is set, else kept in this process's memory. While Redis fails,
//! hits are counted in this process's memory, so an outage neither opens the limits nor locks
//! anyone out. The in-memory counts hold at most [`MemoryCounts::MAX_KEYS`] keys.

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

/// A rate that does not read as `N/unit`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a rate like 5/minute (units: second, minute, hour, day)")]
pub struct RateError(String);

impl FromStr for Rate {
    type Err = RateError;

    /// Parses `N/second`, `N/minute`, `N/hour` or `N/day`.
    fn from_str(s: &str) -> Result<Self, RateError> {
        let bad = || RateError(s.to_owned());
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
        /// Counts hits while Redis fails.
        fallback: Arc<Mutex<MemoryCounts>>,
    },
    Memory(Arc<Mutex<MemoryCounts>>),
}

/// The in-process counts: per key, when its window ends (ms since the epoch) and its hits.
#[derive(Debug, Default)]
struct MemoryCounts {
    entries: HashMap<String, (u64, u32)>,
    /// No sweep before this time (ms): sweeps are timed, not run on every hit.
    next_sweep_ms: u64,
}

impl MemoryCounts {
    /// Above this many keys, ended windows are swept out, at most once a second.
    const SWEEP_ABOVE: usize = 10_000;
    /// The most keys kept. When live windows fill it, new keys share one bucket
    /// ([`Self::OVERFLOW`]): memory stays bounded and a flood of fresh keys (addresses) cannot
    /// escape the limit; known keys keep their own counts.
    const MAX_KEYS: usize = 100_000;
    /// The bucket new keys share while the map is full.
    const OVERFLOW: &'static str = "\0overflow";

    /// Counts a hit on `key` at `now_ms` in a window ending at `window_end_ms`; the hits so far.
    fn hit(&mut self, key: &str, now_ms: u64, window_end_ms: u64) -> u32 {
        if self.entries.len() > Self::SWEEP_ABOVE && now_ms >= self.next_sweep_ms {
            self.entries.retain(|_, (end, _)| *end > now_ms);
            self.next_sweep_ms = now_ms + 1_000;
        }
        let key = if self.entries.len() >= Self::MAX_KEYS && !self.entries.contains_key(key) {
            tracing::warn!(
                "rate limiter holds {} live keys: new keys share one bucket",
                Self::MAX_KEYS
            );
            Self::OVERFLOW
        } else {
            key
        };
        let entry = self
            .entries
            .entry(key.to_owned())
            .or_insert((window_end_ms, 0));
        if entry.0 <= now_ms {
            *entry = (window_end_ms, 0);
        }
        entry.1 += 1;
        entry.1
    }
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
                fallback: Arc::default(),
            },
        }
    }

    /// Records a hit on `key`; `Err` when it goes over `rate`. While Redis fails (logged), the
    /// hit is counted in this process instead.
    pub async fn hit(&self, key: &str, rate: Rate) -> Result<(), Limited> {
        let per_ms = rate.per.as_millis().max(1) as u64;
        let now_ms = crate::store::Timestamp::now().millis().max(0) as u64;
        let window = now_ms / per_ms;
        let retry_after = ((window + 1) * per_ms - now_ms).div_ceil(1000);
        let count = match &self.backend {
            #[cfg(feature = "redis")]
            Backend::Redis {
                conn,
                prefix,
                fallback,
            } => {
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
                        tracing::warn!("rate limit counted in this process, Redis failed: {e}");
                        count_in(fallback, key, now_ms, (window + 1) * per_ms)
                    }
                }
            }
            Backend::Memory(counts) => count_in(counts, key, now_ms, (window + 1) * per_ms),
        };
        if count > rate.max {
            Err(Limited { retry_after })
        } else {
            Ok(())
        }
    }
}

/// Counts a hit in `counts`, whatever a panicking holder left behind.
fn count_in(counts: &Mutex<MemoryCounts>, key: &str, now_ms: u64, window_end_ms: u64) -> u32 {
    counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .hit(key, now_ms, window_end_ms)
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
                bad.parse::<Rate>()
                    .unwrap_err()
                    .to_string()
                    .contains("5/minute"),
                "{bad}"
            );
        }
    }

    #[test]
    fn memory_sweeps_are_timed_and_keep_live_windows() {
        let mut counts = MemoryCounts::default();
        let hour = 3_600_000;
        assert_eq!(counts.hit("slow", 0, hour), 1);
        for i in 0..=MemoryCounts::SWEEP_ABOVE {
            counts.hit(&format!("k{i}"), 0, 1_000);
        }
        // Past the short windows: one sweep drops them and keeps the hour-long one.
        assert_eq!(counts.hit("slow", 5_000, hour), 2);
        assert_eq!(counts.entries.len(), 1);
        for i in 0..=MemoryCounts::SWEEP_ABOVE {
            counts.hit(&format!("m{i}"), 5_000, 5_500);
        }
        counts.hit("slow", 5_600, hour);
        assert!(
            counts.entries.len() > MemoryCounts::SWEEP_ABOVE,
            "no second sweep within a second, however many hits"
        );
        assert_eq!(counts.hit("slow", 6_000, hour), 4, "the count survived");
        assert_eq!(counts.entries.len(), 1, "then the next sweep runs");
    }

    #[test]
    fn memory_keys_are_capped_and_new_keys_share_a_bucket() {
        let mut counts = MemoryCounts::default();
        let hour = 3_600_000;
        for i in 0..MemoryCounts::MAX_KEYS {
            counts.hit(&format!("k{i}"), 0, hour);
        }
        assert_eq!(counts.hit("fresh-1", 10, hour), 1);
        assert_eq!(
            counts.hit("fresh-2", 10, hour),
            2,
            "fresh keys share one bucket"
        );
        assert_eq!(
            counts.hit("k7", 10, hour),
            2,
            "known keys keep their own count"
        );
        assert_eq!(counts.entries.len(), MemoryCounts::MAX_KEYS + 1);
        // Once the windows end, the forced sweep frees room and fresh keys count on their own.
        assert_eq!(counts.hit("fresh-3", hour, 2 * hour), 1);
        assert_eq!(counts.entries.len(), 1);
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
