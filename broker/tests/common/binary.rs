//! The real `speech-token-broker` binary as a child process: for what only the process shows
//! (its stdout/stderr contract, the log it writes, what happens on SIGTERM before it exits).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// How long the binary may take to print its `listening on` line (a cold, busy test machine).
const START_WITHIN: Duration = Duration::from_secs(20);
/// How long it may take to exit after SIGTERM: its shutdown grace (5 s, README "SIGINT/SIGTERM")
/// plus slack for a busy machine.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// A running broker binary; its stderr (the log) goes to a file.
pub struct Run {
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:<port>` from its `listening on` line.
    pub base: String,
    pub log_path: std::path::PathBuf,
}

/// Starts the binary on a free loopback port with `args` (plus the deployment flags key/entra
/// need, [`super::with_deploy_flags`]), only `env` in its environment and `RUST_LOG=trace`.
pub async fn run_binary(args: &[&str], env: &[(&str, &str)]) -> Run {
    let log_path = std::env::temp_dir().join(format!("stb-log-{}.txt", super::random_hex(6)));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_speech-token-broker"));
    cmd.args(["--listen", "127.0.0.1:0"])
        .args(super::with_deploy_flags(args))
        .env_clear()
        .env("RUST_LOG", "trace")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(START_WITHIN, lines.next_line())
        .await
        .expect("listening line in time")
        .unwrap()
        .expect("a line");
    let base = first
        .strip_prefix("listening on ")
        .expect("exact listening line")
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{first}");
    Run {
        child,
        base,
        log_path,
    }
}

impl Run {
    /// `ws://127.0.0.1:<port>`.
    pub fn ws_base(&self) -> String {
        self.base.replacen("http://", "ws://", 1)
    }

    /// Sends SIGTERM (graceful shutdown) without waiting for the exit.
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {pid}: {status:?}");
    }

    /// Waits for a successful exit (after [`Run::sigterm`]); returns the log and removes its file.
    pub async fn exited(mut self) -> String {
        let status = tokio::time::timeout(EXIT_WITHIN, self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        assert!(status.success(), "{status:?}");
        let log = std::fs::read_to_string(&self.log_path).unwrap();
        std::fs::remove_file(&self.log_path).ok();
        log
    }

    /// Graceful shutdown on SIGTERM; the log.
    pub async fn stop(self) -> String {
        self.sigterm();
        self.exited().await
    }
}
