//! Token buckets per caller: per authenticated user (`tid`+`oid`) when the broker authenticates
//! users, else per client IP (IPv6 clients by their /64). Refused authentications are counted in
//! a separate per-IP bucket, so an anonymous flood never drains a user's bucket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Whose bucket a request draws from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// An authenticated user: `tid` + `oid`.
    User { tid: String, oid: String },
    /// An unauthenticated caller (`--auth none`/`header`), by client IP ([`client_key`]).
    Ip(IpAddr),
    /// A refused authentication, by client IP: its own bucket.
    Refused(IpAddr),
}

pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<RateKey, Bucket>>,
}

const MAX_TRACKED: usize = 100_000;

/// IPv4-mapped addresses count as IPv4; IPv6 addresses are grouped by /64 (one subscriber).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                IpAddr::V4(v4)
            } else {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        }
    }
}

impl RateLimiter {
    /// `None` when `per_minute` is 0 (no limit).
    pub fn new(per_minute: u32, burst: u32) -> Option<Self> {
        (per_minute > 0).then(|| RateLimiter {
            per_sec: per_minute as f64 / 60.0,
            burst: burst.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one token for `key`; on refusal returns how long until one is available.
    /// The lock is never held across an await.
    pub fn check(&self, key: RateKey, now: Instant) -> Result<(), Duration> {
        let key = match key {
            RateKey::Ip(ip) => RateKey::Ip(client_key(ip)),
            RateKey::Refused(ip) => RateKey::Refused(client_key(ip)),
            k => k,
        };
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_TRACKED {
            let (per_sec, burst) = (self.per_sec, self.burst);
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_sec < burst
            });
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_sec))
        }
    }

    pub fn reset(&self) {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let rl = RateLimiter::new(60, 3).unwrap();
        let ip = RateKey::Ip("10.0.0.1".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            rl.check(ip.clone(), t0).unwrap();
        }
        let wait = rl.check(ip.clone(), t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // another client is unaffected
        rl.check(RateKey::Ip("10.0.0.2".parse().unwrap()), t0)
            .unwrap();
        // refusals and users have their own buckets
        rl.check(RateKey::Refused("10.0.0.1".parse().unwrap()), t0)
            .unwrap();
        let user = || RateKey::User {
            tid: "t".into(),
            oid: "o".into(),
        };
        rl.check(user(), t0).unwrap();
        // one second later one more request is allowed
        rl.check(ip.clone(), t0 + Duration::from_millis(1001))
            .unwrap();
        assert!(rl.check(ip, t0 + Duration::from_millis(1002)).is_err());
        assert!(RateLimiter::new(0, 5).is_none());
    }

    #[test]
    fn ipv6_grouped_by_64() {
        assert_eq!(
            client_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            client_key("2001:db8:1:2:bbbb::2".parse().unwrap())
        );
        assert_eq!(
            client_key("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }
}
