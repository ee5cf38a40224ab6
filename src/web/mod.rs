//! The browser shell (wasm32 only): reads the clocks, talks to the broker, arms the timer,
//! listens to the page lifecycle, and carries out the engine's decisions. No refresh logic
//! lives here: every "when" and "whether" comes from [`crate::engine::Machine`].

mod broker;
mod client;
mod clock;
mod flight;
mod hooks;
mod js_error;
mod lifecycle;
mod options;
mod shell;
mod speech;
mod tabs;
mod timer;
mod ts;

pub use client::TokenClient;

use wasm_bindgen::prelude::*;

/// Runs once when the module is instantiated: route Rust panics to `console.error` with a
/// message, so a bug never takes the page down silently. (No token is ever formatted into a
/// panic message.)
#[wasm_bindgen(start)]
fn start() {
    #[cfg(feature = "console_error_panic_hook")]
    console_error_panic_hook::set_once();
}
