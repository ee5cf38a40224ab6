//! dev mode's knobs and records: token lifetime, simulated outage, slowness and injected
//! failures, plus handles on what `/admin/reset` and `/admin/stats` touch. The admin handlers
//! ([`crate::admin`]) and the fake Speech service take only this state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Deserialize;

use crate::cache::TokenCache;
use crate::dev_entra::DevEntra;
use crate::devjwt::DevSigner;
use crate::ratelimit::RateLimiter;
use crate::relay::Relay;
use crate::speech::SpeechService;

/// Request counters shown by `/admin/stats`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Token requests received.
    pub token_requests: AtomicU64,
    /// Token requests answered with a token.
    pub token_ok: AtomicU64,
}

/// A scripted answer for the next token requests (`POST /admin/fail`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailPlan {
    pub status: u16,
    #[serde(default = "one")]
    pub count: u64,
    pub retry_after: Option<u64>,
    /// Sent with status 200 instead of the error (malformed-answer tests).
    pub body: Option<String>,
    pub content_type: Option<String>,
    /// Location of a 3xx answer (default `/`).
    pub location: Option<String>,
}
fn one() -> u64 {
    1
}

/// dev-mode knobs and records.
pub struct DevState {
    pub signer: Arc<DevSigner>,
    pub ttl: Arc<AtomicU64>,
    pub speech: Arc<SpeechService>,
    pub cache: Arc<TokenCache>,
    pub rate: Option<Arc<RateLimiter>>,
    pub counters: Arc<Counters>,
    pub outage_until: Mutex<Option<Instant>>,
    pub slow_ms: AtomicU64,
    pub fail: Mutex<Option<FailPlan>>,
    /// `--dev-entra`: the Entra stand-in.
    pub entra: Option<Arc<DevEntra>>,
    /// `--relay`: `/admin/ttl` sets the ticket lifetime too (what the page receives).
    pub relay: Option<Arc<Relay>>,
}

impl DevState {
    /// Whether a simulated outage is under way.
    pub fn in_outage(&self) -> bool {
        let g = self.outage_until.lock().unwrap_or_else(|e| e.into_inner());
        g.is_some_and(|until| Instant::now() < until)
    }

    /// Milliseconds every token answer is delayed by.
    pub fn slow_ms(&self) -> u64 {
        self.slow_ms.load(Ordering::Relaxed)
    }

    /// Takes one injected failure, if any is left.
    pub fn take_fail(&self) -> Option<FailPlan> {
        let mut g = self.fail.lock().unwrap_or_else(|e| e.into_inner());
        let plan = g.as_mut()?;
        if plan.count == 0 {
            *g = None;
            return None;
        }
        plan.count -= 1;
        let out = plan.clone();
        if plan.count == 0 {
            *g = None;
        }
        Some(out)
    }
}
