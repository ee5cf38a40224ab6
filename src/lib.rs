//! # speech-token-client
//!
//! Short-lived Azure Speech authorization tokens from the application's own backend (a "token
//! broker"), kept in browser memory only, refreshed before they expire, and handed to the
//! Microsoft Speech SDK for JavaScript.
//!
//! The crate has two rooms and the arrow points one way:
//!
//! - [`engine`]: pure Rust. Token parsing and validation, the refresh policy, backoff, and the
//!   lifecycle state machine. It takes the time as an argument and never reads a clock, so it is
//!   tested natively with simulated time.
//! - `web` (wasm32 only): the thin shell that gives JavaScript the `TokenClient` API: it reads
//!   the clocks, fetches from the broker, arms the one timer, listens to page lifecycle events,
//!   and carries out the engine's decisions.
#![deny(missing_docs)]

pub mod engine;
pub mod error;

#[cfg(target_arch = "wasm32")]
mod web;

pub use error::Error;
#[cfg(target_arch = "wasm32")]
pub use web::TokenClient;
