//! [`Shell`]: the one owner of a client's state, and the one place where the engine's decisions
//! are carried out.
//!
//! Rules (docs/ARCHITECTURE.md, "Re-entrancy"):
//! - The state is borrowed only to change it; no JavaScript runs while it is borrowed.
//! - Every JS call a decision needs (events, promise settlements, target updates) goes to the
//!   outbox and is made after the borrow ends, in order, by one drain loop. A callback that calls
//!   back into the client (any method, `dispose()` included) changes the state at once and queues
//!   its own calls behind the ones already waiting, so events always come in transition order and
//!   the last `status` event is the status.
//! - A call is checked when it is made, not when it was queued: a waiter settled after
//!   `dispose()` is rejected with kind `disposed`, whatever was queued for it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;
use web_sys::AbortController;

use crate::engine::Ms;
use crate::engine::{Decision, Effect, Grant, Machine, Now, Status, TimerPlan};
use crate::error::Error;
use crate::web::broker::BrokerConfig;
use crate::web::clock;
use crate::web::js::{deferred, object};
use crate::web::js_error::to_js;
use crate::web::lifecycle::{Listener, PageEvent};
use crate::web::tabs::Tabs;
use crate::web::timer::Timeout;

/// The longest the shell's timer waits before the engine looks at the clocks again. A timer
/// stands still while the machine sleeps (it counts awake time, like `performance.now()`), and a
/// visible page may wake without any event the client listens to (no `visibilitychange`,
/// `focus` or `online`): the wall clock then says the token has expired, but a refresh timer
/// armed for minutes of awake time has not fired. Checking this often bounds how long attached
/// SDK objects can hold an expired token after such a wake, at the cost of one call into the
/// module per interval (no request: nothing is due).
pub(crate) const CLOCK_CHECK_MS: f64 = 15_000.0;

/// The events a listener can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    Token,
    Refreshing,
    Error,
    Expired,
    Status,
    Detach,
}

impl EventKind {
    /// The event named `name` in `client.on(name, listener)`.
    pub(crate) fn parse(name: &str) -> Option<EventKind> {
        Some(match name {
            "token" => EventKind::Token,
            "refreshing" => EventKind::Refreshing,
            "error" => EventKind::Error,
            "expired" => EventKind::Expired,
            "status" => EventKind::Status,
            "detach" => EventKind::Detach,
            _ => return None,
        })
    }
}

/// A caller of `getToken()`/`refreshNow()` waiting for the outcome.
pub(crate) struct Waiter {
    resolve: js_sys::Function,
    reject: js_sys::Function,
}

struct Subscriber {
    id: u32,
    kind: EventKind,
    listener: js_sys::Function,
}

/// The fetch under way (at most one): which one it is, and how to stop it.
pub(crate) struct Flight {
    /// Identifies this fetch: an outcome reported for another id is stale and ignored.
    pub(crate) id: u64,
    /// Aborts the broker request (and a wait on the app's `headers` function).
    pub(crate) abort: AbortController,
    /// Aborts a wait for the cross-tab lock (`shareAcrossTabs`).
    pub(crate) lock_abort: AbortController,
}

impl Drop for Flight {
    /// Dropping the flight (dispose, teardown) cancels whatever it still waits for. Aborting a
    /// request that already ended does nothing.
    fn drop(&mut self) {
        self.lock_abort.abort();
        self.abort.abort();
    }
}

/// What a live client holds. Dropping it is the teardown (the same for `dispose()` and for a
/// client that is dropped without ever being used): the timer is cleared, the page listeners
/// are removed, the request in flight is aborted, the cross-tab channel is closed, and the
/// client's hold on itself is released.
#[derive(Default)]
struct Live {
    timer: Option<Timeout>,
    page: Vec<Listener>,
    flight: Option<Flight>,
    tabs: Option<Tabs>,
    /// Set from the first use on (a caller, a target, a credential, a listener): a client in
    /// service keeps itself alive until `dispose()`, whatever the app keeps (it may keep only
    /// an attached recognizer or a credential). Broken by dropping `Live`.
    keep: Option<Rc<Shell>>,
}

/// Everything mutable. Borrowed only between JS calls.
struct State {
    machine: Machine,
    /// The current token as a JS string, made once per token (reads stay cheap).
    token_js: Option<JsValue>,
    waiters: Vec<Waiter>,
    fresh: Vec<Waiter>,
    /// `refreshNow()` callers waiting for the request after the one being sent
    /// (`Machine::request_sent`): they join `fresh` when it starts.
    fresh_next: Vec<Waiter>,
    subscribers: Vec<Subscriber>,
    next_subscriber: u32,
    /// Attached targets, held weakly.
    targets: Vec<js_sys::WeakRef>,
    next_flight: u64,
    /// `None` once disposed.
    live: Option<Live>,
}

impl State {
    /// Fetch `id`, while it is the current one (a stale id — superseded, skipped, disposed —
    /// finds nothing).
    fn flight(&mut self, id: u64) -> Option<&mut Flight> {
        self.live
            .as_mut()
            .and_then(|live| live.flight.as_mut())
            .filter(|flight| flight.id == id)
    }

    /// Ends fetch `id` if it is the current one: its [`Flight`], for the caller to drop once
    /// the state is no longer borrowed (dropping it aborts its signals, whose `abort` listeners
    /// may be page code, such as a `fetch` wrapper's).
    fn end_flight(&mut self, id: u64) -> Option<Flight> {
        self.flight(id)?;
        self.live.as_mut().and_then(|live| live.flight.take())
    }
}

/// A JS call, made once the state is no longer borrowed.
enum Call {
    /// Resolve with the token the engine served (unless disposed since).
    Resolve(Vec<Waiter>, JsValue),
    Reject(Vec<Waiter>, Error),
    /// An event; not delivered once the client is disposed (`dispose()` stops listeners).
    Emit(EventKind, Told),
    SetTargets,
    /// The `disposed` status event, the last one: then the listeners are let go.
    Disposed(Told),
}

/// An event's detail as the transition left it, in Rust data: made into a JS object when the
/// event is told, after the state's borrow has ended (making it may run page code: a setter
/// that page code put on `Object.prototype` under a detail's key).
enum Told {
    /// `token`: `{expiresAt, region?, endpoint?}`.
    Token {
        expires_at: Option<f64>,
        region: Option<String>,
        endpoint: Option<String>,
    },
    /// `status`: `{status}`.
    Status(&'static str),
    /// `refreshing`, `expired`: `{}`.
    Empty,
    /// `error`: `{error}`.
    Error(Error),
    /// `detach`, for a closed target: `{target, reason: "closed"}`.
    Closed(js_sys::Object),
}

impl Told {
    /// The event's `detail` object.
    fn detail(&self) -> JsValue {
        match self {
            Told::Token {
                expires_at,
                region,
                endpoint,
            } => detail(&Detail::Token {
                expires_at: *expires_at,
                region: region.as_deref(),
                endpoint: endpoint.as_deref(),
            }),
            Told::Status(status) => detail(&Detail::Status { status }),
            Told::Empty => detail(&Detail::Empty {}),
            Told::Error(error) => object(&[("error", to_js(error))]),
            Told::Closed(target) => detach_detail(target),
        }
    }
}

/// A fetch to run, handed to the [`Launcher`].
pub(crate) struct FlightPlan {
    /// Identifies the fetch in [`Shell::finish_fetch`].
    pub(crate) id: u64,
    /// Aborts the broker request.
    pub(crate) abort: AbortController,
    /// Aborts the wait for the cross-tab lock.
    pub(crate) lock_abort: AbortController,
    /// The cross-tab channel, when sharing.
    pub(crate) tabs: Option<Tabs>,
    /// Ask the other tabs first (no usable token is held).
    pub(crate) ask_peers: bool,
}

/// Runs a fetch the engine asked for (`flight::start`). Injected at construction so that the
/// shell does not depend on the room that depends on it. Called with the state borrowed: it must
/// only schedule work.
pub(crate) type Launcher = fn(&Rc<Shell>, FlightPlan);

thread_local! {
    /// The last shell id handed out (ids tell clients apart, e.g. whose hooks an object holds).
    static LAST_ID: Cell<u32> = const { Cell::new(0) };
}

/// The core of a `TokenClient`. See the module docs.
pub(crate) struct Shell {
    id: u32,
    /// How to reach the broker (validated at construction, never changes; shared with each
    /// fetch, never copied).
    pub(crate) config: Rc<BrokerConfig>,
    launch: Launcher,
    state: RefCell<State>,
    outbox: RefCell<Vec<Call>>,
    draining: Cell<bool>,
}

impl Shell {
    /// A new, idle client shell.
    pub(crate) fn new(machine: Machine, config: BrokerConfig, launch: Launcher) -> Rc<Shell> {
        let id = LAST_ID.with(|last| {
            last.set(last.get().wrapping_add(1));
            last.get()
        });
        Rc::new(Shell {
            id,
            config: Rc::new(config),
            launch,
            state: RefCell::new(State {
                machine,
                token_js: None,
                waiters: Vec::new(),
                fresh: Vec::new(),
                fresh_next: Vec::new(),
                subscribers: Vec::new(),
                next_subscriber: 1,
                targets: Vec::new(),
                next_flight: 0,
                live: Some(Live::default()),
            }),
            outbox: RefCell::default(),
            draining: Cell::new(false),
        })
    }

    /// Hands the page listeners and the cross-tab channel to the live client.
    pub(crate) fn install(&self, page: Vec<Listener>, tabs: Option<Tabs>) {
        if let Some(live) = self.state.borrow_mut().live.as_mut() {
            live.page = page;
            live.tabs = tabs;
        }
    }

    /// Marks the client as in service (see [`Live::keep`]).
    pub(crate) fn in_service(self: &Rc<Shell>) {
        if let Some(live) = self.state.borrow_mut().live.as_mut() {
            if live.keep.is_none() {
                live.keep = Some(self.clone());
            }
        }
    }

    /// This client's id (unique in the page).
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// An attached object was closed (its `close`/`dispose` ran): it is detached, with one
    /// `detach` event (reason "closed") if it was attached.
    pub(crate) fn target_closed(&self, target: &js_sys::Object) {
        if self.drop_target(target) {
            self.outbox
                .borrow_mut()
                .push(Call::Emit(EventKind::Detach, Told::Closed(target.clone())));
            self.drain();
        }
    }

    /// Whether `dispose()` has run.
    pub(crate) fn disposed(&self) -> bool {
        self.state.borrow().live.is_none()
    }

    /// Reads the engine (no JS may run inside `f`).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Machine) -> R) -> R {
        f(&self.state.borrow().machine)
    }

    /// The current token as a JS string, if one is held.
    pub(crate) fn token_js(&self) -> Option<JsValue> {
        self.state.borrow().token_js.clone()
    }

    /// The current token as a JS string if it may be handed out at `now`: a held token can be
    /// past its usable time before the engine hears of it (no timer runs during a long task or
    /// while the machine sleeps). Never an expired token, for every way the module hands one
    /// out (`client.token`, `attach()`, the credential's answer).
    pub(crate) fn usable_token_js(&self, now: Now) -> Option<JsValue> {
        let state = self.state.borrow();
        state
            .machine
            .token_at(now)
            .and_then(|_| state.token_js.clone())
    }

    /// Lets the engine catch up with the clock when a deadline its timer was armed for has
    /// passed unseen ([`Machine::behind`]), so that a getter tells what is true now. The events
    /// this implies (`expired`, `status`, `refreshing`) are delivered before the getter returns
    /// (read inside one of the client's own callbacks: once that callback returns), so the last
    /// `status` event equals `client.status` once they are delivered.
    pub(crate) fn catch_up(self: &Rc<Shell>) {
        if self.read(|m| m.behind(clock::now())) {
            self.input(|m, now| m.tick(now));
        }
    }

    /// Input from outside: runs `f` on the engine with the current time, then carries out the
    /// decision.
    pub(crate) fn input(self: &Rc<Shell>, f: impl FnOnce(&mut Machine, Now) -> Decision) {
        let decision = {
            let mut state = self.state.borrow_mut();
            f(&mut state.machine, clock::now())
        };
        self.apply(decision);
    }

    /// Carries out a decision of the engine: state changes now, JS calls through the outbox.
    pub(crate) fn apply(self: &Rc<Shell>, decision: Decision) {
        {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            let mut outbox = self.outbox.borrow_mut();
            if let Some(live) = state.live.as_mut() {
                match decision.timer {
                    TimerPlan::Keep => {}
                    TimerPlan::Clear => live.timer = None,
                    TimerPlan::Arm(delay) => {
                        let weak = Rc::downgrade(self);
                        // Never longer than CLOCK_CHECK_MS: an early wake finds nothing due
                        // and the engine re-arms (`timer_fired`).
                        live.timer = Some(Timeout::new(delay.min_ms(CLOCK_CHECK_MS), move || {
                            if let Some(shell) = weak.upgrade() {
                                shell.input(|m, now| m.timer_fired(now));
                            }
                        }));
                    }
                }
            }
            for effect in decision.effects {
                match effect {
                    Effect::Fetch => {
                        state.fresh.append(&mut state.fresh_next);
                        if let Some(live) = state.live.as_mut() {
                            state.next_flight += 1;
                            let id = state.next_flight;
                            let ask_peers =
                                live.tabs.is_some() && state.machine.ask_peers_first(clock::now());
                            let (Ok(abort), Ok(lock_abort)) =
                                (AbortController::new(), AbortController::new())
                            else {
                                continue;
                            };
                            live.flight = Some(Flight {
                                id,
                                abort: abort.clone(),
                                lock_abort: lock_abort.clone(),
                            });
                            (self.launch)(
                                self,
                                FlightPlan {
                                    id,
                                    abort,
                                    lock_abort,
                                    tabs: live.tabs.clone(),
                                    ask_peers,
                                },
                            );
                        }
                    }
                    Effect::Publish => {
                        state.token_js =
                            state.machine.token().map(|t| JsValue::from_str(t.expose()));
                        outbox.push(Call::SetTargets);
                        outbox.push(Call::Emit(EventKind::Token, token_told(&state.machine)));
                    }
                    Effect::ResolveWaiters => {
                        let mut all = std::mem::take(&mut state.waiters);
                        all.append(&mut state.fresh);
                        let token = state.token_js.clone().unwrap_or_default();
                        outbox.push(Call::Resolve(all, token));
                    }
                    Effect::ServeWaiters => {
                        let token = state.token_js.clone().unwrap_or_default();
                        outbox.push(Call::Resolve(std::mem::take(&mut state.waiters), token));
                    }
                    Effect::RejectWaiters(error) => {
                        let mut all = std::mem::take(&mut state.waiters);
                        all.append(&mut state.fresh);
                        outbox.push(Call::Reject(all, error));
                    }
                    Effect::RejectOne(error) => {
                        let last: Vec<Waiter> = state.waiters.pop().into_iter().collect();
                        outbox.push(Call::Reject(last, error));
                    }
                    Effect::Refreshing => {
                        outbox.push(Call::Emit(EventKind::Refreshing, Told::Empty))
                    }
                    Effect::Failed(error) => {
                        outbox.push(Call::Emit(EventKind::Error, Told::Error(error)))
                    }
                    Effect::Expired => {
                        state.token_js = None;
                        outbox.push(Call::Emit(EventKind::Expired, Told::Empty));
                    }
                    Effect::StatusChanged(status) => {
                        let told = Told::Status(status.as_str());
                        outbox.push(if status == Status::Disposed {
                            Call::Disposed(told)
                        } else {
                            Call::Emit(EventKind::Status, told)
                        });
                    }
                }
            }
        }
        self.drain();
    }

    /// Makes the queued JS calls, in order. Re-entrant calls only queue: the outermost drain
    /// makes them.
    fn drain(&self) {
        if self.draining.replace(true) {
            return;
        }
        loop {
            let next = {
                let mut outbox = self.outbox.borrow_mut();
                (!outbox.is_empty()).then(|| outbox.remove(0))
            };
            let Some(call) = next else { break };
            self.make(call);
        }
        self.draining.set(false);
    }

    fn make(&self, call: Call) {
        match call {
            Call::Resolve(waiters, token) => {
                // Checked now: a listener may have disposed the client since this was queued.
                if self.disposed() {
                    self.make(Call::Reject(waiters, Error::Disposed));
                    return;
                }
                for w in waiters {
                    let _ = w.resolve.call1(&JsValue::UNDEFINED, &token);
                }
            }
            Call::Reject(waiters, error) => {
                if waiters.is_empty() {
                    return;
                }
                // Likewise: after `dispose()` (an `error` listener's, queued before this), a
                // pending call rejects with `disposed`, whatever failure it was waiting on.
                let error = to_js(if self.disposed() {
                    &Error::Disposed
                } else {
                    &error
                });
                for w in waiters {
                    let _ = w.reject.call1(&JsValue::UNDEFINED, &error);
                }
            }
            Call::Emit(kind, told) => self.emit(kind, &told.detail()),
            Call::SetTargets => self.set_targets(),
            Call::Disposed(told) => {
                self.deliver(EventKind::Status, &told.detail(), true);
                self.state.borrow_mut().subscribers.clear();
            }
        }
    }

    /// Calls the listeners of one event. A listener that throws does not stop the others; its
    /// exception is reported to the page (`reportError`) instead of being swallowed. As in a DOM
    /// dispatch, the listeners are those subscribed when the event starts, less any that a
    /// listener removes meanwhile (`off()` means no more calls, even within this event); and none
    /// once the client is disposed, even by a listener of this event.
    pub(crate) fn emit(&self, kind: EventKind, detail: &JsValue) {
        self.deliver(kind, detail, false);
    }

    /// [`Shell::emit`]'s loop; `last`: the `disposed` status event, delivered although disposed.
    fn deliver(&self, kind: EventKind, detail: &JsValue, last: bool) {
        // Subscribers are kept in id order: walked by id, one removed meanwhile is skipped and
        // one added meanwhile (an id past `end`) is not reached.
        let end = self.state.borrow().next_subscriber;
        let mut from = 0;
        loop {
            if !last && self.disposed() {
                return;
            }
            let next = self
                .state
                .borrow()
                .subscribers
                .iter()
                .find(|s| s.id >= from && s.id < end && s.kind == kind)
                .map(|s| (s.id, s.listener.clone()));
            let Some((id, listener)) = next else {
                return;
            };
            from = id + 1;
            if let Err(exception) = listener.call1(&JsValue::UNDEFINED, detail) {
                report_error(&exception);
            }
        }
    }

    /// Adds a listener; returns its id for [`Shell::unsubscribe`].
    pub(crate) fn subscribe(&self, kind: EventKind, listener: js_sys::Function) -> u32 {
        let mut state = self.state.borrow_mut();
        let id = state.next_subscriber;
        state.next_subscriber += 1;
        state.subscribers.push(Subscriber { id, kind, listener });
        id
    }

    /// Removes a listener (nothing if it is gone already).
    pub(crate) fn unsubscribe(&self, id: u32) {
        self.state.borrow_mut().subscribers.retain(|s| s.id != id);
    }

    /// `getToken()`: a resolved promise on the hot path, else a waiter.
    pub(crate) fn get_token(self: &Rc<Shell>) -> js_sys::Promise {
        {
            let state = self.state.borrow();
            if state.machine.ready_token(clock::now()).is_some() {
                if let Some(token) = &state.token_js {
                    return js_sys::Promise::resolve(token);
                }
            }
        }
        self.wait(false)
    }

    /// `refreshNow()`: a promise for the next new token.
    pub(crate) fn refresh_now(self: &Rc<Shell>) -> js_sys::Promise {
        self.wait(true)
    }

    /// A promise for a token (`fresh`: the next new one, for `refreshNow()`).
    fn wait(self: &Rc<Shell>, fresh: bool) -> js_sys::Promise {
        let (promise, resolve, reject) = deferred();
        let waiter = Waiter { resolve, reject };
        if self.disposed() {
            let _ = waiter
                .reject
                .call1(&JsValue::UNDEFINED, &to_js(&Error::Disposed));
            return promise;
        }
        self.in_service();
        {
            let mut state = self.state.borrow_mut();
            if !fresh {
                state.waiters.push(waiter);
            } else if state.machine.request_sent() {
                state.fresh_next.push(waiter);
            } else {
                state.fresh.push(waiter);
            }
        }
        if fresh {
            self.input(|m, now| m.refresh_now(now));
        } else {
            self.input(|m, now| m.demand(now));
        }
        promise
    }

    /// A page lifecycle event.
    pub(crate) fn on_page(self: &Rc<Shell>, event: PageEvent) {
        match event {
            PageEvent::Visibility(hidden) => self.input(|m, now| m.set_hidden(now, hidden)),
            PageEvent::Recheck => self.input(|m, now| m.tick(now)),
            PageEvent::Online => self.input(|m, now| m.online(now)),
        }
    }

    /// The one entry point for the outcome of fetch `id` (fetched alone or for every tab).
    /// Returns whether a new token was published (to share it with other tabs).
    pub(crate) fn finish_fetch(self: &Rc<Shell>, id: u64, result: Result<Grant, Error>) -> bool {
        let (decision, ended) = {
            let mut state = self.state.borrow_mut();
            let Some(ended) = state.end_flight(id) else {
                return false; // stale: superseded or skipped
            };
            let decision = state
                .machine
                .response(clock::now(), result, clock::random());
            (decision, ended)
        };
        let published = decision
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Publish));
        self.apply(decision);
        // After the decision: an `abort` listener that calls the client comes after it.
        drop(ended);
        published
    }

    /// Fetch `id` ends without being sent: a token from another tab made it pointless.
    pub(crate) fn skip_fetch(self: &Rc<Shell>, id: u64) {
        let (decision, ended) = {
            let mut state = self.state.borrow_mut();
            let Some(ended) = state.end_flight(id) else {
                return;
            };
            (state.machine.skip_fetch(clock::now()), ended)
        };
        self.apply(decision);
        drop(ended);
    }

    /// Whether fetch `id` is still the current one and (when `ask_engine`) still has a purpose
    /// (`Machine::fetch_needed`).
    pub(crate) fn fetch_still_needed(&self, id: u64, ask_engine: bool) -> bool {
        let mut state = self.state.borrow_mut();
        if ask_engine && !state.machine.fetch_needed(clock::now()) {
            return false;
        }
        state.flight(id).is_some()
    }

    /// Fetch `id`, if it is still the current one, is being sent: the app's `headers` are in
    /// hand (`Machine::sending`).
    pub(crate) fn sending(&self, id: u64) {
        let mut state = self.state.borrow_mut();
        if state.flight(id).is_some() {
            state.machine.sending();
        }
    }

    /// Whether fetch `id` is the current one.
    pub(crate) fn is_current_fetch(&self, id: u64) -> bool {
        let state = self.state.borrow();
        let flight = state.live.as_ref().and_then(|live| live.flight.as_ref());
        flight.is_some_and(|flight| flight.id == id)
    }

    /// A token another tab shared, already validated: hand it to the engine. If the fetch under
    /// way has not been sent and has lost its purpose, stop waiting for the lock.
    pub(crate) fn adopt(self: &Rc<Shell>, grant: Grant, now: Now) {
        self.input(|m, _| m.adopt(now, grant, clock::random()));
        let pointless = {
            let state = self.state.borrow();
            let flight = state.live.as_ref().and_then(|l| l.flight.as_ref());
            flight
                .filter(|_| {
                    !state.machine.request_sent() && !state.machine.fetch_needed(clock::now())
                })
                .map(|f| f.lock_abort.clone())
        };
        // Outside the borrow: the signal's `abort` listeners run now.
        if let Some(lock_abort) = pointless {
            lock_abort.abort();
        }
    }

    /// The cross-tab channel, while live.
    pub(crate) fn tabs(&self) -> Option<Tabs> {
        self.state
            .borrow()
            .live
            .as_ref()
            .and_then(|l| l.tabs.clone())
    }

    /// The attached targets (weak references), for the Speech SDK room.
    pub(crate) fn targets(&self) -> Vec<js_sys::WeakRef> {
        self.state.borrow().targets.clone()
    }

    /// Detaches `target`: the object, or its weak reference as held (a collected target has
    /// no object left to name). Collected targets go too. Whether the list changed.
    pub(crate) fn drop_target(&self, target: &JsValue) -> bool {
        self.with_targets(|targets| {
            let before = targets.len();
            targets.retain(|w| {
                !js_sys::Object::is(w, target)
                    && w.deref().is_some_and(|t| !js_sys::Object::is(&t, target))
            });
            targets.len() != before
        })
    }

    /// Changes the attached targets.
    pub(crate) fn with_targets<R>(&self, f: impl FnOnce(&mut Vec<js_sys::WeakRef>) -> R) -> R {
        f(&mut self.state.borrow_mut().targets)
    }

    /// `dispose()`: the engine stops (the token is wiped), the live part is dropped (the
    /// teardown: see [`Live`]), then waiters are rejected with kind `disposed` and the last
    /// `status` event says so. Idempotent; safe from inside any callback. Returns the targets
    /// that were attached (their close hooks are the Speech room's to remove).
    pub(crate) fn dispose(self: &Rc<Shell>) -> Vec<js_sys::WeakRef> {
        let (decision, live, targets) = {
            let mut state = self.state.borrow_mut();
            let decision = state.machine.dispose();
            // Every caller is rejected: those kept for a next request as well.
            let next = std::mem::take(&mut state.fresh_next);
            state.fresh.extend(next);
            state.token_js = None;
            let targets = std::mem::take(&mut state.targets);
            (decision, state.live.take(), targets)
        };

        // The teardown first (no JS re-enters from it: aborts and clears only), then the calls.
        drop(live);
        self.apply(decision);
        targets
    }
}

/// An event's `detail` made from Rust data: a plain object made by serde-wasm-bindgen. Never
/// holds the token. The details that hand the app a JS object (`error`'s `SpeechTokenError`,
/// `detach`'s target) are made by [`object`] ([`Told::detail`], [`detach_detail`]):
/// `serde_wasm_bindgen::preserve` would carry the object through serde as a heap index in a
/// tagged tuple, ~1 KB of generic code in the module (bench/size-steps.md, step 40).
#[derive(Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
enum Detail<'a> {
    /// `token`: `{expiresAt, region?, endpoint?}` (absent ones are `undefined`).
    Token {
        expires_at: Option<f64>,
        region: Option<&'a str>,
        endpoint: Option<&'a str>,
    },
    /// `status`: `{status}`.
    Status { status: &'static str },
    /// `refreshing`, `expired`: `{}`.
    Empty {},
}

fn detail(detail: &Detail<'_>) -> JsValue {
    // Serializing strings and numbers cannot fail.
    serde_wasm_bindgen::to_value(detail).unwrap_or(JsValue::UNDEFINED)
}

/// `detach`'s detail for a target that was closed: `{target, reason: "closed"}`. The one way
/// it is made, whether the close hook or a throwing setter noticed it.
pub(crate) fn detach_detail(target: &js_sys::Object) -> JsValue {
    object(&[
        ("target", target.into()),
        ("reason", JsValue::from_str("closed")),
    ])
}

/// The `token` event's data, as the transition left it.
fn token_told(machine: &Machine) -> Told {
    let route = machine.route();
    Told::Token {
        expires_at: machine.schedule(clock::now()).expires_at,
        region: route.and_then(|r| r.region.clone()),
        endpoint: route.and_then(|r| r.endpoint.clone()),
    }
}

#[wasm_bindgen]
extern "C" {
    /// `reportError(e)`: reports an exception to the page's error handlers without throwing.
    #[wasm_bindgen(js_name = reportError, catch)]
    fn report_error_js(error: &JsValue) -> Result<(), JsValue>;
}

fn report_error(error: &JsValue) {
    let _ = report_error_js(error);
}
