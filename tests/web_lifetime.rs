//! Browser tests of the client's lifetime as real apps drive it (issue: "Client lifecycle that
//! survives real apps"): garbage collection, `free()` / `Symbol.dispose` / `using`, a failing
//! session provider, a listener loop after a final error, re-entrant callbacks, token bytes
//! left in wasm memory, and the provider after `dispose()`.
//!
//! These tests call the client through its JS wrapper (`JsValue::from(TokenClient)`), exactly as
//! an app does, because that is where the generated glue (finalizer, `free`, `Symbol.dispose`)
//! lives.
#![cfg(target_arch = "wasm32")]

mod support;

use speech_token_client::TokenClient;
use support::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(inline_js = r#"
// What a re-entrant call threw synchronously (a Rust panic surfaces as a thrown RuntimeError).
export const reentryErrors = [];
function guard(f) { try { f(); } catch (e) { reentryErrors.push(String(e)); } }
export function takeReentryErrors() { return reentryErrors.splice(0); }
export function disposeOnEvent(client, event) {
  client.on(event, () => client.dispose());
}
export function refreshOnceOnToken(client) {
  let done = false;
  client.on("token", () => {
    if (done) return;
    done = true;
    client.refreshNow().catch(() => {});
  });
}
export function reentrantSpeechOptions(client) {
  return {
    get region() { guard(() => client.refreshNow().catch(() => {})); return "westeurope"; },
    get endpoint() { guard(() => { void client.token; void client.status; }); return undefined; },
  };
}
export function reentrantTarget(client) {
  const target = {
    values: [],
    set authorizationToken(value) {
      this.values.push(value);
      guard(() => {
        void client.token;
        client.getToken().catch(() => {});
        client.refreshNow().catch(() => {});
        client.detach(this);
      });
    },
    get authorizationToken() { return this.values[this.values.length - 1]; },
  };
  return target;
}
export function reentrantHeaders(holder) {
  return () => {
    const client = holder.client;
    guard(() => {
      void client.token;
      void client.status;
      client.getToken().catch(() => {});
      client.refreshNow().catch(() => {});
    });
    return { authorization: "Bearer session" };
  };
}
/**
 * Accessors on Object.prototype named like event-detail and peer-message fields: a setter that
 * calls back into the client for `region`, `token` and `status`, and getter-only ones (a plain
 * assignment to them throws in strict code) for `expiresAt` and `usableFor`. Returns the
 * function that removes them.
 */
// A Map: a plain object's `region` would itself go through the accessor.
const setterCalls = new Map();
export function setterCount(name) { return setterCalls.get(name) ?? 0; }
export function prototypeAccessors(client) {
  const names = ["region", "token", "status", "expiresAt", "usableFor"];
  for (const name of names) {
    const reentrant = name === "region" || name === "token" || name === "status";
    Object.defineProperty(Object.prototype, name, {
      configurable: true,
      get() { return undefined; },
      set: reentrant
        ? function (v) {
            setterCalls.set(name, (setterCalls.get(name) ?? 0) + 1);
            // Reads, and for a cross-tab message's `token` calls that change the client's
            // state (subscribe, unsubscribe: they panicked inside the shared borrow the message
            // was made under).
            guard(() => {
              void client.status;
              void client.token;
              if (name === "token") client.on("expired", () => {})();
            });
            Object.defineProperty(this, name, { value: v, writable: true, enumerable: true, configurable: true });
          }
        : undefined,
    });
  }
  return () => { for (const name of names) delete Object.prototype[name]; };
}
export function getTokenOnError(client) {
  client.on("error", () => { client.getToken().catch(() => {}); });
}
export function valuesOf(target) { return target.values; }
"#)]
extern "C" {
    #[wasm_bindgen(js_name = disposeOnEvent)]
    fn dispose_on_event(client: &JsValue, event: &str);
    #[wasm_bindgen(js_name = refreshOnceOnToken)]
    fn refresh_once_on_token(client: &JsValue);
    #[wasm_bindgen(js_name = reentrantSpeechOptions)]
    fn reentrant_speech_options(client: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = reentrantTarget)]
    fn reentrant_target(client: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = reentrantHeaders)]
    fn reentrant_headers(holder: &JsValue) -> js_sys::Function;
    #[wasm_bindgen(js_name = prototypeAccessors)]
    fn prototype_accessors(client: &JsValue) -> js_sys::Function;
    #[wasm_bindgen(js_name = setterCount)]
    fn setter_count(name: &str) -> f64;
    #[wasm_bindgen(js_name = getTokenOnError)]
    fn get_token_on_error(client: &JsValue);
    #[wasm_bindgen(js_name = takeReentryErrors)]
    fn take_reentry_errors() -> js_sys::Array;
    #[wasm_bindgen(js_name = valuesOf)]
    fn values_of(target: &JsValue) -> js_sys::Array;
}

/// A new client as a JS object (the wrapper an app holds).
fn js_client(extra: &[(&str, JsValue)]) -> JsValue {
    JsValue::from(TokenClient::new(options(extra)).expect("valid options"))
}

fn promise(value: JsValue) -> js_sys::Promise {
    value.dyn_into().expect("a promise")
}

/// Awaits `promise`, failing the test (instead of hanging) if it takes over `ms`.
async fn within(promise: js_sys::Promise, ms: f64) -> Result<JsValue, JsValue> {
    settle(with_timeout(&promise, ms)).await
}

fn status(client: &JsValue) -> String {
    get_str(client, "status").unwrap_or_default()
}

/// The end of a test that holds the client as a JS object.
async fn finish_js(client: &JsValue) {
    let reentry = strings(&take_reentry_errors());
    assert!(
        reentry.is_empty(),
        "a call back into the client threw: {reentry:?}"
    );
    let _ = call(client, "dispose", &[]);
    wait_ms(0.0).await;
    let uncaught: Vec<String> = strings(&uncaught_errors())
        .into_iter()
        .filter(|e| !e.contains("(expected by the test)"))
        .collect();
    assert!(uncaught.is_empty(), "uncaught on the page: {uncaught:?}");
    uninstall_fake_broker();
}

// ---- 1. Garbage collection -------------------------------------------------------------------

/// The app keeps the target and the credential, not the client (`async function setup()`): the
/// client must keep both supplied until `dispose()`.
#[wasm_bindgen_test]
async fn a_client_the_app_let_go_of_keeps_serving_its_target_and_credential() {
    install_fake_broker();
    serial_token_answers("gc", 4.0);
    let target = FakeTarget::new();
    let credential = {
        let client = js_client(&[]);
        call(&client, "attach", std::slice::from_ref(&target));
        let credential = call(&client, "tokenCredential", &[]);
        wait_until("the first token reaches the target", 3000.0, || {
            target.values().length() == 1
        })
        .await;
        credential
        // `client` (the only reference to the wrapper) is dropped here.
    };
    let probe = gc_probe();
    settle(force_gc()).await.unwrap();
    let navigator = get(&js_sys::global(), "navigator");
    if get_str(&navigator, "userAgent")
        .unwrap_or_default()
        .contains("Chrome/")
    {
        assert!(
            can_force_gc(),
            "Chromium runs with --js-flags=--expose-gc (webdriver.json)"
        );
    }
    if can_force_gc() {
        // Negative control: the collector really ran (an unreachable object was reclaimed).
        assert_eq!(
            get(&probe, "collected").as_bool(),
            Some(true),
            "forced GC did not collect an unreachable object: this test would prove nothing"
        );
    }
    // Two more lifetimes of 4 s tokens (refresh at half-life).
    wait_ms(5000.0).await;
    let values = strings(&target.values());
    assert!(
        values.len() >= 3,
        "the attached target stopped receiving tokens after the client was collected: {values:?}"
    );
    let access = within(
        promise(call(
            &credential,
            "getToken",
            &[JsValue::from_str(
                "https://cognitiveservices.azure.com/.default",
            )],
        )),
        3000.0,
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the credential failed after the client was collected: {}",
            error_texts(&e)
        )
    });
    assert_eq!(
        get_str(&access, "token").as_deref(),
        values.last().map(String::as_str),
        "the credential hands out the current token"
    );
    let uncaught = strings(&uncaught_errors());
    assert!(uncaught.is_empty(), "uncaught errors: {uncaught:?}");
    uninstall_fake_broker();
    // The client is unreachable now; its serial answers stop with the fake (it then fails with
    // `network` and retries harmlessly until the page ends).
}

// ---- 2. free(), [Symbol.dispose](), using ----------------------------------------------------

async fn ends_like_dispose(how: &str) {
    install_fake_broker();
    answer_always(special_answer("hang"));
    let client = js_client(&[]);
    let pending = promise(call(&client, "getToken", &[]));
    let pending_refresh = promise(call(&client, "refreshNow", &[]));
    wait_ms(20.0).await;
    assert_eq!(requests(), 1, "{how}: the request is in flight");
    let end = |client: &JsValue| match how {
        "free" => {
            call(client, "free", &[]);
        }
        "Symbol.dispose" => {
            let symbol = symbol_dispose();
            if symbol.is_symbol() {
                call_method(client, &symbol, &js_sys::Array::new())
                    .unwrap_or_else(|e| panic!("[Symbol.dispose]() threw: {}", error_texts(&e)));
            } else {
                // The documented degradation (docs/BROWSERS.md): WebKitGTK 2.50 has no
                // `Symbol.dispose` (nor `using`); there `dispose()` is the way, and the checks
                // below run against it. Chromium and Firefox must have the symbol.
                let navigator = get(&js_sys::global(), "navigator");
                let agent = get_str(&navigator, "userAgent").unwrap_or_default();
                assert!(
                    !agent.contains("Chrome/") && !agent.contains("Firefox/"),
                    "Chromium and Firefox have Symbol.dispose: {agent}"
                );
                call(client, "dispose", &[]);
            }
        }
        _ => unreachable!(),
    };
    end(&client);
    for (p, what) in [(pending, "getToken()"), (pending_refresh, "refreshNow()")] {
        match within(p, 2000.0).await {
            Ok(v) => panic!("{how}: pending {what} resolved ({v:?})"),
            Err(e) => assert_speech_error(&e, "disposed", &[], &format!("{how}: pending {what}")),
        }
    }
    assert_eq!(
        get(&last_request(), "aborted").as_bool(),
        Some(true),
        "{how}: the request in flight is aborted"
    );
    end(&client); // idempotent
    assert_eq!(status(&client), "disposed", "{how}: status");
    let later = call_method(&client, &"getToken".into(), &js_sys::Array::new());
    match later {
        Ok(p) => {
            expect_rejection(
                promise(p),
                "disposed",
                &[],
                &format!("{how}: getToken() after"),
            )
            .await;
        }
        Err(e) => assert_speech_error(&e, "disposed", &[], &format!("{how}: getToken() after")),
    }
    match call_method(
        &client,
        &"attach".into(),
        &js_sys::Array::of1(&FakeTarget::new()),
    ) {
        Ok(_) => {}
        Err(e) => assert_speech_error(&e, "disposed", &[], &format!("{how}: attach() after")),
    }
    assert_eq!(requests(), 1, "{how}: nothing fetched after the end");
    finish_js(&client).await;
}

#[wasm_bindgen_test]
async fn free_is_dispose() {
    ends_like_dispose("free").await;
}

#[wasm_bindgen_test]
async fn symbol_dispose_is_dispose() {
    ends_like_dispose("Symbol.dispose").await;
}

/// `using client = new TokenClient(..)` (where the engine parses `using`): leaving the block
/// disposes the client and rejects what was pending.
#[wasm_bindgen_test]
async fn using_disposes_at_the_end_of_the_block() {
    install_fake_broker();
    answer_always(special_answer("hang"));
    let kept = js_sys::Array::new();
    let make = {
        let kept = kept.clone();
        Closure::<dyn FnMut() -> JsValue>::new(move || {
            let client = js_client(&[]);
            kept.push(&client);
            client
        })
    };
    let body = {
        let kept = kept.clone();
        Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |client: JsValue| {
            kept.push(&call(&client, "getToken", &[]));
            JsValue::from_str("ran")
        })
    };
    let outcome = settle(run_using(
        make.as_ref().unchecked_ref(),
        body.as_ref().unchecked_ref(),
    ))
    .await
    .unwrap();
    if outcome.as_string().as_deref() == Some("unsupported") {
        // This engine has no `using` syntax: what `using` calls is covered by
        // `symbol_dispose_is_dispose`. Chromium must support it.
        let navigator = get(&js_sys::global(), "navigator");
        let agent = get_str(&navigator, "userAgent").unwrap_or_default();
        assert!(!agent.contains("Chrome/"), "Chromium must parse `using`");
        uninstall_fake_broker();
        return;
    }
    let client = kept.get(0);
    assert_eq!(
        status(&client),
        "disposed",
        "leaving the block disposed the client"
    );
    match within(kept.get(1).unchecked_into(), 2000.0).await {
        Ok(v) => panic!("pending getToken() resolved after `using` ended ({v:?})"),
        Err(e) => assert_speech_error(&e, "disposed", &[], "pending getToken()"),
    }
    finish_js(&client).await;
}

// ---- 3. A failing session provider ------------------------------------------------------------

/// `headers` that throws, rejects, or returns a non-object (MSAL's `acquireTokenSilent` failing
/// right after a laptop wakes): kind `headers`, retried with backoff like a network failure.
#[wasm_bindgen_test]
async fn a_failing_headers_provider_is_retried_until_it_works() {
    install_fake_broker();
    serial_token_answers("hdr", 600.0);
    let provider = failing_headers(
        ["throw", "reject", "non-object"]
            .iter()
            .map(|s| JsValue::from_str(s))
            .collect(),
    );
    let client = js_client(&[("headers", provider.clone().into())]);
    let log = EventLog::new();
    for name in EVENTS {
        call(&client, "on", &[name.into(), log.listener(name).into()]);
    }
    let first = within(promise(call(&client, "getToken", &[])), 3000.0).await;
    assert_speech_error(
        &first.expect_err("the first provider failure rejects the waiting caller"),
        "headers",
        &[],
        "getToken() while the provider fails",
    );
    // No refreshNow(): the client retries by itself (backoff 1 s, 2 s, ... with full jitter).
    wait_until(
        "the provider recovered and a token arrived",
        12_000.0,
        || status(&client) == "valid",
    )
    .await;
    assert_eq!(calls_of(&provider), 4.0, "three failures, then one success");
    assert_eq!(requests(), 1, "only the working attempt reached the broker");
    let kinds: Vec<String> = log
        .details("error")
        .iter()
        .map(|d| get_str(&get(&d, "error"), "kind").unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        ["headers", "headers", "headers"],
        "one error event per failure"
    );
    finish_js(&client).await;
}

/// A provider failure while a token is held keeps that token in service and is retried.
#[wasm_bindgen_test]
async fn a_provider_failure_at_refresh_keeps_the_token_and_retries() {
    install_fake_broker();
    serial_token_answers("keep", 4.0);
    // First call works, the next (the refresh at half-life) throws, then it works again.
    let failures: js_sys::Array = ["ok", "throw"]
        .iter()
        .map(|s| JsValue::from_str(s))
        .collect();
    let provider = failing_headers(failures);
    let client = js_client(&[("headers", provider.clone().into())]);
    // What the client serves at the moment the failure is reported (the retry's full-jitter
    // delay may be a few ms, so a poll afterwards could already see the next token).
    let seen = js_sys::Array::new();
    let record = {
        let (client, seen) = (client.clone(), seen.clone());
        Closure::<dyn FnMut()>::new(move || {
            seen.push(&get(&client, "token"));
        })
        .into_js_value()
    };
    call(&client, "on", &["error".into(), record]);
    let first = within(promise(call(&client, "getToken", &[])), 3000.0)
        .await
        .unwrap();
    assert_eq!(first.as_string().as_deref(), Some("keep-1"));
    wait_until("the refresh failed once", 4000.0, || seen.length() >= 1).await;
    assert_eq!(
        seen.get(0).as_string().as_deref(),
        Some("keep-1"),
        "the still-valid token stays in service while the provider fails"
    );
    wait_until("the retry brought a new token", 4000.0, || {
        get_str(&client, "token").as_deref() == Some("keep-2")
    })
    .await;
    finish_js(&client).await;
}

/// A bad `headers` option is still a `config` error, at construction.
#[wasm_bindgen_test]
fn a_bad_headers_option_is_a_config_error_at_construction() {
    for bad in [
        JsValue::from(42),
        JsValue::from_str("Bearer x"),
        JsValue::TRUE,
    ] {
        let error = TokenClient::new(options(&[("headers", bad)]))
            .err()
            .expect("rejected");
        assert_speech_error(&error, "config", &[], "headers: not an object or function");
    }
    let non_string = object(&[("authorization", JsValue::from(1))]);
    let error = TokenClient::new(options(&[("headers", non_string)]))
        .err()
        .expect("a header value that is not a string is rejected at construction");
    assert_speech_error(
        &error,
        "config",
        &[],
        "headers: a value that is not a string",
    );
}

// ---- 4. After a final error -------------------------------------------------------------------

/// A 401 broker and an `error` listener that calls `getToken()`: the loop must not hammer the
/// broker (it made 226 requests in 1 s). `refreshNow()` always tries, single-flighted.
#[wasm_bindgen_test]
async fn after_a_final_error_get_token_waits_for_a_backoff_and_refresh_now_always_tries() {
    install_fake_broker();
    answer_always(raw_answer(
        401,
        Some("text/plain".into()),
        "no session",
        JsValue::UNDEFINED,
    ));
    let client = js_client(&[]);
    get_token_on_error(&client);
    let first = within(promise(call(&client, "getToken", &[])), 2000.0).await;
    assert_speech_error(&first.unwrap_err(), "unauthorized", &[], "first getToken()");
    wait_ms(2000.0).await;
    let loop_requests = requests();
    assert!(
        loop_requests <= 5,
        "an error listener calling getToken() made {loop_requests} broker requests in 2 s"
    );
    // Within the backoff, getToken() rejects with the final error at once, without a request.
    let before = requests();
    let again = within(promise(call(&client, "getToken", &[])), 1000.0).await;
    let error = again.expect_err("getToken() after a final error rejects");
    assert_speech_error(
        &error,
        "unauthorized",
        &[],
        "getToken() after a final error",
    );
    // refreshNow(): the explicit "signed in again" call always tries, and concurrent calls share one request.
    let before_refresh = requests();
    let a = promise(call(&client, "refreshNow", &[]));
    let b = promise(call(&client, "refreshNow", &[]));
    let (a, b) = (within(a, 2000.0).await, within(b, 2000.0).await);
    assert_speech_error(&a.unwrap_err(), "unauthorized", &[], "refreshNow() a");
    assert_speech_error(&b.unwrap_err(), "unauthorized", &[], "refreshNow() b");
    assert!(requests() >= before, "counts never go down");
    assert!(
        requests() - before_refresh >= 1 && requests() - before_refresh <= 2,
        "refreshNow() tried (single flight; the error listener may add one after the backoff): {} requests",
        requests() - before_refresh
    );
    // The broker works again: refreshNow() recovers at once.
    answer_always(token_answer("signed-in", 600.0, JsValue::UNDEFINED));
    let fresh = within(promise(call(&client, "refreshNow", &[])), 2000.0)
        .await
        .unwrap();
    assert_eq!(fresh.as_string().as_deref(), Some("signed-in"));
    finish_js(&client).await;
}

/// A `refreshNow()` made while the app's `headers` function runs (an auth library's "signed in"
/// event firing during its silent token call) is answered by the request those headers go
/// with: no second request, and so never a chain of them (one per round trip, past any backoff).
/// And `dispose()` rejects a caller kept for the next request.
#[wasm_bindgen_test]
async fn refresh_now_from_inside_the_headers_function_joins_that_request() {
    install_fake_broker();
    let slow = |name: &str| {
        let step = token_answer(name, 600.0, JsValue::UNDEFINED);
        js_sys::Reflect::set(&step, &"delay".into(), &300.0.into()).unwrap();
        step
    };
    answer(slow("tok-1"));
    answer_always(slow("tok-later"));
    let hold = object(&[("pending", js_sys::Array::new().into())]);
    let headers = js_sys::Function::new_with_args(
        "hold",
        "return () => { if (hold.client) hold.pending.push(hold.client.refreshNow()); \
         return { authorization: 'Bearer session' }; };",
    )
    .call1(&JsValue::UNDEFINED, &hold)
    .unwrap();
    let client = js_client(&[("headers", headers)]);
    js_sys::Reflect::set(&hold, &"client".into(), &client).unwrap();
    let first = within(promise(call(&client, "getToken", &[])), 3000.0)
        .await
        .unwrap();
    assert_eq!(first.as_string().as_deref(), Some("tok-1"));
    let pending: js_sys::Array = get(&hold, "pending").unchecked_into();
    assert_eq!(pending.length(), 1, "the headers function ran once");
    let joined = within(pending.get(0).unchecked_into(), 3000.0)
        .await
        .unwrap();
    assert_eq!(joined.as_string().as_deref(), Some("tok-1"));
    wait_ms(700.0).await;
    assert_eq!(
        requests(),
        1,
        "no request after the one the headers went with"
    );
    js_sys::Reflect::delete_property(hold.unchecked_ref::<js_sys::Object>(), &"client".into())
        .unwrap();

    // Behind a request that is out, a caller waits for the next one; dispose() rejects it.
    let refresh = promise(call(&client, "refreshNow", &[]));
    wait_until("the refresh is sent", 2000.0, || requests() == 2).await;
    wait_ms(50.0).await;
    let kept = promise(call(&client, "refreshNow", &[]));
    let _ = call(&client, "dispose", &[]);
    for (pending, what) in [
        (refresh, "the refresh in flight"),
        (kept, "the kept refreshNow()"),
    ] {
        let outcome = within(pending, 2000.0).await;
        assert_speech_error(&outcome.unwrap_err(), "disposed", &[], what);
    }
    finish_js(&client).await;
}

// ---- 5. Re-entrancy ---------------------------------------------------------------------------

/// A getter on `speechConfig()`'s options that calls back into the client (it panicked with
/// "RefCell already borrowed").
#[wasm_bindgen_test]
async fn an_options_getter_may_call_the_client() {
    install_fake_broker();
    serial_token_answers("opt", 600.0);
    let client = js_client(&[]);
    let sdk = fake_sdk();
    let config = within(
        promise(call(
            &client,
            "speechConfig",
            &[sdk, reentrant_speech_options(&client)],
        )),
        3000.0,
    )
    .await
    .unwrap_or_else(|e| panic!("speechConfig() failed: {}", error_texts(&e)));
    assert!(config.is_object());
    wait_ms(100.0).await;
    finish_js(&client).await;
}

/// `dispose()` inside a `token` listener: the `getToken()` that was waiting rejects.
#[wasm_bindgen_test]
async fn dispose_inside_a_listener_rejects_what_was_pending() {
    install_fake_broker();
    serial_token_answers("reent", 600.0);
    let client = js_client(&[]);
    dispose_on_event(&client, "token");
    let pending = promise(call(&client, "getToken", &[]));
    match within(pending, 2000.0).await {
        Ok(v) => panic!("getToken() resolved after the client was disposed ({v:?})"),
        Err(e) => assert_speech_error(&e, "disposed", &[], "getToken() pending at dispose"),
    }
    assert_eq!(status(&client), "disposed");
    finish_js(&client).await;
}

/// `dispose()` right after the credential's `getToken()` was answered inside the module, before
/// its answer was made (a microtask later): it rejects with `disposed`, never a token of a
/// disposed client (an outside review: it resolved with `expiresOnTimestamp: 0`).
#[wasm_bindgen_test]
async fn the_credential_never_answers_for_a_client_disposed_meanwhile() {
    install_fake_broker();
    serial_token_answers("cred", 600.0);
    let client = js_client(&[]);
    within(promise(call(&client, "getToken", &[])), 2000.0)
        .await
        .unwrap();
    let ask = js_sys::Function::new_with_args(
        "client",
        "const p = client.tokenCredential().getToken('https://cognitiveservices.azure.com/.default'); \
         queueMicrotask(() => client.dispose()); return p;",
    );
    let pending = promise(ask.call1(&JsValue::UNDEFINED, &client).unwrap());
    match within(pending, 2000.0).await {
        Ok(v) => panic!("the credential answered for a disposed client ({v:?})"),
        Err(e) => assert_speech_error(&e, "disposed", &["cred-1"], "credential getToken()"),
    }
    finish_js(&client).await;
}

/// `dispose()` inside an `error` listener: the calls that were waiting for the failed request
/// reject with `disposed`, as after any `dispose()` (they rejected with the request's own
/// failure: the rejection was queued behind the event and not checked when made).
#[wasm_bindgen_test]
async fn dispose_inside_an_error_listener_rejects_what_was_pending_as_disposed() {
    for (code, failure) in [(401, "unauthorized"), (500, "http")] {
        // A fresh fake broker that always fails with `code` (`finish_js` uninstalls it).
        let failing_broker = || {
            install_fake_broker();
            answer_always(raw_answer(
                code,
                Some("application/json".into()),
                "{}",
                JsValue::UNDEFINED,
            ));
        };
        failing_broker();
        // Negative control: without the listener, the same call rejects with the failure.
        let plain = js_client(&[]);
        let outcome = within(promise(call(&plain, "getToken", &[])), 2000.0).await;
        assert_speech_error(
            &outcome.unwrap_err(),
            failure,
            &[],
            "getToken() without dispose",
        );
        finish_js(&plain).await;

        failing_broker();
        let client = js_client(&[]);
        dispose_on_event(&client, "error");
        let token = promise(call(&client, "getToken", &[]));
        let refresh = promise(call(&client, "refreshNow", &[]));
        for (name, pending) in [("getToken()", token), ("refreshNow()", refresh)] {
            match within(pending, 2000.0).await {
                Ok(v) => panic!("{name} resolved after the client was disposed ({v:?})"),
                Err(e) => assert_speech_error(&e, "disposed", &[], name),
            }
        }
        assert_eq!(status(&client), "disposed");
        finish_js(&client).await;
    }
}

/// Accessors that page code put on `Object.prototype`, named like the fields of event details
/// and cross-tab messages: a setter that calls the client, getter-only ones that make a plain
/// assignment throw. No JS runs while the client's state is borrowed, and nothing throws
/// through the module: the token arrives, every event is told, and the client keeps working.
#[wasm_bindgen_test]
async fn accessors_on_object_prototype_do_not_break_events() {
    install_fake_broker();
    serial_token_answers("proto", 600.0);
    let client = js_client(&[("shareAcrossTabs", JsValue::TRUE)]);
    let log = EventLog::new();
    for event in ["token", "status"] {
        call(&client, "on", &[event.into(), log.listener(event).into()]);
    }
    let remove = prototype_accessors(&client);
    // Negative control: an assignment to a getter-only name throws in strict code.
    let throws = js_sys::Function::new_no_args("'use strict'; const o = {}; o.expiresAt = 1;")
        .call0(&JsValue::UNDEFINED)
        .is_err();
    let first = within(promise(call(&client, "getToken", &[])), 3000.0).await;
    let second = within(promise(call(&client, "refreshNow", &[])), 3000.0).await;
    let _ = remove.call0(&JsValue::UNDEFINED);
    assert!(throws, "the getter-only accessor is in place");
    assert_eq!(
        first.map(|t| t.as_string()).map_err(|e| error_texts(&e)),
        Ok(Some("proto-1".into()))
    );
    assert_eq!(
        second.map(|t| t.as_string()).map_err(|e| error_texts(&e)),
        Ok(Some("proto-2".into()))
    );
    assert_eq!(status(&client), "valid");
    assert_eq!(log.details("token").length(), 2, "both token events told");
    for name in ["region", "status", "token"] {
        assert!(
            setter_count(name) > 0.0,
            "the {name} setter ran (an event detail or the cross-tab message was made)"
        );
    }
    finish_js(&client).await;
}

/// `refreshNow()` inside a `token` listener: the `status` events follow the real transitions
/// and end where `client.status` is (it emitted "refreshing, valid, valid" while the client said
/// "refreshing").
#[wasm_bindgen_test]
async fn status_events_match_status_when_a_listener_refreshes() {
    install_fake_broker();
    serial_token_answers("order", 600.0);
    let client = js_client(&[]);
    let log = EventLog::new();
    call(
        &client,
        "on",
        &["status".into(), log.listener("status").into()],
    );
    refresh_once_on_token(&client);
    within(promise(call(&client, "getToken", &[])), 2000.0)
        .await
        .unwrap();
    wait_until("the second token", 2000.0, || {
        get_str(&client, "token").as_deref() == Some("order-2")
    })
    .await;
    wait_ms(50.0).await;
    let statuses = strings(&log.statuses());
    assert_eq!(
        statuses.last().map(String::as_str),
        Some(status(&client).as_str()),
        "the last status event is the status: {statuses:?}"
    );
    for pair in statuses.windows(2) {
        assert_ne!(pair[0], pair[1], "a status event repeated: {statuses:?}");
    }
    assert_eq!(
        statuses,
        ["fetching", "valid", "refreshing", "valid"],
        "events in transition order"
    );
    finish_js(&client).await;
}

/// A target's setter and the `headers` provider may call any client method.
#[wasm_bindgen_test]
async fn setters_and_providers_may_call_the_client() {
    install_fake_broker();
    serial_token_answers("cb", 600.0);
    let holder = js_sys::Object::new();
    let client = js_client(&[("headers", reentrant_headers(&holder).into())]);
    js_sys::Reflect::set(&holder, &"client".into(), &client).unwrap();
    let target = reentrant_target(&client);
    call(&client, "attach", std::slice::from_ref(&target));
    wait_until("the target got a token", 3000.0, || {
        values_of(&target).length() >= 1
    })
    .await;
    within(promise(call(&client, "refreshNow", &[])), 3000.0)
        .await
        .unwrap();
    wait_ms(100.0).await;
    finish_js(&client).await;
}

// ---- 6. Token bytes in wasm memory ------------------------------------------------------------

async fn token_is_wiped_after_dispose(content_type: &str, json: bool) {
    install_fake_broker();
    let secret = secret_jwt();
    let unused = secret_jwt();
    // The body is built in JS, to keep the secret out of this test's own memory.
    let body = if json {
        js_sys::JSON::stringify(&object(&[
            ("token", secret.clone()),
            ("access_token", unused.clone()),
            ("expiresIn", JsValue::from(600)),
            ("region", JsValue::from_str("westeurope")),
        ]))
        .unwrap()
        .into()
    } else {
        secret.clone()
    };
    let step = raw_answer(200, Some(content_type.into()), "", JsValue::UNDEFINED);
    js_sys::Reflect::set(&step, &"body".into(), &body).unwrap();
    answer(step);
    let client = js_client(&[]);
    let got = within(promise(call(&client, "getToken", &[])), 3000.0)
        .await
        .unwrap();
    assert!(got == secret, "the token is served");
    let memory = wasm_bindgen::memory();
    assert!(
        memory_contains(&memory, &secret),
        "non-vacuity: the held token is found in wasm memory before dispose()"
    );
    call(&client, "dispose", &[]);
    drop(got);
    assert!(
        !memory_contains(&memory, &secret),
        "{content_type}: the token's bytes stay in wasm memory after dispose()"
    );
    if json {
        assert!(
            !memory_contains(&memory, &unused),
            "an unused access_token stays in wasm memory"
        );
    }
    finish_js(&client).await;
}

#[wasm_bindgen_test]
async fn dispose_wipes_a_json_answer_from_wasm_memory() {
    token_is_wiped_after_dispose("application/json", true).await;
}

#[wasm_bindgen_test]
async fn dispose_wipes_a_text_answer_from_wasm_memory() {
    token_is_wiped_after_dispose("text/plain", false).await;
}

/// The 64 KiB limit holds while the body streams in, with no Content-Length to warn.
#[wasm_bindgen_test]
async fn an_endless_body_is_cut_at_the_limit() {
    install_fake_broker();
    answer(endless_body_answer());
    let client = js_client(&[("requestTimeout", JsValue::from(5000))]);
    let outcome = within(promise(call(&client, "getToken", &[])), 4000.0).await;
    assert_speech_error(
        &outcome.expect_err("an endless body is refused"),
        "invalid-response",
        &[],
        "endless body",
    );
    finish_js(&client).await;
}

// ---- 7. The provider and dispose() ------------------------------------------------------------

/// `getToken(); dispose();` in one tick: the app's session provider is never called.
#[wasm_bindgen_test]
async fn the_provider_is_not_called_after_dispose() {
    install_fake_broker();
    serial_token_answers("late", 600.0);
    let provider = counting_headers();
    let client = js_client(&[("headers", provider.clone().into())]);
    let pending = promise(call(&client, "getToken", &[]));
    call(&client, "dispose", &[]);
    let outcome = within(pending, 1000.0).await;
    assert_speech_error(&outcome.unwrap_err(), "disposed", &[], "getToken()");
    wait_ms(50.0).await;
    assert_eq!(calls_of(&provider), 0.0, "the provider ran after dispose()");
    assert_eq!(requests(), 0);
    finish_js(&client).await;
}

/// A provider that never settles: the attempt ends at the request timeout (kind `timeout`),
/// and the client tries again later (the attempt did not stay "in flight").
#[wasm_bindgen_test]
async fn a_provider_that_never_settles_ends_at_the_deadline() {
    install_fake_broker();
    serial_token_answers("hang", 600.0);
    let client = js_client(&[
        ("headers", hanging_headers().into()),
        ("requestTimeout", JsValue::from(300)),
    ]);
    let outcome = within(promise(call(&client, "getToken", &[])), 2000.0).await;
    assert_speech_error(&outcome.unwrap_err(), "timeout", &[], "getToken()");
    assert_ne!(status(&client), "fetching", "the attempt ended");
    let again = within(promise(call(&client, "refreshNow", &[])), 2000.0).await;
    assert_speech_error(&again.unwrap_err(), "timeout", &[], "refreshNow()");
    assert_eq!(requests(), 0, "no request without headers");
    finish_js(&client).await;
}

/// The app's session bearer (from `headers`) and the token handed out by `tokenCredential()`
/// never stay in wasm memory (review findings: both were copied in and dropped unwiped).
#[wasm_bindgen_test]
async fn session_headers_and_credential_tokens_leave_no_copy_in_wasm_memory() {
    install_fake_broker();
    let secret = secret_jwt();
    let bearer = secret_jwt();
    let step = raw_answer(200, Some("text/plain".into()), "", JsValue::UNDEFINED);
    js_sys::Reflect::set(&step, &"body".into(), &secret).unwrap();
    answer_always(step);
    let headers = js_sys::Object::new();
    let value = js_sys::JsString::from("Bearer ").concat(&bearer);
    js_sys::Reflect::set(&headers, &"authorization".into(), &value).unwrap();
    let client = js_client(&[("headers", headers.into())]);
    let credential = call(&client, "tokenCredential", &[]);
    for _ in 0..3 {
        let access = within(
            promise(call(&credential, "getToken", &["scope".into()])),
            3000.0,
        )
        .await
        .unwrap();
        assert!(get(&access, "token") == secret);
    }
    let memory = wasm_bindgen::memory();
    call(&client, "dispose", &[]);
    assert!(
        !memory_contains(&memory, &bearer),
        "the app's session bearer stayed in wasm memory"
    );
    assert!(
        !memory_contains(&memory, &secret),
        "a token handed out by tokenCredential() stayed in wasm memory"
    );
    finish_js(&client).await;
}

#[wasm_bindgen(inline_js = r#"
let realNow;
export function shiftWallClock(ms) {
  realNow ??= Date.now;
  Date.now = () => realNow.call(Date) + ms;
}
export function restoreWallClock() {
  if (realNow) Date.now = realNow;
  realNow = undefined;
}
"#)]
extern "C" {
    /// Sets the wall clock (`Date.now()`) `ms` away from the real one, as a user or NTP does.
    #[wasm_bindgen(js_name = shiftWallClock)]
    fn shift_wall_clock(ms: f64);
    #[wasm_bindgen(js_name = restoreWallClock)]
    fn restore_wall_clock();
}

/// `expiresAt` and `nextRefreshAt` are epoch milliseconds on the clock the app reads them
/// against: after the wall clock is set back an hour, a 10-minute token still expires about 10
/// minutes from the (new) `Date.now()`, not an hour and 10 minutes later (the engine's
/// deadlines follow the monotonic clock; the reported times must too).
#[wasm_bindgen_test]
async fn expires_at_follows_the_wall_clock_when_it_is_set_back() {
    install_fake_broker();
    answer(token_answer("tok-clock", 600.0, JsValue::UNDEFINED));
    let client = TokenClient::new(options(&[])).unwrap();
    expect_token(&client, "tok-clock").await;
    let ahead = |at: Option<f64>| at.expect("a time") - js_sys::Date::now();
    // clocks in step: the same time on every read (an app may compare it to spot a new token)
    assert_eq!(client.expires_at().as_f64(), client.expires_at().as_f64());
    let before = ahead(client.expires_at().as_f64());
    assert!(
        before > 590_000.0 && before <= 600_000.0,
        "control: {before}"
    );
    shift_wall_clock(-3_600_000.0);
    let left = ahead(client.expires_at().as_f64());
    let next = ahead(client.next_refresh_at().as_f64());
    let token = client.token();
    restore_wall_clock();
    assert!(
        left > 590_000.0 && left <= 600_000.0,
        "expiresAt is {left} ms ahead of the set-back clock"
    );
    assert!(
        next > 0.0 && next < left,
        "nextRefreshAt is {next} ms ahead of the set-back clock"
    );
    assert_eq!(token.as_string().as_deref(), Some("tok-clock"));
    finish(client).await;
}
