//! Reference token broker for `speech-token-client`.
//!
//! Hands browsers short-lived Azure Speech tokens: `dev` mode signs its own (and runs a fake Speech
//! WebSocket service that accepts them), `key` mode exchanges a subscription key at
//! `/sts/v1.0/issueToken`, `entra` mode gets a Microsoft Entra ID token by client credentials or
//! managed identity. See README.md for the HTTP contract and the security notes.

pub mod app;
pub mod cache;
pub mod config;
pub mod devjwt;
pub mod http;
pub mod oauth;
pub mod origin;
pub mod ratelimit;
pub mod secret;
pub mod speech;
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
    state: Arc<app::AppState>,
}

impl Broker {
    pub async fn bind(settings: Settings) -> anyhow::Result<Broker> {
        let listener = TcpListener::bind(settings.listen).await?;
        let local = listener.local_addr()?;
        let state = app::build_state(&settings, local);
        let router = app::router(&settings, Arc::clone(&state));
        Ok(Broker {
            listener,
            router,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.state.local
    }

    pub fn state(&self) -> Arc<app::AppState> {
        Arc::clone(&self.state)
    }

    /// Serves until `shutdown` completes, then stops accepting and drains open connections.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(mode = self.state.mode, addr = %self.state.local, "serving");
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
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

pub struct RunningBroker {
    pub addr: SocketAddr,
    pub state: Arc<app::AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningBroker {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Verifies a dev-mode token with this broker's key (tests).
    pub fn verify_dev_token(&self, token: &str) -> Option<devjwt::Verdict> {
        let dev = self.state.dev.as_ref()?;
        Some(dev.signer.verify(token, upstream::now_unix()))
    }

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
