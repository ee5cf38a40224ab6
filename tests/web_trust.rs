//! Browser tests of the trust boundaries (issue: "Trust boundaries and the real Speech SDK"):
//! what a same-origin page posing as a peer tab can change, endpoints judged by the browser's
//! own URL parser, a cached JWT's age, junk text answers, and a too-small `refreshMargin`.
#![cfg(target_arch = "wasm32")]

mod support;

use speech_token_client::TokenClient;
use support::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(inline_js = r#"
/** Posts `message` on the client's cross-tab channel, as any same-origin page can. */
export function forgePeerMessage(brokerPath, message) {
  const url = new URL(brokerPath, location.href).href;
  const channel = new BroadcastChannel("speech-token-client:" + url);
  channel.postMessage(message);
  channel.close();
}

/** Takes the client's cross-tab lock and holds it until the returned function is called, as
 * a stalled (or hostile) same-origin tab can. */
export function holdLock(brokerPath) {
  const url = new URL(brokerPath, location.href).href;
  let release;
  const held = new Promise((r) => { release = r; });
  navigator.locks.request("speech-token-client:" + url, () => held);
  return () => release();
}

/** Data-only prototype pollution, as a vulnerable deep merge of `{"__proto__": ...}` does. */
export function pollute(values) {
  for (const [k, v] of Object.entries(values)) Object.prototype[k] = v;
}
/** A getter on Object.prototype that throws (a hostile or broken polyfill). */
export function polluteWithThrowingGetter(name) {
  Object.defineProperty(Object.prototype, name, {
    configurable: true,
    get() { throw new Error("inherited getter run (expected by the test)"); },
  });
}
export function unpollute(names) {
  for (const k of names) delete Object.prototype[k];
}
/** Options an app made with a class (a getter on its prototype). */
export function classOptions(brokerUrl) {
  class Options { get brokerUrl() { return brokerUrl; } }
  return new Options();
}
/** `own` over `Object.create(defaults)`. */
export function overDefaults(defaults, own) {
  return Object.assign(Object.create(defaults), own);
}
/** Options whose prototype chain never ends: a proxy made its own target's prototype. */
export function endlessChain(brokerUrl) {
  const options = { brokerUrl };
  Object.setPrototypeOf(options, new Proxy(options, {}));
  return options;
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = forgePeerMessage)]
    fn forge_peer_message(broker_path: &str, message: &JsValue);
    #[wasm_bindgen(js_name = holdLock)]
    fn hold_lock(broker_path: &str) -> js_sys::Function;
    fn pollute(values: &JsValue);
    #[wasm_bindgen(js_name = polluteWithThrowingGetter)]
    fn pollute_with_throwing_getter(name: &str);
    fn unpollute(names: &js_sys::Array);
    #[wasm_bindgen(js_name = classOptions)]
    fn class_options(broker_url: &str) -> JsValue;
    #[wasm_bindgen(js_name = overDefaults)]
    fn over_defaults(defaults: &JsValue, own: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = endlessChain)]
    fn endless_chain(broker_url: &str) -> JsValue;
}

/// A same-origin page posts a "token" with a far expiry and its own endpoint and region. The
/// victim tab may take the token (a peer's token is a token), but where the audio goes stays
/// what its own broker said, and the token is kept no longer than its own broker's lifetime.
#[wasm_bindgen_test]
async fn a_forged_peer_message_cannot_redirect_audio_or_pin_the_tab() {
    install_fake_broker();
    answer(token_answer("tok-own", 60.0, JsValue::UNDEFINED)); // region westeurope
    let client = TokenClient::new(options(&[("shareAcrossTabs", JsValue::TRUE)])).unwrap();
    expect_token(&client, "tok-own").await;
    assert_eq!(client.region().as_string().as_deref(), Some("westeurope"));
    let far = now_ms() + 23.0 * 3_600_000.0;
    forge_peer_message(
        "/api/speech-token",
        &object(&[
            ("type", "token".into()),
            ("token", "forged.token.value".into()),
            ("expiresAt", far.into()),
            ("usableFor", (23.0 * 3_600_000.0).into()),
            ("endpoint", "wss://attacker.example/speech".into()),
            ("region", "evilregion".into()),
        ]),
    );
    wait_ms(200.0).await;
    assert_eq!(
        client.endpoint().as_string(),
        None,
        "a peer cannot set the endpoint"
    );
    assert_eq!(
        client.region().as_string().as_deref(),
        Some("westeurope"),
        "a peer cannot change the region"
    );
    let kept_for = client.expires_at().as_f64().unwrap() - now_ms();
    assert!(
        kept_for <= 60_000.0 + 500.0,
        "a peer's token is kept no longer than this tab's own broker token lives: {kept_for} ms"
    );
    finish(client).await;
}

/// Found by an outside review: a peer message's strings were copied whole into wasm memory
/// before any size check (the 16 KiB token limit came after), and wasm memory never shrinks: a
/// same-origin page could pin gigabytes in this tab, then abort the module for every client on
/// the page. Strings over the limit are now refused by their JS length, uncopied.
#[wasm_bindgen_test]
async fn a_peer_message_with_huge_strings_is_dropped_without_copying_them() {
    install_fake_broker();
    answer(token_answer("tok-own-big", 600.0, JsValue::UNDEFINED));
    let client = TokenClient::new(options(&[("shareAcrossTabs", JsValue::TRUE)])).unwrap();
    expect_token(&client, "tok-own-big").await;
    let memory_bytes = || {
        get(&get(&wasm_bindgen::memory(), "buffer"), "byteLength")
            .as_f64()
            .unwrap()
    };
    let before = memory_bytes();
    // 16 Mi characters (a token over the limit a thousand times), made in JS: no wasm memory.
    let huge: JsValue = js_sys::JsString::from("a").repeat(1 << 24).into();
    let usable = JsValue::from(600_000.0);
    forge_peer_message(
        "/api/speech-token",
        &object(&[
            ("type", "token".into()),
            ("token", huge.clone()),
            ("usableFor", usable.clone()),
            ("sentAt", now_ms().into()),
        ]),
    );
    forge_peer_message(
        "/api/speech-token",
        &object(&[("type", huge), ("usableFor", usable)]),
    );
    wait_ms(300.0).await;
    let grown = memory_bytes() - before;
    assert!(
        grown < 4_000_000.0,
        "the module's memory grew by {grown} bytes for two dropped peer messages"
    );
    assert_eq!(token_of(&client).as_deref(), Some("tok-own-big"));
    finish(client).await;
}

/// Found by an outside attack review: a refresh waited for the cross-tab lock for the whole
/// `requestTimeout` whatever time the held token had left, so a tab holding the lock (stalled,
/// or a hostile same-origin page) made the token lapse: a 20 s token refreshes at ~10 s, stops
/// being usable at 15 s, and the request started only at ~20 s. The wait now ends a round trip
/// before the token stops being usable, and the tab fetches alone.
#[wasm_bindgen_test]
async fn a_tab_holding_the_lock_never_makes_the_token_lapse() {
    install_fake_broker();
    answer(token_answer("tok-lock-1", 20.0, JsValue::UNDEFINED));
    answer(token_answer("tok-lock-2", 600.0, JsValue::UNDEFINED));
    let client = TokenClient::new(options(&[("shareAcrossTabs", JsValue::TRUE)])).unwrap();
    let events = record_events(&client);
    expect_token(&client, "tok-lock-1").await;
    let release = hold_lock("/api/speech-token");
    // The refresh (due at ~9–10 s) reaches the broker before the token stops being usable.
    wait_until("the refresh's token", 15_000.0, || {
        token_of(&client).as_deref() == Some("tok-lock-2")
    })
    .await;
    assert_eq!(events.details("expired").length(), 0, "the token lapsed");
    assert_eq!(requests(), 2);
    let _ = release.call0(&JsValue::UNDEFINED);
    finish(client).await;
}

/// What page code put on `Object.prototype` (a data-only pollution through a vulnerable merge,
/// or a polyfill's getter) is never taken for the broker's answer, the app's options or
/// `speechConfig()`'s options: an inherited `endpoint` would send the audio, and the token, to
/// another host; an inherited `expiresIn` would keep a token past its lifetime; an inherited
/// `method` would switch the request to POST; an inherited bad `shareAcrossTabs` or throwing
/// getter would refuse valid options.
#[wasm_bindgen_test]
async fn object_prototype_values_are_never_taken_for_answers_or_options() {
    install_fake_broker();
    answer(token_answer("tok-proto", 600.0, JsValue::UNDEFINED)); // region westeurope
    answer(raw_answer(
        200,
        Some("application/json".into()),
        r#"{"token":"opaque-proto-token"}"#,
        JsValue::UNDEFINED,
    ));
    let attacker = "wss://attacker.example/speech";
    let names = js_sys::Array::of5(
        &"endpoint".into(),
        &"expiresIn".into(),
        &"method".into(),
        &"shareAcrossTabs".into(),
        &"credentials".into(),
    );
    pollute(&object(&[
        ("endpoint", attacker.into()),
        ("expiresIn", 86_400.into()),
        ("method", "POST".into()),
        ("shareAcrossTabs", 1.into()),
    ]));
    pollute_with_throwing_getter("credentials");
    // Negative control: the pollution is live for any plain object.
    let live = get_str(&js_sys::Object::new(), "endpoint");
    let made = TokenClient::new(options(&[]));
    let mut seen = None;
    if let Ok(client) = &made {
        let first = settle(client.get_token())
            .await
            .ok()
            .and_then(|t| t.as_string());
        let method = get_str(&last_request(), "method");
        let endpoint = client.endpoint().as_string();
        let sdk = fake_sdk();
        let config = settle(client.speech_config(
            sdk.clone(),
            Some(object(&[("region", "westeurope".into())])),
        ))
        .await;
        let factory = get_str(&get(&get(&sdk, "calls"), "0"), "method");
        let second = settle(client.refresh_now())
            .await
            .ok()
            .and_then(|t| t.as_string());
        let lifetime = client.expires_at().as_f64().map(|at| at - now_ms());
        seen = Some((
            first,
            method,
            endpoint,
            config.is_ok(),
            factory,
            second,
            lifetime,
        ));
    }
    unpollute(&names);
    assert_eq!(live.as_deref(), Some(attacker), "the pollution is in place");
    let client = made.unwrap_or_else(|e| panic!("valid options refused: {}", error_texts(&e)));
    let (first, method, endpoint, config_ok, factory, second, lifetime) = seen.unwrap();
    assert_eq!(first.as_deref(), Some("tok-proto"));
    assert_eq!(
        method.as_deref(),
        Some("GET"),
        "an inherited method is not an option"
    );
    assert_eq!(endpoint, None, "an inherited endpoint is not the broker's");
    assert!(config_ok, "speechConfig() failed");
    assert_eq!(
        factory.as_deref(),
        Some("fromAuthorizationToken"),
        "speechConfig() took an inherited endpoint"
    );
    assert_eq!(second.as_deref(), Some("opaque-proto-token"));
    let lifetime = lifetime.unwrap();
    assert!(
        lifetime <= 600_000.0 + 1_000.0,
        "an opaque token without expiresIn lives the default 600 s, not an inherited expiresIn: {lifetime} ms"
    );
    finish(client).await;
}

/// The counterpart of the test above: options that come from a prototype of the app's own
/// making (a class's getter, `Object.create(defaults)`) are the app's, and are read.
#[wasm_bindgen_test]
async fn options_inherited_from_the_apps_own_prototypes_are_read() {
    install_fake_broker();
    answer(token_answer("tok-class", 600.0, JsValue::UNDEFINED)); // region westeurope
    let client = TokenClient::new(class_options("/api/speech-token"))
        .unwrap_or_else(|e| panic!("a class's brokerUrl was not read: {}", error_texts(&e)));
    expect_token(&client, "tok-class").await;
    let sdk = fake_sdk();
    let speech_options = over_defaults(
        &object(&[("region", "northeurope".into())]),
        &js_sys::Object::new(),
    );
    settle(client.speech_config(sdk.clone(), Some(speech_options)))
        .await
        .unwrap_or_else(|e| panic!("speechConfig() failed: {}", error_texts(&e)));
    let first_call = get(&get(&sdk, "calls"), "0");
    assert_eq!(
        get(&get(&first_call, "args"), "1").as_string().as_deref(),
        Some("northeurope"),
        "speechConfig() did not read an inherited region"
    );
    finish(client).await;

    install_fake_broker();
    answer(token_answer("tok-defaults", 600.0, JsValue::UNDEFINED));
    let client = TokenClient::new(over_defaults(
        &object(&[("method", "POST".into())]),
        &object(&[("brokerUrl", "/api/speech-token".into())]),
    ))
    .unwrap_or_else(|e| panic!("options over defaults refused: {}", error_texts(&e)));
    expect_token(&client, "tok-defaults").await;
    assert_eq!(
        get_str(&last_request(), "method").as_deref(),
        Some("POST"),
        "a method from the app's defaults was not read"
    );
    // A typo in the defaults is refused as one among own options is.
    let typo = TokenClient::new(over_defaults(
        &object(&[("requestTimout", 5000.into())]),
        &object(&[("brokerUrl", "/api/speech-token".into())]),
    ));
    let error = typo
        .err()
        .expect("a mistyped inherited option was accepted");
    assert_speech_error(&error, "config", &[], "inherited typo");
    assert!(
        error_texts(&error).contains("unknown option"),
        "{}",
        error_texts(&error)
    );
    let typo = settle(client.speech_config(
        fake_sdk(),
        Some(over_defaults(
            &object(&[("endpont", "wss://speech.example/stt".into())]),
            &js_sys::Object::new(),
        )),
    ))
    .await;
    let error = typo.expect_err("a mistyped inherited speechConfig option was accepted");
    assert!(
        error_texts(&error).contains("unknown speechConfig option"),
        "{}",
        error_texts(&error)
    );
    finish(client).await;
}

/// Options whose prototype chain a proxy made endless are a `config` error, not a hung tab.
#[wasm_bindgen_test]
async fn options_with_an_endless_prototype_chain_are_refused() {
    install_fake_broker();
    let made = TokenClient::new(endless_chain("/api/speech-token"));
    let error = made
        .err()
        .expect("options with an endless chain were accepted");
    assert_speech_error(&error, "config", &[], "endless chain");
    // Negative control: the same options without the loop are fine.
    let plain = TokenClient::new(object(&[("brokerUrl", "/api/speech-token".into())]));
    assert!(plain.is_ok());
}

/// Endpoints are judged as the browser parses them: `\` is `/`, so
/// `ws://evil.example\.localhost/` goes to evil.example, not to a loopback host.
#[wasm_bindgen_test]
async fn endpoints_are_judged_by_the_browsers_url_parser() {
    install_fake_broker();
    let refused = [
        "ws://evil.example\\.localhost/speech",
        "ws://localhost@evil.example/x",
        "http://127.0.0.1@evil.example/",
        "ws://xn--lcalhost-9za.example/",
        "ws://[::2]/x",
    ];
    for endpoint in refused {
        answer(token_answer(
            "tok-e",
            600.0,
            object(&[("endpoint", endpoint.into())]),
        ));
        let client = TokenClient::new(options(&[])).unwrap();
        expect_rejection(client.get_token(), "invalid-response", &["tok-e"], endpoint).await;
        client.dispose();
    }
    for endpoint in [
        "ws://localhost.:8080/x",
        "ws://[::1]/x",
        "wss://speech.example/x",
    ] {
        answer(token_answer(
            "tok-ok",
            600.0,
            object(&[("endpoint", endpoint.into())]),
        ));
        let client = TokenClient::new(options(&[])).unwrap();
        expect_token(&client, "tok-ok").await;
        assert_eq!(client.endpoint().as_string().as_deref(), Some(endpoint));
        client.dispose();
    }
    let client = TokenClient::new(options(&[])).unwrap();
    finish(client).await;
}

/// A 200 text answer that is not token-shaped is `invalid-response`, not a 10-minute token.
#[wasm_bindgen_test]
async fn junk_text_answers_are_not_tokens() {
    install_fake_broker();
    for body in ["OK", "null", "true", "123", "Unauthorized"] {
        answer(raw_answer(
            200,
            Some("text/plain".into()),
            body,
            JsValue::UNDEFINED,
        ));
        let client = TokenClient::new(options(&[])).unwrap();
        expect_rejection(client.get_token(), "invalid-response", &[], body).await;
        client.dispose();
    }
    let client = TokenClient::new(options(&[])).unwrap();
    finish(client).await;
}

/// A cached Entra-style JWT with 5 minutes left is kept for 5 minutes, not its full hour; with
/// the broker's `Date` 10 minutes away from this browser's clock, a fresh token keeps its full
/// lifetime (the broker's clock is the reference).
#[wasm_bindgen_test]
async fn a_jwts_age_counts_and_the_brokers_clock_is_the_reference() {
    install_fake_broker();
    let now_s = (now_ms() / 1000.0).floor();
    let cached = jwt_with(now_s - 3300.0, now_s + 300.0);
    answer(raw_answer(
        200,
        Some("text/plain".into()),
        &cached,
        JsValue::UNDEFINED,
    ));
    let client = TokenClient::new(options(&[])).unwrap();
    expect_token(&client, &cached).await;
    let left = client.expires_at().as_f64().unwrap() - now_ms();
    assert!(left <= 300_000.0, "served {left} ms, past the token's exp");
    assert!(left > 290_000.0, "{left}");
    client.dispose();
    for skew_s in [-600.0, 600.0] {
        // The broker's clock says `server`; ours is `skew_s` off.
        let server_s = now_s - skew_s;
        let fresh = jwt_with(server_s, server_s + 600.0);
        let date = js_sys::Date::new(&JsValue::from(server_s * 1000.0)).to_utc_string();
        answer(raw_answer(
            200,
            Some("text/plain".into()),
            &fresh,
            object(&[("date", date.into())]),
        ));
        let client = TokenClient::new(options(&[])).unwrap();
        expect_token(&client, &fresh).await;
        let left = client.expires_at().as_f64().unwrap() - now_ms();
        assert!(
            (590_000.0..=600_000.0).contains(&left),
            "clock {skew_s} s off: {left} ms"
        );
        client.dispose();
    }
    let client = TokenClient::new(options(&[])).unwrap();
    finish(client).await;
}

/// `refreshMargin` below the usable slack: no `expired` event on a healthy cycle (it refreshed
/// exactly when the token stopped being handed out, so every cycle expired first).
#[wasm_bindgen_test]
async fn a_tiny_refresh_margin_never_lets_the_token_lapse() {
    install_fake_broker();
    serial_token_answers("margin", 8.0);
    let client = TokenClient::new(options(&[("refreshMargin", JsValue::from(0.5))])).unwrap();
    let events = record_events(&client);
    let _ = settle(client.get_token()).await;
    wait_ms(10_000.0).await;
    assert!(
        events.details("token").length() >= 3,
        "refreshed at least twice"
    );
    assert_eq!(
        events.details("expired").length(),
        0,
        "a healthy refresh cycle let the token lapse"
    );
    finish(client).await;
}

/// Review findings, each a way a peer's token was taken when it must not be: before the tab's
/// own first answer (the waiting caller then had no region or endpoint), for a `refreshNow()`
/// caller (it asked the broker), and read late by a frozen tab (its usable time had passed).
#[wasm_bindgen_test]
async fn peer_tokens_wait_for_the_tabs_own_answer_and_never_answer_refresh_now() {
    install_fake_broker();
    // First: the own answer is slow; a peer posts a token meanwhile.
    answer(object(&[
        ("delay", JsValue::from(600)),
        ("status", JsValue::from(200)),
        (
            "headers",
            object(&[("content-type", "application/json".into())]),
        ),
        (
            "body",
            r#"{"token":"tok-own-1","expiresIn":60,"region":"westeurope"}"#.into(),
        ),
    ]));
    let client = TokenClient::new(options(&[("shareAcrossTabs", JsValue::TRUE)])).unwrap();
    let first = client.get_token();
    wait_ms(100.0).await;
    let peer = |token: &str, usable_for: f64, sent_at: f64| {
        forge_peer_message(
            "/api/speech-token",
            &object(&[
                ("type", "token".into()),
                ("token", token.into()),
                ("usableFor", usable_for.into()),
                ("sentAt", sent_at.into()),
            ]),
        )
    };
    peer("peer-early", 50_000.0, now_ms());
    let got = settle(first).await.unwrap();
    assert_eq!(
        got.as_string().as_deref(),
        Some("tok-own-1"),
        "the first token is the tab's own"
    );
    assert_eq!(client.region().as_string().as_deref(), Some("westeurope"));
    // refreshNow() is answered by the broker even if a peer posts a newer token meanwhile.
    answer(object(&[
        ("delay", JsValue::from(400)),
        ("status", JsValue::from(200)),
        (
            "headers",
            object(&[("content-type", "application/json".into())]),
        ),
        (
            "body",
            r#"{"token":"tok-own-2","expiresIn":60,"region":"westeurope"}"#.into(),
        ),
    ]));
    let refreshed = client.refresh_now();
    wait_ms(100.0).await;
    peer("peer-newer", 59_000.0, now_ms());
    let got = settle(refreshed).await.unwrap();
    assert_eq!(
        got.as_string().as_deref(),
        Some("tok-own-2"),
        "refreshNow() asked the broker"
    );
    // A message read late: posted 58 s ago with 55 s left, it is already unusable.
    peer("peer-late", 55_000.0, now_ms() - 58_000.0);
    wait_ms(100.0).await;
    assert_ne!(token_of(&client).as_deref(), Some("peer-late"));
    finish(client).await;
}
