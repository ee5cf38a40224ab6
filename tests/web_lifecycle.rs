#![cfg(target_arch = "wasm32")]
//! Browser tests of the page lifecycle wiring: `visibilitychange` re-plans the refresh with the
//! hidden-page margin, `online` retries a network failure at once, `focus`/`pageshow` re-check
//! without spending requests when nothing is due, `dispose()` unregisters every listener, and a
//! sleep that no event reports is noticed at the shell's next clock check.

mod support;

use speech_token_client::TokenClient;
use support::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/tests/support/lifecycle.js")]
extern "C" {
    fn fire(target: &str, kind: &str);
    #[wasm_bindgen(js_name = setHidden)]
    fn set_hidden(hidden: bool);
    #[wasm_bindgen(js_name = restoreVisibility)]
    fn restore_visibility();
    #[wasm_bindgen(js_name = shiftWallClock)]
    fn shift_wall_clock(ms: f64);
    #[wasm_bindgen(js_name = restoreWallClock)]
    fn restore_wall_clock();
}

#[wasm_bindgen_test]
async fn hiding_the_page_refreshes_earlier_and_showing_it_restores_the_plan() {
    install_fake_broker();
    answer(token_answer("tok-visible", 600.0, JsValue::UNDEFINED));
    let client = TokenClient::new(options(&[])).unwrap();
    settle(client.get_token()).await.unwrap();
    let expires = client.expires_at().as_f64().unwrap();
    let visible_plan = client.next_refresh_at().as_f64().unwrap();
    // Visible: margin 120 s plus up to 10 % jitter.
    let margin = expires - visible_plan;
    assert!(
        (120_000.0..=132_001.0).contains(&margin),
        "visible margin {margin}"
    );
    set_hidden(true);
    let hidden_margin = expires - client.next_refresh_at().as_f64().unwrap();
    // Hidden: half the lifetime (throttled timers), same jitter draw.
    assert!(
        (300_000.0..=330_001.0).contains(&hidden_margin),
        "hidden margin {hidden_margin}"
    );
    set_hidden(false);
    assert_eq!(client.next_refresh_at().as_f64(), Some(visible_plan));
    assert_eq!(requests(), 1, "re-planning costs no request");
    restore_visibility();
    finish(client).await;
}

#[wasm_bindgen_test]
async fn online_retries_a_network_failure_at_once() {
    install_fake_broker();
    answer(special_answer("networkError"));
    answer_always(token_answer("tok-online", 600.0, JsValue::UNDEFINED));
    let client = TokenClient::new(options(&[])).unwrap();
    let error = settle(client.get_token()).await.unwrap_err();
    assert_eq!(get_str(&error, "kind").as_deref(), Some("network"));
    assert_eq!(client.request_count(), 1.0);
    assert!(
        client.next_refresh_at().as_f64().is_some(),
        "a retry is scheduled"
    );
    // Listeners run synchronously inside dispatchEvent: the retry starts before any timer can.
    fire("window", "online");
    assert_eq!(client.request_count(), 2.0, "online retried at once");
    wait_until("the retried token", 2_000.0, || token_of(&client).is_some()).await;
    assert_eq!(token_of(&client).as_deref(), Some("tok-online"));
    finish(client).await;
}

/// The shell's longest timer (`CLOCK_CHECK_MS` in src/web/shell.rs), in this test's terms.
const CLOCK_CHECK_MS: f64 = 15_000.0;

#[wasm_bindgen_test]
async fn a_sleep_no_page_event_reports_is_noticed_at_the_next_clock_check() {
    // An outside review: on a visible page whose sleep fires no visibilitychange, focus or
    // online, the refresh timer (frozen in sleep) fired minutes late while attached SDK
    // objects held an expired token.
    install_fake_broker();
    answer(token_answer("tok-before-sleep", 600.0, JsValue::UNDEFINED));
    answer_always(token_answer("tok-after-sleep", 600.0, JsValue::UNDEFINED));
    let client = TokenClient::new(options(&[])).unwrap();
    settle(client.get_token()).await.unwrap();
    let target = js_sys::Object::new();
    js_sys::Reflect::set(&target, &"authorizationToken".into(), &"".into()).unwrap();
    client.attach(target.clone().into()).unwrap();
    assert_eq!(
        get_str(&target, "authorizationToken").as_deref(),
        Some("tok-before-sleep")
    );
    // Two hours asleep: the wall clock has moved on, the monotonic clock and the armed timer
    // (due in about 8 minutes of awake time) have not, and no event fires.
    shift_wall_clock(7_200_000.0);
    // The real clock is back on any path out (a failed wait must not leave the next tests two
    // hours ahead).
    struct WallClockBack;
    impl Drop for WallClockBack {
        fn drop(&mut self) {
            restore_wall_clock();
        }
    }
    let _back = WallClockBack;
    wait_until(
        "the refresh after the sleep",
        CLOCK_CHECK_MS + 10_000.0,
        || get_str(&target, "authorizationToken").as_deref() == Some("tok-after-sleep"),
    )
    .await;
    assert_eq!(client.request_count(), 2.0);
    finish(client).await;
}

/// After a sleep that no event reports, `status`, `expiresAt` and `nextRefreshAt` tell what is
/// true now, as `token` does, not what was true before the sleep (an outside review: `"valid"`
/// with an expiry in the past until the next clock check); the `status` events implied are
/// delivered first, so the last one still equals `client.status`.
#[wasm_bindgen_test]
async fn the_getters_tell_what_is_true_after_a_sleep() {
    struct WallClockBack;
    impl Drop for WallClockBack {
        fn drop(&mut self) {
            restore_wall_clock();
        }
    }
    for getter in ["status", "expiresAt", "nextRefreshAt"] {
        install_fake_broker();
        answer(token_answer("tok-before-sleep", 600.0, JsValue::UNDEFINED));
        answer_always(token_answer("tok-after-sleep", 600.0, JsValue::UNDEFINED));
        let client = TokenClient::new(options(&[])).unwrap();
        let events = record_events(&client);
        settle(client.get_token()).await.unwrap();
        assert_eq!(client.status().as_string().unwrap(), "valid");
        // Ten minutes asleep: the 600-second token has expired, and no timer or event has run.
        shift_wall_clock(600_000.0);
        let _back = WallClockBack;
        let now = now_ms();
        let status = match getter {
            "status" => client.status().as_string().unwrap(),
            "expiresAt" => {
                let expires = client.expires_at().as_f64();
                assert!(expires.is_none_or(|t| t > now), "{getter}: {expires:?}");
                client.status().as_string().unwrap()
            }
            _ => {
                let next = client.next_refresh_at().as_f64();
                assert!(next.is_none_or(|t| t >= now - 1.0), "{getter}: {next:?}");
                client.status().as_string().unwrap()
            }
        };
        assert_ne!(status, "valid", "after reading {getter}");
        assert!(client.expires_at().as_f64().is_none_or(|t| t > now));
        let statuses = strings(&events.statuses());
        assert_eq!(
            statuses.last().map(String::as_str),
            Some(status.as_str()),
            "{getter}: {statuses:?}"
        );
        assert_eq!(
            events.details("expired").length(),
            1,
            "{getter}: the expired event"
        );
        drop(_back);
        finish(client).await;
    }
}

#[wasm_bindgen_test]
async fn focus_and_pageshow_recheck_without_spending_requests() {
    install_fake_broker();
    answer(token_answer("tok-focus", 600.0, JsValue::UNDEFINED));
    let client = TokenClient::new(options(&[])).unwrap();
    settle(client.get_token()).await.unwrap();
    fire("window", "focus");
    fire("window", "pageshow");
    fire("window", "online");
    assert_eq!(client.request_count(), 1.0, "nothing was due");
    assert_eq!(client.status().as_string().unwrap(), "valid");
    finish(client).await;
}

#[wasm_bindgen_test]
async fn dispose_unregisters_the_page_listeners() {
    install_fake_broker();
    answer(special_answer("networkError"));
    answer_always(token_answer("tok-gone", 600.0, JsValue::UNDEFINED));
    let client = TokenClient::new(options(&[])).unwrap();
    let _ = settle(client.get_token()).await;
    client.dispose();
    fire("window", "online");
    set_hidden(true);
    set_hidden(false);
    restore_visibility();
    wait_ms(100.0).await;
    assert_eq!(client.request_count(), 1.0);
    assert_eq!(requests(), 1, "no request after dispose");
    finish(client).await;
}
