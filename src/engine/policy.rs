//! When to refresh and how long a token may be used: [`RefreshPolicy`] and its defaults.

use crate::engine::Ms;
use crate::error::Error;

/// Smallest refresh margin. Source: docs/ARCHITECTURE.md, "The refresh rules (engine)" (margin is max(30 s, 20% of the lifetime)).
pub const MIN_MARGIN_MS: f64 = 30_000.0;
/// Share of the lifetime kept as refresh margin. Source: docs/ARCHITECTURE.md, "The refresh rules (engine)"; for 10-minute issueToken
/// tokens this gives 2 minutes, enough to ride out the 60–110 s outages of the design's model.
pub const MARGIN_FRACTION: f64 = 0.2;
/// The margin never exceeds half the lifetime, so a short token is refreshed in the middle of its
/// life instead of in a loop. (A margin larger than the lifetime would be a
/// refresh storm.) Source: docs/ARCHITECTURE.md, "The refresh rules (engine)".
pub const MAX_MARGIN_FRACTION: f64 = 0.5;
/// Margin while the page is hidden: half the lifetime. Hidden tabs fire chained timers only on
/// 1-minute boundaries (Chrome's intensive throttling); the design's model shows this widening
/// takes expired-token exposure from 16.8 s/day to 0.
pub const HIDDEN_MARGIN_FRACTION: f64 = 0.5;
/// How late a hidden page's timer may fire: Chrome aligns chained timers of a page hidden for
/// over 5 minutes to whole minutes ("intensive wake up throttling", Chrome 88). While hidden, the
/// last retry before expiry is planned this much earlier so that a late wake still beats expiry.
pub const HIDDEN_TIMER_GRANULARITY_MS: f64 = 60_000.0;
/// Random extra margin, as a share of the margin, so that many clients (tabs, users behind one
/// broker) do not refresh in lockstep. Source: docs/ARCHITECTURE.md, "The refresh rules (engine)" (jitter random within 10% of the margin).
pub const JITTER_FRACTION: f64 = 0.1;
/// A token is handed out only until this long before its expiry: the SDK still has to open a
/// WebSocket with it. Source: docs/ARCHITECTURE.md, "The refresh rules (engine)" (usable until expiresAt - 5 s).
pub const USABLE_SLACK_MS: f64 = 5_000.0;
/// For very short tokens (tests, demos) the slack is at most this share of the lifetime, so a
/// 4-second token is still usable for 3 seconds. Never affects real (≥ 20 s) tokens.
pub const MAX_SLACK_FRACTION: f64 = 0.25;
/// A refresh starts at least this long before the token stops being handed out, whatever
/// `refreshMargin` says: time for the broker round trip, so that callers never wait and no
/// `expired` event fires on a healthy refresh. The same scale as the slack (5 s, or a quarter of
/// a very short token's lifetime): for a margin of exactly the slack, the refresh would start at
/// the very moment the token stops being usable.
pub const MIN_REFRESH_LEAD_MS: f64 = 5_000.0;
/// Default cap on how long a token stays in memory, whatever the broker says (seconds → ms).
/// Source: README.md, options table (`maxLifetime` default 3600).
pub const DEFAULT_MAX_LIFETIME_MS: f64 = 3_600_000.0;
/// Default broker request timeout. Source: README.md, options table (`requestTimeout` default 10000).
pub const DEFAULT_REQUEST_TIMEOUT_MS: f64 = 10_000.0;
/// Longest accepted `requestTimeout` option: two minutes is already far beyond any sane broker.
pub const MAX_REQUEST_TIMEOUT_MS: f64 = 120_000.0;
/// Longest accepted `refreshMargin` / `maxLifetime` option: 24 hours, the longest token lifetime.
pub const MAX_OPTION_SECONDS: f64 = 86_400.0;

/// How the engine schedules refreshes. Built from the user's options by [`RefreshPolicy::new`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefreshPolicy {
    /// A fixed margin chosen by the user (ms), instead of the lifetime-based default.
    pub margin_ms: Option<f64>,
    /// Broker request timeout (ms).
    pub request_timeout_ms: f64,
    /// Tokens are dropped from memory after this long even if they live longer (ms).
    pub max_lifetime_ms: f64,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            margin_ms: None,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_lifetime_ms: DEFAULT_MAX_LIFETIME_MS,
        }
    }
}

fn seconds_option(
    value: Option<f64>,
    min: f64,
    max: f64,
    message: &'static str,
) -> Result<Option<f64>, Error> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && v >= min && v <= max => Ok(Some(v)),
        Some(_) => Err(Error::Config(message)),
    }
}

impl RefreshPolicy {
    /// Validates the user's options: `refreshMargin` (s), `requestTimeout` (ms), `maxLifetime` (s).
    pub fn new(
        refresh_margin_s: Option<f64>,
        request_timeout_ms: Option<f64>,
        max_lifetime_s: Option<f64>,
    ) -> Result<RefreshPolicy, Error> {
        let margin = seconds_option(
            refresh_margin_s,
            0.0,
            MAX_OPTION_SECONDS,
            "refreshMargin must be a number of seconds between 0 and 86400",
        )?;
        let timeout = seconds_option(
            request_timeout_ms,
            1.0,
            MAX_REQUEST_TIMEOUT_MS,
            "requestTimeout must be a number of milliseconds between 1 and 120000",
        )?;
        let max_lifetime = seconds_option(
            max_lifetime_s,
            1.0,
            MAX_OPTION_SECONDS,
            "maxLifetime must be a number of seconds between 1 and 86400",
        )?;
        Ok(RefreshPolicy {
            margin_ms: margin.map(|s| s * 1000.0),
            request_timeout_ms: timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS),
            max_lifetime_ms: max_lifetime.map_or(DEFAULT_MAX_LIFETIME_MS, |s| s * 1000.0),
        })
    }

    /// The lifetime the engine will honour for a token the broker says lives `lifetime_ms`.
    pub fn effective_lifetime(&self, lifetime_ms: f64) -> f64 {
        lifetime_ms.min_ms(self.max_lifetime_ms)
    }

    /// How long before expiry to refresh a token of the given lifetime.
    ///
    /// Default max(30 s, 20%) of the lifetime; half the lifetime while the page is hidden; a
    /// user-chosen margin instead if given. Never less than the usable slack plus
    /// [`MIN_REFRESH_LEAD_MS`]; always at most half the lifetime.
    pub fn margin(&self, lifetime_ms: f64, hidden: bool) -> f64 {
        let base = self
            .margin_ms
            .unwrap_or_else(|| MIN_MARGIN_MS.max_ms(MARGIN_FRACTION * lifetime_ms));
        let wanted = if hidden {
            base.max_ms(HIDDEN_MARGIN_FRACTION * lifetime_ms)
        } else {
            base
        };
        // Refreshing when the token stops being handed out would make callers wait for a broker
        // round trip every lifetime: the margin is at least the slack plus a round trip's lead.
        wanted
            .max_ms(self.slack(lifetime_ms) + self.lead(lifetime_ms))
            .min_ms(MAX_MARGIN_FRACTION * lifetime_ms)
    }

    /// How long before a token of the given lifetime stops being handed out its replacement is
    /// asked for, at the latest: a broker round trip ([`MIN_REFRESH_LEAD_MS`], or a quarter of a
    /// very short token's lifetime). For planned refreshes and for retries alike.
    pub fn lead(&self, lifetime_ms: f64) -> f64 {
        MIN_REFRESH_LEAD_MS.min_ms(MAX_SLACK_FRACTION * lifetime_ms)
    }

    /// How long before expiry a token stops being handed out.
    pub fn slack(&self, lifetime_ms: f64) -> f64 {
        USABLE_SLACK_MS.min_ms(MAX_SLACK_FRACTION * lifetime_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_margin_is_a_fifth_with_a_30s_floor_and_a_half_ceiling() {
        let p = RefreshPolicy::default();
        assert_eq!(p.margin(600_000.0, false), 120_000.0);
        assert_eq!(p.margin(100_000.0, false), 30_000.0);
        // A 20-second test token refreshes after 10 s, not in a loop.
        assert_eq!(p.margin(20_000.0, false), 10_000.0);
        assert_eq!(p.margin(600_000.0, true), 300_000.0);
    }

    #[test]
    fn user_margin_is_still_capped_at_half_the_lifetime() {
        let p = RefreshPolicy::new(Some(500.0), None, None).unwrap();
        assert_eq!(p.margin(600_000.0, false), 300_000.0);
        let p = RefreshPolicy::new(Some(10.0), None, None).unwrap();
        assert_eq!(p.margin(600_000.0, false), 10_000.0);
    }

    #[test]
    fn slack_shrinks_only_for_very_short_tokens() {
        let p = RefreshPolicy::default();
        assert_eq!(p.slack(600_000.0), 5_000.0);
        assert_eq!(p.slack(20_000.0), 5_000.0);
        assert_eq!(p.slack(4_000.0), 1_000.0);
    }

    #[test]
    fn invalid_options_are_config_errors() {
        for bad in [
            RefreshPolicy::new(Some(-1.0), None, None),
            RefreshPolicy::new(Some(f64::NAN), None, None),
            RefreshPolicy::new(None, Some(0.0), None),
            RefreshPolicy::new(None, Some(1e9), None),
            RefreshPolicy::new(None, None, Some(0.5)),
            RefreshPolicy::new(None, None, Some(f64::INFINITY)),
        ] {
            assert_eq!(bad.unwrap_err().kind(), "config");
        }
        let p = RefreshPolicy::new(None, Some(2500.0), Some(60.0)).unwrap();
        assert_eq!(p.request_timeout_ms, 2500.0);
        assert_eq!(p.effective_lifetime(600_000.0), 60_000.0);
    }
}
