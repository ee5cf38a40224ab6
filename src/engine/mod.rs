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
