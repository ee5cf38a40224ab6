//! The browser shell (wasm32 only): reads the clocks, talks to the broker, arms the timer,
//! listens to the page lifecycle, and carries out the engine's decisions. No refresh logic
//! lives here: every "when" and "whether" comes from [`crate::engine::Machine`].

mod broker;
mod client;
mod clock;
mod flight;
mod hooks;
mod js;
mod js_error;
mod lifecycle;
mod options;
mod shell;
mod speech;
#[cfg(feature = "cross-tab")]
mod tabs;
/// Without the `cross-tab` feature: the same names, no channel, no lock (dead code dropped).
#[cfg(not(feature = "cross-tab"))]
#[path = "tabs_off.rs"]
mod tabs;
mod timer;
mod ts;

pub use client::TokenClient;

/// The module allocates a few KB (plus the 64 KiB body buffer of a fetch, freed after it): a
/// free-list allocator is a fraction of dlmalloc's size. Wasm here has one thread.
// SAFETY: the module runs on one thread (no wasm threads, no shared memory).
#[global_allocator]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

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
