//! Load for `make bench` (loopback only, bounded): N concurrent WebSocket sessions streaming
//! audio-sized frames (3200 bytes = 100 ms of 16 kHz 16-bit mono) to a dev broker's fake Speech
//! service, either directly or through a `--relay` broker, measuring the round trip of each frame
//! (audio frame with a new `X-RequestId` → the fake's first answer to that turn; the broker must
//! have `/admin/speech {"replyAfterAudioFrames": 1, "endTurn": false}`) and the broker's resident
//! memory while all sessions are open. Prints one JSON object.
//!
//! ```sh
//! relay_load --base http://127.0.0.1:PORT --sessions 200 --seconds 5 [--pid PID]
//! ```
//! `--base` is a dev broker: its token route answers a dev token (direct) or a relay ticket
//! (`--relay`); the endpoint it names is used either way.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// 100 ms of 16 kHz, 16-bit mono audio: what the Speech SDK sends per frame.
const AUDIO_BYTES: usize = 3200;
/// One frame per 100 ms per session, as in real time.
const FRAME_INTERVAL: Duration = Duration::from_millis(100);

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn rss_kib(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn audio_frame(request_id: &str) -> Vec<u8> {
    let head = format!("Path:audio\r\nX-RequestId:{request_id}\r\nContent-Type:audio/x-wav");
    let mut f = (head.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(head.as_bytes());
    f.extend_from_slice(&[0u8; AUDIO_BYTES]);
    f
}

/// One session: returns the round trips (µs) of its frames, or an error text.
async fn session(url: String, until: Instant, tag: usize) -> Result<Vec<u64>, String> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut tx, mut rx) = ws.split();
    let mut rtts = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        let id = format!("S{tag}F{n}");
        n += 1;
        let sent = Instant::now();
        tx.send(Message::Binary(audio_frame(&id).into()))
            .await
            .map_err(|e| format!("send: {e}"))?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains(&format!("X-RequestId:{id}\r\n")) => {
                    rtts.push(sent.elapsed().as_micros() as u64);
                    break;
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => return Err(format!("ended: {other:?}")),
                Err(_) => return Err("no answer in 10 s".into()),
            }
        }
        tokio::time::sleep(FRAME_INTERVAL.saturating_sub(sent.elapsed())).await;
    }
    let _ = tx.send(Message::Close(None)).await;
    Ok(rtts)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let base = arg("--base", "http://127.0.0.1:8787");
    let sessions: usize = arg("--sessions", "100").parse().unwrap_or(100);
    let seconds: u64 = arg("--seconds", "5").parse().unwrap_or(5);
    let pid = arg("--pid", "");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let grant: Value = http
        .get(format!("{base}/api/speech-token"))
        .send()
        .await
        .expect("token route")
        .json()
        .await
        .expect("token JSON");
    let token = grant["token"].as_str().expect("token").to_string();
    let endpoint = grant["endpoint"].as_str().expect("endpoint").to_string();
    let url = format!("{endpoint}?language=en-US&Authorization=Bearer%20{token}");
    let rss_before = rss_kib(&pid);
    let start = Instant::now();
    // connect gradually (20 per 10 ms) so that the accept queue is not the bottleneck
    let until = start + Duration::from_secs(seconds) + Duration::from_millis(sessions as u64 / 2);
    let mut tasks = Vec::with_capacity(sessions);
    for i in 0..sessions {
        tasks.push(tokio::spawn(session(url.clone(), until, i)));
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // resident memory with every session open, half-way through
    tokio::time::sleep(
        Duration::from_secs(seconds) / 2 + Duration::from_millis(sessions as u64 / 2),
    )
    .await;
    let rss_during = rss_kib(&pid);
    let mut all = Vec::new();
    let mut held = 0usize;
    let mut errors: Vec<String> = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(r)) => {
                held += 1;
                all.extend(r);
            }
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    all.sort_unstable();
    errors.sort();
    errors.dedup();
    let per_session_kib = match (rss_before, rss_during) {
        (Some(b), Some(d)) if held > 0 => Some((d.saturating_sub(b)) as f64 / held as f64),
        _ => None,
    };
    println!(
        "{}",
        json!({
            "sessions": sessions, "held": held, "frames": all.len(),
            "p50Ms": pct(&all, 0.5), "p99Ms": pct(&all, 0.99),
            "rssBeforeKiB": rss_before, "rssDuringKiB": rss_during, "perSessionKiB": per_session_kib,
            "errors": errors.into_iter().take(5).collect::<Vec<_>>(),
            "seconds": start.elapsed().as_secs_f64(),
        })
    );
}
