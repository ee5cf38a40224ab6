//! The pure engine: token parsing, refresh policy, backoff and the lifecycle state machine.
//!
//! No `web_sys`, no `js_sys`, no clock, no I/O: time and randomness come in as arguments and
//! decisions go out as values. Everything here compiles and is tested natively (`cargo test`);
//! its tests and the day simulation live in the dev-only `sim/` crate, so the engine is only
//! what ships.

pub mod backoff;
pub mod machine;
pub mod policy;
pub mod token;

pub use machine::{Decision, Effect, Machine, Now, Route, Schedule, Status, TimerPlan};
pub use policy::RefreshPolicy;
pub use token::{Grant, Token};

/// `f64::min`/`max` for times, as one compare and select. The std versions lower to a longer
/// NaN-handling sequence on wasm32 at each of their ~30 inlined sites (bench/size-steps.md);
/// these keep their answer for every input, NaN included (a NaN side gives the other side).
pub trait Ms {
    /// The smaller of the two (the other one when either is NaN).
    fn min_ms(self, other: f64) -> f64;
    /// The larger of the two (the other one when either is NaN).
    fn max_ms(self, other: f64) -> f64;
}

impl Ms for f64 {
    #[inline]
    fn min_ms(self, other: f64) -> f64 {
        if other < self || self.is_nan() {
            other
        } else {
            self
        }
    }
    #[inline]
    fn max_ms(self, other: f64) -> f64 {
        if other > self || self.is_nan() {
            other
        } else {
            self
        }
    }
}
