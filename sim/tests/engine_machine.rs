#![cfg(not(target_arch = "wasm32"))]
//! Native tests of the refresh state machine (`engine::machine`), one test per rule of docs/ARCHITECTURE.md
//! "Refresh engine rules", with explicit times on both clocks.

use std::sync::atomic::{AtomicU64, Ordering};

use speech_token_client::engine::backoff::retry_delay;
use speech_token_client::engine::machine::{retry_rule, Retry};
use speech_token_client::engine::policy::MIN_MARGIN_MS;
use speech_token_client::engine::token::parse_grant;
use speech_token_client::engine::{
    Decision, Effect, Grant, Machine, Now, RefreshPolicy, Status, TimerPlan,
};
use speech_token_client::error::{Error, Invalid};
use speech_token_sim::SerdeJson;

/// Wall-clock origin of every test (epoch ms).
const WALL0: f64 = 1_700_000_000_000.0;

/// Both clocks `ms` milliseconds after the test began (no sleep, no clock change).
fn at_ms(ms: f64) -> Now {
    Now::new(WALL0 + ms, ms)
}

/// Both clocks `s` seconds after the test began.
fn at(s: f64) -> Now {
    at_ms(s * 1000.0)
}

/// The clocks disagree: wall `wall_s` and monotonic `mono_s` seconds after the start.
fn clocks(wall_s: f64, mono_s: f64) -> Now {
    Now::new(WALL0 + wall_s * 1000.0, mono_s * 1000.0)
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

/// A validated grant with a unique token and the given lifetime (seconds).
fn grant(lifetime_s: f64) -> Grant {
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    grant_named(&format!("tok-{n}"), lifetime_s)
}

fn grant_named(name: &str, lifetime_s: f64) -> Grant {
    let body = format!(r#"{{"token":"{name}","expiresIn":{lifetime_s}}}"#);
    parse_grant(&body, Some("application/json"), &SerdeJson, WALL0).expect("test grant")
}

fn count(d: &Decision, pred: impl Fn(&Effect) -> bool) -> usize {
    d.effects.iter().filter(|e| pred(e)).count()
}

fn fetches(d: &Decision) -> usize {
    count(d, |e| *e == Effect::Fetch)
}

fn has(d: &Decision, effect: &Effect) -> bool {
    d.effects.contains(effect)
}

fn served(d: &Decision) -> bool {
    d.effects
        .iter()
        .any(|e| matches!(e, Effect::ServeWaiters | Effect::ResolveWaiters))
}

fn rejected_with(d: &Decision) -> Option<Error> {
    d.effects.iter().find_map(|e| match e {
        Effect::RejectWaiters(err) => Some(*err),
        _ => None,
    })
}

/// The error one new caller was rejected with at once (`Effect::RejectOne`), if any.
fn rejected_one(d: &Decision) -> Option<Error> {
    d.effects.iter().find_map(|e| match e {
        Effect::RejectOne(err) => Some(*err),
        _ => None,
    })
}

fn statuses(d: &Decision) -> Vec<Status> {
    d.effects
        .iter()
        .filter_map(|e| match e {
            Effect::StatusChanged(s) => Some(*s),
            _ => None,
        })
        .collect()
}

fn arm_delay(d: &Decision) -> f64 {
    match d.timer {
        TimerPlan::Arm(ms) => ms,
        other => panic!("expected an armed timer, got {other:?}"),
    }
}

fn pos(d: &Decision, effect: &Effect) -> usize {
    d.effects
        .iter()
        .position(|e| e == effect)
        .unwrap_or_else(|| panic!("{effect:?} missing from {:?}", d.effects))
}

/// A machine holding a `lifetime_s` token whose request was sent at 0 s and answered at 0.5 s,
/// with refresh jitter `jitter`.
fn with_token(policy: RefreshPolicy, lifetime_s: f64, jitter: f64) -> Machine {
    let mut m = Machine::new(policy);
    let d = m.demand(at(0.0));
    assert_eq!(fetches(&d), 1);
    let d = m.response(at(0.5), Ok(grant(lifetime_s)), jitter);
    assert!(has(&d, &Effect::Publish));
    assert!(has(&d, &Effect::ResolveWaiters));
    assert_eq!(m.status(), Status::Valid);
    m
}

fn default_with_token(lifetime_s: f64) -> Machine {
    with_token(RefreshPolicy::default(), lifetime_s, 0.0)
}

// ---------------------------------------------------------------------------------------------
// single flight

#[test]
fn cold_demand_starts_exactly_one_fetch() {
    let mut m = Machine::new(RefreshPolicy::default());
    assert_eq!(m.status(), Status::Idle);
    assert!(m.ready_token(at(0.0)).is_none());
    let d = m.demand(at(0.0));
    assert_eq!(
        d.effects,
        vec![Effect::Fetch, Effect::StatusChanged(Status::Fetching)]
    );
    assert_eq!(d.timer, TimerPlan::Keep, "no timer while fetching cold");
    assert!(m.is_fetching());
    assert_eq!(m.requests(), 1);
    assert_eq!(m.waiters(), 1);
    assert!(m.token().is_none());
    assert_eq!(m.next_refresh_at(), None);
}

#[test]
fn a_thousand_concurrent_demands_share_one_fetch() {
    let mut m = Machine::new(RefreshPolicy::default());
    let mut total_fetches = 0;
    for i in 0..1000 {
        let d = m.demand(at_ms(f64::from(i)));
        total_fetches += fetches(&d);
        assert!(!served(&d));
        assert!(rejected_with(&d).is_none());
    }
    assert_eq!(total_fetches, 1);
    assert_eq!(m.requests(), 1);
    assert_eq!(m.waiters(), 1000);
    let d = m.response(at(1.2), Ok(grant(600.0)), 0.3);
    assert_eq!(count(&d, |e| *e == Effect::ResolveWaiters), 1);
    assert_eq!(count(&d, |e| *e == Effect::Publish), 1);
    assert_eq!(count(&d, |e| *e == Effect::ServeWaiters), 0);
    assert_eq!(fetches(&d), 0);
    assert_eq!(m.waiters(), 0);
    // Publish comes before ResolveWaiters (attached targets get the token first).
    assert!(pos(&d, &Effect::Publish) < pos(&d, &Effect::ResolveWaiters));
    // Afterwards, the next thousand are served from memory.
    for i in 0..1000 {
        let d = m.demand(at(2.0 + f64::from(i) * 0.01));
        assert_eq!(d.effects, vec![Effect::ServeWaiters]);
        assert_eq!(d.timer, TimerPlan::Keep);
    }
    assert_eq!(m.requests(), 1);
}

// ---------------------------------------------------------------------------------------------
// refresh schedule

/// `schedule(now)` reads the planned times against the wall clock as it is now: set back an
/// hour 100 s after the token came, the 600-s token still expires 500 s from the (new) wall
/// clock, and the refresh at 480 s is 380 s away; with both clocks in step it is the plan.
#[test]
fn the_schedule_follows_the_wall_clock_when_it_is_set_back() {
    let m = with_token(RefreshPolicy::default(), 600.0, 0.0);
    let in_step = m.schedule(at(100.0));
    assert_eq!(in_step.expires_at, Some(WALL0 + 600_000.0));
    assert_eq!(in_step.usable_until, m.usable_until());
    assert_eq!(in_step.next_refresh_at, Some(WALL0 + 480_000.0));
    let set_back = clocks(100.0 - 3600.0, 100.0);
    let s = m.schedule(set_back);
    assert_eq!(s.expires_at, Some(set_back.wall_ms + 500_000.0));
    assert_eq!(s.next_refresh_at, Some(set_back.wall_ms + 380_000.0));
    // set forward: the wall clock's own verdict (earlier) stands
    let forward = clocks(100.0 + 3600.0, 100.0);
    assert_eq!(m.schedule(forward).expires_at, Some(WALL0 + 600_000.0));
    // the plan itself is unchanged
    assert_eq!(m.expires_at(), Some(WALL0 + 600_000.0));
    // Clocks in step but read apart by a fraction of a millisecond (Date.now() is whole ms,
    // performance.now() is not): the planned time, the same on every read.
    for drift_ms in [0.3, -0.7, 2.5, -40.0] {
        let now = Now::new(WALL0 + 100_000.0, 100_000.0 + drift_ms);
        let s = m.schedule(now);
        assert_eq!(s.expires_at, Some(WALL0 + 600_000.0), "drift {drift_ms}");
        assert_eq!(
            s.next_refresh_at,
            Some(WALL0 + 480_000.0),
            "drift {drift_ms}"
        );
    }
}

#[test]
fn refresh_is_planned_at_expiry_minus_margin_minus_jitter() {
    let policy = RefreshPolicy::default();
    let margin = policy.margin(600_000.0, false);
    assert_eq!(margin, 120_000.0);

    // Jitter 0: exactly expiresAt - margin = 480 s after send.
    let m = with_token(policy, 600.0, 0.0);
    assert_eq!(m.expires_at(), Some(WALL0 + 600_000.0));
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 480_000.0));

    // Jitter ~1: up to 10% of the margin earlier, i.e. within [468 s, 480 s].
    let m = with_token(policy, 600.0, 0.999_999);
    let r = m.next_refresh_at().unwrap() - WALL0;
    assert!((468_000.0..480_000.0).contains(&r), "{r}");
    assert!((r - (600_000.0 - margin * 1.1)).abs() < 1.0, "{r}");

    // A sweep of jitters for several lifetimes stays in [exp - 1.1 margin, exp - margin].
    for lifetime_s in [20.0, 60.0, 100.0, 600.0, 3600.0] {
        let margin = policy.margin(lifetime_s * 1000.0, false);
        for j in 0..=10 {
            let jitter = f64::from(j) / 10.0;
            let m = with_token(policy, lifetime_s, jitter);
            let exp = m.expires_at().unwrap();
            let r = m.next_refresh_at().unwrap();
            assert!(
                r <= exp - margin + 1e-6 && r >= exp - 1.1 * margin - 1e-6,
                "L={lifetime_s} j={jitter} r={r} exp={exp}"
            );
        }
    }

    // Nothing happens before the planned moment; the refresh starts at it.
    let mut m = with_token(policy, 600.0, 0.0);
    let d = m.tick(at(479.999));
    assert_eq!(fetches(&d), 0);
    assert_eq!(d.effects, vec![]);
    let d = m.tick(at(480.0));
    assert_eq!(fetches(&d), 1);
    assert!(has(&d, &Effect::Refreshing));
    assert_eq!(m.status(), Status::Refreshing);
}

#[test]
fn the_first_timer_is_armed_for_the_refresh() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let d = m.response(at(0.5), Ok(grant(600.0)), 0.0);
    // Sent at 0, refresh at 480 s, now 0.5 s.
    assert_eq!(d.timer, TimerPlan::Arm(479_500.0));
}

#[test]
fn a_twenty_second_token_refreshes_mid_life_not_in_a_loop() {
    let policy = RefreshPolicy::default();
    assert_eq!(policy.margin(20_000.0, false), 10_000.0);
    let mut m = with_token(policy, 20.0, 0.0);
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 10_000.0));
    assert_eq!(m.usable_until(), Some(WALL0 + 15_000.0));
    assert_eq!(fetches(&m.tick(at(9.9))), 0);

    // Drive 120 s: tick every 100 ms, answer each fetch after 200 ms.
    let mut fetch_times: Vec<f64> = Vec::new();
    let mut answer_at: Option<f64> = None;
    let mut t = 1.0;
    while t < 121.0 {
        if answer_at.is_some_and(|a| a <= t + 1e-9) {
            answer_at = None;
            let d = m.response(at(t), Ok(grant(20.0)), 0.5);
            assert!(has(&d, &Effect::Publish));
            assert_eq!(
                fetches(&d),
                0,
                "a fresh token must not trigger another fetch"
            );
        }
        let d = m.tick(at(t));
        if fetches(&d) > 0 {
            assert!(answer_at.is_none(), "second fetch in flight");
            fetch_times.push(t);
            answer_at = Some(t + 0.2);
        }
        assert!(m.token_at(at(t)).is_some(), "no gap at {t}");
        t += 0.1;
    }
    // Each refresh ~9.5 s after the previous send (margin 10 s, jitter 0.5 → 10.5 s early... of
    // a 20 s life): about 12 in 120 s, never hundreds.
    assert!(
        (10..=14).contains(&fetch_times.len()),
        "{} fetches: {fetch_times:?}",
        fetch_times.len()
    );
    for w in fetch_times.windows(2) {
        assert!(w[1] - w[0] > 8.0, "refresh loop: {fetch_times:?}");
    }
}

#[test]
fn expiry_is_anchored_at_send_time() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    // The answer arrives 3 s after the request was sent.
    let _ = m.response(at(3.0), Ok(grant(600.0)), 0.0);
    let naive = WALL0 + 3_000.0 + 600_000.0;
    assert_eq!(m.expires_at(), Some(WALL0 + 600_000.0));
    assert_eq!(naive - m.expires_at().unwrap(), 3_000.0);
    assert_eq!(m.usable_until(), Some(WALL0 + 595_000.0));
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 480_000.0));
    // And on the monotonic clock: with the wall clock standing still, mono 595 s is the end.
    assert!(m.token_at(clocks(0.0, 594.999)).is_some());
    assert!(m.token_at(clocks(0.0, 595.0)).is_none());
}

#[test]
fn a_token_is_usable_until_five_seconds_before_expiry_and_never_after() {
    let mut m = default_with_token(600.0);
    // Before the refresh is due, the hot path answers; at the refresh moment it defers.
    assert!(m.ready_token(at(479.9)).is_some());
    assert!(m.ready_token(at(480.0)).is_none());
    assert!(m.token_at(at(480.0)).is_some());

    // Start the refresh and keep it in flight, so only expiry limits the hot path.
    let d = m.tick(at(480.0));
    assert_eq!(fetches(&d), 1);
    assert!(m.ready_token(at(594.999)).is_some());
    assert!(m.token_at(at(594.999)).is_some());
    assert!(m.ready_token(at(595.0)).is_none());
    assert!(m.token_at(at(595.0)).is_none());
    assert!(m.token_at(at(700.0)).is_none());

    // The expiry timer was armed for 595 s.
    // A caller at 594.9 s is served, one at 595 s is not.
    let d = m.demand(at(594.9));
    assert_eq!(d.effects, vec![Effect::ServeWaiters]);
    let d = m.demand(at(595.0));
    assert!(!served(&d), "{:?}", d.effects);
    assert!(has(&d, &Effect::Expired));
    assert!(m.token().is_none());
    assert_eq!(m.status(), Status::Fetching);
    assert_eq!(m.waiters(), 1);
    assert_eq!(fetches(&d), 0, "the refresh in flight is joined");
    let d = m.response(at(596.0), Ok(grant(600.0)), 0.0);
    assert!(has(&d, &Effect::ResolveWaiters));
    assert_eq!(m.waiters(), 0);
}

#[test]
fn the_expiry_timer_fires_at_usable_until_while_a_refresh_is_in_flight() {
    let mut m = default_with_token(600.0);
    let d = m.tick(at(480.0));
    assert_eq!(fetches(&d), 1);
    // In flight: the only deadline left is the end of usability, 115 s away.
    assert_eq!(d.timer, TimerPlan::Arm(115_000.0));
    let d = m.timer_fired(at(595.0));
    assert_eq!(d.effects[0], Effect::Expired);
    assert_eq!(fetches(&d), 0);
    assert_eq!(m.status(), Status::Fetching);
}

#[test]
fn expiry_is_judged_by_both_clocks() {
    // The wall clock jumps forward (clock set, or sleep): expired though mono says 10 s.
    let mut m = default_with_token(600.0);
    let now = clocks(596.0, 10.0);
    assert!(m.token_at(now).is_none());
    assert!(m.ready_token(now).is_none());
    let d = m.tick(now);
    assert_eq!(d.effects[0], Effect::Expired);
    assert_eq!(fetches(&d), 1);
    assert!(!has(&d, &Effect::Refreshing), "no token is held any more");
    assert!(m.token().is_none());

    // The monotonic clock runs on while the wall clock stands still.
    let mut m = default_with_token(600.0);
    let now = clocks(10.0, 596.0);
    assert!(m.token_at(now).is_none());
    let d = m.tick(now);
    assert_eq!(d.effects[0], Effect::Expired);
    assert!(m.token().is_none());

    // The wall clock jumps back an hour: that does not extend the token's life.
    let mut m = default_with_token(600.0);
    let now = clocks(-3_600.0, 596.0);
    assert!(m.token_at(now).is_none());
    let d = m.tick(now);
    assert!(has(&d, &Effect::Expired));
    assert!(m.token().is_none());

    // Control: the same backward jump with mono well inside the lifetime keeps the token,
    // and its expiry is not moved.
    let mut m = default_with_token(600.0);
    let now = clocks(-3_600.0, 100.0);
    assert!(m.token_at(now).is_some());
    let d = m.tick(now);
    assert!(!has(&d, &Effect::Expired));
    assert_eq!(fetches(&d), 0);
    assert_eq!(m.expires_at(), Some(WALL0 + 600_000.0));
}

#[test]
fn a_failure_keeps_serving_the_usable_token() {
    let mut m = default_with_token(600.0);
    let before = m.token().unwrap().expose().to_owned();
    assert_eq!(fetches(&m.tick(at(480.0))), 1);
    let d = m.response(at(481.0), Err(Error::Network), 0.5);
    assert!(has(&d, &Effect::Failed(Error::Network)));
    assert!(rejected_with(&d).is_none(), "nobody was waiting");
    assert!(!has(&d, &Effect::Expired));
    assert_eq!(m.status(), Status::Refreshing);
    assert_eq!(m.token_at(at(481.0)).unwrap().expose(), before);
    // Backoff for the first retry: 0.5 × 1 s.
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 481_500.0));
    let d = m.demand(at(481.2));
    assert_eq!(d.effects, vec![Effect::ServeWaiters]);
    assert_eq!(m.ready_token(at(481.2)).unwrap().expose(), before);
    // At the retry moment the hot path defers and a demand starts the retry (and is served).
    assert!(m.ready_token(at(481.5)).is_none());
    let d = m.demand(at(481.5));
    assert_eq!(fetches(&d), 1);
    assert!(has(&d, &Effect::ServeWaiters));
}

// ---------------------------------------------------------------------------------------------
// retries

fn transient_errors() -> Vec<Error> {
    vec![
        Error::from_status(500, None),
        Error::from_status(502, None),
        Error::from_status(503, None),
        Error::from_status(504, Some(9)), // Retry-After only counts on 429/503
        Error::from_status(408, None),
        Error::from_status(429, None),
        Error::Network,
        Error::Timeout,
        Error::InvalidResponse(Invalid::NotJson),
        Error::InvalidResponse(Invalid::ExpiredOnArrival),
    ]
}

#[test]
fn transient_failures_back_off_with_full_jitter() {
    for error in transient_errors() {
        let mut m = Machine::new(RefreshPolicy::default());
        let mut t_ms = 0.0;
        assert_eq!(fetches(&m.demand(at_ms(t_ms))), 1);
        for n in 0..12u32 {
            t_ms += 300.0; // latency
            let d = m.response(at_ms(t_ms), Err(error), 0.999);
            assert!(has(&d, &Effect::Failed(error)), "{error:?}");
            if n == 0 {
                assert_eq!(rejected_with(&d), Some(error));
            }
            assert_eq!(fetches(&d), 0);
            assert_eq!(m.status(), Status::Error);
            let ceiling = 30_000f64.min(1_000.0 * 2f64.powi(n as i32));
            let delay = m.next_refresh_at().unwrap() - (WALL0 + t_ms);
            assert!(
                delay >= 0.99 * ceiling && delay <= ceiling,
                "{error:?} attempt {n}: delay {delay}, ceiling {ceiling}"
            );
            assert!((delay - retry_delay(n, 0.999)).abs() < 0.01, "{delay}");
            let arm = arm_delay(&d);
            assert_eq!(arm.fract(), 0.0);
            assert!(
                arm >= delay - 0.01 && arm < delay + 1.0,
                "arm {arm} delay {delay}"
            );
            // Not a millisecond early...
            assert_eq!(fetches(&m.tick(at_ms(t_ms + delay - 1.0))), 0);
            // ...and on time when the timer fires.
            t_ms += arm;
            let d = m.timer_fired(at_ms(t_ms));
            assert_eq!(fetches(&d), 1, "{error:?} attempt {n}");
        }
    }
}

#[test]
fn zero_jitter_retries_at_once_and_the_backoff_resets_after_success() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let d = m.response(at(0.1), Err(Error::Network), 0.0);
    assert_eq!(fetches(&d), 1, "full jitter may draw 0: retry now");
    // Several failures raise the attempt count...
    for i in 0..5 {
        let d = m.response(at(0.2 + f64::from(i) * 0.1), Err(Error::Network), 0.0);
        assert_eq!(fetches(&d), 1);
    }
    // ...a success resets it: the next failure's ceiling is the base (1 s) again.
    let _ = m.response(at(1.0), Ok(grant(600.0)), 0.0);
    let _ = m.tick(at(481.0));
    let d = m.response(at(481.0), Err(Error::Network), 0.999);
    let delay = m.next_refresh_at().unwrap() - (WALL0 + 481_000.0);
    assert!(delay <= 1_000.0 && delay > 990.0, "{delay}");
    assert!(matches!(d.timer, TimerPlan::Arm(_)));
}

#[test]
fn retries_never_go_past_usable_until() {
    for hidden in [false, true] {
        let mut m = default_with_token(600.0);
        // The shell's one timer: when it is due (ms), per the last Arm/Clear.
        let mut timer: Option<f64> = None;
        let follow = |d: &Decision, t_ms: f64, timer: &mut Option<f64>| match d.timer {
            TimerPlan::Arm(ms) => *timer = Some(t_ms + ms),
            TimerPlan::Clear => *timer = None,
            TimerPlan::Keep => {}
        };
        if hidden {
            // Re-planned: refresh at 300 s.
            let d = m.set_hidden(at(1.0), true);
            follow(&d, 1_000.0, &mut timer);
        }
        let first = m.next_refresh_at().unwrap() - WALL0;
        let mut t_ms = first;
        let d = m.tick(at_ms(t_ms));
        assert_eq!(fetches(&d), 1);
        follow(&d, t_ms, &mut timer);
        let usable = m.usable_until().unwrap();
        let mut clamped = false;
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 200, "runaway");
            t_ms += 500.0;
            let d = m.response(at_ms(t_ms), Err(Error::from_status(500, None)), 0.999);
            follow(&d, t_ms, &mut timer);
            if fetches(&d) > 0 {
                continue; // retry due at once
            }
            let Some(until) = m.usable_until() else {
                break;
            };
            assert_eq!(until, usable);
            let retry = m.next_refresh_at().unwrap();
            assert!(retry <= until + 1e-3, "retry {retry} past usable {until}");
            let left = until - (WALL0 + t_ms);
            if hidden && left > 60_000.0 {
                assert!(
                    retry <= until - 60_000.0 + 1e-3,
                    "hidden: retry {} s before the end",
                    (until - retry) / 1000.0
                );
            }
            let ceiling = 30_000f64.min(1_000.0 * 2f64.powi(rounds - 1));
            if retry - (WALL0 + t_ms) < 0.98 * ceiling {
                clamped = true;
            }
            // The timer is due no later than the retry.
            let due = timer.expect("a retry needs a timer");
            assert!(
                due <= retry - WALL0 + 1.0,
                "timer {due} after retry {retry}"
            );
            t_ms = due;
            let d = m.timer_fired(at_ms(t_ms));
            timer = None;
            follow(&d, t_ms, &mut timer);
            assert_eq!(fetches(&d), 1);
            if m.token().is_none() {
                break;
            }
        }
        assert!(clamped, "the expiry clamp never applied (hidden {hidden})");
    }
}

#[test]
fn rate_limited_retry_after_is_honoured() {
    // With a usable token.
    let mut m = default_with_token(600.0);
    let _ = m.tick(at(480.0));
    let d = m.response(at(481.0), Err(Error::from_status(429, Some(20))), 0.0);
    assert!(has(
        &d,
        &Effect::Failed(Error::RateLimited {
            retry_after: Some(20)
        })
    ));
    assert_eq!(fetches(&d), 0, "jitter 0 must not bypass Retry-After");
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 501_000.0));
    assert_eq!(arm_delay(&d), 20_000.0);
    assert_eq!(fetches(&m.demand(at(495.0))), 0);
    assert_eq!(fetches(&m.tick(at(500.999))), 0);
    assert_eq!(fetches(&m.tick(at(501.0))), 1);

    // Cold: callers are rejected, and a new caller never forces a request. One whose retry is
    // further out than a request may take (`requestTimeout`, 10 s here) is told at once, with
    // the failure that planned it; one whose retry is nearer waits for it.
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let d = m.response(at(1.0), Err(Error::from_status(429, Some(30))), 0.0);
    assert!(matches!(
        rejected_with(&d),
        Some(Error::RateLimited {
            retry_after: Some(30)
        })
    ));
    for s in [2.0, 10.0, 20.9] {
        let d = m.demand(at(s));
        assert_eq!(fetches(&d), 0, "demand at {s} s defeated Retry-After");
        assert_eq!(
            rejected_one(&d),
            Some(Error::RateLimited {
                retry_after: Some(30)
            }),
            "demand at {s} s, retry at 31 s"
        );
    }
    assert_eq!(m.waiters(), 0);
    for s in [21.1, 30.9] {
        let d = m.demand(at(s));
        assert_eq!(fetches(&d), 0, "demand at {s} s defeated Retry-After");
        assert_eq!(
            rejected_one(&d),
            None,
            "demand at {s} s waits for the retry at 31 s"
        );
    }
    assert_eq!(m.waiters(), 2);
    let d = m.timer_fired(at(31.0));
    assert_eq!(fetches(&d), 1);
    let d = m.response(at(31.5), Ok(grant(600.0)), 0.0);
    assert!(has(&d, &Effect::ResolveWaiters));
    assert_eq!(m.waiters(), 0);
}

#[test]
fn a_caller_is_not_parked_behind_an_hour_long_retry_after() {
    // An outside review: after `429 Retry-After: 3600` a later getToken() stayed pending for
    // the hour (and speechConfig() with it).
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let _ = m.response(at(1.0), Err(Error::from_status(429, Some(3600))), 0.0);
    let d = m.demand(at(5.0));
    assert_eq!(fetches(&d), 0);
    assert_eq!(
        rejected_one(&d),
        Some(Error::RateLimited {
            retry_after: Some(3600)
        })
    );
    assert_eq!(m.waiters(), 0);
    // The retry still happens when due, and a caller after it gets the new token.
    let d = m.timer_fired(at(3601.0));
    assert_eq!(fetches(&d), 1);
    let _ = m.demand(at(3601.1));
    assert_eq!(
        m.waiters(),
        1,
        "a request is in flight: the caller waits for it"
    );
    let d = m.response(at(3601.5), Ok(grant(600.0)), 0.0);
    assert!(has(&d, &Effect::ResolveWaiters));
    // A long backoff after network failures is no different; refreshNow() still asks at once.
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let mut t = 0.0;
    for _ in 0..6 {
        t += 1.0;
        let _ = m.response(at(t), Err(Error::Network), 0.99);
        let Some(next) = m.next_refresh_at() else {
            panic!("no retry planned")
        };
        t = (next - WALL0) / 1000.0;
        let _ = m.timer_fired(at(t));
    }
    let d = m.response(at(t + 0.5), Err(Error::Network), 0.99);
    let wait_s = (m.next_refresh_at().expect("retry planned") - WALL0) / 1000.0 - (t + 0.5);
    assert!(wait_s > 10.0, "the backoff is long by now ({wait_s} s)");
    assert!(rejected_with(&d).is_none(), "nobody was waiting");
    let d = m.demand(at(t + 1.0));
    assert_eq!(rejected_one(&d), Some(Error::Network));
    let d = m.refresh_now(at(t + 1.5));
    assert_eq!(fetches(&d), 1, "refreshNow() is the app asking now");
}

#[test]
fn a_retry_after_of_zero_still_backs_off() {
    // A broker answering 429/503 with `Retry-After: 0` (or 1) over and over must not turn the
    // client into a loop: the header is a minimum, the client's own growing backoff (never zero)
    // applies when it asks for less.
    for status in [429, 503] {
        let mut m = Machine::new(RefreshPolicy::default());
        let _ = m.demand(at(0.0));
        let mut t = 0.0;
        let mut retries = 0;
        while t < 10.0 {
            let d = m.response(at(t), Err(Error::from_status(status, Some(0))), 0.0);
            assert_eq!(fetches(&d), 0, "{status}: retried at once at {t} s");
            let next = (m.next_refresh_at().unwrap() - WALL0) / 1000.0;
            assert!(next > t, "{status}: next try {next} s not after {t} s");
            t = next;
            assert_eq!(fetches(&m.timer_fired(at(t))), 1);
            retries += 1;
        }
        assert!(retries <= 6, "{status}: {retries} requests in 10 s");
    }
    // A Retry-After longer than the backoff is still honoured exactly (see above), and a
    // zero one waits at least the first backoff step's floor.
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let _ = m.response(at(0.0), Err(Error::from_status(429, Some(0))), 0.0);
    assert!(m.next_refresh_at().unwrap() - WALL0 >= 500.0);
}

/// Found by an outside review: a `Retry-After` was cut short at the held token's last usable
/// moment (a 429 asking for 60 s was retried after ~5 s), which README promises it never is
/// ("a minimum"); and the early request did not even keep the token (it went out at the very
/// moment the token was dropped).
#[test]
fn retry_after_is_honoured_while_a_token_is_held() {
    let mut m = default_with_token(600.0);
    let _ = m.tick(at(480.0));
    let _ = m.response(at(481.0), Err(Error::from_status(429, Some(300))), 0.0);
    // 781 s asked; the token stops being usable at 595 s, and is dropped then, unreplaced.
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 781_000.0));
    let d = m.timer_fired(at(595.0));
    assert!(has(&d, &Effect::Expired));
    assert_eq!(
        fetches(&d),
        0,
        "retried before Retry-After: {:?}",
        d.effects
    );
    assert_eq!(fetches(&m.tick(at(780.9))), 0);
    assert_eq!(fetches(&m.timer_fired(at(781.0))), 1);
    // The same for a 503's Retry-After, and while the page is hidden.
    let mut m = default_with_token(600.0);
    let _ = m.set_hidden(at(0.0), true);
    let _ = m.tick(at(300.0));
    let _ = m.response(at(301.0), Err(Error::from_status(503, Some(600))), 0.0);
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 901_000.0));
    // An absurd Retry-After is capped at an hour (cold, nothing to clamp against).
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let _ = m.response(at(0.0), Err(Error::from_status(429, Some(1_000_000))), 0.5);
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 3_600_000.0));
}

/// Found by the review of the fix above: only what the broker asked for is exempt from the
/// usable-time bound, not the client's own floor under a short `Retry-After` (its backoff, up
/// to 30 s): a broker answering `503 Retry-After: 1` again and again near the end of a token's
/// life had its retries pushed past the usable time, and past expiry.
#[test]
fn the_clients_floor_under_a_short_retry_after_still_yields_to_the_usable_time() {
    let mut m = default_with_token(600.0);
    assert_eq!(fetches(&m.tick(at(480.0))), 1);
    let until = m.usable_until().unwrap();
    let mut now = 480.5;
    for _ in 0..12 {
        let _ = m.response(at(now), Err(Error::from_status(503, Some(1))), 0.999);
        let retry = m.next_refresh_at().unwrap();
        assert!(
            retry <= until + 1e-3,
            "retry at {} s, usable until {} s",
            (retry - WALL0) / 1000.0,
            (until - WALL0) / 1000.0
        );
        assert!(
            retry >= WALL0 + now * 1000.0 + 1000.0 - 1e-3,
            "Retry-After: 1 honoured"
        );
        now = (retry - WALL0) / 1000.0;
        if now >= 595.0 - 1e-6 {
            break;
        }
        assert_eq!(fetches(&m.timer_fired(at(now))), 1);
        now += 0.1;
    }
}

/// A backoff that would reach past the held token's usable time is cut short, to a round trip
/// (the refresh lead, 5 s) before it: the retry goes out while the token is still handed out,
/// and its success replaces it with no `expired` in between. Found with the review above: the
/// retry went out at the very moment the token was dropped.
#[test]
fn a_backoff_retry_comes_a_round_trip_before_the_token_stops_being_usable() {
    let mut m = default_with_token(600.0);
    let _ = m.tick(at(480.0));
    // Failures until the backoff (1 s base, doubling, full jitter: the draw 0.999) reaches past
    // usable_until (595 s).
    let mut now = 481.0;
    let _ = m.response(at(now), Err(Error::from_status(500, None)), 0.999);
    let until = m.usable_until().unwrap();
    loop {
        let retry = m.next_refresh_at().unwrap();
        assert!(
            retry <= until - 5_000.0 + 1e-3,
            "retry at {retry}, usable until {until}"
        );
        if retry >= until - 5_000.0 - 1e-3 {
            break; // cut short
        }
        now = (retry - WALL0) / 1000.0;
        assert_eq!(fetches(&m.timer_fired(at(now))), 1);
        let _ = m.response(at(now + 0.1), Err(Error::from_status(500, None)), 0.999);
    }
    // The cut-short retry goes out with the token still usable, and its answer replaces it.
    let retry_s = (m.next_refresh_at().unwrap() - WALL0) / 1000.0;
    let d = m.timer_fired(at(retry_s));
    assert_eq!(fetches(&d), 1);
    assert!(m.token_at(at(retry_s)).is_some());
    let d = m.response(at(retry_s + 0.2), Ok(grant(600.0)), 0.5);
    assert!(!has(&d, &Effect::Expired), "{:?}", d.effects);
    assert!(has(&d, &Effect::Publish));
    // Within the lead already, a failure retries no later than usable_until (not in a loop).
    let mut m = default_with_token(600.0);
    let _ = m.tick(at(480.0));
    let _ = m.response(at(592.0), Err(Error::from_status(500, None)), 0.999);
    let retry = m.next_refresh_at().unwrap();
    assert!(retry <= m.usable_until().unwrap() + 1e-3);
    assert!(retry > WALL0 + 592_000.0);
}

#[test]
fn retry_after_is_honoured_when_the_token_expired_during_the_request() {
    // A 20 s token: refresh at 10 s, usable until 15 s; the refresh takes 8 s (under the 10 s
    // request timeout) and is answered 429 Retry-After: 60 at 18 s.
    let mut m = default_with_token(20.0);
    assert_eq!(fetches(&m.tick(at(10.0))), 1);
    let d = m.response(at(18.0), Err(Error::from_status(429, Some(60))), 0.5);
    assert!(has(&d, &Effect::Expired));
    assert_eq!(
        fetches(&d),
        0,
        "retried at once despite Retry-After: 60 (effects {:?})",
        d.effects
    );
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 78_000.0));
}

#[test]
fn service_unavailable_retry_after_is_honoured() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let d = m.response(at(0.5), Err(Error::from_status(503, Some(7))), 0.0);
    assert_eq!(fetches(&d), 0);
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 7_500.0));
    assert_eq!(arm_delay(&d), 7_000.0);
    assert_eq!(fetches(&m.tick(at(7.499))), 0);
    assert_eq!(fetches(&m.timer_fired(at(7.5))), 1);
    // With a token held, too.
    let mut m = default_with_token(600.0);
    let _ = m.tick(at(480.0));
    let _ = m.response(at(480.5), Err(Error::from_status(503, Some(12))), 0.9);
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 492_500.0));
}

fn stopping_errors() -> Vec<Error> {
    vec![
        Error::from_status(401, None),
        Error::from_status(403, None),
        Error::from_status(400, None),
        Error::from_status(404, None),
        Error::from_status(410, None),
        Error::from_status(302, None),
        Error::from_status(401, Some(5)),
        Error::Redirected,
    ]
}

#[test]
fn client_errors_stop_automatic_retries_when_cold() {
    for error in stopping_errors() {
        let mut m = Machine::new(RefreshPolicy::default());
        let _ = m.demand(at(0.0));
        let _ = m.demand(at(0.1));
        let d = m.response(at(0.5), Err(error), 0.5);
        assert_eq!(rejected_with(&d), Some(error));
        assert!(has(&d, &Effect::Failed(error)));
        assert_eq!(fetches(&d), 0);
        assert!(
            !matches!(d.timer, TimerPlan::Arm(_)),
            "{error:?}: {:?}",
            d.timer
        );
        assert_eq!(m.next_refresh_at(), None);
        assert_eq!(m.status(), Status::Error);
        assert_eq!(m.waiters(), 0);
        // Nothing happens by itself, however long we wait.
        for s in [1.0, 60.0, 3_600.0, 86_400.0] {
            let d = m.tick(at(s));
            assert_eq!(fetches(&d), 0, "{error:?} retried at {s} s");
            let d = m.timer_fired(at(s));
            assert_eq!(fetches(&d), 0);
        }
        // A caller with no usable token restarts it.
        let d = m.demand(at(90_000.0));
        assert_eq!(fetches(&d), 1, "{error:?}");
        assert_eq!(m.status(), Status::Fetching);
        let d = m.response(at(90_001.0), Ok(grant(600.0)), 0.0);
        assert!(has(&d, &Effect::ResolveWaiters));
        assert_eq!(m.status(), Status::Valid);
    }
}

#[test]
fn client_errors_stop_automatic_retries_with_a_token() {
    for error in stopping_errors() {
        let mut m = default_with_token(600.0);
        let _ = m.tick(at(480.0));
        let d = m.response(at(481.0), Err(error), 0.5);
        assert!(has(&d, &Effect::Failed(error)));
        assert_eq!(m.status(), Status::Error);
        assert_eq!(m.next_refresh_at(), None, "{error:?}");
        // The only timer left watches the end of usability (595 s), not a retry: the one armed
        // for it when the refresh started (at 480 s) is kept.
        assert_eq!(d.timer, TimerPlan::Keep, "{error:?}");
        assert_eq!(fetches(&m.tick(at(500.0))), 0);
        // The token is still served while usable, without a new request.
        let d = m.demand(at(500.0));
        assert_eq!(d.effects, vec![Effect::ServeWaiters]);
        assert!(m.ready_token(at(590.0)).is_some());
        let d = m.timer_fired(at(595.0));
        assert!(has(&d, &Effect::Expired));
        assert_eq!(fetches(&d), 0, "{error:?} retried after expiry");
        assert_eq!(m.status(), Status::Expired);
        assert_eq!(fetches(&m.tick(at(3_600.0))), 0);
        let d = m.demand(at(3_600.0));
        assert_eq!(fetches(&d), 1);
    }
}

#[test]
fn refresh_now_restarts_after_a_stop() {
    let mut m = default_with_token(600.0);
    let _ = m.tick(at(480.0));
    let _ = m.response(at(481.0), Err(Error::Unauthorized), 0.5);
    assert_eq!(m.status(), Status::Error);
    let d = m.refresh_now(at(500.0));
    assert_eq!(fetches(&d), 1);
    assert_eq!(m.status(), Status::Refreshing);
    let d = m.response(at(500.5), Ok(grant(600.0)), 0.0);
    assert!(has(&d, &Effect::ResolveWaiters));
    assert_eq!(m.status(), Status::Valid);
    // Automatic refreshes are back.
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 980_000.0));
}

/// `refreshNow()` is the app's "the user signed in again": behind a request already being sent
/// (the app's headers read), it waits for the next request, which starts the moment that one
/// ends, whatever its outcome planned (a stop after 401, a Retry-After). Before the request is
/// sent, it joins it (single flight).
#[test]
fn a_refresh_now_behind_a_sent_request_waits_for_the_next_one() {
    let mut m = Machine::new(RefreshPolicy::default());
    assert_eq!(fetches(&m.demand(at(0.0))), 1);
    assert!(!m.request_sent());
    // Not sent yet: joins.
    let d = m.refresh_now(at(0.01));
    assert_eq!(fetches(&d), 0);
    m.sending();
    assert!(m.request_sent());
    // Sent: waits for the next.
    let d = m.refresh_now(at(0.02));
    assert_eq!(fetches(&d), 0, "one request at a time");
    assert_eq!(m.waiters(), 3);
    // The old session's 401 answers the getToken() and the first refreshNow() caller...
    let d = m.response(at(0.5), Err(Error::Unauthorized), 0.5);
    assert_eq!(rejected_with(&d), Some(Error::Unauthorized));
    // ...and the next request goes out at once, not stopped by it.
    assert!(
        pos(&d, &Effect::RejectWaiters(Error::Unauthorized)) < pos(&d, &Effect::Fetch),
        "{:?}",
        d.effects
    );
    assert_eq!(m.waiters(), 1);
    assert!(!m.request_sent(), "a new request is not sent yet");
    assert_eq!(m.status(), Status::Fetching);
    let d = m.response(at(1.0), Ok(grant_named("new-session", 600.0)), 0.0);
    assert!(has(&d, &Effect::ResolveWaiters));
    assert_eq!(fetches(&d), 0);
    assert_eq!(m.waiters(), 0);
    assert_eq!(m.requests(), 2);

    // Behind a refresh being sent with a token held, after a Retry-After answer: at once too.
    let mut m = default_with_token(600.0);
    assert_eq!(fetches(&m.tick(at(480.0))), 1);
    m.sending();
    let _ = m.refresh_now(at(480.1));
    let d = m.response(at(480.5), Err(Error::from_status(503, Some(60))), 0.5);
    assert_eq!(
        rejected_with(&d),
        None,
        "nobody waited for the refresh itself"
    );
    assert_eq!(fetches(&d), 1);
    // dispose() rejects a caller kept for the next request.
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    m.sending();
    let _ = m.refresh_now(at(0.1));
    let d = m.dispose();
    assert_eq!(rejected_with(&d), Some(Error::Disposed));
    assert_eq!(m.waiters(), 0);
}

/// `behind`: a deadline the timer was armed for has passed unseen (the getters then catch up);
/// a tick catches up, and a disposed machine is never behind.
#[test]
fn the_machine_is_behind_once_an_armed_deadline_has_passed_unseen() {
    let mut m = default_with_token(600.0);
    let refresh = m.next_refresh_at().expect("a refresh is planned") - WALL0;
    assert!(!m.behind(at(1.0)));
    assert!(!m.behind(at_ms(refresh - 1.0)));
    assert!(m.behind(at_ms(refresh)));
    assert!(m.behind(at(3_600.0)), "asleep past expiry");
    let d = m.tick(at(3_600.0));
    assert!(has(&d, &Effect::Expired));
    assert!(!m.behind(at(3_600.0)), "caught up");
    let _ = m.dispose();
    assert!(!m.behind(at(7_200.0)));
}

#[test]
fn waiters_are_rejected_when_no_token_is_usable() {
    let mut m = Machine::new(RefreshPolicy::default());
    for i in 0..3 {
        let _ = m.demand(at(f64::from(i) * 0.1));
    }
    let d = m.response(at(1.0), Err(Error::Network), 0.5);
    assert_eq!(count(&d, |e| matches!(e, Effect::RejectWaiters(_))), 1);
    assert_eq!(rejected_with(&d), Some(Error::Network));
    assert!(!served(&d));
    assert_eq!(m.waiters(), 0);

    // The token expires while its refresh is in flight; the caller waits, then gets the error.
    let mut m = default_with_token(600.0);
    let _ = m.tick(at(480.0));
    let d = m.demand(at(596.0));
    assert!(has(&d, &Effect::Expired));
    assert!(!served(&d));
    assert_eq!(m.waiters(), 1);
    let d = m.response(at(600.0), Err(Error::Timeout), 0.5);
    assert_eq!(rejected_with(&d), Some(Error::Timeout));
    assert_eq!(m.waiters(), 0);
}

// ---------------------------------------------------------------------------------------------
// refreshNow

#[test]
fn refresh_now_waits_for_the_new_token() {
    let mut m = default_with_token(600.0);
    let old = m.token().unwrap().expose().to_owned();
    let d = m.refresh_now(at(100.0));
    assert_eq!(fetches(&d), 1);
    assert!(has(&d, &Effect::Refreshing));
    assert!(
        !served(&d),
        "refreshNow must not resolve with the old token"
    );
    assert_eq!(m.waiters(), 1);
    // A getToken() meanwhile is answered with the old (still usable) token...
    let d = m.demand(at(100.2));
    assert_eq!(d.effects, vec![Effect::ServeWaiters]);
    assert_eq!(m.waiters(), 1, "the refreshNow caller still waits");
    // ...and the refreshNow caller gets the new one.
    let d = m.response(at(100.5), Ok(grant_named("brand-new", 600.0)), 0.0);
    assert!(pos(&d, &Effect::Publish) < pos(&d, &Effect::ResolveWaiters));
    assert_eq!(m.waiters(), 0);
    let new = m.token().unwrap().expose();
    assert_eq!(new, "brand-new");
    assert_ne!(new, old);
    // Its schedule is anchored at the refreshNow request.
    assert_eq!(m.expires_at(), Some(WALL0 + 700_000.0));
}

#[test]
fn refresh_now_joins_a_request_in_flight() {
    let mut m = default_with_token(600.0);
    assert_eq!(fetches(&m.tick(at(480.0))), 1);
    let requests = m.requests();
    let d = m.refresh_now(at(481.0));
    assert_eq!(fetches(&d), 0);
    let d = m.refresh_now(at(481.5));
    assert_eq!(fetches(&d), 0);
    assert_eq!(m.requests(), requests);
    assert_eq!(m.waiters(), 2);
    let d = m.response(at(482.0), Ok(grant(600.0)), 0.0);
    assert_eq!(count(&d, |e| *e == Effect::ResolveWaiters), 1);
    assert_eq!(m.waiters(), 0);
    // Nothing further is fetched: the joined request was the refresh.
    assert_eq!(fetches(&m.tick(at(483.0))), 0);
}

#[test]
fn refresh_now_skips_a_pending_backoff_and_failures_reject_it() {
    let mut m = default_with_token(600.0);
    let _ = m.tick(at(480.0));
    let _ = m.response(at(481.0), Err(Error::from_status(500, None)), 0.9);
    assert!(m.next_refresh_at().unwrap() > WALL0 + 481_000.0);
    let d = m.refresh_now(at(481.1));
    assert_eq!(fetches(&d), 1);
    let d = m.response(at(481.2), Err(Error::from_status(500, None)), 0.9);
    assert_eq!(rejected_with(&d), Some(Error::from_status(500, None)));
    assert_eq!(m.waiters(), 0);
    assert!(
        m.token_at(at(481.2)).is_some(),
        "the old token stays usable"
    );
}

// ---------------------------------------------------------------------------------------------
// sleep, late timers, visibility, online

#[test]
fn a_late_timer_fetches_at_once() {
    // The timer fires 70 s late (throttled), token still usable.
    let mut m = default_with_token(600.0);
    let d = m.timer_fired(at(550.0));
    assert_eq!(fetches(&d), 1);
    assert!(has(&d, &Effect::Refreshing));
    assert!(!has(&d, &Effect::Expired));
    assert!(m.ready_token(at(550.0)).is_some());

    // After a sleep: mono stood still at 120 s, wall moved on to 550 s; a tick on wake.
    let mut m = default_with_token(600.0);
    let d = m.tick(clocks(550.0, 120.0));
    assert_eq!(fetches(&d), 1);
    assert!(!has(&d, &Effect::Expired));

    // Mono far past the refresh (timer frozen), wall clock set back: still refreshed.
    let mut m = default_with_token(600.0);
    let d = m.timer_fired(clocks(-7_200.0, 500.0));
    assert_eq!(fetches(&d), 1);
}

#[test]
fn a_token_that_expired_during_sleep_is_reported_then_refetched() {
    for fire in [false, true] {
        let mut m = default_with_token(600.0);
        let now = clocks(3_600.0, 200.0);
        let d = if fire {
            m.timer_fired(now)
        } else {
            m.tick(now)
        };
        assert!(
            pos(&d, &Effect::Expired) < pos(&d, &Effect::Fetch),
            "{:?}",
            d.effects
        );
        assert!(!has(&d, &Effect::Refreshing));
        assert!(!served(&d));
        assert_eq!(statuses(&d), vec![Status::Fetching]);
        assert!(m.token().is_none());
        assert!(m.expires_at().is_none());
        // A caller now waits for the new token.
        let d = m.demand(clocks(3_600.1, 200.1));
        assert!(!served(&d));
        assert_eq!(fetches(&d), 0);
        let d = m.response(clocks(3_601.0, 201.0), Ok(grant(600.0)), 0.0);
        assert!(has(&d, &Effect::ResolveWaiters));
        assert_eq!(m.expires_at(), Some(WALL0 + 3_600_000.0 + 600_000.0));
    }
}

#[test]
fn hidden_pages_refresh_at_half_the_lifetime() {
    let policy = RefreshPolicy::default();
    assert_eq!(policy.margin(600_000.0, true), 300_000.0);
    let mut m = default_with_token(600.0);
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 480_000.0));
    let d = m.set_hidden(at(100.0), true);
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 300_000.0));
    assert_eq!(d.timer, TimerPlan::Arm(200_000.0));
    assert_eq!(fetches(&d), 0);
    // Telling it twice changes nothing.
    let d = m.set_hidden(at(101.0), true);
    assert_eq!(d.timer, TimerPlan::Keep);
    assert_eq!(d.effects, vec![]);
    // Visible again: back to 480 s.
    let d = m.set_hidden(at(150.0), false);
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 480_000.0));
    assert_eq!(d.timer, TimerPlan::Arm(330_000.0));
    // Hidden past the wider margin's refresh moment: refresh at once.
    let d = m.set_hidden(at(350.0), true);
    assert_eq!(fetches(&d), 1);
    // A token obtained while hidden is planned with the wide margin from the start.
    let d = m.response(at(351.0), Ok(grant(600.0)), 0.0);
    assert!(has(&d, &Effect::Publish));
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 350_000.0 + 300_000.0));
    let _ = m.set_hidden(at(352.0), false);
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 350_000.0 + 480_000.0));
}

#[test]
fn online_retries_a_network_failure_at_once() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let mut t_ms = 0.0;
    // Four failures: the fifth ceiling is 16 s.
    for _ in 0..4 {
        t_ms += 100.0;
        let d = m.response(at_ms(t_ms), Err(Error::Network), 0.999);
        t_ms += arm_delay(&d);
        assert_eq!(fetches(&m.timer_fired(at_ms(t_ms))), 1);
    }
    t_ms += 100.0;
    let d = m.response(at_ms(t_ms), Err(Error::Network), 0.999);
    assert!(arm_delay(&d) > 15_000.0);
    let d = m.online(at_ms(t_ms + 100.0));
    assert_eq!(fetches(&d), 1, "online must retry a network failure now");

    // Timeouts are network-level too.
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let _ = m.response(at(0.1), Err(Error::Timeout), 0.999);
    assert_eq!(fetches(&m.online(at(0.2))), 1);

    // Control: a 500 is not fixed by connectivity; online does not skip its backoff.
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let _ = m.response(at(0.1), Err(Error::from_status(500, None)), 0.999);
    assert_eq!(fetches(&m.online(at(0.2))), 0);
    // Nor does online do anything with a healthy token.
    let mut m = default_with_token(600.0);
    let d = m.online(at(10.0));
    assert_eq!(d.effects, vec![]);
    assert_eq!(d.timer, TimerPlan::Keep);
}

// ---------------------------------------------------------------------------------------------
// dispose

#[test]
fn dispose_rejects_clears_drops_and_is_idempotent() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let _ = m.demand(at(0.1));
    let _ = m.refresh_now(at(0.2));
    let d = m.dispose();
    assert_eq!(
        d.effects,
        vec![
            Effect::RejectWaiters(Error::Disposed),
            Effect::StatusChanged(Status::Disposed)
        ]
    );
    assert_eq!(d.timer, TimerPlan::Clear);
    assert_eq!(m.waiters(), 0);
    assert_eq!(m.status(), Status::Disposed);
    assert!(!m.is_fetching());
    let again = m.dispose();
    assert_eq!(again.effects, vec![]);
    assert_eq!(again.timer, TimerPlan::Keep);

    // With a token held and a timer armed.
    let mut m = default_with_token(600.0);
    assert!(m.token().is_some());
    let d = m.dispose();
    assert_eq!(d.effects, vec![Effect::StatusChanged(Status::Disposed)]);
    assert_eq!(d.timer, TimerPlan::Clear);
    assert!(m.token().is_none());
    assert!(m.grant().is_none());
    assert!(m.token_at(at(1.0)).is_none());
    assert!(m.ready_token(at(1.0)).is_none());
    assert!(m.expires_at().is_none());
    assert!(m.next_refresh_at().is_none());

    // The route (region, endpoint) goes with the token.
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let routed = Grant {
        region: Some("westeurope".into()),
        ..grant(600.0)
    };
    let _ = m.response(at(0.1), Ok(routed), 0.5);
    assert!(m.route().is_some());
    let _ = m.dispose();
    assert!(m.route().is_none(), "no region or endpoint after dispose()");
}

#[test]
fn inputs_after_dispose_do_nothing() {
    let mut m = default_with_token(600.0);
    let _ = m.dispose();
    let quiet = Decision {
        effects: vec![],
        timer: TimerPlan::Keep,
    };
    assert_eq!(m.tick(at(500.0)), quiet);
    assert_eq!(m.timer_fired(at(500.0)), quiet);
    assert_eq!(m.set_hidden(at(500.0), true), quiet);
    assert_eq!(m.set_hidden(at(500.0), false), quiet);
    assert_eq!(m.online(at(500.0)), quiet);
    assert_eq!(m.tick(at(10_000.0)), quiet);
    // Callers are turned away at once.
    let rejected = Decision {
        effects: vec![Effect::RejectWaiters(Error::Disposed)],
        timer: TimerPlan::Keep,
    };
    assert_eq!(m.demand(at(500.0)), rejected);
    assert_eq!(m.refresh_now(at(500.0)), rejected);
    assert_eq!(m.waiters(), 0);
    assert_eq!(m.status(), Status::Disposed);
    assert_eq!(m.requests(), 1);
}

#[test]
fn a_response_after_dispose_is_ignored() {
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let _ = m.dispose();
    let d = m.response(at(0.5), Ok(grant(600.0)), 0.0);
    assert_eq!(d.effects, vec![]);
    assert_eq!(d.timer, TimerPlan::Keep);
    assert!(m.token().is_none());
    assert!(m.ready_token(at(0.5)).is_none());
    assert_eq!(m.status(), Status::Disposed);
    let d = m.response(at(0.6), Err(Error::Network), 0.0);
    assert_eq!(d.effects, vec![]);
}

// ---------------------------------------------------------------------------------------------
// status, caps, timer plans

#[test]
fn status_goes_idle_fetching_valid_refreshing_valid() {
    let mut m = Machine::new(RefreshPolicy::default());
    assert_eq!(m.status(), Status::Idle);
    assert_eq!(m.status().as_str(), "idle");
    let mut seen = Vec::new();
    seen.extend(statuses(&m.demand(at(0.0))));
    assert_eq!(m.status().as_str(), "fetching");
    seen.extend(statuses(&m.response(at(0.5), Ok(grant(600.0)), 0.0)));
    assert_eq!(m.status().as_str(), "valid");
    seen.extend(statuses(&m.tick(at(100.0))));
    seen.extend(statuses(&m.tick(at(480.0))));
    assert_eq!(m.status().as_str(), "refreshing");
    seen.extend(statuses(&m.response(at(480.5), Ok(grant(600.0)), 0.0)));
    assert_eq!(
        seen,
        vec![
            Status::Fetching,
            Status::Valid,
            Status::Refreshing,
            Status::Valid
        ]
    );
    assert_eq!(m.status(), Status::Valid);
    // Then: expired (without a refresh, e.g. after a stop) and disposed.
    let _ = m.tick(at(960.0));
    let _ = m.response(at(960.5), Err(Error::Forbidden), 0.0);
    assert_eq!(m.status().as_str(), "error");
    let _ = m.timer_fired(at(1075.0));
    assert_eq!(m.status().as_str(), "expired");
    let _ = m.dispose();
    assert_eq!(m.status().as_str(), "disposed");
}

#[test]
fn max_lifetime_caps_the_lifetime() {
    let policy = RefreshPolicy::new(None, None, Some(60.0)).unwrap();
    let m = with_token(policy, 600.0, 0.0);
    assert_eq!(m.expires_at(), Some(WALL0 + 60_000.0));
    assert_eq!(m.usable_until(), Some(WALL0 + 55_000.0));
    // Margin for a 60 s life: max(30 s, 12 s) capped at 30 s.
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 30_000.0));
    assert_eq!(MIN_MARGIN_MS, 30_000.0);
    // The default cap is an hour.
    let m = default_with_token(7_200.0);
    assert_eq!(m.expires_at(), Some(WALL0 + 3_600_000.0));
    assert!(m.token_at(at(3_596.0)).is_none());
    // Control: shorter than the cap is unchanged.
    let m = default_with_token(1_800.0);
    assert_eq!(m.expires_at(), Some(WALL0 + 1_800_000.0));
}

#[test]
fn user_margin_is_used_but_capped_at_half_the_lifetime() {
    let policy = RefreshPolicy::new(Some(60.0), None, None).unwrap();
    let m = with_token(policy, 600.0, 0.0);
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 540_000.0));
    let m = with_token(policy, 100.0, 0.0);
    assert_eq!(m.next_refresh_at(), Some(WALL0 + 50_000.0));
}

#[test]
fn the_hot_path_keeps_the_timer() {
    let mut m = default_with_token(600.0);
    for s in [1.0, 2.0, 100.0, 479.0] {
        let d = m.tick(at(s));
        assert_eq!(d.effects, vec![]);
        assert_eq!(d.timer, TimerPlan::Keep, "tick at {s}");
        let d = m.demand(at(s));
        assert_eq!(d.effects, vec![Effect::ServeWaiters]);
        assert_eq!(d.timer, TimerPlan::Keep, "demand at {s}");
        assert!(m.ready_token(at(s)).is_some());
    }
    // Control: a change of plan re-arms.
    let d = m.set_hidden(at(479.5), true);
    assert!(d.timer != TimerPlan::Keep);
}

#[test]
fn armed_delays_are_whole_milliseconds_of_at_least_one() {
    // A fractional refresh moment.
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at_ms(0.3));
    let d = m.response(at_ms(1.7), Ok(grant(600.0)), 0.123_456_7);
    let ms = arm_delay(&d);
    assert_eq!(ms.fract(), 0.0);
    assert!(ms >= 1.0);
    let exact = m.next_refresh_at().unwrap() - (WALL0 + 1.7);
    assert!(ms >= exact - 0.01 && ms < exact + 1.01, "{ms} vs {exact}");
    // A sub-millisecond backoff still arms at least 1 ms.
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let d = m.response(at(0.1), Err(Error::Network), 1e-4);
    assert_eq!(fetches(&d), 0);
    assert_eq!(d.timer, TimerPlan::Arm(1.0));
    // A timer that fires exactly after its armed delay finds its work due.
    let d = m.timer_fired(at_ms(101.0));
    assert_eq!(fetches(&d), 1);
}

/// After a final error and with no usable token, `getToken()` (demand) answers with that error
/// at once, without a request, until a hold has passed; a loop of calls (an `error` listener
/// calling `getToken()`) makes at most a few requests; `refreshNow()` always asks.
#[test]
fn after_a_final_error_demands_are_answered_from_the_error_until_the_hold_passes() {
    for jitter in [0.0, 0.5, 0.999] {
        let mut m = Machine::new(RefreshPolicy::default());
        let _ = m.demand(at(0.0));
        let d = m.response(at(0.1), Err(Error::Unauthorized), jitter);
        assert_eq!(rejected_with(&d), Some(Error::Unauthorized));
        // A loop: one demand every 10 ms for 2 s; each failure answered at once.
        let mut requests = 1;
        let mut t = 0.1;
        while t < 2.0 {
            t += 0.01;
            let d = m.demand(at(t));
            if fetches(&d) == 1 {
                requests += 1;
                let _ = m.response(at(t), Err(Error::Unauthorized), jitter);
            } else {
                assert!(
                    d.effects.contains(&Effect::RejectOne(Error::Unauthorized)),
                    "{:?}",
                    d.effects
                );
            }
            assert_eq!(m.waiters(), 0, "no caller is left waiting");
        }
        assert!(requests <= 4, "jitter {jitter}: {requests} requests in 2 s");
        assert!(requests >= 2, "the hold ends: getToken() asks again");
        // refreshNow() is never held back.
        let d = m.refresh_now(at(t));
        assert_eq!(fetches(&d), 1, "refreshNow() always asks");
        let d = m.response(at(t + 0.1), Ok(grant(600.0)), 0.0);
        assert!(has(&d, &Effect::ResolveWaiters));
        // Success clears the final error: a later final error starts a new, short hold.
        assert_eq!(m.status(), Status::Valid);
    }
}

/// A failing `headers` provider (kind `headers`) is retried with backoff and resumed at once when
/// the browser comes back online, like a network failure.
#[test]
fn a_headers_failure_is_retried_like_a_network_failure() {
    assert_eq!(retry_rule(&Error::Headers), Retry::Backoff);
    let mut m = Machine::new(RefreshPolicy::default());
    let _ = m.demand(at(0.0));
    let d = m.response(at(0.1), Err(Error::Headers), 0.9);
    assert_eq!(rejected_with(&d), Some(Error::Headers));
    assert!(m.next_refresh_at().is_some(), "a retry is planned");
    let d = m.online(at(0.2));
    assert_eq!(fetches(&d), 1, "online retries a headers failure at once");
}

/// A `refreshMargin` below the usable slack is clamped: the refresh starts at least a round
/// trip's lead before the token stops being handed out, so a healthy cycle has no `expired`
/// event and no caller waits (it used to refresh exactly when the token stopped being usable).
#[test]
fn a_margin_below_the_slack_is_clamped_so_refreshes_beat_usability() {
    for (margin_s, lifetime_s) in [
        (0.0, 20.0),
        (1.0, 20.0),
        (1.0, 600.0),
        (4.0, 60.0),
        (0.5, 4.0),
    ] {
        let policy = RefreshPolicy::new(Some(margin_s), None, None).unwrap();
        let mut m = Machine::new(policy);
        let _ = m.demand(at(0.0));
        let _ = m.response(at(0.0), Ok(grant(lifetime_s)), 0.0);
        let refresh = m.next_refresh_at().unwrap();
        let usable = m.usable_until().unwrap();
        let lead = (5_000.0f64).min(0.25 * lifetime_s * 1000.0);
        assert!(
            refresh <= usable - lead + 1e-6,
            "margin {margin_s} s, lifetime {lifetime_s} s: refresh {} ms before usability ends",
            usable - refresh
        );
        // A healthy cycle: the refresh answers at once, no `expired` event.
        let t = (refresh - WALL0) / 1000.0;
        let d = m.timer_fired(at(t));
        assert_eq!(fetches(&d), 1);
        assert!(!has(&d, &Effect::Expired));
        let d = m.response(at(t + 0.2), Ok(grant(lifetime_s)), 0.0);
        assert!(!has(&d, &Effect::Expired), "{d:?}");
    }
}
