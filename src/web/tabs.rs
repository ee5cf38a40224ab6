//! Opt-in cross-tab single flight (`shareAcrossTabs: true`): tabs of one origin that use the
//! same broker URL share one broker request per refresh, with no storage at all.
//!
//! - A Web Lock named `speech-token-client:<absolute broker URL>` elects the tab that fetches:
//!   a tab about to fetch requests it, and the lock callback's promise keeps it until the
//!   request has ended and its token was broadcast.
//! - A `BroadcastChannel` of the same name carries the token to the other tabs (memory only):
//!   `{type: "token", token, expiresAt, region?, endpoint?}`. Receivers validate it like a broker
//!   answer (`token::grant_from_parts`) and hand it to `Machine::adopt`, which keeps it only if
//!   it expires later than their own. A tab that was waiting for the lock then drops its request
//!   (`Machine::fetch_needed` / `skip_fetch`); the lock callback checks again.
//! - A tab holding no usable token first posts `{type: "ask"}`; peers holding one answer. It goes
//!   to the broker only if nothing came within `PEER_ASK_WINDOW_MS`.
//! - A closed tab's lock is released by the browser; a fetch is bounded by the request timeout;
//!   and a tab waits for the lock no longer than the request timeout either, then fetches on its
//!   own (a frozen holder costs at most one extra request, never a missing token). No `steal`:
//!   stealing would break the holder's single flight for nothing a timeout does not give.
//! - Without `navigator.locks` or `BroadcastChannel`, [`Tabs::open`] returns `None` and the
//!   client fetches alone.
//!
//! This file is glue only: every "whether" comes from the engine.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, BroadcastChannel, MessageEvent};

use crate::engine::machine::PEER_ASK_WINDOW_MS;
use crate::engine::token::grant_from_parts;
use crate::engine::{Effect, Machine};
use crate::web::broker::fetch_grant;
use crate::web::client::{Shell, State};
use crate::web::clock;
use crate::web::js_error::set;
use crate::web::timer::Timeout;

/// After the lock is granted, how long to wait for a token the previous holder broadcast just
/// before releasing it: Web Locks and `BroadcastChannel` are independent, so the grant can
/// overtake the message (seen in Chromium); a few ms avoid a second broker request.
const LOCK_SETTLE_MS: f64 = 10.0;

/// Prefix of the lock and channel names; the absolute broker URL follows.
pub const NAME_PREFIX: &str = "speech-token-client:";

#[wasm_bindgen]
extern "C" {
    /// `navigator.locks`. Bound here because web-sys has `LockManager` only behind
    /// `--cfg=web_sys_unstable_apis`, which every user of this package would have to set.
    type LockManager;

    /// `locks.request(name, options, callback)`.
    #[wasm_bindgen(method, catch, js_name = request)]
    fn request(
        this: &LockManager,
        name: &str,
        options: &JsValue,
        callback: &js_sys::Function,
    ) -> Result<js_sys::Promise, JsValue>;
}

/// `navigator.locks` where the Web Locks API exists (windows and workers alike).
fn lock_manager() -> Option<LockManager> {
    let get = |o: &JsValue, k: &str| js_sys::Reflect::get(o, &JsValue::from_str(k)).ok();
    let navigator = get(&js_sys::global(), "navigator").filter(|n| n.is_object())?;
    let locks = get(&navigator, "locks").filter(|l| l.is_object())?;
    get(&locks, "request")
        .filter(|r| r.is_function())
        .map(|_| locks.unchecked_into())
}

/// What the lock callback hands over for the request waiting now: the function resolving the
/// "granted" promise, and the promise whose settling releases the lock.
type GrantSlot = Rc<RefCell<Option<(js_sys::Function, js_sys::Promise)>>>;

/// The open channel and the lock manager of one client. Dropping it closes the channel.
pub(crate) struct Tabs {
    name: String,
    channel: BroadcastChannel,
    locks: LockManager,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    lock_callback: Closure<dyn FnMut(JsValue) -> JsValue>,
    slot: GrantSlot,
}

impl Drop for Tabs {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
        self.slot.borrow_mut().take();
    }
}

/// The shared fetch under way (one per client at most).
pub(crate) struct SharedFetch {
    id: u64,
    /// Aborts the lock request (timeout, `dispose()`, or a peer's token made it pointless).
    lock_abort: AbortController,
    /// The lock was granted (or given up on): the broker request is being made.
    sending: bool,
}

impl Tabs {
    /// Joins the channel for `broker_url`, or `None` where Web Locks or `BroadcastChannel` are
    /// missing (the client then fetches alone).
    pub(crate) fn open(broker_url: &str, shell: Weak<Shell>) -> Option<Tabs> {
        let locks = lock_manager()?;
        let name = format!("{NAME_PREFIX}{broker_url}");
        let channel = BroadcastChannel::new(&name).ok()?;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(shell) = shell.upgrade() {
                on_message(&shell, &event.data());
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let slot: GrantSlot = Rc::default();
        let callback_slot = slot.clone();
        let lock_callback = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |_lock: JsValue| {
            match callback_slot.borrow_mut().take() {
                Some((granted, hold)) => {
                    let _ = granted.call0(&JsValue::UNDEFINED);
                    hold.into()
                }
                // A grant nobody waits for any more: release at once.
                None => js_sys::Promise::resolve(&JsValue::UNDEFINED).into(),
            }
        });
        Some(Tabs {
            name,
            channel,
            locks,
            _on_message: on_message,
            lock_callback,
            slot,
        })
    }

    fn post(&self, message: &JsValue) {
        let _ = self.channel.post_message(message);
    }
}

/// `{type: "token", token, expiresAt, region?, endpoint?}` for the token held, if usable.
fn token_message(machine: &Machine) -> Option<JsValue> {
    let now = clock::now();
    let token = machine.token_at(now)?;
    let grant = machine.grant()?;
    let message = js_sys::Object::new();
    set(&message, "type", &JsValue::from_str("token"));
    set(&message, "token", &JsValue::from_str(token.expose()));
    set(&message, "expiresAt", &JsValue::from(machine.expires_at()?));
    if let Some(region) = &grant.region {
        set(&message, "region", &JsValue::from_str(region));
    }
    if let Some(endpoint) = &grant.endpoint {
        set(&message, "endpoint", &JsValue::from_str(endpoint));
    }
    Some(message.into())
}

/// Sends the held token to the other tabs.
fn broadcast(shell: &Shell) {
    let state = shell.state.borrow();
    if let (Some(tabs), Some(message)) = (&state.tabs, token_message(&state.machine)) {
        tabs.post(&message);
    }
}

fn on_message(shell: &Rc<Shell>, data: &JsValue) {
    let get = |k: &str| js_sys::Reflect::get(data, &JsValue::from_str(k)).ok();
    if !data.is_object() {
        return;
    }
    match get("type").and_then(|t| t.as_string()).as_deref() {
        Some("ask") => broadcast(shell),
        Some("token") => {
            let string = |k: &str| get(k).and_then(|v| v.as_string());
            let (Some(token), Some(expires_at)) = (string("token"), get("expiresAt")) else {
                return;
            };
            let Some(expires_at) = expires_at.as_f64() else {
                return;
            };
            let now = clock::now();
            // A malformed peer message is not this tab's failure: it is ignored.
            let Ok(grant) = grant_from_parts(
                token,
                expires_at,
                string("region"),
                string("endpoint"),
                now.wall_ms,
            ) else {
                return;
            };
            shell.input(|m, _| m.adopt(now, grant, clock::random()));
            // A request not yet sent may have become pointless.
            let skip = {
                let mut state = shell.state.borrow_mut();
                let pending = state.shared.as_ref().is_some_and(|s| !s.sending);
                if pending && !state.machine.fetch_needed(clock::now()) {
                    let shared = state.shared.take();
                    state.fetch_id += 1;
                    drop(state);
                    if let Some(shared) = shared {
                        shared.lock_abort.abort();
                    }
                    true
                } else {
                    false
                }
            };
            if skip {
                shell.input(|m, now| m.skip_fetch(now));
            }
        }
        _ => {}
    }
}

/// `Effect::Fetch` with sharing on: ask peers (if no usable token), take the lock, and fetch
/// only if still needed.
pub(crate) fn start_shared_fetch(shell: &Rc<Shell>, state: &mut State) {
    state.fetch_id += 1;
    let id = state.fetch_id;
    let Ok(lock_abort) = AbortController::new() else {
        return;
    };
    state.shared = Some(SharedFetch {
        id,
        lock_abort: lock_abort.clone(),
        sending: false,
    });
    let ask = state.machine.ask_peers_first(clock::now());
    if ask {
        if let Some(tabs) = &state.tabs {
            let message = js_sys::Object::new();
            set(&message, "type", &JsValue::from_str("ask"));
            tabs.post(&message.into());
        }
    }
    let weak = Rc::downgrade(shell);
    wasm_bindgen_futures::spawn_local(async move {
        shared_fetch(weak, id, ask, lock_abort).await;
    });
}

/// A promise resolved after `ms`.
fn sleep(ms: f64) -> (js_sys::Promise, Timeout) {
    let mut resolve = None;
    let promise = js_sys::Promise::new(&mut |r, _| resolve = Some(r));
    let timer = Timeout::new(ms, move || {
        if let Some(r) = &resolve {
            let _ = r.call0(&JsValue::UNDEFINED);
        }
    });
    (promise, timer)
}

/// Whether fetch `id` is still the current one.
fn current(weak: &Weak<Shell>, id: u64) -> Option<Rc<Shell>> {
    let shell = weak.upgrade()?;
    let live = shell.state.borrow().fetch_id == id;
    live.then_some(shell)
}

/// Ends fetch `id` without sending it if the engine says it is no longer needed.
fn skip_if_pointless(shell: &Rc<Shell>, id: u64) -> bool {
    let skip = {
        let mut state = shell.state.borrow_mut();
        if state.machine.fetch_needed(clock::now()) {
            false
        } else {
            state.fetch_id += 1;
            if state.shared.as_ref().is_some_and(|s| s.id == id) {
                state.shared = None;
            }
            true
        }
    };
    if skip {
        shell.input(|m, now| m.skip_fetch(now));
    }
    skip
}

/// Resolves the "hold" promise when dropped: the lock is released on every path.
struct Release(Option<js_sys::Function>);

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(resolve) = self.0.take() {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    }
}

async fn shared_fetch(weak: Weak<Shell>, id: u64, ask: bool, lock_abort: AbortController) {
    if ask {
        let (wait, _timer) = sleep(PEER_ASK_WINDOW_MS);
        let _ = JsFuture::from(wait).await;
        let Some(shell) = current(&weak, id) else {
            return;
        };
        if skip_if_pointless(&shell, id) {
            return;
        }
    }
    // Take the lock, waiting no longer than the request timeout.
    let mut granted_resolve = None;
    let granted = js_sys::Promise::new(&mut |r, _| granted_resolve = Some(r));
    let mut hold_resolve = None;
    let hold = js_sys::Promise::new(&mut |r, _| hold_resolve = Some(r));
    let _release = Release(hold_resolve);
    let request = {
        let Some(shell) = current(&weak, id) else {
            return;
        };
        let state = shell.state.borrow();
        let Some(tabs) = &state.tabs else {
            return;
        };
        *tabs.slot.borrow_mut() = granted_resolve.map(|g| (g, hold));
        let options = js_sys::Object::new();
        set(&options, "signal", &lock_abort.signal().into());
        tabs.locks.request(
            &tabs.name,
            &options.into(),
            tabs.lock_callback.as_ref().unchecked_ref(),
        )
    };
    if let Ok(request) = request {
        let timed_out = Rc::new(Cell::new(false));
        let _deadline = {
            let (abort, timed_out) = (lock_abort.clone(), timed_out.clone());
            let timeout = weak.upgrade().map_or(0.0, |s| s.config.timeout_ms);
            Timeout::new(timeout, move || {
                timed_out.set(true);
                abort.abort();
            })
        };
        // `race` also marks `request` as handled, whatever it settles with later.
        let _ = JsFuture::from(js_sys::Promise::race(&js_sys::Array::of2(
            &granted, &request,
        )))
        .await;
        let (settle, _timer) = sleep(LOCK_SETTLE_MS);
        let _ = JsFuture::from(settle).await;
    }
    // Granted, given up after the timeout, or unavailable: fetch now unless superseded.
    let Some(shell) = current(&weak, id) else {
        return;
    };
    if skip_if_pointless(&shell, id) {
        return;
    }
    let abort = {
        let mut state = shell.state.borrow_mut();
        if let Some(shared) = state.shared.as_mut() {
            shared.sending = true;
        }
        let Ok(abort) = AbortController::new() else {
            return;
        };
        state.abort = Some(abort.clone());
        abort
    };
    let config = shell.config.clone();
    drop(shell);
    let result = fetch_grant(&config, &abort).await;
    let Some(shell) = current(&weak, id) else {
        return;
    };
    let decision = {
        let mut state = shell.state.borrow_mut();
        state.abort = None;
        state.shared = None;
        state
            .machine
            .response(clock::now(), result, clock::random())
    };
    let published = decision.effects.contains(&Effect::Publish);
    shell.apply(decision);
    if published {
        broadcast(&shell);
    }
    // `_release` drops here: the lock is released after the token went out.
}

/// `dispose()`: abandon the shared fetch (the lock request is aborted; a held lock is released
/// when the fetch task ends) and leave the channel.
pub(crate) fn dispose(state: &mut State) {
    state.fetch_id += 1;
    if let Some(shared) = state.shared.take() {
        shared.lock_abort.abort();
    }
    state.tabs = None;
}
