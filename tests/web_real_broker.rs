//! Browser tests against the real reference broker over HTTP (not a replaced `fetch`): CORS from
//! the test runner's origin, a real `Cache-Control: no-store` answer, a real dev JWT, and a real
//! 302 redirect seen by the browser as an opaque redirect.
//!
//! `scripts/test.sh` starts the broker and passes its URL at compile time through
//! `SPEECH_TOKEN_TEST_BROKER`; without it these tests fail with instructions (never skip).
#![cfg(target_arch = "wasm32")]

use speech_token_client::TokenClient;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const BROKER: Option<&str> = option_env!("SPEECH_TOKEN_TEST_BROKER");

fn broker() -> &'static str {
    BROKER.expect(
        "SPEECH_TOKEN_TEST_BROKER is not set: run these tests through scripts/test.sh, which starts \
         the dev broker (target/release/speech-token-broker --listen 127.0.0.1:0) and sets it",
    )
}

fn client() -> TokenClient {
    let options = js_sys::Object::new();
    let url = format!("{}/api/speech-token", broker());
    js_sys::Reflect::set(&options, &"brokerUrl".into(), &url.into()).unwrap();
    TokenClient::new(options.into()).unwrap()
}

async fn admin(path: &str, body: &str) {
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(body));
    let headers = web_sys::Headers::new().unwrap();
    headers.set("content-type", "application/json").unwrap();
    init.set_headers(&headers);
    let url = format!("{}{}", broker(), path);
    let window = web_sys::window().unwrap();
    let response = JsFuture::from(window.fetch_with_str_and_init(&url, &init))
        .await
        .unwrap();
    let response: web_sys::Response = response.into();
    assert_eq!(response.status(), 200, "admin {path} failed");
}

#[wasm_bindgen_test]
async fn a_real_dev_token_over_http() {
    admin("/admin/reset", "{}").await;
    let client = client();
    let token = JsFuture::from(client.get_token())
        .await
        .unwrap()
        .as_string()
        .unwrap();
    assert_eq!(token.split('.').count(), 3, "a dev JWT");
    assert_eq!(client.region().as_string().as_deref(), Some("local"));
    let endpoint = client.endpoint().as_string().unwrap();
    assert!(endpoint.starts_with("ws://127.0.0.1:"), "{endpoint}");
    let lifetime = client.expires_at().as_f64().unwrap() - js_sys::Date::now();
    assert!(
        lifetime > 60_000.0 && lifetime <= 600_000.0,
        "lifetime {lifetime}"
    );
    assert_eq!(client.status().as_string().unwrap(), "valid");
    client.dispose();
}

#[wasm_bindgen_test]
async fn a_real_redirect_is_reported_not_followed() {
    admin("/admin/reset", "{}").await;
    admin(
        "/admin/fail",
        r#"{"status":302,"count":1,"location":"/login"}"#,
    )
    .await;
    let client = client();
    let error = JsFuture::from(client.get_token()).await.unwrap_err();
    let kind = js_sys::Reflect::get(&error, &"kind".into()).unwrap();
    assert_eq!(kind.as_string().as_deref(), Some("redirected"));
    client.dispose();
    admin("/admin/reset", "{}").await;
}

#[wasm_bindgen_test]
async fn a_real_401_stops_and_refresh_now_recovers() {
    admin("/admin/reset", "{}").await;
    admin("/admin/fail", r#"{"status":401,"count":1}"#).await;
    let client = client();
    let error = JsFuture::from(client.get_token()).await.unwrap_err();
    let kind = js_sys::Reflect::get(&error, &"kind".into()).unwrap();
    assert_eq!(kind.as_string().as_deref(), Some("unauthorized"));
    assert_eq!(client.status().as_string().unwrap(), "error");
    let token = JsFuture::from(client.refresh_now()).await.unwrap();
    assert!(token.as_string().is_some_and(|t| t.split('.').count() == 3));
    client.dispose();
}
