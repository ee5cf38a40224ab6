//! Reference token broker for `speech-token-client`.
//!
//! Hands browsers short-lived Azure Speech tokens: `dev` mode signs its own (and runs a fake Speech
//! WebSocket service that accepts them), `key` mode exchanges a subscription key at
//! `/sts/v1.0/issueToken`, `entra` mode gets a Microsoft Entra ID token by client credentials or
//! managed identity. Before issuing anything it can authenticate the app's user (`--auth entra`).
//! See README.md for the HTTP contract and the security notes.
//!
//! Rooms: `config` (flags → settings), `state` (shared state), `router` (wiring), `guards`
//! (host/origin/admin/deadline middleware), `token_route`, `health`, `auth` (who is asking),
//! `ratelimit`, `clientip`, `cache` + `upstream` + `oauth` (where tokens come from), `dev` +
//! `admin` + `speech` + `devjwt` (dev mode), `relay` (+ `presented`: how the SDK presents a
//! credential), `server` (the HTTP loop with limits) + `shutdown` (what it shares with the
//! WebSocket sessions).

pub mod admin;
pub mod auth;
pub mod cache;
pub mod clientip;
pub mod cloud;
pub mod config;
pub mod dev;
pub mod dev_entra;
pub mod devjwt;
pub mod guards;
pub mod health;
pub mod http;
pub mod oauth;
pub mod origin;
pub mod outbound;
pub mod presented;
pub mod ratelimit;
pub mod relay;
pub mod router;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod speech;
pub mod state;
pub mod token_route;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::{Args, Mode, Settings};

/// A bound, not yet serving broker.
pub struct Broker {
    listener: TcpListener,
    router: axum::Router,
    state: Arc<state::AppState>,
    limits: config::ServerLimits,
    going_away: shutdown::Shutdown,
}

impl Broker {
    /// Binds the listening socket and builds the state; logs the entra exposure warning.
    pub async fn bind(settings: Settings) -> anyhow::Result<Broker> {
        let listener = TcpListener::bind(settings.listen).await?;
        let local = listener.local_addr()?;
        let going_away = shutdown::Shutdown::new();
        let state = state::build_state(&settings, local, going_away.watch())?;
        let router = router::router(&settings, Arc::clone(&state));
        if let (config::ModeSettings::Entra { max_ttl, .. }, None) =
            (&settings.mode, &settings.relay)
        {
            tracing::warn!(
                audience = oauth::RESOURCE,
                max_ttl,
                "--expose-entra-token: browsers receive this broker identity's own Entra access \
                 token. It stays valid 60-90 minutes (managed identity: about 24 hours) whatever \
                 expiresIn says, for every Cognitive Services resource the identity has a role on; \
                 give the broker a dedicated identity with only 'Cognitive Services Speech User' \
                 on one Speech resource"
            );
        }
        if state.auth.name() == "none" && state.dev.is_none() {
            tracing::warn!(
                "--auth none: anyone who passes the origin check gets Speech tokens (origin \
                 checks stop other websites, not scripts)"
            );
        }
        Ok(Broker {
            listener,
            router,
            state,
            limits: settings.limits,
            going_away,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.state.local
    }

    /// The shared state (tests).
    pub fn state(&self) -> Arc<state::AppState> {
        Arc::clone(&self.state)
    }

    /// Serves until `shutdown` completes, then stops accepting and drains open connections and
    /// WebSocket sessions.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(mode = self.state.mode, auth = self.state.auth.name(), addr = %self.state.local, "serving");
        server::serve(
            self.listener,
            self.router,
            self.limits,
            shutdown,
            self.going_away,
        )
        .await
    }

    /// Runs in a background task (for tests); dropping the handle shuts the broker down.
    pub async fn spawn(settings: Settings) -> anyhow::Result<RunningBroker> {
        let broker = Broker::bind(settings).await?;
        let addr = broker.local_addr();
        let state = broker.state();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = broker
                .serve(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(RunningBroker {
            addr,
            state,
            shutdown: Some(tx),
            task,
        })
    }
}

/// A broker serving in a background task (tests).
pub struct RunningBroker {
    pub addr: SocketAddr,
    pub state: Arc<state::AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningBroker {
    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Verifies a dev-mode token with this broker's key (tests).
    pub fn verify_dev_token(&self, token: &str) -> Option<devjwt::Verdict> {
        let dev = self.state.dev.as_ref()?;
        Some(dev.signer.verify(token, upstream::now_unix()))
    }

    /// Upstream requests made so far.
    pub fn upstream_requests(&self) -> u64 {
        self.state.cache.upstream_requests()
    }
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}
