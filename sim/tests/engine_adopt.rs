#![cfg(not(target_arch = "wasm32"))]
//! Native tests of cross-tab sharing in the engine (`shareAcrossTabs`): `Machine::adopt`,
//! `fetch_needed`, `ask_peers_first`, `skip_fetch`, and `token::grant_from_parts`, which
//! validates a token received from another tab as strictly as a broker answer.

use std::sync::atomic::{AtomicU64, Ordering};

use speech_token_client::engine::machine::PEER_ASK_WINDOW_MS;
use speech_token_client::engine::token::{grant_from_parts, parse_grant};
use speech_token_client::engine::{Decision, Effect, Grant, Machine, Now, RefreshPolicy, Status};
use speech_token_client::error::{Error, Invalid};
use speech_token_sim::SerdeJson;

const WALL0: f64 = 1_700_000_000_000.0;

fn at_ms(ms: f64) -> Now {
    Now::new(WALL0 + ms, ms)
}

fn at(s: f64) -> Now {
    at_ms(s * 1000.0)
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

fn name() -> String {
    format!("tok-{}", SERIAL.fetch_add(1, Ordering::Relaxed))
}

/// A broker answer with the given lifetime (seconds).
fn broker_grant(lifetime_s: f64) -> Grant {
    let body = format!(r#"{{"token":"{}","expiresIn":{lifetime_s}}}"#, name());
    parse_grant(&body, Some("application/json"), &SerdeJson, WALL0).expect("test grant")
}

/// A peer's token that expires at `expires_s` (seconds after the test began), received at `now`.
fn peer_grant(now: Now, expires_s: f64) -> Grant {
    grant_from_parts(name(), WALL0 + expires_s * 1000.0, None, None, now.wall_ms)
        .expect("peer grant")
}

fn has(d: &Decision, e: &Effect) -> bool {
    d.effects.contains(e)
}

fn fetches(d: &Decision) -> usize {
    d.effects.iter().filter(|e| **e == Effect::Fetch).count()
}

/// A machine holding a 600 s broker token fetched at t = 0 (expires at 600 s, refresh ~480 s).
fn holding() -> Machine {
    let mut m = Machine::new(RefreshPolicy::default());
    let d = m.demand(at(0.0));
    assert_eq!(fetches(&d), 1);
    let d = m.response(at(0.0), Ok(broker_grant(600.0)), 0.0);
    assert!(has(&d, &Effect::Publish));
    m
}

// ---------------------------------------------------------------------------------------------
// grant_from_parts

#[test]
fn parts_lifetime_is_counted_from_now() {
    let now = at(10.0);
    let g = grant_from_parts(
        "abc.def",
        now.wall_ms + 300_000.0,
        Some("westeurope".into()),
        Some("wss://x.example/".into()),
        now.wall_ms,
    )
    .unwrap();
    assert_eq!(g.lifetime_ms, 300_000.0);
    assert_eq!(g.token.expose(), "abc.def");
    assert_eq!(g.region.as_deref(), Some("westeurope"));
    assert_eq!(g.endpoint.as_deref(), Some("wss://x.example/"));
}

#[test]
fn parts_are_validated_like_a_broker_answer() {
    let now = WALL0;
    let ok = |t: &str| grant_from_parts(t, now + 60_000.0, None, None, now);
    assert!(ok("good-token").is_ok());
    for bad in ["", "has space", "quo\"te", "back\\slash", "tab\t"] {
        assert!(ok(bad).is_err(), "{bad:?} must be rejected");
    }
    assert!(ok(&"x".repeat(16 * 1024 + 1)).is_err());
    let lifetime = |expires: f64| {
        grant_from_parts("t", expires, None, None, now)
            .err()
            .map(|e| e == Error::InvalidResponse(Invalid::Lifetime))
    };
    assert_eq!(lifetime(now + 500.0), Some(true), "under 1 s");
    assert_eq!(lifetime(now - 1.0), Some(true), "already expired");
    assert_eq!(lifetime(now + 25.0 * 3_600_000.0), Some(true), "over 24 h");
    assert_eq!(lifetime(f64::NAN), Some(true));
    assert_eq!(lifetime(f64::INFINITY), Some(true));
    assert_eq!(lifetime(now + 1_000.0), None, "1 s is accepted");
    let region = |r: &str| grant_from_parts("t", now + 60_000.0, Some(r.into()), None, now);
    assert!(region("eastus2").is_ok());
    assert!(region("East US").is_err());
    let endpoint = |e: &str| grant_from_parts("t", now + 60_000.0, None, Some(e.into()), now);
    assert!(endpoint("wss://speech.example/x").is_ok());
    assert!(endpoint("ws://127.0.0.1:9/x").is_ok());
    assert!(endpoint("ws://evil.example/x").is_err());
    assert!(endpoint("https://user@x.example/").is_err());
}

#[test]
fn parts_errors_never_contain_the_token() {
    let secret = "SeCrEt-peer-token has-a-space";
    let e = grant_from_parts(secret, WALL0 + 60_000.0, None, None, WALL0).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("SeCrEt"));
}

// ---------------------------------------------------------------------------------------------
// adopt

#[test]
fn an_idle_client_stays_lazy() {
    let mut m = Machine::new(RefreshPolicy::default());
    let now = at(1.0);
    let d = m.adopt(now, peer_grant(now, 600.0), 0.5);
    assert!(d.effects.is_empty(), "{d:?}");
    assert_eq!(m.status(), Status::Idle);
    assert!(m.token().is_none());
}

#[test]
fn a_waiting_caller_is_served_by_a_peer_and_the_fetch_is_skipped() {
    let mut m = Machine::new(RefreshPolicy::default());
    let d = m.demand(at(0.0));
    assert_eq!(fetches(&d), 1);
    assert!(m.ask_peers_first(at(0.0)));
    assert!(m.fetch_needed(at(0.0)));
    let now = at_ms(PEER_ASK_WINDOW_MS / 2.0);
    let d = m.adopt(now, peer_grant(now, 600.0), 0.5);
    assert!(has(&d, &Effect::Publish));
    assert!(has(&d, &Effect::ResolveWaiters));
    assert_eq!(m.waiters(), 0);
    assert!(m.token_at(now).is_some());
    assert!(!m.ask_peers_first(now));
    assert!(
        !m.fetch_needed(now),
        "the peer's token made the request pointless"
    );
    assert_eq!(m.requests(), 1);
    let d = m.skip_fetch(now);
    assert_eq!(fetches(&d), 0);
    assert!(!m.is_fetching());
    assert_eq!(m.requests(), 0, "a skipped request was never sent");
    assert_eq!(m.status(), Status::Valid);
    // The adopted token keeps this tab's own schedule: refresh before expiry, with the margin.
    let refresh = m.next_refresh_at().unwrap();
    assert!(refresh < WALL0 + 600_000.0 - 120_000.0 + 1.0, "{refresh}");
    assert_eq!(m.expires_at(), Some(WALL0 + 600_000.0));
}

#[test]
fn an_older_or_equal_token_is_ignored() {
    let mut m = holding();
    let now = at(100.0);
    for expires in [500.0, 600.0] {
        let d = m.adopt(now, peer_grant(now, expires), 0.5);
        assert!(!has(&d, &Effect::Publish), "expires {expires}: {d:?}");
        assert_eq!(m.expires_at(), Some(WALL0 + 600_000.0));
    }
}

#[test]
fn a_newer_token_replaces_the_held_one_and_moves_the_refresh() {
    let mut m = holding();
    let before = m.next_refresh_at().unwrap();
    let now = at(470.0);
    let d = m.adopt(now, peer_grant(now, 1070.0), 0.5);
    assert!(has(&d, &Effect::Publish));
    assert!(!has(&d, &Effect::ResolveWaiters), "nobody waited");
    assert_eq!(m.expires_at(), Some(WALL0 + 1_070_000.0));
    assert!(m.next_refresh_at().unwrap() > before + 400_000.0);
    // Nothing is due at the old refresh time any more.
    let d = m.timer_fired(at(481.0));
    assert_eq!(fetches(&d), 0);
}

#[test]
fn a_held_token_past_its_usable_point_does_not_block_an_earlier_expiring_one() {
    let mut m = holding(); // expires at 600 s, usable until 595 s
    let now = at(596.0);
    let d = m.adopt(now, peer_grant(now, 599.0), 0.5);
    assert!(has(&d, &Effect::Publish), "{d:?}");
    assert_eq!(m.expires_at(), Some(WALL0 + 599_000.0));
    assert!(m.token_at(at(599.0)).is_none());
}

#[test]
fn adopting_clears_failures_and_pending_retries() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let d = m.response(at(0.1), Err(Error::Unauthorized), 0.5);
    assert!(d
        .effects
        .iter()
        .any(|e| matches!(e, Effect::RejectWaiters(_))));
    assert_eq!(m.status(), Status::Error);
    let now = at(1.0);
    let d = m.adopt(now, peer_grant(now, 600.0), 0.5);
    assert!(has(&d, &Effect::Publish));
    assert_eq!(m.status(), Status::Valid);
    assert!(m.next_refresh_at().is_some(), "refreshes are planned again");

    // A network failure schedules a backoff retry; a peer's token makes it unnecessary.
    let mut m = holding();
    let d = m.timer_fired(at(490.0));
    assert_eq!(fetches(&d), 1);
    let _ = m.response(at(490.5), Err(Error::Network), 0.5);
    assert_eq!(m.status(), Status::Refreshing, "retry scheduled");
    let now = at(491.0);
    let d = m.adopt(now, peer_grant(now, 1091.0), 0.5);
    assert!(has(&d, &Effect::Publish));
    assert_eq!(m.status(), Status::Valid);
    assert!(m.next_refresh_at().unwrap() > WALL0 + 900_000.0);
}

#[test]
fn a_refresh_now_caller_takes_a_newer_peer_token() {
    let mut m = holding();
    let d = m.refresh_now(at(10.0));
    assert_eq!(fetches(&d), 1);
    assert!(m.fetch_needed(at(10.0)), "refreshNow wants a new token");
    assert!(!m.ask_peers_first(at(10.0)), "a usable token is held");
    let now = at(10.1);
    let d = m.adopt(now, peer_grant(now, 610.0), 0.5);
    assert!(has(&d, &Effect::ResolveWaiters));
    assert!(!m.fetch_needed(now));
}

#[test]
fn a_short_peer_token_satisfies_the_fetch_and_is_refreshed_on_its_own_schedule() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let now = at(0.05);
    // A 20 s token: margin capped at half the lifetime, so it is never due on arrival.
    let g = grant_from_parts(name(), now.wall_ms + 20_000.0, None, None, now.wall_ms).unwrap();
    let d = m.adopt(now, g, 0.0);
    assert!(has(&d, &Effect::Publish));
    assert!(!m.fetch_needed(now));
    let _ = m.skip_fetch(now);
    assert_eq!(m.next_refresh_at(), Some(now.wall_ms + 10_000.0));
    assert_eq!(fetches(&m.timer_fired(at(10.0))), 0);
    assert_eq!(fetches(&m.timer_fired(at(10.06))), 1);
    let d = m.response(at(10.1), Ok(broker_grant(600.0)), 0.5);
    assert!(has(&d, &Effect::Publish), "the broker's answer replaces it");
}

#[test]
fn a_response_after_adoption_still_lands() {
    let mut m = holding();
    let d = m.timer_fired(at(490.0));
    assert_eq!(fetches(&d), 1);
    let now = at(490.1);
    let _ = m.adopt(now, peer_grant(now, 1090.0), 0.5);
    assert!(m.is_fetching(), "adopt leaves the request in flight");
    let d = m.response(at(490.2), Ok(broker_grant(600.0)), 0.5);
    assert!(has(&d, &Effect::Publish));
    assert!(!m.is_fetching());
    assert_eq!(m.status(), Status::Valid);
}

#[test]
fn skip_fetch_restarts_a_fetch_that_is_still_due() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    assert!(m.fetch_needed(at(0.0)));
    let d = m.skip_fetch(at(0.1));
    assert_eq!(fetches(&d), 1, "a waiting caller still needs a token");
    assert!(m.is_fetching());
    assert_eq!(m.requests(), 1);
}

#[test]
fn skip_fetch_without_a_request_changes_nothing() {
    let mut m = holding();
    let d = m.skip_fetch(at(1.0));
    assert!(d.effects.is_empty(), "{d:?}");
    assert_eq!(m.requests(), 1);
}

#[test]
fn the_adopted_token_expires_on_either_clock() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let now = at(0.0);
    let _ = m.adopt(now, peer_grant(now, 60.0), 0.5);
    let _ = m.skip_fetch(now);
    assert!(m.token_at(Now::new(WALL0 + 30_000.0, 30_000.0)).is_some());
    // 60 s lifetime, 5 s slack: usable until 55 s on either clock.
    assert!(m.token_at(Now::new(WALL0 + 56_000.0, 1_000.0)).is_none());
    assert!(m.token_at(Now::new(WALL0 - 9e6, 56_000.0)).is_none());
    assert!(m.ready_token(Now::new(WALL0 + 56_000.0, 1_000.0)).is_none());
}

#[test]
fn nothing_is_adopted_after_dispose() {
    let mut m = holding();
    let _ = m.dispose();
    let now = at(1.0);
    let d = m.adopt(now, peer_grant(now, 900.0), 0.5);
    assert!(d.effects.is_empty());
    assert!(m.token().is_none());
    assert!(!m.fetch_needed(now));
    assert!(!m.ask_peers_first(now));
    assert!(m.skip_fetch(now).effects.is_empty());
    assert_eq!(m.status(), Status::Disposed);
}

#[test]
fn max_lifetime_applies_to_adopted_tokens() {
    let mut m = Machine::new(RefreshPolicy::new(None, None, Some(60.0)).unwrap());
    let _ = m.demand(at(0.0));
    let now = at(0.0);
    let _ = m.adopt(now, peer_grant(now, 3600.0), 0.5);
    assert_eq!(m.expires_at(), Some(WALL0 + 60_000.0));
}

/// A retry after a failed refresh is a fetch with a purpose even though the held token is not
/// yet due (the retry deadline is cleared when the retry starts): it must not be skipped. A
/// newer peer token makes it pointless again. (Found by the browser suite: the shell asked
/// `fetch_needed` before every send, and automatic retries were skipped.)
#[test]
fn a_retry_after_a_failed_refresh_is_needed_until_a_peer_token_arrives() {
    let mut m = holding();
    let _ = m.refresh_now(at(10.0));
    let _ = m.response(at(10.0), Err(Error::Network), 0.5);
    let next = m.next_refresh_at().expect("a retry is planned");
    let retry_time = at_ms(next - WALL0 + 1.0);
    let d = m.timer_fired(retry_time);
    assert_eq!(fetches(&d), 1, "the retry starts");
    assert!(
        m.fetch_needed(retry_time),
        "a retry is needed although refresh is not due"
    );
    let d = m.adopt(retry_time, peer_grant(retry_time, 700.0), 0.5);
    assert!(has(&d, &Effect::Publish));
    assert!(
        !m.fetch_needed(retry_time),
        "the peer's token made the retry pointless"
    );
}
