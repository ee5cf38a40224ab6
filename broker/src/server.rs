//! The HTTP server loop with limits: a header-read timeout (which also ends idle keep-alive
//! connections: hyper starts it whenever a connection waits for a request head), a cap on open
//! connections (further ones are closed at once), and graceful shutdown: stop accepting, tell
//! WebSocket sessions to close (1001), let open requests finish and the sessions close
//! ([`crate::shutdown`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::config::ServerLimits;
use crate::shutdown::Shutdown;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// How often connections refused at `--max-connections` are told in the log: a client that
/// keeps connecting past the limit would otherwise write one line per attempt.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(1);

/// Connections refused at the limit since the last log line, and when that line was written.
#[derive(Default)]
struct Refused {
    count: u64,
    last_told: Option<Instant>,
}

/// Serves `router` on `listener` until `shutdown` completes; then announces it to the WebSocket
/// sessions (`going_away`), waits for open HTTP connections to finish their current request and
/// for the sessions to close. Unbounded here: the caller bounds it (`main`:
/// [`crate::shutdown::SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    going_away: Shutdown,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut refused = Refused::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            refused.count += 1;
            let now = Instant::now();
            if refused
                .last_told
                .is_none_or(|t| now.duration_since(t) >= REFUSED_LOG_EVERY)
            {
                // `refused`: connections closed since the previous line (this one included).
                tracing::warn!(%peer, max = limits.max_connections, refused = refused.count,
                    "connection limit reached; closing");
                refused = Refused {
                    count: 0,
                    last_told: Some(now),
                };
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut stop = stop_rx.clone();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let router = router.clone();
                async move {
                    Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {}))
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let conn = builder
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            let stopping = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopping => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    going_away.announce();
    let _ = stop_tx.send(true);
    // every slot back = every connection finished
    let _ = slots.acquire_many(limits.max_connections as u32).await;
    // upgraded WebSockets left their connection's slot at the upgrade
    going_away.sessions_done().await;
    Ok(())
}
