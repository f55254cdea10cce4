//! Counting open things (connections, SSE subscribers) per client address and in total, for
//! the caps of `serve` and of SSE.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The key a client is counted under: its address, or its /64 for IPv6 (one host usually
/// holds a whole /64).
pub(crate) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// Which cap refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    Total,
    PerIp,
}

/// Open things in total and per address.
#[derive(Default)]
pub(crate) struct Counter {
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One thing counted; uncounted when dropped.
pub(crate) struct Slot {
    counter: Arc<Counter>,
    key: Option<IpAddr>,
    first: bool,
}

impl Slot {
    /// The only place its address holds: it had none open before this one (never for an
    /// address exempt from the per-address cap).
    pub(crate) fn first(&self) -> bool {
        self.first
    }
}

impl Counter {
    /// Counts one more from `ip` (`None`: exempt from the per-address cap) unless `total` or
    /// `per_ip` are reached.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        total: usize,
        per_ip: usize,
    ) -> Result<Slot, Full> {
        let mut counts = self.counts.lock().expect("counter lock");
        let (open, by_ip) = &mut *counts;
        if *open >= total {
            return Err(Full::Total);
        }
        let key = ip.map(ip_key);
        let mut first = false;
        if let Some(key) = key {
            let count = by_ip.entry(key).or_insert(0);
            if *count >= per_ip {
                return Err(Full::PerIp);
            }
            first = *count == 0;
            *count += 1;
        }
        *open += 1;
        Ok(Slot {
            counter: self.clone(),
            key,
            first,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counter.counts.lock().expect("counter lock");
        let (open, by_ip) = &mut *counts;
        *open -= 1;
        if let Some(key) = self.key
            && let Some(count) = by_ip.get_mut(&key)
        {
            *count -= 1;
            if *count == 0 {
                by_ip.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_slots_free_on_drop() {
        let counter = Arc::new(Counter::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let held = counter.acquire(Some(a), 3, 2).unwrap();
        assert!(held.first());
        assert!(!counter.acquire(Some(a), 3, 2).unwrap().first());
        assert!(!counter.acquire(None, 3, 2).unwrap().first());
        let _second = counter.acquire(Some(a), 3, 2).unwrap();
        assert_eq!(counter.acquire(Some(a), 3, 2).err(), Some(Full::PerIp));
        let _exempt = counter.acquire(None, 3, 2).unwrap();
        assert_eq!(counter.acquire(None, 3, 2).err(), Some(Full::Total));
        drop(held);
        assert!(counter.acquire(Some(a), 3, 2).is_ok());
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let one = ip_key("2001:db8:1:2::1".parse().unwrap());
        assert_eq!(one, ip_key("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert_ne!(one, ip_key("2001:db8:1:3::1".parse().unwrap()));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ip_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
