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
    /// A relay connection, by its ticket's subject (`tid/oid`, or the caller class and client
    /// IP: `relay::ticket_subject`): its own bucket, so that opening sessions never uses up
    /// the token requests that renew the tickets.
    Relay(String),
    /// A refused authentication, by client IP: its own bucket.
    Refused(IpAddr),
}

pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    /// Prune once this many callers are tracked ([`MAX_TRACKED`] in service).
    max_tracked: usize,
    buckets: Mutex<Buckets>,
}

/// The buckets, and when to look for full ones to forget next.
#[derive(Default)]
struct Buckets {
    map: HashMap<RateKey, Bucket>,
    /// The map's size that triggers the next prune (see [`RateLimiter::check`]).
    prune_at: usize,
    /// Prunes so far (each a pass over every bucket).
    prunes: u64,
}

/// Callers tracked before full buckets (callers quiet long enough to have refilled) are
/// forgotten.
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

/// The `Retry-After` seconds for a refusal that must wait `wait` ([`RateLimiter::check`]'s
/// error): rounded up, at least 1 (a 0 would invite an immediate retry).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

impl RateLimiter {
    /// `None` when `per_minute` is 0 (no limit).
    pub fn new(per_minute: u32, burst: u32) -> Option<Self> {
        Self::tracking(per_minute, burst, MAX_TRACKED)
    }

    fn tracking(per_minute: u32, burst: u32, max_tracked: usize) -> Option<Self> {
        (per_minute > 0).then(|| RateLimiter {
            per_sec: per_minute as f64 / 60.0,
            burst: burst.max(1) as f64,
            max_tracked,
            buckets: Mutex::new(Buckets {
                prune_at: max_tracked,
                ..Buckets::default()
            }),
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
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Buckets {
            map,
            prune_at,
            prunes,
        } = &mut *buckets;
        if map.len() >= *prune_at {
            let (per_sec, burst) = (self.per_sec, self.burst);
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_sec < burst
            });
            *prunes += 1;
            // The next pass only once as many callers again are tracked: a pass costs the
            // map's size, so it is paid for by that many new callers (amortised O(1) per
            // request), never by every request while many callers are active.
            *prune_at = self.max_tracked.max(2 * map.len());
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
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.map.clear();
        buckets.prune_at = self.max_tracked;
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

    /// Noticed in review: at the cap with every caller active (none to forget), every new
    /// caller's request scanned the whole map under the lock (100 000 buckets per request: a
    /// cheap way to slow the broker down for an attacker with many IPv6 /64s). A pass now comes
    /// only after as many new callers again.
    #[test]
    fn a_full_table_of_active_callers_is_not_scanned_on_every_request() {
        let rl = RateLimiter::tracking(60, 5, 100).unwrap();
        let t0 = Instant::now();
        let ip = |i: u32| RateKey::Ip(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
        for i in 0..1_000 {
            rl.check(ip(i), t0).unwrap();
        }
        let prunes = rl.buckets.lock().unwrap().prunes;
        assert!(prunes <= 5, "{prunes} passes for 900 callers over the cap");
        assert_eq!(
            rl.buckets.lock().unwrap().map.len(),
            1_000,
            "all active: all kept"
        );
        // Control: callers that went quiet (their buckets refilled) are forgotten by the next
        // pass, and the threshold comes back down to the cap.
        let later = t0 + Duration::from_secs(60);
        for i in 1_000..3_000 {
            rl.check(ip(i), later).unwrap();
        }
        let b = rl.buckets.lock().unwrap();
        assert!(
            b.map.len() < 3_000,
            "quiet callers were forgotten ({})",
            b.map.len()
        );
        assert!(b.prunes > prunes);
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
