//! Shared helpers of the browser tests (`tests/web_*.rs`): bindings to `fake_broker.js` (the
//! in-page fake broker, fake SDK objects, event log, storage dump) and small Rust helpers.
//! Each test file uses a subset, hence `dead_code` is allowed here.
#![allow(dead_code)]

use speech_token_client::TokenClient;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(module = "/tests/support/fake_broker.js")]
extern "C" {
    #[wasm_bindgen(js_name = installFakeBroker)]
    pub fn install_fake_broker();
    #[wasm_bindgen(js_name = uninstallFakeBroker)]
    pub fn uninstall_fake_broker();
    /// Queues one answer.
    pub fn answer(step: JsValue);
    /// The answer given whenever the queue is empty.
    #[wasm_bindgen(js_name = answerAlways)]
    pub fn answer_always(step: JsValue);
    /// `{token, expiresIn, region: "westeurope", ...extra}` as JSON.
    #[wasm_bindgen(js_name = tokenAnswer)]
    pub fn token_answer(token: &str, expires_in: f64, extra: JsValue) -> JsValue;
    #[wasm_bindgen(js_name = rawAnswer)]
    pub fn raw_answer(
        status: u16,
        content_type: Option<String>,
        body: &str,
        headers: JsValue,
    ) -> JsValue;
    /// "hang", "networkError", "redirect" or "opaqueRedirect".
    #[wasm_bindgen(js_name = specialAnswer)]
    pub fn special_answer(kind: &str) -> JsValue;
    pub fn requests() -> u32;
    /// Uncaught exceptions, reported errors and unhandled rejections since the install.
    #[wasm_bindgen(js_name = uncaughtErrors)]
    pub fn uncaught_errors() -> js_sys::Array;
    #[wasm_bindgen(js_name = lastRequest)]
    pub fn last_request() -> JsValue;
    #[wasm_bindgen(js_name = requestLog)]
    pub fn request_log() -> js_sys::Array;
    pub fn sleep(ms: f64) -> js_sys::Promise;
    /// Keeps the page busy for `ms` without yielding (no timer runs meanwhile).
    #[wasm_bindgen(js_name = busyWait)]
    pub fn busy_wait(ms: f64);
    #[wasm_bindgen(js_name = storageDump)]
    pub fn storage_dump() -> js_sys::Promise;
    #[wasm_bindgen(js_name = asyncHeaders)]
    pub fn async_headers(headers: JsValue) -> js_sys::Function;
    #[wasm_bindgen(js_name = hangingHeaders)]
    pub fn hanging_headers() -> js_sys::Function;
    #[wasm_bindgen(js_name = rejectingHeaders)]
    pub fn rejecting_headers() -> js_sys::Function;
    #[wasm_bindgen(js_name = throwingListener)]
    pub fn throwing_listener() -> js_sys::Function;
    #[wasm_bindgen(js_name = catchPageErrors)]
    pub fn catch_page_errors();
    #[wasm_bindgen(js_name = stopCatchingPageErrors)]
    pub fn stop_catching_page_errors() -> js_sys::Array;
    #[wasm_bindgen(js_name = errorTexts)]
    pub fn error_texts(error: &JsValue) -> String;
    #[wasm_bindgen(js_name = isError)]
    pub fn is_error(value: &JsValue) -> bool;
    #[wasm_bindgen(js_name = isUrl)]
    pub fn is_url(value: &JsValue) -> bool;
    #[wasm_bindgen(js_name = definedPropertyTarget)]
    pub fn defined_property_target() -> JsValue;
    #[wasm_bindgen(js_name = fakeSdk)]
    pub fn fake_sdk() -> JsValue;
}

#[wasm_bindgen(module = "/tests/support/fake_broker.js")]
extern "C" {
    /// Records `{name, detail}` of every event it listens to.
    pub type EventLog;
    #[wasm_bindgen(constructor)]
    pub fn new() -> EventLog;
    #[wasm_bindgen(method)]
    pub fn listener(this: &EventLog, name: &str) -> js_sys::Function;
    #[wasm_bindgen(method)]
    pub fn details(this: &EventLog, name: &str) -> js_sys::Array;
    #[wasm_bindgen(method)]
    pub fn statuses(this: &EventLog) -> js_sys::Array;
    #[wasm_bindgen(method)]
    pub fn json(this: &EventLog) -> String;
}

#[wasm_bindgen(module = "/tests/support/fake_broker.js")]
extern "C" {
    /// An object with an `authorizationToken` setter that records values; throws once closed.
    pub type FakeTarget;
    #[wasm_bindgen(constructor)]
    pub fn new() -> FakeTarget;
    #[wasm_bindgen(method)]
    pub fn close(this: &FakeTarget);
    #[wasm_bindgen(method, getter)]
    pub fn values(this: &FakeTarget) -> js_sys::Array;
}

/// Event names the client emits.
pub const EVENTS: [&str; 6] = [
    "token",
    "refreshing",
    "error",
    "expired",
    "status",
    "detach",
];

/// A plain JS object from key/value pairs. (Also installs the panic hook: the package itself
/// ships without it, and a test's panic message belongs in the browser console.)
pub fn object(pairs: &[(&str, JsValue)]) -> JsValue {
    console_error_panic_hook::set_once();
    let o = js_sys::Object::new();
    for (k, v) in pairs {
        js_sys::Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

/// Client options: `brokerUrl: "/api/speech-token"` plus `extra`.
pub fn options(extra: &[(&str, JsValue)]) -> JsValue {
    let o = object(extra);
    if get(&o, "brokerUrl").is_undefined() {
        js_sys::Reflect::set(&o, &"brokerUrl".into(), &"/api/speech-token".into()).unwrap();
    }
    o
}

pub fn get(v: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(v, &key.into()).unwrap()
}

pub fn get_str(v: &JsValue, key: &str) -> Option<String> {
    get(v, key).as_string()
}

pub fn strings(array: &js_sys::Array) -> Vec<String> {
    array
        .iter()
        .map(|v| v.as_string().unwrap_or_else(|| format!("{v:?}")))
        .collect()
}

/// Awaits a promise, keeping both outcomes.
pub async fn settle(promise: js_sys::Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

pub async fn wait_ms(ms: f64) {
    JsFuture::from(sleep(ms)).await.unwrap();
}

pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Polls `cond` every 50 ms until it holds; panics after `timeout_ms`.
pub async fn wait_until(what: &str, timeout_ms: f64, mut cond: impl FnMut() -> bool) {
    let start = now_ms();
    while !cond() {
        assert!(
            now_ms() - start < timeout_ms,
            "timed out after {timeout_ms} ms waiting for: {what}"
        );
        wait_ms(50.0).await;
    }
}

/// `client.token` as a Rust string.
pub fn token_of(client: &TokenClient) -> Option<String> {
    client.token().as_string()
}

/// Awaits `getToken()` and expects this token.
pub async fn expect_token(client: &TokenClient, token: &str) {
    let got = settle(client.get_token()).await;
    match got {
        Ok(v) => assert_eq!(v.as_string().as_deref(), Some(token), "getToken()"),
        Err(e) => panic!("getToken() rejected: {}", error_texts(&e)),
    }
}

/// Checks the shape of a rejection: an `Error` named "SpeechTokenError" with this `kind`, whose
/// message, `String()` and JSON contain none of `secrets`.
pub fn assert_speech_error(error: &JsValue, kind: &str, secrets: &[&str], context: &str) {
    assert!(is_error(error), "{context}: not an Error instance");
    assert_eq!(
        get_str(error, "name").as_deref(),
        Some("SpeechTokenError"),
        "{context}: name"
    );
    assert_eq!(
        get_str(error, "kind").as_deref(),
        Some(kind),
        "{context}: kind (error: {})",
        error_texts(error)
    );
    let texts = error_texts(error);
    for secret in secrets {
        assert!(
            !texts.contains(secret),
            "{context}: the error text holds a token ({secret})"
        );
    }
}

/// Expects a promise to reject with a SpeechTokenError of `kind`; returns the error.
pub async fn expect_rejection(
    promise: js_sys::Promise,
    kind: &str,
    secrets: &[&str],
    context: &str,
) -> JsValue {
    match settle(promise).await {
        Ok(v) => panic!("{context}: resolved ({v:?}) instead of rejecting with {kind}"),
        Err(e) => {
            assert_speech_error(&e, kind, secrets, context);
            e
        }
    }
}

/// Subscribes an [`EventLog`] to every event of `client`.
pub fn record_events(client: &TokenClient) -> EventLog {
    let log = EventLog::new();
    for name in EVENTS {
        client.on(name.into(), log.listener(name).into()).unwrap();
    }
    log
}

/// Every persistent browser store of this origin, as one string ("" when all are empty).
pub async fn storage_contents() -> String {
    settle(storage_dump()).await.unwrap().as_string().unwrap()
}

/// The end of every test: dispose the client; check that nothing crashed (no uncaught exception,
/// which is how a panic's trap would surface, and no unhandled rejection) and that nothing
/// reached any browser storage; restore `fetch`.
pub async fn finish(client: TokenClient) {
    client.dispose();
    wait_ms(0.0).await; // let unhandled-rejection events be dispatched
    let uncaught: Vec<String> = strings(&uncaught_errors())
        .into_iter()
        .filter(|e| !e.contains("(expected by the test)"))
        .collect();
    assert!(uncaught.is_empty(), "uncaught on the page: {uncaught:?}");
    uninstall_fake_broker();
    assert_eq!(
        storage_contents().await,
        "",
        "browser storage must stay empty"
    );
}

#[wasm_bindgen(module = "/tests/support/fake_broker.js")]
extern "C" {
    /// Every request without a scripted answer gets a new token `<prefix>-<n>`.
    #[wasm_bindgen(js_name = serialTokenAnswers)]
    pub fn serial_token_answers(prefix: &str, expires_in: f64);
    /// `promise`, or a rejection "timeout after N ms".
    #[wasm_bindgen(js_name = withTimeout)]
    pub fn with_timeout(promise: &js_sys::Promise, ms: f64) -> js_sys::Promise;
    /// `object[method](...args)` through the JS wrapper, as an app calls it.
    #[wasm_bindgen(js_name = callMethod, catch)]
    pub fn call_method(
        object: &JsValue,
        method: &JsValue,
        args: &js_sys::Array,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = symbolDispose)]
    pub fn symbol_dispose() -> JsValue;
    #[wasm_bindgen(js_name = runUsing)]
    pub fn run_using(make: &js_sys::Function, body: &js_sys::Function) -> js_sys::Promise;
    #[wasm_bindgen(js_name = canForceGc)]
    pub fn can_force_gc() -> bool;
    #[wasm_bindgen(js_name = gcProbe)]
    pub fn gc_probe() -> JsValue;
    #[wasm_bindgen(js_name = forceGc)]
    pub fn force_gc() -> js_sys::Promise;
    #[wasm_bindgen(js_name = secretJwt)]
    pub fn secret_jwt() -> JsValue;
    #[wasm_bindgen(js_name = memoryContains)]
    pub fn memory_contains(memory: &JsValue, needle: &JsValue) -> bool;
    #[wasm_bindgen(js_name = endlessBodyAnswer)]
    pub fn endless_body_answer() -> JsValue;
    #[wasm_bindgen(js_name = failingHeaders)]
    pub fn failing_headers(failures: js_sys::Array) -> js_sys::Function;
    #[wasm_bindgen(js_name = countingHeaders)]
    pub fn counting_headers() -> js_sys::Function;
}

/// `object.method(...args)` through the JS wrapper; panics if it throws.
pub fn call(object: &JsValue, method: &str, args: &[JsValue]) -> JsValue {
    let array: js_sys::Array = args.iter().collect();
    call_method(object, &JsValue::from_str(method), &array)
        .unwrap_or_else(|e| panic!("{method}() threw: {}", error_texts(&e)))
}

/// Calls of a header provider made by [`failing_headers`] or [`counting_headers`].
pub fn calls_of(function: &js_sys::Function) -> f64 {
    get(function, "calls").as_f64().unwrap_or(-1.0)
}

#[wasm_bindgen(module = "/tests/support/fake_broker.js")]
extern "C" {
    /// An unsigned JWT-shaped token with these `iat` and `exp` claims (epoch seconds).
    #[wasm_bindgen(js_name = jwtWith)]
    pub fn jwt_with(iat: f64, exp: f64) -> String;
}
