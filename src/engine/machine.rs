//! The token lifecycle as a state machine: inputs (the time, events) in, decisions out.
//!
//! [`Machine`] never reads a clock, sets a timer or performs I/O. The web shell tells it what
//! happened (`demand`, `response`, `timer_fired`, `set_hidden`, `online`, `dispose`, …) together
//! with the current time on both clocks ([`Now`]), and carries out the returned [`Decision`]: start
//! a fetch, resolve or reject waiting callers, publish a token, emit events, arm one timer. That
//! makes every rule testable natively, with simulated time, down to the millisecond.

use crate::engine::backoff::{
    final_error_hold, retry_after_floor, retry_delay, unit_jitter, MAX_RETRY_AFTER_MS,
};
use crate::engine::policy::{
    RefreshPolicy, HIDDEN_TIMER_GRANULARITY_MS, JITTER_FRACTION, USABLE_SLACK_MS,
};
use crate::engine::token::{Grant, Token};
use crate::engine::Ms;
use crate::error::{Error, Invalid};

/// How long a tab that holds no usable token waits for other tabs to answer its "ask" before
/// it asks the broker itself (`shareAcrossTabs`). Peers answer from memory within a few ms; a
/// short window keeps a lone tab's first token fast.
pub const PEER_ASK_WINDOW_MS: f64 = 150.0;

/// A tab asks its own broker at least once every this many of its own token lifetimes, however
/// many tokens other tabs share (`shareAcrossTabs`): a same-origin page that keeps posting tokens
/// cannot keep a tab off its broker for longer (an hour for 10-minute tokens). Large enough that
/// sharing still saves most requests (5 tabs: about 1.8 requests per refresh cycle instead of 5).
pub const PEER_ONLY_LIFETIMES: f64 = 6.0;

/// How much sooner the monotonic clock must put a deadline than the wall clock's plan before the
/// wall clock counts as set back ([`Deadline::on_wall_clock`]). `Date.now()` counts whole
/// milliseconds and `performance.now()` fractions, and the two drift apart by milliseconds an
/// hour; a clock change is a jump of seconds at least.
pub const CLOCK_SET_BACK_MS: f64 = 1_000.0;

/// The current time on both clocks the browser offers.
///
/// `wall_ms` is `Date.now()`: it keeps running while the machine sleeps but jumps when the clock
/// is set. `mono_ms` is `performance.now()` (plus its time origin): it never jumps, but may stand
/// still during sleep. A deadline has passed when *either* clock says so.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Now {
    /// Milliseconds since the Unix epoch (`Date.now()`).
    pub wall_ms: f64,
    /// Milliseconds on a monotonic clock (`performance.now()`).
    pub mono_ms: f64,
}

impl Now {
    /// Both clocks at once.
    pub fn new(wall_ms: f64, mono_ms: f64) -> Now {
        Now { wall_ms, mono_ms }
    }
}

/// A moment expressed on both clocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deadline {
    /// On the wall clock (epoch ms).
    pub wall_ms: f64,
    /// On the monotonic clock (ms).
    pub mono_ms: f64,
}

impl Deadline {
    /// `delay_ms` after `now` on both clocks.
    pub fn after(now: Now, delay_ms: f64) -> Deadline {
        Deadline {
            wall_ms: now.wall_ms + delay_ms,
            mono_ms: now.mono_ms + delay_ms,
        }
    }

    /// Whether either clock has reached the deadline.
    pub fn passed(&self, now: Now) -> bool {
        now.wall_ms >= self.wall_ms || now.mono_ms >= self.mono_ms
    }

    /// Milliseconds until the first clock reaches the deadline (0 if it has).
    pub fn remaining(&self, now: Now) -> f64 {
        (self.wall_ms - now.wall_ms)
            .min_ms(self.mono_ms - now.mono_ms)
            .max_ms(0.0)
    }

    /// The deadline as an epoch time on the wall clock as it reads `now`. Planned on the wall
    /// clock; but when the monotonic clock says it comes more than [`CLOCK_SET_BACK_MS`]
    /// sooner, the wall clock was set back since, and the time the monotonic clock counts is the
    /// true one (a clock set forward needs nothing: the planned time is then the earlier, and
    /// the deadline reads as passed, as it is for the engine). Clocks in step give the planned
    /// time on every read, whatever fraction of a millisecond lies between them.
    pub fn on_wall_clock(&self, now: Now) -> f64 {
        let by_mono = now.wall_ms + (self.mono_ms - now.mono_ms);
        if by_mono < self.wall_ms - CLOCK_SET_BACK_MS {
            by_mono
        } else {
            self.wall_ms
        }
    }

    /// The earlier of two deadlines, clock by clock.
    fn earliest(self, other: Deadline) -> Deadline {
        Deadline {
            wall_ms: self.wall_ms.min_ms(other.wall_ms),
            mono_ms: self.mono_ms.min_ms(other.mono_ms),
        }
    }

    /// The later of two deadlines, clock by clock.
    fn latest(self, other: Deadline) -> Deadline {
        Deadline {
            wall_ms: self.wall_ms.max_ms(other.wall_ms),
            mono_ms: self.mono_ms.max_ms(other.mono_ms),
        }
    }
}

/// The times an app reads (`expiresAt`, `nextRefreshAt`, the pipeline's expiry), as epoch
/// milliseconds on the wall clock at the moment they were read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// When the held token expires.
    pub expires_at: Option<f64>,
    /// When the held token stops being handed out.
    pub usable_until: Option<f64>,
    /// When the next refresh or retry is planned (none while a request is in flight).
    pub next_refresh_at: Option<f64>,
}

/// Where the client stands, as JavaScript sees it in `client.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No token yet and nothing asked for one.
    Idle,
    /// Fetching a token while none is usable (callers wait).
    Fetching,
    /// A usable token is held; the next refresh is scheduled.
    Valid,
    /// A usable token is held and being replaced (request in flight or retry scheduled).
    Refreshing,
    /// A token was held, none is usable now, no fetch is under way, and no retry after a
    /// failure is pending (also after a final error, once its token lapsed).
    Expired,
    /// The last attempt failed, and either a token is still held but automatic retries have
    /// stopped (401/403/…: only `refreshNow()`, or `getToken()` after the hold, tries again), or
    /// no usable token is held and a retry is pending (or none was ever held).
    Error,
    /// `dispose()` was called; the client is inert.
    Disposed,
}

impl Status {
    /// The name used in the JS API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::Fetching => "fetching",
            Status::Valid => "valid",
            Status::Refreshing => "refreshing",
            Status::Expired => "expired",
            Status::Error => "error",
            Status::Disposed => "disposed",
        }
    }
}

/// One thing the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send one broker request now; report its outcome with [`Machine::response`]. The
    /// `refreshNow()` callers kept apart ([`Machine::request_sent`]) wait for this
    /// one from now on.
    Fetch,
    /// A new token is held: set it on attached targets and emit `token`.
    Publish,
    /// Resolve every caller the request answers (`getToken()` and `refreshNow()`, not those
    /// kept apart for the next request) with the new token.
    ResolveWaiters,
    /// Resolve the `getToken()` callers (not the `refreshNow()` ones) with the current token.
    ServeWaiters,
    /// Reject every caller the request answers with this error (after `dispose()`: every
    /// waiting caller).
    RejectWaiters(Error),
    /// Reject the one caller that just asked (registered as a `getToken()` waiter) with this
    /// error, without a request: the final error of [`Machine::demand`].
    RejectOne(Error),
    /// A refresh started while a usable token is held: emit `refreshing`.
    Refreshing,
    /// A request failed: emit `error`.
    Failed(Error),
    /// The held token stopped being usable: emit `expired`.
    Expired,
    /// The status changed: emit `status`.
    StatusChanged(Status),
}

/// What to do with the one timer the shell keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimerPlan {
    /// The armed timer (or its absence) is still right.
    Keep,
    /// Clear the timer; nothing is scheduled.
    Clear,
    /// (Re)arm the timer to fire in this many milliseconds, then call [`Machine::timer_fired`].
    Arm(f64),
}

/// The machine's answer to one input. It must be carried out: a dropped decision loses a fetch,
/// a timer or the callers waiting for a token.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a Decision must be carried out (Shell::apply)"]
pub struct Decision {
    /// Effects, in the order they must be carried out.
    pub effects: Vec<Effect>,
    /// What to do with the timer.
    pub timer: TimerPlan,
}

impl Decision {
    /// Nothing to do: a disposed client's answer to the clock, the broker and other tabs.
    fn nothing() -> Decision {
        Decision {
            effects: Vec::new(),
            timer: TimerPlan::Keep,
        }
    }

    /// A disposed client's answer to a caller: rejected with kind `disposed`.
    fn refuse_disposed() -> Decision {
        Decision {
            effects: vec![Effect::RejectWaiters(Error::Disposed)],
            timer: TimerPlan::Keep,
        }
    }
}

/// How a failure is retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Retry {
    /// Exponential backoff with full jitter.
    Backoff,
    /// Wait as long as the broker asked (`Retry-After`), in ms.
    After(f64),
    /// Do not retry automatically: only `refreshNow()` / a `getToken()` with no usable token will.
    Stop,
}

/// The retry rule for an error. Source: docs/ARCHITECTURE.md, "The refresh rules (engine)",
/// Failures (back off on `network`, `timeout`, `invalid-response`, `headers`, 5xx, 408/425;
/// honour `Retry-After` on 429/503; stop on 401/403/redirect/other 4xx).
pub fn retry_rule(error: &Error) -> Retry {
    match error {
        Error::Network | Error::Timeout | Error::InvalidResponse(_) | Error::Headers => {
            Retry::Backoff
        }
        Error::RateLimited { retry_after } => match retry_after {
            Some(s) => Retry::After(f64::from(*s) * 1000.0),
            None => Retry::Backoff,
        },
        Error::Http {
            status,
            retry_after,
        } => match (status, retry_after) {
            (503, Some(s)) => Retry::After(f64::from(*s) * 1000.0),
            // Request timeout and "too early" are transient; other 4xx will not fix themselves.
            (408 | 425, _) => Retry::Backoff,
            (400..=499, _) => Retry::Stop,
            _ => Retry::Backoff,
        },
        Error::Unauthorized | Error::Forbidden | Error::Redirected | Error::Config(_) => {
            Retry::Stop
        }
        Error::Disposed => Retry::Stop,
    }
}

/// The token held right now, with its schedule.
struct Held {
    grant: Grant,
    /// When the request that brought it was sent: expiry is anchored here, on the local clocks.
    sent: Now,
    /// Lifetime after the `maxLifetime` cap (ms).
    lifetime_ms: f64,
    /// This token's random draw for the refresh jitter, kept to re-plan on visibility changes.
    jitter: f64,
    expires: Deadline,
    usable_until: Deadline,
    refresh_at: Deadline,
    /// When this tab first held this very token, and what it was first told of it.
    first_held: FirstHeld,
}

/// When a tab first held a token, and the expiry it was first told for it (by its broker, or as
/// a peer's claim), both monotonic ms. A caching broker hands the same token out again with what
/// is left of it: if the expiry it states is no later than the one first told, the token has
/// lived at least since then (see `Machine::response`). Kept while the same token is taken again.
#[derive(Clone, Copy)]
struct FirstHeld {
    since_ms: f64,
    expiry_ms: f64,
}

impl Held {
    /// A broker's token, from a request sent at `sent` and answered at `arrived`.
    fn new(
        grant: Grant,
        sent: Now,
        arrived: Now,
        policy: &RefreshPolicy,
        jitter: f64,
        hidden: bool,
    ) -> Held {
        let lifetime_ms = policy.effective_lifetime(grant.lifetime_ms);
        let mut held = Held {
            grant,
            sent,
            lifetime_ms,
            jitter: unit_jitter(jitter),
            expires: Deadline::after(sent, lifetime_ms),
            usable_until: Deadline::after(sent, lifetime_ms - policy.slack(lifetime_ms)),
            refresh_at: Deadline::after(sent, 0.0),
            first_held: FirstHeld {
                since_ms: arrived.mono_ms,
                expiry_ms: sent.mono_ms + lifetime_ms,
            },
        };
        held.plan_refresh(policy, hidden);
        held
    }

    /// A token another tab shared: it may be handed out for `usable_for` ms from `now` (the
    /// sender already kept its slack), judged on this tab's own two clocks. It is planned as a
    /// token of this tab's own `nominal` lifetime that is that far into its life, so that every
    /// tab refreshes on the schedule the sender would (a shorter nominal lifetime would make
    /// the receivers refresh before the sender and spend a request each).
    fn adopted(
        grant: Grant,
        now: Now,
        usable_for: f64,
        nominal: f64,
        policy: &RefreshPolicy,
        jitter: f64,
        hidden: bool,
    ) -> Held {
        let slack = policy.slack(nominal);
        let age = (nominal - slack - usable_for).max_ms(0.0);
        // The peer's claim, uncapped: its usable time plus the slack it kept (at most 5 s, or
        // a third of the usable time for a very short token).
        let claimed = grant.lifetime_ms;
        let claimed_expiry = now.mono_ms + claimed + USABLE_SLACK_MS.min_ms(claimed / 3.0);
        let mut held = Held {
            grant,
            sent: Now::new(now.wall_ms - age, now.mono_ms - age),
            lifetime_ms: nominal,
            jitter: unit_jitter(jitter),
            expires: Deadline::after(now, usable_for + slack),
            usable_until: Deadline::after(now, usable_for),
            refresh_at: Deadline::after(now, 0.0),
            first_held: FirstHeld {
                since_ms: now.mono_ms,
                expiry_ms: claimed_expiry,
            },
        };
        held.plan_refresh(policy, hidden);
        held
    }

    /// Refresh at `expiry - margin - jitter·10%·margin`.
    fn plan_refresh(&mut self, policy: &RefreshPolicy, hidden: bool) {
        let margin = policy.margin(self.lifetime_ms, hidden);
        let early = margin + self.jitter * JITTER_FRACTION * margin;
        self.refresh_at = Deadline::after(self.sent, (self.lifetime_ms - early).max_ms(0.0));
    }
}

/// Where the audio goes: what this tab's own broker said with its last token. Never taken from
/// another tab (docs/ARCHITECTURE.md, "Trust model").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    /// The Azure region, for `SpeechConfig.fromAuthorizationToken(token, region)`.
    pub region: Option<String>,
    /// A custom-domain or private endpoint, for `SpeechConfig.fromEndpoint(url)`.
    pub endpoint: Option<String>,
}

/// The lifecycle state machine. See the module docs.
pub struct Machine {
    policy: RefreshPolicy,
    held: Option<Held>,
    /// From this tab's own last broker answer; `None` until the first one.
    route: Option<Route>,
    /// The lifetime of this tab's own last broker token (counted from when this tab first held
    /// it, when the broker repeats a token: see [`Machine::response`]): no token from another
    /// tab is kept longer (a forged far expiry cannot pin the tab against its own broker).
    own_lifetime_ms: Option<f64>,
    /// When this tab's own broker must be asked again at the latest ([`PEER_ONLY_LIFETIMES`]
    /// after its last own token), however many tokens other tabs share.
    own_due: Option<Deadline>,
    /// When the request in flight was started.
    in_flight: Option<Now>,
    /// The request in flight is being sent, with the app's `headers` in hand: a `refreshNow()`
    /// no longer joins it ([`Machine::sending`]).
    in_flight_sent: bool,
    /// When the next retry is due, after a failure.
    retry_at: Option<Deadline>,
    /// Whether the scheduled retry follows a network-level failure (retried at once on `online`).
    retry_is_network: bool,
    /// Failed attempts since the last success (drives the backoff).
    attempt: u32,
    /// A failure that retrying will not fix stopped automatic refreshes.
    stopped: bool,
    /// That failure, and until when `getToken()` answers with it without asking the broker.
    final_error: Option<(Error, Deadline)>,
    /// The failure that planned the pending retry (`retry_at`): what a caller who would wait
    /// longer than a request may take is told at once (see [`Machine::demand`]).
    retry_error: Option<Error>,
    /// The last request failed.
    failed: bool,
    /// A token was held at some point (so its absence now means "expired").
    had_token: bool,
    hidden: bool,
    /// `getToken()` callers waiting for a token (the shell keeps their promises).
    waiters: usize,
    /// `refreshNow()` callers waiting for the next new token.
    fresh_waiters: usize,
    /// `refreshNow()` callers that came while the request in flight was being sent: they wait
    /// for the next request, which starts as soon as that one ends.
    fresh_next: usize,
    disposed: bool,
    status: Status,
    /// The deadline the shell's timer is armed for.
    armed: Option<Deadline>,
    requests: u64,
}

impl Machine {
    /// A new, idle machine. Nothing happens until a caller asks for a token.
    pub fn new(policy: RefreshPolicy) -> Machine {
        Machine {
            policy,
            held: None,
            route: None,
            own_lifetime_ms: None,
            own_due: None,
            in_flight: None,
            in_flight_sent: false,
            retry_at: None,
            retry_is_network: false,
            attempt: 0,
            stopped: false,
            final_error: None,
            retry_error: None,
            failed: false,
            had_token: false,
            hidden: false,
            waiters: 0,
            fresh_waiters: 0,
            fresh_next: 0,
            disposed: false,
            status: Status::Idle,
            armed: None,
            requests: 0,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &RefreshPolicy {
        &self.policy
    }

    /// The status as of the last input.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The usable token as of the last input. Call an input first (`tick`) for a fresh answer;
    /// [`Machine::token_at`] checks the clock as well.
    pub fn token(&self) -> Option<&Token> {
        self.held.as_ref().map(|h| &h.grant.token)
    }

    /// The token if it is usable at `now` (without changing anything).
    pub fn token_at(&self, now: Now) -> Option<&Token> {
        self.held
            .as_ref()
            .filter(|h| !h.usable_until.passed(now))
            .map(|h| &h.grant.token)
    }

    /// The held grant (its token and lifetime; for region and endpoint use [`Machine::route`]).
    pub fn grant(&self) -> Option<&Grant> {
        self.held.as_ref().map(|h| &h.grant)
    }

    /// Where the audio goes, from this tab's own last broker answer.
    pub fn route(&self) -> Option<&Route> {
        self.route.as_ref()
    }

    /// How long the held token may still be handed out, by the earlier of both clocks (what a
    /// tab tells its peers: a duration, never an absolute time).
    pub fn usable_for(&self, now: Now) -> Option<f64> {
        self.held
            .as_ref()
            .map(|h| h.usable_until.remaining(now))
            .filter(|ms| *ms > 0.0)
    }

    /// The held token's times and the next planned request, as epoch times on the wall clock as
    /// it reads `now` ([`Deadline::on_wall_clock`]): what an app shows or compares with
    /// `Date.now()`.
    pub fn schedule(&self, now: Now) -> Schedule {
        let at = |d: Option<Deadline>| d.map(|d| d.on_wall_clock(now));
        Schedule {
            expires_at: at(self.held.as_ref().map(|h| h.expires)),
            usable_until: at(self.held.as_ref().map(|h| h.usable_until)),
            next_refresh_at: at(self.next_refresh()),
        }
    }

    /// The next planned refresh or retry, if any.
    fn next_refresh(&self) -> Option<Deadline> {
        if self.in_flight.is_some() {
            return None;
        }
        if let Some(retry) = self.retry_at {
            return Some(retry);
        }
        match &self.held {
            Some(h) if !self.stopped => Some(h.refresh_at),
            _ => None,
        }
    }

    /// When the held token expires, on the wall clock as planned when it arrived (epoch ms).
    /// Compared with a later `Date.now()`, read [`Machine::schedule`] instead.
    pub fn expires_at(&self) -> Option<f64> {
        self.held.as_ref().map(|h| h.expires.wall_ms)
    }

    /// When the held token stops being handed out, on the wall clock as planned (epoch ms).
    pub fn usable_until(&self) -> Option<f64> {
        self.held.as_ref().map(|h| h.usable_until.wall_ms)
    }

    /// When the next refresh or retry is planned, on the wall clock as planned (epoch ms).
    pub fn next_refresh_at(&self) -> Option<f64> {
        self.next_refresh().map(|d| d.wall_ms)
    }

    /// When the next refresh or retry is planned, on the monotonic clock (for measuring lateness).
    pub fn next_refresh_mono(&self) -> Option<f64> {
        if self.in_flight.is_some() {
            return None;
        }
        if let Some(retry) = self.retry_at {
            return Some(retry.mono_ms);
        }
        match &self.held {
            Some(h) if !self.stopped => Some(h.refresh_at.mono_ms),
            _ => None,
        }
    }

    /// Whether a deadline the shell's timer was armed for has passed unseen (a long task, or a
    /// machine asleep, held the timer back): what the machine tells is then out of date until
    /// [`Machine::tick`].
    pub fn behind(&self, now: Now) -> bool {
        self.armed.is_some_and(|deadline| deadline.passed(now))
    }

    /// Whether a broker request is in flight.
    pub fn is_fetching(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Broker requests started so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Callers currently waiting (`getToken()` and `refreshNow()`).
    pub fn waiters(&self) -> usize {
        self.waiters + self.fresh_waiters + self.fresh_next
    }

    /// The callers the request in flight answers: all but the `refreshNow()` callers that came
    /// after it was sent ([`Machine::request_sent`]).
    fn answered_by_this_request(&self) -> usize {
        self.waiters + self.fresh_waiters
    }

    /// The request in flight is being sent now: the app's `headers` (its session) are in hand.
    /// A `refreshNow()` after this (the app's "the user signed in again") waits for a request
    /// of its own rather than the outcome of one made with what the app gave before; one made
    /// before, also while the app's `headers` function ran, is answered by this request.
    pub fn sending(&mut self) {
        self.in_flight_sent = self.in_flight.is_some();
    }

    /// Whether the request in flight is being sent ([`Machine::sending`]): a `refreshNow()` now
    /// waits for the request after it, and the shell keeps that caller apart until it starts.
    pub fn request_sent(&self) -> bool {
        self.in_flight.is_some() && self.in_flight_sent
    }

    /// The hot path: the token if it is usable at `now` and nothing is due, so the caller can be
    /// answered without any input being processed. `None` means: take the slow path (`demand`).
    pub fn ready_token(&self, now: Now) -> Option<&Token> {
        let held = self.held.as_ref()?;
        if self.disposed || held.usable_until.passed(now) {
            return None;
        }
        let refresh_due = self.in_flight.is_none()
            && !self.stopped
            && match self.retry_at {
                Some(retry) => retry.passed(now),
                None => held.refresh_at.passed(now),
            };
        (!refresh_due).then_some(&held.grant.token)
    }

    /// Re-check everything against the clock (visibility, focus, `pageshow`, a late timer).
    pub fn tick(&mut self, now: Now) -> Decision {
        self.settle(now, Vec::new())
    }

    /// The shell's timer fired.
    pub fn timer_fired(&mut self, now: Now) -> Decision {
        self.armed = None;
        self.settle(now, Vec::new())
    }

    /// A caller wants a token. If one is usable the decision resolves waiters at once (the
    /// shell registers the caller as a waiter before calling). Otherwise the caller waits for
    /// the fetch in flight, or a new one (single flight), or for the retry already scheduled
    /// (so that a loop of calls cannot defeat backoff or `Retry-After`), unless it is answered
    /// at once ([`Machine::answer_at_once`]).
    pub fn demand(&mut self, now: Now) -> Decision {
        if self.disposed {
            return Decision::refuse_disposed();
        }
        if let Some(error) = self.answer_at_once(now) {
            return self.settle(now, vec![Effect::RejectOne(error)]);
        }
        self.waiters += 1;
        self.settle(now, Vec::new())
    }

    /// The failure a new caller is told at once, without a request, when no token is usable and
    /// none is on its way:
    /// - after a final error (401, 403, …), that error until a hold ([`final_error_hold`]) has
    ///   passed: only then does a `getToken()` ask again;
    /// - while a retry is planned further out than one request may take (a broker's long
    ///   Retry-After, a long backoff), the failure that planned it (an app can tell its user
    ///   "try later"; `speechConfig()` does not hang for an hour); the retry still happens in the
    ///   background, and a nearer one is waited for.
    fn answer_at_once(&self, now: Now) -> Option<Error> {
        if self.in_flight.is_some() || self.token_at(now).is_some() {
            return None;
        }
        let held = match &self.final_error {
            Some((error, until)) if self.stopped && !until.passed(now) => Some(error),
            _ => None,
        };
        let far = match (&self.retry_error, self.retry_at) {
            (Some(error), Some(retry)) if retry.remaining(now) > self.policy.request_timeout_ms => {
                Some(error)
            }
            _ => None,
        };
        held.or(far).cloned()
    }

    /// Force a refresh now (the user's `refreshNow()`); the caller waits for the new token from
    /// a request sent after the call: it joins a request in flight that is not being sent yet;
    /// behind one that is, it waits for the next, which starts as soon as that one ends
    /// ([`Machine::request_sent`]). Clears a stop after 401/403 and any pending backoff.
    pub fn refresh_now(&mut self, now: Now) -> Decision {
        if self.disposed {
            return Decision::refuse_disposed();
        }
        self.stopped = false;
        if self.request_sent() {
            self.fresh_next += 1;
        } else {
            self.fresh_waiters += 1;
            if self.in_flight.is_none() {
                self.retry_at = Some(Deadline::after(now, 0.0));
            }
        }
        self.settle(now, Vec::new())
    }

    /// The outcome of the request in flight. `jitter` is a uniform random draw in `[0, 1)`,
    /// used for the refresh jitter (success) or the backoff (failure).
    pub fn response(&mut self, now: Now, result: Result<Grant, Error>, jitter: f64) -> Decision {
        if self.disposed {
            return Decision::nothing();
        }
        let mut effects = Vec::new();
        let Some(sent) = self.in_flight.take() else {
            // No request was in flight: a stray answer (cannot happen with a correct shell).
            return self.settle(now, effects);
        };
        let outcome = result.and_then(|grant| {
            let held = Held::new(grant, sent, now, &self.policy, jitter, self.hidden);
            if held.usable_until.passed(now) {
                Err(Error::InvalidResponse(Invalid::ExpiredOnArrival))
            } else {
                Ok(held)
            }
        });
        match outcome {
            Ok(held) => {
                self.route = Some(Route {
                    region: held.grant.region.clone(),
                    endpoint: held.grant.endpoint.clone(),
                });
                // A caching broker's answer may repeat the token this tab already holds, with
                // only what is left of it: the token has lived at least since this tab first
                // held it. Measured by what is left alone, the lifetime that caps peer tokens
                // would shrink with every such answer, and the tab would refresh before its
                // peers (and be handed the same token again) every cycle for good. Counted only
                // when the expiry now stated is no later than the one first told (within the
                // slack): a broker that stamps the same token with a fresh lifetime each time
                // (entra mode's capped `expiresIn`) must not make it look ever longer-lived.
                let expiry = held.sent.mono_ms + held.lifetime_ms;
                let tolerance = self.policy.slack(held.lifetime_ms);
                let lived = self
                    .first_held(&held.grant.token)
                    .filter(|first| expiry <= first.expiry_ms + tolerance)
                    .map_or(0.0, |first| {
                        (held.sent.mono_ms - first.since_ms).max_ms(0.0)
                    });
                self.own_lifetime_ms =
                    Some(self.policy.effective_lifetime(held.lifetime_ms + lived));
                self.own_due = Some(Deadline::after(
                    held.sent,
                    PEER_ONLY_LIFETIMES * held.lifetime_ms,
                ));
                self.take(held, &mut effects, false)
            }
            Err(error) => self.fail(now, error, jitter, &mut effects),
        }
        self.settle(now, effects)
    }

    /// Holds a new token: clear failures and pending retries, publish it, resolve every waiter.
    /// Shared by a broker response and a token adopted from another tab.
    /// A token from another tab (`from_peer`) serves `getToken()` callers only: a `refreshNow()`
    /// caller asked this tab's broker for a new token, and still waits for its answer.
    fn take(&mut self, mut held: Held, effects: &mut Vec<Effect>, from_peer: bool) {
        if let Some(first) = self.first_held(&held.grant.token) {
            held.first_held = first;
        }
        self.held = Some(held);
        self.had_token = true;
        self.attempt = 0;
        self.stopped = false;
        self.final_error = None;
        self.retry_error = None;
        self.failed = false;
        self.retry_at = None;
        effects.push(Effect::Publish);
        if from_peer {
            if self.waiters > 0 {
                self.waiters = 0;
                effects.push(Effect::ServeWaiters);
            }
        } else if self.answered_by_this_request() > 0 {
            self.waiters = 0;
            self.fresh_waiters = 0;
            effects.push(Effect::ResolveWaiters);
        }
    }

    /// Since when this tab holds `token` and the expiry it was first told for it, if it is the
    /// token held now.
    fn first_held(&self, token: &Token) -> Option<FirstHeld> {
        self.held
            .as_ref()
            .filter(|h| h.grant.token.expose() == token.expose())
            .map(|h| h.first_held)
    }

    /// Whether this tab must ask its own broker whatever other tabs share: it never had an answer
    /// of its own (it does not know where the audio goes), or its last one is
    /// [`PEER_ONLY_LIFETIMES`] old.
    fn own_answer_due(&self, now: Now) -> bool {
        self.route.is_none() || self.own_due.is_some_and(|due| due.passed(now))
    }

    /// A token another tab of the same origin and broker shared (`shareAcrossTabs`), already
    /// validated (`token::grant_from_peer`: a token and how long it may be handed out, counted
    /// from `now` on this tab's clocks). Its lifetime is capped at this tab's own last broker
    /// token's, so one forged far expiry can neither keep a token nor block real ones for long
    /// (a page that keeps posting can: README, "Trust model"); it never changes the route
    /// (region, endpoint). It is adopted only when it is usable and stays usable longer than the
    /// token held (the held token itself included: a broker that re-stamps its cached token has
    /// the first tab to refresh share a longer-lived copy), by a client that has wanted a token
    /// (an idle client stays lazy), has its own broker answer, is not due to ask its own broker
    /// again ([`PEER_ONLY_LIFETIMES`]) and is not stopped by a final error. Adopting publishes, serves
    /// `getToken()` callers (not `refreshNow()` ones: they asked the broker), clears failures and
    /// pending retries, and plans the next refresh with this tab's own policy and `jitter`. A
    /// request in flight is left alone: the shell asks [`Machine::fetch_needed`] whether to send
    /// it at all.
    pub fn adopt(&mut self, now: Now, grant: Grant, jitter: f64) -> Decision {
        if self.disposed {
            return Decision::nothing();
        }
        // Not taken: by an idle client (it stays lazy); before this tab's own first answer, or
        // when its own broker is due (see `own_answer_due`); after a final error (401, 403…),
        // which only the app's `refreshNow()` clears — a peer's token must not make it vanish.
        if self.status == Status::Idle || self.own_answer_due(now) || self.stopped {
            return self.settle(now, Vec::new());
        }
        let nominal = self.own_lifetime_ms.unwrap_or(self.policy.max_lifetime_ms);
        let usable_for = grant
            .lifetime_ms
            .min_ms(nominal - self.policy.slack(nominal));
        let held = Held::adopted(
            grant,
            now,
            usable_for,
            nominal,
            &self.policy,
            jitter,
            self.hidden,
        );
        // Compared on both clocks, by how long each stays usable from now.
        let newer = !held.usable_until.passed(now)
            && self
                .held
                .as_ref()
                .filter(|h| !h.usable_until.passed(now))
                .is_none_or(|h| held.usable_until.remaining(now) > h.usable_until.remaining(now));
        if !newer {
            return self.settle(now, Vec::new());
        }
        let mut effects = Vec::new();
        self.take(held, &mut effects, true);
        self.settle(now, effects)
    }

    /// Whether the request in flight still has a purpose (`shareAcrossTabs`: asked before the
    /// request is sent, since a peer's token may have been adopted meanwhile). `false` when no
    /// request is in flight, or when the held token is usable, not yet due for refresh, no
    /// `refreshNow()` caller waits for a new one, and the request is not a retry after a failure.
    pub fn fetch_needed(&self, now: Now) -> bool {
        if self.disposed || self.in_flight.is_none() {
            return false;
        }
        // A retry after a failure is always needed (`retry_at` was cleared when it started);
        // a peer's token clears `failed` when it is adopted. Until this tab's own broker has
        // answered once, it does not know where the audio goes: it fetches.
        self.fresh_waiters > 0
            || self.failed
            || self.own_answer_due(now)
            || match &self.held {
                None => true,
                Some(h) => {
                    h.usable_until.passed(now) || (!self.stopped && h.refresh_at.passed(now))
                }
            }
    }

    /// How long a tab about to fetch may wait for the cross-tab lock (`shareAcrossTabs`), in
    /// ms: at most `timeout_ms` (the request timeout), and, while a token is held, no longer
    /// than until a round trip ([`RefreshPolicy::lead`]) before it stops being usable. A tab
    /// that holds the lock (stalled, or a hostile same-origin page) then costs one request of
    /// this tab's own, never its token. 0: fetch alone, without the lock.
    pub fn lock_wait(&self, now: Now, timeout_ms: f64) -> f64 {
        match &self.held {
            Some(h) => {
                let left = h.usable_until.remaining(now) - self.policy.lead(h.lifetime_ms);
                timeout_ms.min_ms(left).max_ms(0.0)
            }
            None => timeout_ms,
        }
    }

    /// Whether a tab that is about to fetch should first ask its peers (`shareAcrossTabs`):
    /// a request is in flight, no usable token is held, and this tab has had its own broker
    /// answer (it never takes its first token from a peer). Peers answer from memory.
    pub fn ask_peers_first(&self, now: Now) -> bool {
        !self.disposed
            && self.in_flight.is_some()
            && self.route.is_some()
            && self.token_at(now).is_none()
    }

    /// The request in flight is dropped before it was sent, because [`Machine::fetch_needed`]
    /// said so. It ends without an outcome (no failure, no backoff) and does not count as a
    /// broker request. If a fetch is in fact still due, the decision starts a new one.
    pub fn skip_fetch(&mut self, now: Now) -> Decision {
        if self.disposed {
            return Decision::nothing();
        }
        if self.in_flight.take().is_some() {
            self.requests = self.requests.saturating_sub(1);
        }
        self.settle(now, Vec::new())
    }

    fn fail(&mut self, now: Now, error: Error, jitter: f64, effects: &mut Vec<Effect>) {
        self.failed = true;
        let rule = retry_rule(&error);
        self.stopped = rule == Retry::Stop;
        self.final_error = self.stopped.then(|| {
            let hold = final_error_hold(self.attempt, jitter);
            (error, Deadline::after(now, hold))
        });
        // Failures of the device rather than the broker: retried at once when the browser
        // comes back online (a session provider typically fails while the network is down).
        self.retry_is_network = matches!(error, Error::Network | Error::Timeout | Error::Headers);
        // The client's own delay, and what the broker asked for (`Retry-After`, else 0).
        let (delay, asked) = match rule {
            Retry::Stop => (None, 0.0),
            Retry::After(ms) => {
                let asked = ms.min_ms(MAX_RETRY_AFTER_MS);
                let floor = retry_after_floor(self.attempt, jitter);
                (Some(asked.max_ms(floor).min_ms(MAX_RETRY_AFTER_MS)), asked)
            }
            Retry::Backoff => (Some(retry_delay(self.attempt, jitter)), 0.0),
        };
        self.attempt = self.attempt.saturating_add(1);
        self.retry_error = delay.is_some().then_some(error);
        let (hidden, policy) = (self.hidden, &self.policy);
        self.retry_at = delay.map(|ms| {
            let at = Deadline::after(now, ms);
            let capped = match &self.held {
                // The client's own delay (a backoff, or its floor under a short Retry-After)
                // never reaches past expiry: losing the token costs the user more than an early
                // retry. It comes a round trip before the token stops being handed out, so that
                // a success replaces it with no gap (a retry at that very moment would find it
                // dropped); a hidden page's timer may fire up to a minute late, so there it
                // comes that much earlier. Within that lead already, it comes no later than the
                // end of usability (never a loop of immediate retries).
                Some(h) if !h.usable_until.passed(now) => {
                    let left = h.usable_until.remaining(now);
                    let lead = if hidden {
                        HIDDEN_TIMER_GRANULARITY_MS
                    } else {
                        policy.lead(h.lifetime_ms)
                    };
                    let budget = if left > lead { left - lead } else { left };
                    at.earliest(Deadline::after(now, budget))
                }
                // A token that expired while the request was in flight does not shorten the
                // wait: `settle` drops it right after.
                _ => at,
            };
            // What the broker asked for is honoured in full, past the token's usable time too:
            // an earlier request only meets the same answer.
            capped.latest(Deadline::after(now, asked))
        });
        effects.push(Effect::Failed(error));
        if self.answered_by_this_request() > 0 {
            self.waiters = 0;
            self.fresh_waiters = 0;
            effects.push(Effect::RejectWaiters(error));
        }
    }

    /// The page became hidden or visible. Hidden pages refresh with a wider margin (their timers
    /// are throttled); becoming visible re-checks at once.
    pub fn set_hidden(&mut self, now: Now, hidden: bool) -> Decision {
        if !self.disposed && hidden != self.hidden {
            self.hidden = hidden;
            if let Some(held) = &mut self.held {
                held.plan_refresh(&self.policy, hidden);
            }
        }
        self.settle(now, Vec::new())
    }

    /// The browser came back online: a retry waiting after a network failure happens now.
    pub fn online(&mut self, now: Now) -> Decision {
        if self.retry_is_network && self.retry_at.is_some() {
            self.retry_at = Some(Deadline::after(now, 0.0));
        }
        self.settle(now, Vec::new())
    }

    /// Stop for good: drop (and so wipe) the token, reject waiters, clear the timer.
    pub fn dispose(&mut self) -> Decision {
        if self.disposed {
            return Decision::nothing();
        }
        let mut effects = Vec::new();
        self.disposed = true;
        self.held = None;
        self.route = None;
        self.in_flight = None;
        self.retry_at = None;
        if self.waiters() > 0 {
            self.waiters = 0;
            self.fresh_waiters = 0;
            self.fresh_next = 0;
            effects.push(Effect::RejectWaiters(Error::Disposed));
        }
        self.status = Status::Disposed;
        effects.push(Effect::StatusChanged(Status::Disposed));
        self.armed = None;
        Decision {
            effects,
            timer: TimerPlan::Clear,
        }
    }

    /// Apply the clock: expire, start what is due, derive the status, plan the timer.
    fn settle(&mut self, now: Now, mut effects: Vec<Effect>) -> Decision {
        if self.disposed {
            return Decision {
                effects,
                timer: TimerPlan::Keep,
            };
        }
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.usable_until.passed(now))
        {
            self.held = None; // dropping the Grant wipes the token
            effects.push(Effect::Expired);
        }
        if self.in_flight.is_none() {
            // `refreshNow()` callers that came while the last request was being sent: theirs
            // goes out now, whatever that request's outcome planned (a stop, a backoff).
            let due = self.fresh_next > 0
                || match (self.retry_at, &self.held) {
                    (Some(retry), _) => retry.passed(now),
                    (None, Some(held)) => !self.stopped && held.refresh_at.passed(now),
                    (None, None) => self.waiters() > 0 || (self.had_token && !self.stopped),
                };
            if due {
                if self.fresh_next > 0 {
                    self.fresh_waiters += std::mem::take(&mut self.fresh_next);
                    self.stopped = false;
                }
                self.retry_at = None;
                self.in_flight = Some(now);
                self.in_flight_sent = false;
                self.requests += 1;
                effects.push(Effect::Fetch);
                if self.held.is_some() {
                    effects.push(Effect::Refreshing);
                }
            }
        }
        if self.held.is_some() && self.waiters > 0 {
            self.waiters = 0;
            effects.push(Effect::ServeWaiters);
        }
        let status = self.derive_status();
        if status != self.status {
            self.status = status;
            effects.push(Effect::StatusChanged(status));
        }
        let timer = self.plan_timer(now);
        Decision { effects, timer }
    }

    fn derive_status(&self) -> Status {
        match (&self.held, self.in_flight.is_some()) {
            (Some(_), true) => Status::Refreshing,
            (Some(_), false) if self.retry_at.is_some() => Status::Refreshing,
            (Some(_), false) if self.stopped => Status::Error,
            (Some(_), false) => Status::Valid,
            (None, true) => Status::Fetching,
            (None, false) if self.had_token && (self.stopped || !self.failed) => Status::Expired,
            (None, false) if self.failed => Status::Error,
            (None, false) => Status::Idle,
        }
    }

    /// The earliest deadline that needs a wake-up, compared with what is armed.
    fn plan_timer(&mut self, now: Now) -> TimerPlan {
        let mut next: Option<Deadline> = None;
        let mut consider = |d: Deadline| {
            next = Some(match next {
                Some(n) if n.remaining(now) <= d.remaining(now) => n,
                _ => d,
            })
        };
        if let Some(held) = &self.held {
            consider(held.usable_until);
            if self.in_flight.is_none() && self.retry_at.is_none() && !self.stopped {
                consider(held.refresh_at);
            }
        }
        if self.in_flight.is_none() {
            if let Some(retry) = self.retry_at {
                consider(retry);
            }
        }
        if next == self.armed {
            return TimerPlan::Keep;
        }
        self.armed = next;
        match next {
            // Whole milliseconds, at least one: browser timers have 1 ms resolution, and a
            // sub-millisecond delay could wake before either clock reaches the deadline.
            Some(d) => TimerPlan::Arm(d.remaining(now).ceil().max_ms(1.0)),
            None => TimerPlan::Clear,
        }
    }
}
