use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use speech_token_broker::shutdown::SHUTDOWN_GRACE;
use speech_token_broker::{Args, Broker, Settings};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(false)
        .init();

    let settings = match Settings::resolve(args, &|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("speech-token-broker: {e:#}");
            return ExitCode::from(2);
        }
    };

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("speech-token-broker: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let broker = match Broker::bind(settings).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("speech-token-broker: cannot listen: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on http://{}", broker.local_addr());
            let _ = out.flush();
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
        let mut rx2 = rx.clone();
        let serve = broker.serve(async move {
            let mut rx = rx;
            let _ = rx.wait_for(|v| *v).await;
        });
        tokio::select! {
            r = serve => {
                if let Err(e) = r {
                    tracing::error!(error = %e, "server error");
                    return ExitCode::FAILURE;
                }
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            _ = async { let _ = rx2.wait_for(|v| *v).await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                tracing::warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "connections or WebSocket sessions still open after the shutdown grace; exiting");
                ExitCode::SUCCESS
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
    }
}
