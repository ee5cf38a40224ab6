#![cfg(target_arch = "wasm32")]
//! Browser tests of the Speech SDK side of `TokenClient`: `attach()`/`detach()` on objects with
//! an `authorizationToken` setter, `tokenCredential()`, and `speechConfig()` with a fake SDK
//! namespace (tests/support/fake_broker.js) whose factories record their arguments.

mod support;

use speech_token_client::TokenClient;
use support::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn client() -> TokenClient {
    TokenClient::new(options(&[])).unwrap()
}

/// The calls the fake SDK recorded: (method, args).
fn sdk_calls(sdk: &JsValue) -> Vec<(String, js_sys::Array)> {
    js_sys::Array::from(&get(sdk, "calls"))
        .iter()
        .map(|c| (get_str(&c, "method").unwrap(), get(&c, "args").into()))
        .collect()
}

#[wasm_bindgen_test]
async fn attached_targets_follow_refreshes_until_closed_or_detached() {
    install_fake_broker();
    answer(token_answer("tok-a1", 600.0, JsValue::UNDEFINED));
    answer(token_answer("tok-a2", 600.0, JsValue::UNDEFINED));
    answer(token_answer("tok-a3", 600.0, JsValue::UNDEFINED));
    let client = client();
    let events = record_events(&client);
    expect_token(&client, "tok-a1").await;

    let keeps = FakeTarget::new();
    let closes = FakeTarget::new();
    let detached = defined_property_target();
    for target in [keeps.clone(), closes.clone(), detached.clone()] {
        client.attach(target).unwrap();
    }
    // Set at once, synchronously, when a token is held.
    assert_eq!(strings(&keeps.values()), ["tok-a1"]);
    assert_eq!(strings(&closes.values()), ["tok-a1"]);
    assert_eq!(
        get_str(&detached, "authorizationToken").as_deref(),
        Some("tok-a1")
    );
    // Attaching again sets the current token again but keeps one entry.
    client.attach(keeps.clone()).unwrap();
    assert_eq!(client.attached_count(), 3);
    assert_eq!(strings(&keeps.values()), ["tok-a1", "tok-a1"]);

    // A closed object's setter throws: it is detached, with an event, and the others still
    // get the new token.
    closes.close();
    let refreshed = settle(client.refresh_now()).await.unwrap();
    assert_eq!(refreshed.as_string().as_deref(), Some("tok-a2"));
    assert_eq!(strings(&keeps.values()), ["tok-a1", "tok-a1", "tok-a2"]);
    assert_eq!(
        get_str(&detached, "authorizationToken").as_deref(),
        Some("tok-a2")
    );
    assert_eq!(strings(&closes.values()), ["tok-a1"]);
    assert_eq!(client.attached_count(), 2);
    let detaches = events.details("detach");
    assert_eq!(detaches.length(), 1);
    let detail = detaches.get(0);
    assert!(
        js_sys::Object::is(&get(&detail, "target"), &closes),
        "the detach event names the closed target"
    );
    assert_eq!(get_str(&detail, "reason").as_deref(), Some("closed"));
    assert_eq!(
        client.status().as_string().unwrap(),
        "valid",
        "a closed target is not a client failure"
    );

    // detach() stops updates.
    client.detach(detached.clone());
    client.detach(FakeTarget::new().into()); // unknown target: nothing happens
    assert_eq!(client.attached_count(), 1);
    let _ = settle(client.refresh_now()).await.unwrap();
    assert_eq!(
        strings(&keeps.values()),
        ["tok-a1", "tok-a1", "tok-a2", "tok-a3"]
    );
    assert_eq!(
        strings(&js_sys::Array::from(&get(&detached, "values"))),
        ["tok-a1", "tok-a2"],
        "a detached target is no longer updated"
    );

    // Things that are not targets.
    for (what, bad) in [
        ("{}", object(&[])),
        ("a number", JsValue::from(5)),
        ("null", JsValue::NULL),
        ("a string", JsValue::from_str("authorizationToken")),
    ] {
        let error = client.attach(bad).unwrap_err();
        assert_speech_error(&error, "config", &["tok-a"], &format!("attach({what})"));
    }
    assert_eq!(client.attached_count(), 1);
    finish(client).await;
}

/// Found by an outside review: `attach()` set the held token without asking the clock, so a
/// token past its last usable moment was handed to the SDK object whenever no timer had run
/// since (a long task, a laptop waking from sleep) — the token `client.token` and `getToken()`
/// no longer hand out.
#[wasm_bindgen_test]
async fn attach_never_hands_out_a_token_past_its_usable_time() {
    install_fake_broker();
    answer(token_answer("tok-stale", 4.0, JsValue::UNDEFINED));
    answer(token_answer("tok-next", 600.0, JsValue::UNDEFINED));
    let client = client();
    expect_token(&client, "tok-stale").await;
    let expires_at = client.expires_at().as_f64().expect("a token is held");
    // A 4-second token is usable until a quarter of its lifetime (1 s) before expiry; its
    // refresh timer (at 2 s) cannot run while the page is busy.
    busy_wait(3_400.0);
    // The premise, read without letting the engine catch up (`requestCount` does not; the
    // other getters would): no refresh has started, and the token is past its usable time.
    assert_eq!(client.request_count(), 1.0, "the engine has not caught up");
    assert!(now_ms() > expires_at - 1_000.0, "past its usable time");
    let target = FakeTarget::new();
    client.attach(target.clone()).unwrap();
    assert!(
        !strings(&target.values()).contains(&"tok-stale".to_owned()),
        "an unusable token was set on the target: {:?}",
        strings(&target.values())
    );
    // The attach asked for a new token, and the target gets it.
    wait_until("the new token reaches the target", 5_000.0, || {
        strings(&target.values()) == ["tok-next"]
    })
    .await;
    assert_eq!(requests(), 2);
    finish(client).await;
}

#[wasm_bindgen_test]
async fn attaching_an_object_whose_setter_throws_detaches_it_with_an_event() {
    install_fake_broker();
    answer(token_answer("tok-closed", 600.0, JsValue::UNDEFINED));
    let client = client();
    let events = record_events(&client);
    expect_token(&client, "tok-closed").await;
    // Already closed (its setter throws) when attached, while a token is held.
    let closed = FakeTarget::new();
    js_sys::Reflect::set(&closed, &"closed".into(), &true.into()).unwrap();
    let outcome = client.attach(closed.clone());
    assert!(
        outcome.is_ok(),
        "the app's setter error is not thrown out of attach()"
    );
    assert_eq!(client.attached_count(), 0, "not kept as a target");
    let detaches = events.details("detach");
    assert_eq!(detaches.length(), 1, "one detach event");
    let detail = detaches.get(0);
    assert!(js_sys::Object::is(&get(&detail, "target"), &closed));
    assert_eq!(get_str(&detail, "reason").as_deref(), Some("closed"));
    assert!(
        !js_sys::Object::has_own(closed.unchecked_ref::<js_sys::Object>(), &"close".into()),
        "its close hooks are removed"
    );
    // control: an open target is kept and gets the token
    let open = FakeTarget::new();
    client.attach(open.clone()).unwrap();
    assert_eq!(client.attached_count(), 1);
    assert_eq!(strings(&open.values()), ["tok-closed"]);
    assert_eq!(events.details("detach").length(), 1);
    finish(client).await;
}

#[wasm_bindgen_test]
async fn token_credential_resolves_an_access_token_matching_the_client() {
    install_fake_broker();
    answer(token_answer("tok-cred", 600.0, JsValue::UNDEFINED));
    let client = client();
    let credential = client.token_credential().unwrap();
    let get_token: js_sys::Function = get(&credential, "getToken").into();
    let scope = JsValue::from_str("https://cognitiveservices.azure.com/.default");
    let promise: js_sys::Promise = get_token
        .call2(&credential, &scope, &JsValue::UNDEFINED)
        .unwrap()
        .into();
    let access = settle(promise).await.unwrap();
    assert_eq!(get_str(&access, "token").as_deref(), Some("tok-cred"));
    assert_eq!(token_of(&client).as_deref(), Some("tok-cred"));
    let expires_on = get(&access, "expiresOnTimestamp").as_f64().unwrap();
    let refresh_after = get(&access, "refreshAfterTimestamp").as_f64().unwrap();
    // The credential's expiry is when the token stops being handed out (5 s before it expires):
    // a pipeline that caches by expiry never hands the SDK a token in its last seconds.
    assert_eq!(Some(expires_on + 5_000.0), client.expires_at().as_f64());
    assert!(refresh_after <= expires_on);
    assert!(
        refresh_after > now_ms(),
        "refreshAfterTimestamp is in the future"
    );
    assert_eq!(requests(), 1);

    // The array form of scopes, warm: no new request.
    let scopes = js_sys::Array::of1(&scope);
    let promise: js_sys::Promise = get_token
        .call2(&credential, &scopes, &JsValue::UNDEFINED)
        .unwrap()
        .into();
    let access = settle(promise).await.unwrap();
    assert_eq!(get_str(&access, "token").as_deref(), Some("tok-cred"));
    assert_eq!(requests(), 1);

    client.dispose();
    let promise: js_sys::Promise = get_token
        .call2(&credential, &scope, &JsValue::UNDEFINED)
        .unwrap()
        .into();
    expect_rejection(
        promise,
        "disposed",
        &["tok-cred"],
        "credential after dispose",
    )
    .await;
    // A new credential from a disposed client: thrown at once, like on() and attach().
    let late = client.token_credential();
    assert_speech_error(
        &late.unwrap_err(),
        "disposed",
        &[],
        "tokenCredential() after dispose",
    );
    finish(client).await;
}

/// A first argument that is not the Speech SDK is a `config` error at once: it costs no broker
/// request, and a failing broker does not hide it behind its own error.
#[wasm_bindgen_test]
async fn a_wrong_sdk_argument_is_refused_before_any_request() {
    install_fake_broker();
    answer_always(raw_answer(401, None, "", JsValue::UNDEFINED));
    let client = TokenClient::new(options(&[])).unwrap();
    let sdk = fake_sdk();
    let no_factory = object(&[("SpeechConfig", js_sys::Function::new_no_args("").into())]);
    let cases: [(&str, js_sys::Promise, &str); 3] = [
        (
            "speechConfig({ SpeechConfig: 42 })",
            client.speech_config(object(&[("SpeechConfig", 42.into())]), None),
            "SpeechConfig",
        ),
        (
            "speechConfig with a class without factories",
            client.speech_config(no_factory, None),
            "SpeechConfig",
        ),
        (
            "speechTranslationConfig without SpeechTranslationConfig",
            client.speech_translation_config(sdk, None),
            "SpeechTranslationConfig",
        ),
    ];
    for (what, pending, class) in cases {
        let error = expect_rejection(pending, "config", &[], what).await;
        let message = get_str(&error, "message").unwrap_or_default();
        assert!(message.contains(class), "{what}: {message}");
    }
    assert_eq!(requests(), 0, "no request for a call that cannot succeed");
    finish(client).await;
}

#[wasm_bindgen_test]
async fn speech_config_from_a_region_answer_is_built_and_kept_attached() {
    install_fake_broker();
    answer(token_answer("tok-sc1", 600.0, JsValue::UNDEFINED));
    answer(token_answer("tok-sc2", 600.0, JsValue::UNDEFINED));
    let client = client();
    let sdk = fake_sdk();
    let config = settle(client.speech_config(sdk.clone(), None))
        .await
        .unwrap();
    let calls = sdk_calls(&sdk);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "fromAuthorizationToken");
    assert_eq!(strings(&calls[0].1), ["tok-sc1", "westeurope"]);
    assert_eq!(
        get_str(&config, "authorizationToken").as_deref(),
        Some("tok-sc1")
    );
    assert_eq!(client.attached_count(), 1);
    let _ = settle(client.refresh_now()).await.unwrap();
    assert_eq!(
        get_str(&config, "authorizationToken").as_deref(),
        Some("tok-sc2"),
        "the config is attached: updated on refresh"
    );
    // Not an SDK namespace: a config error.
    expect_rejection(
        client.speech_config(object(&[]), None),
        "config",
        &["tok-sc"],
        "speechConfig({})",
    )
    .await;
    // Options are checked like the constructor's: a typo, a malformed region, an endpoint the
    // broker could not have given, or a non-object never silently change where audio goes.
    let bad: [(&str, JsValue); 5] = [
        ("a mistyped key", object(&[("regoin", "westus".into())])),
        (
            "a region with a space",
            object(&[("region", "West US".into())]),
        ),
        (
            "a plain-http endpoint off loopback",
            object(&[("endpoint", "http://evil.example/x".into())]),
        ),
        (
            "a region that is not a string",
            object(&[("region", 5.into())]),
        ),
        ("a string instead of options", "westus".into()),
    ];
    // A getter that throws is a config error too, not a silent fallback to the broker's route.
    let throwing = js_sys::Object::new();
    let descriptor = object(&[(
        "get",
        js_sys::Function::new_no_args("throw new Error('getter failed (expected by the test)')")
            .into(),
    )]);
    js_sys::Object::define_property(&throwing, &"region".into(), descriptor.unchecked_ref());
    let bad: Vec<(&str, JsValue)> = bad
        .into_iter()
        .chain([("a throwing region getter", throwing.into())])
        .collect();
    let before = sdk_calls(&sdk).len();
    for (what, options) in bad {
        expect_rejection(
            client.speech_config(sdk.clone(), Some(options)),
            "config",
            &["tok-sc"],
            what,
        )
        .await;
    }
    assert_eq!(sdk_calls(&sdk).len(), before, "no config was built");
    // control: valid options are taken
    let _ =
        settle(client.speech_config(sdk.clone(), Some(object(&[("region", "westus2".into())]))))
            .await
            .unwrap();
    let calls = sdk_calls(&sdk);
    assert_eq!(strings(&calls[calls.len() - 1].1)[1], "westus2");
    // a URL object stands for its href
    let url = js_sys::Reflect::construct(
        &get(&js_sys::global(), "URL").into(),
        &js_sys::Array::of1(&"wss://custom.example/speech".into()),
    )
    .unwrap();
    let _ = settle(client.speech_config(sdk.clone(), Some(object(&[("endpoint", url)]))))
        .await
        .unwrap();
    let calls = sdk_calls(&sdk);
    assert_eq!(
        calls[calls.len() - 1].0,
        "fromEndpoint",
        "a URL endpoint is used"
    );
    finish(client).await;
}

#[wasm_bindgen_test]
async fn speech_config_from_an_endpoint_answer_uses_from_endpoint() {
    install_fake_broker();
    let endpoint = "wss://my.custom.example/stt";
    answer(token_answer(
        "tok-ep1",
        600.0,
        object(&[
            ("region", JsValue::UNDEFINED),
            ("endpoint", endpoint.into()),
        ]),
    ));
    answer(token_answer(
        "tok-ep2",
        600.0,
        object(&[("endpoint", endpoint.into())]),
    ));
    let client = client();
    let sdk = fake_sdk();
    let config = settle(client.speech_config(sdk.clone(), None))
        .await
        .unwrap();
    assert_eq!(client.endpoint().as_string().as_deref(), Some(endpoint));
    assert_eq!(client.region().as_string(), None);
    let calls = sdk_calls(&sdk);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "fromEndpoint");
    let url = calls[0].1.get(0);
    assert!(is_url(&url), "fromEndpoint gets a URL object");
    assert_eq!(get_str(&url, "href").as_deref(), Some(endpoint));
    assert_eq!(
        get_str(&config, "authorizationToken").as_deref(),
        Some("tok-ep1")
    );
    let _ = settle(client.refresh_now()).await.unwrap();
    assert_eq!(
        get_str(&config, "authorizationToken").as_deref(),
        Some("tok-ep2")
    );
    finish(client).await;
}

#[wasm_bindgen_test]
async fn an_aad_token_passes_unchanged() {
    install_fake_broker();
    let aad = "aad#/subscriptions/0000/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/speech1#eyJhbGciOiJub25lIn0.eyJleHAiOjF9.c2ln";
    answer(token_answer(aad, 600.0, JsValue::UNDEFINED));
    let client = client();
    let sdk = fake_sdk();
    let config = settle(client.speech_config(sdk.clone(), None))
        .await
        .unwrap();
    let calls = sdk_calls(&sdk);
    assert_eq!(calls[0].0, "fromAuthorizationToken");
    assert_eq!(strings(&calls[0].1), [aad, "westeurope"]);
    assert_eq!(get_str(&config, "authorizationToken").as_deref(), Some(aad));
    assert_eq!(token_of(&client).as_deref(), Some(aad));
    // A TokenCredential hands out the Entra token itself (the SDK adds "Bearer "): the aad#
    // prefix belongs to the property path only.
    let credential = client.token_credential().unwrap();
    let access = settle(
        js_sys::Reflect::get(&credential, &"getToken".into())
            .unwrap()
            .unchecked_into::<js_sys::Function>()
            .call1(
                &credential,
                &"https://cognitiveservices.azure.com/.default".into(),
            )
            .unwrap()
            .unchecked_into(),
    )
    .await
    .unwrap();
    assert_eq!(
        get_str(&access, "token").as_deref(),
        Some("eyJhbGciOiJub25lIn0.eyJleHAiOjF9.c2ln")
    );
    finish(client).await;
}

/// A target is any object with an `authorizationToken` property, whatever its prototype: one
/// made with `Object.create(null)`, or one from another realm (an iframe's SDK copy), is not
/// an `instanceof Object` here and must still be attached, kept supplied and detached.
#[wasm_bindgen_test]
async fn targets_without_this_realms_object_prototype_are_attached() {
    install_fake_broker();
    answer(token_answer("tok-r1", 600.0, JsValue::UNDEFINED));
    answer(token_answer("tok-r2", 600.0, JsValue::UNDEFINED));
    let client = client();
    expect_token(&client, "tok-r1").await;
    let bare = js_sys::eval(
        "(() => { const o = Object.create(null); o.authorizationToken = ''; return o; })()",
    )
    .unwrap();
    let foreign = js_sys::eval(
        "(() => { const f = document.createElement('iframe'); document.body.appendChild(f); \
         const o = new f.contentWindow.Object(); o.authorizationToken = ''; return o; })()",
    )
    .unwrap();
    assert!(
        !foreign.is_instance_of::<js_sys::Object>(),
        "the negative control holds"
    );
    for (what, target) in [
        ("Object.create(null)", &bare),
        ("another realm's object", &foreign),
    ] {
        client
            .attach(target.clone())
            .unwrap_or_else(|_| panic!("attach({what}) throws"));
        assert_eq!(
            get_str(target, "authorizationToken").as_deref(),
            Some("tok-r1"),
            "{what} gets the token at once"
        );
    }
    assert_eq!(client.attached_count(), 2);
    client.detach(foreign.clone());
    assert_eq!(client.attached_count(), 1);
    let _ = settle(client.refresh_now()).await.unwrap();
    assert_eq!(
        get_str(&bare, "authorizationToken").as_deref(),
        Some("tok-r2")
    );
    assert_eq!(
        get_str(&foreign, "authorizationToken").as_deref(),
        Some("tok-r1"),
        "a detached target is no longer updated"
    );
    finish(client).await;
}

/// Whether `target` has an own `close` property (`Object.hasOwn`, of any realm).
fn own_close_property(target: &JsValue) -> bool {
    js_sys::Object::has_own(target.unchecked_ref::<js_sys::Object>(), &"close".into())
}

/// The close hooks (src/web/hooks.rs) take methods by `typeof`, so they work on a Speech SDK
/// loaded in another realm (an iframe) and on an object with no prototype: closing one detaches
/// it with one `detach` event, calls the original once on the object, and removes the hooks
/// (an inherited `close` is the prototype's again, an own one restored).
#[wasm_bindgen_test]
async fn closing_a_target_of_another_realm_or_without_a_prototype_detaches_it() {
    install_fake_broker();
    answer(token_answer("tok-c1", 600.0, JsValue::UNDEFINED));
    answer(token_answer("tok-c2", 600.0, JsValue::UNDEFINED));
    let client = client();
    let events = record_events(&client);
    expect_token(&client, "tok-c1").await;
    // An SDK-like class of the iframe's realm (`close` inherited), and a null-prototype object
    // with an own `close`; each original counts its calls on the object it was called on.
    let foreign = js_sys::eval(
        "(() => { const f = document.createElement('iframe'); f.id = 'close-realm'; \
         document.body.appendChild(f); \
         const C = f.contentWindow.eval('(class Recognizer { constructor() { \
           this.authorizationToken = \"\"; this.closed = 0; } close(a, b) { this.closed += 1; \
           return \"closed:\" + a; } })'); return new C(); })()",
    )
    .unwrap();
    let bare = js_sys::eval(
        "(() => { const o = Object.create(null); o.authorizationToken = ''; o.closed = 0; \
         o.close = function (a) { this.closed += 1; return 'closed:' + a; }; return o; })()",
    )
    .unwrap();
    assert!(
        !foreign.is_instance_of::<js_sys::Object>(),
        "the negative control holds: the object is of another realm"
    );
    let own_close = get(&bare, "close");
    for target in [&foreign, &bare] {
        client.attach(target.clone()).unwrap();
    }
    assert_eq!(client.attached_count(), 2);
    for (what, target, detached) in [
        ("another realm's object", &foreign, 1),
        ("Object.create(null)", &bare, 2),
    ] {
        let close: js_sys::Function = get(target, "close").unchecked_into();
        assert!(
            own_close_property(target) && !js_sys::Object::is(&close, &own_close),
            "{what}: attach() put a hook over close"
        );
        let returned = close.call1(target, &JsValue::from_str("x")).unwrap();
        assert_eq!(
            returned.as_string().as_deref(),
            Some("closed:x"),
            "{what}: the original's result"
        );
        assert_eq!(
            get(target, "closed").as_f64(),
            Some(1.0),
            "{what}: the original ran once"
        );
        let detaches = events.details("detach");
        assert_eq!(detaches.length(), detached, "{what}: one detach event");
        let detail = detaches.get(detached - 1);
        assert!(
            js_sys::Object::is(&get(&detail, "target"), target),
            "{what}: the event names it"
        );
        assert_eq!(get_str(&detail, "reason").as_deref(), Some("closed"));
    }
    assert_eq!(client.attached_count(), 0);
    assert!(
        !own_close_property(&foreign),
        "the inherited close is the prototype's again"
    );
    assert!(
        js_sys::Object::is(&get(&bare, "close"), &own_close),
        "the own close is restored"
    );
    let refreshed = settle(client.refresh_now()).await.unwrap();
    assert_eq!(refreshed.as_string().as_deref(), Some("tok-c2"));
    for target in [&foreign, &bare] {
        assert_eq!(
            get_str(target, "authorizationToken").as_deref(),
            Some("tok-c1"),
            "a closed target is no longer updated"
        );
    }
    js_sys::eval("document.getElementById('close-realm').remove()").unwrap();
    finish(client).await;
}
