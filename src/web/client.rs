//! `TokenClient`: the JS API. A handle on the [`Shell`], which owns all state; every method is a
//! call into it. Nothing here keeps state of its own.
//!
//! Lifetime (docs/ARCHITECTURE.md, "Lifetime"): from its first use (a caller, a target, a
//! credential, a listener) a client keeps itself alive until `dispose()`, so an app that keeps
//! only an attached recognizer or a credential keeps getting tokens after the garbage collector
//! took the `TokenClient` object. `free()`, `[Symbol.dispose]()` and `using` are `dispose()`.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::engine::Machine;
use crate::error::Error;
use crate::web::clock;
use crate::web::flight;
use crate::web::hooks;
use crate::web::js::get;
use crate::web::js_error::{config_error, to_js};
use crate::web::lifecycle::{page_hidden, watch_page};
use crate::web::options::Settings;
use crate::web::shell::{EventKind, Shell};
use crate::web::tabs::{PeerMessage, Tabs};

/// Fetches short-lived Azure Speech tokens from your own backend, keeps them in memory only,
/// refreshes them before they expire, and keeps attached Speech SDK objects supplied.
///
/// ```js
/// const client = new TokenClient({ brokerUrl: "/api/speech-token" });
/// const token = await client.getToken();
/// ```
#[wasm_bindgen]
pub struct TokenClient {
    pub(crate) shell: Rc<Shell>,
}

#[wasm_bindgen]
impl TokenClient {
    /// Creates a client. Nothing is fetched until a token is asked for (`getToken()`,
    /// `attach()`, `speechConfig()`). Throws a `SpeechTokenError` with kind `config` on bad options.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "TokenClientOptions")] options: JsValue,
    ) -> Result<TokenClient, JsValue> {
        if !in_browser() {
            return Err(config_error(
                "TokenClient runs in the browser only (a window or a worker; not here, e.g. server-side rendering): create it in client-side code",
            ));
        }
        let settings = Settings::from_options(&options)?;
        let shell = Shell::new(
            Machine::new(settings.policy),
            settings.broker,
            flight::start,
        );
        let page = {
            let weak = Rc::downgrade(&shell);
            watch_page(move |event| {
                if let Some(shell) = weak.upgrade() {
                    shell.on_page(event);
                }
            })
        };
        // Where Web Locks or BroadcastChannel are missing, the client fetches alone.
        let tabs = settings
            .share_across_tabs
            .then(|| {
                let weak = Rc::downgrade(&shell);
                Tabs::open(&shell.config.url, move |message| {
                    if let Some(shell) = weak.upgrade() {
                        on_peer(&shell, message);
                    }
                })
            })
            .flatten();
        shell.install(page, tabs);
        let hidden = page_hidden();
        shell.input(|m, now| m.set_hidden(now, hidden));
        Ok(TokenClient { shell })
    }

    /// A usable token: at once from memory when one is held (never an expired one), else after
    /// one broker request shared by every concurrent caller. Rejects with a `SpeechTokenError`.
    #[wasm_bindgen(js_name = getToken, unchecked_return_type = "Promise<string>")]
    pub fn get_token(&self) -> js_sys::Promise {
        self.shell.get_token()
    }

    /// Fetches a new token now, even if the current one is still good, from a request sent
    /// after the call: the caller joins a request in flight only while that request's headers
    /// are not in hand yet; behind one already sent, it waits for the next request, sent as soon
    /// as that one ends. Resolves with the broker's answer (a broker that caches its token may
    /// answer the same one); a failure leaves the current token in service.
    /// Always asks the broker, also right after a final error (it is the app's "the user signed
    /// in again").
    #[wasm_bindgen(js_name = refreshNow, unchecked_return_type = "Promise<string>")]
    pub fn refresh_now(&self) -> js_sys::Promise {
        self.shell.refresh_now()
    }

    /// The current usable token, or `undefined`. Synchronous; never an expired token.
    #[wasm_bindgen(getter, unchecked_return_type = "string | undefined")]
    pub fn token(&self) -> JsValue {
        if let Some(token) = self.shell.usable_token_js(clock::now()) {
            return token;
        }
        // Held but no longer usable (a timer was held back): let the engine catch up.
        self.shell.catch_up();
        JsValue::UNDEFINED
    }

    /// When the current token expires (epoch milliseconds), or `undefined`. Like `token`, `status`
    /// and `nextRefreshAt`, what is true now, also right after a sleep no timer has seen yet.
    #[wasm_bindgen(getter, js_name = expiresAt, unchecked_return_type = "number | undefined")]
    pub fn expires_at(&self) -> JsValue {
        self.shell.catch_up();
        optional_number(self.shell.read(|m| m.schedule(clock::now()).expires_at))
    }

    /// When the next refresh (or retry) is planned (epoch milliseconds), or `undefined`.
    #[wasm_bindgen(getter, js_name = nextRefreshAt, unchecked_return_type = "number | undefined")]
    pub fn next_refresh_at(&self) -> JsValue {
        self.shell.catch_up();
        optional_number(
            self.shell
                .read(|m| m.schedule(clock::now()).next_refresh_at),
        )
    }

    /// The Azure region this tab's broker named with its last token, or `undefined`.
    #[wasm_bindgen(getter, unchecked_return_type = "string | undefined")]
    pub fn region(&self) -> JsValue {
        self.shell
            .read(|m| optional_text(m.route().and_then(|r| r.region.as_deref())))
    }

    /// The custom-domain or private endpoint this tab's broker named, or `undefined`.
    #[wasm_bindgen(getter, unchecked_return_type = "string | undefined")]
    pub fn endpoint(&self) -> JsValue {
        self.shell
            .read(|m| optional_text(m.route().and_then(|r| r.endpoint.as_deref())))
    }

    /// `"idle" | "fetching" | "valid" | "refreshing" | "expired" | "error" | "disposed"`.
    #[wasm_bindgen(getter, unchecked_return_type = "TokenClientStatus")]
    pub fn status(&self) -> JsValue {
        self.shell.catch_up();
        self.shell.read(|m| JsValue::from_str(m.status().as_str()))
    }

    /// Broker requests this client has started (for dashboards and tests).
    #[wasm_bindgen(getter, js_name = requestCount)]
    pub fn request_count(&self) -> f64 {
        self.shell.read(|m| m.requests() as f64)
    }

    /// Subscribes to an event; returns the function that unsubscribes. Event details never
    /// contain the token: read `client.token` in a `token` listener. Throws kind `disposed`
    /// after `dispose()`.
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, event: JsValue, listener: JsValue) -> Result<js_sys::Function, JsValue> {
        // Taken as any JS value and checked here: with `&str` the generated glue read a
        // non-string's `length` and handed the allocator a bogus block (plain-JS callers can
        // pass anything).
        let kind = event
            .as_string()
            .and_then(|event| EventKind::parse(&event))
            .ok_or_else(|| {
                config_error(
                    "unknown event: use token, refreshing, error, expired, status or detach",
                )
            })?;
        let Ok(listener) = listener.dyn_into::<js_sys::Function>() else {
            return Err(config_error("the listener must be a function"));
        };
        if self.shell.disposed() {
            return Err(to_js(&Error::Disposed));
        }
        self.shell.in_service();
        let id = self.shell.subscribe(kind, listener);
        let weak = Rc::downgrade(&self.shell);
        let off = Closure::<dyn FnMut()>::new(move || {
            if let Some(shell) = weak.upgrade() {
                shell.unsubscribe(id);
            }
        });
        Ok(off.into_js_value().unchecked_into())
    }

    /// Stops everything: clears the timer and page listeners, cancels a request in flight,
    /// detaches targets, rejects pending calls with kind `disposed`, and wipes the token from
    /// wasm memory. Idempotent, and safe to call from any callback of the client.
    pub fn dispose(&self) {
        release(&self.shell);
    }

    /// The same as `dispose()`. Replaces the generated `free()` (which `[Symbol.dispose]()` and
    /// `using` call), which would free the client's memory under pending calls and leave them
    /// waiting forever; the memory is reclaimed by the garbage collector once the object is
    /// unreachable.
    #[wasm_bindgen(js_name = free, skip_typescript)]
    pub fn free_is_dispose(&self) {
        release(&self.shell);
    }
}

/// `dispose()`: the shell stops, and the objects it had attached lose their close hooks.
fn release(shell: &Rc<Shell>) {
    for target in shell.dispose() {
        if let Some(target) = target.deref() {
            hooks::unhook(&target, shell.id());
        }
    }
}

/// Whether this is a browser context: a window or a worker (`globalThis` is an instance of
/// `Window` or `WorkerGlobalScope`). Node (server-side rendering) is neither: the module imports
/// there, but a client would fetch from the server and hold tokens in its memory.
fn in_browser() -> bool {
    let global = js_sys::global();
    ["Window", "WorkerGlobalScope"].iter().any(|name| {
        let proto = get(&get(&global, name), "prototype");
        proto.is_object() && is_prototype_of(&proto, &global).unwrap_or(false)
    })
}

#[wasm_bindgen]
extern "C" {
    /// `Object.prototype.isPrototypeOf.call(proto, of)`, catching: a host's odd `prototype` (a
    /// null-prototype object, a revoked proxy) is "not a browser", never an exception out of
    /// the constructor. By type, not `instanceof Object` (false across realms).
    #[wasm_bindgen(catch, js_namespace = ["Object", "prototype", "isPrototypeOf"], js_name = call)]
    fn is_prototype_of(proto: &JsValue, of: &JsValue) -> Result<bool, JsValue>;
}

/// A message from another tab (`shareAcrossTabs`).
fn on_peer(shell: &Rc<Shell>, message: PeerMessage) {
    match message {
        PeerMessage::Ask => {
            if let (Some(tabs), Some(offer)) = (shell.tabs(), shell.read(Tabs::offer)) {
                tabs.share(offer);
            }
        }
        PeerMessage::Token(grant, now) => shell.adopt(grant, now),
    }
}

/// A number, or `undefined`, as a JS value: a getter's answer without the glue reading an
/// `Option<f64>` out of wasm memory.
fn optional_number(value: Option<f64>) -> JsValue {
    value.map_or(JsValue::UNDEFINED, JsValue::from_f64)
}

/// A string, or `undefined`, as a JS value: a getter's answer without the glue copying a Rust
/// `String` out of wasm memory and freeing it.
fn optional_text(value: Option<&str>) -> JsValue {
    value.map_or(JsValue::UNDEFINED, JsValue::from_str)
}
