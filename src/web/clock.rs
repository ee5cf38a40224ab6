//! The two clocks and the random source: the only place that reads them.

use wasm_bindgen::prelude::*;

use crate::engine::Now;

#[wasm_bindgen]
extern "C" {
    /// `performance.now()`, bound as a global so it works in windows and workers alike.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// The current time on the wall clock (`Date.now()`) and the monotonic clock.
pub fn now() -> Now {
    Now::new(js_sys::Date::now(), performance_now())
}

/// A uniform draw in `[0, 1)` for refresh jitter and backoff.
pub fn random() -> f64 {
    js_sys::Math::random()
}
