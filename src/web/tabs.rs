//! Opt-in cross-tab single flight (`shareAcrossTabs: true`): tabs of one origin that use the
//! same broker URL share one broker request per refresh, with no storage at all.
//!
//! - A Web Lock named `speech-token-client:<absolute broker URL>` elects the tab that fetches:
//!   a tab about to fetch requests it ([`Tabs::lock`]), and holds it until its request has ended
//!   and its token was shared ([`LockHold`] releases it when dropped).
//! - A `BroadcastChannel` of the same name carries the token to the other tabs (memory only):
//!   `{type: "token", token, usableFor, sentAt}` — the token, how many milliseconds it may still
//!   be handed out by the sender's own clocks, and when it was posted (`Date.now()`: tabs of one
//!   browser share the wall clock, so a receiver that was frozen and reads the message late takes
//!   the delay off). Nothing else: no region or endpoint (where the audio goes comes only from a
//!   tab's own broker). Receivers validate it like a broker answer (`token::grant_from_peer`)
//!   before the engine sees it.
//! - A tab holding no usable token first posts `{type: "ask"}` ([`Tabs::ask`]); peers holding one
//!   answer.
//! - Without `navigator.locks` or `BroadcastChannel`, [`Tabs::open`] returns `None` and the
//!   client fetches alone.
//!
//! This room knows nothing of the client: it offers the channel and the lock; the flight
//! (`flight.rs`) decides when to use them, and every "whether" comes from the engine.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, BroadcastChannel, MessageEvent};

use crate::engine::token::{grant_from_peer, Token, MAX_TOKEN_BYTES};
use crate::engine::{Grant, Machine, Ms};
use crate::web::clock;
use crate::web::js::{deferred, dictionary, get, given, object};
use crate::web::timer::Timeout;

/// After the lock is granted, how long to wait for a token the previous holder broadcast just
/// before releasing it: Web Locks and `BroadcastChannel` are independent, so the grant can
/// overtake the message (seen in Chromium); a few ms avoid a second broker request.
pub const LOCK_SETTLE_MS: f64 = 10.0;

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
    let navigator = get(&js_sys::global(), "navigator");
    let locks = get(&navigator, "locks");
    (locks.is_object() && get(&locks, "request").is_function()).then(|| locks.unchecked_into())
}

/// What another tab said.
pub(crate) enum PeerMessage {
    /// A tab without a usable token asks for one.
    Ask,
    /// A token, validated like a broker answer (lifetime counted from `now`).
    Token(Grant, crate::engine::Now),
}

/// What the lock callback hands over for the request waiting now: the function resolving the
/// "granted" promise, and the promise whose settling releases the lock.
type GrantSlot = Rc<RefCell<Option<(js_sys::Function, js_sys::Promise)>>>;

/// The Web Locks callback's closure type (see `Tabs::open`).
type LockCallback = dyn FnMut(JsValue, JsValue) -> Result<JsValue, JsValue>;

struct Inner {
    name: String,
    channel: BroadcastChannel,
    locks: LockManager,
    _on_message: Closure<dyn FnMut(JsValue)>,
    lock_callback: Closure<LockCallback>,
    slot: GrantSlot,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
        self.slot.borrow_mut().take();
    }
}

/// The open channel and the lock manager of one client. Cheap to clone (a flight holds one
/// while it runs); the channel closes when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Tabs(Rc<Inner>);

/// Holds the cross-tab lock; dropping it releases the lock (on every path).
#[must_use = "the lock is released as soon as the LockHold is dropped"]
pub(crate) struct LockHold(js_sys::Function);

impl Drop for LockHold {
    fn drop(&mut self) {
        let _ = self.0.call0(&JsValue::UNDEFINED);
    }
}

impl Tabs {
    /// Joins the channel for `broker_url`, or `None` where Web Locks or `BroadcastChannel` are
    /// missing (the client then fetches alone). `on_peer` gets every valid message; malformed
    /// ones are dropped here (another tab's bad message is not this tab's failure).
    pub(crate) fn open(
        broker_url: &str,
        mut on_peer: impl FnMut(PeerMessage) + 'static,
    ) -> Option<Tabs> {
        let locks = lock_manager()?;
        // Two pushes, not `[a, b].concat()`: its generic join code costs ~0.3 KB of gzipped wasm.
        let mut name = String::from(NAME_PREFIX);
        name.push_str(broker_url);
        let channel = BroadcastChannel::new(&name).ok()?;
        // Taken as a JS value: the same closure signature as speech.rs's no-op catch handler.
        let on_message = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            if let Some(message) = read_message(&event.unchecked_into::<MessageEvent>().data()) {
                on_peer(message);
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let slot: GrantSlot = Rc::default();
        let callback_slot = slot.clone();
        // Called with the lock alone; typed like the close hooks' wrapper (hooks.rs) so that
        // both share one glue shim.
        let lock_callback = Closure::<LockCallback>::new(move |_lock: JsValue, _: JsValue| {
            Ok(match callback_slot.borrow_mut().take() {
                Some((granted, hold)) => {
                    let _ = granted.call0(&JsValue::UNDEFINED);
                    hold.into()
                }
                // A grant nobody waits for any more: release at once.
                None => js_sys::Promise::resolve(&JsValue::UNDEFINED).into(),
            })
        });
        Some(Tabs(Rc::new(Inner {
            name,
            channel,
            locks,
            _on_message: on_message,
            lock_callback,
            slot,
        })))
    }

    fn post(&self, message: &JsValue) {
        let _ = self.0.channel.post_message(message);
    }

    /// Asks the other tabs for their token.
    pub(crate) fn ask(&self) {
        self.post(&object(&[("type", JsValue::from_str("ask"))]));
    }

    /// The token `machine` holds, while usable, as an [`Offer`] to the other tabs: read with
    /// the client's state borrowed, so no page code runs here ([`Tabs::share`] makes the
    /// message).
    pub(crate) fn offer(machine: &Machine) -> Option<Offer> {
        let now = clock::now();
        Some(Offer {
            token: JsValue::from_str(machine.token_at(now)?.expose()),
            usable_for: machine.usable_for(now)?.floor(),
            sent_at: now.wall_ms,
        })
    }

    /// Sends `offer` to the other tabs: `{type: "token", token, usableFor, sentAt}`.
    pub(crate) fn share(&self, offer: Offer) {
        self.post(&object(&[
            ("type", JsValue::from_str("token")),
            ("token", offer.token),
            ("usableFor", JsValue::from(offer.usable_for)),
            ("sentAt", JsValue::from(offer.sent_at)),
        ]));
    }

    /// Waits for the cross-tab lock, no longer than `timeout_ms` (a frozen holder costs at most
    /// one extra request, never a missing token) and no longer than `abort` allows. Returns the
    /// hold either way: a wait given up on holds nothing, and releasing it does nothing.
    pub(crate) async fn lock(&self, abort: &AbortController, timeout_ms: f64) -> LockHold {
        let (granted, granted_resolve, _) = deferred();
        let (hold, hold_resolve, _) = deferred();
        let release = LockHold(hold_resolve);
        *self.0.slot.borrow_mut() = Some((granted_resolve, hold));
        // Without a prototype: an inherited `steal` or `ifAvailable` would change the lock.
        let options = dictionary(&[("signal", abort.signal().into())]);
        let request = self.0.locks.request(
            &self.0.name,
            &options,
            self.0.lock_callback.as_ref().unchecked_ref(),
        );
        if let Ok(request) = request {
            let _deadline = {
                let abort = abort.clone();
                Timeout::new(timeout_ms, move || abort.abort())
            };
            // `race` also marks `request` as handled, whatever it settles with later.
            let _ = JsFuture::from(js_sys::Promise::race(&js_sys::Array::of2(
                &granted, &request,
            )))
            .await;
        }
        release
    }
}

/// A token this tab offers its peers (see [`Tabs::offer`]).
pub(crate) struct Offer {
    /// The token, as a JS string.
    token: JsValue,
    /// How long it is still usable, ms.
    usable_for: f64,
    /// When it was offered (epoch ms).
    sent_at: f64,
}

/// Reads and validates a peer's message; `None` for anything malformed.
fn read_message(data: &JsValue) -> Option<PeerMessage> {
    if !data.is_object() {
        return None;
    }
    // A structured clone's fields are its own: nothing on `Object.prototype` fills a field the
    // peer left out.
    let field = |k: &str| given(data, k).unwrap_or_default();
    // A string is copied into wasm memory (which never shrinks) only when short enough to be
    // what it claims: judged by its JS length first (UTF-16 units, never more than its UTF-8
    // bytes), so a peer's huge string is dropped uncopied.
    let string = |k: &str, max: usize| {
        field(k)
            .dyn_into::<js_sys::JsString>()
            .ok()
            .filter(|s| s.length() as usize <= max)
            .and_then(|s| s.as_string())
    };
    match string("type", 5).as_deref() {
        Some("ask") => Some(PeerMessage::Ask),
        Some("token") => {
            // Wrapped at once: wiped on every path. Any other field is ignored.
            let token = Token::new(string("token", MAX_TOKEN_BYTES)?);
            let usable_for = field("usableFor").as_f64()?;
            let sent_at = field("sentAt").as_f64()?;
            let now = clock::now();
            // Read late (this tab was frozen): the time since it was posted is gone. A "future"
            // sentAt takes nothing off (and a peer cannot add time with it).
            let delay = (now.wall_ms - sent_at).max_ms(0.0);
            let grant = grant_from_peer(token, usable_for - delay).ok()?;
            Some(PeerMessage::Token(grant, now))
        }
        _ => None,
    }
}
