//! `TokenClient`: the JS API. A thin shell: every input goes to the engine, every decision
//! comes back and is carried out here, with no JS called while the state is borrowed (a
//! listener may call back into the client).

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{AbortController, RequestCredentials};

use crate::engine::token::check_broker_url;
use crate::engine::{Decision, Effect, Machine, RefreshPolicy, Status, TimerPlan};
use crate::error::Error;
use crate::web::broker::{fetch_grant, BrokerConfig, HeaderSource};
use crate::web::clock;
use crate::web::js_error::{config_error, object, to_js};
use crate::web::lifecycle::{page_hidden, watch_page, Listener, PageEvent};
use crate::web::tabs::{self, SharedFetch, Tabs};
use crate::web::timer::Timeout;

/// The option names `new TokenClient(options)` accepts.
const OPTION_KEYS: [&str; 8] = [
    "brokerUrl",
    "headers",
    "credentials",
    "method",
    "refreshMargin",
    "requestTimeout",
    "maxLifetime",
    "shareAcrossTabs",
];

/// The constructor's options, read with `Reflect` (no serde in the bundle). Unknown keys are
/// rejected, so that a typo (`brokerURL`) is a clear error instead of a silently ignored option.
struct Options {
    broker_url: String,
    headers: JsValue,
    credentials: Option<String>,
    method: Option<String>,
    refresh_margin: Option<f64>,
    request_timeout: Option<f64>,
    max_lifetime: Option<f64>,
    share_across_tabs: Option<bool>,
}

impl Options {
    fn read(options: &JsValue) -> Result<Options, JsValue> {
        let object: &js_sys::Object = options
            .dyn_ref()
            .filter(|_| options.is_object())
            .ok_or_else(|| config_error("options must be an object with a brokerUrl"))?;
        for key in js_sys::Object::keys(object).iter() {
            if !key
                .as_string()
                .is_some_and(|k| OPTION_KEYS.contains(&k.as_str()))
            {
                return Err(config_error(
                    "unknown option: the options are brokerUrl, headers, credentials, method, refreshMargin, requestTimeout, maxLifetime, shareAcrossTabs",
                ));
            }
        }
        let get = |key: &str| {
            let v =
                js_sys::Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED);
            (!v.is_undefined() && !v.is_null()).then_some(v)
        };
        let string = |key: &str, message: &'static str| match get(key) {
            None => Ok(None),
            Some(v) => v.as_string().map(Some).ok_or_else(|| config_error(message)),
        };
        let number = |key: &str, message: &'static str| match get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| config_error(message)),
        };
        Ok(Options {
            broker_url: string("brokerUrl", "brokerUrl must be a string")?
                .ok_or_else(|| config_error("brokerUrl is required"))?,
            headers: get("headers").unwrap_or(JsValue::UNDEFINED),
            credentials: string("credentials", "credentials must be a string")?,
            method: string("method", "method must be a string")?,
            refresh_margin: number("refreshMargin", "refreshMargin must be a number of seconds")?,
            request_timeout: number(
                "requestTimeout",
                "requestTimeout must be a number of milliseconds",
            )?,
            max_lifetime: number("maxLifetime", "maxLifetime must be a number of seconds")?,
            share_across_tabs: match get("shareAcrossTabs") {
                None => None,
                Some(v) => Some(
                    v.as_bool()
                        .ok_or_else(|| config_error("shareAcrossTabs must be a boolean"))?,
                ),
            },
        })
    }
}

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
    fn parse(name: &str) -> Option<EventKind> {
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
struct Waiter {
    resolve: js_sys::Function,
    reject: js_sys::Function,
}

struct Subscriber {
    id: u32,
    kind: EventKind,
    listener: js_sys::Function,
}

/// Everything mutable, behind one `RefCell`.
pub(crate) struct State {
    pub(crate) machine: Machine,
    timer: Option<Timeout>,
    page: Vec<Listener>,
    waiters: Vec<Waiter>,
    fresh: Vec<Waiter>,
    subscribers: Vec<Subscriber>,
    next_id: u32,
    /// The current token as a JS string, made once per token (reads stay cheap).
    pub(crate) token_js: Option<JsValue>,
    pub(crate) targets: Vec<js_sys::WeakRef>,
    pub(crate) abort: Option<AbortController>,
    /// Cross-tab sharing (`shareAcrossTabs`), where the browser supports it.
    pub(crate) tabs: Option<Tabs>,
    /// The shared fetch under way, if any.
    pub(crate) shared: Option<SharedFetch>,
    /// Identifies the current shared fetch: a task whose id is no longer current stops.
    pub(crate) fetch_id: u64,
}

/// The shared core behind a `TokenClient`. Timers and listeners hold it weakly, so dropping
/// the client (or `free()`) drops them too.
pub(crate) struct Shell {
    pub(crate) state: RefCell<State>,
    pub(crate) config: BrokerConfig,
}

/// A JS call to make once the state is no longer borrowed.
enum Call {
    Resolve(Vec<Waiter>, JsValue),
    Reject(Vec<Waiter>, JsValue),
    Emit(EventKind, JsValue),
    SetTargets,
}

impl Shell {
    /// Carries out a decision of the engine.
    pub(crate) fn apply(self: &Rc<Shell>, decision: Decision) {
        let mut calls = Vec::new();
        {
            let mut state = self.state.borrow_mut();
            match decision.timer {
                TimerPlan::Keep => {}
                TimerPlan::Clear => state.timer = None,
                TimerPlan::Arm(delay) => {
                    let weak = Rc::downgrade(self);
                    state.timer = Some(Timeout::new(delay, move || {
                        if let Some(shell) = weak.upgrade() {
                            let decision =
                                shell.state.borrow_mut().machine.timer_fired(clock::now());
                            shell.apply(decision);
                        }
                    }));
                }
            }
            for effect in decision.effects {
                match effect {
                    Effect::Fetch => self.start_fetch(&mut state),
                    Effect::Publish => {
                        state.token_js =
                            state.machine.token().map(|t| JsValue::from_str(t.expose()));
                        calls.push(Call::SetTargets);
                        calls.push(Call::Emit(EventKind::Token, token_detail(&state.machine)));
                    }
                    Effect::ResolveWaiters => {
                        let mut all = std::mem::take(&mut state.waiters);
                        all.append(&mut state.fresh);
                        calls.push(Call::Resolve(
                            all,
                            state.token_js.clone().unwrap_or_default(),
                        ));
                    }
                    Effect::ServeWaiters => {
                        let waiters = std::mem::take(&mut state.waiters);
                        calls.push(Call::Resolve(
                            waiters,
                            state.token_js.clone().unwrap_or_default(),
                        ));
                    }
                    Effect::RejectWaiters(error) => {
                        let mut all = std::mem::take(&mut state.waiters);
                        all.append(&mut state.fresh);
                        calls.push(Call::Reject(all, to_js(&error)));
                    }
                    Effect::Refreshing => {
                        calls.push(Call::Emit(EventKind::Refreshing, object(&[])))
                    }
                    Effect::Failed(error) => calls.push(Call::Emit(
                        EventKind::Error,
                        object(&[("error", to_js(&error))]),
                    )),
                    Effect::Expired => {
                        state.token_js = None;
                        calls.push(Call::Emit(EventKind::Expired, object(&[])));
                    }
                    Effect::StatusChanged(status) => calls.push(Call::Emit(
                        EventKind::Status,
                        object(&[("status", JsValue::from_str(status.as_str()))]),
                    )),
                }
            }
        }
        for call in calls {
            match call {
                Call::Resolve(waiters, token) => {
                    for w in waiters {
                        let _ = w.resolve.call1(&JsValue::UNDEFINED, &token);
                    }
                }
                Call::Reject(waiters, error) => {
                    for w in waiters {
                        let _ = w.reject.call1(&JsValue::UNDEFINED, &error);
                    }
                }
                Call::Emit(kind, detail) => self.emit(kind, &detail),
                Call::SetTargets => self.set_targets(),
            }
        }
    }

    fn start_fetch(self: &Rc<Shell>, state: &mut State) {
        if state.tabs.is_some() {
            tabs::start_shared_fetch(self, state);
            return;
        }
        let Ok(abort) = AbortController::new() else {
            // Cannot happen in a browser; report it as a network failure rather than hang.
            let weak = Rc::downgrade(self);
            wasm_bindgen_futures::spawn_local(async move {
                deliver(&weak, Err(Error::Network));
            });
            return;
        };
        state.abort = Some(abort.clone());
        let config = self.config.clone();
        let weak = Rc::downgrade(self);
        wasm_bindgen_futures::spawn_local(async move {
            let result = fetch_grant(&config, &abort).await;
            deliver(&weak, result);
        });
    }

    /// Calls the listeners of one event. A listener that throws does not stop the others; its
    /// exception is reported to the page (`reportError`) instead of being swallowed.
    pub(crate) fn emit(&self, kind: EventKind, detail: &JsValue) {
        let listeners: Vec<js_sys::Function> = self
            .state
            .borrow()
            .subscribers
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.listener.clone())
            .collect();
        for listener in listeners {
            if let Err(exception) = listener.call1(&JsValue::UNDEFINED, detail) {
                report_error(&exception);
            }
        }
    }

    /// Input from outside: runs `f` on the machine with the current time, then applies.
    pub(crate) fn input(
        self: &Rc<Shell>,
        f: impl FnOnce(&mut Machine, crate::engine::Now) -> Decision,
    ) {
        let decision = {
            let mut state = self.state.borrow_mut();
            f(&mut state.machine, clock::now())
        };
        self.apply(decision);
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

    /// A promise for the next token (`fresh`: the next new one, for `refreshNow()`).
    fn wait(self: &Rc<Shell>, fresh: bool) -> js_sys::Promise {
        let mut waiter = None;
        let promise = js_sys::Promise::new(&mut |resolve, reject| {
            waiter = Some(Waiter { resolve, reject });
        });
        if let Some(waiter) = waiter {
            let mut state = self.state.borrow_mut();
            if state.machine.status() == Status::Disposed {
                drop(state);
                let _ = waiter
                    .reject
                    .call1(&JsValue::UNDEFINED, &to_js(&Error::Disposed));
                return promise;
            }
            if fresh {
                state.fresh.push(waiter);
            } else {
                state.waiters.push(waiter);
            }
        }
        if fresh {
            self.input(|m, now| m.refresh_now(now));
        } else {
            self.input(|m, now| m.demand(now));
        }
        promise
    }

    fn on_page(self: &Rc<Shell>, event: PageEvent) {
        match event {
            PageEvent::Visibility(hidden) => self.input(|m, now| m.set_hidden(now, hidden)),
            PageEvent::Recheck => self.input(|m, now| m.tick(now)),
            PageEvent::Online => self.input(|m, now| m.online(now)),
        }
    }
}

fn deliver(weak: &Weak<Shell>, result: Result<crate::engine::Grant, Error>) {
    if let Some(shell) = weak.upgrade() {
        shell.state.borrow_mut().abort = None;
        shell.input(|m, now| m.response(now, result, clock::random()));
    }
}

fn token_detail(machine: &Machine) -> JsValue {
    let grant = machine.grant();
    object(&[
        (
            "expiresAt",
            machine
                .expires_at()
                .map_or(JsValue::UNDEFINED, JsValue::from),
        ),
        (
            "region",
            grant
                .and_then(|g| g.region.as_deref())
                .map_or(JsValue::UNDEFINED, JsValue::from_str),
        ),
        (
            "endpoint",
            grant
                .and_then(|g| g.endpoint.as_deref())
                .map_or(JsValue::UNDEFINED, JsValue::from_str),
        ),
    ])
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

/// Resolves and checks the broker URL against the page's location.
fn resolve_broker_url(raw: &str) -> Result<String, JsValue> {
    let base = js_sys::global()
        .dyn_into::<web_sys::Window>()
        .ok()
        .and_then(|w| w.location().href().ok());
    let relative = web_sys::Url::new(raw).is_err();
    let url = match (&base, relative) {
        (_, false) => web_sys::Url::new(raw),
        (Some(base), true) => web_sys::Url::new_with_base(raw, base),
        (None, true) => return Err(config_error("a relative brokerUrl needs a page location")),
    }
    .map_err(|_| config_error("brokerUrl is not a valid URL"))?;
    let same_origin = base
        .as_deref()
        .and_then(|b| web_sys::Url::new(b).ok())
        .is_some_and(|b| b.origin() == url.origin());
    let has_userinfo = !url.username().is_empty() || !url.password().is_empty();
    let host = url.hostname();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    check_broker_url(relative, same_origin, &url.protocol(), host, has_userinfo)
        .map_err(|e| to_js(&e))?;
    Ok(url.href())
}

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
        let options = Options::read(&options)?;
        let url = resolve_broker_url(&options.broker_url)?;
        let credentials = match options.credentials.as_deref() {
            None | Some("same-origin") => RequestCredentials::SameOrigin,
            Some("include") => RequestCredentials::Include,
            Some("omit") => RequestCredentials::Omit,
            Some(_) => {
                return Err(config_error(
                    "credentials must be \"same-origin\", \"include\" or \"omit\"",
                ))
            }
        };
        let post = match options.method.as_deref() {
            None | Some("GET") => false,
            Some("POST") => true,
            Some(_) => return Err(config_error("method must be \"GET\" or \"POST\"")),
        };
        let headers = if options.headers.is_undefined() || options.headers.is_null() {
            HeaderSource::None
        } else if let Some(function) = options.headers.dyn_ref::<js_sys::Function>() {
            HeaderSource::Provider(function.clone())
        } else if options.headers.is_object() {
            HeaderSource::Static(options.headers.unchecked_into())
        } else {
            return Err(config_error(
                "headers must be an object or a function returning one",
            ));
        };
        let policy = RefreshPolicy::new(
            options.refresh_margin,
            options.request_timeout,
            options.max_lifetime,
        )
        .map_err(|e| to_js(&e))?;
        let shell = Rc::new(Shell {
            state: RefCell::new(State {
                machine: Machine::new(policy),
                timer: None,
                page: Vec::new(),
                waiters: Vec::new(),
                fresh: Vec::new(),
                subscribers: Vec::new(),
                next_id: 1,
                token_js: None,
                targets: Vec::new(),
                abort: None,
                tabs: None,
                shared: None,
                fetch_id: 0,
            }),
            config: BrokerConfig {
                url,
                post,
                credentials,
                headers,
                timeout_ms: policy.request_timeout_ms,
            },
        });
        let weak = Rc::downgrade(&shell);
        let page = watch_page(move |event| {
            if let Some(shell) = weak.upgrade() {
                shell.on_page(event);
            }
        });
        shell.state.borrow_mut().page = page;
        if options.share_across_tabs == Some(true) {
            // Where Web Locks or BroadcastChannel are missing, the client fetches alone.
            let tabs = Tabs::open(&shell.config.url, Rc::downgrade(&shell));
            shell.state.borrow_mut().tabs = tabs;
        }
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

    /// Fetches a new token now, even if the current one is still good (joins a request already
    /// in flight). Resolves with the new token; a failure leaves the current token in service.
    #[wasm_bindgen(js_name = refreshNow, unchecked_return_type = "Promise<string>")]
    pub fn refresh_now(&self) -> js_sys::Promise {
        self.shell.wait(true)
    }

    /// The current usable token, or `undefined`. Synchronous; never an expired token.
    #[wasm_bindgen(getter, unchecked_return_type = "string | undefined")]
    pub fn token(&self) -> JsValue {
        let now = clock::now();
        {
            let state = self.shell.state.borrow();
            if state.machine.token_at(now).is_some() {
                return state.token_js.clone().unwrap_or_default();
            }
            if state.token_js.is_none() {
                return JsValue::UNDEFINED;
            }
        }
        // Held but no longer usable (a timer was frozen): let the engine catch up.
        self.shell.input(|m, now| m.tick(now));
        JsValue::UNDEFINED
    }

    /// When the current token expires (epoch milliseconds), or `undefined`.
    #[wasm_bindgen(getter, js_name = expiresAt)]
    pub fn expires_at(&self) -> Option<f64> {
        self.shell.state.borrow().machine.expires_at()
    }

    /// When the next refresh (or retry) is planned (epoch milliseconds), or `undefined`.
    #[wasm_bindgen(getter, js_name = nextRefreshAt)]
    pub fn next_refresh_at(&self) -> Option<f64> {
        self.shell.state.borrow().machine.next_refresh_at()
    }

    /// The Azure region the broker named with the current token, or `undefined`.
    #[wasm_bindgen(getter)]
    pub fn region(&self) -> Option<String> {
        self.shell
            .state
            .borrow()
            .machine
            .grant()
            .and_then(|g| g.region.clone())
    }

    /// The custom-domain or private endpoint the broker named, or `undefined`.
    #[wasm_bindgen(getter)]
    pub fn endpoint(&self) -> Option<String> {
        self.shell
            .state
            .borrow()
            .machine
            .grant()
            .and_then(|g| g.endpoint.clone())
    }

    /// `"idle" | "fetching" | "valid" | "refreshing" | "expired" | "error" | "disposed"`.
    #[wasm_bindgen(getter, unchecked_return_type = "TokenClientStatus")]
    pub fn status(&self) -> String {
        self.shell
            .state
            .borrow()
            .machine
            .status()
            .as_str()
            .to_owned()
    }

    /// Broker requests this client has started (for dashboards and tests).
    #[wasm_bindgen(getter, js_name = requestCount)]
    pub fn request_count(&self) -> f64 {
        self.shell.state.borrow().machine.requests() as f64
    }

    /// Subscribes to an event; returns the function that unsubscribes. Event details never
    /// contain the token: read `client.token` in a `token` listener.
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, event: &str, listener: js_sys::Function) -> Result<js_sys::Function, JsValue> {
        let kind = EventKind::parse(event).ok_or_else(|| {
            config_error("unknown event: use token, refreshing, error, expired, status or detach")
        })?;
        let id = {
            let mut state = self.shell.state.borrow_mut();
            let id = state.next_id;
            state.next_id += 1;
            state.subscribers.push(Subscriber { id, kind, listener });
            id
        };
        let weak = Rc::downgrade(&self.shell);
        let off = Closure::<dyn FnMut()>::new(move || {
            if let Some(shell) = weak.upgrade() {
                shell.state.borrow_mut().subscribers.retain(|s| s.id != id);
            }
        });
        Ok(off.into_js_value().unchecked_into())
    }

    /// Stops everything: clears the timer and page listeners, cancels a request in flight,
    /// detaches targets, rejects pending calls with kind `disposed`, and wipes the token from
    /// wasm memory. Idempotent.
    pub fn dispose(&self) {
        let decision = self.shell.state.borrow_mut().machine.dispose();
        let was_live = !decision.effects.is_empty();
        self.shell.apply(decision);
        let mut state = self.shell.state.borrow_mut();
        if let Some(abort) = state.abort.take() {
            abort.abort();
        }
        tabs::dispose(&mut state);
        state.timer = None;
        state.page.clear();
        state.targets.clear();
        state.token_js = None;
        if was_live {
            state.subscribers.clear();
        }
    }
}
