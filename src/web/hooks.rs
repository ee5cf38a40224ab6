//! Close hooks on attached Speech SDK objects: how a closed recognizer or synthesizer is noticed.
//!
//! The Speech SDK (1.52) does not throw from the `authorizationToken` setter of a closed object;
//! `close()` only sets a private flag (SpeechRecognizer.js `privDisposedRecognizer`; the
//! synthesizer's flag is set only after its asynchronous cleanup). The reliable signal is the
//! object's own disposal: `attach()` puts own-property wrappers over the object's `close` and
//! `dispose` methods (every SDK disposal path, including a synthesizer disposing itself after a
//! failed `speak*Async`, calls `this.dispose(true)`). A wrapper first detaches the object (one
//! `detach` event, reason "closed") and removes the hooks, then calls the original on the object
//! it wraps with the first two arguments (the SDK's `close(cb, errorCb)` / `dispose(disposing)`)
//! and returns its result, so a synchronous throw (a second `close()`) still reaches the app.

use std::rc::{Rc, Weak};

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::web::js::{get, has_own, set};
use crate::web::shell::Shell;

/// The methods whose call means "this object is closed".
const CLOSING_METHODS: [&str; 2] = ["close", "dispose"];
/// Own property on a wrapper: the function it replaced.
const ORIGINAL_KEY: &str = "__speechTokenClientOriginal";
/// Own property on a wrapper: whether the original was the object's own property (restored on
/// unhook) rather than inherited (then the own property is simply deleted).
const WAS_OWN_KEY: &str = "__speechTokenClientWasOwn";
/// Own property on a wrapper: the id of the client that installed it.
const OWNER_KEY: &str = "__speechTokenClientOwner";

/// Hooks `target`'s closing methods for `shell`. Objects without them (a plain config) get none.
pub(crate) fn hook(shell: &Rc<Shell>, target: &js_sys::Object) {
    for name in CLOSING_METHODS {
        let Ok(original) = get(target, name).dyn_into::<js_sys::Function>() else {
            continue;
        };
        let was_own = has_own(target, name);
        let weak_target = js_sys::WeakRef::new(target);
        let weak_shell: Weak<Shell> = Rc::downgrade(shell);
        let call_original = original.clone();
        let wrapper = Closure::<dyn FnMut(JsValue, JsValue) -> Result<JsValue, JsValue>>::new(
            move |a: JsValue, b: JsValue| {
                let this = weak_target.deref();
                if let Some(target) = &this {
                    if let Some(shell) = weak_shell.upgrade() {
                        unhook(target, shell.id());
                        shell.target_closed(target);
                    }
                }
                let this: JsValue = this.map_or(JsValue::UNDEFINED, JsValue::from);
                call_original.call2(&this, &a, &b)
            },
        );
        let wrapper: js_sys::Function = wrapper.into_js_value().unchecked_into();
        set(&wrapper, ORIGINAL_KEY, &original);
        set(&wrapper, WAS_OWN_KEY, &JsValue::from(was_own));
        set(&wrapper, OWNER_KEY, &JsValue::from(shell.id()));
        // A failing define (a frozen object) just leaves the object unhooked: the setter path
        // and the garbage collector still cover it.
        set(target, name, &wrapper);
    }
}

/// Removes client `owner`'s hooks from `target`, where they are the outermost (if another client
/// hooked the object later, its wrapper calls ours, which then unhooks itself when it runs).
pub(crate) fn unhook(target: &js_sys::Object, owner: u32) {
    for name in CLOSING_METHODS {
        if !has_own(target, name) {
            continue;
        }
        let current = get(target, name);
        let original = get(&current, ORIGINAL_KEY);
        let ours = get(&current, OWNER_KEY).as_f64() == Some(f64::from(owner));
        if !original.is_function() || !ours {
            continue;
        }
        if get(&current, WAS_OWN_KEY).as_bool() == Some(true) {
            set(target, name, &original);
        } else {
            let _ = js_sys::Reflect::delete_property(target, &JsValue::from_str(name));
        }
    }
}
