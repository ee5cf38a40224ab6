#![cfg(not(target_arch = "wasm32"))]
//! Property tests of the refresh state machine: random schedules of time, sleeps, clock jumps,
//! callers, visibility, connectivity and broker answers, run through a faithful model of the web
//! shell (one timer, one request in flight, answers delivered after their latency), with the
//! engine's invariants checked after every step.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::Config;

use speech_token_client::engine::backoff::MAX_RETRY_AFTER_MS;
use speech_token_client::engine::machine::{retry_rule, Retry};
use speech_token_client::engine::token::{
    parse_grant, parse_grant_at, AnswerClock, DATE_RESOLUTION_MS,
};
use speech_token_client::engine::{
    Decision, Effect, Machine, Now, RefreshPolicy, Status, TimerPlan,
};
use speech_token_client::error::{Error, Invalid};
use speech_token_sim::{Rng, SerdeJson};

const WALL0: f64 = 1_700_000_000_000.0;

#[derive(Debug, Clone)]
enum Op {
    /// Both clocks advance; the timer fires on time, or (`late_timer`) only at the end.
    Advance {
        ms: u32,
        late_timer: bool,
    },
    /// The machine sleeps: the wall clock advances, the monotonic clock and timers stand still;
    /// on wake the shell re-checks (`pageshow`/`focus`).
    Sleep {
        ms: u32,
    },
    /// The wall clock is set (NTP, the user); nobody tells the machine.
    WallJump {
        ms: i32,
    },
    Demand {
        callers: u8,
    },
    RefreshNow,
    /// The shell sends the request in flight (reads the app's headers): a `refreshNow()` from
    /// then on waits for the next request.
    Send,
    SetHidden(bool),
    Online,
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    op_with_late_timers(0.2)
}

/// Operations; `late` is the share of time advances during which the timer fires late (as in a
/// throttled background tab) while broker answers arrive on time.
fn op_with_late_timers(late: f64) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..2_000, prop::bool::weighted(late))
            .prop_map(|(ms, late_timer)| Op::Advance { ms, late_timer }),
        6 => (0u32..120_000, prop::bool::weighted(late))
            .prop_map(|(ms, late_timer)| Op::Advance { ms, late_timer }),
        2 => (0u32..3_600_000, prop::bool::weighted(late.max(0.3)))
            .prop_map(|(ms, late_timer)| Op::Advance { ms, late_timer }),
        1 => (10_000u32..7_200_000).prop_map(|ms| Op::Sleep { ms }),
        1 => (-3_600_000i32..3_600_000).prop_map(|ms| Op::WallJump { ms }),
        5 => (1u8..4).prop_map(|callers| Op::Demand { callers }),
        2 => Just(Op::RefreshNow),
        2 => Just(Op::Send),
        2 => any::<bool>().prop_map(Op::SetHidden),
        1 => Just(Op::Online),
        2 => Just(Op::Tick),
    ]
}

/// What the broker will answer to the request in flight.
#[derive(Debug, Clone)]
enum Outcome {
    Ok { name: String, lifetime_s: u32 },
    Err(Error),
}

#[derive(Debug, Clone)]
struct Pending {
    due_mono: f64,
    sent: Now,
    outcome: Outcome,
}

/// The model's own idea of a published token: computed independently of the machine.
#[derive(Debug, Clone)]
struct ModelToken {
    name: String,
    expires_wall: f64,
    usable_wall: f64,
    usable_mono: f64,
}

impl ModelToken {
    fn usable(&self, now: Now) -> bool {
        now.wall_ms < self.usable_wall && now.mono_ms < self.usable_mono
    }
}

/// Which input produced a decision (some effects belong to some inputs only).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Input {
    Response,
    Dispose,
    Other,
}

/// How often each situation occurred (to show the properties are not checked vacuously).
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    fetches: u64,
    publishes: u64,
    serves: u64,
    resolves: u64,
    rejects: u64,
    expiries: u64,
    failures: u64,
    expired_on_arrival: u64,
    retries_checked: u64,
    late_timers: u64,
    disposed_late_answers: u64,
}

struct Shell {
    stats: Stats,
    m: Machine,
    policy: RefreshPolicy,
    /// Only retries (not planned refreshes) are checked against usable_until: a user's
    /// refreshMargin below the 5 s slack legitimately plans a refresh after it.
    check_refresh_plan: bool,
    /// Check that Retry-After is honoured.
    check_retry_after: bool,
    /// How far past the token's usable time the planned retry may come (wall ms): only as far
    /// as a broker's Retry-After asked, never for the client's own delay.
    retry_bound: Option<f64>,
    wall: f64,
    mono: f64,
    rng: Rng,
    /// When the shell's timer is due, on the monotonic clock.
    timer: Option<f64>,
    pending: Option<Pending>,
    held: Option<ModelToken>,
    arriving: Option<ModelToken>,
    get_waiters: usize,
    fresh_waiters: usize,
    /// `refreshNow()` callers behind a request already sent: they wait for the next one.
    fresh_next: usize,
    disposed: bool,
    fetches: u64,
    serial: u64,
}

impl Shell {
    fn new(policy: RefreshPolicy, seed: u64, check_refresh_plan: bool) -> Shell {
        Shell {
            stats: Stats::default(),
            m: Machine::new(policy),
            policy,
            check_refresh_plan,
            check_retry_after: false,
            retry_bound: None,
            wall: WALL0,
            mono: 0.0,
            rng: Rng::new(seed),
            timer: None,
            pending: None,
            held: None,
            arriving: None,
            get_waiters: 0,
            fresh_waiters: 0,
            fresh_next: 0,
            disposed: false,
            fetches: 0,
            serial: 0,
        }
    }

    fn now(&self) -> Now {
        Now::new(self.wall, self.mono)
    }

    fn draw_request(&mut self, sent: Now) -> Pending {
        let u = self.rng.unit();
        let latency = if u < 0.7 {
            self.rng.range(5.0, 3_000.0)
        } else if u < 0.95 {
            self.rng.range(3_000.0, 10_000.0)
        } else {
            self.rng.range(10_000.0, 60_000.0)
        };
        let outcome = if self.rng.unit() < 0.6 {
            self.serial += 1;
            Outcome::Ok {
                name: format!("tok-{}", self.serial),
                lifetime_s: 2 + (self.rng.next_u64() % 3_599) as u32,
            }
        } else {
            let k = 1 + (self.rng.next_u64() % 120) as u32;
            let errors = [
                Error::Network,
                Error::Timeout,
                Error::from_status(500, None),
                Error::from_status(502, None),
                Error::from_status(503, Some(k)),
                Error::from_status(503, None),
                Error::from_status(429, Some(k)),
                Error::from_status(429, None),
                Error::from_status(401, None),
                Error::from_status(403, None),
                Error::from_status(400, None),
                Error::from_status(404, None),
                Error::Redirected,
                Error::InvalidResponse(Invalid::NotJson),
            ];
            let i = (self.rng.next_u64() % errors.len() as u64) as usize;
            Outcome::Err(errors[i])
        };
        Pending {
            due_mono: sent.mono_ms + latency,
            sent,
            outcome,
        }
    }

    /// Carries out a decision like the web shell, checking every effect.
    fn apply(&mut self, d: Decision, input: Input) -> Result<(), TestCaseError> {
        let now = self.now();
        let fetch_count = d.effects.iter().filter(|e| **e == Effect::Fetch).count();
        prop_assert!(
            fetch_count <= 1,
            "two fetches in one decision: {:?}",
            d.effects
        );
        if self.disposed {
            for e in &d.effects {
                let ok = matches!(e, Effect::RejectWaiters(Error::Disposed))
                    || (input == Input::Dispose && *e == Effect::StatusChanged(Status::Disposed));
                prop_assert!(ok, "effect {:?} after dispose", e);
            }
            prop_assert!(
                !matches!(d.timer, TimerPlan::Arm(_)),
                "timer armed after dispose: {:?}",
                d.timer
            );
        }
        let mut published = false;
        for e in &d.effects {
            match e {
                Effect::Fetch => {
                    prop_assert!(
                        self.pending.is_none(),
                        "a second request while one is in flight"
                    );
                    self.fetches += 1;
                    self.stats.fetches += 1;
                    self.fresh_waiters += std::mem::take(&mut self.fresh_next);
                    self.pending = Some(self.draw_request(now));
                    self.retry_bound = None;
                }
                Effect::Publish => {
                    prop_assert_eq!(input, Input::Response, "Publish outside a response");
                    let t = self.arriving.take();
                    prop_assert!(t.is_some(), "Publish without a successful answer");
                    let t = t.unwrap();
                    prop_assert!(t.usable(now), "published an unusable token");
                    let expires = self.m.expires_at();
                    prop_assert!(
                        expires.is_some_and(|x| (x - t.expires_wall).abs() < 1e-3),
                        "expires_at {:?}, model {}",
                        expires,
                        t.expires_wall
                    );
                    self.held = Some(t);
                    published = true;
                    self.stats.publishes += 1;
                }
                Effect::ResolveWaiters => {
                    prop_assert!(published, "ResolveWaiters without a new token");
                    let held = self.held.as_ref().unwrap();
                    prop_assert!(held.usable(now), "resolved with an unusable token");
                    self.stats.resolves += 1;
                    self.get_waiters = 0;
                    self.fresh_waiters = 0;
                }
                Effect::ServeWaiters => {
                    let held = self.held.as_ref();
                    prop_assert!(
                        held.is_some_and(|h| h.usable(now)),
                        "served an unusable token at {:?}: {:?}",
                        now,
                        held
                    );
                    let tok = self.m.token_at(now).map(|t| t.expose().to_owned());
                    prop_assert_eq!(tok.as_deref(), Some(held.unwrap().name.as_str()));
                    self.stats.serves += 1;
                    self.get_waiters = 0;
                }
                Effect::RejectWaiters(err) => {
                    if self.disposed {
                        prop_assert_eq!(err, &Error::Disposed);
                    }
                    self.stats.rejects += 1;
                    self.get_waiters = 0;
                    self.fresh_waiters = 0;
                    if self.disposed {
                        self.fresh_next = 0;
                    }
                }
                Effect::RejectOne(err) => {
                    // Only a demand, after a final error, with no usable token: never a token
                    // withheld.
                    prop_assert_eq!(input, Input::Other, "RejectOne outside a demand");
                    prop_assert!(
                        self.m.token_at(now).is_none(),
                        "a caller was refused while a usable token is held"
                    );
                    prop_assert!(!matches!(err, Error::Disposed));
                    self.stats.rejects += 1;
                    self.get_waiters = self.get_waiters.saturating_sub(1);
                }
                Effect::Expired => {
                    // Never early: the token really is past its usable moment on some clock.
                    let held = self.held.as_ref();
                    prop_assert!(
                        held.is_some_and(|h| !h.usable(now)),
                        "Expired while the model says usable: {:?} at {:?}",
                        held,
                        now
                    );
                    self.stats.expiries += 1;
                }
                Effect::Failed(err) => {
                    self.stats.failures += 1;
                    // What the broker asked for (Retry-After), and nothing more, may reach
                    // past the held token's usable time.
                    let asked = match retry_rule(err) {
                        Retry::After(ms) => ms.min(MAX_RETRY_AFTER_MS),
                        _ => 0.0,
                    };
                    self.retry_bound = Some(now.wall_ms + asked);
                    if *err == Error::InvalidResponse(Invalid::ExpiredOnArrival) {
                        self.stats.expired_on_arrival += 1;
                    }
                    // Retry-After is honoured in full, with or without a token held; only the
                    // app's own `refreshNow()` (kept for the next request) goes at once.
                    let kept = self.fresh_next > 0;
                    if let (true, false, Retry::After(ms)) =
                        (self.check_retry_after, kept, retry_rule(err))
                    {
                        prop_assert!(
                            fetch_count == 0,
                            "retried at once despite Retry-After {} ms: {:?}",
                            ms,
                            d.effects
                        );
                        let next = self.m.next_refresh_at();
                        let earliest = now.wall_ms + ms.min(MAX_RETRY_AFTER_MS);
                        prop_assert!(
                            next.is_some_and(|n| n >= earliest - 1e-3),
                            "retry at {:?}, Retry-After asks for {}",
                            next,
                            earliest
                        );
                    }
                    // A retry never reaches past the held token's usable time, except as far
                    // as the broker's Retry-After asked.
                    if let (Some(retry), Some(until), Some(asked)) = (
                        self.m.next_refresh_at(),
                        self.m.usable_until(),
                        self.retry_bound,
                    ) {
                        self.stats.retries_checked += 1;
                        prop_assert!(
                            retry <= until.max(asked) + 1e-3,
                            "retry at {} past usable_until {} and Retry-After's {}",
                            retry,
                            until,
                            asked
                        );
                    }
                }
                Effect::Refreshing | Effect::StatusChanged(_) => {}
            }
        }
        match d.timer {
            TimerPlan::Arm(ms) => {
                prop_assert!(
                    ms.is_finite() && ms >= 1.0 && ms.fract() == 0.0,
                    "bad timer delay {}",
                    ms
                );
                self.timer = Some(self.mono + ms);
            }
            TimerPlan::Clear => self.timer = None,
            TimerPlan::Keep => {}
        }
        if input == Input::Dispose {
            prop_assert!(self.timer.is_none(), "dispose left a timer");
        }
        self.check(true)
    }

    /// State invariants, after an input (`after_input`) or after time moved on its own.
    fn check(&self, after_input: bool) -> Result<(), TestCaseError> {
        let now = self.now();
        let m = &self.m;
        prop_assert_eq!(
            m.waiters(),
            self.get_waiters + self.fresh_waiters + self.fresh_next
        );
        // A `refreshNow()` caller kept for the next request always has a request on its way:
        // the one it waits behind, or its own.
        prop_assert!(
            self.disposed || self.fresh_next == 0 || self.pending.is_some(),
            "{} refreshNow() callers wait for a next request that never comes",
            self.fresh_next
        );
        prop_assert_eq!(m.requests(), self.fetches);
        for (what, tok) in [
            ("token_at", m.token_at(now)),
            ("ready_token", m.ready_token(now)),
        ] {
            if let Some(tok) = tok {
                let held = self.held.as_ref();
                prop_assert!(
                    held.is_some_and(|h| h.usable(now) && h.name == tok.expose()),
                    "{} handed out a token the model says is unusable or unknown",
                    what
                );
            }
        }
        // Probe the exact end of usability of the token held, on each clock.
        if let (Some(tok), Some(h)) = (m.token(), self.held.as_ref()) {
            if tok.expose() == h.name {
                let just_before = Now::new(h.usable_wall - 1.0, h.usable_mono - 1.0);
                prop_assert!(m.token_at(just_before).is_some(), "unusable 1 ms early");
                let wall_end = Now::new(h.usable_wall, h.usable_mono - 1.0);
                prop_assert!(
                    m.token_at(wall_end).is_none(),
                    "usable past its wall deadline"
                );
                let mono_end = Now::new(h.usable_wall - 1.0, h.usable_mono);
                prop_assert!(
                    m.token_at(mono_end).is_none(),
                    "usable past its mono deadline"
                );
            }
        }
        if self.disposed {
            prop_assert_eq!(m.status(), Status::Disposed);
            prop_assert!(m.token().is_none());
            prop_assert_eq!(m.waiters(), 0);
            prop_assert!(self.timer.is_none());
            return Ok(());
        }
        prop_assert_eq!(m.is_fetching(), self.pending.is_some());
        if after_input {
            if let Some(tok) = m.token() {
                let held = self.held.as_ref();
                prop_assert!(
                    held.is_some_and(|h| h.usable(now) && h.name == tok.expose()),
                    "holds a token past its usable moment after an input"
                );
            }
            match m.status() {
                Status::Valid | Status::Refreshing => prop_assert!(m.token().is_some()),
                Status::Fetching => prop_assert!(m.token().is_none() && m.is_fetching()),
                Status::Expired => prop_assert!(m.token().is_none()),
                Status::Idle => prop_assert_eq!(m.requests(), 0),
                Status::Error => {}
                Status::Disposed => prop_assert!(false, "disposed without dispose()"),
            }
        }
        // Only a broker's Retry-After plans a retry past the token's usable time.
        // Only a broker's Retry-After plans a retry past the token's usable time, and only as
        // far as it asked.
        if self.check_refresh_plan {
            if let (Some(next), Some(until)) = (m.next_refresh_at(), m.usable_until()) {
                let until = until.max(self.retry_bound.unwrap_or(f64::NEG_INFINITY));
                prop_assert!(
                    next <= until + 1e-3,
                    "next refresh {} after usable {}",
                    next,
                    until
                );
            }
        }
        // Liveness: a waiting caller, or a held token, always has something to wake it.
        if m.waiters() > 0 || m.token().is_some() {
            prop_assert!(
                self.pending.is_some() || self.timer.is_some(),
                "nothing scheduled: waiters {}, token {}",
                m.waiters(),
                m.token().is_some()
            );
        }
        Ok(())
    }

    fn deliver(&mut self) -> Result<(), TestCaseError> {
        let p = self.pending.take().expect("a pending request");
        let now = self.now();
        let result = match &p.outcome {
            Outcome::Ok { name, lifetime_s } => {
                let lifetime = (f64::from(*lifetime_s) * 1000.0).min(self.policy.max_lifetime_ms);
                let usable = lifetime - self.policy.slack(lifetime);
                self.arriving = Some(ModelToken {
                    name: name.clone(),
                    expires_wall: p.sent.wall_ms + lifetime,
                    usable_wall: p.sent.wall_ms + usable,
                    usable_mono: p.sent.mono_ms + usable,
                });
                let body = format!(r#"{{"token":"{name}","expiresIn":{lifetime_s}}}"#);
                let grant = parse_grant(&body, Some("application/json"), &SerdeJson, now.wall_ms);
                prop_assert!(grant.is_ok());
                grant
            }
            Outcome::Err(e) => {
                self.arriving = None;
                Err(*e)
            }
        };
        let expect_publish = self.arriving.as_ref().is_some_and(|t| t.usable(now));
        let jitter = self.rng.unit();
        let d = self.m.response(now, result, jitter);
        if self.disposed {
            self.stats.disposed_late_answers += 1;
            prop_assert!(
                d.effects.is_empty(),
                "effects after dispose: {:?}",
                d.effects
            );
            prop_assert_eq!(d.timer, TimerPlan::Keep);
            self.arriving = None;
            return self.check(true);
        }
        let published = d.effects.contains(&Effect::Publish);
        prop_assert_eq!(published, expect_publish, "effects {:?}", &d.effects);
        if self.arriving.is_some() && !expect_publish {
            prop_assert!(d.effects.contains(&Effect::Failed(Error::InvalidResponse(
                Invalid::ExpiredOnArrival
            ))));
        }
        self.apply(d, Input::Response)?;
        self.arriving = None;
        Ok(())
    }

    fn fire_timer(&mut self) -> Result<(), TestCaseError> {
        self.timer = None;
        let d = self.m.timer_fired(self.now());
        self.apply(d, Input::Other)
    }

    /// Lets `ms` of awake time pass, delivering answers and firing the timer as they fall due.
    fn advance(&mut self, ms: f64, late_timer: bool) -> Result<(), TestCaseError> {
        let end = self.mono + ms;
        loop {
            let response = self
                .pending
                .as_ref()
                .map(|p| p.due_mono)
                .filter(|t| *t <= end);
            let timer = self.timer.filter(|t| !late_timer && *t <= end);
            let next = match (response, timer) {
                (Some(r), Some(t)) => r.min(t),
                (Some(r), None) => r,
                (None, Some(t)) => t,
                (None, None) => break,
            };
            let dt = (next - self.mono).max(0.0);
            self.mono += dt;
            self.wall += dt;
            if response == Some(next) {
                self.deliver()?;
            } else {
                self.fire_timer()?;
            }
        }
        let dt = end - self.mono;
        self.mono = end;
        self.wall += dt;
        self.check(false)?;
        if late_timer && self.timer.is_some_and(|t| t <= end) {
            self.stats.late_timers += 1;
            self.fire_timer()?;
        }
        Ok(())
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Advance { ms, late_timer } => self.advance(f64::from(ms), late_timer)?,
            Op::Sleep { ms } => {
                self.wall += f64::from(ms);
                self.check(false)?;
                let d = self.m.tick(self.now());
                self.apply(d, Input::Other)?;
            }
            Op::WallJump { ms } => {
                self.wall += f64::from(ms);
                self.check(false)?;
            }
            Op::Demand { callers } => {
                for _ in 0..callers {
                    self.get_waiters += 1;
                    let d = self.m.demand(self.now());
                    self.apply(d, Input::Other)?;
                }
            }
            Op::RefreshNow => {
                if self.m.request_sent() {
                    self.fresh_next += 1;
                } else {
                    self.fresh_waiters += 1;
                }
                let d = self.m.refresh_now(self.now());
                self.apply(d, Input::Other)?;
            }
            Op::SetHidden(hidden) => {
                let d = self.m.set_hidden(self.now(), hidden);
                self.apply(d, Input::Other)?;
            }
            Op::Online => {
                let d = self.m.online(self.now());
                self.apply(d, Input::Other)?;
            }
            Op::Tick => {
                let d = self.m.tick(self.now());
                self.apply(d, Input::Other)?;
            }
            Op::Send => {
                self.m.sending();
                if !self.disposed {
                    prop_assert_eq!(self.m.request_sent(), self.pending.is_some());
                }
            }
        }
        Ok(())
    }

    fn dispose(&mut self) -> Result<(), TestCaseError> {
        let first = !self.disposed;
        let d = self.m.dispose();
        self.disposed = true;
        if first {
            prop_assert_eq!(d.timer, TimerPlan::Clear);
            prop_assert_eq!(
                d.effects.last(),
                Some(&Effect::StatusChanged(Status::Disposed))
            );
        } else {
            prop_assert!(d.effects.is_empty());
            prop_assert_eq!(d.timer, TimerPlan::Keep);
        }
        self.apply(d, Input::Dispose)
    }

    /// Runs the world on (answers on time, timer on time) until every caller has an answer.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..10_000 {
            if self.m.waiters() == 0 {
                return Ok(());
            }
            let next = match (self.pending.as_ref().map(|p| p.due_mono), self.timer) {
                (Some(r), Some(t)) => r.min(t),
                (Some(r), None) => r,
                (None, Some(t)) => t,
                (None, None) => {
                    return Err(TestCaseError::fail(format!(
                        "{} callers wait and nothing is scheduled",
                        self.m.waiters()
                    )))
                }
            };
            self.advance((next - self.mono).max(0.0), false)?;
        }
        Err(TestCaseError::fail(
            "callers still waiting after 10 000 events",
        ))
    }
}

fn run_schedule(
    policy: RefreshPolicy,
    check_refresh_plan: bool,
    seed: u64,
    ops: &[Op],
    dispose_at: Option<usize>,
) -> Result<Stats, TestCaseError> {
    let shell = Shell::new(policy, seed, check_refresh_plan);
    run_shell(shell, ops, dispose_at)
}

fn run_shell(
    mut shell: Shell,
    ops: &[Op],
    dispose_at: Option<usize>,
) -> Result<Stats, TestCaseError> {
    for (i, op) in ops.iter().enumerate() {
        if dispose_at == Some(i) {
            shell.dispose()?;
        }
        shell.run(op)?;
    }
    if shell.disposed {
        // Whatever is still pending arrives late and is ignored; a second dispose is a no-op.
        if shell.pending.is_some() {
            shell.advance(120_000.0, false)?;
        }
        shell.dispose()?;
        prop_assert!(shell.m.token().is_none());
        return Ok(shell.stats);
    }
    shell.drain()?;
    prop_assert_eq!(shell.m.waiters(), 0);
    // And a final dispose rejects nobody and leaves nothing armed.
    shell.dispose()?;
    Ok(shell.stats)
}

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_schedules_keep_the_invariants(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..120),
        dispose_at in prop::option::weighted(0.15, 0usize..120),
    ) {
        run_schedule(RefreshPolicy::default(), true, seed, &ops, dispose_at)?;
    }

    #[test]
    fn random_policies_keep_the_invariants(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..80),
        margin_s in prop::option::of(0.0f64..900.0),
        max_lifetime_s in prop::option::of(1.0f64..7_200.0),
    ) {
        let policy = RefreshPolicy::new(margin_s, None, max_lifetime_s).unwrap();
        run_schedule(policy, false, seed, &ops, None)?;
    }
}

proptest! {
    // The situation is rare (a late timer and a 429/503 answer after expiry): more cases.
    #![proptest_config(Config { cases: 2048, ..config() })]

    #[test]
    fn retry_after_is_honoured_when_no_token_is_usable(
        seed in any::<u64>(),
        ops in prop::collection::vec(op_with_late_timers(0.8), 1..120),
    ) {
        let mut shell = Shell::new(RefreshPolicy::default(), seed, true);
        shell.check_retry_after = true;
        run_shell(shell, &ops, None)?;
    }
}

/// The properties would hold vacuously if the model never produced the situations they are
/// about. Run a fixed set of generated schedules and count what happened.
#[test]
fn the_model_exercises_the_interesting_paths() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let ops = prop::collection::vec(op(), 100..120);
    let mut total = Stats::default();
    for seed in 0..64u64 {
        let ops = ops.new_tree(&mut runner).unwrap().current();
        let dispose_at = (seed % 4 == 0).then_some(60);
        let s = run_schedule(RefreshPolicy::default(), true, seed, &ops, dispose_at)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        total.fetches += s.fetches;
        total.publishes += s.publishes;
        total.serves += s.serves;
        total.resolves += s.resolves;
        total.rejects += s.rejects;
        total.expiries += s.expiries;
        total.failures += s.failures;
        total.expired_on_arrival += s.expired_on_arrival;
        total.retries_checked += s.retries_checked;
        total.late_timers += s.late_timers;
        total.disposed_late_answers += s.disposed_late_answers;
    }
    eprintln!("model coverage over 64 schedules: {total:?}");
    assert!(total.fetches > 500, "{total:?}");
    assert!(total.publishes > 200, "{total:?}");
    assert!(total.serves > 100, "{total:?}");
    assert!(total.resolves > 50, "{total:?}");
    assert!(total.rejects > 50, "{total:?}");
    assert!(total.expiries > 20, "{total:?}");
    assert!(total.failures > 100, "{total:?}");
    assert!(total.expired_on_arrival > 0, "{total:?}");
    assert!(total.retries_checked > 20, "{total:?}");
    assert!(total.late_timers > 5, "{total:?}");
}

/// base64url without padding, for the JWT property below.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
        }
    }
    out
}

proptest! {
    #![proptest_config(config())]

    /// The token-age rule (docs/ARCHITECTURE.md, "Token age"): for any JWT lifetime, any age of
    /// the token when the broker hands it out (a cache), and any browser clock error within
    /// ±10 minutes, reading the JWT against the broker's `Date` never serves it past its own
    /// `exp`, and never rejects or shortens a fresh one by more than the header's resolution.
    #[test]
    fn a_jwt_is_never_served_past_exp_whatever_the_browser_clock(
        lifetime_s in 60u32..7_200,
        age_fraction in 0.0f64..1.2,
        skew_s in -600.0f64..600.0,
        server_ms in 1_600_000_000_000.0f64..1_900_000_000_000.0,
    ) {
        let server_s = (server_ms / 1000.0).floor();
        let age_s = (f64::from(lifetime_s) * age_fraction).floor();
        let iat = server_s - age_s;
        let exp = iat + f64::from(lifetime_s);
        let payload = format!(r#"{{"iat":{iat},"exp":{exp}}}"#);
        let token = format!("{}.{}.{}", b64url(b"{\"alg\":\"RS256\"}"), b64url(payload.as_bytes()), b64url(b"sig"));
        let clock = AnswerClock { local_ms: server_s * 1000.0 + skew_s * 1000.0, server_ms: Some(server_s * 1000.0) };
        let true_left_ms = (exp - server_s) * 1000.0;
        match parse_grant_at(&token, Some("text/plain"), &SerdeJson, clock) {
            Ok(g) => {
                prop_assert!(g.lifetime_ms <= true_left_ms, "served {} ms of {} left", g.lifetime_ms, true_left_ms);
                prop_assert!(g.lifetime_ms >= true_left_ms - DATE_RESOLUTION_MS - 1e-6);
            }
            Err(e) => prop_assert!(
                true_left_ms <= 1_000.0 + DATE_RESOLUTION_MS,
                "a token with {} ms left was rejected: {:?}", true_left_ms, e
            ),
        }
    }
}

/// The engine's `min_ms`/`max_ms` (one compare and select, smaller on wasm32 than `f64::min`/
/// `max`) answer exactly what the std versions answer, NaN and signed zeros included.
#[test]
fn min_ms_and_max_ms_agree_with_std() {
    use speech_token_client::engine::Ms;
    let values = [
        f64::NAN,
        f64::NEG_INFINITY,
        -1.5,
        -0.0,
        0.0,
        1.0,
        2.5,
        f64::MAX,
        f64::INFINITY,
    ];
    for a in values {
        for b in values {
            let (min, max) = (a.min_ms(b), a.max_ms(b));
            // std treats -0.0 and 0.0 as equal and may return either; so may these
            if a == 0.0 && b == 0.0 {
                assert_eq!(min, 0.0);
                assert_eq!(max, 0.0);
                continue;
            }
            assert_eq!(min.to_bits(), a.min(b).to_bits(), "{a}.min_ms({b})");
            assert_eq!(max.to_bits(), a.max(b).to_bits(), "{a}.max_ms({b})");
        }
    }
}
