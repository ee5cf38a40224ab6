#![cfg(target_arch = "wasm32")]
//! Browser tests of the `TokenClient` shell against an in-page fake broker (a replaced `fetch`),
//! in headless Chromium: `wasm-pack test --headless --chrome` (run by `make test`).
//!
//! This file: the happy path, single flight, timed refresh with real short lifetimes, retries,
//! events and `dispose()`. Bad broker answers and options: `web_errors.rs`; the Speech SDK
//! side (attach, speechConfig, tokenCredential): `web_speech.rs`.
//!
//! Timing: tokens live 2–4 s (docs/ARCHITECTURE.md: a token of lifetime L refreshes after L/2 minus up to
//! 10% of the margin, and is usable until L - min(5 s, L/4)), so the file runs in about 10 s,
//! under wasm-bindgen-test-runner's 20 s default.

mod support;

use speech_token_client::TokenClient;
use std::cell::RefCell;
use std::rc::Rc;
use support::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// A fresh fake broker and a client with default options (plus `extra`).
fn client_with(extra: &[(&str, JsValue)]) -> TokenClient {
    TokenClient::new(options(extra)).unwrap()
}

#[wasm_bindgen_test]
async fn happy_path_fetches_once_with_safe_request_settings() {
    install_fake_broker();
    answer(token_answer("tok-happy-1", 600.0, JsValue::UNDEFINED));
    let client = client_with(&[]);
    assert_eq!(client.status().as_string().unwrap(), "idle");
    assert_eq!(
        requests(),
        0,
        "nothing is fetched before a token is asked for"
    );
    expect_token(&client, "tok-happy-1").await;
    assert_eq!(token_of(&client).as_deref(), Some("tok-happy-1"));
    assert_eq!(client.status().as_string().unwrap(), "valid");
    assert_eq!(client.region().as_string().as_deref(), Some("westeurope"));
    assert_eq!(requests(), 1);
    let req = last_request();
    assert_eq!(get_str(&req, "method").as_deref(), Some("GET"));
    assert_eq!(get_str(&req, "cache").as_deref(), Some("no-store"));
    assert_eq!(get_str(&req, "redirect").as_deref(), Some("manual"));
    assert_eq!(get_str(&req, "credentials").as_deref(), Some("same-origin"));
    assert!(get_str(&req, "url").unwrap().ends_with("/api/speech-token"));
    // A warm cache answers without another request.
    expect_token(&client, "tok-happy-1").await;
    assert_eq!(requests(), 1);
    client.dispose();
    assert_eq!(client.status().as_string().unwrap(), "disposed");
    assert!(client.token().is_undefined());
    finish(client).await;
}

#[wasm_bindgen_test]
async fn a_thousand_concurrent_callers_share_one_request() {
    install_fake_broker();
    let step = token_answer("tok-flight", 600.0, JsValue::UNDEFINED);
    js_sys::Reflect::set(&step, &"delay".into(), &50.into()).unwrap();
    answer(step);
    let client = client_with(&[]);
    let promises: js_sys::Array = (0..1000)
        .map(|_| JsValue::from(client.get_token()))
        .collect();
    assert_eq!(client.status().as_string().unwrap(), "fetching");
    let all: js_sys::Array = settle(js_sys::Promise::all(&promises))
        .await
        .unwrap()
        .into();
    assert_eq!(all.length(), 1000);
    assert!(all
        .iter()
        .all(|t| t.as_string().as_deref() == Some("tok-flight")));
    assert_eq!(requests(), 1);
    assert_eq!(client.request_count(), 1.0);
    finish(client).await;
}

#[wasm_bindgen_test]
async fn refresh_happens_before_expiry_with_no_gap_and_events_without_the_token() {
    install_fake_broker();
    answer(token_answer("tok-r1", 4.0, JsValue::UNDEFINED));
    answer(token_answer("tok-r2", 4.0, JsValue::UNDEFINED));
    let client = client_with(&[]);
    let events = record_events(&client);
    let target = FakeTarget::new();
    client.attach(target.clone()).unwrap(); // no token yet: starts the fetch
    expect_token(&client, "tok-r1").await;
    let first_sent = get(&request_log().get(0), "at").as_f64().unwrap();
    let first_expires_at = client.expires_at().as_f64().unwrap();
    assert!(
        (first_expires_at - first_sent - 4000.0).abs() < 250.0,
        "expiresAt is anchored on when the request was sent"
    );
    assert_eq!(strings(&target.values()), ["tok-r1"]);

    // Poll every 50 ms: the token is never undefined until the refreshed one is in.
    let start = now_ms();
    loop {
        let token = token_of(&client);
        assert!(
            token.is_some(),
            "client.token was undefined {} ms into a 4 s token's life (status {})",
            now_ms() - first_sent,
            client.status().as_string().unwrap()
        );
        if token.as_deref() == Some("tok-r2") {
            break;
        }
        assert!(now_ms() - start < 3500.0, "no refresh within 3.5 s");
        wait_ms(50.0).await;
    }
    assert_eq!(requests(), 2);
    let second_sent = get(&request_log().get(1), "at").as_f64().unwrap();
    assert!(
        second_sent < first_expires_at,
        "the refresh must be sent before the first token expires"
    );
    // Half the lifetime minus up to 10% of the margin: 1.8–2.0 s (timers may run a bit late),
    // i.e. neither a refresh storm nor a last-second refresh.
    let age = second_sent - first_sent;
    assert!(
        (1700.0..2900.0).contains(&age),
        "refresh sent {age} ms after the first request, expected ~1.8–2.0 s"
    );
    assert!(client.expires_at().as_f64().unwrap() > first_expires_at);
    assert_eq!(client.status().as_string().unwrap(), "valid");
    assert_eq!(
        strings(&target.values()),
        ["tok-r1", "tok-r2"],
        "attached target updated on refresh"
    );

    // `token` events: {expiresAt, region}, never the token itself.
    let details = events.details("token");
    assert_eq!(details.length(), 2);
    for detail in details.iter() {
        assert!(get(&detail, "expiresAt").as_f64().unwrap() > first_sent);
        assert_eq!(get_str(&detail, "region").as_deref(), Some("westeurope"));
    }
    assert_eq!(
        get(&details.get(0), "expiresAt").as_f64(),
        Some(first_expires_at)
    );
    assert_eq!(
        get(&details.get(1), "expiresAt").as_f64(),
        client.expires_at().as_f64()
    );
    assert_eq!(events.details("refreshing").length(), 1);
    assert_eq!(
        strings(&events.statuses()),
        ["fetching", "valid", "refreshing", "valid"]
    );
    let all = events.json();
    assert!(
        !all.contains("tok-r"),
        "an event detail holds the token: {all}"
    );
    finish(client).await;
}

#[wasm_bindgen_test]
async fn a_failed_refresh_is_retried_automatically_with_backoff() {
    install_fake_broker();
    answer(token_answer("tok-keep", 600.0, JsValue::UNDEFINED));
    answer(raw_answer(500, None, "", JsValue::UNDEFINED));
    answer(token_answer("tok-retried", 600.0, JsValue::UNDEFINED));
    let client = client_with(&[]);
    expect_token(&client, "tok-keep").await;
    let error = expect_rejection(client.refresh_now(), "http", &["tok-keep"], "500").await;
    assert_eq!(get(&error, "status").as_f64(), Some(500.0));
    let failed_at = now_ms();
    // Still serving the held token, and a retry is planned within the first backoff step (1 s).
    assert_eq!(token_of(&client).as_deref(), Some("tok-keep"));
    assert_eq!(client.status().as_string().unwrap(), "refreshing");
    let retry_at = client
        .next_refresh_at()
        .as_f64()
        .expect("a retry is planned");
    assert!(
        retry_at - failed_at <= 1000.0,
        "first backoff step is at most 1 s"
    );
    wait_until("the automatic retry succeeds", 2000.0, || {
        token_of(&client).as_deref() == Some("tok-retried")
    })
    .await;
    assert_eq!(requests(), 3);
    assert_eq!(client.status().as_string().unwrap(), "valid");
    finish(client).await;
}

#[wasm_bindgen_test]
async fn a_401_stops_automatic_retries_until_refresh_now() {
    install_fake_broker();
    answer(token_answer("tok-held", 600.0, JsValue::UNDEFINED));
    answer(raw_answer(401, None, "", JsValue::UNDEFINED));
    // Whatever else is asked gets a good answer: only the count can tell a retry happened.
    answer_always(token_answer("tok-after", 600.0, JsValue::UNDEFINED));
    let client = client_with(&[]);
    let events = record_events(&client);
    expect_token(&client, "tok-held").await;
    let error = expect_rejection(client.refresh_now(), "unauthorized", &["tok-held"], "401").await;
    assert_eq!(get(&error, "status").as_f64(), Some(401.0));
    assert_eq!(client.status().as_string().unwrap(), "error");
    assert_eq!(
        client.next_refresh_at().as_f64(),
        None,
        "no retry is planned"
    );
    wait_ms(2500.0).await;
    assert_eq!(requests(), 2, "no automatic retry after a 401");
    assert_eq!(client.status().as_string().unwrap(), "error");
    // The held token is still served meanwhile.
    assert_eq!(token_of(&client).as_deref(), Some("tok-held"));
    expect_token(&client, "tok-held").await;
    assert_eq!(requests(), 2);
    let errors = events.details("error");
    assert_eq!(errors.length(), 1);
    assert_speech_error(
        &get(&errors.get(0), "error"),
        "unauthorized",
        &["tok-held"],
        "error event",
    );
    // refreshNow() starts again.
    let fresh = settle(client.refresh_now()).await.unwrap();
    assert_eq!(fresh.as_string().as_deref(), Some("tok-after"));
    assert_eq!(requests(), 3);
    assert_eq!(client.status().as_string().unwrap(), "valid");
    finish(client).await;
}

/// `refreshNow()` is the app's "the user signed in again": it is answered by a request sent
/// after the call, with the headers the app gives then. A request already on its way with the old
/// session (here: refused, slowly) answers the callers that were waiting for it; the
/// `refreshNow()` caller waits for the next request, which goes out as soon as that one ends.
#[wasm_bindgen_test]
async fn refresh_now_while_a_request_is_out_waits_for_one_sent_after_it() {
    install_fake_broker();
    let refused = raw_answer(401, None, "", JsValue::UNDEFINED);
    js_sys::Reflect::set(&refused, &"delay".into(), &400.0.into()).unwrap();
    answer(refused);
    answer_always(token_answer("tok-new-session", 600.0, JsValue::UNDEFINED));
    let session = object(&[("value", "Bearer old-session".into())]);
    let headers = js_sys::Function::new_with_args(
        "session",
        "return () => ({ authorization: session.value });",
    )
    .call1(&JsValue::UNDEFINED, &session)
    .unwrap();
    let client = client_with(&[("headers", headers)]);
    let first = client.get_token();
    // The first request is out (its headers were read) and waits for its answer.
    wait_until("the first request is sent", 2000.0, || requests() == 1).await;
    wait_ms(50.0).await;
    js_sys::Reflect::set(&session, &"value".into(), &"Bearer new-session".into()).unwrap();
    let refreshed = client.refresh_now();
    expect_rejection(first, "unauthorized", &[], "getToken() on the old session").await;
    let token = settle(refreshed).await;
    assert_eq!(
        token
            .map_err(|e| error_texts(&e))
            .unwrap()
            .as_string()
            .as_deref(),
        Some("tok-new-session"),
        "refreshNow() answered by a request made after it"
    );
    let log = request_log();
    assert_eq!(log.length(), 2, "one more request, after the first ended");
    let sent = get_str(&get(&log.get(1), "headers"), "authorization");
    assert_eq!(sent.as_deref(), Some("Bearer new-session"));
    assert_eq!(client.status().as_string().unwrap(), "valid");
    // Calls made before the request is sent still share it (single flight).
    let (a, b) = (client.refresh_now(), client.refresh_now());
    settle(a).await.unwrap();
    settle(b).await.unwrap();
    assert_eq!(
        requests(),
        3,
        "two refreshNow() calls in one tick share one request"
    );
    finish(client).await;
}

#[wasm_bindgen_test]
async fn dispose_rejects_pending_calls_and_cancels_the_request() {
    install_fake_broker();
    answer(special_answer("hang"));
    let client = client_with(&[]);
    let pending = client.get_token();
    let pending_refresh = client.refresh_now();
    wait_ms(20.0).await;
    assert_eq!(client.status().as_string().unwrap(), "fetching");
    assert_eq!(requests(), 1);
    client.dispose();
    expect_rejection(pending, "disposed", &[], "pending getToken()").await;
    expect_rejection(pending_refresh, "disposed", &[], "pending refreshNow()").await;
    assert_eq!(
        get(&request_log().get(0), "aborted").as_bool(),
        Some(true),
        "the request in flight is aborted"
    );
    assert_eq!(client.status().as_string().unwrap(), "disposed");
    assert!(client.token().is_undefined());
    // Idempotent, and everything afterwards is refused.
    client.dispose();
    assert_eq!(client.status().as_string().unwrap(), "disposed");
    expect_rejection(
        client.get_token(),
        "disposed",
        &[],
        "getToken() after dispose",
    )
    .await;
    expect_rejection(
        client.refresh_now(),
        "disposed",
        &[],
        "refreshNow() after dispose",
    )
    .await;
    assert_eq!(requests(), 1);
    finish(client).await;
}

#[wasm_bindgen_test]
async fn dispose_stops_refreshes_and_events() {
    install_fake_broker();
    answer(token_answer("tok-short", 2.0, JsValue::UNDEFINED));
    answer_always(token_answer("tok-never", 2.0, JsValue::UNDEFINED));
    let client = client_with(&[]);
    let events = record_events(&client);
    let target = FakeTarget::new();
    expect_token(&client, "tok-short").await;
    client.attach(target.clone()).unwrap();
    assert_eq!(client.attached_count(), 1);
    client.dispose();
    assert_eq!(client.status().as_string().unwrap(), "disposed");
    assert!(client.token().is_undefined());
    assert_eq!(client.expires_at().as_f64(), None);
    assert_eq!(client.attached_count(), 0, "dispose detaches every target");
    let seen = js_sys::JSON::stringify(&events.statuses()).unwrap();
    // Past the planned refresh (~1 s) and the end of the token's usable life (1.5 s).
    wait_ms(1700.0).await;
    assert_eq!(requests(), 1, "no request after dispose");
    assert_eq!(
        js_sys::JSON::stringify(&events.statuses()).unwrap(),
        seen,
        "no event after dispose"
    );
    assert_eq!(events.details("expired").length(), 0);
    assert_eq!(strings(&target.values()), ["tok-short"]);
    client.dispose(); // still nothing to do, no throw
    finish(client).await;
}

#[wasm_bindgen_test]
async fn listeners_unsubscribe_survive_a_throwing_peer_and_see_idle_fetching_valid() {
    install_fake_broker();
    answer(token_answer("tok-events", 600.0, JsValue::UNDEFINED));
    let client = client_with(&[]);
    assert_eq!(client.status().as_string().unwrap(), "idle");
    let removed = EventLog::new();
    let off = client
        .on("status".into(), removed.listener("status").into())
        .unwrap();
    off.call0(&JsValue::UNDEFINED).unwrap();
    off.call0(&JsValue::UNDEFINED).unwrap(); // a second off() is harmless
    client
        .on("token".into(), throwing_listener().into())
        .unwrap();
    let events = record_events(&client); // subscribed after the throwing one
    catch_page_errors();
    expect_token(&client, "tok-events").await;
    let reported = strings(&stop_catching_page_errors());
    assert_eq!(
        removed.json(),
        "[]",
        "an unsubscribed listener is not called"
    );
    assert_eq!(strings(&events.statuses()), ["fetching", "valid"]);
    assert_eq!(
        events.details("token").length(),
        1,
        "a throwing listener does not stop the next one"
    );
    assert!(
        reported.iter().any(|m| m.contains("listener failure")),
        "the listener's exception is reported to the page, not swallowed: {reported:?}"
    );
    let bad = client.on("tokens".into(), events.listener("tokens").into());
    assert_speech_error(&bad.unwrap_err(), "config", &[], "unknown event name");
    // a listener that is not a function is refused at once, not a TypeError at every event
    let not_functions: [JsValue; 3] = [5.into(), js_sys::Object::new().into(), JsValue::NULL];
    for listener in not_functions {
        let bad = client.on("token".into(), listener);
        assert_speech_error(
            &bad.unwrap_err(),
            "config",
            &[],
            "a listener that is no function",
        );
    }
    catch_page_errors();
    answer(token_answer("tok-events-2", 600.0, JsValue::UNDEFINED));
    settle(client.refresh_now()).await.unwrap();
    let reported = strings(&stop_catching_page_errors());
    // control: the throwing listener's failure is still reported; nothing else is
    assert!(
        reported.iter().any(|m| m.contains("listener failure")),
        "{reported:?}"
    );
    assert!(
        reported.iter().all(|m| m.contains("listener failure")),
        "no TypeError from a refused listener: {reported:?}"
    );
    finish(client).await;
}

/// As `removeEventListener` during a DOM dispatch: a listener removed by an earlier listener of
/// the same event is not called for it; one added during the event waits for the next.
#[wasm_bindgen_test]
async fn a_listener_removed_during_an_event_is_not_called_for_it() {
    install_fake_broker();
    answer(token_answer("tok-off-in-event", 600.0, JsValue::UNDEFINED));
    let client = Rc::new(client_with(&[]));
    let off_later: Rc<RefCell<Option<js_sys::Function>>> = Rc::default();
    let added = EventLog::new();
    let earlier = {
        let (off_later, client) = (off_later.clone(), client.clone());
        let added = added.listener("token");
        Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
            if let Some(off) = off_later.borrow_mut().take() {
                off.call0(&JsValue::UNDEFINED).unwrap();
                client.on("token".into(), added.clone().into()).unwrap();
            }
        })
    };
    client.on("token".into(), earlier.as_ref().clone()).unwrap();
    let later = EventLog::new();
    let off = client
        .on("token".into(), later.listener("token").into())
        .unwrap();
    *off_later.borrow_mut() = Some(off);
    let control = EventLog::new();
    client
        .on("token".into(), control.listener("token").into())
        .unwrap();
    expect_token(&client, "tok-off-in-event").await;
    assert_eq!(
        later.json(),
        "[]",
        "removed by an earlier listener of the same event"
    );
    assert_eq!(
        added.json(),
        "[]",
        "added during the event: called from the next one"
    );
    assert_eq!(
        control.details("token").length(),
        1,
        "the others are called"
    );
    answer(token_answer(
        "tok-off-in-event-2",
        600.0,
        JsValue::UNDEFINED,
    ));
    settle(client.refresh_now()).await.unwrap();
    assert_eq!(later.json(), "[]");
    assert_eq!(
        added.details("token").length(),
        1,
        "the listener added during the first event"
    );
    assert_eq!(control.details("token").length(), 2);
    finish_shared(client, earlier).await;
}

/// `dispose()` inside a listener: the listeners after it hear nothing more of that event (the
/// client's status event saying `disposed` excepted).
#[wasm_bindgen_test]
async fn dispose_inside_a_listener_stops_the_rest_of_the_event() {
    install_fake_broker();
    answer(token_answer(
        "tok-dispose-in-event",
        600.0,
        JsValue::UNDEFINED,
    ));
    let client = Rc::new(client_with(&[]));
    let disposing = {
        let client = client.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| client.dispose())
    };
    client
        .on("token".into(), disposing.as_ref().clone())
        .unwrap();
    let later = record_events(&client);
    // settled either way: the token event comes first, and its listener disposes the client
    let _ = settle(client.get_token()).await;
    assert_eq!(client.status().as_string().unwrap(), "disposed");
    assert_eq!(
        later.details("token").length(),
        0,
        "a listener after the one that disposed: {}",
        later.json()
    );
    assert_eq!(
        strings(&later.statuses()).last().map(String::as_str),
        Some("disposed"),
        "the status event still says so: {}",
        later.json()
    );
    finish_shared(client, disposing).await;
}

/// Ends a test whose client a listener closure shares: the closure (and its handle) goes first.
async fn finish_shared<L>(client: Rc<TokenClient>, listener: L) {
    drop(listener);
    let client = Rc::try_unwrap(client).ok();
    finish(client.expect("the test's only client handle")).await;
}

#[wasm_bindgen_test]
async fn expired_fires_when_the_token_runs_out_without_replacement() {
    install_fake_broker();
    answer(token_answer("tok-dying", 2.0, JsValue::UNDEFINED));
    answer(raw_answer(401, None, "", JsValue::UNDEFINED)); // the refresh at ~1 s fails
    let client = client_with(&[]);
    let events = record_events(&client);
    expect_token(&client, "tok-dying").await;
    wait_until("the expired event", 3000.0, || {
        events.details("expired").length() > 0
    })
    .await;
    assert_eq!(requests(), 2);
    assert_eq!(events.details("expired").length(), 1);
    assert_eq!(client.status().as_string().unwrap(), "expired");
    assert!(client.token().is_undefined());
    assert_eq!(client.expires_at().as_f64(), None);
    let errors = events.details("error");
    assert_eq!(errors.length(), 1);
    assert_eq!(
        get_str(&get(&errors.get(0), "error"), "kind").as_deref(),
        Some("unauthorized")
    );
    assert_eq!(
        strings(&events.statuses()),
        ["fetching", "valid", "refreshing", "error", "expired"]
    );
    // After the final error's hold (at most 1 s after a first 401), a caller asking gets a
    // fresh token (one new request). Within it, it gets the 401 at once (web_lifetime.rs).
    answer(token_answer("tok-reborn", 600.0, JsValue::UNDEFINED));
    wait_ms(1000.0).await;
    expect_token(&client, "tok-reborn").await;
    assert_eq!(requests(), 3);
    finish(client).await;
}

#[wasm_bindgen_test]
async fn max_lifetime_caps_how_long_a_token_is_kept() {
    install_fake_broker();
    answer(token_answer("tok-capped", 3600.0, JsValue::UNDEFINED));
    let client = client_with(&[("maxLifetime", 60.into())]);
    expect_token(&client, "tok-capped").await;
    let left = client.expires_at().as_f64().unwrap() - now_ms();
    assert!(
        (59_000.0..=60_000.0).contains(&left),
        "a 1 h token is kept 60 s, got {left} ms"
    );
    // Refreshed well before the cap: margin max(30 s, 20%) capped at half the (capped) lifetime.
    let refresh_in = client.next_refresh_at().as_f64().unwrap() - now_ms();
    assert!(
        (26_000.0..=30_000.0).contains(&refresh_in),
        "refresh in {refresh_in} ms"
    );
    finish(client).await;
}
