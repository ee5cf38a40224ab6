//! Browser tests of the Speech SDK contract as SDK 1.52 really behaves (its source, read in
//! node_modules): closed objects whose setter does not throw, self-disposal, the credential's
//! `abortSignal`, and which of region/endpoint wins in `speechConfig()`. The real SDK objects are
//! exercised end to end in tests/e2e/sdk-objects.test.mjs.
#![cfg(target_arch = "wasm32")]

mod support;

use speech_token_client::TokenClient;
use support::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(inline_js = r#"
// Like SpeechRecognizer 1.52: the setter never checks disposal; close(cb, err) throws when
// already closed, else sets a private flag and calls this.dispose(true) (async).
export class SdkLikeRecognizer {
  constructor() { this.values = []; this.privDisposedRecognizer = false; this.disposeCalls = 0; }
  set authorizationToken(v) { this.values.push(v); }
  get authorizationToken() { return this.values[this.values.length - 1]; }
  close(cb, err) {
    if (this.privDisposedRecognizer) throw new Error("the object is already disposed");
    this.privDisposedRecognizer = true;
    this.dispose(true).then(() => cb && cb(), (e) => err && err(String(e)));
  }
  async dispose(disposing) { this.disposeCalls += 1; this.lastDisposing = disposing; }
}
// Like SpeechSynthesizer 1.52 after a failed speak*Async: it disposes itself, no close().
export class SdkLikeSynthesizer {
  constructor() { this.values = []; }
  set authorizationToken(v) { this.values.push(v); }
  get authorizationToken() { return this.values[this.values.length - 1]; }
  close(cb) { return this.dispose(true).then(() => cb && cb()); }
  async dispose(disposing) { this.disposed = disposing; return "disposed"; }
  failSpeak() { return this.dispose(true); }
}
export function closeWith(target) {
  return new Promise((resolve) => target.close(() => resolve("closed"), (e) => resolve("error " + e)));
}
export function ownKeys(target) { return Object.getOwnPropertyNames(target).join(","); }
export function newAbort() { return new AbortController(); }
"#)]
extern "C" {
    type SdkLikeRecognizer;
    #[wasm_bindgen(constructor)]
    fn new() -> SdkLikeRecognizer;
    type SdkLikeSynthesizer;
    #[wasm_bindgen(constructor)]
    fn new() -> SdkLikeSynthesizer;
    #[wasm_bindgen(method, js_name = failSpeak)]
    fn fail_speak(this: &SdkLikeSynthesizer) -> js_sys::Promise;
    #[wasm_bindgen(js_name = closeWith)]
    fn close_with(target: &JsValue) -> js_sys::Promise;
    #[wasm_bindgen(js_name = ownKeys)]
    fn own_keys(target: &JsValue) -> String;
    #[wasm_bindgen(js_name = newAbort)]
    fn new_abort() -> web_sys::AbortController;
}

fn values(target: &JsValue) -> Vec<String> {
    strings(get(target, "values").unchecked_ref())
}

/// A closed recognizer (its setter does not throw) is detached at `close()`, with one `detach`
/// event; `close()` keeps its callbacks, result and second-call throw.
#[wasm_bindgen_test]
async fn a_closed_sdk_object_is_detached_even_though_its_setter_does_not_throw() {
    install_fake_broker();
    serial_token_answers("sdk", 4.0);
    let client = TokenClient::new(options(&[])).unwrap();
    let events = record_events(&client);
    let recognizer: JsValue = SdkLikeRecognizer::new().into();
    client.attach(recognizer.clone()).unwrap();
    wait_until("the first token", 2000.0, || values(&recognizer).len() == 1).await;
    assert_eq!(client.attached_count(), 1);
    let outcome = settle(close_with(&recognizer)).await.unwrap();
    assert_eq!(
        outcome.as_string().as_deref(),
        Some("closed"),
        "close's callback ran"
    );
    assert_eq!(get(&recognizer, "disposeCalls").as_f64(), Some(1.0));
    assert_eq!(get(&recognizer, "lastDisposing").as_bool(), Some(true));
    assert_eq!(client.attached_count(), 0, "the closed object is detached");
    let detach = events.details("detach");
    assert_eq!(detach.length(), 1, "one detach event");
    assert_eq!(get_str(&detach.get(0), "reason").as_deref(), Some("closed"));
    assert!(get(&detach.get(0), "target") == recognizer);
    assert!(
        !own_keys(&recognizer).contains("close"),
        "the hooks are gone"
    );
    // A second close() still throws, as the SDK's does.
    assert!(call_method(&recognizer, &"close".into(), &js_sys::Array::new()).is_err());
    // And it gets no more tokens.
    wait_ms(3000.0).await;
    assert_eq!(values(&recognizer).len(), 1, "no token for a closed object");
    finish(client).await;
}

/// A synthesizer that disposes itself (the SDK does after a failed speak*Async) is detached.
#[wasm_bindgen_test]
async fn an_object_that_disposes_itself_is_detached() {
    install_fake_broker();
    serial_token_answers("self", 600.0);
    let client = TokenClient::new(options(&[])).unwrap();
    let synthesizer = SdkLikeSynthesizer::new();
    client.attach((*synthesizer).clone()).unwrap();
    expect_token(&client, "self-1").await;
    let result = settle(synthesizer.fail_speak()).await.unwrap();
    assert_eq!(
        result.as_string().as_deref(),
        Some("disposed"),
        "dispose's result is kept"
    );
    assert_eq!(client.attached_count(), 0);
    finish(client).await;
}

/// `detach()` and `dispose()` remove the hooks: the object is as it was.
#[wasm_bindgen_test]
async fn detach_and_dispose_restore_the_objects_methods() {
    install_fake_broker();
    serial_token_answers("hooks", 600.0);
    let client = TokenClient::new(options(&[])).unwrap();
    let a: JsValue = SdkLikeRecognizer::new().into();
    let b: JsValue = SdkLikeRecognizer::new().into();
    let before = own_keys(&a);
    client.attach(a.clone()).unwrap();
    client.attach(b.clone()).unwrap();
    assert!(own_keys(&a).contains("close"), "hooked while attached");
    client.detach(a.clone());
    assert_eq!(own_keys(&a), before, "detach() unhooks");
    client.dispose();
    assert_eq!(own_keys(&b), before, "dispose() unhooks");
    finish(client).await;
}

/// `tokenCredential().getToken(scopes, { abortSignal })`: an aborted or already-aborted signal
/// rejects that call at once with an AbortError; the shared request goes on for other callers.
#[wasm_bindgen_test]
async fn the_credential_honours_abort_signals_without_cancelling_the_shared_request() {
    install_fake_broker();
    answer(object(&[
        ("delay", JsValue::from(1500)),
        ("status", JsValue::from(200)),
        (
            "headers",
            object(&[("content-type", "application/json".into())]),
        ),
        (
            "body",
            r#"{"token":"shared-tok","expiresIn":600,"region":"westeurope"}"#.into(),
        ),
    ]));
    let client = TokenClient::new(options(&[])).unwrap();
    let credential = client.token_credential().unwrap();
    let scope = JsValue::from_str("https://cognitiveservices.azure.com/.default");
    let other = client.get_token();
    let controller = new_abort();
    let opts = object(&[("abortSignal", controller.signal().into())]);
    let pending: js_sys::Promise = call(&credential, "getToken", &[scope.clone(), opts.clone()])
        .dyn_into()
        .unwrap();
    wait_ms(100.0).await;
    let started = now_ms();
    controller.abort();
    let outcome = settle(with_timeout(&pending, 1000.0)).await;
    let error = outcome.expect_err("an aborted getToken rejects");
    assert_eq!(get_str(&error, "name").as_deref(), Some("AbortError"));
    assert!(
        now_ms() - started < 500.0,
        "rejected at once, not after the broker's delay"
    );
    // Already aborted: rejected without waiting.
    let already: js_sys::Promise = call(&credential, "getToken", &[scope.clone(), opts])
        .dyn_into()
        .unwrap();
    let error = settle(with_timeout(&already, 200.0))
        .await
        .expect_err("rejected");
    assert_eq!(get_str(&error, "name").as_deref(), Some("AbortError"));
    // The shared request was not cancelled: the other caller gets the token.
    let token = settle(with_timeout(&other, 3000.0)).await.unwrap();
    assert_eq!(token.as_string().as_deref(), Some("shared-tok"));
    assert_eq!(requests(), 1);
    assert_eq!(get(&last_request(), "aborted").as_bool(), Some(false));
    finish(client).await;
}

/// `speechConfig(sdk, { region })` when the broker also sent an endpoint: the explicit argument
/// wins; with no argument the broker's endpoint wins over its region.
#[wasm_bindgen_test]
async fn an_explicit_region_wins_over_the_brokers_endpoint() {
    install_fake_broker();
    answer_always(token_answer(
        "tok-route",
        600.0,
        object(&[("endpoint", "wss://my-speech.example/stt".into())]),
    ));
    let client = TokenClient::new(options(&[])).unwrap();
    let sdk = fake_sdk();
    let _ = settle(client.speech_config(sdk.clone(), Some(object(&[("region", "eastus".into())]))))
        .await
        .unwrap();
    let _ = settle(client.speech_config(sdk.clone(), None))
        .await
        .unwrap();
    let calls = get(&sdk, "calls");
    let first = js_sys::Reflect::get(&calls, &0.into()).unwrap();
    assert_eq!(
        get_str(&first, "method").as_deref(),
        Some("fromAuthorizationToken")
    );
    let args = get(&first, "args");
    assert_eq!(
        js_sys::Reflect::get(&args, &1.into())
            .unwrap()
            .as_string()
            .as_deref(),
        Some("eastus")
    );
    let second = js_sys::Reflect::get(&calls, &1.into()).unwrap();
    assert_eq!(get_str(&second, "method").as_deref(), Some("fromEndpoint"));
    finish(client).await;
}
