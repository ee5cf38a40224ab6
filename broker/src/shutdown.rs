//! Graceful shutdown as the server loop and the WebSocket sessions share it: the signal that tells
//! sessions to close (1001, "going away"), and the count of sessions not yet done, which the
//! server waits for before [`crate::server::serve`] returns. An upgraded WebSocket has left its
//! HTTP connection, so waiting for connections alone let `main` return (and the runtime drop the
//! session tasks) before the close frames and the relay's log line were written.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// How long the process waits after SIGINT/SIGTERM for open requests and WebSocket sessions
/// before it exits anyway (README: "the process exits after at most 5 seconds"). Covers a
/// session's bounded close handshake ([`CLOSE_HANDSHAKE_WAIT`]) with room to spare.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a closing WebSocket waits for the peer's close frame (RFC 6455 §7.1.1: the server
/// should wait for it before closing TCP) — bounded, so a silent peer cannot hold shutdown up
/// past [`SHUTDOWN_GRACE`].
pub const CLOSE_HANDSHAKE_WAIT: Duration = Duration::from_secs(2);

/// The server's side: announces shutdown and waits for the sessions.
pub struct Shutdown {
    going_away: watch::Sender<bool>,
    /// The sessions' side, whose count of open sessions [`Shutdown::sessions_done`] waits on.
    watch: ShutdownWatch,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (going_away, going_away_rx) = watch::channel(false);
        let watch = ShutdownWatch {
            going_away: going_away_rx,
            open: Arc::new(watch::channel(0usize).0),
        };
        Shutdown { going_away, watch }
    }

    /// What the WebSocket routes keep.
    pub fn watch(&self) -> ShutdownWatch {
        self.watch.clone()
    }

    /// Tells every session, open or opening, to close with 1001.
    pub fn announce(&self) {
        let _ = self.going_away.send(true);
    }

    /// Completes once every [`SessionHold`] is dropped.
    pub async fn sessions_done(&self) {
        let _ = self.watch.open.subscribe().wait_for(|n| *n == 0).await;
    }
}

/// The sessions' side: the shutdown signal, and a hold that keeps the process up while a session
/// closes.
#[derive(Clone)]
pub struct ShutdownWatch {
    /// Created with the channel, so even a session opened after the announcement sees it as a
    /// change (`changed()` fires at once).
    going_away: watch::Receiver<bool>,
    open: Arc<watch::Sender<usize>>,
}

impl ShutdownWatch {
    /// Turns `true` (or its sender is dropped) when the broker shuts down.
    pub fn going_away(&self) -> watch::Receiver<bool> {
        self.going_away.clone()
    }

    /// Counts one session until dropped. Take it before answering the upgrade (and move it into
    /// the session task) so there is no moment when the session is held neither by its HTTP
    /// connection nor by this; drop it after the session's close frame and log line.
    pub fn hold(&self) -> SessionHold {
        self.open.send_modify(|n| *n += 1);
        SessionHold(Arc::clone(&self.open))
    }
}

/// One session still running or closing (see [`ShutdownWatch::hold`]).
pub struct SessionHold(Arc<watch::Sender<usize>>);

impl Drop for SessionHold {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_done_waits_for_every_hold() {
        let s = Shutdown::new();
        s.sessions_done().await;
        let a = s.watch().hold();
        let b = s.watch().hold();
        drop(a);
        let waiting = tokio::time::timeout(Duration::from_millis(20), s.sessions_done()).await;
        assert!(waiting.is_err(), "one session still open");
        drop(b);
        s.sessions_done().await;
    }

    #[tokio::test]
    async fn a_session_opened_after_the_announcement_still_sees_it_as_a_change() {
        let s = Shutdown::new();
        s.announce();
        let mut late = s.watch().going_away();
        late.changed().await.unwrap();
        assert!(*late.borrow());
    }
}
