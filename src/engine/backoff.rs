//! Retry delays: exponential backoff with full jitter, as a pure function.
//!
//! Pure on purpose (unlike the Azure token cycler, whose backoff keeps state between calls): the
//! attempt number and the random draw come in as arguments, so every delay is reproducible in
//! tests and simulations.

use crate::engine::Ms;

/// First retry waits up to this long. Source: docs/ARCHITECTURE.md, "The refresh rules (engine)" (base 1 s).
pub const BACKOFF_BASE_MS: f64 = 1_000.0;
/// No retry waits longer than this. Source: docs/ARCHITECTURE.md, "The refresh rules (engine)" (cap 30 s).
pub const BACKOFF_CAP_MS: f64 = 30_000.0;
/// Longest `Retry-After` we honour; a broker asking for more is treated as asking for this.
/// An hour is longer than any Speech token lives, so the cap never shortens a sane request.
pub const MAX_RETRY_AFTER_MS: f64 = 3_600_000.0;

/// Delay before retry number `attempt` (0 for the first retry), given a uniform random draw
/// `jitter` in `[0, 1)`: "full jitter", uniform in `[0, min(cap, base·2^attempt))`.
///
/// Full jitter spreads the retries of many clients after a shared outage (AWS Architecture Blog,
/// "Exponential Backoff And Jitter"), which matters when every tab of every user retries one broker.
pub fn retry_delay(attempt: u32, jitter: f64) -> f64 {
    let ceiling = (BACKOFF_BASE_MS * 2f64.powi(attempt.min(30) as i32)).min_ms(BACKOFF_CAP_MS);
    let jitter = unit_jitter(jitter);
    jitter * ceiling
}

/// How long, after a final error (401, 403, a redirect…), `getToken()` answers with that error
/// at once instead of asking the broker again: "equal jitter", uniform in
/// `[ceiling/2, ceiling)` with the ceiling of [`retry_delay`]. Never zero (unlike full jitter), so
/// that an app retrying in a loop (an `error` listener calling `getToken()`) cannot hammer the
/// broker: at most 3 requests in the first 2 s, then one per doubling interval up to 30 s.
/// `refreshNow()` is not held back: it is the app's explicit "the user signed in again".
pub fn final_error_hold(attempt: u32, jitter: f64) -> f64 {
    let ceiling = retry_delay(attempt, 1.0);
    let jitter = unit_jitter(jitter);
    ceiling * (0.5 + 0.5 * jitter)
}

/// The least a retry waits when the broker's `Retry-After` asks for less (`0`, repeated): the
/// header is a minimum, and the client's own growing, never-zero delay ([`final_error_hold`]'s
/// equal jitter: 0.5–1 s, doubling to 30 s) keeps a broker answering `Retry-After: 0` from
/// turning every tab into a request loop.
pub fn retry_after_floor(attempt: u32, jitter: f64) -> f64 {
    final_error_hold(attempt, jitter)
}

/// A random draw (`Math.random()`, or a test's) as a fraction in [0, 1]: out-of-range draws are
/// clamped, and one that is not a finite number counts as the middle. One rule for every user of
/// a draw (the backoff here, the refresh jitter in the machine).
pub fn unit_jitter(jitter: f64) -> f64 {
    if jitter.is_finite() {
        jitter.max_ms(0.0).min_ms(1.0)
    } else {
        0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_then_caps() {
        assert_eq!(retry_delay(0, 1.0), 1_000.0);
        assert_eq!(retry_delay(1, 1.0), 2_000.0);
        assert_eq!(retry_delay(4, 1.0), 16_000.0);
        assert_eq!(retry_delay(5, 1.0), 30_000.0);
        assert_eq!(retry_delay(u32::MAX, 1.0), 30_000.0);
    }

    #[test]
    fn final_error_hold_is_never_zero_and_doubles() {
        assert_eq!(final_error_hold(0, 0.0), 500.0);
        assert_eq!(final_error_hold(0, 1.0), 1_000.0);
        assert_eq!(final_error_hold(1, 0.0), 1_000.0);
        assert_eq!(final_error_hold(9, 1.0), 30_000.0);
        assert_eq!(final_error_hold(2, f64::NAN), 3_000.0);
    }

    #[test]
    fn jitter_scales_within_the_ceiling() {
        assert_eq!(retry_delay(3, 0.0), 0.0);
        assert_eq!(retry_delay(3, 0.5), 4_000.0);
        assert_eq!(retry_delay(3, 7.0), 8_000.0);
        assert_eq!(retry_delay(3, f64::NAN), 4_000.0);
    }
}
