//! Browser tests of the `TokenClient` shell against an in-page fake broker (a replaced `fetch`),
//! in headless Chromium: `wasm-pack test --headless --chrome` (run by `make test`).
#![cfg(target_arch = "wasm32")]

use speech_token_client::TokenClient;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/tests/support/fake_broker.js")]
extern "C" {
    #[wasm_bindgen(js_name = installFakeBroker)]
    fn install_fake_broker();
    #[wasm_bindgen(js_name = uninstallFakeBroker)]
    fn uninstall_fake_broker();
    fn answer(step: JsValue);
    #[wasm_bindgen(js_name = tokenAnswer)]
    fn token_answer(token: &str, expires_in: f64, extra: JsValue) -> JsValue;
    fn requests() -> u32;
    #[wasm_bindgen(js_name = lastRequest)]
    fn last_request() -> JsValue;
    fn sleep(ms: f64) -> js_sys::Promise;
    #[wasm_bindgen(js_name = storageDump)]
    fn storage_dump() -> js_sys::Promise;
}

fn options(extra: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    js_sys::Reflect::set(&o, &"brokerUrl".into(), &"/api/speech-token".into()).unwrap();
    for (k, v) in extra {
        js_sys::Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

fn get(v: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(v, &key.into()).unwrap()
}

#[wasm_bindgen_test]
async fn happy_path_fetches_once_with_safe_request_settings() {
    install_fake_broker();
    answer(token_answer("tok-happy-1", 600.0, JsValue::UNDEFINED));
    let client = TokenClient::new(options(&[])).unwrap();
    assert_eq!(client.status(), "idle");
    let token = JsFuture::from(client.get_token()).await.unwrap();
    assert_eq!(token.as_string().as_deref(), Some("tok-happy-1"));
    assert_eq!(client.token().as_string().as_deref(), Some("tok-happy-1"));
    assert_eq!(client.status(), "valid");
    assert_eq!(client.region().as_deref(), Some("westeurope"));
    assert_eq!(requests(), 1);
    let req = last_request();
    assert_eq!(get(&req, "cache").as_string().as_deref(), Some("no-store"));
    assert_eq!(get(&req, "redirect").as_string().as_deref(), Some("manual"));
    assert_eq!(
        get(&req, "credentials").as_string().as_deref(),
        Some("same-origin")
    );
    // A warm cache answers without another request.
    let again = JsFuture::from(client.get_token()).await.unwrap();
    assert_eq!(again, token);
    assert_eq!(requests(), 1);
    client.dispose();
    assert_eq!(client.status(), "disposed");
    assert!(client.token().is_undefined());
    uninstall_fake_broker();
}

#[wasm_bindgen_test]
async fn a_thousand_concurrent_callers_share_one_request() {
    install_fake_broker();
    let mut step = token_answer("tok-flight", 600.0, JsValue::UNDEFINED);
    js_sys::Reflect::set(&step, &"delay".into(), &50.into()).unwrap();
    answer(std::mem::take(&mut step));
    let client = TokenClient::new(options(&[])).unwrap();
    let promises: js_sys::Array = (0..1000)
        .map(|_| JsValue::from(client.get_token()))
        .collect();
    let all = JsFuture::from(js_sys::Promise::all(&promises))
        .await
        .unwrap();
    let all: js_sys::Array = all.into();
    assert_eq!(all.length(), 1000);
    assert!(all
        .iter()
        .all(|t| t.as_string().as_deref() == Some("tok-flight")));
    assert_eq!(requests(), 1);
    client.dispose();
    let dump = JsFuture::from(storage_dump()).await.unwrap();
    assert_eq!(dump.as_string().as_deref(), Some(""));
    uninstall_fake_broker();
}
