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

#[cfg(feature = "panic-hook")]
use wasm_bindgen::prelude::*;

/// With the `panic-hook` feature (debug builds, the browser tests), runs once when the module is
/// instantiated: route Rust panics to `console.error` with a message, so a bug never takes the
/// page down silently. (No token is ever formatted into a panic message.) The release package
/// aborts on panic with no message at all (`panic = immediate-abort`, scripts/build-pkg.sh).
#[cfg(feature = "panic-hook")]
#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}
