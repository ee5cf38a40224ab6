//! The engine's test bench (a dev-only crate, never shipped): a deterministic, seeded simulation
//! of a browser tab's day for tests and benchmarks, and [`SerdeJson`], the native [`Json`]
//! decoder the engine tests use.
//!
//! It drives the real [`Machine`] (the same code the wasm shell runs) through a day of broker
//! latency, failures, outages, laptop sleeps, hidden periods with Chrome-style timer throttling
//! and wall-clock jumps, and measures what a user would feel: how long any consumer (an attached
//! Speech SDK object, or a caller of `getToken()`) held an expired token. The same schedule can be
//! replayed against the baseline most apps use today — a fixed 9-minute `setInterval` with no
//! retry (Microsoft's React sample) — so the two are compared under identical conditions.
//!
//! Test and benchmark code only: it lives in its own crate so that the shipped engine is only
//! what ships (docs/ARCHITECTURE.md).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use speech_token_client::engine::backoff::MAX_RETRY_AFTER_MS;
use speech_token_client::engine::machine::{retry_rule, Effect, Machine, Now, Retry, TimerPlan};
use speech_token_client::engine::policy::RefreshPolicy;
use speech_token_client::engine::token::{
    parse_grant, read_fields, Field, Json, JsonError, UrlParser, UrlParts, WhatwgUrl,
};
use speech_token_client::error::Error;

/// Chrome's intensive throttling aligns *chained* timers (set from a timer callback, chain
/// count ≥ 5) of a page hidden for 5 minutes to whole minutes.
/// Source: Chrome 88 release notes, "Intensive wake up throttling".
pub const HIDDEN_TIMER_ALIGN_MS: f64 = 60_000.0;
/// Chain count from which intensive throttling applies (same source).
pub const INTENSIVE_CHAIN_COUNT: u32 = 5;
/// How long a page must be hidden before intensive throttling applies (same source).
pub const INTENSIVE_AFTER_HIDDEN_MS: f64 = 300_000.0;
/// Other timers of a hidden page are aligned to whole seconds (Chrome, since version 57).
pub const HIDDEN_BASIC_ALIGN_MS: f64 = 1_000.0;
/// How one browser engine throttles a hidden page's timers: the simulation's per-engine model.
/// The presets are measured (a chain of 100 ms timers in a minimized window for 7 minutes,
/// `tests/e2e/engines/lifecycle.mjs`; numbers in `docs/BROWSERS.md`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttling {
    /// Engine name, for reports.
    pub engine: &'static str,
    /// A hidden page's timers wait for the next multiple of this (ms).
    pub basic_align_ms: f64,
    /// Chained timers (chain count ≥ [`INTENSIVE_CHAIN_COUNT`]) of a page hidden at least
    /// `intensive_after_ms` wait for the next multiple of `intensive_align_ms`.
    pub intensive_align_ms: f64,
    /// How long a page must be hidden before the intensive stage (`f64::INFINITY`: never).
    pub intensive_after_ms: f64,
}

impl Throttling {
    /// Chrome's documented model (Chrome 57 / 88 release notes): whole seconds, and whole minutes
    /// for chained timers after 5 minutes hidden. Headless Chromium 156 was measured stricter:
    /// whole minutes from about 1 minute hidden (see [`Throttling::CHROMIUM_MEASURED`]).
    pub const CHROMIUM: Throttling = Throttling {
        engine: "chromium",
        basic_align_ms: HIDDEN_BASIC_ALIGN_MS,
        intensive_align_ms: HIDDEN_TIMER_ALIGN_MS,
        intensive_after_ms: INTENSIVE_AFTER_HIDDEN_MS,
    };
    /// Headless Chromium 156 as measured here: chained timers on whole minutes after ~1 minute.
    pub const CHROMIUM_MEASURED: Throttling = Throttling {
        engine: "chromium-measured",
        intensive_after_ms: 60_000.0,
        ..Throttling::CHROMIUM
    };
    /// Firefox ESR 153 as measured here: whole seconds, no later stage within 7 minutes.
    pub const FIREFOX: Throttling = Throttling {
        engine: "firefox",
        basic_align_ms: 1_000.0,
        intensive_align_ms: 1_000.0,
        intensive_after_ms: f64::INFINITY,
    };
    /// WebKitGTK 2.50 as measured here: whole seconds, no later stage within 7 minutes.
    pub const WEBKIT: Throttling = Throttling {
        engine: "webkit",
        basic_align_ms: 1_000.0,
        intensive_align_ms: 1_000.0,
        intensive_after_ms: f64::INFINITY,
    };
    /// Every preset, for per-engine runs.
    pub const ALL: [Throttling; 4] = [
        Throttling::CHROMIUM,
        Throttling::CHROMIUM_MEASURED,
        Throttling::FIREFOX,
        Throttling::WEBKIT,
    ];
}

/// The Microsoft sample's refresh interval: 9 minutes for a 10-minute token.
/// Source: Speech SDK docs, "recommend reusing a token for 9 minutes".
pub const FIXED_INTERVAL_MS: f64 = 540_000.0;

/// SplitMix64: a tiny, well-known PRNG; good enough to draw schedules, and deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// A time interval `[start, end)` in simulated milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Start (ms since the simulation began).
    pub start: f64,
    /// End (exclusive).
    pub end: f64,
}

impl Span {
    fn contains(&self, t: f64) -> bool {
        t >= self.start && t < self.end
    }
}

/// The conditions of one simulated day.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Seed of the random draws during the run (latency, failures, jitter).
    pub seed: u64,
    /// Simulated duration (ms).
    pub duration_ms: f64,
    /// Lifetime the broker declares for each token (ms).
    pub lifetime_ms: f64,
    /// Broker latency bounds (ms).
    pub latency_ms: (f64, f64),
    /// Share of requests outside outages that fail with HTTP 500.
    pub failure_rate: f64,
    /// Broker outages (requests fail: half with a network error, half 503 + Retry-After).
    pub outages: Vec<Span>,
    /// Laptop sleeps: nothing runs, the monotonic clock stands still, the wall clock goes on.
    pub sleeps: Vec<Span>,
    /// Hidden periods: timers fire on whole seconds, chained ones on whole minutes.
    pub hidden: Vec<Span>,
    /// Treat every hidden timer as chained (worst case: whole minutes), as the design's model does.
    pub worst_case_throttling: bool,
    /// How the engine throttles hidden timers (default: [`Throttling::CHROMIUM`]).
    pub throttling: Throttling,
    /// Wall-clock jumps (time, delta ms): the user or NTP sets the clock.
    pub clock_jumps: Vec<(f64, f64)>,
    /// The app calls `getToken()` this often (ms), e.g. to open a recognizer.
    pub demand_every_ms: f64,
}

impl Scenario {
    /// The design's model day: 10-minute tokens, latency 0.05–5 s, 10% failures, three outages
    /// of 60–110 s (shorter than the 2-minute margin), four sleeps of 5–60 minutes, hidden
    /// periods, two clock jumps, and a `getToken()` call every 45 s.
    pub fn day(seed: u64, hours: f64) -> Scenario {
        let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
        let duration_ms = hours * 3_600_000.0;
        let pick = |count: usize, min: f64, max: f64, rng: &mut Rng| -> Vec<Span> {
            let mut spans: Vec<Span> = (0..count)
                .map(|_| {
                    let len = rng.range(min, max);
                    let start = rng.range(60_000.0, (duration_ms - len - 60_000.0).max(60_001.0));
                    Span {
                        start,
                        end: start + len,
                    }
                })
                .collect();
            spans.sort_by(|a, b| a.start.total_cmp(&b.start));
            spans
        };
        let scale = (hours / 24.0).max(1.0 / 24.0);
        let n = |per_day: f64| ((per_day * scale).round() as usize).max(1);
        let outages = pick(n(3.0), 60_000.0, 110_000.0, &mut rng);
        let sleeps = disjoint(pick(n(4.0), 300_000.0, 3_600_000.0, &mut rng));
        let hidden = disjoint(pick(n(6.0), 600_000.0, 5_400_000.0, &mut rng));
        let clock_jumps = (0..n(2.0))
            .map(|_| {
                (
                    rng.range(0.0, duration_ms),
                    rng.range(-900_000.0, 900_000.0),
                )
            })
            .collect();
        Scenario {
            seed,
            duration_ms,
            lifetime_ms: 600_000.0,
            latency_ms: (50.0, 5_000.0),
            failure_rate: 0.1,
            outages,
            sleeps,
            hidden,
            clock_jumps,
            demand_every_ms: 45_000.0,
            worst_case_throttling: false,
            throttling: Throttling::CHROMIUM,
        }
    }

    fn asleep(&self, t: f64) -> bool {
        self.sleeps.iter().any(|s| s.contains(t))
    }

    fn hidden_at(&self, t: f64) -> bool {
        self.hidden.iter().any(|s| s.contains(t)) || self.asleep(t)
    }

    fn in_outage(&self, t: f64) -> bool {
        self.outages.iter().any(|s| s.contains(t))
    }

    /// The end of the sleep containing `t`, or `t`.
    fn wake_time(&self, t: f64) -> f64 {
        self.sleeps
            .iter()
            .find(|s| s.contains(t))
            .map_or(t, |s| s.end)
    }

    /// The browser's clocks at simulated time `t`.
    pub fn now(&self, t: f64) -> Now {
        let jumped: f64 = self
            .clock_jumps
            .iter()
            .filter(|(at, _)| *at <= t)
            .map(|(_, d)| d)
            .sum();
        let slept: f64 = self
            .sleeps
            .iter()
            .map(|s| (t.min(s.end) - s.start).max(0.0))
            .sum();
        Now::new(1_700_000_000_000.0 + t + jumped, t - slept)
    }

    /// How long the page has been hidden at `t` (0 if visible).
    fn hidden_for(&self, t: f64) -> f64 {
        self.hidden
            .iter()
            .chain(self.sleeps.iter())
            .filter(|s| s.contains(t))
            .map(|s| t - s.start)
            .fold(0.0, f64::max)
    }

    /// When a timer armed at `t` for `delay` ms fires: its delay counts only awake time (timers
    /// freeze in sleep); a hidden page's timer waits as the engine's [`Throttling`] says: the next
    /// whole second, or whole minute when it is chained (`chain` timers deep) and the page has
    /// been hidden long enough (Chromium).
    fn timer_fire_time(&self, t: f64, delay: f64, chain: u32) -> f64 {
        let mut fire = t + delay.max(0.0);
        for s in &self.sleeps {
            if s.start >= t && s.start < fire {
                fire += s.end - s.start;
            } else if s.contains(t) {
                fire += s.end - t;
            }
        }
        if self.hidden_at(fire) && !self.asleep(fire) {
            let th = &self.throttling;
            let intensive = self.worst_case_throttling
                || (chain >= INTENSIVE_CHAIN_COUNT
                    && self.hidden_for(fire) >= th.intensive_after_ms);
            let align = if intensive {
                if self.worst_case_throttling {
                    HIDDEN_TIMER_ALIGN_MS
                } else {
                    th.intensive_align_ms
                }
            } else {
                th.basic_align_ms
            };
            fire = (fire / align).ceil() * align;
        }
        self.wake_time(fire)
    }
}

fn disjoint(mut spans: Vec<Span>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    spans.sort_by(|a, b| a.start.total_cmp(&b.start));
    for s in spans {
        match out.last_mut() {
            Some(last) if s.start <= last.end => last.end = last.end.max(s.end),
            _ => out.push(s),
        }
    }
    out
}

/// What a simulated day measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Broker requests sent.
    pub requests: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Tokens obtained.
    pub tokens: u64,
    /// Broker requests per token lifetime of simulated time.
    pub requests_per_lifetime: f64,
    /// Awake time during which a consumer held an expired token (ms), post-wake catch-up excluded.
    pub exposure_ms: f64,
    /// Time right after a wake that found the token already expired, until a new one arrived (ms).
    pub catch_up_ms: f64,
    /// Tokens handed to `getToken()` callers that were already expired (must be 0).
    pub expired_handed_out: u64,
    /// Most broker requests in flight at once (must be 1).
    pub max_in_flight: u64,
    /// Worst delay of a refresh past its planned moment, outside sleeps (ms).
    pub worst_lateness_ms: f64,
    /// Retries scheduled later than the held token's expiry (must be 0).
    pub retries_past_expiry: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Timer(u64),
    Response(u64),
    Demand,
    Wake,
    HiddenChange,
    End,
}

struct Queue {
    heap: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
}

impl Queue {
    fn push(&mut self, t: f64, e: Event) {
        self.seq += 1;
        // Non-negative floats order like their bit patterns: exact times, no rounding.
        self.heap.push(Reverse((t.max(0.0).to_bits(), self.seq, e)));
    }
    fn pop(&mut self) -> Option<(f64, Event)> {
        self.heap
            .pop()
            .map(|Reverse((t, _, e))| (f64::from_bits(t), e))
    }
}

/// serde_json as the [`Json`] decoder for native runs.
pub struct SerdeJson;

impl Json for SerdeJson {
    fn parse_object(
        &self,
        text: &[u8],
        names: &'static [&'static str],
        out: &mut [Field],
    ) -> Result<(), JsonError> {
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|_| JsonError::Syntax)?;
        if !value.is_object() {
            return Err(JsonError::Shape);
        }
        read_fields(value, names, out).map_err(|_| JsonError::Shape)
    }
}

/// URLs through the engine's native WHATWG parser (the `url` crate, feature `url`), as the
/// browser's `URL` judges them in the wasm shell.
impl UrlParser for SerdeJson {
    fn url_parts(&self, url: &str) -> Option<UrlParts> {
        WhatwgUrl.url_parts(url)
    }
}

/// Tracks what the consumer (an attached SDK object) holds and integrates exposure.
struct Consumer {
    /// True expiry (simulated ms) of the token the consumer holds.
    expires: Option<f64>,
    last_t: f64,
    catching_up: bool,
    exposure_ms: f64,
    catch_up_ms: f64,
}

impl Consumer {
    fn new() -> Consumer {
        Consumer {
            expires: None,
            last_t: 0.0,
            catching_up: false,
            exposure_ms: 0.0,
            catch_up_ms: 0.0,
        }
    }

    /// Integrate `[last_t, t)`, awake time only.
    fn advance(&mut self, scenario: &Scenario, t: f64) {
        if let Some(exp) = self.expires {
            let mut from = self.last_t.max(exp);
            while from < t {
                // Skip sleeps: a sleeping page uses no token.
                let sleep = scenario.sleeps.iter().find(|s| s.end > from && s.start < t);
                let until = match sleep {
                    Some(s) if s.start <= from => {
                        from = s.end;
                        continue;
                    }
                    Some(s) => s.start.min(t),
                    None => t,
                };
                if self.catching_up {
                    self.catch_up_ms += until - from;
                } else {
                    self.exposure_ms += until - from;
                }
                from = until;
            }
        }
        self.last_t = t;
    }

    fn woke(&mut self, t: f64) {
        if self.expires.is_some_and(|e| e <= t) {
            self.catching_up = true;
        }
    }

    fn receive(&mut self, true_expiry: f64) {
        self.expires = Some(true_expiry);
        self.catching_up = false;
    }
}

/// A simulated broker answer.
enum Answer {
    Ok,
    Fail(Error),
}

fn broker_answer(scenario: &Scenario, rng: &mut Rng, t: f64) -> Answer {
    if scenario.in_outage(t) {
        return if rng.unit() < 0.5 {
            Answer::Fail(Error::Network)
        } else {
            Answer::Fail(Error::from_status(503, Some(5)))
        };
    }
    if rng.unit() < scenario.failure_rate {
        return Answer::Fail(Error::from_status(500, None));
    }
    Answer::Ok
}

fn fake_token(serial: u64) -> String {
    format!("sim-token-{serial}")
}

fn schedule_world(scenario: &Scenario, q: &mut Queue) {
    for s in &scenario.sleeps {
        q.push(s.end, Event::Wake);
    }
    for s in &scenario.hidden {
        q.push(s.start, Event::HiddenChange);
        q.push(s.end, Event::HiddenChange);
    }
    for s in &scenario.sleeps {
        q.push(s.start, Event::HiddenChange);
    }
    let mut t = 1_000.0;
    while t < scenario.duration_ms {
        q.push(t, Event::Demand);
        t += scenario.demand_every_ms;
    }
    q.push(scenario.duration_ms, Event::End);
}

/// Runs the engine through the scenario.
pub fn run_engine(scenario: &Scenario, policy: RefreshPolicy) -> Report {
    let mut rng = Rng::new(scenario.seed);
    let mut q = Queue {
        heap: BinaryHeap::new(),
        seq: 0,
    };
    schedule_world(scenario, &mut q);
    let mut machine = Machine::new(policy);
    let mut report = Report::default();
    let mut consumer = Consumer::new();
    let mut timer_gen = 0u64;
    // Timer nesting: a timer armed from a timer callback is one deeper than its parent.
    let mut chain = 0u32;
    let mut request_id = 0u64;
    // Request in flight: (id, sent at, answer time, answer).
    let mut in_flight: Vec<(u64, f64)> = Vec::new();
    // True expiry (simulated time) of the token the machine holds.
    let mut held_true_expiry: Option<f64> = None;
    let mut pending_true_expiry: Option<f64> = None;
    let mut waiting_callers = 0u64;
    let mut hidden = false;

    // The app attaches a recognizer at start: that is a demand too.
    let mut first = true;
    while let Some((t, event)) = q.pop() {
        if event == Event::End {
            consumer.advance(scenario, t);
            break;
        }
        if scenario.asleep(t) && !matches!(event, Event::HiddenChange) {
            // Nothing runs while asleep; deliver at wake (timers and responses alike).
            q.push(scenario.wake_time(t), event);
            continue;
        }
        consumer.advance(scenario, t);
        let now = scenario.now(t);
        let planned_refresh = machine.next_refresh_mono();
        let from_timer = matches!(event, Event::Timer(_));
        let decision = match event {
            Event::Timer(gen) if gen == timer_gen => machine.timer_fired(now),
            Event::Timer(_) => continue,
            Event::Response(id) => {
                let Some(pos) = in_flight.iter().position(|(i, _)| *i == id) else {
                    continue;
                };
                let (_, sent) = in_flight.remove(pos);
                let result = match broker_answer(scenario, &mut rng, sent) {
                    Answer::Ok => {
                        let body = format!(
                            "{{\"token\":\"{}\",\"expiresIn\":{},\"region\":\"westeurope\"}}",
                            fake_token(request_id),
                            scenario.lifetime_ms / 1000.0
                        );
                        // The broker mints the token half-way through the round trip.
                        pending_true_expiry = Some((sent + t) / 2.0 + scenario.lifetime_ms);
                        parse_grant(&body, Some("application/json"), &SerdeJson, now.wall_ms)
                    }
                    Answer::Fail(e) => {
                        report.failures += 1;
                        Err(e)
                    }
                };
                let jitter = rng.unit();
                machine.response(now, result, jitter)
            }
            Event::Demand => {
                waiting_callers += 1;
                if first {
                    first = false;
                }
                machine.demand(now)
            }
            Event::Wake => {
                consumer.woke(t);
                // visibilitychange / pageshow / focus on wake.
                let d = machine.set_hidden(now, scenario.hidden_at(t));
                hidden = scenario.hidden_at(t);
                d
            }
            Event::HiddenChange => {
                let h = scenario.hidden_at(t);
                if h == hidden {
                    continue;
                }
                hidden = h;
                machine.set_hidden(now, h)
            }
            Event::End => unreachable!(),
        };
        for effect in &decision.effects {
            match effect {
                Effect::Fetch => {
                    request_id += 1;
                    report.requests += 1;
                    in_flight.push((request_id, t));
                    report.max_in_flight = report.max_in_flight.max(in_flight.len() as u64);
                    let latency = rng.range(scenario.latency_ms.0, scenario.latency_ms.1);
                    q.push(t + latency, Event::Response(request_id));
                    if let Some(planned) = planned_refresh {
                        let late = now.mono_ms - planned;
                        let slept = scenario
                            .sleeps
                            .iter()
                            .any(|s| s.end <= t && s.end > t - late.max(0.0) - 1.0);
                        if !slept && late > report.worst_lateness_ms {
                            report.worst_lateness_ms = late;
                        }
                    }
                }
                Effect::Publish => {
                    report.tokens += 1;
                    held_true_expiry = pending_true_expiry;
                    if let Some(e) = held_true_expiry {
                        consumer.receive(e);
                    }
                }
                Effect::ResolveWaiters | Effect::ServeWaiters => {
                    if held_true_expiry.is_some_and(|e| e <= t) {
                        report.expired_handed_out += waiting_callers;
                    }
                    waiting_callers = 0;
                }
                Effect::RejectWaiters(_) => waiting_callers = 0,
                Effect::RejectOne(_) => waiting_callers = waiting_callers.saturating_sub(1),
                Effect::Expired => {}
                Effect::Failed(error) => {
                    // A retry never reaches past expiry, except as far as a broker's
                    // Retry-After asked.
                    let asked = match retry_rule(error) {
                        Retry::After(ms) => ms.min(MAX_RETRY_AFTER_MS),
                        _ => 0.0,
                    };
                    if let (Some(retry), Some(usable)) =
                        (machine.next_refresh_at(), machine.usable_until())
                    {
                        if retry > usable.max(now.wall_ms + asked) + 0.001 {
                            report.retries_past_expiry += 1;
                        }
                    }
                }
                Effect::Refreshing | Effect::StatusChanged(_) => {}
            }
        }
        match decision.timer {
            TimerPlan::Keep => {}
            TimerPlan::Clear => timer_gen += 1,
            TimerPlan::Arm(delay) => {
                timer_gen += 1;
                chain = if from_timer { chain + 1 } else { 0 };
                q.push(
                    scenario.timer_fire_time(t, delay, chain),
                    Event::Timer(timer_gen),
                );
            }
        }
    }
    report.exposure_ms = consumer.exposure_ms;
    report.catch_up_ms = consumer.catch_up_ms;
    report.requests_per_lifetime =
        report.requests as f64 / (scenario.duration_ms / scenario.lifetime_ms);
    report
}

/// Runs the common baseline through the same scenario: fetch at start, then every
/// [`FIXED_INTERVAL_MS`] on a `setInterval`, no retry, the consumer takes each new token.
pub fn run_fixed_interval(scenario: &Scenario) -> Report {
    let mut rng = Rng::new(scenario.seed);
    let mut q = Queue {
        heap: BinaryHeap::new(),
        seq: 0,
    };
    schedule_world(scenario, &mut q);
    let mut report = Report::default();
    let mut consumer = Consumer::new();
    let mut request_id = 0u64;
    let mut in_flight: Vec<(u64, f64)> = Vec::new();
    let mut held_true_expiry: Option<f64> = None;
    // The interval's ticks (throttled and frozen like any timer; an interval is a chain).
    q.push(0.0, Event::Timer(0));
    while let Some((t, event)) = q.pop() {
        if event == Event::End {
            consumer.advance(scenario, t);
            break;
        }
        if scenario.asleep(t) && !matches!(event, Event::HiddenChange) {
            q.push(scenario.wake_time(t), event);
            continue;
        }
        consumer.advance(scenario, t);
        match event {
            Event::Timer(n) => {
                request_id += 1;
                report.requests += 1;
                in_flight.push((request_id, t));
                report.max_in_flight = report.max_in_flight.max(in_flight.len() as u64);
                let latency = rng.range(scenario.latency_ms.0, scenario.latency_ms.1);
                q.push(t + latency, Event::Response(request_id));
                q.push(
                    scenario.timer_fire_time(t, FIXED_INTERVAL_MS, n as u32 + 1),
                    Event::Timer(n + 1),
                );
            }
            Event::Response(id) => {
                let Some(pos) = in_flight.iter().position(|(i, _)| *i == id) else {
                    continue;
                };
                let (_, sent) = in_flight.remove(pos);
                match broker_answer(scenario, &mut rng, sent) {
                    Answer::Ok => {
                        report.tokens += 1;
                        held_true_expiry = Some((sent + t) / 2.0 + scenario.lifetime_ms);
                        consumer.receive(held_true_expiry.unwrap_or(t));
                    }
                    Answer::Fail(_) => report.failures += 1,
                }
                let _ = rng.unit();
            }
            Event::Demand => {
                // The sample hands out whatever it holds.
                if held_true_expiry.is_some_and(|e| e <= t) {
                    report.expired_handed_out += 1;
                }
            }
            Event::Wake => consumer.woke(t),
            Event::HiddenChange | Event::End => {}
        }
    }
    report.exposure_ms = consumer.exposure_ms;
    report.catch_up_ms = consumer.catch_up_ms;
    report.requests_per_lifetime =
        report.requests as f64 / (scenario.duration_ms / scenario.lifetime_ms);
    report
}
