//! One fetch the engine asked for (`Effect::Fetch`), from start to outcome: alone, or, with
//! `shareAcrossTabs`, after asking the other tabs and taking the cross-tab lock.
//!
//! Every started fetch reports back exactly once, through [`Shell::finish_fetch`] (or
//! [`Shell::skip_fetch`] when another tab's token made it pointless): the [`Outcome`] guard
//! reports a `network` failure for any path that ends without an answer, so the engine never
//! waits for a fetch that is gone. Every "whether" still comes from the engine
//! (`fetch_needed`, `ask_peers_first`).

use std::rc::{Rc, Weak};

use wasm_bindgen_futures::JsFuture;
use web_sys::AbortController;

use crate::engine::machine::PEER_ASK_WINDOW_MS;
use crate::engine::Grant;
use crate::error::Error;
use crate::web::broker::fetch_grant;
use crate::web::clock;
use crate::web::shell::{FlightPlan, Shell};
use crate::web::tabs::{Tabs, LOCK_SETTLE_MS};
use crate::web::timer::sleep;

/// Reports fetch `id`'s outcome once; if dropped unreported, reports a `network` failure.
#[must_use = "an Outcome reports a failure when dropped unreported"]
struct Outcome {
    shell: Weak<Shell>,
    id: u64,
    reported: bool,
}

impl Outcome {
    /// The answer (or failure) of the broker request. Returns whether a new token was published.
    fn report(mut self, result: Result<Grant, Error>) -> bool {
        self.reported = true;
        self.shell
            .upgrade()
            .is_some_and(|shell| shell.finish_fetch(self.id, result))
    }

    /// The request was never sent: it lost its purpose (a token came from another tab).
    fn skip(mut self) {
        self.reported = true;
        if let Some(shell) = self.shell.upgrade() {
            shell.skip_fetch(self.id);
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if !self.reported {
            if let Some(shell) = self.shell.upgrade() {
                shell.finish_fetch(self.id, Err(Error::Network));
            }
        }
    }
}

/// Starts a fetch (the shell's [`crate::web::shell::Launcher`]). Called by `Shell::apply` with
/// the state borrowed: everything here runs later, in a task (never inside the borrow).
pub(crate) fn start(shell: &Rc<Shell>, plan: FlightPlan) {
    let FlightPlan {
        id,
        abort,
        lock_abort,
        tabs,
        ask_peers,
    } = plan;
    let weak = Rc::downgrade(shell);
    wasm_bindgen_futures::spawn_local(async move {
        let outcome = Outcome {
            shell: weak.clone(),
            id,
            reported: false,
        };
        run(weak, id, abort, lock_abort, tabs, ask_peers, outcome).await;
    });
}

/// The live shell, if fetch `id` is still its current fetch.
fn current(weak: &Weak<Shell>, id: u64) -> Option<Rc<Shell>> {
    weak.upgrade().filter(|shell| shell.is_current_fetch(id))
}

async fn run(
    weak: Weak<Shell>,
    id: u64,
    abort: AbortController,
    lock_abort: AbortController,
    tabs: Option<Tabs>,
    ask_peers: bool,
    outcome: Outcome,
) {
    // `dispose()` in the same tick as the call that started this fetch: the app's `headers`
    // function must not run for a client that is gone.
    if abort.signal().aborted() || current(&weak, id).is_none() {
        outcome.report(Err(Error::Disposed));
        return;
    }
    // Held until the token went out to the other tabs: then the next tab in line finds it.
    let mut _lock = None;
    if let Some(tabs) = &tabs {
        if ask_peers {
            tabs.ask();
            let (wait, _timer) = sleep(PEER_ASK_WINDOW_MS);
            let _ = JsFuture::from(wait).await;
            if !still_needed(&weak, id, true) {
                return skip_or_report(&weak, id, outcome);
            }
        }
        // The engine bounds the wait: a lock held elsewhere must not make the token lapse.
        let wait_ms = weak.upgrade().map_or(0.0, |shell| {
            let timeout_ms = shell.config.timeout_ms;
            shell.read(|m| m.lock_wait(clock::now(), timeout_ms))
        });
        if wait_ms > 0.0 {
            _lock = Some(tabs.lock(&lock_abort, wait_ms).await);
            let (settle, _timer) = sleep(LOCK_SETTLE_MS);
            let _ = JsFuture::from(settle).await;
        }
    }
    // Alone, the engine asked for this fetch a moment ago; shared, another tab's token may have
    // made it pointless meanwhile.
    if !still_needed(&weak, id, tabs.is_some()) {
        return skip_or_report(&weak, id, outcome);
    }
    let Some(config) = weak.upgrade().map(|s| s.config.clone()) else {
        return;
    };
    // Sent once the app's `headers` are in hand: a `refreshNow()` from then on (the app's "the
    // user signed in again") waits for the next request; one made before, also from inside the
    // app's `headers` function, is answered by this one.
    let sent = || {
        if let Some(shell) = weak.upgrade() {
            shell.sending(id);
        }
    };
    let result = fetch_grant(&config, &abort, sent).await;
    let published = outcome.report(result);
    if published {
        if let (Some(tabs), Some(shell)) = (&tabs, weak.upgrade()) {
            if let Some(offer) = shell.read(Tabs::offer) {
                tabs.share(offer);
            }
        }
    }
}

/// Whether fetch `id` is current and (when `ask_engine`) still has a purpose.
fn still_needed(weak: &Weak<Shell>, id: u64, ask_engine: bool) -> bool {
    weak.upgrade()
        .is_some_and(|shell| shell.fetch_still_needed(id, ask_engine))
}

/// Ends a fetch that is no longer needed: skipped if it is still current (a peer's token made
/// it pointless), otherwise it was superseded or disposed and needs no report.
fn skip_or_report(weak: &Weak<Shell>, id: u64, outcome: Outcome) {
    if current(weak, id).is_some() {
        outcome.skip();
    } else {
        outcome.report(Err(Error::Disposed));
    }
}
