#![cfg(not(target_arch = "wasm32"))]
//! Native tests of cross-tab sharing in the engine (`shareAcrossTabs`): `Machine::adopt`,
//! `fetch_needed`, `ask_peers_first`, `skip_fetch`, and `token::grant_from_peer`, which
//! validates a token received from another tab as strictly as a broker answer.

use std::sync::atomic::{AtomicU64, Ordering};

use speech_token_client::engine::machine::PEER_ASK_WINDOW_MS;
use speech_token_client::engine::token::{grant_from_peer, parse_grant};
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
    grant_from_peer(name(), WALL0 + expires_s * 1000.0 - now.wall_ms).expect("peer grant")
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
// grant_from_peer

#[test]
fn a_peer_hands_over_only_a_token_and_how_long_it_is_usable() {
    let g = grant_from_peer("abc.def", 300_000.0).unwrap();
    assert_eq!(g.lifetime_ms, 300_000.0);
    assert_eq!(g.token.expose(), "abc.def");
    assert_eq!(g.region, None, "a peer never sets where the audio goes");
    assert_eq!(g.endpoint, None);
}

#[test]
fn peer_tokens_are_validated_like_a_broker_answer() {
    let ok = |t: &str| grant_from_peer(t, 60_000.0);
    assert!(ok("good-token").is_ok());
    for bad in ["", "has space", "quo\"te", "back\\slash", "tab\t"] {
        assert!(ok(bad).is_err(), "{bad:?} must be rejected");
    }
    assert!(ok(&"x".repeat(16 * 1024 + 1)).is_err());
    let lifetime = |usable_for: f64| {
        grant_from_peer("t", usable_for)
            .err()
            .map(|e| e == Error::InvalidResponse(Invalid::Lifetime))
    };
    assert_eq!(lifetime(500.0), Some(true), "under 1 s");
    assert_eq!(lifetime(-1.0), Some(true), "already expired");
    assert_eq!(lifetime(25.0 * 3_600_000.0), Some(true), "over 24 h");
    assert_eq!(lifetime(f64::NAN), Some(true));
    assert_eq!(lifetime(f64::INFINITY), Some(true));
    assert_eq!(lifetime(1_000.0), None, "1 s is accepted");
}

#[test]
fn peer_errors_never_contain_the_token() {
    let secret = "SeCrEt-peer-token has-a-space";
    let e = grant_from_peer(secret, 60_000.0).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("SeCrEt"));
}

/// The forged-message attack (issue "Trust boundaries"): a same-origin page posts a token with a
/// far expiry. It cannot change the route, cannot keep its token past this tab's own token
/// lifetime, and cannot make real tokens look "not newer" afterwards.
#[test]
fn a_forged_peer_token_cannot_redirect_or_pin_the_tab() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let body = format!(
        r#"{{"token":"{}","expiresIn":600,"region":"westeurope"}}"#,
        name()
    );
    let own = parse_grant(&body, Some("application/json"), &SerdeJson, WALL0).unwrap();
    let _ = m.response(at(0.0), Ok(own), 0.5);
    let route = m.route().cloned();
    assert_eq!(
        route.as_ref().and_then(|r| r.region.as_deref()),
        Some("westeurope")
    );
    // Forged: "usable for 23 hours".
    let now = at(10.0);
    let forged = grant_from_peer("forged.token.value", 23.0 * 3_600_000.0).unwrap();
    let d = m.adopt(now, forged, 0.5);
    assert!(
        has(&d, &Effect::Publish),
        "taken (it looks newer), but capped"
    );
    assert_eq!(
        m.route().cloned(),
        route,
        "the route is this tab's own broker's"
    );
    let expires = m.expires_at().unwrap();
    assert!(
        expires <= now.wall_ms + 600_000.0 + 1e-6,
        "kept no longer than this tab's own token lifetime: {} s",
        (expires - now.wall_ms) / 1000.0
    );
    // The tab still refreshes on its own schedule (before 600 s), from its own broker.
    let next = m.next_refresh_at().unwrap();
    assert!(next < now.wall_ms + 600_000.0);
    // A real peer token later, fresher than what is left of the forged one, is adopted.
    let later = at(200.0);
    let real = grant_from_peer(name(), 590_000.0).unwrap();
    let d = m.adopt(later, real, 0.5);
    assert!(
        has(&d, &Effect::Publish),
        "a real token is not refused as 'not newer'"
    );
}

/// Adopted tokens are judged by both clocks, as fetched ones: a wall clock stepped back an hour
/// does not extend them, and no extra slack is taken off (the sender already kept its own).
#[test]
fn adopted_tokens_are_judged_by_both_clocks_and_keep_the_senders_slack() {
    let mut m = holding();
    let now = at(100.0);
    let _ = m.adopt(now, grant_from_peer(name(), 590_000.0).unwrap(), 0.0);
    // Usable until exactly 590 s after receipt, by the monotonic clock even if the wall clock
    // jumps back an hour.
    let jumped = Now::new(
        now.wall_ms - 3_600_000.0 + 590_001.0,
        now.mono_ms + 590_001.0,
    );
    assert!(m.token_at(jumped).is_none(), "the monotonic clock ends it");
    let just_before = Now::new(now.wall_ms + 589_999.0, now.mono_ms + 589_999.0);
    assert!(
        m.token_at(just_before).is_some(),
        "no second slack taken off"
    );
}

/// A tab that never had its own broker answer does not know where the audio goes: it fetches
/// (a peer's token does not make that fetch pointless) and does not ask peers first.
#[test]
fn a_tab_without_its_own_broker_answer_fetches_once() {
    let mut m = Machine::new(RefreshPolicy::default());
    let d = m.demand(at(0.0));
    assert_eq!(fetches(&d), 1);
    assert!(!m.ask_peers_first(at(0.0)), "no route yet: ask the broker");
    let now = at(0.05);
    let d = m.adopt(now, grant_from_peer(name(), 300_000.0).unwrap(), 0.5);
    assert!(
        !has(&d, &Effect::Publish),
        "no peer token before the tab's own answer: {d:?}"
    );
    assert!(m.token().is_none());
    assert!(m.fetch_needed(now), "the route is still unknown");
}

/// A same-origin page re-posting tokens before every refresh cannot keep a tab off its own
/// broker: after PEER_ONLY_LIFETIMES of its own token lifetime, the tab asks its broker again
/// and takes no peer token until it has.
#[test]
fn peer_tokens_cannot_keep_a_tab_off_its_own_broker() {
    let mut m = holding(); // own 600 s token at 0 s
    let mut t = 400.0;
    let mut own_requests = 0;
    while t < 6.0 * 3_600.0 {
        let now = at(t);
        let _ = m.adopt(now, peer_grant(now, t + 590.0), 0.5);
        let d = m.tick(now);
        if fetches(&d) == 1 || (m.is_fetching() && m.fetch_needed(now)) {
            own_requests += 1;
            let _ = m.response(at(t + 0.1), Ok(broker_grant(600.0)), 0.5);
        } else if m.is_fetching() {
            let _ = m.skip_fetch(now);
        }
        t += 400.0;
    }
    assert!(
        own_requests >= 5,
        "6 hours of forged tokens: the tab asked its own broker {own_requests} times"
    );
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

/// A tab whose token ran out (a laptop slept) and that knows its route asks its peers first;
/// a peer's token serves the waiting caller and the request is never sent.
#[test]
fn a_waiting_caller_is_served_by_a_peer_and_the_fetch_is_skipped() {
    let mut m = holding();
    let woke = at(1_000.0);
    let d = m.demand(woke);
    assert!(has(&d, &Effect::Expired));
    assert_eq!(fetches(&d), 1);
    assert!(m.ask_peers_first(woke), "route known, no usable token");
    assert!(m.fetch_needed(woke));
    let now = at_ms(1_000_000.0 + PEER_ASK_WINDOW_MS / 2.0);
    let d = m.adopt(now, peer_grant(now, 1_500.0), 0.5);
    assert!(has(&d, &Effect::Publish));
    assert!(has(&d, &Effect::ServeWaiters));
    assert_eq!(m.waiters(), 0);
    assert!(m.token_at(now).is_some());
    assert!(!m.ask_peers_first(now));
    assert!(
        !m.fetch_needed(now),
        "the peer's token made the request pointless"
    );
    assert_eq!(m.requests(), 2);
    let d = m.skip_fetch(now);
    assert_eq!(fetches(&d), 0);
    assert!(!m.is_fetching());
    assert_eq!(m.requests(), 1, "a skipped request was never sent");
    assert_eq!(m.status(), Status::Valid);
    // The adopted token keeps this tab's own schedule: refresh before it ends, with the margin.
    // Usable until 1500 s as the peer said; `expiresAt` one slack (5 s) later.
    let ends = m.expires_at().unwrap();
    assert!((ends - (WALL0 + 1_505_000.0)).abs() < 1e-6, "{ends}");
    assert!(m.token_at(at(1_499.9)).is_some() && m.token_at(at(1_500.0)).is_none());
    let refresh = m.next_refresh_at().unwrap();
    assert!(refresh < ends - 100_000.0, "{refresh}");
}

#[test]
fn an_older_or_equal_token_is_ignored() {
    let mut m = holding();
    let now = at(100.0);
    // The held token is usable until 595 s: a peer's token usable until then or earlier is not
    // newer.
    for usable_until in [500.0, 595.0] {
        let d = m.adopt(now, peer_grant(now, usable_until), 0.5);
        assert!(
            !has(&d, &Effect::Publish),
            "usable until {usable_until}: {d:?}"
        );
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
    // Usable until 599 s; it expires (for `expiresAt`) one slack later, as the sender's did.
    assert_eq!(m.expires_at(), Some(WALL0 + 604_000.0));
    assert!(m.token_at(at(598.9)).is_some());
    assert!(m.token_at(at(599.0)).is_none());
}

#[test]
fn adopting_clears_failures_and_pending_retries() {
    // A refresh refused with 401 stops retries: a peer's token does not make that vanish (the
    // app's `unauthorized` state stays until its refreshNow()).
    let mut m = holding();
    let d = m.timer_fired(at(490.0));
    assert_eq!(fetches(&d), 1);
    let d = m.response(at(490.1), Err(Error::Unauthorized), 0.5);
    assert!(has(&d, &Effect::Failed(Error::Unauthorized)));
    assert_eq!(m.status(), Status::Error);
    let now = at(491.0);
    let d = m.adopt(now, peer_grant(now, 1091.0), 0.5);
    assert!(
        !has(&d, &Effect::Publish),
        "a stopped tab takes no peer token: {d:?}"
    );
    assert_eq!(m.status(), Status::Error);

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
fn a_refresh_now_caller_is_answered_by_the_broker_not_by_a_peer() {
    let mut m = holding();
    let d = m.refresh_now(at(10.0));
    assert_eq!(fetches(&d), 1);
    assert!(m.fetch_needed(at(10.0)), "refreshNow wants a new token");
    assert!(!m.ask_peers_first(at(10.0)), "a usable token is held");
    let now = at(10.1);
    let d = m.adopt(now, peer_grant(now, 610.0), 0.5);
    assert!(
        has(&d, &Effect::Publish),
        "the newer token is taken for getToken() callers"
    );
    assert!(
        !has(&d, &Effect::ResolveWaiters),
        "but refreshNow() asked the broker: {d:?}"
    );
    assert_eq!(m.waiters(), 1);
    assert!(m.fetch_needed(now), "the request still goes to the broker");
    let d = m.response(at(10.5), Ok(broker_grant(600.0)), 0.5);
    assert!(has(&d, &Effect::ResolveWaiters));
}

#[test]
fn a_short_peer_token_satisfies_the_fetch_and_is_refreshed_on_its_own_schedule() {
    // This tab's own tokens live 20 s (margin capped at half the lifetime).
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let _ = m.response(at(0.0), Ok(broker_grant(20.0)), 0.0);
    let _ = m.demand(at(50.0)); // the token ran out: a fetch starts
    let now = at(50.05);
    // A fresh peer token: usable for 15 s (20 s minus the sender's 5 s slack).
    let g = grant_from_peer(name(), 15_000.0).unwrap();
    let d = m.adopt(now, g, 0.0);
    assert!(has(&d, &Effect::Publish));
    assert!(!m.fetch_needed(now));
    let _ = m.skip_fetch(now);
    assert_eq!(m.next_refresh_at(), Some(now.wall_ms + 10_000.0));
    assert_eq!(fetches(&m.timer_fired(at(60.0))), 0);
    assert_eq!(fetches(&m.timer_fired(at(60.06))), 1);
    let d = m.response(at(60.1), Ok(broker_grant(600.0)), 0.5);
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
    let mut m = holding();
    let _ = m.demand(at(700.0)); // the own token ran out: a fetch starts
    let now = at(700.0);
    let d = m.adopt(now, peer_grant(now, 760.0), 0.5);
    assert!(has(&d, &Effect::Publish));
    let _ = m.skip_fetch(now);
    let t = |wall_s: f64, mono_s: f64| Now::new(WALL0 + wall_s * 1000.0, mono_s * 1000.0);
    assert!(m.token_at(t(730.0, 730.0)).is_some());
    // Usable for 60 s (the sender kept its slack): until 760 s on either clock.
    assert!(m.token_at(t(759.0, 759.0)).is_some());
    assert!(m.token_at(t(760.001, 701.0)).is_none());
    assert!(m.token_at(t(-9e3, 760.001)).is_none());
    assert!(m.ready_token(t(760.001, 701.0)).is_none());
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
    // maxLifetime 60 s caps this tab's own tokens, and so the peer tokens it takes.
    let mut m = Machine::new(RefreshPolicy::new(None, None, Some(60.0)).unwrap());
    let _ = m.demand(at(0.0));
    let _ = m.response(at(0.0), Ok(broker_grant(600.0)), 0.5);
    let now = at(30.0);
    let d = m.adopt(now, peer_grant(now, 3600.0), 0.5);
    assert!(has(&d, &Effect::Publish));
    assert!(m.expires_at().unwrap() <= now.wall_ms + 60_000.0);
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

/// A broker answer carrying `token` (a broker's cache hands the same token to every caller, with
/// what is left of its lifetime).
fn cached_answer(token: &str, remaining_s: f64) -> Grant {
    let body = format!(r#"{{"token":"{token}","expiresIn":{remaining_s}}}"#);
    parse_grant(&body, Some("application/json"), &SerdeJson, WALL0).expect("test grant")
}

/// A caching broker (the reference broker keeps one upstream token and hands every caller what
/// is left of it) answers a tab that opened late with a token already partly used. That shorter
/// lifetime must not become the measure of every peer token the tab adopts: capped to it, the
/// tab's adopted tokens run out before its peers' copies, it refreshes before them, is handed the
/// same cached token again (shorter still), and spends one broker request every refresh cycle
/// for good. Seen in the 5-tab e2e test as 18–20 requests where 12 do. The broker's own answer
/// repeating a token this tab already held shows how long that token really lives.
#[test]
fn a_cached_broker_answer_does_not_make_the_tab_refresh_before_its_peers_for_good() {
    const FULL_S: f64 = 600.0;
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    // Opened late: the broker's cached token has 420 s of its 600 left.
    let _ = m.response(at(0.0), Ok(cached_answer("cached-0", 420.0)), 0.5);
    // The first cycle: a peer refreshes first and shares a fresh token, usable 595 s.
    let shared_at = 290.0;
    let _ = m.adopt(
        at(shared_at),
        grant_from_peer("fresh-1", (FULL_S - 5.0) * 1000.0).unwrap(),
        0.5,
    );
    // Capped by the 420 s answer, this tab plans its refresh before its peers; when it asks,
    // the broker hands it the same token with what is left of it.
    let early = (m.next_refresh_at().unwrap() - WALL0) / 1000.0;
    let d = m.tick(at(early));
    assert_eq!(fetches(&d), 1, "the refresh at {early} s starts a fetch");
    let left = FULL_S - (early - shared_at);
    let _ = m.response(at(early), Ok(cached_answer("fresh-1", left)), 0.5);
    // The next cycle: a peer shares the next fresh token at its usual time. This tab must plan
    // it as its peers do (a 600 s token), not as one capped to what was left of the last one.
    let now = at(shared_at + FULL_S - 1.1 * 120.0);
    let d = m.adopt(
        now,
        grant_from_peer("fresh-2", (FULL_S - 5.0) * 1000.0).unwrap(),
        0.5,
    );
    assert!(
        has(&d, &Effect::Publish),
        "the fresh token is adopted: {d:?}"
    );
    let usable_s = m.usable_for(now).unwrap() / 1000.0;
    assert!(
        usable_s > FULL_S - 6.0,
        "usable {usable_s:.1} s, capped to the cached answer's lifetime ({left:.1} s)"
    );
    let refresh_in_s = (m.next_refresh_at().unwrap() - now.wall_ms) / 1000.0;
    assert!(
        refresh_in_s >= FULL_S - 1.1 * 120.0 - 1.0,
        "refreshes {refresh_in_s:.1} s after adopting, before its peers would"
    );
}

/// The other kind of repeating broker: the same token stamped with a fresh lifetime on every
/// answer (the reference broker's entra mode caps `expiresIn` at `--max-ttl` while the token it
/// holds lives an hour). Its repeats say nothing about how long the token has lived: the cap on
/// peer tokens must stay that stated lifetime, or the tab would plan each peer token as far into
/// a longer life, refresh before its peers, and soon at once on adoption.
#[test]
fn a_broker_that_restamps_the_same_token_does_not_stretch_the_cap() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let _ = m.response(at(0.0), Ok(cached_answer("restamped", 600.0)), 0.5);
    let mut t = 0.0;
    for _ in 0..5 {
        t = (m.next_refresh_at().unwrap() - WALL0) / 1000.0;
        let d = m.tick(at(t));
        assert_eq!(fetches(&d), 1, "the refresh at {t} s starts a fetch");
        let _ = m.response(at(t), Ok(cached_answer("restamped", 600.0)), 0.5);
        // A peer told the same stamp shares the same token meanwhile.
        let now = at(t + 1.0);
        let _ = m.adopt(now, grant_from_peer("restamped", 594_000.0).unwrap(), 0.5);
    }
    // The next fresh token a peer shares is planned as a 600 s token.
    let now = at(t + 100.0);
    let d = m.adopt(now, grant_from_peer("fresh", 595_000.0).unwrap(), 0.5);
    assert!(has(&d, &Effect::Publish), "adopted: {d:?}");
    let usable_s = m.usable_for(now).unwrap() / 1000.0;
    assert!(usable_s <= 595.0 + 1e-6, "usable {usable_s:.1} s");
    let refresh_in_s = (m.next_refresh_at().unwrap() - now.wall_ms) / 1000.0;
    assert!(
        refresh_in_s >= 600.0 - 1.1 * 120.0 - 1.0,
        "refreshes {refresh_in_s:.1} s after adopting, before its peers would"
    );
}

// ---------------------------------------------------------------------------------------------
// the cross-tab lock

/// Found by an outside attack review: a fetch waited for the cross-tab lock for the whole
/// request timeout whatever time the held token had left, so a tab holding the lock made the
/// token lapse. The wait ends a round trip (the refresh lead) before the token stops being
/// usable; 0 means "fetch alone".
#[test]
fn the_lock_wait_never_outlasts_the_held_token() {
    let timeout = 10_000.0;
    // Nothing held (a first token, or one that ran out): the request timeout bounds the wait.
    let m = Machine::new(RefreshPolicy::default());
    assert_eq!(m.lock_wait(at(0.0), timeout), timeout);
    // A 600 s token at its refresh (~480 s): usable until 595 s, far enough.
    let mut m = holding();
    assert_eq!(fetches(&m.tick(at(480.0))), 1);
    assert_eq!(m.lock_wait(at(480.0), timeout), timeout);
    // Near its usable time: until 5 s (the lead) before it, then nothing.
    assert_eq!(m.lock_wait(at(585.0), timeout), 5_000.0);
    assert_eq!(m.lock_wait(at(590.0), timeout), 0.0);
    assert_eq!(m.lock_wait(at(594.0), timeout), 0.0);
    // A 20 s token refreshes at 10 s, is usable until 15 s: a lead of 5 s leaves no wait.
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let _ = m.response(at(0.0), Ok(broker_grant(20.0)), 0.0);
    assert_eq!(fetches(&m.tick(at(10.0))), 1);
    assert_eq!(m.lock_wait(at(10.0), timeout), 0.0);
}

/// A broker that re-stamps its cached token (the reference broker in entra mode hands every
/// caller the same token with a fresh `expiresIn`) has the first tab to refresh share that same
/// token, usable longer than this tab's copy: taking it spares this tab's own request. A guard
/// tried in review (never take the held token from a peer again, against a page re-posting it)
/// broke this, making every tab fetch every cycle, and protected nothing: such a page can as
/// well re-post an older token after each refresh (README, "Trust model").
#[test]
fn a_peers_restamped_copy_of_the_held_token_spares_this_tabs_request() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let _ = m.response(at(0.0), Ok(cached_answer("restamped", 600.0)), 0.0); // refresh at 480 s
                                                                             // A peer's broker re-stamped it at 470 s; the peer shares it, usable for 595 s.
    let d = m.adopt(
        at(470.0),
        grant_from_peer("restamped", 595_000.0).unwrap(),
        0.0,
    );
    assert!(has(&d, &Effect::Publish), "{:?}", d.effects);
    assert_eq!(fetches(&m.tick(at(480.0))), 0, "the refresh moved with it");
}
