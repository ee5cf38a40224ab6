//! One `setTimeout`, owned: dropping a [`Timeout`] clears it.

use wasm_bindgen::prelude::*;

use crate::engine::Ms;
use crate::web::js::deferred;

/// Longest delay `setTimeout` honours: larger values overflow a signed 32-bit integer and fire
/// at once (HTML Standard, timer initialisation steps). Longer waits are split: the engine simply
/// re-arms when an early wake finds nothing due.
pub const MAX_TIMER_DELAY_MS: f64 = 2_147_483_647.0;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &js_sys::Function, delay_ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

/// An armed timer. Bound to the global `setTimeout` (not `window.setTimeout`) so it also works
/// in a worker.
#[must_use = "a Timeout is cleared as soon as it is dropped"]
pub struct Timeout {
    id: JsValue,
    _callback: Closure<dyn FnMut()>,
}

impl Timeout {
    /// Calls `callback` once after `delay_ms` (clamped to what browsers can wait).
    pub fn new(delay_ms: f64, callback: impl FnMut() + 'static) -> Timeout {
        let callback = Closure::<dyn FnMut()>::new(callback);
        let delay = if delay_ms.is_finite() {
            delay_ms.max_ms(0.0).min_ms(MAX_TIMER_DELAY_MS)
        } else {
            MAX_TIMER_DELAY_MS
        };
        let id = set_timeout(callback.as_ref().unchecked_ref(), delay.ceil());
        Timeout {
            id,
            _callback: callback,
        }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        clear_timeout(&self.id);
    }
}

/// A promise resolved after `ms`, and the timer behind it (dropping the timer cancels it, and
/// the promise then never resolves: drop it only after awaiting, or when abandoning the wait).
pub fn sleep(ms: f64) -> (js_sys::Promise, Timeout) {
    let (promise, resolve, _) = deferred();
    let timer = Timeout::new(ms, move || {
        let _ = resolve.call0(&JsValue::UNDEFINED);
    });
    (promise, timer)
}
