//! `tabs.rs` in a build without the `cross-tab` feature: the same names, and no channel or lock
//! at all. [`Tabs`] has no value, so every shared path of `flight.rs` is dead code the compiler
//! drops; `shareAcrossTabs: true` fetches alone, as in a browser without Web Locks.

use web_sys::AbortController;

use crate::engine::{Grant, Machine};

/// Unused here: see `tabs.rs`.
pub const LOCK_SETTLE_MS: f64 = 10.0;

/// What another tab said (never, in this build).
#[allow(dead_code)]
pub(crate) enum PeerMessage {
    /// A tab without a usable token asks for one.
    Ask,
    /// A token, validated like a broker answer.
    Token(Grant, crate::engine::Now),
}

/// No cross-tab channel exists in this build: the type has no value.
#[derive(Clone)]
pub(crate) enum Tabs {}

/// Never made in this build.
#[allow(dead_code)]
pub(crate) struct LockHold;

/// Never made in this build.
pub(crate) enum Offer {}

impl Tabs {
    /// Always `None`: the client fetches alone.
    pub(crate) fn open(
        _broker_url: &str,
        _on_peer: impl FnMut(PeerMessage) + 'static,
    ) -> Option<Tabs> {
        None
    }

    pub(crate) fn ask(&self) {
        match *self {}
    }

    pub(crate) fn offer(_machine: &Machine) -> Option<Offer> {
        None
    }

    pub(crate) fn share(&self, offer: Offer) {
        match offer {}
    }

    pub(crate) async fn lock(&self, _abort: &AbortController, _timeout_ms: f64) -> LockHold {
        match *self {}
    }
}
