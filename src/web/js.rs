//! Reading and writing JS object properties by name: the one place a Rust `&str` key becomes a
//! JS string. Failures (a throwing getter or setter, a frozen object, a revoked proxy) are
//! values here, never panics: callers decide what a failed read or write means. Also the
//! module's two ways of making a promise ([`deferred`], [`promise`]) and its one way of racing
//! one against an abort signal ([`until_aborted`]).

use std::future::Future;
use std::pin::Pin;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// `target[key]`, or `undefined` when the read throws (or `target` is not an object).
pub(crate) fn get(target: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `target[key]` as a string, or `""` when it is not one (or the read throws). For `URL`'s
/// parts: one shared read instead of one generated binding per getter.
pub(crate) fn text(target: &JsValue, key: &str) -> String {
    get(target, key).as_string().unwrap_or_default()
}

/// `target[key] = value`; `false` when the write throws or is refused.
pub(crate) fn set(target: &JsValue, key: &str, value: &JsValue) -> bool {
    js_sys::Reflect::set(target, &JsValue::from_str(key), value).unwrap_or(false)
}

#[wasm_bindgen]
extern "C" {
    /// `Object.keys(o)`, or the exception a proxy's `ownKeys` trap threw (js-sys's binding does
    /// not catch it).
    #[wasm_bindgen(catch, js_namespace = Object, js_name = keys)]
    pub(crate) fn own_keys(o: &JsValue) -> Result<js_sys::Array, JsValue>;
    /// `Object.entries(o)`, or the exception a getter or proxy trap threw (js-sys's binding
    /// does not catch it: an app's throwing getter would throw through the module).
    #[wasm_bindgen(catch, js_namespace = Object, js_name = entries)]
    pub(crate) fn own_entries(o: &JsValue) -> Result<js_sys::Array, JsValue>;
    /// `Object.hasOwn(o, key)`, or the exception a proxy's `getOwnPropertyDescriptor` trap
    /// threw (js-sys's binding does not catch it).
    #[wasm_bindgen(catch, js_namespace = Object, js_name = hasOwn)]
    fn object_has_own(o: &JsValue, key: &JsValue) -> Result<bool, JsValue>;
    /// `Object.getPrototypeOf(o)`, or the exception a proxy's `getPrototypeOf` trap threw.
    #[wasm_bindgen(catch, js_namespace = Object, js_name = getPrototypeOf)]
    fn prototype_of(o: &JsValue) -> Result<JsValue, JsValue>;
}

/// The most objects [`chain`] walks. An app's options have a few (the object, a class or two);
/// a proxy can make a chain endless, where a plain read would throw a `RangeError`.
const MAX_CHAIN: usize = 32;

/// `target` and the prototypes of the app's (or a peer's) making behind it: up to, not
/// including, this realm's `Object.prototype`, where page code may have put anything (a
/// polluting merge, a polyfill's getter). An object of another realm (an iframe's) is walked to
/// that realm's `Object.prototype`, which is not told apart. Or the exception a proxy's
/// `getPrototypeOf` trap threw, or an error for a chain longer than [`MAX_CHAIN`].
fn chain(target: &JsValue) -> Result<js_sys::Array, JsValue> {
    let base = prototype_of(&js_sys::Object::new())?;
    // A JS array, not a `Vec`: no Rust collection code for a list the module only walks.
    let holders = js_sys::Array::new();
    let mut holder = target.clone();
    while holder.is_object() && !js_sys::Object::is(&holder, &base) {
        if holders.push(&holder) as usize > MAX_CHAIN {
            return Err(JsValue::UNDEFINED);
        }
        holder = prototype_of(&holder)?;
    }
    Ok(holders)
}

/// What the app (or a peer) gave as `target[key]`: an own property, or one inherited from a
/// prototype of its making (a class's getter, `Object.create(defaults)`), never one found on
/// `Object.prototype` (`undefined` then; see [`chain`]). Or the exception a getter or proxy trap
/// threw.
pub(crate) fn given(target: &JsValue, key: &str) -> Result<JsValue, JsValue> {
    let name = JsValue::from_str(key);
    for holder in chain(target)?.iter() {
        if object_has_own(&holder, &name)? {
            return js_sys::Reflect::get(target, &name);
        }
    }
    Ok(JsValue::UNDEFINED)
}

/// The keys of `target` that [`given`] can read and a typo could hide in: the enumerable own
/// keys (`Object.keys`) of `target` and of each prototype of [`chain`] (a class's getters and
/// methods are not enumerable; `Object.create(defaults)`'s keys are).
pub(crate) fn given_keys(target: &JsValue) -> Result<js_sys::Array, JsValue> {
    let keys = js_sys::Array::new();
    for holder in chain(target)?.iter() {
        for key in own_keys(&holder)?.iter() {
            keys.push(&key);
        }
    }
    Ok(keys)
}

/// Whether `target` has `key` as an own property (`false` when a proxy trap throws).
pub(crate) fn has_own(target: &js_sys::Object, key: &str) -> bool {
    object_has_own(target, &JsValue::from_str(key)).unwrap_or(false)
}

/// A new promise and the functions that settle it (`resolve`, `reject`). One closure for every
/// promise the module makes: each `Promise::new` call site with its own closure would add its
/// own closure code and vtable to the module.
pub(crate) fn deferred() -> (js_sys::Promise, js_sys::Function, js_sys::Function) {
    let mut settle = None;
    let promise = js_sys::Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
    // The executor runs synchronously inside `new Promise`, so `settle` is always set here.
    let (resolve, reject) = settle.unwrap_or_else(|| (not_a_function(), not_a_function()));
    (promise, resolve, reject)
}

/// A promise for `future`'s outcome. Boxed, so that the async methods share one instance of
/// `future_to_promise` (~1 KB of wasm per future type otherwise).
pub(crate) fn promise(
    future: impl Future<Output = Result<JsValue, JsValue>> + 'static,
) -> js_sys::Promise {
    let future: Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>> = Box::pin(future);
    wasm_bindgen_futures::future_to_promise(future)
}

/// `undefined` typed as a function: `deferred`'s fallback for an executor that did not run
/// (it always runs). Calling it fails, and every call of a settle function here catches; the
/// promise then never settles.
fn not_a_function() -> js_sys::Function {
    js_sys::Function::unchecked_from_js(JsValue::UNDEFINED)
}

/// A plain object from key/value pairs: what the module hands to the app (event details, the
/// credential and its answers) or to a peer tab. Made outside the client's state borrow: a
/// setter page code put on `Object.prototype` under a key runs (and may call the client); a
/// getter-only one leaves the key out, never throws through the module ([`set`] catches).
pub(crate) fn object(pairs: &[(&str, JsValue)]) -> JsValue {
    fill(js_sys::Object::new().into(), pairs)
}

/// An object without a prototype, from key/value pairs: what the module hands to a browser API
/// as a WebIDL dictionary (a `RequestInit`, a lock's options), or reads back through a library
/// (the options snapshot). A dictionary's members are read through the prototype chain, so a
/// plain object would take what page code put on `Object.prototype` (a `body` on the token
/// request's GET, a lock's `steal`) for the module's own choice. Not for the app's own functions
/// (an `abortSignal`'s `addEventListener` may be a polyfill that expects `Object.prototype`'s
/// methods).
pub(crate) fn dictionary(pairs: &[(&str, JsValue)]) -> JsValue {
    fill(
        js_sys::Object::create(JsValue::NULL.unchecked_ref::<js_sys::Object>()).into(),
        pairs,
    )
}

fn fill(object: JsValue, pairs: &[(&str, JsValue)]) -> JsValue {
    for (key, value) in pairs {
        set(&object, key, value);
    }
    object
}

/// A JS `Error` with `message` and `name`: the one way the module makes its errors. The name is
/// written with [`set`], which catches: a getter-only `name` page code put on
/// `Error.prototype` must not throw through the module.
pub(crate) fn named_error(message: &str, name: &str) -> js_sys::Error {
    let error = js_sys::Error::new(message);
    set(&error, "name", &JsValue::from_str(name));
    error
}

/// The error an aborted operation rejects with, as `@azure/abort-controller` and the DOM name it.
pub(crate) fn abort_error() -> JsValue {
    named_error("The operation was aborted.", "AbortError").into()
}

/// `promise`, or an `AbortError` as soon as `signal` (an AbortSignal-like object, if any)
/// aborts; and the function that removes the abort listener once the call is over (a long-lived
/// signal must not collect one listener per call). `promise` itself is not cancelled. A signal
/// that has already aborted fires no more: callers check `aborted` first. The one way the module
/// races a promise against an abort: the app's `abortSignal` (`tokenCredential()`), and the
/// request's own signal around the app's `headers` function (broker.rs).
pub(crate) fn until_aborted(
    promise: js_sys::Promise,
    signal: &JsValue,
) -> (js_sys::Promise, impl FnOnce()) {
    let add = get(signal, "addEventListener")
        .dyn_into::<js_sys::Function>()
        .ok();
    let remove = get(signal, "removeEventListener")
        .dyn_into::<js_sys::Function>()
        .ok();
    let (aborted, _, reject) = deferred();
    let listener = match add {
        Some(add) => {
            let on_abort = Closure::<dyn FnMut()>::new(move || {
                let _ = reject.call1(&JsValue::UNDEFINED, &abort_error());
            })
            .into_js_value();
            let once = object(&[("once", JsValue::TRUE)]);
            let _ = add.call3(signal, &JsValue::from_str("abort"), &on_abort, &once);
            Some(on_abort)
        }
        None => None,
    };
    let signal = signal.clone();
    let stop = move || {
        if let (Some(remove), Some(listener)) = (remove, listener) {
            let _ = remove.call2(&signal, &JsValue::from_str("abort"), &listener);
        }
    };
    let raced = js_sys::Promise::race(&js_sys::Array::of2(&promise, &aborted));
    (raced, stop)
}
