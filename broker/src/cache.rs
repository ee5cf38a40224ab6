//! The token cache: one upstream request per token lifetime, however many clients ask.
//!
//! * Fast path: a lock-free `ArcSwap` load; no lock is held across an await for a cached token.
//! * Slow path (no token, or past its refresh point): single flight. The first caller spawns the
//!   upstream request as a task and publishes it as a shared future; every concurrent caller awaits
//!   that same future (success or failure alike), so a burst costs exactly one upstream call.
//! * Refresh point: `expiresAt - margin`, margin = 1.25 × the browser client's margin
//!   (max(30 s, 20 % of the lifetime)), at most 60 % of the lifetime ([`refresh_margin`]).
//! * A failure is remembered for a few seconds ([`FAILURE_HOLD_MIN`]..[`FAILURE_HOLD_MAX`],
//!   jittered) so that a broken upstream (a revoked key answering 401) is not called on every
//!   request; no failure ever produces a token. While the previous token still has
//!   [`STALE_GRACE`] left, it is served instead of an error (the client sees its true remaining
//!   lifetime), and callers wait at most [`MAX_REFRESH_WAIT`] for a slow refresh before getting it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_util::future::{BoxFuture, FutureExt, Shared};

use crate::outbound::UpstreamError;
use crate::secret::Secret;
use crate::upstream::{Upstream, UpstreamToken};

/// A token past its refresh point is still served on upstream failure while at least this much
/// of its lifetime is left.
pub const STALE_GRACE: Duration = Duration::from_secs(10);

/// How long a caller waits for an in-flight refresh while the previous token is still valid
/// (≥ [`STALE_GRACE`] left) before it is served that token instead. Far below the client's
/// `requestTimeout` (10 s by default), so a slow upstream never times a client out.
pub const MAX_REFRESH_WAIT: Duration = Duration::from_secs(2);

/// Shortest time an upstream failure is remembered (no upstream call meanwhile).
pub const FAILURE_HOLD_MIN: Duration = Duration::from_secs(2);
/// Longest time an upstream failure is remembered; the hold is drawn uniformly in between so
/// that several brokers behind one upstream do not retry in lockstep. Short enough that the
/// client's own backoff (first retry after about a second, then growing) loses little.
pub const FAILURE_HOLD_MAX: Duration = Duration::from_secs(5);

fn failure_hold() -> Duration {
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        u16::from_le_bytes(b) as f64 / u16::MAX as f64
    } else {
        0.5
    };
    FAILURE_HOLD_MIN + (FAILURE_HOLD_MAX - FAILURE_HOLD_MIN).mul_f64(r)
}
/// How long before expiry the cached token is replaced: 1.25 × the browser client's margin
/// (max(30 s, 20 %)), at most 60 % of the lifetime.
///
/// Why larger than the client's: a client refreshes up to 1.1 × its margin before expiry (jitter).
/// If the broker's margin were the same, such a request would get the *same* cached token back
/// with a shortened lifetime, the client would re-plan on that shorter lifetime, and every other
/// token would ride out only a 30-second broker outage instead of the 2 minutes the margin is
/// for. Refreshing upstream first means every client refresh receives a new token.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    use speech_token_client::engine::policy::{MARGIN_FRACTION, MIN_MARGIN_MS};
    let client =
        Duration::from_secs_f64(MIN_MARGIN_MS / 1000.0).max(lifetime.mul_f64(MARGIN_FRACTION));
    (client * 5 / 4).min(lifetime * 3 / 5)
}

#[derive(Debug)]
pub struct CachedToken {
    pub token: Secret,
    pub fingerprint: String,
    pub expires_at: Instant,
    pub refresh_at: Instant,
    pub lifetime: Duration,
    /// Largest `expiresIn` to hand out (entra `--max-ttl`).
    pub expires_in_cap: Option<u64>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

impl CachedToken {
    pub fn from_upstream(t: UpstreamToken) -> Self {
        let margin = refresh_margin(t.lifetime);
        CachedToken {
            fingerprint: t.token.fingerprint(),
            refresh_at: t.expires_at.checked_sub(margin).unwrap_or(t.expires_at),
            token: t.token,
            expires_at: t.expires_at,
            lifetime: t.lifetime,
            expires_in_cap: t.expires_in_cap,
            region: t.region,
            endpoint: t.endpoint,
        }
    }

    /// Remaining lifetime in seconds with millisecond precision (rounded down, capped).
    ///
    /// Not whole seconds: rounding down to a second throws away up to a second of every token,
    /// which for short-lived tokens moves the client's refresh point past the broker's own and
    /// the client is handed the same cached token back.
    pub fn expires_in(&self, now: Instant) -> f64 {
        let mut ms = self.expires_at.saturating_duration_since(now).as_millis() as u64;
        if let Some(cap) = self.expires_in_cap {
            ms = ms.min(cap.saturating_mul(1000));
        }
        ms.max(1) as f64 / 1000.0
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }

    /// Still worth serving instead of an error or a long wait: at least [`STALE_GRACE`] left.
    pub fn is_servable(&self, now: Instant) -> bool {
        self.expires_at.saturating_duration_since(now) >= STALE_GRACE
    }
}

type Flight = Shared<BoxFuture<'static, Result<Arc<CachedToken>, UpstreamError>>>;

pub struct TokenCache {
    upstream: Upstream,
    current: ArcSwapOption<CachedToken>,
    inflight: Mutex<Option<Flight>>,
    /// The last upstream failure and until when it is answered without asking again.
    failed: Mutex<Option<(Instant, UpstreamError)>>,
    generation: AtomicU64,
    upstream_requests: AtomicU64,
}

struct ClearInflight(Arc<TokenCache>);
impl Drop for ClearInflight {
    fn drop(&mut self) {
        *self.0.inflight.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl TokenCache {
    pub fn new(upstream: Upstream) -> Arc<Self> {
        Arc::new(TokenCache {
            upstream,
            current: ArcSwapOption::empty(),
            inflight: Mutex::new(None),
            failed: Mutex::new(None),
            generation: AtomicU64::new(0),
            upstream_requests: AtomicU64::new(0),
        })
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    pub fn upstream_requests(&self) -> u64 {
        self.upstream_requests.load(Ordering::Relaxed)
    }

    pub fn reset_counter(&self) {
        self.upstream_requests.store(0, Ordering::Relaxed);
    }

    /// Drops the cached token; the next request goes upstream. A flight already under way is
    /// still answered to its waiters but not stored.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.current.store(None);
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn held_failure(&self, now: Instant) -> Option<UpstreamError> {
        let g = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .filter(|(until, _)| now < *until)
            .map(|(_, e)| e.clone())
    }

    fn fresh(&self) -> Option<Arc<CachedToken>> {
        let cur = self.current.load_full()?;
        cur.is_fresh(Instant::now()).then_some(cur)
    }

    pub async fn get(self: &Arc<Self>) -> Result<Arc<CachedToken>, UpstreamError> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let now = Instant::now();
        let stale = self.current.load_full().filter(|t| t.is_servable(now));
        if let Some(e) = self.held_failure(now) {
            return stale.ok_or(e);
        }
        let flight = {
            let mut slot = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            // A flight that completed between our check and the lock has stored its token first.
            if let Some(t) = self.fresh() {
                return Ok(t);
            }
            match slot.as_ref() {
                Some(f) => f.clone(),
                None => {
                    let me = Arc::clone(self);
                    let task = tokio::spawn(async move {
                        let _clear = ClearInflight(Arc::clone(&me));
                        me.refresh().await
                    });
                    let f: Flight = async move {
                        task.await
                            .unwrap_or_else(|_| Err(UpstreamError::new("internal error")))
                    }
                    .boxed()
                    .shared();
                    *slot = Some(f.clone());
                    f
                }
            }
        };
        match stale {
            Some(prev) => match tokio::time::timeout(MAX_REFRESH_WAIT, flight).await {
                Ok(Ok(t)) => Ok(t),
                Ok(Err(_)) | Err(_) => Ok(prev),
            },
            None => flight.await,
        }
    }

    async fn refresh(&self) -> Result<Arc<CachedToken>, UpstreamError> {
        let generation = self.generation.load(Ordering::SeqCst);
        self.upstream_requests.fetch_add(1, Ordering::Relaxed);
        match self.upstream.fetch().await {
            Ok(tok) => {
                let cached = Arc::new(CachedToken::from_upstream(tok));
                tracing::info!(
                    fingerprint = %cached.fingerprint,
                    lifetime_s = cached.lifetime.as_secs(),
                    refresh_in_s = cached.refresh_at.saturating_duration_since(Instant::now()).as_secs(),
                    "upstream token acquired"
                );
                if self.generation.load(Ordering::SeqCst) == generation {
                    self.current.store(Some(Arc::clone(&cached)));
                    *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                Ok(cached)
            }
            Err(e) => {
                if self.generation.load(Ordering::SeqCst) == generation {
                    *self.failed.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((Instant::now() + failure_hold(), e.clone()));
                }
                if let Some(prev) = self.current.load_full() {
                    if prev.is_servable(Instant::now()) {
                        tracing::warn!(detail = %e.detail, fingerprint = %prev.fingerprint,
                            "upstream refresh failed; serving the still-valid previous token");
                        return Ok(prev);
                    }
                }
                tracing::warn!(detail = %e.detail, "upstream token request failed");
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins() {
        // 1.25 × the client's margin, so that a client's refresh always finds a new token.
        assert_eq!(
            refresh_margin(Duration::from_secs(600)),
            Duration::from_secs(150)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(3599)),
            Duration::from_secs_f64(899.75)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(100)),
            Duration::from_millis(37_500)
        );
        // Short lifetimes: at most 60 % of the lifetime.
        assert_eq!(
            refresh_margin(Duration::from_secs(20)),
            Duration::from_secs(12)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(2)),
            Duration::from_millis(1200)
        );
    }

    #[test]
    fn expires_in_has_millisecond_precision_caps_and_is_positive() {
        let now = Instant::now();
        let t = CachedToken::from_upstream(UpstreamToken {
            token: Secret::new("t"),
            lifetime: Duration::from_secs(3599),
            expires_at: now + Duration::from_millis(3_598_900),
            expires_in_cap: Some(600),
            region: None,
            endpoint: None,
        });
        assert_eq!(t.expires_in(now), 600.0);
        assert_eq!(t.expires_in(now + Duration::from_secs(3_590)), 8.9);
        assert_eq!(t.expires_in(now + Duration::from_secs(4_000)), 0.001);
        assert!(t.is_fresh(now));
        assert!(!t.is_fresh(now + Duration::from_secs(2_880)));
    }
}
